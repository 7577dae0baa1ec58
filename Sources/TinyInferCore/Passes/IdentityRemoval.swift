/// Removes ops that do not change their input: a Reshape, Squeeze or
/// ExpandDims whose output shape is its input shape, a Transpose with the
/// identity permutation; and makes a Reshape of a Reshape (or of a Squeeze,
/// an ExpandDims) read the first one's input (the first one then dies if
/// nothing else reads it). Quantized tensors are left alone.
///
/// A reshape that is an identity for the file's shapes may not be one for
/// other input shapes (a Squeeze of every size-1 dim, a fixed Reshape): it is
/// kept as a shape guard, which `Graph.withInputShapes` checks again.
enum IdentityRemoval {
  static func run(_ p: inout PassGraph) {
    for k in p.nodes.indices {
      guard let n = p.nodes[k], n.inputs.count == 1, n.outputs.count == 1 else { continue }
      let x = n.inputs[0]
      let y = n.outputs[0]
      guard x >= 0, p.tensors[x].quant == nil, p.tensors[y].quant == nil else { continue }
      switch n.op.traits.family {
      case .reshape:
        var x = x
        if n.op == .reshape, let q = p.producer(x), let qn = p.nodes[q],
          qn.op.traits.family == .reshape, let src = qn.inputs.first, src >= 0,
          p.tensors[src].quant == nil
        {
          p.report.append("collapse \(qn.op.name) '\(p.tensors[x].name)' + Reshape '\(p.tensors[y].name)' into one Reshape")
          p.nodes[k]!.inputs = [src]
          x = src
        }
        if p.tensors[x].shape == p.tensors[y].shape {
          // The guard reads the tensor that holds the values (renamed with them).
          var guardNode = p.nodes[k]!
          guardNode.inputs = [y]
          p.guards.append(guardNode)
          if !remove(&p, k, "identity") { p.guards.removeLast() }
        }
      case .transpose:
        guard let perm = try? TransposeKernel.permutation(n.attrs, rank: p.tensors[x].shape.count),
          perm == Array(0..<perm.count)
        else { continue }
        _ = remove(&p, k, "identity permutation")
      case .compute, .linear:
        continue
      }
    }
  }

  /// Removes op `k` (y = x): readers of y read x, or, when y is a graph
  /// output, x's producer writes y. Returns false when it cannot (y is a
  /// graph output and x is a graph input, a constant or read elsewhere).
  /// After a removal the op's output names the tensor the values are in.
  static func remove(_ p: inout PassGraph, _ k: Int, _ why: String) -> Bool {
    guard let n = p.nodes[k] else { return false }
    let x = n.inputs[0]
    let y = n.outputs[0]
    let what = "remove \(p.label(k)) (\(why))"
    if p.isOutput(y) {
      guard let q = p.producer(x), p.onlyFeeds(x, k) else { return false }
      p.absorb(k, into: q, prev: x, y: y)
    } else {
      p.nodes[k] = nil
      p.replaceUses(of: y, with: x)
    }
    p.report.append(what)
    return true
  }
}
