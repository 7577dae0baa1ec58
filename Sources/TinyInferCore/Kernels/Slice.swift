/// Slice and StridedSlice (docs/ops.md). Any dtype.
///
/// Slice: `begin`, `size` (one value per dim; size -1 = to the end, negative
/// begin counts from the end); the box must lie inside the input.
///
/// StridedSlice: TensorFlow semantics with TFLite's clamping: `begin`, `end`,
/// `strides` (default all 1; nonzero, may be negative), `begin_mask`,
/// `end_mask`, `shrink_axis_mask` (bit i for dim i); dims past the lists are
/// taken whole. A shrunk dim takes the single index `begin[i]` (negative from
/// the end, must be in range, stride must be positive) and is removed.
/// `ellipsis_mask` and `new_axis_mask` are refused. An empty result is refused.
enum SliceOp { case slice, stridedSlice }

enum SliceKernel {
  /// Per input dim: first index, step and count (shrunk dims count 1).
  struct Spec {
    var starts: [Int] = []
    var steps: [Int] = []
    var counts: [Int] = []
    var keep: [Bool] = []
    var shape: [Int] = []
  }

  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 1...1)
    let x = try required(inputs, 0, "x")
    let s = try spec(node, x.shape)
    try checkMoveShape(s.shape)
    var qAxis: Int? = nil
    if let a = x.quant?.axis, a >= 0, a < x.shape.count, s.keep[a], s.counts[a] == x.shape[a], s.steps[a] == 1 {
      var j = 0
      for i in 0..<a where s.keep[i] { j += 1 }
      qAxis = j
    }
    let q = try movedQuant(x.quant, to: qAxis, "the slice cuts or removes the quantized dim")
    return [TensorType(x.dtype, s.shape, quant: q)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let x = ctx.inputs[0] else { throw TinfError(.internal, "missing input") }
    let s = try spec(ctx.node, x.shape)
    let inStrides = stridesOf(x.shape)
    var src: [Int] = []
    var offset = 0
    for i in 0..<x.shape.count {
      src.append(inStrides[i] &* s.steps[i])
      offset = offset &+ s.starts[i] &* inStrides[i]
    }
    let copy = StridedCopy(
      elementSize: x.dtype.size, dims: s.counts, srcStrides: src, dstStrides: stridesOf(s.counts), srcOffset: offset)
    let p = try movePointer(ctx, 0)
    let d = ctx.outputData[0]
    let pool = ctx.pool
    return { () throws(TinfError) in copy.run(p, d, pool) }
  }

  static func spec(_ node: Node, _ shape: [Int]) throws(TinfError) -> Spec {
    guard case .slice(let op) = Registry.variant(node.op) else {
      throw TinfError(.internal, "\(node.op.name) is not a slice")
    }
    switch op {
    case .slice: return try sliceSpec(node.attrs, shape)
    case .stridedSlice: return try stridedSpec(node.attrs, shape)
    }
  }

  static func sliceSpec(_ attrs: Attributes, _ shape: [Int]) throws(TinfError) -> Spec {
    let rank = shape.count
    guard let begin = try attrs.ints(.begin) else { throw .unsupported("Slice needs the attribute begin") }
    guard let size = try attrs.ints(.size, in: -1...attrLimit) else {
      throw .unsupported("Slice needs the attribute size")
    }
    guard begin.count == rank, size.count == rank else {
      throw .unsupported(
        "attributes begin and size need \(rank) values each (the input's rank), have \(begin.count) and \(size.count)")
    }
    var s = Spec()
    for i in 0..<rank {
      let n = shape[i]
      let b = begin[i] < 0 ? begin[i] + n : begin[i]
      guard b >= 0 && b < n else {
        throw .shape("begin \(begin[i]) is out of range for dim \(i) of size \(n)")
      }
      let c: Int
      if size[i] == -1 {
        c = n - b
      } else {
        guard size[i] >= 1 else { throw .unsupported("size \(size[i]) on dim \(i): sizes must be >= 1 or -1") }
        guard size[i] <= n - b else {
          throw .shape("begin \(begin[i]) + size \(size[i]) is past the end of dim \(i) of size \(n)")
        }
        c = size[i]
      }
      s.starts.append(b)
      s.steps.append(1)
      s.counts.append(c)
      s.keep.append(true)
      s.shape.append(c)
    }
    return s
  }

  static func stridedSpec(_ attrs: Attributes, _ shape: [Int]) throws(TinfError) -> Spec {
    let rank = shape.count
    let ellipsis = try attrs.int(.ellipsisMask, default: 0)
    guard ellipsis == 0 else { throw .unsupported("ellipsis_mask \(ellipsis) is not supported (only 0)") }
    let newAxis = try attrs.int(.newAxisMask, default: 0)
    guard newAxis == 0 else { throw .unsupported("new_axis_mask \(newAxis) is not supported (only 0)") }
    guard let begin = try attrs.ints(.begin) else { throw .unsupported("StridedSlice needs the attribute begin") }
    guard let end = try attrs.ints(.end) else { throw .unsupported("StridedSlice needs the attribute end") }
    let strides = try attrs.ints(.strides) ?? [Int](repeating: 1, count: begin.count)
    guard begin.count == end.count, begin.count == strides.count else {
      throw .unsupported(
        "attributes begin, end and strides have \(begin.count), \(end.count) and \(strides.count) values (must be equal)")
    }
    guard begin.count <= rank else {
      throw .unsupported("attribute begin has \(begin.count) values for a rank-\(rank) input")
    }
    let maskRange = 0...0xFF  // one bit per dim, rank <= 8
    let beginMask = try attrs.int(.beginMask, default: 0, in: maskRange)
    let endMask = try attrs.int(.endMask, default: 0, in: maskRange)
    let shrinkMask = try attrs.int(.shrinkAxisMask, default: 0, in: maskRange)

    var s = Spec()
    for i in 0..<rank {
      let n = shape[i]
      if i >= begin.count {
        s.starts.append(0)
        s.steps.append(1)
        s.counts.append(n)
        s.keep.append(true)
        s.shape.append(n)
        continue
      }
      let st = strides[i]
      guard st != 0 else { throw .unsupported("stride 0 on dim \(i)") }
      if (shrinkMask >> i) & 1 == 1 {
        let b = begin[i] < 0 ? begin[i] + n : begin[i]
        guard st > 0 else { throw .unsupported("shrink_axis_mask on dim \(i) needs a positive stride, got \(st)") }
        guard b >= 0 && b < n else {
          throw .shape("shrunk index \(begin[i]) is out of range for dim \(i) of size \(n)")
        }
        s.starts.append(b)
        s.steps.append(1)
        s.counts.append(1)
        s.keep.append(false)
        continue
      }
      // TFLite StartForAxis / StopForAxis: masks pick the extreme, negative
      // values count from the end, then clamp to [0, n] (st > 0) or [-1, n-1].
      let lo = st > 0 ? 0 : -1
      let hi = st > 0 ? n : n - 1
      var start: Int
      if (beginMask >> i) & 1 == 1 {
        start = st > 0 ? 0 : n - 1
      } else {
        start = begin[i] < 0 ? begin[i] + n : begin[i]
        start = min(max(start, lo), hi)
      }
      var stop: Int
      if (endMask >> i) & 1 == 1 {
        stop = st > 0 ? n : -1
      } else {
        stop = end[i] < 0 ? end[i] + n : end[i]
        stop = min(max(stop, lo), hi)
      }
      let count: Int
      if st > 0 {
        count = stop > start ? (stop - start + st - 1) / st : 0
      } else {
        count = start > stop ? (start - stop - st - 1) / -st : 0
      }
      guard count >= 1 else {
        throw .shape(
          "StridedSlice is empty on dim \(i) (size \(n), begin \(begin[i]), end \(end[i]), stride \(st)); empty tensors are not supported"
        )
      }
      s.starts.append(start)
      s.steps.append(count == 1 ? 1 : st)
      s.counts.append(count)
      s.keep.append(true)
      s.shape.append(count)
    }
    return s
  }
}
