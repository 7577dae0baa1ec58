/// The graph as a file describes it, before validation: shapes and dtypes of
/// intermediate tensors may be left to inference.
public struct TensorSpec: Sendable {
  public var name: String
  /// nil: inferred from the producing op.
  public var dtype: DType?
  /// nil: inferred from the producing op.
  public var shape: [Int]?
  public var quant: Quantization?
  /// Byte range of a constant's data, relative to the data section.
  public var constant: Range<Int>?
  /// A constant stored in the sparse encoding (Format/SparseEncoding.swift):
  /// its entries. The loader expands it before validation.
  public var sparseEntries: Int? = nil
  /// A writer hint (not in the file): store this constant in the sparse
  /// encoding whenever that is smaller than dense, not only when it halves
  /// it (a converter's constant that its source file stored sparse: TFLite
  /// `sparsity`). Set with `tinf_builder_set_store_sparse`.
  public var storeSparse: Bool = false

  public init(name: String, dtype: DType?, shape: [Int]?, quant: Quantization? = nil, constant: Range<Int>? = nil) {
    self.name = name
    self.dtype = dtype
    self.shape = shape
    self.quant = quant
    self.constant = constant
  }
}

/// One op of the graph: indices into the tensor table (-1 = absent optional input).
public struct Node: Sendable {
  public var op: OpKind
  public var inputs: [Int]
  public var outputs: [Int]
  public var attrs: Attributes

  public init(op: OpKind, inputs: [Int], outputs: [Int], attrs: Attributes = Attributes()) {
    self.op = op
    self.inputs = inputs
    self.outputs = outputs
    self.attrs = attrs
  }
}

/// A parsed, not yet validated model description.
public struct GraphDef: Sendable {
  public var metadata: [(key: String, value: String)] = []
  public var tensors: [TensorSpec] = []
  public var nodes: [Node] = []
  public var inputs: [Int] = []
  public var outputs: [Int] = []
  /// Graphs that control-flow ops run (format 1.2), over the same tensor table.
  public var subgraphs: [SubgraphDef] = []
  public init() {}
}

/// A subgraph: its inputs, outputs and ops, indices into the file's tensor table.
public struct SubgraphDef: Sendable {
  public var name: String
  public var inputs: [Int] = []
  public var outputs: [Int] = []
  public var nodes: [Node] = []
  public init(name: String) { self.name = name }
}

/// A tensor with everything known: dtype, shape, size, and where its data is.
public struct TensorDesc: Sendable {
  public var name: String
  public var dtype: DType
  public var shape: [Int]
  public var quant: Quantization?
  /// Byte range in the data section for constants, nil for computed tensors.
  public var constant: Range<Int>?
  /// Computed once at load by constant folding (its data is owned by the model).
  public var folded: Bool = false
  /// For a tensor folded at load from a Dequantize of an 8-bit constant:
  /// that constant (its values and quantization, which int8-static with the
  /// graph's parameters uses as given); -1 otherwise.
  public var dequantizedFrom: Int = -1

  public var count: Int { shape.reduce(1, &*) }
  public var nbytes: Int { count &* dtype.size }
  /// Known before any run: stored in the file or folded at load.
  public var isConstant: Bool { constant != nil || folded }
}

/// A validated graph: topologically ordered, every tensor's dtype and shape
/// known, every attribute checked by its op's shape inference.
public struct Graph: Sendable {
  public let metadata: [(key: String, value: String)]
  public let tensors: [TensorDesc]
  public let nodes: [Node]
  public let inputs: [Int]
  public let outputs: [Int]
  /// Reshapes removed at load as identities for the file's shapes
  /// (Passes/IdentityRemoval.swift), each reading the tensor that now holds
  /// its input: `withInputShapes` checks they are still identities.
  public let shapeGuards: [Node]
  /// The subgraphs control-flow ops run (ControlFlow.swift), validated, in
  /// file order (only the main graph holds them; a subgraph's list is empty).
  public internal(set) var subgraphs: [Graph]

  /// Validates `def` against a data section of `dataSize` bytes and infers
  /// every shape. Throws with the op index and name on the first problem.
  /// Subgraphs are validated first, in order: a control-flow op of a
  /// subgraph may only call subgraphs before it (the main graph's, any).
  public init(validating def: GraphDef, dataSize: Int) throws(TinfError) {
    let subs = try ControlFlow.validateSubgraphs(def, dataSize: dataSize)
    try self.init(validating: def, dataSize: dataSize, subgraphs: subs.map { Optional($0) }, level: -1)
    self.subgraphs = subs
  }

  /// One graph of the file (`level` -1: the main graph, else the subgraph's
  /// index), its control-flow ops checked against `subgraphs` (nil: not validated yet).
  init(validating def: GraphDef, dataSize: Int, subgraphs subs: [Graph?], level: Int) throws(TinfError) {
    let n = def.tensors.count
    var known = [Bool](repeating: false, count: n)
    var descs: [TensorDesc?] = [TensorDesc?](repeating: nil, count: n)

    // Constants: dtype and shape declared, data in range and sized exactly.
    for (i, t) in def.tensors.enumerated() {
      guard let range = t.constant else { continue }
      guard let dtype = t.dtype, let shape = t.shape else {
        throw .format("constant tensor \(i) '\(t.name)' must declare dtype and shape")
      }
      try Graph.checkShape(shape, "constant tensor \(i) '\(t.name)'")
      guard let count = elementCount(shape), let bytes = checkedMul(count, dtype.size), bytes <= maxTensorBytes else {
        throw .format("constant tensor \(i) '\(t.name)' is too large")
      }
      guard range.lowerBound >= 0, range.upperBound <= dataSize, range.count == bytes else {
        throw .format(
          "constant tensor \(i) '\(t.name)': data range \(range.lowerBound)..<\(range.upperBound) does not fit "
            + "(\(bytes) bytes expected, data section has \(dataSize))")
      }
      guard range.lowerBound % 64 == 0 else {
        throw .format("constant tensor \(i) '\(t.name)': data offset \(range.lowerBound) is not 64-byte aligned")
      }
      descs[i] = TensorDesc(name: t.name, dtype: dtype, shape: shape, quant: t.quant, constant: range)
      known[i] = true
    }

    // Graph inputs: declared, not constants, distinct.
    guard !def.outputs.isEmpty else { throw .format("the graph has no outputs") }
    for idx in def.inputs {
      guard idx >= 0 && idx < n else { throw .format("graph input index \(idx) out of range (\(n) tensors)") }
      let t = def.tensors[idx]
      guard t.constant == nil else { throw .format("graph input '\(t.name)' is a constant") }
      guard !known[idx] else { throw .format("tensor '\(t.name)' is listed twice as a graph input") }
      guard let dtype = t.dtype, let shape = t.shape else {
        throw .format("graph input '\(t.name)' must declare dtype and shape")
      }
      try Graph.checkShape(shape, "graph input '\(t.name)'")
      descs[idx] = TensorDesc(name: t.name, dtype: dtype, shape: shape, quant: t.quant, constant: nil)
      known[idx] = true
    }

    // Ops in order: inputs known, outputs produced once, shapes inferred.
    for (k, node) in def.nodes.enumerated() {
      // The message's prefix, built only when something is wrong (a load of a
      // valid model would spend a string per op on it otherwise).
      func ctx() -> String { "op \(k) (\(node.op.name))" }
      var ins: [TensorDesc?] = []
      ins.reserveCapacity(node.inputs.count)
      for idx in node.inputs {
        if idx == -1 {
          ins.append(nil)
          continue
        }
        guard idx >= 0 && idx < n else { throw TinfError.format("\(ctx()): input index \(idx) out of range") }
        guard known[idx], let d = descs[idx] else {
          throw TinfError.format("\(ctx()): input '\(def.tensors[idx].name)' is used before it is produced")
        }
        ins.append(d)
      }
      guard !node.outputs.isEmpty else { throw TinfError.format("\(ctx()): has no outputs") }
      for idx in node.outputs {
        guard idx >= 0 && idx < n else { throw TinfError.format("\(ctx()): output index \(idx) out of range") }
        guard !known[idx] else {
          throw TinfError.format("\(ctx()): output '\(def.tensors[idx].name)' is already produced or constant")
        }
      }
      var outs: [TensorType]
      do throws(TinfError) {
        outs = try Graph.infer(node, ins, subs, level: level)
      } catch {
        throw error.prefixed(ctx())
      }
      guard outs.count == node.outputs.count else {
        throw TinfError.format("\(ctx()): has \(node.outputs.count) outputs, the op makes \(outs.count)")
      }
      for (j, idx) in node.outputs.enumerated() {
        let spec = def.tensors[idx]
        var o = outs[j]
        try Graph.checkShape(o.shape, "\(ctx()): output '\(spec.name)'")
        if let d = spec.dtype, d != o.dtype {
          throw TinfError.format("\(ctx()): output '\(spec.name)' is declared \(d.name) but the op makes \(o.dtype.name)")
        }
        if let s = spec.shape, s != o.shape {
          throw TinfError.shape(
            "\(ctx()): output '\(spec.name)' is declared \(describe(s)) but the op makes \(describe(o.shape))")
        }
        if o.quant == nil { o.quant = spec.quant }
        if o.quant == nil && (o.dtype == .int8 || o.dtype == .uint8 || o.dtype == .int16)
          && Registry.writesQuantized(node, ins)
        {
          throw TinfError.format(
            "\(ctx()): output '\(spec.name)' is \(o.dtype.name) but has no quantization parameters (scale, zero point)")
        }
        descs[idx] = TensorDesc(name: spec.name, dtype: o.dtype, shape: o.shape, quant: o.quant, constant: nil)
        known[idx] = true
      }
    }

    var seenOut = [Bool](repeating: false, count: n)
    for idx in def.outputs {
      guard idx >= 0 && idx < n else { throw .format("graph output index \(idx) out of range") }
      guard known[idx] else { throw .format("graph output '\(def.tensors[idx].name)' is never produced") }
      guard !seenOut[idx] else { throw .format("tensor '\(def.tensors[idx].name)' is listed twice as a graph output") }
      seenOut[idx] = true
    }

    // Tensors that nothing produces or uses get a placeholder description.
    var all: [TensorDesc] = []
    all.reserveCapacity(n)
    for i in 0..<n {
      if let d = descs[i] {
        all.append(d)
      } else {
        all.append(TensorDesc(name: def.tensors[i].name, dtype: .float32, shape: [1], quant: nil, constant: nil))
      }
    }
    self.metadata = def.metadata
    self.tensors = all
    self.nodes = def.nodes
    self.inputs = def.inputs
    self.outputs = def.outputs
    self.shapeGuards = []
    self.subgraphs = []
  }

  /// An op's output types: its shape inference, or for a control-flow op
  /// the signature of the subgraphs it calls.
  static func infer(_ node: Node, _ ins: [TensorDesc?], _ subs: [Graph?], level: Int) throws(TinfError) -> [TensorType] {
    if node.op.traits.subgraphs { return try ControlFlow.infer(node, ins, subs, level: level) }
    if level >= 0 && node.op.traits.state != .none {
      throw .unsupported("variables (\(node.op.name)) are not supported inside a subgraph")
    }
    return try Registry.infer(node, ins)
  }

  /// A graph rewritten by an optimization pass (already valid).
  init(rewriting g: Graph, tensors: [TensorDesc], nodes: [Node], shapeGuards: [Node]? = nil) {
    self.metadata = g.metadata
    self.tensors = tensors
    self.nodes = nodes
    self.inputs = g.inputs
    self.outputs = g.outputs
    self.shapeGuards = shapeGuards ?? g.shapeGuards
    self.subgraphs = g.subgraphs
  }

  /// `what` names the tensor in the message; built only when the shape is refused.
  static func checkShape(_ shape: [Int], _ what: @autoclosure () -> String) throws(TinfError) {
    guard shape.count <= maxRank else { throw .format("\(what()): rank \(shape.count) exceeds \(maxRank)") }
    for d in shape where d < 1 {
      throw .shape("\(what()): dimension \(d) in \(describe(shape)) (every dimension must be >= 1)")
    }
    guard elementCount(shape) != nil else {
      throw .shape("\(what()): shape \(describe(shape)) is too large")
    }
  }
}

/// What shape inference produces for an op output.
public struct TensorType: Sendable {
  public var dtype: DType
  public var shape: [Int]
  public var quant: Quantization?
  public init(_ dtype: DType, _ shape: [Int], quant: Quantization? = nil) {
    self.dtype = dtype
    self.shape = shape
    self.quant = quant
  }
}

extension Graph {
  /// The same graph with other input shapes (for example another batch
  /// size): every op's shape inference runs again, so an op that cannot take
  /// the new shapes (a Reshape to a fixed batch of 1) refuses with its reason.
  public func withInputShapes(_ shapes: [[Int]]) throws(TinfError) -> Graph {
    guard shapes.count == inputs.count else {
      throw .arg("\(shapes.count) input shapes given, the model has \(inputs.count) inputs")
    }
    var ts = tensors
    for (i, t) in inputs.enumerated() {
      try Graph.checkShape(shapes[i], "input '\(ts[t].name)'")
      guard shapes[i].count == ts[t].shape.count else {
        throw .shape("input '\(ts[t].name)' has rank \(ts[t].shape.count), the new shape \(describe(shapes[i])) has \(shapes[i].count)")
      }
      ts[t].shape = shapes[i]
    }
    let subs = subgraphs.map { Optional($0) }
    for (k, node) in nodes.enumerated() {
      let ins = node.inputs.map { $0 >= 0 ? ts[$0] : nil }
      let outs: [TensorType]
      do throws(TinfError) {
        outs = try Graph.infer(node, ins, subs, level: -1)
      } catch {
        throw error.prefixed("op \(k) (\(node.op.name)) with the new input shapes")
      }
      for (j, t) in node.outputs.enumerated() {
        try Graph.checkShape(outs[j].shape, "op \(k) (\(node.op.name)) output '\(ts[t].name)'")
        ts[t].shape = outs[j].shape
      }
    }
    for guardNode in shapeGuards {
      let x = ts[guardNode.inputs[0]]
      let same: Bool
      do throws(TinfError) {
        same = try Registry.infer(guardNode, [x])[0].shape == x.shape
      } catch {
        same = false
      }
      guard same else {
        throw .shape(
          "the \(guardNode.op.name) of '\(x.name)' was removed at load as an identity for the file's shapes, "
            + "but with these input shapes it is not one: load the model without the graph passes")
      }
    }
    return Graph(rewriting: self, tensors: ts, nodes: nodes)
  }
}
