import TinyInferShims

/// LayerNorm over the trailing dims from `axis`: (x - mean) / sqrt(var + eps)
/// * gamma + beta, with the biased variance; gamma and beta have the shape of
/// the normalized dims.
enum LayerNormKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    let (x, g) = try floatInputs(inputs, 2...3, "input", "gamma")
    guard x.shape.count >= 1 else { throw .shape("input must have rank >= 1") }
    let axis = try normalizeAxis(try node.attrs.int(.axis, default: -1), rank: x.shape.count)
    let normShape = Array(x.shape[axis...])
    let d = normShape.reduce(1, &*)
    guard g.shape == normShape || (g.count == d && g.shape.last == normShape.last) else {
      throw .shape("gamma \(describe(g.shape)) must have the normalized shape \(describe(normShape))")
    }
    if inputs.count == 3, let b = inputs[2] {
      try requireFloat(b, "beta")
      guard b.shape == normShape || (b.count == d && b.shape.last == normShape.last) else {
        throw .shape("beta \(describe(b.shape)) must have the normalized shape \(describe(normShape))")
      }
    }
    let eps = try node.attrs.float(.epsilon, default: 1e-5)
    guard eps >= 0 && eps.isFinite else { throw .unsupported("epsilon must be finite and >= 0") }
    return [TensorType(.float32, x.shape)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let shape = ctx.inputs[0]!.shape
    let axis = try normalizeAxis(try ctx.attrs.int(.axis, default: -1), rank: shape.count)
    let d = shape[axis...].reduce(1, &*)
    let rows = ctx.outputs[0].count / d
    let eps = try ctx.attrs.float(.epsilon, default: 1e-5)
    let x = ctx.floatIn(0)
    let g = ctx.floatIn(1)
    let b = ctx.optionalFloatIn(2)
    let y = ctx.floatOut(0)
    let pool = ctx.pool
    let kern = PackedGemm.kernels
    return { () throws(TinfError) in
      pool.parallelRanges(rows, minChunk: max(1, 8192 / d)) { range in
        // One C kernel per row (tinyinfer_kernels_f32.h layernorm_row): two
        // passes in float32 (mean, then variance), fine for the sizes of
        // normalization layers.
        for r in range { kern.layernorm_row(x + r &* d, y + r &* d, g, b, d, eps) }
      }
    }
  }
}
