/// Fuses a Relu or Relu6 into the float32 op that produces its input, when
/// that op has a fused activation attribute its kernel applies (Conv2D,
/// DepthwiseConv2D, TransposeConv2D, FullyConnected, Add, Sub, Mul, Div, the
/// pools), has none yet, and its output feeds only the activation and is not
/// a graph output. The kernels clamp exactly like the Relu kernels, so the
/// outputs are the same. The op then writes the activation's output.
///
/// Integer ops are left alone: their fused activation is a range computed
/// from the output's quantization, equal to a separate int8 Relu only when
/// the two outputs' parameters match.
enum ActivationFusion {
  static func run(_ p: inout PassGraph) {
    for k in p.nodes.indices {
      guard let act = p.nodes[k], act.op == .relu || act.op == .relu6, let x = act.inputs.first, x >= 0,
        let q = p.producer(x), var prod = p.nodes[q], takesActivation(prod.op), p.isFloat(q), p.onlyFeeds(x, k),
        prod.outputs.count == 1, prod.attrs[.activation] == nil || prod.attrs[.activation] == .int(0)
      else { continue }
      let label = p.label(q)
      prod.attrs[.activation] = .int(act.op == .relu ? Int64(Activation.relu.rawValue) : Int64(Activation.relu6.rawValue))
      p.nodes[q] = prod
      p.absorb(k, into: q, prev: x, y: act.outputs[0])
      p.report.append("fuse \(act.op.name) '\(p.tensors[act.outputs[0]].name)' into \(label)")
    }
  }

  /// Ops whose float kernel reads `Activation.from` and applies it.
  static func takesActivation(_ op: OpKind) -> Bool {
    switch op {
    case .conv2D, .depthwiseConv2D, .transposeConv2D, .fullyConnected, .add, .sub, .mul, .div, .maxPool2D,
      .averagePool2D:
      return true
    default:
      return false
    }
  }
}
