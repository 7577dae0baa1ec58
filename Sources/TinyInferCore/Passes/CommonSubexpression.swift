/// Common-subexpression elimination: an op with the same kind, the same
/// attributes (floats compared bit for bit) and the same inputs as an earlier
/// op, whose outputs have the same dtypes, shapes and quantization, computes
/// the same values (every op is a pure function of its inputs and
/// attributes), so it is removed and its readers read the earlier op's
/// outputs. Two inputs are the same when they are one tensor, or two
/// constants with the same dtype, shape, quantization and bytes (converters
/// often write one constant per use). Ops are visited in order, so a chain
/// of duplicates collapses op by op. An op whose output is a graph output is
/// kept (the output tensor is named by the file). Outputs are bit for bit the
/// same. Each merge adds a line to the report, and a last line gives the count.
/// Ops on variables (`OpTraits.state`) are left alone.
enum CommonSubexpression {
  static func run(_ p: inout PassGraph) {
    // Candidates by their first input (or -2 for ops without inputs): a
    // duplicate reads the same first tensor or an equal constant, so
    // constants are looked up through their content's representative.
    var byFirstInput: [Int: [Int]] = [:]
    var constantClass: [Int: Int] = [:]  // constant tensor -> the first equal constant seen
    var constants: [Int] = []
    var merged = 0
    func representative(_ t: Int) -> Int {
      guard t >= 0, p.tensors[t].isConstant else { return t }
      if let r = constantClass[t] { return r }
      for c in constants where sameConstant(p, c, t) {
        constantClass[t] = c
        return c
      }
      constants.append(t)
      constantClass[t] = t
      return t
    }
    for k in p.nodes.indices {
      // Variables are named by their constant: two equal constants are two variables.
      guard let n = p.nodes[k], !n.outputs.isEmpty, n.op.traits.state == .none else { continue }
      let key = n.inputs.first.map { representative($0) } ?? -2
      var match: Int? = nil
      if !n.outputs.contains(where: { p.isOutput($0) }) {
        for c in byFirstInput[key] ?? [] {
          if let m = p.nodes[c], same(p, m, n, representative) {
            match = c
            break
          }
        }
      }
      guard let c = match, let m = p.nodes[c] else {
        byFirstInput[key, default: []].append(k)
        continue
      }
      let label = p.label(k)
      for (old, new) in zip(n.outputs, m.outputs) { p.replaceUses(of: old, with: new) }
      p.nodes[k] = nil
      merged += 1
      p.report.append("merge \(label) into \(p.label(c)) (same op, attributes and inputs)")
    }
    if merged > 0 {
      p.report.append("common subexpressions: \(merged) duplicate op\(merged == 1 ? "" : "s") removed")
    }
  }

  private static func same(_ p: PassGraph, _ a: Node, _ b: Node, _ rep: (Int) -> Int) -> Bool {
    guard a.op == b.op, a.inputs.count == b.inputs.count, a.outputs.count == b.outputs.count else { return false }
    for (x, y) in zip(a.inputs, b.inputs) where x != y {
      guard x >= 0, y >= 0, rep(x) == rep(y) else { return false }
    }
    for (x, y) in zip(a.outputs, b.outputs) {
      let s = p.tensors[x], t = p.tensors[y]
      guard s.dtype == t.dtype, s.shape == t.shape, s.quant == t.quant else { return false }
    }
    return sameAttributes(a.attrs, b.attrs)
  }

  /// The same keys with the same values, in any order.
  static func sameAttributes(_ a: Attributes, _ b: Attributes) -> Bool {
    guard a.entries.count == b.entries.count else { return false }
    for e in a.entries {
      guard let v = b[e.key], sameValue(e.value, v) else { return false }
    }
    return true
  }

  /// Equal values; floats bit for bit (0.0 and -0.0 differ, a NaN equals the same NaN).
  static func sameValue(_ a: AttrValue, _ b: AttrValue) -> Bool {
    switch a {
    case .int(let x):
      if case .int(let y) = b { return x == y }
      return false
    case .float(let x):
      if case .float(let y) = b { return x.bitPattern == y.bitPattern }
      return false
    case .ints(let x):
      if case .ints(let y) = b { return x == y }
      return false
    case .floats(let x):
      if case .floats(let y) = b { return x.map { $0.bitPattern } == y.map { $0.bitPattern } }
      return false
    case .string(let x):
      if case .string(let y) = b { return x == y }
      return false
    }
  }

  /// Two constants with the same dtype, shape, quantization and bytes.
  private static func sameConstant(_ p: PassGraph, _ a: Int, _ b: Int) -> Bool {
    let s = p.tensors[a], t = p.tensors[b]
    guard s.dtype == t.dtype, s.shape == t.shape, s.quant == t.quant,
      let x = p.data(a), let y = p.data(b)
    else { return false }
    if x == y { return true }
    let n = s.nbytes
    let u = UnsafeRawPointer(x).assumingMemoryBound(to: UInt8.self)
    let v = UnsafeRawPointer(y).assumingMemoryBound(to: UInt8.self)
    for i in 0..<n where u[i] != v[i] { return false }
    return true
  }
}
