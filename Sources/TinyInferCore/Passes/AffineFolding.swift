/// Folds a float32 Mul, Add or Sub with a constant into the Conv2D,
/// DepthwiseConv2D, TransposeConv2D or FullyConnected (`OpFamily.linear`)
/// that produces its other input, on the
/// same conditions as BatchNorm folding (BatchNormFolding.linearProducer):
/// exported "scale and bias" pairs (PaddlePaddle's learnable affine blocks,
/// a BatchNorm spelled out as Mul and Add, a normalization constant) then
/// cost nothing, and int8-static quantizes the folded op's output once
/// instead of after each step. The constant holds one value, or one per
/// channel of the last axis (every other dim 1, rank at most the input's),
/// all finite; the op has no fused activation. x * c: w' = w * c, b' = b * c;
/// x + c: b' = b + c; x - c: b' = b - c; c - x: w' = -w, b' = c - b. The
/// results differ from the unfolded ops by rounding only.
enum AffineFolding {
  static func run(_ p: inout PassGraph) throws(TinfError) {
    for k in p.nodes.indices {
      guard let n = p.nodes[k], n.op == .mul || n.op == .add || n.op == .sub, n.inputs.count == 2,
        n.outputs.count == 1, n.inputs.allSatisfy({ $0 >= 0 }),
        n.attrs[.activation] == nil || n.attrs[.activation] == .int(0), n.attrs[.preluSlopes] == nil
      else { continue }
      // Which input is the constant.
      let constFirst = p.data(n.inputs[0]) != nil
      let (x, cst) = constFirst ? (n.inputs[1], n.inputs[0]) : (n.inputs[0], n.inputs[1])
      guard p.data(x) == nil, let c = p.tensors[x].shape.last, c > 0, let v = values(p, cst, channels: c),
        p.tensors[n.outputs[0]].shape == p.tensors[x].shape,
        let q = BatchNormFolding.linearProducer(p, of: x, readBy: k)
      else { continue }
      switch n.op {
      case .mul:
        try BatchNormFolding.fold(&p, k, into: q, x: x, scale: v, shift: [0], what: "Mul")
      case .add:
        try BatchNormFolding.fold(&p, k, into: q, x: x, scale: [1], shift: v, what: "Add")
      default:
        // c - x = -x + c; x - c = x + (-c).
        try BatchNormFolding.fold(
          &p, k, into: q, x: x, scale: [constFirst ? -1 : 1], shift: constFirst ? v : v.map { -$0 }, what: "Sub")
      }
    }
  }

  /// The constant's values when it is float32 and holds one value or one
  /// per channel (last axis `channels`, every other dim 1), all finite.
  static func values(_ p: PassGraph, _ t: Int, channels: Int) -> [Float]? {
    let d = p.tensors[t]
    guard d.dtype == .float32, let data = p.data(t), d.shape.dropLast().allSatisfy({ $0 == 1 }) else { return nil }
    let count = d.shape.last ?? 1
    guard count == 1 || count == channels else { return nil }
    var v = [Float](repeating: 0, count: count)
    for i in 0..<count {
      guard data[i].isFinite else { return nil }
      v[i] = data[i]
    }
    return v
  }
}
