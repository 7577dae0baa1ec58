/// Transpose (docs/ops.md): `y.shape[i] = x.shape[perm[i]]`; perm defaults
/// to the reversed dims (numpy). Any dtype.
enum TransposeKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 1...1)
    let x = try required(inputs, 0, "x")
    let perm = try permutation(node.attrs, rank: x.shape.count)
    var shape: [Int] = []
    for p in perm { shape.append(x.shape[p]) }
    try checkMoveShape(shape)
    var qAxis: Int? = nil
    if let a = x.quant?.axis { qAxis = perm.firstIndex(of: a) }
    return [TensorType(x.dtype, shape, quant: try movedQuant(x.quant, to: qAxis, "its axis is out of range"))]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let x = ctx.inputs[0] else { throw TinfError(.internal, "missing input") }
    let perm = try permutation(ctx.attrs, rank: x.shape.count)
    let inStrides = stridesOf(x.shape)
    var dims: [Int] = []
    var src: [Int] = []
    for p in perm {
      dims.append(x.shape[p])
      src.append(inStrides[p])
    }
    let copy = StridedCopy(
      elementSize: x.dtype.size, dims: dims, srcStrides: src, dstStrides: stridesOf(dims))
    let s = try movePointer(ctx, 0)
    let d = ctx.outputData[0]
    let pool = ctx.pool
    return { () throws(TinfError) in copy.run(s, d, pool) }
  }

  /// The `perm` attribute, checked to be a permutation of 0..<rank.
  static func permutation(_ attrs: Attributes, rank: Int) throws(TinfError) -> [Int] {
    guard let perm = try attrs.ints(.perm, in: 0...(maxRank - 1)) else {
      var r: [Int] = []
      var i = rank - 1
      while i >= 0 {
        r.append(i)
        i -= 1
      }
      return r
    }
    guard perm.count == rank else {
      throw .unsupported("attribute perm \(describe(perm)) has \(perm.count) values for a rank-\(rank) input")
    }
    var seen = [Bool](repeating: false, count: rank)
    for p in perm {
      guard p < rank, !seen[p] else {
        throw .unsupported("attribute perm \(describe(perm)) is not a permutation of 0..<\(rank)")
      }
      seen[p] = true
    }
    return perm
  }
}
