import TinyInferShims

/// Control flow: If (op 78) and While (op 79) run subgraphs of the file
/// (format 1.2; docs/ops.md, "Control flow").
///
/// A subgraph is validated as a graph of its own over the file's tensor
/// table: its inputs declared, the file's constants shared, and no value of
/// another graph read (what it needs comes in through its inputs; each
/// tensor is an input or an op output of one graph at most). Subgraphs are
/// validated first to last and an op of a subgraph may only call subgraphs
/// before it (the main graph any), so calls cannot recurse; a builder adds a
/// subgraph used inside another one first. Each one a session runs is planned and
/// bound separately, for each op that calls it: the op copies its inputs into
/// the subgraph's input buffers, runs the subgraph's kernels in the
/// subgraph's own arena, and copies its outputs out.
///
/// Work: a session's `WorkMeter` gives each run the work limit minus the
/// main graph's work (`WorkCost`); an If charges the work of the branch it
/// runs, a While each iteration (condition and body, at least
/// `minIterationWork`), before running it. A run past the limit fails with
/// `.runtime`, so a loop that never ends stops.
public enum ControlFlow {
  /// The least work counted for one While iteration: the cost of its kernel
  /// calls and copies, so that a loop of tiny bodies cannot run billions of times.
  public static let minIterationWork: UInt64 = 1024
  /// The most subgraphs x tensors of a file (each subgraph's graph has a
  /// description of every tensor of the table).
  static let maxSubgraphCells = 1 << 20

  /// Refuses a model with subgraphs for a rewriter that writes only the
  /// main graph (the quantizer, the pruner), naming it.
  public static func refuseSubgraphs(_ model: Model, _ who: String) throws(TinfError) {
    guard model.graph.subgraphs.isEmpty else {
      throw .unsupported(
        "\(who) does not rewrite control flow yet: the model has \(model.graph.subgraphs.count) subgraphs (If / While)")
    }
  }

  // MARK: - Validation

  /// The file's subgraphs, validated (empty for a file without).
  static func validateSubgraphs(_ def: GraphDef, dataSize: Int) throws(TinfError) -> [Graph] {
    let n = def.subgraphs.count
    guard n > 0 else { return [] }
    guard n <= ModelFile.maxSubgraphs else { throw .format("\(n) subgraphs, over the limit of \(ModelFile.maxSubgraphs)") }
    guard let cells = checkedMul(n, max(def.tensors.count, 1)), cells <= maxSubgraphCells else {
      throw .format(
        "\(n) subgraphs over \(def.tensors.count) tensors: over the limit of \(maxSubgraphCells) subgraphs x tensors")
    }
    // Each tensor is an input or an op output of one graph at most.
    var owner = [Int](repeating: -2, count: def.tensors.count)
    func label(_ g: Int) -> String { g < 0 ? "the main graph" : "subgraph \(g) '\(def.subgraphs[g].name)'" }
    func claim(_ t: Int, _ g: Int) throws(TinfError) {
      guard t >= 0 && t < owner.count else { return }  // the graph validation names it
      if owner[t] != -2 && owner[t] != g {
        throw .format(
          "tensor \(t) '\(def.tensors[t].name)' is an input or output of both \(label(owner[t])) and \(label(g)) "
            + "(a subgraph sees other graphs' values only through its inputs)")
      }
      owner[t] = g
    }
    for t in def.inputs { try claim(t, -1) }
    for node in def.nodes { for t in node.outputs { try claim(t, -1) } }
    for (i, s) in def.subgraphs.enumerated() {
      for t in s.inputs { try claim(t, i) }
      for node in s.nodes { for t in node.outputs { try claim(t, i) } }
    }
    var subs = [Graph?](repeating: nil, count: n)
    for i in 0..<n {
      let s = def.subgraphs[i]
      var d = GraphDef()
      d.tensors = def.tensors
      d.inputs = s.inputs
      d.outputs = s.outputs
      d.nodes = s.nodes
      do throws(TinfError) {
        subs[i] = try Graph(validating: d, dataSize: dataSize, subgraphs: subs, level: i)
      } catch {
        throw error.prefixed("subgraph \(i) '\(s.name)'")
      }
    }
    var out: [Graph] = []
    for case let g? in subs { out.append(g) }
    return out
  }

  /// Shape inference without the graph (Registry.infer): the arity, then a
  /// refusal (a control-flow op is inferred with its graph's subgraphs).
  static func inferOutsideGraph(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, node.op.traits.inputs)
    throw .format("\(node.op.name) runs subgraphs: its outputs come from them")
  }

  /// The output types of an If or While of graph `level` (-1: the main graph).
  static func infer(_ node: Node, _ inputs: [TensorDesc?], _ subs: [Graph?], level: Int) throws(TinfError)
    -> [TensorType]
  {
    try arity(inputs, node.op.traits.inputs)
    let isWhile = node.op == .whileLoop
    let (a, b) = try called(node, subs, level: level)
    var args: [TensorDesc] = []
    for (i, x) in inputs.enumerated() {
      guard let x else { throw .format("input \(i) is absent") }
      args.append(x)
    }
    if isWhile {
      try takes(args, a, "condition")
      try takes(args, b, "body")
      guard a.outputs.count == 1, a.tensors[a.outputs[0]].dtype == .bool, a.tensors[a.outputs[0]].count == 1 else {
        throw .format("the condition subgraph must give one bool")
      }
      guard b.outputs.count == args.count else {
        throw .format("the body subgraph gives \(b.outputs.count) values for \(args.count) loop values")
      }
      for (j, x) in args.enumerated() {
        let y = b.tensors[b.outputs[j]]
        guard y.dtype == x.dtype, y.shape == x.shape else {
          throw .shape(
            "loop value \(j) is \(x.dtype.name) \(describe(x.shape)), the body gives \(y.dtype.name) \(describe(y.shape))")
        }
      }
      return args.map { TensorType($0.dtype, $0.shape, quant: $0.quant) }
    }
    let cond = args[0]
    guard cond.dtype == .bool, cond.count == 1 else {
      throw .format("the condition (input 0) must be one bool, got \(cond.dtype.name) \(describe(cond.shape))")
    }
    let rest = Array(args[1...])
    try takes(rest, a, "then")
    try takes(rest, b, "else")
    guard a.outputs.count == b.outputs.count else {
      throw .format("the then subgraph gives \(a.outputs.count) values, the else subgraph \(b.outputs.count)")
    }
    var outs: [TensorType] = []
    for j in a.outputs.indices {
      let x = a.tensors[a.outputs[j]]
      let y = b.tensors[b.outputs[j]]
      guard x.dtype == y.dtype, x.shape == y.shape else {
        throw .shape(
          "output \(j): the then subgraph gives \(x.dtype.name) \(describe(x.shape)), the else subgraph "
            + "\(y.dtype.name) \(describe(y.shape)) (both must give the same dtypes and shapes)")
      }
      outs.append(TensorType(x.dtype, x.shape, quant: x.quant))
    }
    return outs
  }

  /// The two subgraphs the op calls (then/else, or condition/body).
  static func called(_ node: Node, _ subs: [Graph?], level: Int) throws(TinfError) -> (Graph, Graph) {
    guard let v = try node.attrs.ints(.subgraphs, in: 0...ModelFile.maxSubgraphs), v.count == 2 else {
      throw .format(
        "needs the attribute subgraphs: two subgraph indices (\(node.op == .whileLoop ? "condition, body" : "then, else"))")
    }
    var gs: [Graph] = []
    for i in v {
      guard i < subs.count else { throw .format("subgraph \(i) does not exist (the file has \(subs.count))") }
      guard level < 0 || i < level, let g = subs[i] else {
        throw .format("calls subgraph \(i), which does not come before its own graph (subgraph \(level))")
      }
      gs.append(g)
    }
    return (gs[0], gs[1])
  }

  /// Checks that `args` fit subgraph `g`'s inputs (count, dtypes, shapes).
  static func takes(_ args: [TensorDesc], _ g: Graph, _ what: String) throws(TinfError) {
    guard args.count == g.inputs.count else {
      throw .format("passes \(args.count) values to the \(what) subgraph, which takes \(g.inputs.count)")
    }
    for (j, x) in args.enumerated() {
      let y = g.tensors[g.inputs[j]]
      guard x.dtype == y.dtype, x.shape == y.shape else {
        throw .shape(
          "value \(j) is \(x.dtype.name) \(describe(x.shape)), the \(what) subgraph's input '\(y.name)' is "
            + "\(y.dtype.name) \(describe(y.shape))")
      }
    }
  }

  // MARK: - Running

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let model = ctx.model, let meter = ctx.meter else {
      throw TinfError(.internal, "\(ctx.node.op.name) bound without its subgraphs")
    }
    let count = model.graph.subgraphs.count
    guard let v = try ctx.node.attrs.ints(.subgraphs, in: 0...ModelFile.maxSubgraphs), v.count == 2, v[0] < count,
      v[1] < count
    else { throw TinfError(.internal, "\(ctx.node.op.name) with bad subgraph indices") }
    let a = try SubgraphRunner.make(ctx, model, v[0], meter)
    let b = try SubgraphRunner.make(ctx, model, v[1], meter)
    let resets = ctx.node.outputs[0] == meter.resetter
    let outs = ctx.outputData
    let outBytes = ctx.outputs.map { $0.nbytes }
    var args: [UnsafeRawPointer] = []
    var argBytes: [Int] = []
    for (i, p) in ctx.inputData.enumerated() {
      guard let p, let d = ctx.inputs[i] else { throw TinfError(.internal, "\(ctx.node.op.name) input \(i) absent") }
      args.append(UnsafeRawPointer(p))
      argBytes.append(d.nbytes)
    }
    if ctx.node.op == .whileLoop {
      let iterationWork = max(WorkCost.add(a.work, b.work), minIterationWork)
      let condOut = a.outputs[0]
      return { [a, b, meter] () throws(TinfError) in
        if resets { meter.reset() }
        for j in outs.indices { outs[j].copyMemory(from: args[j], byteCount: outBytes[j]) }
        var n = 0
        while true {
          guard meter.charge(iterationWork) else {
            throw TinfError(
              .runtime,
              "While: stopped after \(n) iterations at the session's work limit of \(meter.limit) "
                + "(\(iterationWork) per iteration; raise it with max_work / tinf_options_set_max_work; "
                + "or the loop does not end)")
          }
          a.load(outs, outBytes)
          try a.run()
          if condOut.load(as: UInt8.self) == 0 { break }
          b.load(outs, outBytes)
          try b.run()
          for j in outs.indices { outs[j].copyMemory(from: b.outputs[j], byteCount: outBytes[j]) }
          n &+= 1
        }
      }
    }
    let cond = args[0]
    let values = Array(args[1...])
    let valueBytes = Array(argBytes[1...])
    return { [a, b, meter] () throws(TinfError) in
      if resets { meter.reset() }
      let r = cond.load(as: UInt8.self) != 0 ? a : b
      guard meter.charge(r.work) else {
        throw TinfError(.runtime, "If: the branch's work (\(r.work)) passes the session's work limit of \(meter.limit)")
      }
      for j in values.indices { r.inputs[j].copyMemory(from: values[j], byteCount: valueBytes[j]) }
      try r.run()
      for j in outs.indices { outs[j].copyMemory(from: r.outputs[j], byteCount: outBytes[j]) }
    }
  }
}

/// The work left to a run of a session with control flow (ControlFlow).
public final class WorkMeter {
  /// The session's work limit.
  public let limit: UInt64
  /// What a run may spend in subgraphs: the limit minus the main graph's work.
  let budget: UInt64
  private(set) var remaining: UInt64
  /// The first output of the main graph's first control-flow op, whose
  /// kernel starts each run's count (-1: none).
  let resetter: Int

  init(limit: UInt64, mainWork: UInt64, graph g: Graph) {
    self.limit = limit
    self.budget = limit > mainWork ? limit - mainWork : 0
    self.remaining = budget
    var r = -1
    for node in g.nodes where node.op.traits.subgraphs {
      r = node.outputs[0]
      break
    }
    self.resetter = r
  }

  @inline(__always) func reset() { remaining = budget }

  /// Takes `work` from what is left; false (nothing taken) when it does not fit.
  @inline(__always) func charge(_ work: UInt64) -> Bool {
    guard work <= remaining else { return false }
    remaining &-= work
    return true
  }
}

/// A subgraph planned and bound for one control-flow op of a session.
final class SubgraphRunner {
  let kernels: [BoundKernel]
  private let arena: UnsafeMutableRawPointer?
  /// The buffers of its inputs (written before each run) and outputs.
  let inputs: [UnsafeMutableRawPointer]
  let outputs: [UnsafeRawPointer]
  /// The work of one run of it (`WorkCost`).
  let work: UInt64

  private init(
    kernels: [BoundKernel], arena: UnsafeMutableRawPointer?, inputs: [UnsafeMutableRawPointer],
    outputs: [UnsafeRawPointer], work: UInt64
  ) {
    self.kernels = kernels
    self.arena = arena
    self.inputs = inputs
    self.outputs = outputs
    self.work = work
  }

  deinit {
    if let arena { ti_shim_free(arena) }
  }

  static func make(_ ctx: KernelContext, _ model: Model, _ index: Int, _ meter: WorkMeter) throws(TinfError)
    -> SubgraphRunner
  {
    let g = model.graph.subgraphs[index]
    let plan = try MemoryPlanner.plan(g)
    var arena: UnsafeMutableRawPointer? = nil
    if plan.size > 0 {
      guard let a = ti_shim_alloc_zeroed(plan.size) else {
        throw TinfError(.outOfMemory, "cannot allocate an arena of \(plan.size) bytes for subgraph \(index)")
      }
      arena = a
    }
    let ptrs = Session.tensorPointers(model, g, plan, arena)
    var kernels: [BoundKernel] = []
    var ins: [UnsafeMutableRawPointer] = []
    var outs: [UnsafeRawPointer] = []
    do throws(TinfError) {
      kernels = try Session.bindKernels(model, g, 0..<g.nodes.count, ptrs, ctx.pool, meter: meter, subgraph: true)
      for t in g.inputs {
        guard let p = ptrs[t] else { throw TinfError(.internal, "subgraph input '\(g.tensors[t].name)' has no buffer") }
        ins.append(p)
      }
      for t in g.outputs {
        guard let p = ptrs[t] else { throw TinfError(.internal, "subgraph output '\(g.tensors[t].name)' has no buffer") }
        outs.append(UnsafeRawPointer(p))
      }
    } catch {
      if let arena { ti_shim_free(arena) }
      throw error.prefixed("subgraph \(index)")
    }
    return SubgraphRunner(kernels: kernels, arena: arena, inputs: ins, outputs: outs, work: WorkCost.of(g))
  }

  /// Copies `values` into the inputs.
  @inline(__always) func load(_ values: [UnsafeMutableRawPointer], _ bytes: [Int]) {
    for j in inputs.indices { inputs[j].copyMemory(from: UnsafeRawPointer(values[j]), byteCount: bytes[j]) }
  }

  @inline(__always) func run() throws(TinfError) {
    let ks = kernels  // one retain of the array, not one per op (Session.runAll)
    var k = 0
    while k < ks.count {
      try ks[k].run()
      k &+= 1
    }
  }
}
