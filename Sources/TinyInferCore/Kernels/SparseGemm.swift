import TinyInferShims

/// Sparse weights: FullyConnected and 1x1 Conv2D (stride 1, no padding, one
/// group) whose constant weights are mostly zeros run on the C kernels of
/// `tinyinfer_kernels_sparse.h` instead of the dense GEMM. The choice is made
/// once per op at model load (`SparseGemm.prepare`, called by `Model`) from
/// the weights' density and the op's row count in the file (a batch-1
/// FullyConnected is a GEMV, which pays only at a lower density than the
/// tiled kernel of many rows); float32 2:4 weights of several rows have a
/// kernel of their own (`f32_nm24`, `nm24Pays`), and so do int8 ones
/// (`q8_nm24`, `nm24PaysInt8`, `bindInt8NM24`); `Model.passReport` says
/// which ops run sparse and which on the 2:4 kernel. `TINF_LOAD_DENSE` (`tinyinfer.load(..., sparse=False)`) keeps every op
/// dense, for comparisons.
///
/// float32 sums come in another order than the dense kernel's (float
/// rounding differs); int8 sums are exact int32, so the int8 output equals
/// the dense int8 kernel's bit for bit.
public final class SparseWeights {
  let n: Int
  let k: Int
  /// Nonzeros.
  let nnz: Int
  /// Output channel c's nonzeros are start[c] ..< start[c + 1] (n + 1 entries).
  let start: Scratch<Int32>
  /// Their input channels (increasing within a channel).
  let idx: Scratch<Int32>
  let floats: Scratch<Float>?
  let int8s: Scratch<Int8>?
  /// Sums of each output channel's int8 weights (the zero-point term).
  let sums: Scratch<Int32>?
  /// `start` and `idx` as the C kernels take them.
  var startPointer: UnsafePointer<Int32> { UnsafePointer(start.base) }
  var idxPointer: UnsafePointer<Int32> { UnsafePointer(idx.base) }

  /// 2:4 weights packed for the level's `f32_nm24` kernel (values, selectors), else nil.
  let nm24: (val: Scratch<Float>, sel: Scratch<Int32>)?
  /// int8 2:4 weights packed for `q8_nm24` (weight pairs and byte controls;
  /// their row sums in `sums`), else nil.
  let nm24q: Scratch<Int32>?
  /// The density threshold `.auto` chose these unstructured weights against
  /// (SparseGemm.maxDensity), else nil (2:4 forms, probes, `.always`): what
  /// the load's timing of close cases reads (Runtime/SparseMeasure.swift).
  var threshold: Double? = nil
  /// A form the level's rules do not take but that may pay on this machine
  /// (`SparseGemm.prepare`: float32 2:4 weights at AVX-512, one-row
  /// float32 weights of 65% to 90% zeros or under 1 MiB): the load keeps it
  /// only when its timing finds it faster than dense (`SparseMeasure`).
  var probe = false

  init(n: Int, k: Int, nnz: Int, floats: UnsafePointer<Float>?, int8s: UnsafePointer<Int8>?) throws(TinfError) {
    self.n = n
    self.k = k
    self.nnz = nnz
    nm24 = nil
    nm24q = nil
    start = try Scratch<Int32>(count: n &+ 1)
    // One slot more than the nonzeros: the C copy writes one past the last.
    idx = try Scratch<Int32>(count: nnz &+ 1)
    self.floats = floats == nil ? nil : try Scratch<Float>(count: nnz &+ 1)
    self.int8s = int8s == nil ? nil : try Scratch<Int8>(count: nnz &+ 1)
    sums = int8s == nil ? nil : try Scratch<Int32>(count: n)
    if let f = floats, let v = self.floats {
      ti_shim_csr_f32(f, n, k, start.base, idx.base, v.base)
    } else if let b = int8s, let v = self.int8s, let s = sums {
      ti_shim_csr_i8(b, n, k, start.base, idx.base, v.base, s.base)
    }
    // The count given must be the matrix's (prepare counted it whole).
    guard Int(start.base[n]) == nnz else { throw TinfError(.internal, "sparse weights: \(start.base[n]) nonzeros, expected \(nnz)") }
  }

  /// float32 2:4 weights (k a multiple of 4, at most 2 nonzeros in every 4
  /// consecutive input channels of each output channel) packed for the
  /// level's `f32_nm24` kernel; throws `.invalidArgument` when they are not 2:4.
  init(nm24 w: UnsafePointer<Float>, n: Int, k: Int, nnz: Int) throws(TinfError) {
    self.n = n
    self.k = k
    self.nnz = nnz
    start = try Scratch<Int32>(count: 1)
    idx = try Scratch<Int32>(count: 1)
    floats = nil
    int8s = nil
    sums = nil
    nm24q = nil
    let kern = SparseGemm.kernels
    let lanes = kern.nm24_lanes
    let padded = (n &+ lanes &- 1) / lanes &* lanes
    let val = try Scratch<Float>(count: padded &* k / 2)
    let sel = try Scratch<Int32>(count: padded &* k / 2)
    guard k % 4 == 0, kern.nm24_pack(w, n, k, val.base, sel.base) != 0 else {
      throw TinfError(.invalidArgument, "weights are not 2:4")
    }
    nm24 = (val, sel)
  }

  /// int8 2:4 weights (symmetric; k a multiple of 4, at most 2 nonzeros in
  /// every 4 consecutive input channels of each output channel) packed for
  /// `q8_nm24`; throws `.invalidArgument` when they are not 2:4.
  init(nm24q w: UnsafePointer<Int8>, n: Int, k: Int, nnz: Int) throws(TinfError) {
    self.n = n
    self.k = k
    self.nnz = nnz
    start = try Scratch<Int32>(count: 1)
    idx = try Scratch<Int32>(count: 1)
    floats = nil
    int8s = nil
    nm24 = nil
    let packed = try Scratch<Int32>(count: 32 &* ((n &+ 7) / 8) &* ((k &+ 7) / 8))
    let s = try Scratch<Int32>(count: n)
    guard k % 4 == 0, SparseGemm.kernels.q8_nm24_pack(w, n, k, packed.base, s.base) != 0 else {
      throw TinfError(.invalidArgument, "weights are not 2:4")
    }
    sums = s
    nm24q = packed
  }

  /// Bytes held (indices, values, row starts; 2:4: packed values and selectors).
  public var bytes: Int {
    if let nm24 { return (nm24.val.count &+ nm24.sel.count) &* 4 }
    if let nm24q { return (nm24q.count &+ n) &* 4 }
    return (n &+ 1) &* 4 &+ nnz &* (floats != nil ? 8 : 5)
  }
  /// How the load report names the kernel's format.
  var kind: String { nm24 != nil || nm24q != nil ? "2:4" : "unstructured" }
  /// Fraction of weights that are zero.
  public var sparsity: Double { n &* k == 0 ? 0 : 1 - Double(nnz) / Double(n &* k) }
}

/// Whether a model's ops may run on the sparse kernels (`Model.load`).
public enum SparseChoice: Sendable {
  /// When the weights' density makes them faster (SparseGemm's thresholds).
  case auto
  /// Never (TINF_LOAD_DENSE).
  case never
  /// Whenever any weight is zero (TINF_LOAD_SPARSE_ALWAYS; for benchmarks).
  case always
}

enum SparseGemm {
  /// When the sparse kernels replace the dense ones, measured with
  /// bench/sparse_kernels.py on x86-64 (AVX-512 and AVX2): the tiled float32
  /// kernel of many rows (1x1 convolutions, batches) wins from about 70%
  /// zeros (1.5 to 2.5x at 80%, 2.5 to 3.7x at 90% at AVX-512), from about
  /// 55% on layers of at most 128 input channels at AVX2 and AVX-512 (1.1 to
  /// 1.3x at 50%, 1.6 to 2x at 70%); the one-row
  /// float32 kernel (a batch-1 FullyConnected, a GEMV) gathers one input per
  /// nonzero and wins only at 90% zeros on weights too large for the L2
  /// cache, losing to the dense GEMV on weights that stay in cache. The int8
  /// tiles (exact sums, the same outputs as the dense kernels) do not beat
  /// the dense int8 GEMM on its dot-product instructions (AVX-512 VNNI) at
  /// any density measured (0.6 to 0.9x at 90%); against the AVX2 int8
  /// kernels (pmaddwd) they win from about 70% zeros (stop 29: 1.06 to 1.2x
  /// at 70%, 1.2 to 1.5x at 80%, 1.4 to 1.8x at 90%). Since stop 31 (inputs
  /// widened and transposed a block at a time, the tile's rows requantized
  /// together) that holds on narrow layers too: at 75% zeros 1.1-1.4x on
  /// pose_detection's 112x112 16 -> 64, 56x56 144 -> 24, 24 -> 16 layers and
  /// face_detection_full_range_sparse's 8 -> 32 and 32 -> 8 ones, which lost
  /// before (0.65 to 0.85x). Since stop 32, on models with the float32
  /// output stage (int8-static's default) the tiles requantize in registers
  /// (`q8_tile_rq`) and the dense kernels got the same stage: 1.37 to 1.47x
  /// at 70%, 1.66 to 1.79x at 80%, 2.0 to 2.5x at 90% (bench/sparse_kernels.py
  /// --quick). Elsewhere (SSE2, NEON, SDOT: not measured) int8 runs sparse
  /// only when asked (`.always`).
  static let maxDensityTiled = 0.30
  /// The float32 tiles on few input channels (k <= smallK) at AVX2 and
  /// AVX-512, where they win from about 50% zeros (1.1 to 1.3x there).
  static let maxDensityTiledSmallK = 0.45
  static let smallK = 128
  static let maxDensityTiledInt8 = 0.30
  /// int8 1x1 convolutions with the float32 output stage (fused into the
  /// tiles, `q8_tile_rq`): 1.37 to 1.47x at 70% zeros, 0.94 to 1.13x at 50%
  /// (stop 32): from 65%.
  static let maxDensityTiledInt8Fused = 0.35
  static let maxDensityRow = 0.10
  static let minRowWeightBytes = 1 << 20
  /// One-row float32 weights timed at load (`SparseWeights.probe`) where the
  /// rule above does not take them: density at most `probeDensityRow` and at
  /// least `minProbeRowWeightBytes`. The one-row kernel's gain depends on
  /// the machine's memory more than on its core: the 1280 -> 1000
  /// classifier at 80% zeros ran 2.6x faster sparse on an Intel AVX-512
  /// core (dense 200 us: the 5 MB weights stream from L3), 0.7x on a Zen 3
  /// one (stop 46, docs/pruning.md).
  static let probeDensityRow = 0.35
  static let minProbeRowWeightBytes = 256 << 10

  /// The highest weight density at which the op's sparse kernel is
  /// expected to be faster (`.auto`); nil where it never is.
  static func maxDensity(rows: Int, k: Int, int8: Bool, fusedStage: Bool = false, weightBytes: Int) -> Double? {
    if int8 {
      let level = String(cString: ti_q8_kernels_get().pointee.name)
      return rows >= 2 && level == "avx2" ? (fusedStage ? maxDensityTiledInt8Fused : maxDensityTiledInt8) : nil
    }
    if rows >= 2 {
      let level = String(cString: kernels.name)
      return k <= smallK && (level == "avx2" || level == "avx512") ? maxDensityTiledSmallK : maxDensityTiled
    }
    return weightBytes >= minRowWeightBytes ? maxDensityRow : nil
  }

  static var kernels: ti_sparse_kernels { ti_sparse_kernels_get().pointee }

  /// Whether the 2:4 kernel runs by itself (`.auto`) at this level: where it
  /// measured faster than the dense float32 GEMM (bench/sparse_kernels.py,
  /// the 2:4 column): AVX2 (1.2 to 1.3x on Zen 3; docs/pruning.md). At
  /// baseline it permutes lane by lane (correct, not fast): `.always` only.
  static var nm24Pays: Bool { String(cString: kernels.name) == "avx2" }
  /// Where the 2:4 kernel is timed at load instead (`SparseWeights.probe`):
  /// AVX-512, where it measured 0.9-1.0x of the dense GEMM on an Intel core
  /// with two 512-bit multiply-add units (the shuffles share their ports);
  /// a core with one such unit has room for the shuffles.
  static var nm24Probes: Bool { String(cString: kernels.name) == "avx512" }

  /// The same for the int8 2:4 kernel (`q8_nm24`): against the dense AVX2
  /// int8 kernels (the direct 1x1 of at most 128 inputs, the packed GEMM
  /// deeper), bench/sparse_kernels.py's int8 2:4 column (docs/pruning.md,
  /// stop 34), so wherever the int8 kernels are AVX2's (an AVX-512 CPU
  /// without VNNI too: the 2:4 kernel is the same 256-bit code there).
  /// Against VNNI's `vpdpbusd` it runs 0.1-0.5x (stop 46; a shuffle per
  /// `vpdpbusd` of 4 kept products, and both share the two ports): elsewhere
  /// only with `.always`.
  static var nm24PaysInt8: Bool {
    let level = String(cString: kernels.name)
    return (level == "avx2" || level == "avx512") && String(cString: ti_q8_kernels_get().pointee.name) == "avx2"
  }
  /// The smallest int8 layers it takes by itself (at least 8 inputs and
  /// outputs and 384 weights): MobileNetV2 0.35's narrow 1x1 layers measured
  /// 1.05x (8 -> 48, 48 -> 8), 1.1x (32 -> 16), 1.2x (16 -> 96, 48 -> 16);
  /// 12 -> 24 0.99x, 16 -> 8 0.94x (stop 34). Without the float32 output
  /// stage (full-int8 .tflite's fixed-point one, FullyConnected's double
  /// one: int32 sums of 8 rows, then the dense kernels' requantization) at
  /// least 64 inputs: 24 -> 144 measured 0.91x, 32 -> 192 1.03x, 64 -> 384
  /// 1.21x, 384 -> 96 1.61x.
  static let nm24MinInt8 = (side: 8, weights: 384, depthUnfused: 64)

  /// The nonzeros of weights [n, k] (k a multiple of 4) when every group of 4
  /// consecutive inputs of every row has at most 2, else nil (stops at the
  /// first group with more: dense weights are rejected at once).
  static func nm24Nonzeros<T: Numeric>(_ w: UnsafePointer<T>, n: Int, k: Int) -> Int? {
    var nnz = 0
    var i = 0
    let total = n &* k
    while i < total {
      var c = 0
      if w[i] != 0 { c &+= 1 }
      if w[i &+ 1] != 0 { c &+= 1 }
      if w[i &+ 2] != 0 { c &+= 1 }
      if w[i &+ 3] != 0 { c &+= 1 }
      if c > 2 { return nil }
      nnz &+= c
      i &+= 4
    }
    return nnz
  }

  /// The sparse form of this op's constant weights when the sparse kernel
  /// would be faster, else nil. `data` are the inputs' addresses (constants).
  /// `probes`: also propose the forms the rules do not take but that may pay
  /// (`SparseWeights.probe`; only where the load will time them or takes a
  /// prepack image's word for them: not built for nothing).
  static func prepare(
    _ node: Node, _ inputs: [TensorDesc?], _ data: [UnsafeMutableRawPointer?], _ choice: SparseChoice,
    probes: Bool = false
  ) -> SparseWeights? {
    guard choice != .never, inputs.count >= 2, let x = inputs[0], let w = inputs[1], w.isConstant, let wp = data[1] else { return nil }
    let n: Int, k: Int
    if node.op == .fullyConnected {
      guard w.shape.count == 2, (try? node.attrs.int(.weightFormat, default: 0)) == 0 else { return nil }
      n = w.shape[0]
      k = w.shape[1]
    } else if node.op == .conv2D {
      // 1x1, stride 1, one group, no explicit padding (SAME adds none to a 1x1 window).
      let a = node.attrs
      let strides = (try? a.ints(.strides, count: 2, default: [1, 1], in: 1...(1 << 20))) ?? [0, 0]
      let padding = (try? a.int(.padding, default: 0, in: 0...2)) ?? -1
      let pads = padding == 2 ? ((try? a.ints(.pads, count: 4, default: [0, 0, 0, 0], in: 0...(1 << 20))) ?? [1]) : [0]
      guard w.shape.count == 4, w.shape[1] == 1, w.shape[2] == 1, x.shape.count == 4,
        (try? a.int(.groups, default: 1)) == 1, strides == [1, 1], padding >= 0, pads.allSatisfy({ $0 == 0 })
      else { return nil }
      n = w.shape[0]
      k = w.shape[3]
    } else {
      return nil
    }
    guard n >= 1, k >= 1, choice == .always || n &* k >= 256, x.shape.count >= 1, x.shape[x.shape.count - 1] == k else { return nil }
    let rows = x.count / k
    let int8 = x.dtype == .int8 && w.dtype == .int8
    guard int8 || (x.dtype == .float32 && w.dtype == .float32) else { return nil }
    // int8: the sparse kernel reads weight zeros as zeros: symmetric weights only.
    if int8 {
      guard let q = w.quant, q.zeroPoints.allSatisfy({ $0 == 0 }) else { return nil }
    }
    // The float32 output stage of a 1x1 convolution is fused into the int8 tiles.
    let fused = int8 && node.op == .conv2D && (try? node.attrs.int(.requantization, default: 0, in: 0...1)) == 1
    // int8 2:4 weights of several rows: the int8 2:4 kernel (`q8_nm24`) on
    // the same terms as float32's below (`nm24PaysInt8`), on layers of at
    // least 8 inputs and outputs and 384 weights, 64 inputs without the
    // fused float32 output stage (`nm24MinInt8`).
    if int8, rows >= 2, k % 4 == 0,
      choice == .always
        || (nm24PaysInt8 && min(n, k) >= nm24MinInt8.side && n &* k >= nm24MinInt8.weights
          && (fused || k >= nm24MinInt8.depthUnfused))
    {
      let p = UnsafePointer(wp.assumingMemoryBound(to: Int8.self))
      if let nnz = nm24Nonzeros(p, n: n, k: k) {
        let tiled = maxDensity(rows: rows, k: k, int8: true, fusedStage: fused, weightBytes: n &* k) ?? 0
        if Double(nnz) / Double(n &* k) > tiled {
          return try? SparseWeights(nm24q: p, n: n, k: k, nnz: nnz)
        }
      }
    }
    // 2:4 weights (at most 2 nonzeros in every 4 consecutive input channels
    // of each output channel) on several rows: the 2:4 kernel (`f32_nm24`),
    // where the unstructured tiles would not be chosen (denser than their
    // threshold) and the level's 2:4 kernel measured faster than the dense
    // GEMM (`nm24Pays`), or always with `.always`.
    // Where the level's rule does not take it, but it may pay (`nm24Probes`),
    // it is a probe: timed at load.
    if !int8, rows >= 2, k % 4 == 0, choice == .always || nm24Pays || (probes && nm24Probes) {
      let p = UnsafePointer(wp.assumingMemoryBound(to: Float.self))
      if let nnz = nm24Nonzeros(p, n: n, k: k) {
        let tiled = maxDensity(rows: rows, k: k, int8: false, weightBytes: n &* k &* 4) ?? 0
        if Double(nnz) / Double(n &* k) > tiled {
          let s = try? SparseWeights(nm24: p, n: n, k: k, nnz: nnz)
          s?.probe = choice == .auto && !nm24Pays
          return s
        }
      }
    }
    // The count stops once the op's threshold cannot be met (`.auto`):
    // dense weights are read only up to the highest density that may pay,
    // not whole, and not at all where none does (a cached load maps the
    // packed weights and would read the file's weights only for this count;
    // docs/caching.md).
    let total = n &* k
    var limit = 1.0
    // The rule's threshold, and the density up to which a one-row float32
    // op is a probe (timed at load) where the rule does not take it.
    var rule: Double? = nil
    if choice != .always {
      rule = maxDensity(rows: rows, k: k, int8: int8, fusedStage: fused, weightBytes: total &* (int8 ? 1 : 4))
      let probing = probes && !int8 && rows == 1 && total &* 4 >= minProbeRowWeightBytes ? probeDensityRow : 0
      guard rule != nil || probing > 0 else { return nil }
      limit = max(rule ?? 0, probing)
    }
    let cap = choice == .always ? total : Int(Double(total) * limit) &+ 1
    let nnz =
      int8
      ? ti_shim_count_nonzero_i8(UnsafePointer(wp.assumingMemoryBound(to: Int8.self)), total, cap)
      : ti_shim_count_nonzero_f32(UnsafePointer(wp.assumingMemoryBound(to: Float.self)), total, cap)
    guard nnz <= cap else { return nil }
    let density = Double(nnz) / Double(total)
    guard choice == .always ? density < 1 : density <= limit else { return nil }
    let s: SparseWeights?
    if int8 {
      s = try? SparseWeights(
        n: n, k: k, nnz: nnz, floats: nil, int8s: UnsafePointer(wp.assumingMemoryBound(to: Int8.self)))
    } else {
      s = try? SparseWeights(
        n: n, k: k, nnz: nnz, floats: UnsafePointer(wp.assumingMemoryBound(to: Float.self)), int8s: nil)
    }
    if choice == .auto {
      if let rule, density <= rule { s?.threshold = rule } else { s?.probe = true }
    }
    return s
  }

  /// The many-rows path's buffers, per thread: `tile` row pointers and the
  /// kernel's k x tile scratch (of `S`), for rows of `X`.
  struct Tiles<X, S> {
    let k: Int
    let tile: Int
    let minRows: Int
    let pointers: Scratch<UnsafePointer<X>?>
    let scratch: Scratch<S>

    init(_ s: SparseWeights, tile: Int, threads: Int) throws(TinfError) {
      k = s.k
      self.tile = tile
      minRows = max(tile, minChunkFor(perItem: max(1, s.nnz), grain: 1 << 15))
      pointers = try Scratch<UnsafePointer<X>?>(count: threads &* tile)
      scratch = try Scratch<S>(count: threads &* s.k &* tile &+ 16)
    }

    /// The m rows of x (k elements each, contiguous) in chunks over the
    /// pool, each chunk in tiles of up to `tile` rows: `body(chunk, rows,
    /// count, r, buf)` with rows[i] = x + (r + i) * k for i < count and buf
    /// the chunk's scratch.
    @inline(__always)
    func forEach(
      _ pool: ThreadPool, m: Int, x: UnsafePointer<X>,
      _ body: (Int, UnsafePointer<UnsafePointer<X>>, Int, Int, UnsafeMutablePointer<S>) -> Void
    ) {
      forEachChunk(pool, m, minChunk: minRows) { chunk, range in
        let ptrs = UnsafeMutableRawPointer(pointers.base + chunk &* tile).assumingMemoryBound(to: UnsafePointer<X>.self)
        let buf = scratch.base + chunk &* k &* tile
        var r = range.lowerBound
        while r < range.upperBound {
          let count = min(tile, range.upperBound &- r)
          for i in 0..<count { ptrs[i] = x + (r &+ i) &* k }
          body(chunk, UnsafePointer(ptrs), count, r, buf)
          r &+= count
        }
      }
    }
  }

  /// float32: rows of x (m rows of k floats, contiguous) times the sparse
  /// weights, plus bias, clamped to [lo, hi], into y (m rows of n).
  static func bindFloat(
    _ s: SparseWeights, x: UnsafePointer<Float>, m: Int, bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>,
    lo: Float, hi: Float, pool: ThreadPool
  ) throws(TinfError) -> KernelFn {
    let kern = kernels
    let (n, k, start, idx) = (s.n, s.k, s.startPointer, s.idxPointer)
    if let nm = s.nm24 {
      // 2:4: the rows in place (NHWC, no transposition), any count.
      let (val, sel) = (UnsafePointer(nm.val.base), UnsafePointer(nm.sel.base))
      let minRows = max(8, minChunkFor(perItem: max(1, s.nnz), grain: 1 << 15))
      return { () throws(TinfError) in
        withExtendedLifetime(s) {}
        forEachChunk(pool, m, minChunk: minRows) { _, rows in
          kern.f32_nm24(
            x + rows.lowerBound &* k, k, rows.count, k, val, sel, bias, n, lo, hi, y + rows.lowerBound &* n, n)
        }
      }
    }
    guard let vals = s.floats else { throw TinfError(.internal, "sparse weights are not float32") }
    let val = UnsafePointer(vals.base)
    if m == 1 {
      let minChannels = max(16, minChunkFor(perItem: max(1, s.nnz / n), grain: 1 << 15))
      return { () throws(TinfError) in
        withExtendedLifetime(s) {}
        pool.parallelRanges(n, minChunk: minChannels) { cs in
          kern.f32_row(x, start, idx, val, bias, cs.lowerBound, cs.upperBound, lo, hi, y)
        }
      }
    }
    let tiles = try Tiles<Float, Float>(s, tile: kern.tile, threads: pool.threads)
    return { () throws(TinfError) in
      withExtendedLifetime((s, tiles)) {}
      tiles.forEach(pool, m: m, x: x) { _, rows, count, r, buf in
        kern.f32_tile(rows, count, k, start, idx, val, bias, 0, n, lo, hi, y + r &* n, n, buf)
      }
    }
  }

  /// int8: acc = bias + sum w (x - zp_x) over the nonzeros (exact int32), then
  /// the dense kernels' output stage (`table`), rows of m x k int8 into m x n.
  static func bindInt8(
    _ s: SparseWeights, x: UnsafePointer<Int8>, m: Int, bias: UnsafePointer<Int32>?, xZeroPoint: Int32,
    y: UnsafeMutablePointer<Int8>, table: QRequantTable, yz: Int32, lo: Int32, hi: Int32, pool: ThreadPool
  ) throws(TinfError) -> KernelFn {
    let kern = kernels
    let (n, k, start, idx) = (s.n, s.k, s.startPointer, s.idxPointer)
    if let packed = s.nm24q, let sums = s.sums {
      return try bindInt8NM24(
        s, packed: packed, sums: sums, x: x, m: m, bias: bias, xZeroPoint: xZeroPoint, y: y, table: table, yz: yz,
        lo: lo, hi: hi, pool: pool)
    }
    guard let vals = s.int8s, let sums = s.sums else { throw TinfError(.internal, "sparse weights are not int8") }
    let val = UnsafePointer(vals.base)
    let initial = try Scratch<Int32>(count: n)
    for c in 0..<n { initial.base[c] = (bias?[c] ?? 0) &- xZeroPoint &* sums.base[c] }
    let ini = UnsafePointer(initial.base)
    let threads = pool.threads
    if m == 1 {
      let acc = try Scratch<Int32>(count: n)
      let minChannels = max(16, minChunkFor(perItem: max(1, s.nnz / n), grain: 1 << 15))
      return { () throws(TinfError) in
        withExtendedLifetime((s, initial, acc)) {}
        pool.parallelRanges(n, minChunk: minChannels) { cs in
          kern.q8_row(x, start, idx, val, ini, cs.lowerBound, cs.upperBound, acc.base)
          table.requantize(
            acc.base + cs.lowerBound, from: cs.lowerBound, zp: yz, lo: lo, hi: hi, y + cs.lowerBound, cs.count)
        }
      }
    }
    let tiles = try Tiles<Int8, Int32>(s, tile: kern.tile, threads: threads)
    // The tiles sum in float (exact) while no channel has more than 1024
    // nonzeros (SP_Q8_FLOAT_MAX_K): then they take the values as floats,
    // converted once here (4 bytes a nonzero, for this session).
    var most = 0
    for c in 0..<n { most = max(most, Int(start[c &+ 1] &- start[c])) }
    let fvals = most <= 1024 ? try Scratch<Float>(count: max(1, s.nnz)) : nil
    if let fvals { for j in 0..<s.nnz { fvals.base[j] = Float(val[j]) } }
    let fval = fvals.map { UnsafePointer($0.base) }
    // A float32 output stage (QRequantTable.isFloat) fused into the float
    // tiles: the int8 outputs directly, no int32 sums stored and reread.
    if let fval, table.isFloat, lo >= -128, hi <= 127, lo <= hi {
      let scales = try Scratch<Float>(count: n)
      for c in 0..<n { scales.base[c] = table.floatScale(c) }
      let sc = UnsafePointer(scales.base)
      return { () throws(TinfError) in
        withExtendedLifetime((s, tiles, initial, fvals, scales)) {}
        tiles.forEach(pool, m: m, x: x) { chunk, rows, count, r, buf in
          kern.q8_tile_rq(rows, count, k, start, idx, fval, ini, sc, yz, lo, hi, 0, n, y + r &* n, n, buf)
        }
      }
    }
    let accs = try Scratch<Int32>(count: threads &* kern.tile &* n)
    return { () throws(TinfError) in
      withExtendedLifetime((s, tiles, initial, accs, fvals)) {}
      tiles.forEach(pool, m: m, x: x) { chunk, rows, count, r, buf in
        let acc = accs.base + chunk &* tiles.tile &* n
        kern.q8_tile(rows, count, k, start, idx, val, fval, ini, 0, n, acc, n, buf)
        // The tile's rows at once: the output stage's constants are
        // prepared once per block of 16 channels, not once per row.
        table.requantizePixels(UnsafePointer(acc), count, zp: yz, lo: lo, hi: hi, y + r &* n)
      }
    }
  }

  /// int8 2:4 (`q8_nm24`): the rows in place (NHWC), the float32 output
  /// stage fused into the kernel, other stages through int32 sums of up to
  /// 8 rows at a time and `requantizePixels`.
  static func bindInt8NM24(
    _ s: SparseWeights, packed: Scratch<Int32>, sums: Scratch<Int32>, x: UnsafePointer<Int8>, m: Int,
    bias: UnsafePointer<Int32>?, xZeroPoint: Int32, y: UnsafeMutablePointer<Int8>, table: QRequantTable, yz: Int32,
    lo: Int32, hi: Int32, pool: ThreadPool
  ) throws(TinfError) -> KernelFn {
    let kern = kernels
    let (n, k) = (s.n, s.k)
    // The kernel sums (x + 128) w: initial = bias - (128 + zp_x) sum w.
    let initial = try Scratch<Int32>(count: n)
    let offset = 128 &+ xZeroPoint
    for c in 0..<n { initial.base[c] = (bias?[c] ?? 0) &- offset &* sums.base[c] }
    let ini = UnsafePointer(initial.base)
    let pk = UnsafePointer(packed.base)
    let ku = (k &+ 7) / 8 &* 8 &+ 16
    let scratch = try Scratch<UInt8>(count: pool.threads &* 8 &* ku &+ 64)
    let minRows = max(8, minChunkFor(perItem: max(1, s.nnz), grain: 1 << 15))
    if table.isFloat, lo >= -128, hi <= 127, lo <= hi {
      let scales = try Scratch<Float>(count: n)
      for c in 0..<n { scales.base[c] = table.floatScale(c) }
      let sc = UnsafePointer(scales.base)
      return { () throws(TinfError) in
        withExtendedLifetime((s, initial, scratch, scales)) {}
        forEachChunk(pool, m, minChunk: minRows) { chunk, rows in
          kern.q8_nm24(
            x + rows.lowerBound &* k, k, rows.count, k, pk, ini, n, sc, yz, lo, hi,
            UnsafeMutableRawPointer(y + rows.lowerBound &* n), n, scratch.base + chunk &* 8 &* ku)
        }
      }
    }
    let accs = try Scratch<Int32>(count: pool.threads &* 8 &* n)
    return { () throws(TinfError) in
      withExtendedLifetime((s, initial, scratch, accs)) {}
      forEachChunk(pool, m, minChunk: minRows) { chunk, rows in
        let acc = accs.base + chunk &* 8 &* n
        var r = rows.lowerBound
        while r < rows.upperBound {
          let count = min(8, rows.upperBound &- r)
          kern.q8_nm24(
            x + r &* k, k, count, k, pk, ini, n, nil, 0, 0, 0, UnsafeMutableRawPointer(acc), n,
            scratch.base + chunk &* 8 &* ku)
          table.requantizePixels(UnsafePointer(acc), count, zp: yz, lo: lo, hi: hi, y + r &* n)
          r &+= count
        }
      }
    }
  }
}
