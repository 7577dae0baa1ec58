/// Removes ops whose outputs nothing reads and that are not graph outputs
/// (walking backwards, so a chain that only fed dead ops goes too). Ops have
/// no side effects, so the outputs are the same; an op that writes a
/// variable (`OpTraits.state`) is kept.
enum DeadCodeElimination {
  static func run(_ p: inout PassGraph) {
    var used = [Bool](repeating: false, count: p.tensors.count)
    for t in p.outputs { used[t] = true }
    for k in p.nodes.indices.reversed() {
      guard let n = p.nodes[k] else { continue }
      if n.outputs.contains(where: { used[$0] }) || n.op.traits.state == .writes {
        for t in n.inputs where t >= 0 { used[t] = true }
      } else {
        p.report.append("remove \(p.label(k)) (output never read)")
        p.nodes[k] = nil
      }
    }
  }
}
