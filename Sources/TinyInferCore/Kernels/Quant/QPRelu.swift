/// int8 PRelu (TFLite's reference_ops::BroadcastPrelu4DSlow, prelu.cc):
/// with `x' = x - zp_x` and `a' = alpha - zp_alpha`,
/// `y = clamp(zp_y + (x' >= 0 ? MBQM(x', s_x / s_y) : MBQM(x' a', s_x s_alpha / s_y)), -128, 127)`,
/// the two multipliers computed in float from the float scales, as prelu.cc
/// does. The slope broadcasts to x (numpy rules; the output is x's shape).
///
/// Each output depends only on the pair (x, alpha), so bind tabulates it: a
/// row of 256 outputs per alpha value, for the values a constant slope
/// holds (a row offset per slope element), or for all 256 when the slope
/// is computed at run time. A run is one table lookup per element.
enum QPReluKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 2...2)
    let x = try required(inputs, 0, "x")
    let a = try required(inputs, 1, "slope")
    try QCheck.requireInt8(x, "input")
    try QCheck.requireInt8(a, "slope")
    _ = try QCheck.perTensor(x, "input")
    _ = try QCheck.perTensor(a, "slope")
    guard try broadcastShapes(x.shape, a.shape) == x.shape else {
      throw .shape("slope \(describe(a.shape)) does not broadcast to the input \(describe(x.shape))")
    }
    return [TensorType(.int8, x.shape)]
  }

  /// The output for input value x and slope value a (both raw int8).
  static func value(_ x: Int32, _ a: Int32, _ xq: QParams, _ aq: QParams, _ yq: QParams,
                    _ m1: FixedPoint.Multiplier, _ m2: FixedPoint.Multiplier) -> Int8 {
    let xv = x &- xq.zeroPoint
    let v = xv >= 0 ? FixedPoint.mul(xv, m1) : FixedPoint.mul(xv &* (a &- aq.zeroPoint), m2)
    return Int8(max(-128, min(127, v &+ yq.zeroPoint)))
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let xd = ctx.inputs[0], let ad = ctx.inputs[1] else { throw .format("missing input") }
    let xq = try QCheck.perTensor(xd, "input")
    let aq = try QCheck.perTensor(ad, "slope")
    let yq = try QCheck.output(ctx)
    // prelu.cc: float products and quotients of the float scales, then QuantizeMultiplier.
    let m1 = try FixedPoint.requantization(Double(xq.scale / yq.scale), "PRelu")
    let m2 = try FixedPoint.requantization(Double(xq.scale * aq.scale / yq.scale), "PRelu")
    let plan = BroadcastPlan(xd.shape, ad.shape, ctx.outputs[0].shape)
    guard let xp = ctx.inputData[0], let ap = ctx.inputData[1] else { throw TinfError(.internal, "missing data") }
    let x = UnsafePointer(xp.assumingMemoryBound(to: Int8.self))
    let a = UnsafePointer(ap.assumingMemoryBound(to: Int8.self))
    let y = ctx.outputData[0].assumingMemoryBound(to: Int8.self)

    // Rows of the table: the slope values to tabulate, and each slope element's row offset.
    var rowOf = [Int32](repeating: -1, count: 256)
    var values: [Int32] = []
    let constant = ad.isConstant
    if constant {
      for k in 0..<ad.count where rowOf[Int(a[k]) &+ 128] < 0 {
        rowOf[Int(a[k]) &+ 128] = Int32(values.count &* 256)
        values.append(Int32(a[k]))
      }
    } else {
      for v in -128...127 {
        rowOf[v &+ 128] = Int32(values.count &* 256)
        values.append(Int32(v))
      }
    }
    var table = [Int8](repeating: 0, count: values.count &* 256)
    for (r, av) in values.enumerated() {
      for xv in -128...127 { table[r &* 256 &+ xv &+ 128] = value(Int32(xv), av, xq, aq, yq, m1, m2) }
    }
    let lut = try QBuffer(int8: table)
    // A constant slope's elements index their rows directly.
    var offsets = [Int32](repeating: 0, count: constant ? ad.count : 1)
    if constant { for k in 0..<ad.count { offsets[k] = rowOf[Int(a[k]) &+ 128] } }
    let offs = try QBuffer(int32: offsets)
    return { () throws(TinfError) in
      let t = UnsafePointer(lut.int8) + 128
      let o = UnsafePointer(offs.int32)
      plan.forEachRow { offX, ix, offA, ia, out, n in
        let xr = x + offX
        let yr = y + out
        if constant {
          if ia == 0 {
            let row = t + Int(o[offA])
            for i in 0..<n { yr[i] = row[Int(xr[i &* ix])] }
          } else {
            let orow = o + offA
            for i in 0..<n { yr[i] = t[Int(orow[i]) &+ Int(xr[i &* ix])] }
          }
        } else {
          let ar = a + offA
          for i in 0..<n { yr[i] = t[(Int(ar[i &* ia]) &+ 128) &* 256 &+ Int(xr[i &* ix])] }
        }
      }
    }
  }
}
