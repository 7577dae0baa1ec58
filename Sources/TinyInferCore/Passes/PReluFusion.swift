/// Fuses a PRelu into the float32 Add that produces its input (issue 20:
/// the residual Add then PRelu of the landmark and detection nets), when
/// the PRelu's slope is a constant with one value per channel of the last
/// axis (or one value), the Add's two inputs have the output's shape, the
/// Add has no fused activation, and its output feeds only the PRelu and is
/// not a graph output. The Add gets the slopes (`prelu_slopes`, one per
/// channel) and writes the PRelu's output: its kernel adds and applies the
/// PRelu in one pass (`t >= 0 ? t : t * slope`, the PRelu kernel's
/// formula), so the outputs are the same.
///
/// int8 (issue 14): an int8 Add (inputs of the output's shape, per-tensor
/// parameters) whose output feeds only an int8 PRelu with a constant
/// per-tensor int8 slope of one value per channel (or one value) gets
/// `prelu_slopes = [s_t, zp_t, s_a, zp_a, a_0, ..., a_{C-1}]`: the
/// quantization of the Add's own result t (which disappears), the slope's,
/// and its raw int8 values; the Add's kernel (QBinaryKernel) computes t
/// exactly as the int8 Add and then the int8 PRelu of t in the same pass.
enum PReluFusion {
  static func run(_ p: inout PassGraph) {
    for k in p.nodes.indices {
      fuseInt8(&p, k)
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

  /// The int8 fusion of the PRelu `k` into its Add (see above), if it applies.
  static func fuseInt8(_ p: inout PassGraph, _ k: Int) {
    guard let pr = p.nodes[k], pr.op == .prelu, pr.inputs.count == 2, pr.outputs.count == 1, let x = pr.inputs.first,
      x >= 0, pr.inputs[1] >= 0, let q = p.producer(x), var add = p.nodes[q], add.op == .add, p.onlyFeeds(x, k),
      add.outputs.count == 1, add.inputs.count == 2, add.inputs.allSatisfy({ $0 >= 0 }), add.attrs[.preluSlopes] == nil
    else { return }
    let shape = p.tensors[x].shape
    let sd = p.tensors[pr.inputs[1]]
    let sc = sd.shape.last ?? 1
    func perTensor(_ t: Int) -> (Float, Int32)? {
      guard p.tensors[t].dtype == .int8, let qp = p.tensors[t].quant, qp.scales.count == 1, qp.zeroPoints.count == 1
      else { return nil }
      return (qp.scales[0], qp.zeroPoints[0])
    }
    guard let c = shape.last, c > 0, let tq = perTensor(x), let aq = perTensor(pr.inputs[1]),
      perTensor(pr.outputs[0]) != nil, add.inputs.allSatisfy({ p.tensors[$0].shape == shape && perTensor($0) != nil }),
      sd.shape.dropLast().allSatisfy({ $0 == 1 }), sc == c || sc == 1, let raw = p.data(pr.inputs[1])
    else { return }
    let slope = UnsafeRawPointer(raw).assumingMemoryBound(to: Int8.self)
    add.attrs[.preluSlopes] = .floats([tq.0, Float(tq.1), aq.0, Float(aq.1)] + (0..<c).map { Float(slope[sc == 1 ? 0 : $0]) })
    p.nodes[q] = add
    let label = p.label(q)
    p.absorb(k, into: q, prev: x, y: pr.outputs[0])
    p.report.append("fuse int8 PRelu '\(p.tensors[pr.outputs[0]].name)' into \(label)")
  }
}
