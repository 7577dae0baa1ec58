/// Fuses a Relu or Relu6 into the float32 op that produces its input, when
/// that op has a fused activation attribute its kernel applies
/// (`OpTraits.fusedActivation`: Conv2D, DepthwiseConv2D, TransposeConv2D,
/// FullyConnected, Add, Sub, Mul, Div, the pools), has none yet, and its
/// output feeds only the activation and is not a graph output. The kernels clamp exactly like the Relu kernels, so the
/// outputs are the same. The op then writes the activation's output.
///
/// Integer ops are left alone: their fused activation is a range computed
/// from the output's quantization, equal to a separate int8 Relu only when
/// the two outputs' parameters match.
enum ActivationFusion {
  static func run(_ p: inout PassGraph) {
    for k in p.nodes.indices {
      guard let act = p.nodes[k], let fused = act.op.traits.asFusedActivation, let x = act.inputs.first, x >= 0,
        let q = p.producer(x), var prod = p.nodes[q], prod.op.traits.fusedActivation, p.isFloat(q), p.onlyFeeds(x, k),
        prod.outputs.count == 1, prod.attrs[.activation] == nil || prod.attrs[.activation] == .int(0)
      else { continue }
      let label = p.label(q)
      prod.attrs[.activation] = .int(Int64(fused.rawValue))
      p.nodes[q] = prod
      p.absorb(k, into: q, prev: x, y: act.outputs[0])
      p.report.append("fuse \(act.op.name) '\(p.tensors[act.outputs[0]].name)' into \(label)")
    }
  }
}
