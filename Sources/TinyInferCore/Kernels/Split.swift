/// Split (docs/ops.md): x cut along `axis` (default 0) into one piece per
/// output, of the given `sizes` (summing to the dim; one may be -1) or of
/// equal size. Any dtype.
enum SplitKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 1...1)
    let x = try required(inputs, 0, "x")
    let axis = try normalizeAxis(try node.attrs.int(.axis, default: 0), rank: x.shape.count)
    let sizes = try pieces(node, x.shape[axis])
    var qAxis: Int? = nil
    if let a = x.quant?.axis, a != axis || sizes.count == 1 { qAxis = a }
    let q = try movedQuant(x.quant, to: qAxis, "it is the split axis")
    var outs: [TensorType] = []
    for s in sizes {
      var shape = x.shape
      shape[axis] = s
      try checkMoveShape(shape)
      outs.append(TensorType(x.dtype, shape, quant: q))
    }
    return outs
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let x = ctx.inputs[0] else { throw TinfError(.internal, "missing input") }
    let axis = try normalizeAxis(try ctx.attrs.int(.axis, default: 0), rank: x.shape.count)
    let inStrides = stridesOf(x.shape)
    var copies: [StridedCopy] = []
    var offset = 0
    for o in ctx.outputs {
      copies.append(
        StridedCopy(
          elementSize: x.dtype.size, dims: o.shape, srcStrides: inStrides, dstStrides: stridesOf(o.shape),
          srcOffset: offset &* inStrides[axis]))
      offset &+= o.shape[axis]
    }
    let s = try movePointer(ctx, 0)
    let outs = ctx.outputData
    let pool = ctx.pool
    return { () throws(TinfError) in
      for i in 0..<copies.count { copies[i].run(s, outs[i], pool) }
    }
  }

  /// The size of each piece along the axis (dim `n`).
  static func pieces(_ node: Node, _ n: Int) throws(TinfError) -> [Int] {
    let count = node.outputs.count
    guard count >= 1 else { throw .unsupported("Split needs at least one output") }
    guard var sizes = try node.attrs.ints(.sizes, in: -1...attrLimit) else {
      guard n % count == 0 else {
        throw .shape("dim of size \(n) does not split into \(count) equal parts")
      }
      return [Int](repeating: n / count, count: count)
    }
    guard sizes.count == count else {
      throw .unsupported("attribute sizes has \(sizes.count) values for \(count) outputs")
    }
    var sum = 0
    var inferred: Int? = nil
    for (i, s) in sizes.enumerated() {
      if s == -1 {
        guard inferred == nil else { throw .unsupported("attribute sizes \(describe(sizes)) has more than one -1") }
        inferred = i
      } else if s < 1 {
        throw .unsupported("attribute sizes \(describe(sizes)) has the size \(s) (sizes must be >= 1 or -1)")
      } else {
        guard let t = checkedAdd(sum, s), t <= n else {
          throw .shape("attribute sizes \(describe(sizes)) sums to more than the dim (\(n))")
        }
        sum = t
      }
    }
    if let i = inferred {
      guard sum < n else { throw .shape("attribute sizes \(describe(sizes)) leaves nothing for -1 of a dim of \(n)") }
      sizes[i] = n - sum
    } else if sum != n {
      throw .shape("attribute sizes \(describe(sizes)) sums to \(sum), the dim is \(n)")
    }
    return sizes
  }
}
