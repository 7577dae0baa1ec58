/// BatchNorm (inference) over the last axis: (x - mean) / sqrt(var + eps) *
/// scale + bias, folded at bind time into y = x * s + t per channel.
enum BatchNormKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 5...5)
    let x = try required(inputs, 0, "x")
    try requireFloat(x, "input")
    guard let c = x.shape.last else { throw .shape("input must have rank >= 1") }
    let names = ["scale", "bias", "mean", "variance"]
    for i in 1...4 {
      let t = try required(inputs, i, names[i - 1])
      try requireFloat(t, names[i - 1])
      guard t.count == c else { throw .shape("\(names[i - 1]) \(describe(t.shape)) must have \(c) elements (channels last)") }
    }
    let eps = try node.attrs.float(.epsilon, default: 1e-5)
    guard eps >= 0 && eps.isFinite else { throw .unsupported("epsilon must be finite and >= 0") }
    return [TensorType(.float32, x.shape)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let c = ctx.inputs[0]!.shape.last!
    let eps = try ctx.attrs.float(.epsilon, default: 1e-5)
    let params = try Scratch<Float>(count: 2 * c)
    let s = params.base
    let t = s + c
    // Computed on every run from the inputs, which may be computed tensors;
    // constants make this a cheap per-channel prologue.
    let scale = ctx.floatIn(1)
    let bias = ctx.floatIn(2)
    let mean = ctx.floatIn(3)
    let variance = ctx.floatIn(4)
    let x = ctx.floatIn(0)
    let y = ctx.floatOut(0)
    let rows = ctx.outputs[0].count / c
    return { () throws(TinfError) in
      for j in 0..<c {
        let k = scale[j] / (variance[j] + eps).squareRoot()
        s[j] = k
        t[j] = bias[j] - mean[j] * k
      }
      // Eight channels a step (a multiply, then an add: the scalar form's
      // two roundings, no fused multiply-add); the element-wise loop over
      // rows of a few dozen channels took about 0.5 ns an element.
      for r in 0..<rows {
        let xr = x + r &* c
        let yr = y + r &* c
        var j = 0
        while j &+ 8 <= c {
          store8(load8(xr + j) * load8(UnsafePointer(s + j)) + load8(UnsafePointer(t + j)), yr + j)
          j &+= 8
        }
        while j < c {
          yr[j] = xr[j] * s[j] + t[j]
          j &+= 1
        }
      }
      _ = params
    }
  }
}
