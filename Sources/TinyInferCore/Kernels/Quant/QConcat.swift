/// int8 Concat. Inputs that all share their quantization parameters are
/// joined as bytes (ConcatKernel; the output keeps those parameters). When
/// they differ, the output must declare its own per-tensor parameters and
/// each input whose parameters differ from them is requantized as TFLite's
/// ConcatenationWithScaling does, in float:
/// `round(q * (s_in / s_out) - zp_in * (s_in / s_out)) + zp_out`, clamped.
enum QConcatKernel {
  /// All inputs present with equal parameters (or all without any: plain
  /// int8 data, moved as bytes).
  static func sameQuant(_ inputs: [TensorDesc?]) -> Bool {
    guard let x0 = inputs.first, let first = x0 else { return false }
    for x in inputs {
      guard let x else { return false }
      if x.quant != first.quant { return false }
    }
    return true
  }

  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    if sameQuant(inputs) { return try ConcatKernel.infer(node, inputs) }
    try arity(inputs, 1...(1 << 16))
    let x0 = try required(inputs, 0, "x0")
    let rank = x0.shape.count
    let axis = try normalizeAxis(try node.attrs.int(.axis, default: 0), rank: rank)
    var shape = x0.shape
    for i in 0..<inputs.count {
      let x = try required(inputs, i, "x\(i)")
      try QCheck.requireInt8(x, "input \(i)")
      _ = try QCheck.perTensor(x, "input \(i)")
      if i == 0 { continue }
      guard x.shape.count == rank else {
        throw .shape("input \(i) has rank \(x.shape.count), input 0 has rank \(rank)")
      }
      for d in 0..<rank where d != axis && x.shape[d] != x0.shape[d] {
        throw .shape(
          "input \(i) \(describe(x.shape)) and input 0 \(describe(x0.shape)) differ on dim \(d) (concat axis \(axis))")
      }
      guard let sum = checkedAdd(shape[axis], x.shape[axis]), sum <= maxTensorBytes else {
        throw .shape("concatenated dim \(axis) is too large")
      }
      shape[axis] = sum
    }
    try checkMoveShape(shape)
    return [TensorType(.int8, shape)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    if sameQuant(ctx.inputs) && ctx.outputs[0].quant == ctx.inputs[0]?.quant { return try ConcatKernel.bind(ctx) }
    let yq = try QCheck.output(ctx)
    let out = ctx.outputs[0]
    let rank = out.shape.count
    let axis = try normalizeAxis(try ctx.attrs.int(.axis, default: 0), rank: rank)
    var outer = 1
    for d in 0..<axis { outer &*= out.shape[d] }
    var inner = 1
    for d in (axis + 1)..<rank { inner &*= out.shape[d] }
    // Per input: its pointer, its block size, and a requantization table
    // (or none for a byte copy).
    var sources: [UnsafePointer<Int8>] = []
    var blocks: [Int] = []
    var tableIndex: [Int] = []
    var tables: [Int8] = []
    let inverse: Float = 1 / yq.scale
    for i in 0..<ctx.inputs.count {
      guard let x = ctx.inputs[i], let p = ctx.inputData[i] else { throw TinfError(.internal, "missing input \(i)") }
      let q = try QCheck.perTensor(x, "input \(i)")
      sources.append(UnsafePointer(p.assumingMemoryBound(to: Int8.self)))
      blocks.append(x.shape[axis] &* inner)
      if q.scale == yq.scale && q.zeroPoint == yq.zeroPoint {
        tableIndex.append(-1)
        continue
      }
      tableIndex.append(tables.count)
      let scale = q.scale * inverse
      let bias = Float(-q.zeroPoint) * scale
      for v in -128...127 {
        let r = (Float(v) * scale + bias).rounded(.toNearestOrAwayFromZero)
        let value = QActivationKernel.toInt32(r) + Int64(yq.zeroPoint)
        tables.append(Int8(truncatingIfNeeded: min(max(value, -128), 127)))
      }
    }
    let lut = try QBuffer(int8: tables)
    let src = sources
    let blk = blocks
    let tix = tableIndex
    let y = ctx.outputData[0].assumingMemoryBound(to: Int8.self)
    let count = src.count
    return { () throws(TinfError) in
      var o = y
      for k in 0..<outer {
        for i in 0..<count {
          let b = blk[i]
          let s = src[i] + k &* b
          let t = tix[i]
          if t < 0 {
            o.update(from: s, count: b)
          } else {
            lookup256(s, o, UnsafePointer(lut.int8 + t), b)
          }
          o += b
        }
      }
    }
  }
}
