import TinyInferShims

/// The graph optimization passes run at load, after constant folding
/// (docs/architecture.md, Load-time passes). Each pass is in a file of its
/// own and rewrites a `PassGraph`; each rewrite adds a line to the report
/// (`Model.passReport`). The passes keep every output exactly, except BatchNorm
/// folding and the folding of constant Mul/Add/Sub (AffineFolding), which
/// round differently (the scale is multiplied into the weights).
enum Optimizer {
  /// `floatOnlyFusions: false` skips the fusions whose result only the
  /// float32 kernels run (PRelu into Add): the quantizer's graph, whose ops
  /// it rewrites into int8 kernels that know nothing of them.
  static func run(
    _ g: Graph, buffers: [UnsafeMutableRawPointer?], floatOnlyFusions: Bool = true,
    constantData: @escaping (Int) -> UnsafeMutableRawPointer?
  )
    throws(TinfError) -> (graph: Graph, buffers: [UnsafeMutableRawPointer?], report: [String])
  {
    var p = PassGraph(g, buffers: buffers, constantData: constantData)
    IdentityRemoval.run(&p)
    CommonSubexpression.run(&p)
    do throws(TinfError) {
      // Again while either folds something: a BatchNorm after a constant Add
      // (TransposeConv2D -> Add -> BatchNorm in PP-OCR's detection head)
      // has a linear producer only once the Add is folded. Each round
      // removes ops, so this ends.
      var before = -1
      while p.report.count != before {
        before = p.report.count
        try BatchNormFolding.run(&p)
        try AffineFolding.run(&p)
      }
    } catch {
      p.freeAll()
      throw error
    }
    PadFusion.run(&p)
    ActivationFusion.run(&p)
    if floatOnlyFusions { PReluFusion.run(&p) }
    DeadCodeElimination.run(&p)
    p.freeUnusedBuffers()
    var out = p.graph()
    do throws(TinfError) {
      out = try Reordering.run(out, report: &p.report)
    } catch {
      p.freeAll()
      throw error
    }
    return (out, p.buffers, p.report)
  }
}

/// A graph being rewritten: nodes may be removed (nil) and tensors added;
/// `graph()` gives the result in the same (topological) order.
struct PassGraph {
  var tensors: [TensorDesc]
  var nodes: [Node?]
  let inputs: [Int]
  let outputs: [Int]
  /// Model-owned data of folded tensors, indexed like `tensors`.
  var buffers: [UnsafeMutableRawPointer?]
  /// Removed ops that were identities for the file's shapes only: checked
  /// again when a session infers other input shapes (Graph.shapeGuards).
  var guards: [Node]
  var report: [String] = []
  private let source: Graph
  private let fileData: (Int) -> UnsafeMutableRawPointer?

  init(_ g: Graph, buffers: [UnsafeMutableRawPointer?], constantData: @escaping (Int) -> UnsafeMutableRawPointer?) {
    source = g
    tensors = g.tensors
    nodes = g.nodes.map { $0 }
    inputs = g.inputs
    outputs = g.outputs
    self.buffers = buffers
    guards = g.shapeGuards
    fileData = constantData
  }

  func graph() -> Graph {
    Graph(rewriting: source, tensors: tensors, nodes: nodes.compactMap { $0 }, shapeGuards: guards)
  }

  /// Data of a constant tensor (folded or from the file).
  func data(_ t: Int) -> UnsafeMutablePointer<Float>? {
    guard tensors[t].isConstant, let p = buffers[t] ?? fileData(t) else { return nil }
    return p.assumingMemoryBound(to: Float.self)
  }

  /// The op that produces `t`, if any.
  /// (These scans run once per candidate op of every pass: they read the
  /// nodes in place, where binding each node to a local copied it, with a
  /// retain and release of each of its arrays; a model of 1,500 ops spent
  /// a quarter of its load there.)
  func producer(_ t: Int) -> Int? {
    nodes.withUnsafeBufferPointer { b -> Int? in
      for k in b.indices where b[k]?.outputs.contains(t) == true { return k }
      return nil
    }
  }

  /// The ops that read `t` (an op reading it twice is listed twice).
  func readers(_ t: Int) -> [Int] {
    var r: [Int] = []
    nodes.withUnsafeBufferPointer { b in
      for k in b.indices {
        guard let n = b[k]?.inputs.count else { continue }
        for i in 0..<n where b[k]!.inputs[i] == t { r.append(k) }
      }
    }
    return r
  }

  func isOutput(_ t: Int) -> Bool { outputs.contains(t) }

  /// Whether `t`, produced by an op, is read by op `k` only and is not a graph output.
  func onlyFeeds(_ t: Int, _ k: Int) -> Bool {
    guard !isOutput(t) else { return false }
    var count = 0
    let only = nodes.withUnsafeBufferPointer { b -> Bool in
      for j in b.indices {
        guard let n = b[j]?.inputs.count else { continue }
        for i in 0..<n where b[j]!.inputs[i] == t {
          count &+= 1
          if j != k || count > 1 { return false }
        }
      }
      return true
    }
    return only && count == 1
  }

  /// Whether op `k` is a float32 op (its integer kernels are chosen by input 0).
  func isFloat(_ k: Int) -> Bool {
    guard let n = nodes[k], let x = n.inputs.first, x >= 0 else { return false }
    return tensors[x].dtype == .float32 && n.outputs.allSatisfy { tensors[$0].dtype == .float32 }
  }

  /// Every read of `old` becomes a read of `new`.
  mutating func replaceUses(of old: Int, with new: Int) {
    for k in nodes.indices {
      guard var n = nodes[k] else { continue }
      for i in n.inputs.indices where n.inputs[i] == old { n.inputs[i] = new }
      nodes[k] = n
    }
    renameInGuards(old, new)
  }

  /// Removes op `k`, whose output `y` computes the same values as `prev`
  /// (produced by op `p`, read by `k` only and not a graph output): op `p`
  /// now writes `y` directly, so a graph output keeps its tensor.
  mutating func absorb(_ k: Int, into p: Int, prev: Int, y: Int) {
    guard var pn = nodes[p] else { return }
    for j in pn.outputs.indices where pn.outputs[j] == prev { pn.outputs[j] = y }
    nodes[p] = pn
    nodes[k] = nil
    renameInGuards(prev, y)
  }

  private mutating func renameInGuards(_ old: Int, _ new: Int) {
    for g in guards.indices {
      for i in guards[g].inputs.indices where guards[g].inputs[i] == old { guards[g].inputs[i] = new }
    }
  }

  /// Adds a model-owned float32 constant.
  mutating func addConstant(name: String, shape: [Int], values: [Float]) throws(TinfError) -> Int {
    guard let p = ti_shim_alloc(max(values.count * 4, 1)) else {
      throw TinfError(.outOfMemory, "graph passes: cannot allocate \(values.count * 4) bytes")
    }
    let f = p.assumingMemoryBound(to: Float.self)
    for i in values.indices { f[i] = values[i] }
    var d = TensorDesc(name: name, dtype: .float32, shape: shape, quant: nil, constant: nil)
    d.folded = true
    tensors.append(d)
    buffers.append(p)
    return tensors.count - 1
  }

  /// Frees folded buffers that no op and no output reads any more.
  mutating func freeUnusedBuffers() {
    var used = [Bool](repeating: false, count: tensors.count)
    for n in nodes { if let n { for t in n.inputs where t >= 0 { used[t] = true } } }
    for t in outputs { used[t] = true }
    for t in tensors.indices where buffers[t] != nil && !used[t] {
      ti_shim_free(buffers[t])
      buffers[t] = nil
    }
  }

  func freeAll() { for b in buffers { ti_shim_free(b) } }

  /// "Conv2D 'name'" (the op and its first output's name) for the report.
  func label(_ k: Int) -> String {
    guard let n = nodes[k] else { return "?" }
    return "\(n.op.name) '\(tensors[n.outputs[0]].name)'"
  }
}
