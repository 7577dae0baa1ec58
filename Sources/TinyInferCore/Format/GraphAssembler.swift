/// Assembles a graph tensor by tensor and op by op, checking every argument
/// against the format's limits (docs/format.md, "Limits"; the constants of
/// `ModelFile`), and writes it as a .tinf file. The C API's tinf_builder_*
/// functions are a shell over it: they check pointers and handles only.
/// Whole-graph checks (shapes, dtypes, an op's inputs) are the loader's: a
/// written file is validated by loading it.
public struct GraphAssembler {
  public private(set) var def = GraphDef()
  /// Each tensor's constant bytes (nil: computed at run time).
  public private(set) var constants: [[UInt8]?] = []

  public init() {}

  public mutating func setMetadata(_ key: String, _ value: String) {
    for i in def.metadata.indices where def.metadata[i].key == key {
      def.metadata[i].value = value
      return
    }
    def.metadata.append((key, value))
  }

  /// Adds a tensor and returns its index. `dtype` 0 and `rank` -1 leave
  /// the dtype and the shape to inference; `data`: a constant's bytes.
  public mutating func addTensor(
    name: String, dtype code: Int, rank: Int, dims: UnsafePointer<Int64>?, data: UnsafeRawBufferPointer?
  ) throws(TinfError) -> Int {
    var dt: DType? = nil
    if code != 0 {
      guard code > 0 && code < 256, let d = DType(rawValue: UInt8(code)) else {
        throw TinfError(.unsupportedDType, "unknown dtype code \(code)")
      }
      dt = d
    }
    var shape: [Int]? = nil
    if rank != -1 { shape = try readShape(rank: rank, dims: dims) }  // -1: left to inference
    guard def.tensors.count < ModelFile.maxTensors else { throw .arg("more than \(ModelFile.maxTensors) tensors") }
    var constant: [UInt8]? = nil
    if let data {
      guard let dt, let shape else { throw .arg("a constant needs a dtype and a shape") }
      var count = 1
      for d in shape {
        guard let m = checkedMul(count, d) else { throw .arg("constant is too large") }
        count = m
      }
      guard let expected = checkedMul(count, dt.size), expected == data.count else {
        throw .arg("constant '\(name)' needs \(count &* dt.size) bytes, got \(data.count)")
      }
      constant = Array(data)
    }
    def.tensors.append(TensorSpec(name: name, dtype: dt, shape: shape))
    constants.append(constant)
    return def.tensors.count - 1
  }

  /// Quantization parameters of tensor `t`: `axis` -1 per tensor (count 1),
  /// else per axis.
  public mutating func setQuant(
    tensor t: Int, axis: Int, count: Int, scales: UnsafePointer<Float>, zeroPoints: UnsafePointer<Int32>
  ) throws(TinfError) {
    guard t >= 0 && t < def.tensors.count else { throw .arg("tensor \(t) out of range") }
    guard count >= 1 && count <= ModelFile.maxAttrElements else { throw .arg("count must be >= 1") }
    guard axis >= -1 && axis < maxRank, axis >= 0 || count == 1 else {
      throw .arg("axis must be -1 (per tensor, count 1) or a dimension")
    }
    var s: [Float] = []
    var z: [Int32] = []
    for i in 0..<count {
      guard scales[i].isFinite && scales[i] > 0 else { throw .arg("scale \(scales[i]) must be finite and > 0") }
      s.append(scales[i])
      z.append(zeroPoints[i])
    }
    def.tensors[t].quant = Quantization(axis: axis < 0 ? nil : axis, scales: s, zeroPoints: z)
  }

  /// Marks constant `t` to be stored in the sparse encoding whenever that is
  /// smaller than dense (TensorSpec.storeSparse).
  public mutating func setStoreSparse(tensor t: Int, _ on: Bool) throws(TinfError) {
    guard t >= 0 && t < def.tensors.count else { throw .arg("tensor \(t) out of range") }
    guard t < constants.count, constants[t] != nil else { throw .arg("tensor \(t) is not a constant") }
    def.tensors[t].storeSparse = on
  }

  /// Appends op `code` (execution order is the order of calls) and returns
  /// its index. An input of -1 is an absent optional input.
  public mutating func addOp(
    code: Int, inputs: UnsafePointer<Int32>?, count nIn: Int, outputs: UnsafePointer<Int32>?, count nOut: Int
  ) throws(TinfError) -> Int {
    guard let kind = OpKind.from(code: code) else {
      throw .unsupported("unknown op id \(code)")
    }
    guard nIn >= 0 && nIn <= ModelFile.maxOpArity, nOut >= 1 && nOut <= ModelFile.maxOpArity else {
      throw .arg("bad input or output count")
    }
    guard nIn == 0 || inputs != nil, let outputs else { throw .arg("inputs or outputs is NULL") }
    guard def.nodes.count < ModelFile.maxOps else { throw .arg("more than \(ModelFile.maxOps) ops") }
    let n = def.tensors.count
    var ins: [Int] = []
    for i in 0..<nIn {
      let t = Int(inputs![i])
      guard t >= -1 && t < n else { throw .arg("input tensor \(t) out of range") }
      ins.append(t)
    }
    var outs: [Int] = []
    for i in 0..<nOut {
      let t = Int(outputs[i])
      guard t >= 0 && t < n else { throw .arg("output tensor \(t) out of range") }
      outs.append(t)
    }
    def.nodes.append(Node(op: kind, inputs: ins, outputs: outs))
    return def.nodes.count - 1
  }

  /// Sets attribute `key` (an `AttrKey` code) of op `op`.
  public mutating func setAttr(op: Int, key: Int, _ value: AttrValue) throws(TinfError) {
    guard op >= 0 && op < def.nodes.count else { throw .arg("op \(op) out of range") }
    guard let k = AttrKey.from(code: key) else {
      throw .arg("unknown attribute key \(key)")
    }
    def.nodes[op].attrs[k] = value
  }

  /// The `count` values at `p` as an attribute list (at most the format's
  /// attribute list length).
  public static func list<T>(_ p: UnsafePointer<T>?, _ count: Int) throws(TinfError) -> [T] {
    guard count >= 0 && count <= ModelFile.maxAttrElements, count == 0 || p != nil else {
      throw .arg("a list of \(count) values (NULL, or not 0...\(ModelFile.maxAttrElements))")
    }
    var xs: [T] = []
    for i in 0..<count { xs.append(p![i]) }
    return xs
  }

  /// Sets the graph's inputs (or outputs): tensor indices.
  public mutating func setGraph(inputs: Bool, _ p: UnsafePointer<Int32>?, count: Int) throws(TinfError) {
    let what = inputs ? "input" : "output"
    guard count >= 0 && count <= ModelFile.maxTensors, count == 0 || p != nil else {
      throw .arg("bad graph \(what) list (NULL or index out of range)")
    }
    var xs: [Int] = []
    for i in 0..<count {
      let t = Int(p![i])
      guard t >= 0 && t < def.tensors.count else { throw .arg("bad graph \(what) list (NULL or index out of range)") }
      xs.append(t)
    }
    if inputs { def.inputs = xs } else { def.outputs = xs }
  }

  /// Moves the ops from `firstOp` to the last one added into a new
  /// subgraph (format 1.2) with these input and output tensors; returns its
  /// index. Ops added later go to the main graph again, so a subgraph built
  /// inside another one is added before it.
  public mutating func addSubgraph(
    name: String, firstOp: Int, inputs: UnsafePointer<Int32>?, count nIn: Int, outputs: UnsafePointer<Int32>?,
    count nOut: Int
  ) throws(TinfError) -> Int {
    guard def.subgraphs.count < ModelFile.maxSubgraphs else { throw .arg("more than \(ModelFile.maxSubgraphs) subgraphs") }
    guard firstOp >= 0 && firstOp <= def.nodes.count else {
      throw .arg("first op \(firstOp) out of range (\(def.nodes.count) ops)")
    }
    func list(_ p: UnsafePointer<Int32>?, _ n: Int, _ what: String) throws(TinfError) -> [Int] {
      guard n >= 0 && n <= ModelFile.maxTensors, n == 0 || p != nil else { throw .arg("bad subgraph \(what) list") }
      var xs: [Int] = []
      for i in 0..<n {
        let t = Int(p![i])
        guard t >= 0 && t < def.tensors.count else { throw .arg("subgraph \(what) tensor \(t) out of range") }
        xs.append(t)
      }
      return xs
    }
    var sub = SubgraphDef(name: name)
    sub.inputs = try list(inputs, nIn, "input")
    sub.outputs = try list(outputs, nOut, "output")
    guard !sub.outputs.isEmpty else { throw .arg("a subgraph needs at least one output") }
    sub.nodes = Array(def.nodes[firstOp...])
    def.nodes.removeSubrange(firstOp...)
    def.subgraphs.append(sub)
    return def.subgraphs.count - 1
  }

  /// The .tinf file.
  public func write() -> [UInt8] { ModelFile.write(def, constants: constants) }
}
