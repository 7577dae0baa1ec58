/// Concat (docs/ops.md): inputs of one dtype and rank, equal dims except on
/// `axis` (default 0, negative from the end), joined along it. Any dtype.
/// Quantized inputs must share their parameters (no requantization).
enum ConcatKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 1...(1 << 16))
    let x0 = try required(inputs, 0, "x0")
    let rank = x0.shape.count
    let axis = try normalizeAxis(try node.attrs.int(.axis, default: 0), rank: rank)
    var shape = x0.shape
    for i in 1..<inputs.count {
      let x = try required(inputs, i, "x\(i)")
      guard x.dtype == x0.dtype else {
        throw TinfError(
          .unsupportedDType, "input \(i) '\(x.name)' is \(x.dtype.name), input 0 '\(x0.name)' is \(x0.dtype.name)")
      }
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
      guard x.quant == x0.quant else {
        throw .unsupported("input \(i) '\(x.name)' has other quantization parameters than input 0 (no requantization)")
      }
    }
    try checkMoveShape(shape)
    var qAxis: Int? = nil
    if let a = x0.quant?.axis, a != axis || inputs.count == 1 { qAxis = a }
    let q = try movedQuant(x0.quant, to: qAxis, "it is the concat axis")
    return [TensorType(x0.dtype, shape, quant: q)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let out = ctx.outputs[0]
    let rank = out.shape.count
    let axis = try normalizeAxis(try ctx.attrs.int(.axis, default: 0), rank: rank)
    let outStrides = stridesOf(out.shape)
    var copies: [StridedCopy] = []
    var sources: [UnsafeRawPointer] = []
    var offset = 0
    for i in 0..<ctx.inputs.count {
      guard let x = ctx.inputs[i] else { throw TinfError(.internal, "missing input \(i)") }
      copies.append(
        StridedCopy(
          elementSize: x.dtype.size, dims: x.shape, srcStrides: stridesOf(x.shape), dstStrides: outStrides,
          dstOffset: offset &* outStrides[axis]))
      sources.append(try movePointer(ctx, i))
      offset &+= x.shape[axis]
    }
    let d = ctx.outputData[0]
    if let rows = RowCopies(copies, sources) {
      return { () throws(TinfError) in rows.run(d) }
    }
    let pool = ctx.pool
    return { () throws(TinfError) in
      for i in 0..<copies.count { copies[i].run(sources[i], d, pool) }
    }
  }
}
