/// Helpers shared by the convolution, pooling and resize kernels.

// MARK: - Tables owned by a bound kernel

/// Int table computed at bind time (per-output coordinates and the like).
final class IntTable {
  let base: UnsafeMutablePointer<Int>
  let count: Int

  init(_ values: [Int]) {
    count = max(values.count, 1)
    base = UnsafeMutablePointer<Int>.allocate(capacity: count)
    base.initialize(repeating: 0, count: count)
    for i in 0..<values.count { base[i] = values[i] }
  }

  deinit { base.deallocate() }
}

// MARK: - Work splitting

/// How much work a chunk given to a thread must hold, per kind of kernel.
/// A hand-off costs the caller about 0.3-0.4 us with a polling worker (the
/// pool's cache-line transfers; more when the worker sleeps), and a thread
/// that reads what another core wrote pays for moving those lines, so a
/// chunk should run for a microsecond or more. Larger grains did not pay on
/// a 2-core AVX-512 VM: an op kept on one thread leaves half of the next
/// op's input in the other core's cache (face_landmark's depthwise layers
/// and Adds after such an op ran 1.5-2x slower on two threads).
enum SplitGrain {
  /// Multiply-adds of a float32 GEMM or convolution (about 1 us).
  static let gemm = 1 << 16
  /// Multiply-adds of an int8 GEMM or convolution (VNNI and AMX run them
  /// two to eight times faster than float32). An int8 FullyConnected stays
  /// on one thread below two of these (the MLP's 784x256 layer, 1 us with
  /// VNNI, ran slower on two threads).
  static let gemmInt8 = 1 << 17
  /// Multiply-adds of a depthwise convolution (about 2 us).
  static let depthwise = 1 << 15
  /// Elements of a float32 elementwise op (about 1-2 us).
  static let elementwise = 1 << 14
  /// Elements of an int8 elementwise op.
  static let elementwiseInt8 = 1 << 15
}

/// Splits `0..<total` into at most `pool.threads` chunks of at least
/// `minChunk` items and runs `body(chunk, range)` on each; `chunk` is in
/// `0..<pool.threads`, so it can index per-thread scratch. A single chunk runs
/// inline on the calling thread. With `align` > 1 the chunk boundaries are
/// multiples of `align` (a GEMM's tile rows): every row then lands in a
/// tile of the same height whatever the thread count, so the results do
/// not depend on it (a split inside a tile would send a last row through
/// the one-row kernel, which sums in another order).
@inline(__always)
func forEachChunk(_ pool: ThreadPool, _ total: Int, minChunk: Int, align: Int = 1, _ body: (Int, Range<Int>) -> Void) {
  let chunks = min(pool.inline ? 1 : pool.threads, max(1, total / max(minChunk, 1)))
  if chunks <= 1 {
    body(0, 0..<total)
    return
  }
  if align > 1 {
    let units = (total &+ align &- 1) / align
    pool.parallelFor(chunks) { c in
      let lo = min(total, units &* c / chunks &* align)
      let hi = min(total, units &* (c &+ 1) / chunks &* align)
      if lo < hi { body(c, lo..<hi) }
    }
    return
  }
  pool.parallelFor(chunks) { c in
    let lo = total &* c / chunks
    let hi = total &* (c &+ 1) / chunks
    body(c, lo..<hi)
  }
}

/// Runs `work(rows, cols)` over all `m` rows and `n` columns: rows split
/// between threads when there are at least as many rows as threads, else
/// columns (chunks of at least `minCols`; a GEMV), all on the calling
/// thread below `minMacs` multiply-adds (`macs`; SplitGrain).
@inline(__always)
func splitRowsOrColumns(
  _ pool: ThreadPool, rows m: Int, cols n: Int, minCols: Int, macs: Int, minMacs: Int = SplitGrain.gemm,
  _ work: (Range<Int>, Range<Int>) -> Void
) {
  if pool.threads > 1 && !pool.inline && macs >= minMacs {
    if m >= pool.threads {
      pool.parallelRanges(m, minChunk: 1) { rows in work(rows, 0..<n) }
    } else {
      pool.parallelRanges(n, minChunk: minCols) { cols in work(0..<m, cols) }
    }
  } else {
    work(0..<m, 0..<n)
  }
}

/// The minimum number of work items per chunk so that a chunk does at least
/// about `grain` multiply-adds when one item costs `perItem`.
@inline(__always)
func minChunkFor(perItem: Int, grain: Int = 1 << 16) -> Int {
  max(1, grain / max(perItem, 1))
}

// MARK: - Shape checks

/// Checks that `t` is an NHWC image (rank 4).
func requireNHWC(_ t: TensorDesc, _ what: String) throws(TinfError) {
  guard t.shape.count == 4 else {
    throw .shape("\(what) '\(t.name)' must be NHWC (rank 4), has shape \(describe(t.shape))")
  }
}

/// Checks an optional bias: float32 of shape [n].
func checkBias(_ inputs: [TensorDesc?], _ i: Int, _ n: Int) throws(TinfError) {
  guard i < inputs.count, let b = inputs[i] else { return }
  try requireFloat(b, "bias")
  guard b.shape == [n] else {
    throw .shape("bias '\(b.name)' must have shape [\(n)], has \(describe(b.shape))")
  }
}

// MARK: - Vector helpers

@inline(__always)
func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
  UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(__always)
func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
  UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
}

/// Four dot products of length `k`: row a against rows b0...b3.
@inline(__always)
func dot1x4(
  _ a: UnsafePointer<Float>,
  _ b0: UnsafePointer<Float>, _ b1: UnsafePointer<Float>, _ b2: UnsafePointer<Float>, _ b3: UnsafePointer<Float>,
  _ k: Int
) -> SIMD4<Float> {
  var s0 = SIMD8<Float>()
  var s1 = SIMD8<Float>()
  var s2 = SIMD8<Float>()
  var s3 = SIMD8<Float>()
  var i = 0
  while i &+ 8 <= k {
    let x = load8(a + i)
    s0 += x * load8(b0 + i)
    s1 += x * load8(b1 + i)
    s2 += x * load8(b2 + i)
    s3 += x * load8(b3 + i)
    i &+= 8
  }
  var r = SIMD4<Float>(s0.sum(), s1.sum(), s2.sum(), s3.sum())
  while i < k {
    let x = a[i]
    r += SIMD4<Float>(b0[i], b1[i], b2[i], b3[i]) * x
    i &+= 1
  }
  return r
}

/// y[i] += a * x[i] for i in 0..<n.
@inline(__always)
func axpy(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ a: Float, _ n: Int) {
  var i = 0
  let va = SIMD8<Float>(repeating: a)
  while i &+ 8 <= n {
    store8(load8(y + i) + load8(x + i) * va, y + i)
    i &+= 8
  }
  while i < n {
    y[i] += x[i] * a
    i &+= 1
  }
}

/// y[i] += x[i] * w[i] for i in 0..<n.
@inline(__always)
func multiplyAccumulate(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ n: Int) {
  var i = 0
  while i &+ 8 <= n {
    store8(load8(y + i) + load8(x + i) * load8(w + i), y + i)
    i &+= 8
  }
  while i < n {
    y[i] += x[i] * w[i]
    i &+= 1
  }
}

/// Fills `n` floats of an output row with the bias (or zeros), repeated
/// every `c` floats (`n` is a multiple of `c`).
@inline(__always)
func fillBias(_ y: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>?, _ c: Int, _ n: Int) {
  if let bias {
    var o = 0
    while o < n {
      (y + o).update(from: bias, count: c)
      o &+= c
    }
  } else {
    y.update(repeating: 0, count: n)
  }
}

/// Clamps `n` floats to [lo, hi] (NaN stays NaN); nothing when there is no activation.
@inline(__always)
func clampRange(_ p: UnsafeMutablePointer<Float>, _ n: Int, _ act: Activation, _ lo: Float, _ hi: Float) {
  if act == .none { return }
  for i in 0..<n {
    p[i] = clampActivation(p[i], lo, hi)
  }
}

// MARK: - Indirect convolution

/// Output pixel coordinates (image, row, column) of a flat pixel index,
/// advanced by counting instead of dividing per pixel.
struct PixelCursor {
  var b: Int
  var oy: Int
  var ox: Int
  let oh: Int
  let ow: Int

  init(_ p: Int, oh: Int, ow: Int) {
    self.oh = oh
    self.ow = ow
    b = p / (oh &* ow)
    let r = p &- b &* (oh &* ow)
    oy = r / ow
    ox = r &- oy &* ow
  }

  /// Moves `n` pixels on, within the current output row or to the start of
  /// the next one.
  @inline(__always)
  mutating func advance(_ n: Int) {
    ox &+= n
    if ox == ow {
      ox = 0
      oy &+= 1
      if oy == oh {
        oy = 0
        b &+= 1
      }
    }
  }
}

/// The window geometry of an indirect convolution (one group, dilation 1
/// along W, so each window row is kw * cin consecutive input values).
struct IndirectWindows {
  let h: Int, w: Int, cin: Int, kh: Int, kw: Int, sh: Int, sw: Int, dh: Int, padT: Int, padL: Int
  /// Values per piece of a gathered window row (kw * cin, or more for
  /// padding to a multiple of four).
  let pieceStride: Int

  /// Fills the pointer table of the next up to `rows` (at most eight: the
  /// GEMM tile's rows) output pixels (slot `i * 8 + t`: window row i of
  /// pixel t) and moves the cursor on; returns the pixels taken (at most
  /// `limit`). A window row above or below the
  /// image points at `padRow` (a row of `pad` at least 8 * sw * cin + kw *
  /// cin long); a window row cut by the left or right edge is gathered with
  /// `pad` into `edge` (8 * kh pieces). A full tile of pixels of one output
  /// row inside the image horizontally steps from one base pointer per
  /// window row. Slots past the pixels taken repeat pixel 0 (computed, never
  /// stored).
  @inline(__always)
  func fill<T>(
    _ ptrs: UnsafeMutablePointer<UnsafePointer<T>>, _ cursor: inout PixelCursor, limit: Int, x: UnsafePointer<T>,
    padRow: UnsafePointer<T>, edge: UnsafeMutablePointer<T>, pad: T, rows: Int = 8
  ) -> Int {
    let count = min(rows, limit)
    let ix0 = cursor.ox &* sw &- padL
    if count == rows && cursor.ox &+ rows <= cursor.ow && ix0 >= 0 && ix0 &+ (rows &- 1) &* sw &+ kw <= w {
      let iy0 = cursor.oy &* sh &- padT
      let step = sw &* cin
      for i in 0..<kh {
        let iy = iy0 &+ i &* dh
        let base = iy < 0 || iy >= h ? padRow : x + ((cursor.b &* h &+ iy) &* w &+ ix0) &* cin
        for t in 0..<rows { ptrs[i &* 8 &+ t] = base + t &* step }
      }
      cursor.advance(rows)
      return rows
    }
    for t in 0..<count {
      let iy0 = cursor.oy &* sh &- padT
      let ix0 = cursor.ox &* sw &- padL
      let inside = ix0 >= 0 && ix0 &+ kw <= w
      for i in 0..<kh {
        let iy = iy0 &+ i &* dh
        let slot = i &* 8 &+ t
        if iy < 0 || iy >= h {
          ptrs[slot] = padRow
        } else if inside {
          ptrs[slot] = x + ((cursor.b &* h &+ iy) &* w &+ ix0) &* cin
        } else {
          let d = edge + slot &* pieceStride
          let src = x + (cursor.b &* h &+ iy) &* w &* cin
          for j in 0..<kw {
            let ix = ix0 &+ j
            let dj = d + j &* cin
            if ix >= 0 && ix < w {
              for c in 0..<cin { dj[c] = src[ix &* cin &+ c] }
            } else {
              for c in 0..<cin { dj[c] = pad }
            }
          }
          ptrs[slot] = UnsafePointer(d)
        }
      }
      cursor.advance(1)
    }
    for t in count..<8 {
      for i in 0..<kh { ptrs[i &* 8 &+ t] = ptrs[i &* 8] }
    }
    return count
  }
}
