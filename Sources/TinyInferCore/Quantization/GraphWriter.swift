/// Builds a new GraphDef (and its constants' bytes) from a loaded graph:
/// the quantization passes copy tensors over ("carry"), add new ones and
/// emit ops in order. Tensors nothing refers to are not written, so the
/// float weights that were replaced leave the file.
struct GraphWriter {
  let model: Model
  let g: Graph
  var def = GraphDef()
  var data: [[UInt8]?] = []
  /// Old tensor index -> its carried copy in the new graph, or -1.
  private var carried: [Int]

  init(model: Model) {
    self.model = model
    self.g = model.graph
    carried = [Int](repeating: -1, count: model.graph.tensors.count)
    def.metadata = g.metadata
  }

  /// Adds a tensor (a constant when `bytes` is given).
  mutating func add(
    _ name: String, _ dtype: DType, _ shape: [Int], quant: Quantization? = nil, bytes: [UInt8]? = nil
  ) -> Int {
    def.tensors.append(TensorSpec(name: name, dtype: dtype, shape: shape, quant: quant))
    data.append(bytes)
    return def.tensors.count - 1
  }

  /// The old tensor `t` as it is (constants with their bytes).
  mutating func carry(_ t: Int) -> Int {
    if carried[t] >= 0 { return carried[t] }
    let d = g.tensors[t]
    let n = add(d.name, d.dtype, d.shape, quant: d.quant, bytes: d.isConstant ? bytes(t) : nil)
    carried[t] = n
    return n
  }

  mutating func emit(_ op: OpKind, _ inputs: [Int], _ outputs: [Int], _ attrs: Attributes = Attributes()) {
    def.nodes.append(Node(op: op, inputs: inputs, outputs: outputs, attrs: attrs))
  }

  /// The bytes of constant `t` (described by `desc`, the main graph's by default).
  func bytes(_ t: Int, _ desc: TensorDesc? = nil) -> [UInt8] {
    let d = desc ?? g.tensors[t]
    guard let p = model.constantData(t) else { return [UInt8](repeating: 0, count: d.nbytes) }
    return Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(p), count: d.nbytes))
  }

  /// The values of float32 constant `t`.
  func floats(_ t: Int) -> [Float] {
    let d = g.tensors[t]
    guard let p = model.constantData(t) else { return [Float](repeating: 0, count: d.count) }
    return Array(UnsafeBufferPointer(start: UnsafePointer(p.assumingMemoryBound(to: Float.self)), count: d.count))
  }

  func isFloatConstant(_ t: Int) -> Bool {
    t >= 0 && g.tensors[t].isConstant && g.tensors[t].dtype == .float32
  }

  /// Copies the source's subgraphs (control-flow bodies) as they are, in
  /// float32 and in file order (the If / While ops' `subgraphs` indices
  /// stay valid): each tensor they use is carried with the subgraph's own
  /// description, constants shared with the main graph once.
  mutating func carrySubgraphs() {
    for (i, sub) in g.subgraphs.enumerated() {
      func c(_ w: inout GraphWriter, _ t: Int) -> Int {
        guard t >= 0 else { return -1 }
        if w.carried[t] >= 0 { return w.carried[t] }
        let d = sub.tensors[t]
        let n = w.add(d.name, d.dtype, d.shape, quant: d.quant, bytes: d.isConstant ? w.bytes(t, d) : nil)
        w.carried[t] = n
        return n
      }
      var s = SubgraphDef(name: "subgraph_\(i)")
      s.inputs = sub.inputs.map { c(&self, $0) }
      for node in sub.nodes {
        let ins = node.inputs.map { c(&self, $0) }
        let outs = node.outputs.map { c(&self, $0) }
        s.nodes.append(Node(op: node.op, inputs: ins, outputs: outs, attrs: node.attrs))
      }
      s.outputs = sub.outputs.map { c(&self, $0) }
      def.subgraphs.append(s)
    }
  }

  /// Serializes with the graph inputs and outputs given (new indices).
  mutating func finish(inputs: [Int], outputs: [Int], mode: String) -> [UInt8] {
    if def.subgraphs.isEmpty && !g.subgraphs.isEmpty { carrySubgraphs() }
    def.inputs = inputs
    def.outputs = outputs
    var meta: [(key: String, value: String)] = []
    for m in def.metadata where m.key != "quantization" { meta.append(m) }
    meta.append(("quantization", mode))
    def.metadata = meta
    return ModelFile.write(def, constants: data)
  }
}

func floatBytes(_ xs: [Float]) -> [UInt8] {
  var out = [UInt8](repeating: 0, count: xs.count * 4)
  for (i, x) in xs.enumerated() {
    let b = x.bitPattern
    out[4 * i] = UInt8(truncatingIfNeeded: b)
    out[4 * i + 1] = UInt8(truncatingIfNeeded: b >> 8)
    out[4 * i + 2] = UInt8(truncatingIfNeeded: b >> 16)
    out[4 * i + 3] = UInt8(truncatingIfNeeded: b >> 24)
  }
  return out
}

func int32Bytes(_ xs: [Int32]) -> [UInt8] {
  var out = [UInt8](repeating: 0, count: xs.count * 4)
  for (i, x) in xs.enumerated() {
    let b = UInt32(bitPattern: x)
    out[4 * i] = UInt8(truncatingIfNeeded: b)
    out[4 * i + 1] = UInt8(truncatingIfNeeded: b >> 8)
    out[4 * i + 2] = UInt8(truncatingIfNeeded: b >> 16)
    out[4 * i + 3] = UInt8(truncatingIfNeeded: b >> 24)
  }
  return out
}
