/// Folds a BatchNorm into the float32 Conv2D, DepthwiseConv2D,
/// TransposeConv2D or FullyConnected (`OpFamily.linear`) that produces its input, when that op
/// has constant float32 weights (and a constant bias or none) and no fused activation, and its
/// output feeds only the BatchNorm and is not a graph output. With the
/// BatchNorm kernel's per-channel s = scale / sqrt(variance + eps) and
/// t = bias - mean * s (Kernels/BatchNorm.swift): w' = w * s on each output
/// channel, b' = b * s + t. The new weights and bias are model-owned
/// constants; the op then writes the BatchNorm's output.
enum BatchNormFolding {
  static func run(_ p: inout PassGraph) throws(TinfError) {
    for k in p.nodes.indices {
      guard let bn = p.nodes[k], bn.op == .batchNorm, let x = bn.inputs.first, x >= 0,
        let q = linearProducer(p, of: x, readBy: k)
      else { continue }
      // The BatchNorm's parameters: constants.
      var params: [UnsafeMutablePointer<Float>] = []
      for i in 1...4 {
        if let d = p.data(bn.inputs[i]), p.tensors[bn.inputs[i]].dtype == .float32 { params.append(d) }
      }
      guard params.count == 4, let eps = try? bn.attrs.float(.epsilon, default: 1e-5) else { continue }
      let c = p.tensors[x].shape.last ?? 0
      var s = [Float](repeating: 0, count: c)
      var t = [Float](repeating: 0, count: c)
      for j in 0..<c {
        s[j] = params[0][j] / (params[3][j] + eps).squareRoot()
        t[j] = params[1][j] - params[2][j] * s[j]
      }
      try fold(&p, k, into: q, x: x, scale: s, shift: t)
    }
  }

  /// The linear op producing `x` (constant float32 weights, constant
  /// float32 bias or none, no fused activation, `x` read only by op `k`,
  /// which it then absorbs) when there is one.
  static func linearProducer(_ p: PassGraph, of x: Int, readBy k: Int) -> Int? {
    guard let q = p.producer(x), let prod = p.nodes[q], p.onlyFeeds(x, k), p.isFloat(q),
      case .linear = prod.op.traits.family,
      prod.attrs[.activation] == nil || prod.attrs[.activation] == .int(0),
      prod.attrs[.weightFormat] == nil || prod.attrs[.weightFormat] == .int(0),
      prod.inputs.count >= 2, prod.inputs[1] >= 0, p.tensors[prod.inputs[1]].dtype == .float32,
      p.data(prod.inputs[1]) != nil
    else { return nil }
    if prod.inputs.count > 2 && prod.inputs[2] >= 0 {
      let b = prod.inputs[2]
      guard p.tensors[b].dtype == .float32, p.data(b) != nil else { return nil }
    }
    return q
  }

  /// Op `q` (linearProducer) takes `scale` and `shift` per output channel
  /// (one value each, or one per channel of `x`'s last axis): w' = w * s on
  /// each output channel, b' = b * s + t, in new model-owned constants; op
  /// `k`, which read `x`, is removed and `q` writes its output.
  static func fold(
    _ p: inout PassGraph, _ k: Int, into q: Int, x: Int, scale s: [Float], shift t: [Float], what: String = "BatchNorm"
  ) throws(TinfError) {
    guard let prod = p.nodes[q], let consumer = p.nodes[k], let w = p.data(prod.inputs[1]),
      case .linear(let channelLast, _) = prod.op.traits.family
    else { return }
    let c = p.tensors[x].shape.last ?? 0
    @inline(__always) func sc(_ j: Int) -> Float { s.count == 1 ? s[0] : s[j] }
    @inline(__always) func sh(_ j: Int) -> Float { t.count == 1 ? t[0] : t[j] }
    // Output channel of each weight: the first dim (Conv2D [Cout,KH,KW,Cin/g],
    // TransposeConv2D [Cout,KH,KW,Cin], FullyConnected [N,K]) or the last
    // (DepthwiseConv2D [1,KH,KW,C*M]). An op without a bias gets one.
    let wd = p.tensors[prod.inputs[1]]
    let count = wd.count
    guard c > 0, count % c == 0 else { return }  // not one weight slice per channel of x: left unfolded
    var nw = [Float](repeating: 0, count: count)
    // Channel by channel, without a division per weight (a 10 MB model's
    // load spent a quarter of its time in `i / per`).
    nw.withUnsafeMutableBufferPointer { out in
      guard let o = out.baseAddress else { return }
      if channelLast {
        for i in stride(from: 0, to: count, by: c) {
          for j in 0..<c { o[i &+ j] = w[i &+ j] * sc(j) }
        }
      } else {
        let per = count / c
        for j in 0..<c {
          let f = sc(j)
          for i in (j &* per)..<((j &+ 1) &* per) { o[i] = w[i] * f }
        }
      }
    }
    let bias = prod.inputs.count > 2 && prod.inputs[2] >= 0 ? p.data(prod.inputs[2]) : nil
    var nb = [Float](repeating: 0, count: c)
    for j in 0..<c { nb[j] = bias.map { $0[j] * sc(j) + sh(j) } ?? sh(j) }
    let label = p.label(q)
    let base = p.tensors[x].name
    let wt = try p.addConstant(name: "\(base).folded_weights", shape: wd.shape, values: nw)
    let bt = try p.addConstant(name: "\(base).folded_bias", shape: [c], values: nb)
    var n = prod
    n.inputs = [n.inputs[0], wt, bt]
    p.nodes[q] = n
    let y = consumer.outputs[0]
    p.absorb(k, into: q, prev: x, y: y)
    p.report.append("fold \(what) '\(p.tensors[y].name)' into \(label)")
  }
}
