import TinyInferShims

/// A session's variables (TFLite resource variables; docs/ops.md, "State").
///
/// A variable is named by a constant tensor of the graph: its dtype, shape,
/// quantization and initial value. `ReadVariable(v)` gives the variable's
/// value as it was when the run started; `AssignVariable(v, value)` sets
/// the value the variable takes when the run ends (the last assign in op
/// order wins). The new values are committed by the last op of the graph
/// that touches a variable, after its own work, so every read of a run sees
/// the same value whatever the op order the passes chose, and a run that
/// fails before that op leaves the variables as they were.
///
/// The values live in memory of the session's own (not in the arena, which
/// a run reuses), persist across runs and start from the initial values;
/// `reset()` (`Session.resetState`, C `tinf_session_reset_state`) restores
/// them. Sessions never share variables.
public final class VariableStore {
  struct Slot {
    /// The variable's tensor (a constant: the initial value).
    let tensor: Int
    let bytes: Int
    let initial: UnsafeRawPointer
    /// The value reads see during a run.
    let current: UnsafeMutableRawPointer
    /// The value assigned during the run, committed at its end.
    let pending: UnsafeMutableRawPointer
    /// Some op of the graph assigns it.
    let assigned: Bool
  }

  let slots: [Slot]
  /// The first output of the op that commits (the last stateful op).
  let committer: Int

  private init(slots: [Slot], committer: Int) {
    self.slots = slots
    self.committer = committer
  }

  deinit {
    for s in slots { ti_shim_free(s.current) }
  }

  /// The variables of graph `g` (nil when no op touches one), each set to
  /// its initial value. `constantData` gives a constant tensor's bytes.
  static func make(_ g: Graph, constantData: (Int) -> UnsafeMutableRawPointer?) throws(TinfError) -> VariableStore? {
    var tensors: [Int] = []
    var assigned: [Bool] = []
    var committer = -1
    for node in g.nodes where node.op.traits.state != .none {
      guard let v = node.inputs.first, v >= 0 else {
        throw TinfError(.internal, "\(node.op.name) without a variable")
      }
      committer = node.outputs[0]
      let writes = node.op.traits.state == .writes
      if let i = tensors.firstIndex(of: v) {
        if writes { assigned[i] = true }
      } else {
        tensors.append(v)
        assigned.append(writes)
      }
    }
    guard committer >= 0 else { return nil }
    var slots: [Slot] = []
    func freeAll() { for s in slots { ti_shim_free(s.current) } }
    for (i, t) in tensors.enumerated() {
      let desc = g.tensors[t]
      guard desc.isConstant, let initial = constantData(t) else {
        freeAll()
        throw .format("variable '\(desc.name)' is not a constant (its initial value)")
      }
      let bytes = desc.nbytes
      // current and pending, each on a 64-byte boundary.
      let half = (max(bytes, 1) &+ 63) / 64 &* 64
      guard let mem = ti_shim_alloc(half &* 2) else {
        freeAll()
        throw TinfError(.outOfMemory, "cannot allocate \(half * 2) bytes for variable '\(desc.name)'")
      }
      mem.copyMemory(from: initial, byteCount: bytes)
      slots.append(
        Slot(
          tensor: t, bytes: bytes, initial: UnsafeRawPointer(initial), current: mem, pending: mem + half,
          assigned: assigned[i]))
    }
    return VariableStore(slots: slots, committer: committer)
  }

  func slot(_ tensor: Int) throws(TinfError) -> Slot {
    for s in slots where s.tensor == tensor { return s }
    throw TinfError(.internal, "tensor \(tensor) is not a variable of this session")
  }

  /// The run's assigned values become the variables' values.
  func commit() {
    for s in slots where s.assigned { s.current.copyMemory(from: UnsafeRawPointer(s.pending), byteCount: s.bytes) }
  }

  /// Every variable back to its initial value.
  public func reset() {
    for s in slots { s.current.copyMemory(from: s.initial, byteCount: s.bytes) }
  }

  /// The number of variables.
  public var count: Int { slots.count }
}

/// ReadVariable and AssignVariable (ops 76, 77).
enum VariableKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, node.op.traits.inputs)
    guard let v = inputs.first ?? nil else { throw .format("the variable (input 0) is absent") }
    guard v.isConstant else {
      throw .format("the variable '\(v.name)' (input 0) must be a constant: its initial value")
    }
    switch node.op.traits.state {
    case .none, .reads:
      return [TensorType(v.dtype, v.shape, quant: v.quant)]
    case .writes:
      guard inputs.count == 2, let x = inputs[1] else { throw .format("the value (input 1) is absent") }
      guard x.dtype == v.dtype else {
        throw .format("the value '\(x.name)' is \(x.dtype.name), the variable '\(v.name)' is \(v.dtype.name)")
      }
      guard x.shape == v.shape else {
        throw .shape("the value '\(x.name)' has shape \(describe(x.shape)), the variable '\(v.name)' \(describe(v.shape))")
      }
      if let a = x.quant, let b = v.quant, a != b {
        throw .format("the value '\(x.name)' and the variable '\(v.name)' have different quantization parameters")
      }
      return [TensorType(.bool, [1])]
    }
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let store = ctx.variables else { throw TinfError(.internal, "no variables bound for \(ctx.node.op.name)") }
    let slot = try store.slot(ctx.node.inputs[0])
    let commits = ctx.node.outputs[0] == store.committer
    let bytes = slot.bytes
    let out = ctx.outputData[0]
    switch ctx.node.op.traits.state {
    case .none, .reads:
      let src = UnsafeRawPointer(slot.current)
      return { [store] () throws(TinfError) in
        out.copyMemory(from: src, byteCount: bytes)
        if commits { store.commit() }
      }
    case .writes:
      guard let value = ctx.inputData[1] else { throw TinfError(.internal, "AssignVariable without a value") }
      let src = UnsafeRawPointer(value)
      let dst = slot.pending
      return { [store] () throws(TinfError) in
        dst.copyMemory(from: src, byteCount: bytes)
        out.storeBytes(of: 1, as: UInt8.self)
        if commits { store.commit() }
      }
    }
  }
}
