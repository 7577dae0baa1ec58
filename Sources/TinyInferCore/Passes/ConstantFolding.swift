import TinyInferShims

/// Constant folding at load: an op whose inputs are all constants (stored in
/// the file or folded before it) runs once, with its own kernel, and its
/// outputs become model-owned constants shared by every session. This is
/// where float16 or int8 weights behind a Dequantize become float32 once,
/// instead of on every run. Folding is skipped for ops whose outputs would be
/// much larger than their inputs (Pad, Resize, Gather... could inflate memory),
/// beyond `maxGrowth` times, and stops once the folded bytes reach a budget
/// (`budget`: by default four times the file's data section, at least 1 MiB),
/// so a small hostile file cannot make a load allocate without bound. Folded
/// intermediates that no remaining op or output reads are freed.
enum ConstantFolding {
  static let maxGrowth = 4

  struct Result {
    var graph: Graph
    /// Model-owned buffers of folded tensors (indexed like tensors; nil otherwise).
    var buffers: [UnsafeMutableRawPointer?]
    /// One line per folded op ("fold constant Dequantize -> w1"), the start of Model.passReport.
    var report: [String]
  }

  static func run(_ g: Graph, budget: Int, constantData: (Int) -> UnsafeMutableRawPointer?) throws(TinfError) -> Result {
    var spent = 0
    var tensors = g.tensors
    var buffers = [UnsafeMutableRawPointer?](repeating: nil, count: tensors.count)
    var kept: [Node] = []
    var report: [String] = []
    let pool = ThreadPool(threads: 1)
    func data(_ t: Int) -> UnsafeMutableRawPointer? { buffers[t] ?? constantData(t) }
    func freeAll() { for b in buffers { ti_shim_free(b) } }

    for (k, node) in g.nodes.enumerated() {
      let present = node.inputs.filter { $0 >= 0 }
      // Range takes no inputs: its output is a constant too. Stateful and
      // control-flow ops are never folded.
      let allConst = (present.isEmpty ? node.op == .range : present.allSatisfy { tensors[$0].isConstant })
        && node.op.traits.state == .none && !node.op.traits.subgraphs
      var inBytes = 0
      for t in present { inBytes += tensors[t].nbytes }
      var outBytes = 0
      for t in node.outputs { outBytes += tensors[t].nbytes }
      guard allConst, outBytes <= max(inBytes &* maxGrowth, 1 << 16), spent &+ outBytes <= budget else {
        kept.append(node)
        continue
      }
      var outPtrs: [UnsafeMutableRawPointer] = []
      for t in node.outputs {
        guard let p = ti_shim_alloc(max(tensors[t].nbytes, 1)) else {
          freeAll()
          for q in outPtrs { ti_shim_free(q) }
          throw TinfError(.outOfMemory, "constant folding: cannot allocate \(tensors[t].nbytes) bytes")
        }
        outPtrs.append(p)
      }
      let ctx = KernelContext(
        node: node,
        inputs: node.inputs.map { $0 >= 0 ? tensors[$0] : nil },
        outputs: node.outputs.map { tensors[$0] },
        inputData: node.inputs.map { $0 >= 0 ? data($0) : nil },
        outputData: outPtrs,
        pool: pool)
      do throws(TinfError) {
        let kernel = try Registry.bind(ctx)
        try kernel()
      } catch {
        freeAll()
        for q in outPtrs { ti_shim_free(q) }
        throw error.prefixed("op \(k) (\(node.op.name)) while folding constants")
      }
      for (j, t) in node.outputs.enumerated() {
        buffers[t] = outPtrs[j]
        tensors[t].folded = true
      }
      if node.op == .dequantize, let src = present.first, tensors[src].dtype == .int8 || tensors[src].dtype == .uint8,
        tensors[src].quant != nil
      {
        tensors[node.outputs[0]].dequantizedFrom = src
      }
      spent &+= outBytes
      report.append("fold constant \(node.op.name) -> \(tensors[node.outputs[0]].name)")
    }
    // Free folded tensors that nothing reads any more.
    var used = [Bool](repeating: false, count: tensors.count)
    for n in kept { for t in n.inputs where t >= 0 { used[t] = true } }
    for t in g.outputs { used[t] = true }
    for t in tensors.indices where buffers[t] != nil && !used[t] {
      ti_shim_free(buffers[t])
      buffers[t] = nil
    }
    if !report.isEmpty {
      var keptBytes = 0
      for t in tensors.indices where buffers[t] != nil { keptBytes &+= tensors[t].nbytes }
      let ops = report.count
      report.append(
        "fold constants: \(ops) op\(ops == 1 ? "" : "s") computed once at load instead of every run "
          + "(\(keptBytes) bytes kept)")
    }
    return Result(graph: Graph(rewriting: g, tensors: tensors, nodes: kept), buffers: buffers, report: report)
  }
}
