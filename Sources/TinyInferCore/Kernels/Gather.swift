/// Gather (docs/ops.md): params (any dtype), indices (int32 or int64), `axis`
/// (default 0, negative from the end). Output
/// `params.shape[:axis] + indices.shape + params.shape[axis+1:]`. A negative
/// index counts from the end (once); an index still out of range fails the
/// run with a `.runtime` error and nothing is read out of bounds.
enum GatherKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 2...2)
    let params = try required(inputs, 0, "params")
    let indices = try required(inputs, 1, "indices")
    guard indices.dtype == .int32 || indices.dtype == .int64 else {
      throw TinfError(
        .unsupportedDType, "indices '\(indices.name)' are \(indices.dtype.name); only int32 and int64 are supported")
    }
    let axis = try normalizeAxis(try node.attrs.int(.axis, default: 0), rank: params.shape.count)
    let shape = outputShape(params.shape, indices.shape, axis)
    try checkMoveShape(shape)
    var qAxis: Int? = nil
    if let a = params.quant?.axis, a != axis { qAxis = a < axis ? a : a + indices.shape.count - 1 }
    let q = try movedQuant(params.quant, to: qAxis, "it is the gather axis")
    return [TensorType(params.dtype, shape, quant: q)]
  }

  static func outputShape(_ p: [Int], _ i: [Int], _ axis: Int) -> [Int] {
    var shape = Array(p[..<axis])
    shape.append(contentsOf: i)
    shape.append(contentsOf: p[(axis + 1)...])
    return shape
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let params = ctx.inputs[0], let indices = ctx.inputs[1] else { throw TinfError(.internal, "missing input") }
    let axis = try normalizeAxis(try ctx.attrs.int(.axis, default: 0), rank: params.shape.count)
    var outer = 1
    for i in 0..<axis { outer = outer &* params.shape[i] }
    var inner = 1
    for i in (axis + 1)..<params.shape.count { inner = inner &* params.shape[i] }
    let g = Plan(
      outer: outer, n: params.shape[axis], inner: inner, m: indices.count, es: params.dtype.size, axis: axis)
    let p = try movePointer(ctx, 0)
    let ip = try movePointer(ctx, 1)
    let d = ctx.outputData[0]
    if indices.dtype == .int64 {
      let idx = ip.assumingMemoryBound(to: Int64.self)
      return { () throws(TinfError) in try g.run(p, idx, d) }
    }
    let idx = ip.assumingMemoryBound(to: Int32.self)
    return { () throws(TinfError) in try g.run(p, idx, d) }
  }

  struct Plan {
    /// params viewed as [outer, n, inner]; m indices; es bytes per element.
    let outer: Int
    let n: Int
    let inner: Int
    let m: Int
    let es: Int
    let axis: Int

    func run<I: FixedWidthInteger>(_ p: UnsafeRawPointer, _ idx: UnsafePointer<I>, _ d: UnsafeMutableRawPointer)
      throws(TinfError)
    {
      // Check every index first: a failed run writes nothing.
      for j in 0..<m {
        let v = Int(truncatingIfNeeded: idx[j])
        if v < -n || v >= n {
          throw TinfError(.runtime, "Gather: index \(v) out of range for axis \(axis) of size \(n)")
        }
      }
      if inner == 1 {
        switch es {
        case 4: elements(UInt32.self, p, idx, d)
        case 1: elements(UInt8.self, p, idx, d)
        case 2: elements(UInt16.self, p, idx, d)
        default: elements(UInt64.self, p, idx, d)  // es == 8
        }
        return
      }
      let blk = inner &* es
      var out = d
      for o in 0..<outer {
        let base = p + o &* n &* blk
        for j in 0..<m {
          var v = Int(truncatingIfNeeded: idx[j])
          if v < 0 { v &+= n }
          out.copyMemory(from: base + v &* blk, byteCount: blk)
          out += blk
        }
      }
    }

    /// inner == 1: single elements of type T.
    @inline(__always)
    func elements<I: FixedWidthInteger, T>(
      _: T.Type, _ p: UnsafeRawPointer, _ idx: UnsafePointer<I>, _ d: UnsafeMutableRawPointer
    ) {
      let size = MemoryLayout<T>.stride
      var out = d
      for o in 0..<outer {
        let base = p + o &* n &* size
        for j in 0..<m {
          var v = Int(truncatingIfNeeded: idx[j])
          if v < 0 { v &+= n }
          out.storeBytes(of: (base + v &* size).load(as: T.self), as: T.self)
          out += size
        }
      }
    }
  }
}
