import TinyInferShims

/// Running to and from intermediate tensors (issue 18; docs/caching.md,
/// "Intermediate tensors and shared backbones").
///
/// `Model.subgraph(inputs:outputs:)` makes a model whose inputs and outputs
/// are any tensors the model computes, by name, and whose ops are only those
/// the outputs need from those inputs: everything upstream of the given
/// inputs, and everything no output needs, is left out. It is a view of the
/// parent (`Model.init(view:...)`): same tensor table, the parent's ops in
/// the parent's order, the parent's constants and packed weights, so every
/// kernel is the parent's and the values are bit for bit a full run's. A
/// session of it plans its arena for its own graph, in which the requested
/// outputs are graph outputs (alive to the end of the run).
extension Graph {
  /// `g` running only `nodes` (a subsequence of its own), from `inputs` to `outputs`.
  init(subgraphOf g: Graph, nodes: [Node], inputs: [Int], outputs: [Int], shapeGuards: [Node]) {
    self.metadata = g.metadata
    self.tensors = g.tensors
    self.nodes = nodes
    self.inputs = inputs
    self.outputs = outputs
    self.shapeGuards = shapeGuards
    self.subgraphs = g.subgraphs  // its If / While ops call the parent's subgraphs, by index
  }
}

extension Model {
  /// The tensor named `name` that a run takes or computes (a graph input or
  /// an op's output) or, when none does, the first tensor of that name; nil
  /// when no tensor has it.
  public func tensorIndex(named name: String) -> Int? {
    var first: Int? = nil
    var live = [Bool](repeating: false, count: graph.tensors.count)
    for t in graph.inputs { live[t] = true }
    for n in graph.nodes { for t in n.outputs { live[t] = true } }
    for (i, t) in graph.tensors.enumerated() where t.name == name {
      if live[i] { return i }
      if first == nil { first = i }
    }
    return first
  }

  /// A model from the tensors named `inputs` (graph inputs or intermediate
  /// tensors, in this order) to those named `outputs` (any tensor a run
  /// takes or computes), running only the ops the outputs need. With
  /// `addGraphInputs`, graph inputs of this model that the outputs still
  /// need are appended to the inputs (in this model's input order);
  /// without it such a need is an error naming the input. Throws
  /// `.invalidArgument` for an unknown name, a constant, a tensor the
  /// load-time passes removed, a name given twice, or a given input that an
  /// op the outputs need also computes (a multi-output op) .
  public func subgraph(inputs: [String], outputs: [String], addGraphInputs: Bool) throws(TinfError) -> Model {
    let t0 = ti_shim_now_ns()
    let g = graph
    let n = g.tensors.count
    guard !outputs.isEmpty else { throw .arg("a subgraph needs at least one output") }
    var producer = [Int](repeating: -1, count: n)
    for (k, node) in g.nodes.enumerated() { for t in node.outputs { producer[t] = k } }
    var isGraphInput = [Bool](repeating: false, count: n)
    for t in g.inputs { isGraphInput[t] = true }

    func resolve(_ name: String, _ role: String) throws(TinfError) -> Int {
      guard let t = tensorIndex(named: name) else {
        throw .arg("\(role) '\(name)': the model has no tensor of that name (Model.tensors() lists them)")
      }
      if isGraphInput[t] || producer[t] >= 0 { return t }
      if g.tensors[t].isConstant {
        throw .arg(
          "\(role) '\(name)' is a constant (stored in the file or computed once at load), not a tensor a run computes")
      }
      throw .arg(
        "\(role) '\(name)' is not computed by the model as loaded: a load-time pass removed or fused the op that "
          + "made it (Model.passes lists them; load with optimize=False to keep every tensor)")
    }
    var given = [Bool](repeating: false, count: n)
    var ins: [Int] = []
    for name in inputs {
      let t = try resolve(name, "input")
      guard !given[t] else { throw .arg("input '\(name)' is given twice") }
      given[t] = true
      ins.append(t)
    }
    var needed = [Bool](repeating: false, count: n)
    var outs: [Int] = []
    for name in outputs {
      let t = try resolve(name, "output")
      guard !needed[t] else { throw .arg("output '\(name)' is asked twice") }
      needed[t] = true
      outs.append(t)
    }

    // Backward from the outputs, stopping at the given inputs.
    var keep = [Bool](repeating: false, count: g.nodes.count)
    for k in g.nodes.indices.reversed() {
      let node = g.nodes[k]
      guard node.outputs.contains(where: { needed[$0] && !given[$0] }) else { continue }
      keep[k] = true
      for t in node.inputs where t >= 0 && !g.tensors[t].isConstant { needed[t] = true }
    }
    for (k, node) in g.nodes.enumerated() where keep[k] {
      for t in node.outputs where given[t] {
        let other = node.outputs.first(where: { needed[$0] && !given[$0] }).map { g.tensors[$0].name } ?? "?"
        throw .arg(
          "input '\(g.tensors[t].name)' is given, but the \(node.op.name) that computes it also computes "
            + "'\(other)', which the outputs need: give '\(other)' as an input too")
      }
    }
    for t in g.inputs where needed[t] && !given[t] {
      guard addGraphInputs else {
        throw .arg(
          "the outputs need '\(g.tensors[t].name)', an input of the model, which is not among the given inputs "
            + "(the given tensors do not cut the graph before it)")
      }
      given[t] = true
      ins.append(t)
    }

    var ops: [Int] = []
    var nodes: [Node] = []
    var computed = given
    for (k, node) in g.nodes.enumerated() where keep[k] {
      ops.append(k)
      nodes.append(node)
      for t in node.outputs { computed[t] = true }
    }
    let guards = g.shapeGuards.filter { $0.inputs.first.map { $0 >= 0 && computed[$0] } ?? false }
    let sub = Graph(subgraphOf: g, nodes: nodes, inputs: ins, outputs: outs, shapeGuards: guards)
    var report = passReport
    let inNames = ins.map { "'" + g.tensors[$0].name + "'" }.joined(separator: ", ")
    let outNames = outs.map { "'" + g.tensors[$0].name + "'" }.joined(separator: ", ")
    report.append("subgraph: \(ops.count) of \(g.nodes.count) ops, from \(inNames) to \(outNames)")
    return Model(view: self, graph: sub, ops: ops, report: report, t0: t0)
  }
}

extension Model {
  /// The model as a `.tinf` file: its graph as loaded (after the load-time
  /// passes), with the constants its ops read (folded ones included). For a
  /// view (`subgraph`, `split`) that is the view's own inputs, ops and
  /// outputs, so a backbone or a head can be saved and loaded on its own;
  /// loading the bytes gives the same results bit for bit (the same ops on
  /// the same constants). The reshapes the passes removed as identities for
  /// the file's shapes (`Graph.shapeGuards`) are written back after the ops,
  /// so a load of the file keeps refusing input shapes for which they are
  /// real reshapes. A graph with control-flow subgraphs is refused
  /// (`.unsupported`).
  public func fileBytes() throws(TinfError) -> [UInt8] {
    let g = graph
    guard g.subgraphs.isEmpty else {
      throw .unsupported("saving a model with control-flow subgraphs (If / While) is not supported")
    }
    var w = GraphWriter(model: self)
    let inputs = g.inputs.map { w.carry($0) }
    for node in g.nodes + g.shapeGuards {
      let ins = node.inputs.map { t -> Int in t < 0 ? -1 : w.carry(t) }
      let outs = node.outputs.map { w.carry($0) }
      w.emit(node.op, ins, outs, node.attrs)
    }
    let outputs = g.outputs.map { w.carry($0) }
    w.def.inputs = inputs
    w.def.outputs = outputs
    return ModelFile.write(w.def, constants: w.data)
  }
}
