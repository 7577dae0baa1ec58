/// Prunes a loaded float32 model's weights (sets them to zero) and writes a
/// new .tinf file; docs/pruning.md. The arithmetic is here (magnitude
/// thresholds, N:M patterns, input statistics for activation-aware scores);
/// the policy (which sparsity per layer, Wanda's scores, validation against
/// the parent) is in python/tinyinfer/prune.py, which reads and sets the
/// weights of each layer through the C API (`tinf_pruner_*`).
///
///     let p = try Pruner(model: m)
///     try p.magnitude(layer: nil, sparsity: 0.8)      // one threshold over every layer
///     let bytes = try p.finish()
///
/// Layers: FullyConnected and Conv2D with constant float32 weights (plain
/// weight format). A layer's weights are rows of `k` values per output
/// channel ([N, K] for FullyConnected, [Cout, KH * KW * Cin / groups] for
/// Conv2D); N:M patterns run along the innermost `run` values of a row
/// (K, or Cin / groups), which must be a multiple of M.
public final class Pruner {
  public let model: Model
  /// Op indices of the layers.
  public let layers: [Int]
  /// Per layer: output channels, values per output channel, innermost run
  /// (the input channels of a convolution tap), input channels of its input
  /// tensor (the last dim).
  public let shapes: [(n: Int, k: Int, run: Int, inputChannels: Int)]
  /// Per layer: the current weights (pruned in place).
  public private(set) var weights: [[Float]]
  /// Per layer: sums of x^2 per input channel over every observed input
  /// position (`observe`), and how many positions were summed.
  public private(set) var inputSquares: [[Double]]
  public private(set) var positions: [Int]
  private var session: Session? = nil

  public init(model: Model) throws(TinfError) {
    try ControlFlow.refuseSubgraphs(model, "the pruner")
    self.model = model
    let g = model.graph
    var ls: [Int] = []
    var sh: [(n: Int, k: Int, run: Int, inputChannels: Int)] = []
    var ws: [[Float]] = []
    var seen = Set<Int>()
    for (i, node) in g.nodes.enumerated() {
      guard let s = Pruner.layerShape(g, node), !seen.contains(node.inputs[1]) else { continue }
      seen.insert(node.inputs[1])
      ls.append(i)
      sh.append(s)
      let t = node.inputs[1]
      guard let p = model.constantData(t) else { throw TinfError(.internal, "weights of op \(i) have no data") }
      let f = UnsafePointer(p.assumingMemoryBound(to: Float.self))
      ws.append(Array(UnsafeBufferPointer(start: f, count: s.n &* s.k)))
    }
    layers = ls
    shapes = sh
    weights = ws
    inputSquares = sh.map { [Double](repeating: 0, count: $0.inputChannels) }
    positions = [Int](repeating: 0, count: ls.count)
  }

  /// The pruning shape of a layer op, or nil when the op is not a layer.
  static func layerShape(_ g: Graph, _ node: Node) -> (n: Int, k: Int, run: Int, inputChannels: Int)? {
    guard node.inputs.count >= 2, node.inputs[0] >= 0, node.inputs[1] >= 0 else { return nil }
    let x = g.tensors[node.inputs[0]]
    let w = g.tensors[node.inputs[1]]
    guard w.isConstant, w.dtype == .float32, x.dtype == .float32, let c = x.shape.last else { return nil }
    if node.op == .fullyConnected {
      guard w.shape.count == 2, (try? node.attrs.int(.weightFormat, default: 0)) == 0 else { return nil }
      return (w.shape[0], w.shape[1], w.shape[1], c)
    }
    if node.op == .conv2D {
      guard w.shape.count == 4 else { return nil }
      return (w.shape[0], w.shape[1] &* w.shape[2] &* w.shape[3], w.shape[3], c)
    }
    return nil
  }

  static func checkSparsity(_ s: Double) throws(TinfError) {
    guard s >= 0 && s < 1 else { throw .arg("sparsity must be in [0, 1), got \(s)") }
  }

  func checkLayer(_ layer: Int) throws(TinfError) {
    guard layer >= 0 && layer < layers.count else {
      throw .arg("layer \(layer) out of range (the model has \(layers.count) prunable layers)")
    }
  }

  /// Zeros the fraction `sparsity` of weights with the smallest magnitude:
  /// of one layer, or (layer nil) of all layers together under one
  /// threshold. Weights already zero count as pruned. Ties at the
  /// threshold are pruned in order until the count is reached.
  public func magnitude(layer: Int?, sparsity: Double) throws(TinfError) {
    try Pruner.checkSparsity(sparsity)
    let which: [Int]
    if let layer {
      try checkLayer(layer)
      which = [layer]
    } else {
      which = Array(layers.indices)
    }
    var total = 0
    for l in which { total &+= weights[l].count }
    let prune = Int((Double(total) * sparsity).rounded(.down))
    guard prune > 0 else { return }
    var mags: [Float] = []
    mags.reserveCapacity(total)
    for l in which { for v in weights[l] { mags.append(abs(v)) } }
    mags.sort()
    let threshold = mags[prune - 1]
    // Values below the threshold go; of those equal to it, as many as fill the count.
    var below = 0
    for m in mags where m < threshold { below &+= 1 }
    var ties = prune &- below
    for l in which {
      for i in weights[l].indices {
        let m = abs(weights[l][i])
        if m < threshold {
          weights[l][i] = 0
        } else if m == threshold && ties > 0 {
          weights[l][i] = 0
          ties &-= 1
        }
      }
    }
  }

  /// Keeps the `n` largest magnitudes of every `m` consecutive weights
  /// along each row's innermost run (ties: the first ones). One layer
  /// (whose run must be a multiple of m), or (layer nil) every layer that
  /// can hold the pattern; returns the layers skipped.
  @discardableResult
  public func nm(layer: Int?, n: Int, m: Int) throws(TinfError) -> [Int] {
    guard m >= 2 && m <= 64 && n >= 1 && n < m else {
      throw .arg("N:M pattern needs 1 <= N < M <= 64, got \(n):\(m)")
    }
    var skipped: [Int] = []
    let which: [Int]
    if let layer {
      try checkLayer(layer)
      guard shapes[layer].run % m == 0 else {
        throw .arg(
          "layer \(layer) cannot hold \(n):\(m): its rows run over \(shapes[layer].run) input channels, not a multiple of \(m)")
      }
      which = [layer]
    } else {
      which = layers.indices.filter { shapes[$0].run % m == 0 }
      skipped = layers.indices.filter { shapes[$0].run % m != 0 }
    }
    var order = [Int](repeating: 0, count: m)
    for l in which {
      let count = weights[l].count
      var g = 0
      while g < count {
        // Insertion sort of the group by magnitude (ties: the later first),
        // then the first m - n are pruned.
        for i in 0..<m {
          var j = i
          let a = abs(weights[l][g &+ i])
          while j > 0 && !(abs(weights[l][g &+ order[j &- 1]]) < a) {
            order[j] = order[j &- 1]
            j &-= 1
          }
          order[j] = i
        }
        for i in 0..<(m &- n) { weights[l][g &+ order[i]] = 0 }
        g &+= m
      }
    }
    return skipped
  }

  /// Replaces a layer's weights (the same number of values).
  public func setWeights(layer: Int, _ values: UnsafeBufferPointer<Float>) throws(TinfError) {
    try checkLayer(layer)
    guard values.count == weights[layer].count else {
      throw .arg("layer \(layer) has \(weights[layer].count) weights, got \(values.count)")
    }
    for (i, v) in values.enumerated() {
      guard v.isFinite else { throw .arg("weight \(i) of layer \(layer) is not finite") }
      weights[layer][i] = v
    }
  }

  /// Runs the original model on one set of inputs (one buffer per graph
  /// input, of exactly its size) and adds each layer's input x^2 per
  /// channel (the last dim) to `inputSquares`.
  public func observe(_ inputs: [UnsafeRawBufferPointer]) throws(TinfError) {
    let g = model.graph
    guard inputs.count == g.inputs.count else {
      throw .arg("the model takes \(g.inputs.count) inputs, got \(inputs.count)")
    }
    if session == nil { session = try Session.create(model: model) }
    let s = session!
    for (i, src) in inputs.enumerated() {
      let dst = s.inputBuffer(i)
      guard src.count == dst.count else {
        throw .arg("calibration input \(i) has \(src.count) bytes, the model's input takes \(dst.count)")
      }
      if let d = dst.baseAddress, let b = src.baseAddress { d.copyMemory(from: b, byteCount: src.count) }
    }
    // Layer inputs by tensor: graph inputs now, op outputs as they are made.
    var readers: [Int: [Int]] = [:]
    for (l, k) in layers.enumerated() { readers[g.nodes[k].inputs[0], default: []].append(l) }
    func add(_ t: Int, _ buf: UnsafeRawBufferPointer) {
      guard let ls = readers[t], let b = buf.baseAddress else { return }
      let f = b.assumingMemoryBound(to: Float.self)
      let total = buf.count / 4
      for l in ls {
        let c = shapes[l].inputChannels
        let rows = total / c
        for r in 0..<rows {
          for j in 0..<c {
            let v = Double(f[r &* c &+ j])
            inputSquares[l][j] += v * v
          }
        }
        positions[l] &+= rows
      }
    }
    for (i, t) in g.inputs.enumerated() { add(t, UnsafeRawBufferPointer(s.inputBuffer(i))) }
    try s.run { t, buf in add(t, buf) }
  }

  /// Fraction of zeros of a layer's current weights.
  public func sparsity(layer: Int) throws(TinfError) -> Double {
    try checkLayer(layer)
    let w = weights[layer]
    var z = 0
    for v in w where v == 0 { z &+= 1 }
    return w.isEmpty ? 0 : Double(z) / Double(w.count)
  }

  /// The model with the current weights, as a .tinf file.
  public func finish() throws(TinfError) -> [UInt8] {
    let g = model.graph
    var w = GraphWriter(model: model)
    let inputs = g.inputs.map { w.carry($0) }
    var replaced = [Int](repeating: -1, count: g.tensors.count)
    for (l, k) in layers.enumerated() {
      let t = g.nodes[k].inputs[1]
      let d = g.tensors[t]
      replaced[t] = w.add(d.name, .float32, d.shape, bytes: floatBytes(weights[l]))
    }
    for node in g.nodes {
      let ins = node.inputs.map { t -> Int in t < 0 ? -1 : (replaced[t] >= 0 ? replaced[t] : w.carry(t)) }
      let outs = node.outputs.map { w.carry($0) }
      w.emit(node.op, ins, outs, node.attrs)
    }
    let outputs = g.outputs.map { replaced[$0] >= 0 ? replaced[$0] : w.carry($0) }
    w.def.inputs = inputs
    w.def.outputs = outputs
    return ModelFile.write(w.def, constants: w.data)
  }
}
