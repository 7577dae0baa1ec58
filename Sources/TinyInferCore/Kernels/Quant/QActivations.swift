import TinyInferShims

/// int8 Relu, Relu6, LeakyRelu, HardSwish, Logistic and Tanh. Each output
/// value depends only on the input value, so bind computes the 256-entry
/// table of TFLite's arithmetic for the tensor's parameters and a run is a
/// table lookup (safe in place).
///
/// - Relu, Relu6 (QuantizedReluX): `clamp(zp_y + MBQM(x - zp_x, s_x / s_y))`
///   to `[max(-128, zp_y), 127]`, resp. `min(127, zp_y + round(6 / s_y))`.
/// - LeakyRelu: MBQM by `s_x / s_y` for x >= zp_x, by `alpha s_x / s_y` below.
/// - HardSwish: TFLite's reference_ops::HardSwish, 16-bit fixed point.
/// - Logistic, Tanh: TFLite's int8 table (LUTPopulate): the input value
///   dequantized in float, `1 / (1 + expf(-v))` resp. `tanhf(v)` from the C
///   library, `round(f / s_y) + zp_y` clamped.
enum QActivationKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 1...1)
    let x = try required(inputs, 0, "x")
    guard node.op.traits.int8 == .always else {
      throw TinfError(
        .unsupportedDType,
        "\(node.op.name) has no int8 kernel (int8: Relu, Relu6, LeakyRelu, HardSwish, Logistic, Tanh); "
          + "dequantize its input first")
    }
    try QCheck.requireInt8(x, "input")
    _ = try QCheck.perTensor(x, "input")
    if try Registry.unaryOp(node) == .leakyRelu {
      let alpha = try node.attrs.float(.alpha, default: 0.2)
      guard alpha.isFinite else { throw .unsupported("alpha must be finite") }
    }
    return [TensorType(.int8, x.shape)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let xd = ctx.inputs[0] else { throw .format("missing input") }
    let xq = try QCheck.perTensor(xd, "input")
    let yq = try QCheck.output(ctx)
    let table: [Int8]
    switch try Registry.unaryOp(ctx.node) {
    case .relu: table = try reluTable(xq, yq, six: false)
    case .relu6: table = try reluTable(xq, yq, six: true)
    case .leakyRelu: table = try leakyReluTable(xq, yq, alpha: try ctx.attrs.float(.alpha, default: 0.2))
    case .hardSwish: table = try hardSwishTable(xq, yq)
    case .logistic: table = floatTable(xq, yq) { v in 1 / (1 + fexp(-v)) }
    case .tanh: table = floatTable(xq, yq) { v in ti_shim_tanhf(v) }
    case .gelu, .exp, .log, .sqrt, .rsqrt, .floor, .ceil, .round, .erf:
      throw TinfError(.unsupportedDType, "\(ctx.node.op.name) has no int8 kernel")
    }
    let lut = try QBuffer(int8: table)
    guard let xp = ctx.inputData[0] else { throw TinfError(.internal, "missing data") }
    let x = UnsafePointer(xp.assumingMemoryBound(to: Int8.self))
    let y = ctx.outputData[0].assumingMemoryBound(to: Int8.self)
    let n = xd.count
    let pool = ctx.pool
    return { () throws(TinfError) in
      let t = UnsafePointer(lut.int8)
      if pool.threads > 1 && n >= 1 << 18 {
        pool.parallelRanges(n, minChunk: 1 << 16) { r in
          lookup256(x + r.lowerBound, y + r.lowerBound, t, r.count)
        }
      } else {
        lookup256(x, y, t, n)
      }
    }
  }

  /// Int32(f) for a float already rounded, saturating (NaN gives 0).
  @inline(__always)
  static func toInt32(_ f: Float) -> Int64 {
    if f.isNaN { return 0 }
    if f >= 2147483648.0 { return Int64(Int32.max) }
    if f <= -2147483648.0 { return Int64(Int32.min) }
    return Int64(Int32(f))
  }

  static func reluTable(_ xq: QParams, _ yq: QParams, six: Bool) throws(TinfError) -> [Int8] {
    let m = try FixedPoint.requantization(Double(xq.scale / yq.scale), "Relu")
    let lo = max(-128, Int64(yq.zeroPoint))
    var hi: Int64 = 127
    if six { hi = min(127, Int64(yq.zeroPoint) + toInt32((6 / yq.scale).rounded(.toNearestOrAwayFromZero))) }
    var t = [Int8](repeating: 0, count: 256)
    for v in -128...127 {
      let r = Int64(yq.zeroPoint &+ FixedPoint.mul(Int32(v) &- xq.zeroPoint, m))
      t[v + 128] = Int8(truncatingIfNeeded: min(max(r, lo), hi))
    }
    return t
  }

  static func leakyReluTable(_ xq: QParams, _ yq: QParams, alpha: Float) throws(TinfError) -> [Int8] {
    let ma = try FixedPoint.requantization(Double((xq.scale * alpha) / yq.scale), "LeakyRelu")
    let mi = try FixedPoint.requantization(Double(xq.scale / yq.scale), "LeakyRelu")
    let negative = ma.multiplier < 0
    let safeAlpha = FixedPoint.Multiplier(multiplier: negative ? 0 &- ma.multiplier : ma.multiplier, shift: ma.shift)
    var t = [Int8](repeating: 0, count: 256)
    for v in -128...127 {
      let iv = Int32(v) &- xq.zeroPoint
      var out = yq.zeroPoint
      if iv >= 0 {
        out &+= FixedPoint.mul(iv, mi)
      } else {
        let s = FixedPoint.mul(iv, safeAlpha)
        out &+= negative ? 0 &- s : s
      }
      t[v + 128] = Int8(truncatingIfNeeded: min(max(out, -128), 127))
    }
    return t
  }

  /// TFLite HardSwishPrepare + reference_ops::HardSwish.
  static func hardSwishTable(_ xq: QParams, _ yq: QParams) throws(TinfError) -> [Int8] {
    let hires: Float = (1.0 / 128.0) * xq.scale
    let outputMultiplier = hires / yq.scale
    let reluishMultiplier = hires / (Float(3.0) / Float(32768.0))
    let mo = FixedPoint.quantize(Double(outputMultiplier))
    let mr = FixedPoint.quantize(Double(reluishMultiplier))
    guard mo.shift <= 0 else {
      throw .unsupported(
        "int8 HardSwish needs an output scale above the input scale / 128 (input \(xq.scale), output \(yq.scale))")
    }
    guard mr.shift <= 31 else { throw .unsupported("int8 HardSwish: the input scale \(xq.scale) is too large") }
    func down(_ m: Int32) -> Int16 {  // DownScaleInt32ToInt16Multiplier
      if m >= Int32.max - (1 << 15) { return Int16.max }
      return Int16(truncatingIfNeeded: (m &+ (1 << 15)) >> 16)
    }
    let outMult16 = down(mo.multiplier)
    let reluMult16 = down(mr.multiplier)
    let reluExp = mr.shift
    func saturatingLeftShift(_ v: Int16, _ amount: Int32) -> Int16 {
      let r = Int64(v) << Int64(amount)
      return Int16(truncatingIfNeeded: min(max(r, Int64(Int16.min)), Int64(Int16.max)))
    }
    var t = [Int8](repeating: 0, count: 256)
    for v in -128...127 {
      let inputValue = Int16(truncatingIfNeeded: Int32(v) &- xq.zeroPoint)
      let hiresValue = Int16(truncatingIfNeeded: Int32(inputValue) &* (1 << 7))
      let preshiftOutput = FixedPoint.srdhm16(hiresValue, outMult16)
      var reluish = hiresValue
      if reluExp > 0 { reluish = saturatingLeftShift(reluish, reluExp &- 1) }
      reluish = FixedPoint.srdhm16(reluish, reluMult16)
      if reluExp > 0 { reluish = saturatingLeftShift(reluish, 1) }
      if reluExp < 0 { reluish = FixedPoint.rdbpot16(reluish, -reluExp) }
      reluish = Int16(truncatingIfNeeded: (Int32(reluish) &+ (1 << 15)) >> 1)
      // SaturatingDoublingHighMul: truncating, not rounding.
      let product: Int16 =
        reluish == Int16.min && preshiftOutput == Int16.min
        ? Int16.max : Int16(truncatingIfNeeded: (Int32(reluish) &* Int32(preshiftOutput)) / (1 << 15))
      var out = FixedPoint.rdbpot16(product, -mo.shift)
      out = Int16(truncatingIfNeeded: Int32(out) &+ yq.zeroPoint)
      t[v + 128] = Int8(truncatingIfNeeded: min(max(out, -128), 127))
    }
    return t
  }

  /// TFLite LUTPopulate<int8_t> for a float transform.
  static func floatTable(_ xq: QParams, _ yq: QParams, _ f: (Float) -> Float) -> [Int8] {
    let inverse: Float = 1 / yq.scale
    var t = [Int8](repeating: 0, count: 256)
    for v in -128...127 {
      let dequantized = xq.scale * Float(Int32(v) &- xq.zeroPoint)
      let rescaled = (f(dequantized) * inverse).rounded(.toNearestOrAwayFromZero)
      let q = toInt32((rescaled + Float(yq.zeroPoint)).rounded(.towardZero))
      t[v + 128] = Int8(truncatingIfNeeded: min(max(q, -128), 127))
    }
    return t
  }
}
