/// Reorders the ops to lower the arena's peak: a greedy topological order
/// that runs, among the ops whose inputs are ready, the one that adds the
/// fewest bytes (its outputs minus the inputs it is the last reader of; ties
/// keep the file's order). The memory planner plans both orders and the new
/// one is kept only if its arena is smaller. Ops are independent of their
/// position, so the outputs are the same.
enum Reordering {
  static func run(_ g: Graph, report: inout [String]) throws(TinfError) -> Graph {
    let n = g.nodes.count
    guard n > 2 else { return g }
    let nt = g.tensors.count
    var producer = [Int](repeating: -1, count: nt)
    for (k, node) in g.nodes.enumerated() { for t in node.outputs { producer[t] = k } }
    var readersLeft = [Int](repeating: 0, count: nt)
    var waiting = [Int](repeating: 0, count: n)  // inputs not yet produced
    var consumers = [[Int]](repeating: [], count: n)
    for (k, node) in g.nodes.enumerated() {
      for t in node.inputs where t >= 0 {
        readersLeft[t] += 1
        if producer[t] >= 0 {
          waiting[k] += 1
          consumers[producer[t]].append(k)
        }
      }
    }
    var pinned = [Bool](repeating: false, count: nt)  // live to the end or constant
    for t in g.inputs { pinned[t] = true }
    for t in g.outputs { pinned[t] = true }
    for t in 0..<nt where g.tensors[t].isConstant { pinned[t] = true }

    var ready: [Int] = []
    for k in 0..<n where waiting[k] == 0 { ready.append(k) }
    var order: [Int] = []
    order.reserveCapacity(n)
    while !ready.isEmpty {
      var best = 0
      var bestScore = Int.max
      for (i, k) in ready.enumerated() {
        var score = 0
        for t in g.nodes[k].outputs { score += g.tensors[t].nbytes }
        var seen: [Int] = []
        for t in g.nodes[k].inputs where t >= 0 && !pinned[t] && !seen.contains(t) {
          seen.append(t)
          var uses = 0
          for u in g.nodes[k].inputs where u == t { uses += 1 }
          if readersLeft[t] == uses { score -= g.tensors[t].nbytes }
        }
        if score < bestScore || (score == bestScore && k < ready[best]) {
          best = i
          bestScore = score
        }
      }
      let k = ready.remove(at: best)
      order.append(k)
      for t in g.nodes[k].inputs where t >= 0 { readersLeft[t] -= 1 }
      for c in consumers[k] {
        waiting[c] -= 1
        if waiting[c] == 0 { ready.append(c) }
      }
    }
    guard order.count == n, order != Array(0..<n) else { return g }
    let reordered = Graph(rewriting: g, tensors: g.tensors, nodes: order.map { g.nodes[$0] }, shapeGuards: g.shapeGuards)
    let before = try MemoryPlanner.plan(g).size
    let after = try MemoryPlanner.plan(reordered).size
    guard after < before else { return g }
    report.append("reorder: arena \(before) -> \(after) B")
    return reordered
  }
}
