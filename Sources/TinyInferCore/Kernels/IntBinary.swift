/// Add, Sub, Mul, Maximum and Minimum on int32 or int64 tensors (both inputs
/// of one dtype, numpy broadcasting; no fused activation): the integer
/// arithmetic of loop counters and shape values computed at run time (a
/// TFLite WHILE's int32 counters). Add, Sub and Mul wrap on overflow (two's
/// complement, as TFLite's and onnxruntime's integer kernels do). Integer
/// Div is refused (ONNX truncates, TFLite's FLOOR_DIV floors: no one rule).
enum IntBinaryKernel {
  /// Whether the op's inputs are the integers this kernel takes (Registry's dispatch).
  static func takes(_ inputs: [TensorDesc?]) -> Bool {
    guard let a = inputs.first ?? nil else { return false }
    return a.quant == nil && (a.dtype == .int32 || a.dtype == .int64)
  }

  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 2...2)
    let a = try required(inputs, 0, "input")
    let b = try required(inputs, 1, "input")
    guard b.dtype == a.dtype, b.quant == nil else {
      throw TinfError(.unsupportedDType, "inputs '\(a.name)' and '\(b.name)' are \(a.dtype.name) and \(b.dtype.name); both must be the same integer dtype")
    }
    guard try node.attrs.int(.activation, default: 0) == 0 else {
      throw .unsupported("integer \(node.op.name) has no fused activation")
    }
    if case .binary(.div) = Registry.variant(node.op) {
      throw TinfError(.unsupportedDType, "integer Div is not supported (float32 only)")
    }
    return [TensorType(a.dtype, try broadcastShapes(a.shape, b.shape))]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let plan = BroadcastPlan(ctx.inputs[0]!.shape, ctx.inputs[1]!.shape, ctx.outputs[0].shape)
    guard case .binary(let op) = Registry.variant(ctx.node.op) else { throw TinfError(.internal, "not binary") }
    if ctx.inputs[0]!.dtype == .int64 {
      return try typed(plan, op, ctx.input(0, Int64.self), ctx.input(1, Int64.self), ctx.output(0, Int64.self))
    }
    return try typed(plan, op, ctx.input(0, Int32.self), ctx.input(1, Int32.self), ctx.output(0, Int32.self))
  }

  static func typed<T: FixedWidthInteger>(
    _ plan: BroadcastPlan, _ op: BinaryOp, _ a: UnsafePointer<T>, _ b: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>
  ) throws(TinfError) -> KernelFn {
    switch op {
    case .add: return { () throws(TinfError) in plan.forEachRow { oa, ia, ob, ib, o, n in for j in 0..<n { y[o &+ j] = a[oa &+ j &* ia] &+ b[ob &+ j &* ib] } } }
    case .sub: return { () throws(TinfError) in plan.forEachRow { oa, ia, ob, ib, o, n in for j in 0..<n { y[o &+ j] = a[oa &+ j &* ia] &- b[ob &+ j &* ib] } } }
    case .mul: return { () throws(TinfError) in plan.forEachRow { oa, ia, ob, ib, o, n in for j in 0..<n { y[o &+ j] = a[oa &+ j &* ia] &* b[ob &+ j &* ib] } } }
    case .maximum: return { () throws(TinfError) in plan.forEachRow { oa, ia, ob, ib, o, n in for j in 0..<n { y[o &+ j] = max(a[oa &+ j &* ia], b[ob &+ j &* ib]) } } }
    case .minimum: return { () throws(TinfError) in plan.forEachRow { oa, ia, ob, ib, o, n in for j in 0..<n { y[o &+ j] = min(a[oa &+ j &* ia], b[ob &+ j &* ib]) } } }
    case .div, .prelu: throw TinfError(.unsupportedDType, "integer Div and PRelu are not supported")
    }
  }
}
