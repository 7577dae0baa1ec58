/// int8-static: the full-integer rewrite of the TFLite int8 spec.
///
/// graph input float32 -> Quantize (int8, per tensor) -> int8 ops ->
/// Dequantize -> graph output float32 (same names as before). Activations
/// are int8 per tensor with the calibrated range (zero point from the
/// range, 0 always representable); weights int8 symmetric per channel
/// (zero point 0, [-127, 127], axis 0 for Conv2D / FullyConnected, 3 for
/// DepthwiseConv2D); biases int32 with scale in_scale * w_scale[c];
/// Logistic / Softmax outputs (1/256, -128), Tanh (1/128, 0); pooling and
/// data movement keep their input's parameters; Concat requantizes its
/// inputs to its output's parameters when they differ. An op without an
/// integer kernel (or kept in float32) runs in float32 between a
/// Dequantize and a Quantize. Rounding: half away from zero, as TFLite.
enum StaticInt8Pass {
  /// How an op is rewritten: `OpTraits.staticInt8` (nil: it stays float32).
  typealias Kind = StaticInt8Kind

  /// Whether the op can run in int8 here: a supported kind whose data
  /// inputs are float32, with constant weights where needed.
  static func supported(_ g: Graph, _ node: Node) -> Bool {
    let traits = node.op.traits
    guard let kind = traits.staticInt8 else { return false }
    // An Add that a float-only pass fused a PRelu into (Passes/PReluFusion:
    // only the float32 kernel applies `prelu_slopes`) stays float32; the
    // quantizer loads its model without that fusion (Model.forQuantizer),
    // so this only meets files saved with the fusion already in their graph.
    if node.attrs[.preluSlopes] != nil { return false }
    for (s, t) in node.inputs.enumerated() where t >= 0 {
      if traits.indexSlots.contains(s) { continue }
      if g.tensors[t].dtype != .float32 { return false }
    }
    switch kind {
    case .weighted:
      if node.op == .matMul { return WeightPasses.matMulWithConstantB(g, node) }
      guard node.inputs.count >= 2, node.inputs[1] >= 0, g.tensors[node.inputs[1]].isConstant else { return false }
      if node.inputs.count > 2 && node.inputs[2] >= 0 && !g.tensors[node.inputs[2]].isConstant { return false }
      if node.op == .fullyConnected && ((try? node.attrs.int(.weightFormat, default: 0)) ?? 1) != 0 { return false }
      return true
    case .sameParams:
      if node.op == .pad {
        let mode = (try? node.attrs.int(.mode, default: 0)) ?? 0
        let value = (try? node.attrs.float(.value, default: 0)) ?? 1
        return mode != 0 || value == 0
      }
      return true
    case .calibrated, .fixed, .concat:
      return true
    }
  }

  /// Layers of the report: supported ops other than pure data movement.
  static func isLayer(_ g: Graph, _ node: Node) -> Bool {
    supported(g, node) && !node.op.traits.movesData
  }

  typealias Params = (scale: Float, zeroPoint: Int32)

  struct State {
    var w: GraphWriter
    let g: Graph
    /// Calibrated clipping range of each old tensor.
    let ranges: [(lo: Float, hi: Float)?]
    var fver: [Int]
    var qver: [Int]
    var qp: [Params?]
    var isOutput: [Bool]

    func quant(_ p: Params) -> Quantization { Quantization(axis: nil, scales: [p.scale], zeroPoints: [p.zeroPoint]) }

    func calibrated(_ t: Int) throws(TinfError) -> Params {
      guard t < ranges.count, let r = ranges[t] else {
        throw TinfError(.invalidState, "int8-static: no calibration data for tensor '\(g.tensors[t].name)' (give representative inputs)")
      }
      return QuantNumerics.int8Params(lo: r.lo, hi: r.hi)
    }

    /// The float32 version of old tensor `t` (Dequantize if only int8 exists).
    mutating func floatOf(_ t: Int) -> Int {
      if t < 0 { return -1 }
      if fver[t] >= 0 { return fver[t] }
      let d = g.tensors[t]
      guard qver[t] >= 0, !d.isConstant, d.dtype == .float32 else {
        fver[t] = w.carry(t)
        return fver[t]
      }
      let f = w.add(isOutput[t] ? d.name : d.name + "_dequant", .float32, d.shape)
      w.emit(.dequantize, [qver[t]], [f])
      fver[t] = f
      return f
    }

    /// The int8 version of old tensor `t`, with parameters `want` if given
    /// (requantized when it exists with other parameters).
    mutating func int8Of(_ t: Int, _ want: Params? = nil) throws(TinfError) -> Int {
      let d = g.tensors[t]
      if qver[t] >= 0 {
        guard let want, let have = qp[t], have != want else { return qver[t] }
        let r = w.add(d.name + "_requant", .int8, d.shape, quant: quant(want))
        w.emit(.quantize, [qver[t]], [r], quantizeAttrs())
        return r
      }
      let p: Params
      if d.isConstant {
        let vals = w.floats(t)
        var lo: Float = 0
        var hi: Float = 0
        for v in vals where v.isFinite {
          lo = min(lo, v)
          hi = max(hi, v)
        }
        p = want ?? QuantNumerics.int8Params(lo: lo, hi: hi)
        var bytes = [UInt8](repeating: 0, count: vals.count)
        for (i, v) in vals.enumerated() {
          var q = QuantNumerics.roundAway(v / p.scale) + Float(p.zeroPoint)
          q = q.isNaN ? Float(p.zeroPoint) : max(-128, min(127, q))
          bytes[i] = UInt8(bitPattern: Int8(q))
        }
        qver[t] = w.add(d.name, .int8, d.shape, quant: quant(p), bytes: bytes)
      } else {
        if let want { p = want } else { p = try calibrated(t) }
        let f = floatOf(t)
        let q = w.add(d.name + "_quant", .int8, d.shape, quant: quant(p))
        w.emit(.quantize, [f], [q], quantizeAttrs())
        qver[t] = q
      }
      qp[t] = p
      return qver[t]
    }

    func quantizeAttrs() -> Attributes {
      var a = Attributes()
      a[.dtype] = .int(Int64(DType.int8.rawValue))
      a[.mode] = .int(0)
      return a
    }

    /// A new int8 tensor for output `t` of an int8 op.
    mutating func int8Out(_ t: Int, _ p: Params) -> Int {
      let d = g.tensors[t]
      let n = w.add(isOutput[t] ? d.name + "_int8" : d.name, .int8, d.shape, quant: quant(p))
      qver[t] = n
      qp[t] = p
      return n
    }
  }

  static func run(model: Model, keepFloat: [Bool], ranges: [(lo: Float, hi: Float)?]) throws(TinfError)
    -> RewriteResult
  {
    let g = model.graph
    var s = State(
      w: GraphWriter(model: model), g: g, ranges: ranges,
      fver: [Int](repeating: -1, count: g.tensors.count), qver: [Int](repeating: -1, count: g.tensors.count),
      qp: [Params?](repeating: nil, count: g.tensors.count), isOutput: [Bool](repeating: false, count: g.tensors.count))
    for t in g.outputs { s.isOutput[t] = true }
    var inputs: [Int] = []
    for t in g.inputs {
      let n = s.w.carry(t)
      s.fver[t] = n
      inputs.append(n)
    }
    var outT = [Int](repeating: -1, count: g.nodes.count)
    var quantized = [Bool](repeating: false, count: g.nodes.count)

    for (k, node) in g.nodes.enumerated() {
      let keep = k < keepFloat.count && keepFloat[k]
      var done = false
      if !keep, supported(g, node), let kind = node.op.traits.staticInt8 {
        // Emitted on a copy, kept only if the integer kernel accepts the
        // op as written (its shape inference is the judge); otherwise the op
        // runs in float32.
        var trial = s
        var emitted = false
        do throws(TinfError) {
          emitted = try emitInt8(&trial, node, kind)
        } catch {
          if error.status == .invalidState { throw error }  // no calibration data
          emitted = false
        }
        if emitted && accepted(trial) {
          s = trial
          done = true
        }
      }
      if done {
        quantized[k] = true
        outT[k] = s.qver[node.outputs[0]]
        continue
      }
      var ins: [Int] = []
      for t in node.inputs { ins.append(s.floatOf(t)) }
      var outs: [Int] = []
      for t in node.outputs {
        let n = s.w.carry(t)
        s.fver[t] = n
        outs.append(n)
      }
      s.w.emit(node.op, ins, outs, node.attrs)
      outT[k] = outs[0]
    }
    var outputs: [Int] = []
    for t in g.outputs { outputs.append(s.floatOf(t)) }
    let bytes = s.w.finish(inputs: inputs, outputs: outputs, mode: QuantMode.int8Static.name)
    return RewriteResult(bytes: bytes, outputTensor: outT, quantized: quantized)
  }

  /// Emits `node` as an int8 op; false when it stays float32 (an op that
  /// keeps its input's parameters, on a float input).
  private static func emitInt8(_ s: inout State, _ node: Node, _ kind: Kind) throws(TinfError) -> Bool {
    let in0 = node.inputs[0]
    switch kind {
    case .weighted:
      try emitWeighted(&s, node)
    case .calibrated:
      let ins = try int8Inputs(&s, node)
      let y = s.int8Out(node.outputs[0], try s.calibrated(node.outputs[0]))
      s.w.emit(node.op, ins, [y], node.attrs)
    case .fixed(let scale, let zp):
      let x = try s.int8Of(in0)
      let y = s.int8Out(node.outputs[0], (scale, zp))
      s.w.emit(node.op, [x], [y], node.attrs)
    case .sameParams:
      guard in0 >= 0 && s.qver[in0] >= 0, let p = s.qp[in0] else { return false }
      var ins: [Int] = [s.qver[in0]]
      for t in node.inputs.dropFirst() { ins.append(t >= 0 ? s.w.carry(t) : -1) }
      var outs: [Int] = []
      for t in node.outputs { outs.append(s.int8Out(t, p)) }
      s.w.emit(node.op, ins, outs, node.attrs)
    case .concat:
      let p = try s.calibrated(node.outputs[0])
      var ins: [Int] = []
      for t in node.inputs { ins.append(try s.int8Of(t, p)) }
      let y = s.int8Out(node.outputs[0], p)
      s.w.emit(node.op, ins, [y], node.attrs)
    }
    return true
  }

  /// Whether the last op written is accepted by its kernel's shape
  /// inference with the dtypes, shapes and parameters written.
  private static func accepted(_ s: State) -> Bool {
    guard let n = s.w.def.nodes.last else { return false }
    var descs: [TensorDesc?] = []
    for i in n.inputs {
      guard i >= 0 else {
        descs.append(nil)
        continue
      }
      let t = s.w.def.tensors[i]
      guard let dt = t.dtype, let sh = t.shape else { return false }
      let c: Range<Int>? = s.w.data[i].map { 0..<$0.count }
      descs.append(TensorDesc(name: t.name, dtype: dt, shape: sh, quant: t.quant, constant: c))
    }
    guard let outs = try? Registry.infer(n, descs), outs.count == n.outputs.count else { return false }
    for (o, i) in zip(outs, n.outputs) {
      let t = s.w.def.tensors[i]
      guard o.dtype == t.dtype, o.shape == t.shape else { return false }
    }
    return true
  }

  private static func int8Inputs(_ s: inout State, _ node: Node) throws(TinfError) -> [Int] {
    var ins: [Int] = []
    for t in node.inputs { ins.append(t >= 0 ? try s.int8Of(t) : -1) }
    return ins
  }

  private static func emitWeighted(_ s: inout State, _ node: Node) throws(TinfError) {
    let g = s.g
    let x = try s.int8Of(node.inputs[0])
    guard let inP = s.qp[node.inputs[0]] else { throw TinfError(.internal, "int8-static: input without parameters") }
    let wt = node.inputs[1]
    let wd = g.tensors[wt]
    var vals = s.w.floats(wt)
    var shape = wd.shape
    var op = node.op
    var attrs = node.attrs
    if node.op == .matMul {
      let tb = (try? node.attrs.int(.transposeB, default: 0, in: 0...1)) ?? 0
      if tb == 0 {
        let (kk, n) = (wd.shape[0], wd.shape[1])
        var t = [Float](repeating: 0, count: vals.count)
        for r in 0..<kk { for c in 0..<n { t[c * kk + r] = vals[r * n + c] } }
        vals = t
        shape = [n, kk]
      }
      op = .fullyConnected
      attrs = Attributes()
    }
    let depthwise = op == .depthwiseConv2D
    let axis = depthwise ? shape.count - 1 : 0
    let channels = shape[axis]
    let inner = depthwise ? 1 : vals.count / max(channels, 1)
    let (q, ws) = QuantNumerics.int8PerChannel(vals, channels: channels, inner: inner, halfEven: false)
    let wq = s.w.add(
      wd.name, .int8, shape,
      quant: Quantization(axis: axis, scales: ws, zeroPoints: [Int32](repeating: 0, count: channels)), bytes: q)
    var bq = -1
    if node.op != .matMul && node.inputs.count > 2 && node.inputs[2] >= 0 {
      let bt = node.inputs[2]
      let bd = g.tensors[bt]
      let bv = s.w.floats(bt)
      guard bv.count == channels else {
        throw .shape("int8-static: bias '\(bd.name)' has \(bv.count) values for \(channels) channels")
      }
      var scales = [Float](repeating: 1, count: channels)
      var ints = [Int32](repeating: 0, count: channels)
      for c in 0..<channels {
        let sc = max(inP.scale * ws[c], Float.leastNormalMagnitude)
        scales[c] = sc
        var v = QuantNumerics.roundAway(bv[c] / sc)
        if v.isNaN { v = 0 }
        v = max(-2_147_483_520, min(2_147_483_520, v))
        ints[c] = Int32(v)
      }
      bq = s.w.add(
        bd.name, .int32, bd.shape,
        quant: Quantization(axis: bd.shape.count - 1, scales: scales, zeroPoints: [Int32](repeating: 0, count: channels)),
        bytes: int32Bytes(ints))
    }
    let y = s.int8Out(node.outputs[0], try s.calibrated(node.outputs[0]))
    var ins = [x, wq]
    if bq >= 0 || (node.op != .matMul && node.inputs.count > 2) { ins.append(bq) }
    s.w.emit(op, ins, [y], attrs)
  }
}
