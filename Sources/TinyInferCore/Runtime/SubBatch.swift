import TinyInferShims

/// Sub-batches through the large first layers (docs/batching.md): a session
/// runs one op over the whole batch before the next, so once an op's batched
/// input and output outgrow the cache every op reads its input from memory
/// where batch 1 found it in cache (MobileNetV2 at batch 16: 64x64x48
/// activations of 12 MB). When a batch's first ops have such activations,
/// the session runs those ops a few images at a time (a sub-batch whose
/// activations stay in cache) through all of them, in an arena of their own
/// planned at the sub-batch size, then copies the sub-batch's rows of the
/// tensors the later ops read into the main arena; the later ops run over
/// the whole batch as before (where the batch gains: a FullyConnected's
/// weights read once for all rows).
///
/// Only ops whose every image is computed from that image alone (the
/// batch is dimension 0 of all their tensors) are run this way: Conv2D and
/// DepthwiseConv2D with constant weights, pools, same-shape elementwise
/// Add / Sub / Mul / Maximum / Minimum, and the activations. Each output
/// element is the same computation whatever the batch, so results match the
/// whole-batch run.
final class SubBatchPrefix {
  /// Ops 0..<count run per sub-batch.
  let count: Int
  /// Images per sub-batch (divides the batch).
  let items: Int
  let batch: Int
  /// The prefix's kernels bound on `arena` at `items` images.
  private let kernels: [BoundKernel]
  private let arena: UnsafeMutableRawPointer
  /// Graph inputs: main arena -> sub arena (bytes per image).
  private let copyIn: [(UnsafeMutableRawPointer, UnsafeMutableRawPointer, Int)]
  /// Tensors the later ops (or the outputs) read: sub arena -> main arena.
  private let copyOut: [(UnsafeMutableRawPointer, UnsafeMutableRawPointer, Int)]

  /// Activations of one op (input plus output, whole batch) from which the
  /// batch is split, and the bytes a sub-batch's largest op may touch.
  static let splitFrom = 4 << 20
  static let subBatchBytes = 2 << 20

  private init(
    count: Int, items: Int, batch: Int, kernels: [BoundKernel], arena: UnsafeMutableRawPointer,
    copyIn: [(UnsafeMutableRawPointer, UnsafeMutableRawPointer, Int)],
    copyOut: [(UnsafeMutableRawPointer, UnsafeMutableRawPointer, Int)]
  ) {
    self.count = count
    self.items = items
    self.batch = batch
    self.kernels = kernels
    self.arena = arena
    self.copyIn = copyIn
    self.copyOut = copyOut
  }

  deinit { ti_shim_free(arena) }

  /// Whether op `node` computes each image from that image alone in graph
  /// `g` (batch `n` = dimension 0 of every non-constant tensor it touches).
  static func perImage(_ node: Node, _ g: Graph, _ n: Int) -> Bool {
    let op = node.op
    let weighted = op == .conv2D || op == .depthwiseConv2D
    let elementwise = op == .add || op == .sub || op == .mul || op == .maximum || op == .minimum
    let unary =
      op == .relu || op == .relu6 || op == .leakyRelu || op == .hardSwish || op == .logistic || op == .tanh
      || op == .maxPool2D || op == .averagePool2D
    guard weighted || elementwise || unary else { return false }
    guard node.outputs.count == 1, node.inputs.count >= 1, node.inputs[0] >= 0 else { return false }
    let y = g.tensors[node.outputs[0]]
    guard y.shape.count == 4, y.shape[0] == n else { return false }
    for (i, t) in node.inputs.enumerated() {
      if t < 0 { continue }
      let d = g.tensors[t]
      if i == 0 || elementwise {
        guard !d.isConstant, d.shape.count == 4, d.shape[0] == n else { return false }
        if elementwise { guard d.shape == y.shape else { return false } }
      } else {
        // weights, bias, a PReLU slope: constants
        guard d.isConstant else { return false }
      }
    }
    return !unary || node.inputs.count == 1
  }

  /// The prefix to run by sub-batches for graph `g` as bound with
  /// `pointers` (nil: none worth it or possible).
  static func make(
    model: Model, graph g: Graph, pointers: [UnsafeMutableRawPointer?], pool: ThreadPool
  ) throws(TinfError) -> SubBatchPrefix? {
    guard !g.inputs.isEmpty else { return nil }
    let n = g.tensors[g.inputs[0]].shape.first ?? 0
    guard n > 1 else { return nil }
    for t in g.inputs {
      guard g.tensors[t].shape.count == 4, g.tensors[t].shape[0] == n else { return nil }
    }
    // The longest run of per-image ops from the start; the prefix ends
    // after the last of them whose batch activations outgrow the cache.
    var count = 0
    var largest = 0
    var k = 0
    while k < g.nodes.count && perImage(g.nodes[k], g, n) {
      let node = g.nodes[k]
      let bytes = g.tensors[node.inputs[0]].nbytes &+ g.tensors[node.outputs[0]].nbytes
      if bytes >= splitFrom {
        count = k &+ 1
      }
      largest = max(largest, bytes)
      k &+= 1
    }
    guard count > 0 else { return nil }
    // The most images whose largest op fits subBatchBytes, dividing n.
    let perImageBytes = max(1, largest / n)
    var items = max(1, min(n, subBatchBytes / perImageBytes))
    while n % items != 0 { items &-= 1 }
    guard items < n else { return nil }
    var shapes = [[Int]]()
    for t in g.inputs {
      var s = g.tensors[t].shape
      s[0] = items
      shapes.append(s)
    }
    let sub = try g.withInputShapes(shapes)
    let plan = try MemoryPlanner.plan(sub)
    guard plan.size > 0, let arena = ti_shim_alloc(plan.size) else { return nil }
    var ptrs = [UnsafeMutableRawPointer?](repeating: nil, count: sub.tensors.count)
    for t in 0..<sub.tensors.count {
      if sub.tensors[t].isConstant {
        ptrs[t] = model.constantData(t)
      } else if let off = plan.offsets[t] {
        ptrs[t] = arena + off
      }
    }
    let kernels: [BoundKernel]
    do throws(TinfError) {
      kernels = try Session.bindKernels(model, sub, 0..<count, ptrs, pool)
    } catch {
      ti_shim_free(arena)
      throw error
    }
    var copyIn: [(UnsafeMutableRawPointer, UnsafeMutableRawPointer, Int)] = []
    for t in g.inputs {
      guard let src = pointers[t], let dst = ptrs[t] else {
        ti_shim_free(arena)
        return nil
      }
      copyIn.append((src, dst, g.tensors[t].nbytes / n))
    }
    // Tensors made by the prefix and read after it (or graph outputs).
    var made = [Bool](repeating: false, count: g.tensors.count)
    for k in 0..<count { for t in g.nodes[k].outputs { made[t] = true } }
    var needed = [Bool](repeating: false, count: g.tensors.count)
    for k in count..<g.nodes.count { for t in g.nodes[k].inputs where t >= 0 { needed[t] = true } }
    for t in g.outputs { needed[t] = true }
    var copyOut: [(UnsafeMutableRawPointer, UnsafeMutableRawPointer, Int)] = []
    for t in 0..<g.tensors.count where made[t] && needed[t] {
      guard let src = ptrs[t], let dst = pointers[t] else {
        ti_shim_free(arena)
        return nil
      }
      copyOut.append((src, dst, g.tensors[t].nbytes / n))
    }
    return SubBatchPrefix(
      count: count, items: items, batch: n, kernels: kernels, arena: arena, copyIn: copyIn, copyOut: copyOut)
  }

  /// Each prefix op's time summed over the sub-batches of the last
  /// `run(profile: true)`, in nanoseconds.
  private(set) var opNanoseconds: [UInt64] = []

  /// Runs the prefix over the whole batch, sub-batch by sub-batch.
  func run(profile: Bool) throws(TinfError) {
    if profile { opNanoseconds = [UInt64](repeating: 0, count: count) }
    var first = 0
    while first < batch {
      for (src, dst, per) in copyIn {
        dst.copyMemory(from: src + first &* per, byteCount: items &* per)
      }
      if profile {
        for k in 0..<count {
          let t0 = ti_shim_now_ns()
          try kernels[k].run()
          opNanoseconds[k] &+= ti_shim_now_ns() &- t0
        }
      } else {
        let ks = kernels  // one retain of the array, not one per op (Session.runAll)
        for k in 0..<count { try ks[k].run() }
      }
      for (src, dst, per) in copyOut {
        (dst + first &* per).copyMemory(from: src, byteCount: items &* per)
      }
      first &+= items
    }
  }
}
