/// Shared helpers of the data-movement kernels (Reshape, Transpose, Concat,
/// Split, Slice, StridedSlice, Pad, Gather). They move elements of
/// `dtype.size` bytes (1, 2, 4 or 8) and never look at their values.

/// Bytes moved before a copy is split over the session's threads.
let moveParallelBytes = 1 << 18
/// Bytes each thread should move at least.
let moveChunkBytes = 1 << 16
/// Side of the square tiles of a transposing copy, in elements.
let moveTile = 32

/// Copies `n` elements of type `T` from `s` (stride `ss` bytes) to `d`
/// (stride `ds` bytes).
@inline(__always)
func copyElements<T>(_: T.Type, _ d: UnsafeMutableRawPointer, _ s: UnsafeRawPointer, _ n: Int, _ ds: Int, _ ss: Int) {
  var dp = d
  var sp = s
  for _ in 0..<n {
    dp.storeBytes(of: sp.load(as: T.self), as: T.self)
    dp += ds
    sp += ss
  }
}

/// `copyElements` for an element size of 1, 2, 4 or 8 bytes.
@inline(__always)
func copyElements(size es: Int, _ d: UnsafeMutableRawPointer, _ s: UnsafeRawPointer, _ n: Int, _ ds: Int, _ ss: Int) {
  switch es {
  case 4: copyElements(UInt32.self, d, s, n, ds, ss)
  case 1: copyElements(UInt8.self, d, s, n, ds, ss)
  case 2: copyElements(UInt16.self, d, s, n, ds, ss)
  case 8: copyElements(UInt64.self, d, s, n, ds, ss)
  default:
    // Not a dtype size today; byte by byte keeps it correct.
    var dp = d
    var sp = s
    for _ in 0..<n {
      dp.copyMemory(from: sp, byteCount: es)
      dp += ds
      sp += ss
    }
  }
}

/// A copy of an N-d box of elements from one strided layout to another: the
/// element at index `i` (in `dims`) is read at `srcOffset + sum(i * srcStrides)`
/// and written at `dstOffset + sum(i * dstStrides)` (offsets and strides in
/// elements; source strides may be negative). Transpose, Concat, Split, Slice
/// and StridedSlice are all such copies.
///
/// Built once at bind time: dims of size 1 are dropped, dims that are
/// contiguous in both layouts are merged. The run then copies contiguous rows
/// with `copyMemory`, or strided elements, tiled when the source is contiguous
/// along another dim (a transpose), split over threads for large copies.
/// Running it never allocates.
struct StridedCopy {
  enum Mode {
    /// The innermost dim is contiguous in both layouts: rows of bytes.
    case rows
    /// The innermost dim is strided: element by element.
    case elements
    /// dims[k-1] is contiguous in the destination, dims[k-2] in the source:
    /// square tiles over the two.
    case tiled
  }

  let es: Int
  /// Collapsed dims and their strides in bytes.
  private(set) var dims: [Int] = []
  private(set) var src: [Int] = []
  private(set) var dst: [Int] = []
  let srcBase: Int
  let dstBase: Int
  private(set) var mode: Mode = .rows
  /// Dims looped over outside the inner one (rows, elements) or two (tiled).
  private(set) var outer = 0
  /// Units of work: rows, or (row, strip of tiles) when tiled.
  private(set) var items = 1
  private(set) var tilesA = 1
  private(set) var totalBytes = 0

  init(elementSize: Int, dims shape: [Int], srcStrides: [Int], dstStrides: [Int], srcOffset: Int = 0, dstOffset: Int = 0) {
    es = elementSize
    srcBase = srcOffset &* elementSize
    dstBase = dstOffset &* elementSize
    var count = 1
    for i in 0..<shape.count {
      let n = shape[i]
      count = count &* n
      if n == 1 { continue }
      let ss = srcStrides[i] &* elementSize
      let ds = dstStrides[i] &* elementSize
      if let k = dims.indices.last, src[k] == ss &* n, dst[k] == ds &* n {
        dims[k] = dims[k] &* n
        src[k] = ss
        dst[k] = ds
      } else {
        dims.append(n)
        src.append(ss)
        dst.append(ds)
      }
    }
    totalBytes = count &* elementSize
    if dims.isEmpty {
      dims = [1]
      src = [elementSize]
      dst = [elementSize]
    }
    let k = dims.count
    if src[k - 1] == es && dst[k - 1] == es {
      mode = .rows
      outer = k - 1
    } else if k >= 2, es == 1 || es == 2 || es == 4 || es == 8, dst[k - 1] == es, let x = (0..<(k - 1)).lastIndex(where: { src[$0] == es }) {
      // Any loop order gives the same copy: bring the source-contiguous dim
      // next to the innermost one and copy square tiles of the two.
      if x != k - 2 {
        let (n, s, d) = (dims[x], src[x], dst[x])
        dims.remove(at: x)
        src.remove(at: x)
        dst.remove(at: x)
        dims.insert(n, at: k - 2)
        src.insert(s, at: k - 2)
        dst.insert(d, at: k - 2)
      }
      mode = .tiled
      outer = k - 2
      tilesA = (dims[k - 2] + moveTile - 1) / moveTile
    } else {
      mode = .elements
      outer = k - 1
    }
    var rows = 1
    for i in 0..<outer { rows = rows &* dims[i] }
    items = mode == .tiled ? rows &* tilesA : rows
  }

  /// Runs the whole copy, on the pool's threads when it is large.
  func run(_ s: UnsafeRawPointer, _ d: UnsafeMutableRawPointer, _ pool: ThreadPool) {
    if pool.threads > 1 && items > 1 && totalBytes >= moveParallelBytes {
      let minChunk = max(1, items &* moveChunkBytes / totalBytes)
      pool.parallelRanges(items, minChunk: minChunk) { r in self.run(s, d, items: r) }
    } else {
      run(s, d, items: 0..<items)
    }
  }

  /// Runs the units of work `items` (safe to call concurrently on disjoint ranges).
  func run(_ s: UnsafeRawPointer, _ d: UnsafeMutableRawPointer, items range: Range<Int>) {
    let k = dims.count
    if mode == .tiled {
      runTiled(s, d, range)
      return
    }
    let n = dims[k - 1]
    let rowBytes = n &* es
    let ss = src[k - 1]
    let ds = dst[k - 1]
    if outer == 0 {
      if !range.isEmpty { inner(d + dstBase, s + srcBase, n, rowBytes, ds, ss) }
      return
    }
    let last = outer - 1
    var r = range.lowerBound
    while r < range.upperBound {
      // Offsets of row r; then walk the innermost outer dim by adding strides.
      var (so, dof) = offsets(r, through: last)
      let c = r % dims[last]
      let end = min(range.upperBound, r &+ (dims[last] &- c))
      let sStep = src[last]
      let dStep = dst[last]
      while r < end {
        inner(d + dof, s + so, n, rowBytes, ds, ss)
        so = so &+ sStep
        dof = dof &+ dStep
        r &+= 1
      }
    }
  }

  /// The source and destination offsets of `index` over dims 0...top
  /// (row-major: dim `top` varies fastest).
  @inline(__always)
  private func offsets(_ index: Int, through top: Int) -> (Int, Int) {
    var rem = index
    var so = srcBase
    var dof = dstBase
    var i = top
    while i >= 0 {
      let ci = rem % dims[i]
      rem /= dims[i]
      so = so &+ ci &* src[i]
      dof = dof &+ ci &* dst[i]
      i -= 1
    }
    return (so, dof)
  }

  @inline(__always)
  private func inner(_ d: UnsafeMutableRawPointer, _ s: UnsafeRawPointer, _ n: Int, _ rowBytes: Int, _ ds: Int, _ ss: Int)
  {
    if mode == .rows {
      d.copyMemory(from: s, byteCount: rowBytes)
    } else {
      copyElements(size: es, d, s, n, ds, ss)
    }
  }

  private func runTiled(_ s: UnsafeRawPointer, _ d: UnsafeMutableRawPointer, _ range: Range<Int>) {
    switch es {
    case 4: runTiled(UInt32.self, s, d, range)
    case 1: runTiled(UInt8.self, s, d, range)
    case 2: runTiled(UInt16.self, s, d, range)
    default: runTiled(UInt64.self, s, d, range)  // es == 8 (tiled mode needs a power-of-two size <= 8)
    }
  }

  private func runTiled<T>(_: T.Type, _ s: UnsafeRawPointer, _ d: UnsafeMutableRawPointer, _ range: Range<Int>) {
    let k = dims.count
    let a = dims[k - 2]
    let b = dims[k - 1]
    let sA = src[k - 2]
    let dA = dst[k - 2]
    let sB = src[k - 1]
    let dB = dst[k - 1]
    for item in range {
      let i0 = (item % tilesA) &* moveTile
      let i1 = min(i0 &+ moveTile, a)
      let (so, dof) = offsets(item / tilesA, through: outer - 1)
      var j0 = 0
      while j0 < b {
        let jn = min(moveTile, b &- j0)
        if jn < i1 &- i0 {
          // Fewer columns than rows in the tile (an NCHW -> NHWC input of 3
          // channels: 3 x 32): runs along the source-contiguous dim, one per
          // column, instead of a 3-element run per pixel (24 -> 15 us on a
          // 3 x 48 x 192 image).
          var jj = j0
          while jj < j0 &+ jn {
            copyElements(
              T.self, d + (dof &+ i0 &* dA &+ jj &* dB), s + (so &+ i0 &* sA &+ jj &* sB), i1 &- i0, dA, sA)
            jj &+= 1
          }
        } else {
          var ii = i0
          while ii < i1 {
            copyElements(
              T.self, d + (dof &+ ii &* dA &+ j0 &* dB), s + (so &+ ii &* sA &+ j0 &* sB), jn, dB, sB)
            ii &+= 1
          }
        }
        j0 &+= moveTile
      }
    }
  }
}

/// Several copies of whole rows of bytes (each at most one strided outer
/// dim: `StridedCopy` in `.rows` mode over at most two collapsed dims),
/// small enough for one thread: run with raw pointers and no per-run work
/// but the copies, for the tiny moves of streaming models (a state joined to
/// the new frame by a Concat each call: about 0.1 us through StridedCopy).
struct RowCopies {
  /// Per copy: rows, bytes per row, source step, destination step, destination offset.
  let plan: Scratch<Int>
  let sources: Scratch<UnsafeRawPointer?>
  let count: Int

  /// Nil unless every copy has that form and they move less than
  /// `moveParallelBytes` in all (larger moves keep StridedCopy's threads).
  init?(_ copies: [StridedCopy], _ srcs: [UnsafeRawPointer]) {
    var total = 0
    for c in copies {
      guard c.mode == .rows, c.dims.count <= 2 else { return nil }
      total &+= c.totalBytes
    }
    guard total < moveParallelBytes, copies.count == srcs.count,
      let plan = try? Scratch<Int>(count: copies.count &* 5),
      let sources = try? Scratch<UnsafeRawPointer?>(count: copies.count)
    else { return nil }
    for (i, c) in copies.enumerated() {
      let p = plan.base + i &* 5
      let two = c.dims.count == 2
      p[0] = two ? c.dims[0] : 1
      p[1] = c.dims[c.dims.count - 1] &* c.es
      p[2] = two ? c.src[0] : 0
      p[3] = two ? c.dst[0] : 0
      p[4] = c.dstBase
      sources.base[i] = srcs[i] + c.srcBase
    }
    self.plan = plan
    self.sources = sources
    count = copies.count
  }

  func run(_ d: UnsafeMutableRawPointer) {
    for i in 0..<count {
      let p = plan.base + i &* 5
      guard var s = sources.base[i] else { continue }
      var o = d + p[4]
      for _ in 0..<p[0] {
        o.copyMemory(from: s, byteCount: p[1])
        s += p[2]
        o += p[3]
      }
    }
  }
}

/// The input data pointer `i`, or an internal error (bind runs after
/// inference, so a required input is always there).
func movePointer(_ ctx: KernelContext, _ i: Int) throws(TinfError) -> UnsafeRawPointer {
  guard i < ctx.inputData.count, let p = ctx.inputData[i] else {
    throw TinfError(.internal, "input \(i) has no data")
  }
  return UnsafeRawPointer(p)
}

/// Quantization of an output that holds the input's elements with the
/// input's dim `axis` moved to `newAxis`. Per-tensor parameters pass
/// through; per-axis parameters follow the axis, or are refused (nil
/// `newAxis`) when the op changes that dim.
func movedQuant(_ q: Quantization?, to newAxis: Int?, _ why: String) throws(TinfError) -> Quantization? {
  guard var q, let axis = q.axis else { return q }
  guard let a = newAxis else {
    throw .unsupported("per-axis quantization along dim \(axis) is not supported: \(why)")
  }
  q.axis = a
  return q
}

/// Checks that an output shape is valid for a data-movement op: rank, every
/// dim >= 1 and a sane element count.
func checkMoveShape(_ shape: [Int], _ what: String = "output") throws(TinfError) {
  guard shape.count <= maxRank else {
    throw .unsupported("\(what) would have rank \(shape.count); at most \(maxRank) is supported")
  }
  for d in shape where d < 1 {
    throw .shape("\(what) shape \(describe(shape)) has an empty dimension")
  }
  guard let n = elementCount(shape), checkedMul(n, 8) != nil else {
    throw .shape("\(what) shape \(describe(shape)) is too large")
  }
}
