import TinyInferShims

/// FullyConnected: x [..., K] times w [N, K] transposed, plus bias [N], with
/// a fused activation. Leading dims of x are kept.
enum FullyConnectedKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 2...3)
    let x = try required(inputs, 0, "x")
    let w = try required(inputs, 1, "weights")
    try requireFloat(x, "input")
    guard x.shape.count >= 1 else { throw .shape("input must have rank >= 1") }
    let k = x.shape[x.shape.count - 1]
    // Quantized weights with float activations (docs/quantization.md):
    // int8 per channel (int8-dynamic), or int4 blocks (weight_format 1).
    let format = try node.attrs.int(.weightFormat, default: 0, in: 0...1)
    if format == WeightFormat.q4Blocks {
      try HybridFullyConnected.checkQ4Weights(w, k: k)
    } else if w.dtype == .int8 {
      try HybridFullyConnected.checkInt8Weights(w)
    } else {
      try requireFloat(w, "weights")
    }
    guard w.shape.count == 2 else { throw .shape("weights must be [N, K], got \(describe(w.shape))") }
    guard format == WeightFormat.q4Blocks || w.shape[1] == k else {
      throw .shape("input depth \(k) does not match the weights \(describe(w.shape)) ([N, K])")
    }
    if inputs.count == 3, let b = inputs[2] {
      try requireFloat(b, "bias")
      guard b.shape.reduce(1, &*) == w.shape[0] && b.shape.last == w.shape[0] else {
        throw .shape("bias \(describe(b.shape)) must have \(w.shape[0]) elements")
      }
    }
    _ = try Activation.from(node.attrs)
    var out = x.shape
    out[out.count - 1] = w.shape[0]
    return [TensorType(.float32, out)]
  }

  /// Whether the load packs an op's float32 weights [n, k] for the packed
  /// GEMM, given the rows of the file's input. Not large weights (1 MB and
  /// more) of a one-row op, a classifier's head: for one row the dot
  /// products over the weights as they are (`Gemm.abT`) stream the same
  /// bytes as the packed panels, so packing them costs the load its time,
  /// a second copy in memory and the prepack image its size (and checksum)
  /// for nothing; a session of several rows packs its own copy at bind
  /// (`sessionPackRows`).
  static func packsAtLoad(rows: Int, n: Int, k: Int) -> Bool {
    rows != 1 || n &* k &* 4 < inPlaceBytes
  }

  /// From this many bytes of float32 weights, a one-row op's are read in
  /// place (`packsAtLoad`; `Model` maps their pages at load).
  static let inPlaceBytes = 1 << 20

  /// The rows from which a session packs weights the load left unpacked.
  static let sessionPackRows = 4

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    if try ctx.attrs.int(.weightFormat, default: 0, in: 0...1) == WeightFormat.q4Blocks {
      return try HybridFullyConnected.bindQ4(ctx, try Activation.from(ctx.attrs))
    }
    if ctx.inputs[1]!.dtype == .int8 { return try HybridFullyConnected.bindInt8(ctx, try Activation.from(ctx.attrs)) }
    let x = ctx.floatIn(0)
    let w = ctx.floatIn(1)
    let bias = ctx.optionalFloatIn(2)
    let y = ctx.floatOut(0)
    let k = ctx.inputs[1]!.shape[1]
    let n = ctx.inputs[1]!.shape[0]
    let m = ctx.inputs[0]!.count / k
    let act = try Activation.from(ctx.attrs)
    let pool = ctx.pool
    if let s = ctx.sparse {
      let (lo, hi) = act.range
      return try SparseGemm.bindFloat(s, x: x, m: m, bias: bias, y: y, lo: lo, hi: hi, pool: pool)
    }
    var packedWeights = ctx.packed
    if packedWeights == nil, m >= sessionPackRows, ctx.inputs[1]!.isConstant {
      packedWeights = PackedWeights(w, n: n, k: k)  // left unpacked by the load (packsAtLoad): this session's own
    }
    if let packed = packedWeights {
      // The packed micro-kernels (1x16 for a single row) on weights packed at
      // load; rows split over threads, or column panels for a GEMV.
      let wp = UnsafePointer(packed.ptr)
      let (lo, hi) = act.range
      let panels = (n + PackedGemm.nr - 1) / PackedGemm.nr
      let kern = PackedGemm.kernels
      let minRows = max(kern.gemm_mr, minChunkFor(perItem: k &* n, grain: 1 << 15))
      let minPanels = max(1, minChunkFor(perItem: m &* k &* PackedGemm.nr, grain: 1 << 15))
      return { () throws(TinfError) in
        _ = packed
        if m >= kern.gemm_mr &* pool.threads || panels < 2 {
          pool.parallelRanges(m, minChunk: minRows) { rows in
            PackedGemm.runStrided(
              kern, rows: rows, a: x, lda: k, panels: 0..<panels, k: k, n: n, packed: wp, bias: bias, lo: lo, hi: hi,
              y: y, ldy: n)
          }
        } else {
          pool.parallelRanges(panels, minChunk: minPanels) { ps in
            PackedGemm.runStrided(
              kern, rows: 0..<m, a: x, lda: k, panels: ps, k: k, n: n, packed: wp, bias: bias, lo: lo, hi: hi, y: y,
              ldy: n)
          }
        }
      }
    }
    // Split rows when there are several, else split the outputs.
    let work = m &* n &* k
    let kern = PackedGemm.kernels
    return { () throws(TinfError) in
      splitRowsOrColumns(pool, rows: m, cols: n, minCols: 16, macs: work) { rows, cols in
        Gemm.abT(kern, x, lda: k, w, ldw: k, bias, y, ldy: n, rows: rows, cols: cols, k: k)
      }
      act.apply(y, m &* n)
    }
  }
}
