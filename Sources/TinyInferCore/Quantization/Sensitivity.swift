/// int8-static's default precision choice: which ops stay float32 because
/// int8 would destroy the model through them, and why (the ops' `int8Risk`
/// traits, judged on the calibration statistics). docs/quantization.md,
/// "Kept in float32".
enum Sensitivity {
  /// For each node of `g`: why it stays float32, or nil. `stats`: the
  /// calibration statistics of each tensor (nil: none).
  static func floatReasons(_ model: Model, _ stats: [TensorStats?]) -> [String?] {
    let g = model.graph
    var why = [String?](repeating: nil, count: g.nodes.count)
    var producer = [Int](repeating: -1, count: g.tensors.count)
    for (k, n) in g.nodes.enumerated() {
      for t in n.outputs where t >= 0 && t < producer.count { producer[t] = k }
    }
    for (k, node) in g.nodes.enumerated() {
      switch node.op.traits.int8Risk {
      case .none:
        break
      case .maskedRange:
        guard node.op.traits.staticInt8 != nil, why[k] == nil else { break }
        for (t, role) in node.inputs.map({ ($0, "input") }) + node.outputs.map({ ($0, "output") }) {
          guard t >= 0, t < stats.count, !g.tensors[t].isConstant, let s = stats[t] else { continue }
          if s.nonFinite > 0 {
            why[k] =
              "its \(role) '\(g.tensors[t].name)' holds infinite values (an -inf mask): int8 would clamp them to "
              + "the end of the range, a finite logit"
            break
          }
          guard let lost = s.maskDominated() else { continue }
          let pct = Int((lost * 100).rounded())
          why[k] =
            "its \(role) '\(g.tensors[t].name)' spans [\(s.lo), \(s.hi)] but \(pct)% of its values lie within one "
            + "int8 step of zero: a mask or padding constant sets the range, int8 would round the rest to zero"
          break
        }
      case .sharedWeights:
        markRecurrence(model, k, producer, &why)
      case .magnitude:
        markMagnitude(model, k, producer, &why)
      case .smallValues:
        // Every op upstream of the input, to the graph inputs or to an op of
        // fixed output range (kept too, its own input not followed).
        var stack = node.inputs.filter { $0 >= 0 }
        var seen = [Bool](repeating: false, count: g.tensors.count)
        while let t = stack.popLast() {
          guard t < producer.count, producer[t] >= 0, !seen[t] else { continue }
          seen[t] = true
          let p = producer[t]
          let up = g.nodes[p]
          if why[p] == nil {
            why[p] =
              "it feeds \(node.op.name) '\(g.tensors[node.outputs[0]].name)', which magnifies small values "
              + "(a log / spectrogram path: int8 steps would erase them)"
          }
          if case .fixed = up.op.traits.staticInt8 { continue }
          for (slot, i) in up.inputs.enumerated() where i >= 0 && !g.tensors[i].isConstant {
            if up.op.traits.indexSlots.contains(slot) { continue }
            stack.append(i)
          }
        }
      }
    }
    return why
  }

  /// When the next op applying node `k`'s constant weights reads a value
  /// computed from `k`'s output (an unrolled recurrence), every op on the
  /// way from `k` to it (the state's update, both ends included) stays float32.
  private static func markRecurrence(_ model: Model, _ k: Int, _ producer: [Int], _ why: inout [String?]) {
    let g = model.graph
    let node = g.nodes[k]
    guard node.inputs.count > 1, node.inputs[1] >= 0, g.tensors[node.inputs[1]].isConstant else { return }
    let w = node.inputs[1]
    var next = -1
    for j in (k + 1)..<max(k + 1, g.nodes.count) {
      let n = g.nodes[j]
      if n.op == node.op && n.inputs.count > 1 && n.inputs[1] >= 0 && sameConstant(model, n.inputs[1], w) {
        next = j
        break
      }
    }
    guard next > k else { return }
    // Forward from k, then back from `next`, within k...next.
    var reach = [Bool](repeating: false, count: next - k + 1)
    reach[0] = true
    for m in (k + 1)...next {
      for t in g.nodes[m].inputs where t >= 0 && t < producer.count {
        let p = producer[t]
        if p >= k && reach[p - k] {
          reach[m - k] = true
          break
        }
      }
    }
    guard reach[next - k] else { return }
    var back = [Bool](repeating: false, count: next - k + 1)
    back[next - k] = true
    for m in stride(from: next, through: k, by: -1) where back[m - k] && reach[m - k] {
      for t in g.nodes[m].inputs where t >= 0 && t < producer.count {
        let p = producer[t]
        if p >= k { back[p - k] = true }
      }
    }
    let a = g.tensors[node.outputs[0]].name
    let b = g.tensors[g.nodes[next].outputs[0]].name
    for m in k...next where reach[m - k] && back[m - k] && why[m] == nil {
      why[m] =
        "it is on a recurrent state's update, from '\(a)' to '\(b)', which apply the same weights "
        + "'\(g.tensors[w].name)': int8 error would compound at every step"
    }
  }

  /// When node `k` (a square root) reads Add(square(a), square(b)), each
  /// square being a Mul of a tensor by itself: the Add and the two squares
  /// (and the root) stay float32.
  private static func markMagnitude(_ model: Model, _ k: Int, _ producer: [Int], _ why: inout [String?]) {
    let g = model.graph
    func producerOf(_ t: Int) -> Int? { t >= 0 && t < producer.count && producer[t] >= 0 ? producer[t] : nil }
    func isSquare(_ t: Int) -> Int? {
      guard let p = producerOf(t), g.nodes[p].op == .mul, g.nodes[p].inputs.count == 2,
        g.nodes[p].inputs[0] >= 0, g.nodes[p].inputs[0] == g.nodes[p].inputs[1]
      else { return nil }
      return p
    }
    guard let x = g.nodes[k].inputs.first, let add = producerOf(x), g.nodes[add].op == .add,
      g.nodes[add].inputs.count == 2, let s0 = isSquare(g.nodes[add].inputs[0]),
      let s1 = isSquare(g.nodes[add].inputs[1])
    else { return }
    let name = g.tensors[g.nodes[k].outputs[0]].name
    for m in [k, add, s0, s1] where why[m] == nil {
      why[m] =
        "it computes the magnitude '\(name)' = sqrt(a^2 + b^2) (a spectrogram): one int8 scale for the power "
        + "erases its quiet bins, which the root magnifies"
    }
  }

  /// Whether constants a and b hold the same values (converters often give
  /// each use of a weight its own copy).
  private static func sameConstant(_ model: Model, _ a: Int, _ b: Int) -> Bool {
    if a == b { return true }
    let (ta, tb) = (model.graph.tensors[a], model.graph.tensors[b])
    guard ta.isConstant, tb.isConstant, ta.dtype == tb.dtype, ta.dtype == .float32, ta.shape == tb.shape,
      let pa = model.constantData(a), let pb = model.constantData(b)
    else { return false }
    let (wa, wb) = (pa.assumingMemoryBound(to: UInt32.self), pb.assumingMemoryBound(to: UInt32.self))
    for i in 0..<ta.count where wa[i] != wb[i] { return false }
    return true
  }
}
