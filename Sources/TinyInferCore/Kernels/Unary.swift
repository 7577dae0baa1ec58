import TinyInferShims

/// The elementwise unary functions (Registry.variant maps ops to them).
enum UnaryOp { case relu, relu6, leakyRelu, hardSwish, logistic, tanh, gelu, exp, log, sqrt, rsqrt, floor, ceil, round, erf }

/// Elementwise unary ops: Relu, Relu6, LeakyRelu, HardSwish, Logistic, Tanh,
/// Gelu (exact and tanh), Exp, Log, Sqrt, Rsqrt, Erf, Floor, Ceil, Round
/// (ties to even). All may run in place. The transcendental ones are C
/// kernels per CPU level (tinyinfer_kernels_f32.h, tinyinfer_kernels_math.h).
enum UnaryKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 1...1)
    let x = try required(inputs, 0, "x")
    try requireFloat(x, "input")
    switch try Registry.unaryOp(node) {
    case .leakyRelu: _ = try node.attrs.float(.alpha, default: 0.2)
    case .gelu: _ = try node.attrs.int(.approximate, default: 0, in: 0...1)
    case .relu, .relu6, .hardSwish, .logistic, .tanh, .exp, .log, .sqrt, .rsqrt, .floor, .ceil, .round, .erf: break
    }
    return [TensorType(.float32, x.shape)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let x = ctx.floatIn(0)
    let y = ctx.floatOut(0)
    let n = ctx.outputs[0].count
    let pool = ctx.pool
    let kern = PackedGemm.kernels
    let math = ti_math_kernels_get().pointee
    /// A math-table kernel over the tensor, split over threads when large.
    func mapped(_ f: @escaping @convention(c) (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void)
      -> KernelFn
    {
      return { () throws(TinfError) in
        pool.parallelRanges(n, minChunk: chunk) { r in f(x + r.lowerBound, y + r.lowerBound, r.count) }
      }
    }
    // Transcendental ops are worth splitting over threads on large tensors.
    let chunk = 16384
    switch try Registry.unaryOp(ctx.node) {
    case .relu:
      return { () throws(TinfError) in mapSIMD(x, y, n) { v in v.replacing(with: 0, where: v .< 0) } }
    case .relu6:
      return { () throws(TinfError) in
        mapSIMD(x, y, n) { v in
          v.replacing(with: 0, where: v .< 0).replacing(with: 6, where: v .> 6)
        }
      }
    case .leakyRelu:
      let alpha = try ctx.attrs.float(.alpha, default: 0.2)
      return { () throws(TinfError) in
        mapSIMD(x, y, n) { v in
          var r = v * alpha
          r.replace(with: v, where: v .>= 0)
          return r
        }
      }
    case .hardSwish:
      // x min(max(x + 3, 0), 6) / 6 (the level's C kernel: the SIMD8 form
      // here ran about one element a cycle).
      let hardSwish = math.hard_swish
      return { () throws(TinfError) in hardSwish(x, y, n) }
    case .logistic:
      return { () throws(TinfError) in
        pool.parallelRanges(n, minChunk: chunk) { r in
          kern.logistic(x + r.lowerBound, y + r.lowerBound, r.count)
        }
      }
    case .tanh:
      return mapped(math.tanh)
    case .gelu:
      if try ctx.attrs.int(.approximate, default: 0, in: 0...1) == 1 {
        return mapped(math.gelu_tanh)
      }
      return { () throws(TinfError) in
        pool.parallelRanges(n, minChunk: chunk) { r in
          kern.gelu(x + r.lowerBound, y + r.lowerBound, r.count)
        }
      }
    case .exp:
      return { () throws(TinfError) in
        pool.parallelRanges(n, minChunk: chunk) { r in kern.exp(x + r.lowerBound, y + r.lowerBound, r.count) }
      }
    case .log:
      return mapped(math.log)
    case .erf:
      return mapped(math.erf)
    case .floor:
      return mapped(math.floor)
    case .ceil:
      return mapped(math.ceil)
    case .round:
      return mapped(math.round)
    case .sqrt:
      return { () throws(TinfError) in mapSIMD(x, y, n) { v in v.squareRoot() } }
    case .rsqrt:
      return { () throws(TinfError) in mapSIMD(x, y, n) { v in 1 / v.squareRoot() } }
    }
  }
}

/// y[i] = f(x[i]) eight lanes at a time (x and y may be the same buffer).
@inline(__always)
func mapSIMD(
  _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, _ f: (SIMD8<Float>) -> SIMD8<Float>
) {
  var i = 0
  let src = UnsafeRawPointer(x)
  let dst = UnsafeMutableRawPointer(y)
  while i &+ 8 <= n {
    let v = src.loadUnaligned(fromByteOffset: i &* 4, as: SIMD8<Float>.self)
    dst.storeBytes(of: f(v), toByteOffset: i &* 4, as: SIMD8<Float>.self)
    i &+= 8
  }
  if i < n {
    var v = SIMD8<Float>(repeating: 0)
    for j in 0..<(n &- i) { v[j] = x[i &+ j] }
    let r = f(v)
    for j in 0..<(n &- i) { y[i &+ j] = r[j] }
  }
}
