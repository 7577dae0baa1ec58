import TinyInferShims

/// Quantizes a loaded float32 model into a new .tinf file.
///
///     let q = try Quantizer.make(model: m, mode: .int8Static)
///     for x in calibration { try q.observe([x]) }      // int8-static only (optional otherwise)
///     let bytes = try q.finish()
///     for x in calibration { try q.compare([x]) }      // optional: per-layer SQNR
///
/// `finish` may be called again after changing `keepFloat` (mixed
/// precision): calibration is kept, comparison statistics are reset.
public final class Quantizer {
  public let model: Model
  public let mode: QuantMode
  public var method: CalibrationMethod = .minmax
  /// For `.percentile`: the upper quantile in percent (the lower is 100 - p).
  public var percentile: Float = 99.99
  /// The ops of the model (indices into `model.graph.nodes`) this mode
  /// would quantize: its "layers".
  public let layers: [Int]
  /// Per layer: keep it in float32.
  public var keepFloat: [Bool]
  /// Per layer, after `finish`: whether it was quantized.
  public private(set) var layerQuantized: [Bool]
  /// The file written by the last `finish`.
  public private(set) var output: [UInt8] = []
  /// int8-static: keep the ops that int8 would destroy the model through in
  /// float32 (Sensitivity, the ops' `int8Risk`); false quantizes every op it
  /// can (the user's "force int8").
  public var autoFloat = true
  /// int8-static: take the quantization parameters from the graph's own
  /// Quantize/Dequantize pairs (a QDQ model) instead of calibration, and its
  /// 8-bit weights as given (StaticInt8Pass); ops the graph does not give
  /// parameters for stay float32. Needs no calibration.
  public var graphParams = false
  /// int8-static (calibrated): the float32 output stage for Conv2D,
  /// DepthwiseConv2D, TransposeConv2D (their `requantization` attribute,
  /// QRequantTable) and Mul (QMulOp), else TFLite's fixed-point one. Not used with
  /// `graphParams`, whose QDQ graphs keep the fixed-point stage.
  public var floatRequantization = true
  /// Per layer, after `finish`: why it was kept in float32 as
  /// float-sensitive, or nil.
  public private(set) var floatReason: [String?]

  let calibrator: Calibrator
  private var outputTensor: [Int] = []
  private var qbuf: UnsafeMutableRawPointer? = nil
  private var qmodel: Model? = nil
  private var qsession: Session? = nil
  private var floatCopies: [[Float]] = []
  /// Per layer: sums of x^2 (float32 reference) and (x - x_quantized)^2
  /// over every `compare` call since the last `finish`.
  public private(set) var signal: [Double]
  public private(set) var noise: [Double]
  /// The same per graph output.
  public private(set) var outputSignal: [Double]
  public private(set) var outputNoise: [Double]
  public private(set) var compared = 0

  /// `model`'s file loaded again without the float-only fusions when it
  /// has any (Model.reloadedForQuantizer): `model` is then the reload and
  /// this keeps the original, whose bytes it borrows, alive.
  private let source: Model

  public static func make(model: Model, mode: QuantMode) throws(TinfError) -> Quantizer {
    let m = try model.reloadedForQuantizer() ?? model
    let c = try Calibrator.make(model: m)
    return Quantizer(model: m, source: model, mode: mode, calibrator: c)
  }

  private init(model: Model, source: Model, mode: QuantMode, calibrator: Calibrator) {
    self.model = model
    self.source = source
    self.mode = mode
    self.calibrator = calibrator
    let g = model.graph
    var ls: [Int] = []
    for (k, n) in g.nodes.enumerated() where WeightPasses.isLayer(g, n, mode) { ls.append(k) }
    layers = ls
    keepFloat = [Bool](repeating: false, count: ls.count)
    layerQuantized = [Bool](repeating: false, count: ls.count)
    floatReason = [String?](repeating: nil, count: ls.count)
    signal = [Double](repeating: 0, count: ls.count)
    noise = signal
    outputSignal = [Double](repeating: 0, count: g.outputs.count)
    outputNoise = outputSignal
  }

  deinit { releaseQuantized() }

  private func releaseQuantized() {
    qsession = nil
    qmodel = nil
    ti_shim_free(qbuf)
    qbuf = nil
  }

  /// Calibration runs so far.
  public var samples: Int { calibrator.samples }

  /// Runs the float32 model on one set of inputs and records the range of
  /// every float32 tensor.
  public func observe(_ inputs: [UnsafeRawBufferPointer]) throws(TinfError) {
    try calibrator.observe(inputs)
  }

  /// The clipping range chosen for tensor `t` of the source model by the
  /// current method, or nil without calibration data for it.
  public func range(of t: Int) -> (lo: Float, hi: Float)? {
    guard t >= 0 && t < calibrator.stats.count, let s = calibrator.stats[t], s.count > 0 else { return nil }
    return s.clipRange(method, percentile: percentile)
  }

  /// The observed minimum and maximum of tensor `t`.
  public func observedRange(of t: Int) -> (lo: Float, hi: Float)? {
    guard t >= 0 && t < calibrator.stats.count, let s = calibrator.stats[t], s.count > 0 else { return nil }
    return (s.lo, s.hi)
  }

  /// Rewrites and serializes the model; returns the file's bytes.
  @discardableResult
  public func finish() throws(TinfError) -> [UInt8] {
    let g = model.graph
    var keepNode = [Bool](repeating: false, count: g.nodes.count)
    for (i, k) in layers.enumerated() where keepFloat[i] { keepNode[k] = true }
    for i in floatReason.indices { floatReason[i] = nil }
    let r: RewriteResult
    if mode == .int8Static && graphParams {
      r = try StaticInt8Pass.run(model: model, keepFloat: keepNode, ranges: [], graphParams: true)
    } else if mode == .int8Static {
      guard calibrator.samples > 0 else {
        throw TinfError(.invalidState, "int8-static needs calibration: observe representative inputs before finishing")
      }
      if autoFloat {
        let why = Sensitivity.floatReasons(model, calibrator.stats)
        for (i, k) in layers.enumerated() where why[k] != nil && !keepFloat[i] {
          keepNode[k] = true
          floatReason[i] = why[k]
        }
      }
      // Ranges are computed once per tensor (histogram methods are not free).
      var cache = [(lo: Float, hi: Float)?](repeating: nil, count: g.tensors.count)
      for t in 0..<g.tensors.count { cache[t] = range(of: t) }
      r = try StaticInt8Pass.run(
        model: model, keepFloat: keepNode, ranges: cache, floatRequantization: floatRequantization)
    } else {
      r = WeightPasses.run(model: model, mode: mode, keepFloat: keepNode)
    }
    releaseQuantized()
    output = r.bytes
    outputTensor = r.outputTensor
    for (i, k) in layers.enumerated() { layerQuantized[i] = r.quantized[k] }
    for i in signal.indices {
      signal[i] = 0
      noise[i] = 0
    }
    for i in outputSignal.indices {
      outputSignal[i] = 0
      outputNoise[i] = 0
    }
    compared = 0
    return output
  }

  /// Runs the float32 model and the quantized one on the same inputs and
  /// adds each layer's output (and each graph output) to the signal and
  /// noise sums. Int8 tensors are dequantized with their parameters.
  public func compare(_ inputs: [UnsafeRawBufferPointer]) throws(TinfError) {
    guard !output.isEmpty else { throw TinfError(.invalidState, "compare needs a quantized model: call finish first") }
    if qsession == nil {
      guard let buf = ti_shim_alloc(output.count) else {
        throw TinfError(.outOfMemory, "cannot allocate \(output.count) bytes for the quantized model")
      }
      output.withUnsafeBytes { buf.copyMemory(from: $0.baseAddress!, byteCount: output.count) }
      qbuf = buf
      let m = try Model.load(buffer: UnsafeRawBufferPointer(start: UnsafeRawPointer(buf), count: output.count))
      qmodel = m
      qsession = try Session.create(model: m)
    }
    guard let qs = qsession, let qm = qmodel else { return }
    let g = model.graph
    let qg = qm.graph
    let fs = calibrator.session
    guard inputs.count == g.inputs.count else {
      throw .arg("the model takes \(g.inputs.count) inputs, got \(inputs.count)")
    }
    for (i, src) in inputs.enumerated() {
      let d1 = fs.inputBuffer(i)
      let d2 = qs.inputBuffer(i)
      guard src.count == d1.count, src.count == d2.count else {
        throw .arg("input \(i) takes \(d1.count) bytes, got \(src.count)")
      }
      if let s = src.baseAddress {
        d1.baseAddress!.copyMemory(from: s, byteCount: src.count)
        d2.baseAddress!.copyMemory(from: s, byteCount: src.count)
      }
    }
    // Which layer each tensor is the output of, in each graph.
    var floatLayer = [Int](repeating: -1, count: g.tensors.count)
    var quantLayer = [Int](repeating: -1, count: qg.tensors.count)
    for (i, k) in layers.enumerated() {
      let t = g.nodes[k].outputs[0]
      guard g.tensors[t].dtype == .float32 else { continue }
      floatLayer[t] = i
      let qt = outputTensor[k]
      if qt >= 0 && qt < qg.tensors.count { quantLayer[qt] = i }
    }
    if floatCopies.count != layers.count {
      floatCopies = layers.map { k in [Float](repeating: 0, count: g.tensors[g.nodes[k].outputs[0]].count) }
    }
    try fs.run { t, buf in
      let l = floatLayer[t]
      guard l >= 0, let b = buf.baseAddress else { return }
      let p = b.assumingMemoryBound(to: Float.self)
      let n = min(buf.count / 4, floatCopies[l].count)
      floatCopies[l].withUnsafeMutableBufferPointer { dst in
        for i in 0..<n { dst[i] = p[i] }
      }
    }
    try qs.run { t, buf in
      let l = quantLayer[t]
      guard l >= 0 else { return }
      let (s, e) = Quantizer.errors(floatCopies[l], qg.tensors[t], buf)
      signal[l] += s
      noise[l] += e
    }
    for i in 0..<g.outputs.count {
      let fb = fs.outputBuffer(i)
      let qb = qs.outputBuffer(i)
      guard g.tensors[g.outputs[i]].dtype == .float32, let p = fb.baseAddress else { continue }
      let ref = Array(UnsafeBufferPointer(start: p.assumingMemoryBound(to: Float.self), count: fb.count / 4))
      let (s, e) = Quantizer.errors(ref, qg.tensors[qg.outputs[i]], qb)
      outputSignal[i] += s
      outputNoise[i] += e
    }
    compared += 1
  }

  /// sum x^2 and sum (x - y)^2 for a float reference x and a float32 or
  /// (per-tensor) int8 / uint8 tensor y.
  static func errors(_ ref: [Float], _ d: TensorDesc, _ buf: UnsafeRawBufferPointer) -> (Double, Double) {
    guard let base = buf.baseAddress, d.count == ref.count else { return (0, 0) }
    var s = 0.0
    var e = 0.0
    let scale = d.quant?.scales.first ?? 1
    let zp = Float(d.quant?.zeroPoints.first ?? 0)
    for i in 0..<ref.count {
      let x = ref[i]
      let y: Float
      switch d.dtype {
      case .float32: y = base.load(fromByteOffset: i * 4, as: Float.self)
      case .int8: y = (Float(base.load(fromByteOffset: i, as: Int8.self)) - zp) * scale
      case .uint8: y = (Float(base.load(fromByteOffset: i, as: UInt8.self)) - zp) * scale
      default: return (0, 0)
      }
      s += Double(x) * Double(x)
      let diff = Double(x) - Double(y)
      e += diff * diff
    }
    return (s, e)
  }
}
