/// The quantization modes (a property of the written file: metadata key
/// `quantization`). docs/quantization.md, "Modes".
public enum QuantMode: Int, Sendable {
  /// float32 weights stored as float16 behind a Dequantize (folded at load).
  case fp16 = 1
  /// FullyConnected / constant-operand MatMul weights int8 per output
  /// channel; activations quantized per row at run time (hybrid kernel).
  case int8Dynamic = 2
  /// Full integer (TFLite int8 spec), from calibration.
  case int8Static = 3
  /// FullyConnected / constant-operand MatMul weights in int4 blocks of 32
  /// with a float16 scale (ggml Q4_0 layout), read directly by the kernel.
  case int4 = 4

  public var name: String {
    switch self {
    case .fp16: return "fp16"
    case .int8Dynamic: return "int8-dynamic"
    case .int8Static: return "int8-static"
    case .int4: return "int4"
    }
  }
}

/// Values of the FullyConnected attribute `weight_format`.
enum WeightFormat {
  /// Weights as their dtype says (float32, or int8 with per-channel parameters).
  static let plain = 0
  /// uint8 [N, ceil(K/32) * 18]: int4 blocks (QuantNumerics.packQ4).
  static let q4Blocks = 1
}

/// What a rewrite produced: the file, and for each op of the source graph
/// the tensor of the new graph holding its output 0 (-1: none), and
/// whether the op was quantized.
struct RewriteResult {
  var bytes: [UInt8]
  var outputTensor: [Int]
  var quantized: [Bool]
}

/// fp16, int8-dynamic and int4: passes that touch only weights.
enum WeightPasses {
  /// MatMul(a, b) with b a float32 constant of rank 2 and a not transposed:
  /// it becomes FullyConnected(a, b^T) in the int8-dynamic and int4 modes.
  static func matMulWithConstantB(_ g: Graph, _ node: Node) -> Bool {
    guard node.op == .matMul, node.inputs.count == 2, node.inputs[0] >= 0, node.inputs[1] >= 0 else { return false }
    let a = g.tensors[node.inputs[0]]
    let b = g.tensors[node.inputs[1]]
    let ta = (try? node.attrs.int(.transposeA, default: 0, in: 0...1)) ?? 1
    return ta == 0 && a.dtype == .float32 && !a.isConstant && b.isConstant && b.dtype == .float32 && b.shape.count == 2
  }

  static func fullyConnectedWithConstantW(_ g: Graph, _ node: Node) -> Bool {
    guard node.op == .fullyConnected, node.inputs.count >= 2, node.inputs[0] >= 0, node.inputs[1] >= 0 else {
      return false
    }
    let x = g.tensors[node.inputs[0]]
    let w = g.tensors[node.inputs[1]]
    let wf = (try? node.attrs.int(.weightFormat, default: 0, in: 0...1)) ?? 1
    return wf == 0 && x.dtype == .float32 && w.isConstant && w.dtype == .float32 && w.shape.count == 2
  }

  /// The weight inputs (slots) of `node` that fp16 stores as float16:
  /// its `OpTraits.fp16Slots` that hold a float32 constant.
  static func fp16Slots(_ g: Graph, _ node: Node) -> [Int] {
    let slots = node.op.traits.fp16Slots
    return node.inputs.indices.filter { s in
      guard slots.contains(s), node.inputs[s] >= 0 else { return false }
      let t = g.tensors[node.inputs[s]]
      return t.isConstant && t.dtype == .float32
    }
  }

  /// Whether the mode quantizes op `node` (a "layer" of this mode).
  static func isLayer(_ g: Graph, _ node: Node, _ mode: QuantMode) -> Bool {
    switch mode {
    case .fp16: return !fp16Slots(g, node).isEmpty
    case .int8Dynamic, .int4:
      return node.op.traits.hybrid && (fullyConnectedWithConstantW(g, node) || matMulWithConstantB(g, node))
    case .int8Static: return StaticInt8Pass.isLayer(g, node)
    }
  }

  static func run(model: Model, mode: QuantMode, keepFloat: [Bool]) -> RewriteResult {
    let g = model.graph
    var w = GraphWriter(model: model)
    let inputs = g.inputs.map { w.carry($0) }
    var outT = [Int](repeating: -1, count: g.nodes.count)
    var quantized = [Bool](repeating: false, count: g.nodes.count)
    // fp16: old weight tensor -> the Dequantize output already made.
    var halfOf = [Int](repeating: -1, count: g.tensors.count)

    for (k, node) in g.nodes.enumerated() {
      let eligible = isLayer(g, node, mode) && !(k < keepFloat.count && keepFloat[k])
      var ins: [Int] = []
      var attrs = node.attrs
      var op = node.op
      if eligible && mode == .fp16 {
        let slots = fp16Slots(g, node)
        for (s, t) in node.inputs.enumerated() {
          guard t >= 0 else {
            ins.append(-1)
            continue
          }
          guard slots.contains(s) else {
            ins.append(w.carry(t))
            continue
          }
          if halfOf[t] < 0 {
            let vals = w.floats(t)
            var ok = true
            for v in vals where !(abs(v) <= 65504) { ok = false }
            if !ok {
              ins.append(w.carry(t))
              continue
            }
            var bytes = [UInt8](repeating: 0, count: vals.count * 2)
            for (i, v) in vals.enumerated() {
              let h = QuantNumerics.halfBits(v)
              bytes[2 * i] = UInt8(h & 0xFF)
              bytes[2 * i + 1] = UInt8(h >> 8)
            }
            let d = g.tensors[t]
            let h = w.add(d.name + "_fp16", .float16, d.shape, bytes: bytes)
            let f = w.add(d.name, .float32, d.shape)
            w.emit(.dequantize, [h], [f])
            halfOf[t] = f
          }
          ins.append(halfOf[t])
          quantized[k] = true
        }
      } else if eligible {
        // int8-dynamic or int4: FullyConnected(x, W [N, K], bias).
        let isMatMul = node.op == .matMul
        let wt = node.inputs[1]
        let wd = g.tensors[wt]
        var vals = w.floats(wt)
        var n = wd.shape[0]
        var kk = wd.shape[1]
        if isMatMul {
          let tb = (try? node.attrs.int(.transposeB, default: 0, in: 0...1)) ?? 0
          if tb == 0 {
            // b is [K, N]: W = b^T.
            kk = wd.shape[0]
            n = wd.shape[1]
            var t = [Float](repeating: 0, count: vals.count)
            for r in 0..<kk { for c in 0..<n { t[c * kk + r] = vals[r * n + c] } }
            vals = t
          }
          op = .fullyConnected
          attrs = Attributes()
        }
        let wNew: Int
        if mode == .int8Dynamic {
          let (q, scales) = QuantNumerics.int8PerChannel(vals, channels: n, inner: kk, halfEven: true)
          wNew = w.add(
            wd.name, .int8, [n, kk],
            quant: Quantization(axis: 0, scales: scales, zeroPoints: [Int32](repeating: 0, count: n)), bytes: q)
        } else {
          let packed = QuantNumerics.packQ4(vals, rows: n, k: kk)
          let nb = (kk + QuantNumerics.q4Block - 1) / QuantNumerics.q4Block
          wNew = w.add(wd.name + "_q4", .uint8, [n, nb * QuantNumerics.q4BlockBytes], bytes: packed)
          attrs[.weightFormat] = .int(Int64(WeightFormat.q4Blocks))
        }
        ins.append(w.carry(node.inputs[0]))
        ins.append(wNew)
        if !isMatMul && node.inputs.count > 2 { ins.append(node.inputs[2] >= 0 ? w.carry(node.inputs[2]) : -1) }
        quantized[k] = true
      } else {
        for t in node.inputs { ins.append(t >= 0 ? w.carry(t) : -1) }
      }
      let outs = node.outputs.map { w.carry($0) }
      w.emit(op, ins, outs, attrs)
      outT[k] = outs[0]
    }
    let outputs = g.outputs.map { w.carry($0) }
    let bytes = w.finish(inputs: inputs, outputs: outputs, mode: mode.name)
    return RewriteResult(bytes: bytes, outputTensor: outT, quantized: quantized)
  }
}
