/// Reshape, Squeeze and ExpandDims (docs/ops.md, Data movement): the same
/// elements in the same order under a new shape. Any dtype. The output may
/// share the input's buffer (OpTraits.inPlace); then nothing moves.
enum ReshapeOp { case reshape, squeeze, expandDims }

enum ReshapeKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 1...1)
    let x = try required(inputs, 0, "x")
    let shape: [Int]
    guard case .reshape(let op) = Registry.variant(node.op) else {
      throw TinfError(.internal, "\(node.op.name) is not a reshape")
    }
    switch op {
    case .reshape: shape = try reshaped(node.attrs, x.shape)
    case .squeeze: shape = try squeezed(node.attrs, x.shape)
    case .expandDims: shape = try expanded(node.attrs, x.shape)
    }
    try checkMoveShape(shape)
    guard elementCount(shape) == elementCount(x.shape) else {
      throw .shape("cannot reshape \(describe(x.shape)) to \(describe(shape))")
    }
    return [TensorType(x.dtype, shape, quant: try quant(x, shape))]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let src = try movePointer(ctx, 0)
    let dst = ctx.outputData[0]
    let bytes = min(ctx.outputs[0].nbytes, ctx.inputs[0]?.nbytes ?? 0)
    if UnsafeRawPointer(dst) == src {
      return { () throws(TinfError) in }
    }
    return { () throws(TinfError) in
      // copyMemory has memmove semantics; equal pointers were handled above.
      dst.copyMemory(from: src, byteCount: bytes)
    }
  }

  /// `shape` attribute: dims >= 1 and at most one -1 (inferred).
  static func reshaped(_ attrs: Attributes, _ input: [Int]) throws(TinfError) -> [Int] {
    guard var shape = try attrs.ints(.shape, in: -1...attrLimit) else {
      throw .unsupported("Reshape needs the attribute shape")
    }
    guard shape.count <= maxRank else {
      throw .unsupported("attribute shape has rank \(shape.count); at most \(maxRank) is supported")
    }
    guard let total = elementCount(input) else { throw .shape("input \(describe(input)) is too large") }
    var known = 1
    var inferred: Int? = nil
    for (i, d) in shape.enumerated() {
      if d == -1 {
        guard inferred == nil else { throw .unsupported("attribute shape \(describe(shape)) has more than one -1") }
        inferred = i
      } else if d < 1 {
        throw .unsupported("attribute shape \(describe(shape)) has the dimension \(d) (dims must be >= 1 or -1)")
      } else {
        guard let m = checkedMul(known, d), m <= total else {
          throw .shape("cannot reshape \(describe(input)) (\(total) elements) to \(describe(shape))")
        }
        known = m
      }
    }
    if let i = inferred {
      guard total % known == 0 else {
        throw .shape("cannot reshape \(describe(input)) (\(total) elements) to \(describe(shape))")
      }
      shape[i] = total / known
    } else if known != total {
      throw .shape("cannot reshape \(describe(input)) (\(total) elements) to \(describe(shape))")
    }
    return shape
  }

  /// `axes` attribute (absent or empty: every dim of size 1).
  static func squeezed(_ attrs: Attributes, _ input: [Int]) throws(TinfError) -> [Int] {
    let rank = input.count
    var drop = [Bool](repeating: false, count: rank)
    let axes = try attrs.ints(.axes) ?? []
    if axes.isEmpty {
      for i in 0..<rank where input[i] == 1 { drop[i] = true }
    } else {
      guard axes.count <= maxRank else { throw .unsupported("attribute axes has \(axes.count) values") }
      for a in axes {
        let i = try normalizeAxis(a, rank: rank, "squeeze axis")
        guard input[i] == 1 else {
          throw .shape("cannot squeeze dim \(a) of \(describe(input)): its size is \(input[i]), not 1")
        }
        drop[i] = true
      }
    }
    var out: [Int] = []
    for i in 0..<rank where !drop[i] { out.append(input[i]) }
    return out
  }

  /// `axis` attribute in [-rank-1, rank] (default 0).
  static func expanded(_ attrs: Attributes, _ input: [Int]) throws(TinfError) -> [Int] {
    let rank = input.count
    guard rank < maxRank else { throw .unsupported("ExpandDims of a rank-\(rank) tensor exceeds rank \(maxRank)") }
    let axis = try attrs.int(.axis, default: 0, in: (-rank - 1)...rank)
    var out = input
    out.insert(1, at: axis < 0 ? axis + rank + 1 : axis)
    return out
  }

  /// Per-axis parameters follow their dim when the reshape keeps it whole:
  /// a dim of the output with the same size and the same number of
  /// elements before it.
  static func quant(_ x: TensorDesc, _ shape: [Int]) throws(TinfError) -> Quantization? {
    guard var q = x.quant, let axis = q.axis, axis >= 0, axis < x.shape.count else { return x.quant }
    if x.shape[axis] == 1 && q.scales.count <= 1 && q.zeroPoints.count <= 1 {
      q.axis = nil  // one scale: per-tensor
      return q
    }
    var before = 1
    for i in 0..<axis { before = before &* x.shape[i] }
    var acc = 1
    var target: Int? = nil
    for (j, d) in shape.enumerated() {
      if acc == before && d == x.shape[axis] {
        target = j
        break
      }
      acc = acc &* d
      if acc > before { break }
    }
    return try movedQuant(x.quant, to: target, "the reshape splits or merges the quantized dim")
  }
}
