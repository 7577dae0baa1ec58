import TinyInferShims

/// Softmax and LogSoftmax over any axis, with `beta` (softmax(beta * x)).
/// Numerically stable: the row maximum is subtracted first.
enum SoftmaxKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 1...1)
    let x = try required(inputs, 0, "x")
    try requireFloat(x, "input")
    guard x.shape.count >= 1 else { throw .shape("input must have rank >= 1") }
    _ = try normalizeAxis(try node.attrs.int(.axis, default: -1), rank: x.shape.count)
    let beta = try node.attrs.float(.beta, default: 1)
    guard beta.isFinite else { throw .unsupported("beta must be finite") }
    return [TensorType(.float32, x.shape)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let shape = ctx.inputs[0]!.shape
    let axis = try normalizeAxis(try ctx.attrs.int(.axis, default: -1), rank: shape.count)
    let beta = try ctx.attrs.float(.beta, default: 1)
    let log = ctx.node.op == .logSoftmax
    let len = shape[axis]
    var inner = 1
    for i in (axis + 1)..<shape.count { inner *= shape[i] }
    let outer = ctx.outputs[0].count / (len * inner)
    let x = ctx.floatIn(0)
    let y = ctx.floatOut(0)
    let pool = ctx.pool
    let kern = PackedGemm.kernels
    return { () throws(TinfError) in
      if inner == 1 && !log {
        // Contiguous rows: one C kernel per row (tinyinfer_kernels_f32.h
        // softmax_row: max, shifted exp, sum, scale, each vectorized).
        pool.parallelRanges(outer, minChunk: max(1, 4096 / len)) { range in
          for r in range {
            let xr = x + r &* len
            let yr = y + r &* len
            if beta >= 0 {
              kern.softmax_row(xr, yr, len, beta)
            } else {
              // A negative beta: the largest beta * x comes from the
              // smallest x, so take the maximum of the products directly.
              var m = -Float.infinity
              for j in 0..<len { m = Swift.max(m, xr[j] * beta) }
              for j in 0..<len { yr[j] = xr[j] * beta - m }
              kern.exp(yr, yr, len)
              var sum: Float = 0
              for j in 0..<len { sum += yr[j] }
              let s = 1 / sum
              for j in 0..<len { yr[j] *= s }
            }
          }
        }
        return
      }
      pool.parallelRanges(outer &* inner, minChunk: max(1, 4096 / len)) { range in
        for r in range {
          let o = r / inner
          let i = r &- o &* inner
          let base = o &* len &* inner &+ i
          var mx = -Float.infinity
          for j in 0..<len {
            let v = x[base &+ j &* inner] * beta
            if v > mx || v.isNaN { mx = v }
          }
          var sum: Float = 0
          for j in 0..<len {
            let e = FastMath.expScalar(x[base &+ j &* inner] * beta - mx)
            sum += e
            if !log { y[base &+ j &* inner] = e }
          }
          if log {
            let lse = flog(sum)
            for j in 0..<len {
              let p = base &+ j &* inner
              y[p] = x[p] * beta - mx - lse
            }
          } else {
            let s = 1 / sum
            for j in 0..<len { y[base &+ j &* inner] *= s }
          }
        }
      }
    }
  }
}
