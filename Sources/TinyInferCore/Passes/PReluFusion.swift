/// Fuses a PRelu into the float32 Add that produces its input (issue 20:
/// the residual Add then PRelu of the landmark and detection nets), when
/// the PRelu's slope is a constant with one value per channel of the last
/// axis (or one value), the Add's two inputs have the output's shape, the
/// Add has no fused activation, and its output feeds only the PRelu and is
/// not a graph output. The Add gets the slopes (`prelu_slopes`, one per
/// channel) and writes the PRelu's output: its kernel adds and applies the
/// PRelu in one pass (`t >= 0 ? t : t * slope`, the PRelu kernel's
/// formula), so the outputs are the same.
enum PReluFusion {
  static func run(_ p: inout PassGraph) {
    for k in p.nodes.indices {
      guard let pr = p.nodes[k], pr.op == .prelu, pr.inputs.count == 2, let x = pr.inputs.first, x >= 0,
        pr.inputs[1] >= 0, let q = p.producer(x), var add = p.nodes[q], add.op == .add, p.isFloat(q),
        p.onlyFeeds(x, k), add.outputs.count == 1, add.inputs.count == 2, add.inputs.allSatisfy({ $0 >= 0 }),
        add.attrs[.activation] == nil || add.attrs[.activation] == .int(0), add.attrs[.preluSlopes] == nil
      else { continue }
      let shape = p.tensors[x].shape
      let sd = p.tensors[pr.inputs[1]]
      let sc = sd.shape.last ?? 1
      guard let c = shape.last, c > 0, sd.dtype == .float32, let slope = p.data(pr.inputs[1]),
        add.inputs.allSatisfy({ p.tensors[$0].shape == shape }),
        sd.shape.dropLast().allSatisfy({ $0 == 1 }), sc == c || sc == 1
      else { continue }
      let slopes = (0..<c).map { Float(slope[sc == 1 ? 0 : $0]) }
      add.attrs[.preluSlopes] = .floats(slopes)
      p.nodes[q] = add
      let label = p.label(q)
      p.absorb(k, into: q, prev: x, y: pr.outputs[0])
      p.report.append("fuse PRelu '\(p.tensors[pr.outputs[0]].name)' into \(label)")
    }
  }
}
