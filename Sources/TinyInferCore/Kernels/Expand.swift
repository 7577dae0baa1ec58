/// Expand (ONNX Expand, TFLite BROADCAST_TO) and Tile (docs/ops.md): data
/// movement of any dtype, as one strided copy whose source strides are 0
/// along repeated dims (`StridedCopy`). Quantization parameters pass through.
enum ExpandKernel {
  /// The output shape and the copy's (dims, source strides), in elements.
  static func plan(_ node: Node, _ x: TensorDesc) throws(TinfError) -> (out: [Int], dims: [Int], src: [Int]) {
    let xs = x.shape
    switch node.op {
    case .tile:
      guard let reps = try node.attrs.ints(.sizes, in: 1...(1 << 30)) else {
        throw .unsupported("Tile needs attribute sizes (the repeats of each dim)")
      }
      guard reps.count == xs.count else {
        throw .shape("Tile: sizes has \(reps.count) repeats for an input of rank \(xs.count)")
      }
      // Output dim i is [reps[i], xs[i]]: the repeat reads the same source (stride 0).
      let strides = stridesOf(xs)
      var out: [Int] = []
      var dims: [Int] = []
      var src: [Int] = []
      for i in 0..<xs.count {
        guard let d = checkedMul(xs[i], reps[i]) else { throw .shape("Tile output is too large") }
        out.append(d)
        dims.append(contentsOf: [reps[i], xs[i]])
        src.append(contentsOf: [0, strides[i]])
      }
      return (out, dims, src)
    default:  // .expand
      guard let shape = try node.attrs.ints(.shape, in: 1...(1 << 30)) else {
        throw .unsupported("Expand needs attribute shape")
      }
      let out = try broadcastShapes(xs, shape)
      return (out, out, broadcastStrides(xs, to: out))
    }
  }

  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 1...1)
    let x = try required(inputs, 0, "input")
    let p = try plan(node, x)
    try checkMoveShape(p.out)
    let shift = p.out.count - x.shape.count
    let q = try movedQuant(x.quant, to: (x.quant?.axis).map { $0 + shift }, "")
    return [TensorType(x.dtype, p.out, quant: q)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let x = ctx.inputs[0]!
    let p = try plan(ctx.node, x)
    // The destination is contiguous over p.dims (a refinement of the output shape).
    let copy = StridedCopy(
      elementSize: x.dtype.size, dims: p.dims, srcStrides: p.src, dstStrides: stridesOf(p.dims))
    let s = try movePointer(ctx, 0)
    let d = ctx.outputData[0]
    let pool = ctx.pool
    return { () throws(TinfError) in copy.run(s, d, pool) }
  }
}
