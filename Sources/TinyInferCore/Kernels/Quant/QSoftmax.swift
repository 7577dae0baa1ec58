/// int8 Softmax: TFLite's reference quantized softmax (gemmlowp fixed point).
/// The output is always scale 1/256, zero point -128.
///
/// Per row: the difference to the row maximum (in [-255, 0]) is rescaled
/// by beta * s_x into Q5.26 (QuantizeMultiplierGreaterThanOne), exp is taken
/// in fixed point (exp_on_negative_values, Q0.31), the exps are summed in
/// Q12.19, the sum's reciprocal is taken (GetReciprocal), and each output is
/// `RoundingDivideByPOT(recip * exp, bits_over_unit + 23) - 128`. Differences
/// below diff_min (CalculateInputRadius) give -128. As the rescaled exp
/// depends only on the difference, it is tabulated (256 entries) at bind.
enum QSoftmaxKernel {
  struct Params {
    var multiplier: Int32
    var leftShift: Int32
    var diffMin: Int32
  }

  /// TFLite PreprocessSoftmaxScaling and CalculateInputRadius (5 integer bits).
  static func params(beta: Float, scale: Float) throws(TinfError) -> Params {
    let real = min(Double(beta) * Double(scale) * Double(1 << 26), Double((Int64(1) << 31) - 1))
    guard real > 1 else {
      throw .unsupported("int8 Softmax: beta (\(beta)) times the input scale (\(scale)) is too small")
    }
    let m = FixedPoint.quantize(real)
    let radius = (31.0 * Double(1 << 26) / Double(Int64(1) << Int64(m.shift))).rounded(.down)
    return Params(multiplier: m.multiplier, leftShift: m.shift, diffMin: -Int32(radius))
  }

  /// RoundingDivideByPOT, continued past 31 for the final scaling (TFLite
  /// stops with a check failure when a row's sum of exps reaches 2^28, about
  /// 512 elements at the maximum; the same rounding rule is kept there).
  @inline(__always)
  static func divideByPOT(_ x: Int32, _ e: Int32) -> Int32 {
    if e <= 31 { return FixedPoint.rdbpot(x, e) }
    let v = Int64(x)
    let mask = (Int64(1) << Int64(e)) &- 1
    let threshold = (mask >> 1) &+ (v < 0 ? 1 : 0)
    return Int32(truncatingIfNeeded: (v >> Int64(e)) &+ ((v & mask) > threshold ? 1 : 0))
  }

  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 1...1)
    let x = try required(inputs, 0, "x")
    if node.op == .logSoftmax {
      throw TinfError(.unsupportedDType, "LogSoftmax has no int8 kernel; dequantize its input first")
    }
    try QCheck.requireInt8(x, "input")
    let xq = try QCheck.perTensor(x, "input")
    guard x.shape.count >= 1 else { throw .shape("input must have rank >= 1") }
    let axis = try normalizeAxis(try node.attrs.int(.axis, default: -1), rank: x.shape.count)
    guard x.shape[axis] < 4096 else {
      throw .unsupported("int8 Softmax over \(x.shape[axis]) elements: at most 4095 (its Q12 sum would overflow)")
    }
    let beta = try node.attrs.float(.beta, default: 1)
    guard beta.isFinite && beta > 0 else { throw .unsupported("beta must be finite and positive for int8 Softmax") }
    _ = try params(beta: beta, scale: xq.scale)
    return [TensorType(.int8, x.shape)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let xd = ctx.inputs[0] else { throw .format("Softmax: missing input") }
    let xq = try QCheck.perTensor(xd, "input")
    let yq = try QCheck.output(ctx)
    guard yq.zeroPoint == -128, (yq.scale - 1.0 / 256).magnitude <= 0.001 / 256 else {
      throw .unsupported(
        "int8 Softmax writes scale 1/256, zero point -128 (as TFLite); the output declares scale \(yq.scale), "
          + "zero point \(yq.zeroPoint)")
    }
    let beta = try ctx.attrs.float(.beta, default: 1)
    let p = try params(beta: beta, scale: xq.scale)
    // exp (Q0.31) of each difference -d, d in 0...255, or -1 when below diff_min.
    var exps = [Int32](repeating: -1, count: 256)
    for d in 0...255 where -Int32(d) >= p.diffMin {
      let rescaled = FixedPoint.srdhm((-Int32(d)) &* (Int32(1) &<< p.leftShift), p.multiplier)
      exps[d] = FixedPoint.expOnNegativeValuesQ5(rescaled)
    }
    let table = try QBuffer(int32: exps)
    // The row sum's terms, RoundingDivideByPOT(exp, 12) (0 below diff_min), per difference.
    var terms = [Int32](repeating: 0, count: 256)
    for d in 0...255 where exps[d] >= 0 { terms[d] = FixedPoint.rdbpot(exps[d], 12) }
    let sumTerms = try QBuffer(int32: terms)
    let shape = xd.shape
    let axis = try normalizeAxis(try ctx.attrs.int(.axis, default: -1), rank: shape.count)
    let len = shape[axis]
    var inner = 1
    for i in (axis + 1)..<shape.count { inner &*= shape[i] }
    let outer = xd.count / (len &* inner)
    guard let xp = ctx.inputData[0] else { throw TinfError(.internal, "missing data") }
    let x = UnsafePointer(xp.assumingMemoryBound(to: Int8.self))
    let y = ctx.outputData[0].assumingMemoryBound(to: Int8.self)
    let pool = ctx.pool

    return { () throws(TinfError) in
      let e = UnsafePointer(table.int32)
      let t12 = UnsafePointer(sumTerms.int32)
      pool.parallelRanges(outer &* inner, minChunk: max(1, 4096 / len)) { range in
        // A row's outputs depend only on the difference to its maximum:
        // rows longer than their range of differences compute each
        // difference's output once (a 1000-class row: at most 256 instead
        // of 1000 fixed-point divisions), the same values.
        withUnsafeTemporaryAllocation(of: Int8.self, capacity: 256) { buffer in
          let outs = buffer.baseAddress!
          for r in range {
            let o = r / inner
            let i = r &- o &* inner
            let base = o &* len &* inner &+ i
            var mx = Int8.min
            var mn = Int8.max
            for j in 0..<len {
              let v = x[base &+ j &* inner]
              mx = max(mx, v)
              mn = min(mn, v)
            }
            var sum: Int32 = 0
            for j in 0..<len { sum &+= t12[Int(mx) &- Int(x[base &+ j &* inner])] }
            let (recip, bitsOverUnit) = FixedPoint.reciprocal(sum, integerDigits: 12)
            let exponent = bitsOverUnit &+ 31 &- 8
            @inline(__always) func output(_ d: Int) -> Int8 {
              let v = e[d]
              var out: Int32 = -128
              if v >= 0 {
                out = QSoftmaxKernel.divideByPOT(FixedPoint.srdhm(recip, v), exponent) &- 128
                out = min(max(out, -128), 127)
              }
              return Int8(truncatingIfNeeded: out)
            }
            let spread = Int(mx) &- Int(mn)
            if spread < len {
              for d in 0...spread { outs[d] = output(d) }
              for j in 0..<len { y[base &+ j &* inner] = outs[Int(mx) &- Int(x[base &+ j &* inner])] }
            } else {
              for j in 0..<len { y[base &+ j &* inner] = output(Int(mx) &- Int(x[base &+ j &* inner])) }
            }
          }
        }
      }
    }
  }
}
