/// Hoisting (issue 18): the ops of a session's graph whose outputs do not
/// depend on the values of the graph inputs run once, when the session is
/// made, instead of on every run. Constant folding (Passes/ConstantFolding.swift)
/// already runs at load every op whose inputs are all constants, whatever
/// its kind; what it leaves is
/// - shape arithmetic: a Shape op's output is its input's shape, fixed for
///   a session (a session for other input shapes infers it again) though
///   not for the model; a Range (no inputs) folding did not keep; and the
///   ops computing on them (Gather, Concat, Mul, Cast ...);
/// - ops on constants whose outputs folding would not keep at load (over its
///   growth limit or budget): hoisted per session when small.
/// Their outputs are pinned in the arena for the whole run
/// (`MemoryPlanner.planSession`), computed with their own kernels right
/// after binding, and their kernels replaced by nothing. A kernel that fails
/// then (a Gather index out of range) leaves every op to the runs, where the
/// failure is reported as before.
enum Hoisting {
  /// The most output bytes a hoisted op may have: its buffer is then held
  /// for the whole run instead of being reused.
  static let maxBytes = 1 << 20

  /// Per op of `g`: whether its outputs are known before any run.
  static func ops(_ g: Graph) -> [Bool] {
    var known = [Bool](repeating: false, count: g.tensors.count)
    for (i, t) in g.tensors.enumerated() where t.isConstant { known[i] = true }
    var hoist = [Bool](repeating: false, count: g.nodes.count)
    for (k, node) in g.nodes.enumerated() {
      // Session state and subgraph calls depend on more than their inputs.
      guard node.op.traits.state == .none && !node.op.traits.subgraphs else { continue }
      var bytes = 0
      for t in node.outputs { bytes &+= g.tensors[t].nbytes }
      guard bytes <= maxBytes else { continue }
      var present = 0
      var allKnown = true
      for t in node.inputs where t >= 0 {
        present += 1
        if !known[t] { allKnown = false }
      }
      guard node.op == .shape || node.op == .range || (present > 0 && allKnown) else { continue }
      hoist[k] = true
      for t in node.outputs { known[t] = true }
    }
    return hoist
  }

  /// The tensors the hoisted ops compute (pinned in the arena).
  static func outputs(_ g: Graph, _ hoist: [Bool]) -> [Int] {
    var out: [Int] = []
    for (k, node) in g.nodes.enumerated() where hoist[k] { out.append(contentsOf: node.outputs) }
    return out
  }

  /// Runs the hoisted kernels once and replaces them with nothing; returns
  /// how many were hoisted (0 when one failed: then every op stays).
  static func run(_ kernels: inout [BoundKernel], _ hoist: [Bool]) -> Int {
    var n = 0
    for k in kernels.indices where k < hoist.count && hoist[k] {
      do throws(TinfError) {
        try kernels[k].run()
      } catch {
        return 0
      }
      n += 1
    }
    guard n > 0 else { return 0 }
    for k in kernels.indices where k < hoist.count && hoist[k] { kernels[k] = BoundKernel(run: { () throws(TinfError) in }) }
    return n
  }

  /// The load-time report's line for the model's own shapes, or nothing.
  static func report(_ g: Graph) -> [String] {
    let hoist = ops(g)
    var names: [String] = []
    for (k, node) in g.nodes.enumerated() where hoist[k] { names.append(node.op.name) }
    guard !names.isEmpty else { return [] }
    return [
      "hoist: \(names.count) op\(names.count == 1 ? "" : "s") not depending on input values computed once per "
        + "session instead of every run (\(names.joined(separator: ", ")))"
    ]
  }
}

extension MemoryPlanner {
  /// The arena plan of a session of graph `g`: the outputs of the ops the
  /// session hoists (`Hoisting.ops`) stay for the whole run. Used by
  /// Session.create and by tinf_model_batch_bytes, so the size a batch plan
  /// predicts is the size a session allocates.
  public static func planSession(_ g: Graph) throws(TinfError) -> MemoryPlan {
    try plan(g, pinned: Hoisting.outputs(g, Hoisting.ops(g)))
  }
}
