/// int8-static: the full-integer rewrite of the TFLite int8 spec.
///
/// graph input float32 -> Quantize (int8, per tensor) -> int8 ops ->
/// Dequantize -> graph output float32 (same names as before). Activations
/// are int8 per tensor with the calibrated range (zero point from the
/// range, 0 always representable); weights int8 symmetric per channel
/// (zero point 0, [-127, 127], axis 0 for Conv2D / TransposeConv2D /
/// FullyConnected, 3 for DepthwiseConv2D); biases int32 with scale in_scale * w_scale[c];
/// Logistic / Softmax outputs (1/256, -128), Tanh (1/128, 0); pooling and
/// data movement keep their input's parameters; Concat requantizes its
/// inputs to its output's parameters when they differ. An op without an
/// integer kernel (or kept in float32) runs in float32 between a
/// Dequantize and a Quantize. Rounding: half away from zero, as TFLite.
///
/// With the graph's parameters (`graphParams`, a QDQ model: ONNX
/// QuantizeLinear/DequantizeLinear pairs, converted to Quantize/Dequantize
/// ops around float ops) the parameters are not calibrated: a tensor that
/// only Quantize ops read takes their parameters (uint8 ones as int8 with
/// the zero point minus 128, which is exact), a Quantize/Dequantize pair
/// becomes the int8 tensor itself, and weights and constants behind a
/// Dequantize (folded at load: `TensorDesc.dequantizedFrom`) keep their
/// 8-bit values and scales as the file gives them. An op whose parameters
/// the graph does not give (or that would round twice where the QDQ graph
/// rounds once) stays float32, as the QDQ graph computes it.
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
    case .calibrated, .fixed, .concat, .commonParams:
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
    /// Parameters from the graph's Quantize ops (int8 form), per old tensor.
    var fixed: [Params?] = []
    var graphParams = false
    /// Conv2D, DepthwiseConv2D, TransposeConv2D and Mul get the float32
    /// output stage (`requantization` 1; Quantizer.floatRequantization).
    var floatRequantization = false

    func quant(_ p: Params) -> Quantization { Quantization(axis: nil, scales: [p.scale], zeroPoints: [p.zeroPoint]) }

    func calibrated(_ t: Int) throws(TinfError) -> Params {
      if graphParams {
        guard t < fixed.count, let p = fixed[t] else {
          throw TinfError(.unsupportedOp, "int8-static: no Quantize op gives '\(g.tensors[t].name)' parameters")
        }
        return p
      }
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
      if d.isConstant && graphParams && want == nil, let (vals, q) = given(t), q.scales.count == 1 {
        // a constant behind a Dequantize: its values and parameters as given
        p = (q.scales[0], q.zeroPoints[0])
        qver[t] = w.add(d.name, .int8, d.shape, quant: quant(p), bytes: vals.map { UInt8(bitPattern: $0) })
      } else if d.isConstant {
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
          // graph parameters: a float constant (a scalar operand the QDQ graph leaves in float) only when
          // int8 holds its values (to float rounding), else the op computes in float32 as the graph does
          if graphParams && want == nil && !(abs((q - Float(p.zeroPoint)) * p.scale - v) <= 1e-5 * abs(v)) {
            throw TinfError(.unsupportedOp, "int8-static: constant '\(d.name)' is not exact in int8")
          }
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

    /// The 8-bit values and quantization of the constant that constant `t` was
    /// dequantized from at load, as int8 (uint8 values and zero points
    /// minus 128), or nil.
    func given(_ t: Int) -> ([Int8], Quantization)? {
      let src = g.tensors[t].dequantizedFrom
      guard src >= 0, let q = g.tensors[src].quant, g.tensors[src].count == g.tensors[t].count else { return nil }
      let b = w.bytes(src)
      switch g.tensors[src].dtype {
      case .int8:
        return (b.map { Int8(bitPattern: $0) }, q)
      case .uint8:
        var q8 = q
        q8.zeroPoints = q.zeroPoints.map { $0 - 128 }
        return (b.map { Int8(Int16($0) - 128) }, q8)
      default:
        return nil
      }
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

  /// The graph's own quantization (QDQ): which Quantize / Dequantize ops
  /// pair up around int8 tensors (`marked`), and the parameters each float
  /// tensor takes from the Quantize ops that read it (`fixed`).
  static func graphQuantization(_ g: Graph) -> (fixed: [Params?], marked: [Bool]) {
    var consumers = [[Int]](repeating: [], count: g.tensors.count)
    for (k, n) in g.nodes.enumerated() { for t in n.inputs where t >= 0 { consumers[t].append(k) } }
    var isOut = [Bool](repeating: false, count: g.tensors.count)
    for t in g.outputs { isOut[t] = true }
    var marked = [Bool](repeating: false, count: g.nodes.count)
    var fixed = [Params?](repeating: nil, count: g.tensors.count)
    // A Quantize of a computed float32 tensor into an 8-bit tensor that only Dequantize ops read.
    for (k, n) in g.nodes.enumerated() where n.op == .quantize && !n.inputs.isEmpty && n.inputs[0] >= 0 {
      let x = n.inputs[0]
      let q = n.outputs[0]
      guard g.tensors[x].dtype == .float32, !g.tensors[x].isConstant, !isOut[q], int8Params(g, q) != nil,
        !consumers[q].isEmpty,
        consumers[q].allSatisfy({ g.nodes[$0].op == .dequantize && g.tensors[g.nodes[$0].outputs[0]].dtype == .float32 })
      else { continue }
      marked[k] = true
      for c in consumers[q] { marked[c] = true }
    }
    // A float tensor that only such Quantize ops read, all with the same parameters, takes them.
    for t in g.tensors.indices where !isOut[t] && !consumers[t].isEmpty && g.tensors[t].dtype == .float32 {
      var p: Params? = nil
      var same = true
      for c in consumers[t] {
        let n = g.nodes[c]
        guard n.op == .quantize && marked[c], let pc = int8Params(g, n.outputs[0]) else {
          same = false
          break
        }
        if let p0 = p, p0 != pc {
          same = false
          break
        }
        p = pc
      }
      if same { fixed[t] = p }
    }
    return (fixed, marked)
  }

  /// Per-tensor parameters of 8-bit tensor `t` in int8 form (uint8: zero point - 128).
  static func int8Params(_ g: Graph, _ t: Int) -> Params? {
    let d = g.tensors[t]
    guard let q = d.quant, q.scales.count == 1, q.zeroPoints.count == 1 else { return nil }
    switch d.dtype {
    case .int8: return (q.scales[0], q.zeroPoints[0])
    case .uint8: return (q.scales[0], q.zeroPoints[0] - 128)
    default: return nil
    }
  }

  static func run(
    model: Model, keepFloat: [Bool], ranges: [(lo: Float, hi: Float)?], graphParams: Bool = false,
    floatRequantization: Bool = false
  ) throws(TinfError) -> RewriteResult {
    let g = model.graph
    var s = State(
      w: GraphWriter(model: model), g: g, ranges: ranges,
      fver: [Int](repeating: -1, count: g.tensors.count), qver: [Int](repeating: -1, count: g.tensors.count),
      qp: [Params?](repeating: nil, count: g.tensors.count), isOutput: [Bool](repeating: false, count: g.tensors.count))
    for t in g.outputs { s.isOutput[t] = true }
    s.floatRequantization = floatRequantization && !graphParams
    var marked = [Bool](repeating: false, count: g.nodes.count)
    if graphParams {
      let gq = graphQuantization(g)
      s.fixed = gq.fixed
      s.graphParams = true
      marked = gq.marked
    }
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
      if marked[k], let p = int8Params(g, node.op == .quantize ? node.outputs[0] : node.inputs[0]) {
        let x = node.inputs[0]
        let y = node.outputs[0]
        if node.op == .quantize {
          // the int8 tensor with the Quantize's parameters: requantized from x's int8 version when
          // its parameters differ, else quantized from float32 as the op says (ONNX: half to even)
          if s.qver[x] >= 0 {
            s.qver[y] = try s.int8Of(x, p)
          } else {
            let f = s.floatOf(x)
            let n = s.w.add(g.tensors[y].name, .int8, g.tensors[y].shape, quant: s.quant(p))
            var a = node.attrs
            a[.dtype] = .int(Int64(DType.int8.rawValue))
            s.w.emit(.quantize, [f], [n], a)
            s.qver[y] = n
          }
          s.qp[y] = p
          outT[k] = s.qver[y]
          continue
        }
        if s.qver[x] >= 0 {  // Dequantize: the float value of the int8 tensor, made when a float op reads it
          s.qver[y] = s.qver[x]
          s.qp[y] = s.qp[x]
          outT[k] = s.qver[y]
          continue
        }
      }
      var done = false
      if !keep && graphParams && node.op == .div {
        // x / c with a constant scalar c: the int8 Mul by 1 / c (Div has no int8 kernel; a QDQ HardSwish
        // written as x * Clip(x + 3, 0, 6), Quantize, Dequantize, / 6 ends so)
        var trial = s
        var ok = false
        do throws(TinfError) {
          ok = try emitDivByConstant(&trial, node)
        } catch {
          ok = false
        }
        if ok && accepted(trial) {
          s = trial
          quantized[k] = true
          outT[k] = s.qver[node.outputs[0]]
          continue
        }
      }
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
      var attrs = node.attrs
      if s.floatRequantization && node.op == .mul { attrs[.requantization] = .int(1) }  // QMulOp's float32 stage
      s.w.emit(node.op, ins, [y], attrs)
    case .fixed(let scale, let zp):
      if s.graphParams {  // the graph's output parameters must be the kernel's (else it would round twice)
        guard let f = s.fixed[node.outputs[0]], f.scale == scale, f.zeroPoint == zp else { return false }
      }
      let x = try s.int8Of(in0)
      let y = s.int8Out(node.outputs[0], (scale, zp))
      s.w.emit(node.op, [x], [y], node.attrs)
    case .sameParams:
      guard in0 >= 0 && s.qver[in0] >= 0, let p = s.qp[in0] else { return false }
      if s.graphParams && (node.op == .averagePool2D || node.op == .resizeBilinear) {
        // an average rounds: in int8 only when the graph requantizes it with the input's parameters
        guard let f = s.fixed[node.outputs[0]], f == p else { return false }
      }
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
    case .commonParams:
      // The activations' common parameters (each int8 already); constants quantized with them.
      var p: Params? = nil
      for t in node.inputs where t >= 0 && !s.g.tensors[t].isConstant {
        guard s.qver[t] >= 0, let pt = s.qp[t] else { return false }
        if let p0 = p, p0 != pt { return false }
        p = pt
      }
      guard let p else { return false }
      if s.graphParams {  // the graph must requantize the result with them (else it would round)
        guard let f = s.fixed[node.outputs[0]], f == p else { return false }
      }
      // A constant saturates to the range of p: harmless on the side the op discards (Maximum(x, c) with c
      // below the range is x, as is Minimum above it); on the other side the result would be the constant
      // itself, which the output's range cannot hold: then the op stays float32.
      let lo = Float(-128 - p.zeroPoint) * p.scale - p.scale / 2
      let hi = Float(127 - p.zeroPoint) * p.scale + p.scale / 2
      for t in node.inputs where t >= 0 && s.g.tensors[t].isConstant {
        for v in s.w.floats(t) where node.op == .maximum ? !(v <= hi) : !(v >= lo) { return false }
      }
      var ins: [Int] = []
      for t in node.inputs { ins.append(t < 0 ? -1 : s.g.tensors[t].isConstant ? try s.int8Of(t, p) : s.qver[t]) }
      let y = s.int8Out(node.outputs[0], p)
      s.w.emit(node.op, ins, [y], node.attrs)
    }
    return true
  }

  /// Graph parameters: `x / c` for a constant float32 scalar `c` as the int8
  /// Mul by `1 / c` when int8 holds `1 / c` (to float rounding); false otherwise.
  private static func emitDivByConstant(_ s: inout State, _ node: Node) throws(TinfError) -> Bool {
    let g = s.g
    guard node.inputs.count == 2, node.inputs[0] >= 0, node.inputs[1] >= 0 else { return false }
    let cd = g.tensors[node.inputs[1]]
    guard cd.isConstant, cd.dtype == .float32, cd.count == 1, g.tensors[node.inputs[0]].dtype == .float32 else {
      return false
    }
    let c = s.w.floats(node.inputs[1])[0]
    guard c.isFinite, c != 0 else { return false }
    let r = 1 / c
    let p = QuantNumerics.int8Params(lo: min(0, r), hi: max(0, r))
    let q = max(-128, min(127, QuantNumerics.roundAway(r / p.scale) + Float(p.zeroPoint)))
    guard abs((q - Float(p.zeroPoint)) * p.scale - r) <= 1e-5 * abs(r) else { return false }
    let x = try s.int8Of(node.inputs[0])
    let ct = s.w.add(cd.name + "_reciprocal", .int8, cd.shape, quant: s.quant(p), bytes: [UInt8(bitPattern: Int8(q))])
    let y = s.int8Out(node.outputs[0], try s.calibrated(node.outputs[0]))
    s.w.emit(.mul, [x, ct], [y], node.attrs)
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
    var transposed = false
    if node.op == .matMul {
      let tb = (try? node.attrs.int(.transposeB, default: 0, in: 0...1)) ?? 0
      if tb == 0 {
        let (kk, n) = (wd.shape[0], wd.shape[1])
        var t = [Float](repeating: 0, count: vals.count)
        for r in 0..<kk { for c in 0..<n { t[c * kk + r] = vals[r * n + c] } }
        vals = t
        shape = [n, kk]
        transposed = true
      }
      op = .fullyConnected
      attrs = Attributes()
    }
    let depthwise = op == .depthwiseConv2D
    let axis = depthwise ? shape.count - 1 : 0
    let channels = shape[axis]
    let inner = depthwise ? 1 : vals.count / max(channels, 1)
    var q: [UInt8]
    var ws: [Float]
    if s.graphParams {
      // the file's int8 weights and scales, as given
      guard var (g8, gq) = s.given(wt), gq.zeroPoints.allSatisfy({ $0 == 0 }), !g8.contains(-128) else {
        throw TinfError(.unsupportedOp, "int8-static: weights '\(wd.name)' are not symmetric int8 in the graph")
      }
      if transposed {  // transposed above, with their per-column axis
        let (kk, n) = (wd.shape[0], wd.shape[1])
        var t = [Int8](repeating: 0, count: g8.count)
        for r in 0..<kk { for c in 0..<n { t[c * kk + r] = g8[r * n + c] } }
        g8 = t
        if gq.scales.count > 1 { gq.axis = gq.axis == 1 ? 0 : -1 }
      }
      if gq.scales.count == 1 {
        ws = [Float](repeating: gq.scales[0], count: channels)
      } else {
        guard gq.scales.count == channels, gq.axis == axis else {
          throw TinfError(.unsupportedOp, "int8-static: weights '\(wd.name)' quantized along another axis")
        }
        ws = gq.scales
      }
      q = g8.map { UInt8(bitPattern: $0) }
    } else {
      (q, ws) = QuantNumerics.int8PerChannel(vals, channels: channels, inner: inner, halfEven: false)
    }
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
    if s.floatRequantization && (op == .conv2D || op == .depthwiseConv2D || op == .transposeConv2D) {
      attrs[.requantization] = .int(1)  // the float32 output stage (QRequantTable)
    }
    var ins = [x, wq]
    if bq >= 0 || (node.op != .matMul && node.inputs.count > 2) { ins.append(bq) }
    s.w.emit(op, ins, [y], attrs)
  }
}
