import TinyInferShims

/// A loaded, validated model. Immutable: any number of threads may share it
/// and make sessions from it. Constants are used in place from the file's
/// bytes (memory-mapped, or the caller's buffer) with no copy.
public final class Model {
  public let graph: Graph
  /// Bytes of the whole file.
  public let fileSize: Int
  /// Bytes of constant data in the file.
  public let weightBytes: Int
  /// Bytes of the header, graph section and data section of the file.
  public let partSizes: (header: Int, graph: Int, data: Int)
  /// Bytes that constant folding added in memory.
  public let foldedBytes: Int
  /// Nanoseconds spent loading (map, parse, validate, infer).
  public let loadNanoseconds: UInt64

  enum Storage {
    case mapped(UnsafeMutableRawPointer, Int)
    case owned(UnsafeMutableRawPointer)
    case borrowed
  }
  private let storage: Storage
  /// The file's first byte (in `storage`, or the caller's buffer).
  private let fileBase: UnsafeRawPointer
  private let dataBase: UnsafeRawPointer?
  /// The dense copy of the constants of a file with sparse constants (owned), else nil.
  private let expanded: UnsafeMutableRawPointer?
  /// Per tensor of the file: the bytes of its sparse encoding, -1 when
  /// stored dense (empty: the file has no sparse constant). The graph
  /// passes append tensors only, so file indices stay valid.
  public let encodedBytes: [Int]
  /// Buffers of tensors folded at load (owned; freed with the model).
  private let foldedData: [UnsafeMutableRawPointer?]
  /// What the load-time passes did, in order: constant folding
  /// ("fold constant Dequantize -> w1") then the graph passes ("fuse Relu
  /// 'r' into Conv2D 'c'", "reorder: arena 53440 -> 34496 B", ...).
  public let passReport: [String]
  /// Weights packed at load for each op that wants them (by op index).
  let packed: [PackedWeights?]
  /// Bytes of packed weights.
  public let packedBytes: Int
  /// Weights of ops that run on the sparse kernels (by op index;
  /// Kernels/SparseGemm.swift), chosen at load.
  let sparse: [SparseWeights?]
  /// Where the packed weights came from (a prepack image or packing at
  /// load; Runtime/PrepackImage.swift), why an image was not used, and how
  /// many ops' weights came from it or were packed at this load.
  public let prepackState: PrepackState
  public let prepackNote: String
  public let prepackedFromImage: Int
  public let packedAtLoad: Int
  /// The mapped prepack image the packed weights point into (unmapped with the model).
  private let prepackMapping: (UnsafeMutableRawPointer, Int)?
  /// The thread mapping the pages of weights read in place (below), stopped
  /// before the model's memory goes away; nil when none runs.
  private let populating: UnsafeMutableRawPointer?
  /// Checksum of the file's graph section (a prepack image must match it).
  let graphHash: UInt64

  /// Memory-maps and loads a file. `optimize: false` skips the graph
  /// passes (Passes/Optimizer.swift; constant folding still runs).
  /// `sparse`: whether ops with mostly-zero weights run sparse kernels (SparseGemm.swift).
  public static func load(
    path: String, optimize: Bool = true, sparse: SparseChoice = .auto, prepack: PrepackRequest? = nil
  ) throws(TinfError) -> Model {
    let t0 = ti_shim_now_ns()
    var size = 0
    var err: Int32 = 0
    var path = path
    // A C path ends at its first NUL: a Swift string with one inside would
    // name another file.
    guard !path.utf8.contains(0) else { throw .arg("the model path contains a NUL byte") }
    let p = path.withUTF8 { buf -> UnsafeMutableRawPointer? in
      var cpath = [CChar](repeating: 0, count: buf.count + 1)
      for i in 0..<buf.count { cpath[i] = CChar(bitPattern: buf[i]) }
      return ti_shim_map_file(cpath, &size, &err)
    }
    guard let p else {
      if err == 0 { throw .format("'\(path)' is empty") }
      let reason = String(cString: ti_shim_file_error(err))
      throw TinfError(.io, err < 0 ? "cannot load '\(path)': it \(reason)" : "cannot open '\(path)': \(reason)")
    }
    return try Model.make(
      base: UnsafeRawPointer(p), size: size, storage: .mapped(p, size), optimize: optimize, sparse: sparse,
      prepack: prepack, t0: t0)
  }

  /// Loads from a buffer: borrowed if 64-byte aligned (it must then outlive
  /// the model), copied otherwise.
  public static func load(
    buffer: UnsafeRawBufferPointer, optimize: Bool = true, sparse: SparseChoice = .auto, prepack: PrepackRequest? = nil
  ) throws(TinfError) -> Model {
    let t0 = ti_shim_now_ns()
    guard let base = buffer.baseAddress, buffer.count > 0 else { throw .format("the buffer is empty") }
    if UInt(bitPattern: base) % UInt(ModelFile.alignment) == 0 {
      return try Model.make(
        base: base, size: buffer.count, storage: .borrowed, optimize: optimize, sparse: sparse, prepack: prepack,
        t0: t0)
    }
    guard let copy = ti_shim_alloc(buffer.count) else {
      throw TinfError(.outOfMemory, "cannot allocate \(buffer.count) bytes for a copy of the model")
    }
    copy.copyMemory(from: base, byteCount: buffer.count)
    return try Model.make(
      base: UnsafeRawPointer(copy), size: buffer.count, storage: .owned(copy), optimize: optimize, sparse: sparse,
      prepack: prepack, t0: t0)
  }

  /// Parses, validates, folds and optimizes; on failure releases the
  /// storage. The object is created only once everything succeeded (a
  /// throwing class initializer would leak the partial object in Embedded Swift).
  private static func make(
    base: UnsafeRawPointer, size: Int, storage: Storage, optimize: Bool, floatOnlyFusions: Bool = true,
    sparse: SparseChoice, prepack: PrepackRequest?, t0: UInt64
  ) throws(TinfError) -> Model
  {
    let file = UnsafeRawBufferPointer(start: base, count: size)
    var expanded: UnsafeMutableRawPointer? = nil
    // The image is mapped first: its checksum runs beside the parsing and
    // the passes (PrepackImage.Opened).
    var opened = prepack.map { PrepackImage.open($0) }
    do throws(TinfError) {
      let layout = try ModelFile.readHeader(file)
      var def = try ModelFile.readBody(UnsafeRawBufferPointer(rebasing: file[layout.body]), minor: layout.minor)
      // Sparse constants (format 1.1): checked and expanded into one dense buffer.
      var dataBase: UnsafeRawPointer? = layout.data.isEmpty ? nil : base + layout.data.lowerBound
      var dataCount = layout.data.count
      var encoded: [Int] = []
      if def.tensors.contains(where: { $0.sparseEntries != nil }) {
        encoded = def.tensors.map { $0.sparseEntries != nil ? ($0.constant?.count ?? 0) : -1 }
        let e = try SparseEncoding.expand(&def, data: UnsafeRawBufferPointer(rebasing: file[layout.data]))
        expanded = e.buffer
        dataBase = UnsafeRawPointer(e.buffer)
        dataCount = e.size
      }
      let validated = try Graph(validating: def, dataSize: dataCount)
      func fileData(_ t: Int) -> UnsafeMutableRawPointer? {
        guard t < validated.tensors.count, let r = validated.tensors[t].constant, let dataBase else { return nil }
        return UnsafeMutableRawPointer(mutating: dataBase + r.lowerBound)
      }
      var folding = try ConstantFolding.run(validated, budget: max(4 &* layout.data.count, 1 << 20), constantData: fileData)
      if optimize {
        let o = try Optimizer.run(
          folding.graph, buffers: folding.buffers, floatOnlyFusions: floatOnlyFusions, constantData: fileData)
        folding.graph = o.graph
        folding.buffers = o.buffers
        folding.report += o.report
      }
      folding.report += Hoisting.report(folding.graph)
      return Model(
        base: base, size: size, storage: storage, dataBase: dataBase, folding: folding,
        parts: (layout.body.lowerBound, layout.body.count, layout.data.count), sparse: sparse, expanded: expanded,
        encoded: encoded,
        prepack: (opened, ti_hash64(base + layout.body.lowerBound, layout.body.count, 0)), t0: t0)
    } catch {
      opened?.close()
      ti_shim_free(expanded)
      switch storage {
      case .mapped(let p, let n): ti_shim_unmap(p, n)
      case .owned(let p): ti_shim_free(p)
      case .borrowed: break
      }
      throw error
    }
  }

  private init(
    base: UnsafeRawPointer, size: Int, storage: Storage, dataBase: UnsafeRawPointer?, folding: ConstantFolding.Result,
    parts: (header: Int, graph: Int, data: Int), sparse choice: SparseChoice, expanded: UnsafeMutableRawPointer?,
    encoded: [Int], prepack: (opened: PrepackImage.Opened?, graphHash: UInt64), t0: UInt64
  ) {
    self.fileBase = base
    self.expanded = expanded
    self.encodedBytes = encoded
    self.partSizes = parts
    var f = 0
    for (i, t) in folding.graph.tensors.enumerated() where folding.buffers[i] != nil { f += t.nbytes }
    self.foldedBytes = f
    self.graph = folding.graph
    self.fileSize = size
    self.storage = storage
    self.dataBase = dataBase
    self.foldedData = folding.buffers
    var report = folding.report
    let g = folding.graph
    var matrices: [(weights: UnsafePointer<Float>, n: Int, k: Int)?] = []
    var sparse: [SparseWeights?] = []
    var pb = 0
    matrices.reserveCapacity(g.nodes.count)
    sparse.reserveCapacity(g.nodes.count)
    // Ops the prepack image lists were packed dense by a load with the same
    // key: their sparse-weight scan (which reads the weights) is skipped,
    // and done below after all when the image is not used.
    let listed = prepack.opened.map { PrepackImage.listedOps($0, opCount: g.nodes.count) }
    func inputs(_ node: Node) -> ([UnsafeMutableRawPointer?], [TensorDesc?]) {
      let data = node.inputs.map { (t: Int) -> UnsafeMutableRawPointer? in
        guard t >= 0 else { return nil }
        if let f = folding.buffers[t] { return f }
        guard let r = g.tensors[t].constant, let dataBase else { return nil }
        return UnsafeMutableRawPointer(mutating: dataBase + r.lowerBound)
      }
      return (data, node.inputs.map { $0 >= 0 ? g.tensors[$0] : nil })
    }
    // Close choices and probes are timed (Runtime/SparseMeasure.swift).
    var measure = SparseMeasure()
    // Not when a prepack image lists ops: a load with the same key measured
    // already. It lists every op with constant weights that load kept dense
    // (packed or scanned), so an op it does not list ran sparse there, a
    // probe too: taken on its word.
    let trusting = listed?.contains(true) ?? false
    var measuring = choice == .auto && SparseMeasure.enabled && !trusting
    func micros(_ ns: UInt64) -> String { "\((Double(ns) / 100).rounded() / 10) us" }
    // The packed weights the timing made for ops it kept dense: not packed again.
    var timedDense: [Int: PackedWeights] = [:]
    // The sparse forms `SparseGemm.prepare` proposes for ops `ks`, settled:
    // the uncertain ones timed while `measuring`, the largest first (the
    // budget goes where most time is at stake); a probe not timed stays
    // dense unless `trust`. The report's lines come in op order.
    func settle(_ ks: [Int], trust: Bool) -> [Int: SparseWeights] {
      var forms: [(k: Int, s: SparseWeights, work: Int, data: [UnsafeMutableRawPointer?], descs: [TensorDesc?])] = []
      for k in ks {
        let (data, descs) = inputs(g.nodes[k])
        guard let s = SparseGemm.prepare(g.nodes[k], descs, data, choice, probes: measuring || trust) else { continue }
        forms.append((k, s, SparseMeasure.work(descs.first ?? nil, s), data, descs))
      }
      var verdict: [Int: (sparse: Bool, note: String)] = [:]
      if measuring {
        for f in forms.filter({ SparseMeasure.uncertain($0.s) }).sorted(by: { $0.work > $1.work }) {
          // Past the budget nothing is timed (or packed for a timing).
          guard measure.budgetLeft else {
            if f.s.probe { verdict[f.k] = (false, "; not timed: the load's timing budget was spent") }
            continue
          }
          let node = g.nodes[f.k]
          let (data, descs) = (f.data, f.descs)
          let dense = Registry.prepack(node, descs, data).flatMap { PackedWeights($0.weights, n: $0.n, k: $0.k) }
          let outs = node.outputs.map { g.tensors[$0] }
          guard var t = measure.time(node, inputs: descs, outputs: outs, data: data, sparse: f.s, packed: dense)
          else {
            // A kernel did not bind: the threshold's choice; a probe stays dense, packed here.
            if f.s.probe, let dense { timedDense[f.k] = dense }
            continue
          }
          func sparseWins(_ t: (sparse: UInt64, dense: UInt64)) -> Bool {
            let (ts, td) = (Double(t.sparse), Double(t.dense))
            return f.s.probe ? ts < td * SparseMeasure.denseMargin : td >= ts * SparseMeasure.denseMargin
          }
          var wins = sparseWins(t)
          // A probe the rules would not take is kept only when a second
          // timing agrees (a slow spell of the machine misled one).
          if wins, f.s.probe {
            if let again = measure.time(node, inputs: descs, outputs: outs, data: data, sparse: f.s, packed: dense) {
              t = (max(t.sparse, again.sparse), min(t.dense, again.dense))
              wins = sparseWins(again)
            } else {
              wins = false
            }
          }
          verdict[f.k] =
            wins
            ? (true, "; measured sparse \(micros(t.sparse)), dense \(micros(t.dense))")
            : (false, "; measured dense \(micros(t.dense)), sparse \(micros(t.sparse))")
          if !wins, let dense { timedDense[f.k] = dense }
        }
      }
      var out: [Int: SparseWeights] = [:]
      for f in forms {
        let node = g.nodes[f.k]
        let name = node.outputs.first.map { g.tensors[$0].name } ?? ""
        let pct = (f.s.sparsity * 1000).rounded() / 10
        let kernel = f.s.kind == "2:4" ? ", 2:4 kernel" : ""
        let v = verdict[f.k] ?? (!f.s.probe || trust, "")
        guard v.sparse else {
          if !v.note.isEmpty { report.append("dense kernel: \(node.op.name) '\(name)' (\(pct)% zeros\(kernel)\(v.note))") }
          continue
        }
        report.append("sparse kernel: \(node.op.name) '\(name)' (\(pct)% zeros, \(f.s.nnz) nonzeros\(kernel)\(v.note))")
        out[f.k] = f.s
      }
      return out
    }
    let chosen = settle(g.nodes.indices.filter { listed?[$0] != true }, trust: trusting)
    for (k, node) in g.nodes.enumerated() {
      let s = chosen[k]
      if s == nil {
        let (data, descs) = inputs(node)
        matrices.append(Registry.prepack(node, descs, data))
      } else {
        matrices.append(nil)
      }
      pb += s?.bytes ?? 0
      sparse.append(s)
    }
    var pk = PrepackImage.adopt(
      matrices, opened: prepack.opened, facts: PrepackImage.Facts(fileSize: size, graphHash: prepack.graphHash),
      ready: timedDense)
    if let listed, pk.state != .fromImage {
      // The image was not used: the ops it lists get the sparse form a load
      // without it gives them. (Probes it did not list stay on the sparse
      // kernel its writing load timed faster.)
      measuring = choice == .auto && SparseMeasure.enabled
      for (k, s) in settle(g.nodes.indices.filter { listed[$0] }, trust: false) {
        if pk.weights[k] != nil { pk.packedNow -= 1 }
        pk.weights[k] = nil
        sparse[k] = s
        pb += s.bytes
      }
    }
    for p in pk.weights { pb += p?.bytes ?? 0 }
    self.packed = pk.weights
    self.prepackState = pk.state
    self.prepackNote = pk.note
    self.prepackedFromImage = pk.fromImage
    self.packedAtLoad = pk.packedNow
    self.prepackMapping = pk.mapping
    self.graphHash = prepack.graphHash
    self.sparse = sparse
    // Large FullyConnected weights the load did not pack (a one-row head,
    // FullyConnectedKernel.packsAtLoad) are read in place from the model's
    // memory: their pages are mapped by a thread of their own while the load
    // goes on (MobileNetV2's 5 MB head took 0.3 ms of a 1.2 ms load mapped in
    // the load itself), so the first run does not fault them one by one
    // either (a packed image's pages are mapped by its checksum already).
    var lo = UInt.max
    var hi: UInt = 0
    for (k, node) in g.nodes.enumerated() where node.op == .fullyConnected && pk.weights[k] == nil && sparse[k] == nil {
      guard node.inputs.count >= 2, node.inputs[1] >= 0, folding.buffers[node.inputs[1]] == nil, let dataBase else {
        continue
      }
      let d = g.tensors[node.inputs[1]]
      guard d.dtype == .float32, d.nbytes >= FullyConnectedKernel.inPlaceBytes, let r = d.constant else { continue }
      let a = UInt(bitPattern: dataBase + r.lowerBound)
      lo = min(lo, a)
      hi = max(hi, a &+ UInt(d.nbytes))
    }
    self.populating = lo < hi ? ti_shim_populate_read_background(UnsafeRawPointer(bitPattern: lo), Int(hi &- lo)) : nil
    self.passReport = report
    self.packedBytes = pb
    var w = 0
    for t in folding.graph.tensors where t.constant != nil { w += t.nbytes }
    self.weightBytes = w
    self.loadNanoseconds = ti_shim_now_ns() &- t0
  }

  deinit {
    guard parent == nil else { return }  // a view (subgraph) frees nothing: its parent owns the memory
    ti_shim_populate_stop(populating)
    if let (p, n) = prepackMapping { ti_shim_unmap(p, n) }
    for b in foldedData { ti_shim_free(b) }
    ti_shim_free(expanded)
    switch storage {
    case .mapped(let p, let n): ti_shim_unmap(p, n)
    case .owned(let p): ti_shim_free(p)
    case .borrowed: break
    }
  }

  /// Address of a constant tensor's data (read-only: kernels never write it).
  public func constantData(_ t: Int) -> UnsafeMutableRawPointer? {
    if let f = foldedData[t] { return f }
    guard let r = graph.tensors[t].constant, let dataBase else { return nil }
    return UnsafeMutableRawPointer(mutating: dataBase + r.lowerBound)
  }

  // MARK: subgraph views (issue 18; Runtime/Subgraph.swift makes them)

  /// The model the quantizer works on: this file loaded again (borrowing
  /// its bytes: the result must not outlive this model) without the
  /// float-only fusions (Optimizer `floatOnlyFusions`), whose fused ops only
  /// the float32 kernels run; nil when the graph has none of them, or for a
  /// view (`parent` != nil: a reload would give the whole file's graph).
  public func reloadedForQuantizer() throws(TinfError) -> Model? {
    guard parent == nil, graph.nodes.contains(where: { $0.attrs[.preluSlopes] != nil }) else { return nil }
    return try Model.make(
      base: fileBase, size: fileSize, storage: .borrowed, optimize: true, floatOnlyFusions: false, sparse: .auto,
      prepack: nil, t0: ti_shim_now_ns())
  }

  /// The model this one is a view of (`Model.subgraph`), kept alive by it;
  /// nil for a loaded model.
  public private(set) var parent: Model? = nil

  /// A view of `parent` running `graph` (the parent's tensors, ops
  /// `ops` of the parent's in order, other inputs and outputs): it shares
  /// the parent's constants, folded data and packed weights, so its kernels
  /// are the parent's and its results bit for bit the same.
  init(view parent: Model, graph: Graph, ops: [Int], report: [String], t0: UInt64) {
    self.parent = parent
    self.graph = graph
    self.fileSize = parent.fileSize
    self.partSizes = parent.partSizes
    self.foldedBytes = 0
    self.storage = .borrowed
    self.fileBase = parent.fileBase
    self.dataBase = parent.dataBase
    self.expanded = nil
    self.encodedBytes = parent.encodedBytes
    self.foldedData = parent.foldedData
    self.passReport = report
    self.packed = ops.map { parent.packed[$0] }
    self.sparse = ops.map { parent.sparse[$0] }
    // The packed weights are the parent's (its prepack image, if any, stays the parent's).
    self.prepackState = parent.prepackState
    self.prepackNote = parent.prepackNote
    self.prepackedFromImage = 0
    self.packedAtLoad = 0
    self.prepackMapping = nil
    self.populating = nil
    self.graphHash = parent.graphHash
    var pb = 0
    for k in ops { pb += (parent.packed[k]?.bytes ?? 0) + (parent.sparse[k]?.bytes ?? 0) }
    self.packedBytes = pb
    var seen = [Bool](repeating: false, count: graph.tensors.count)
    var w = 0
    for node in graph.nodes {
      for t in node.inputs where t >= 0 && graph.tensors[t].isConstant && !seen[t] {
        seen[t] = true
        w += graph.tensors[t].nbytes
      }
    }
    self.weightBytes = w
    self.loadNanoseconds = ti_shim_now_ns() &- t0
  }

  public var metadata: [(key: String, value: String)] { graph.metadata }
  public var inputs: [TensorDesc] { graph.inputs.map { graph.tensors[$0] } }
  public var outputs: [TensorDesc] { graph.outputs.map { graph.tensors[$0] } }
}
