/// Assigns every computed tensor an offset in one arena by lifetime.
///
/// A tensor lives from the op that produces it to the last op that reads it.
/// Graph inputs live for the whole run (a run never overwrites them) and
/// graph outputs until the end. When an op allows it (`OpTraits.inPlace`)
/// and its input 0 dies at that op with the same byte size, the output takes
/// over the input's buffer. Buffers are then placed greedily, largest first,
/// at the lowest 64-byte aligned offset that no buffer alive at the same time
/// occupies (the TFLite Micro greedy planner).
public struct MemoryPlan: Sendable {
  /// Offset of each tensor in the arena, nil for constants and unused tensors.
  public var offsets: [Int?]
  /// Arena bytes.
  public var size: Int
  /// What the arena would take without any reuse.
  public var unplannedSize: Int
  /// For each tensor, its buffer's lifetime [first, last] in op indices, for
  /// checks (nil where no offset).
  public var lifetimes: [ClosedRange<Int>?]
  /// Memory analysis (tinf_session_plan_entry): for each tensor, the index
  /// of its buffer (-1 where no offset; a tensor an op computes in place
  /// shares its input's buffer), and its own lifetime [first, last] in op
  /// indices (graph inputs from 0, graph inputs and outputs to the op count).
  public var buffers: [Int] = []
  public var tensorLifetimes: [ClosedRange<Int>?] = []
}

public enum MemoryPlanner {
  public static let alignment = 64

  /// `pinned`: tensors that live for the whole run like graph inputs (the
  /// outputs of ops a session hoists, Runtime/Hoisting.swift).
  public static func plan(_ g: Graph, pinned: [Int] = []) throws(TinfError) -> MemoryPlan {
    let n = g.tensors.count
    let end = g.nodes.count
    var first = [Int](repeating: Int.max, count: n)
    var last = [Int](repeating: -1, count: n)
    var isInput = [Bool](repeating: false, count: n)
    for t in g.inputs {
      isInput[t] = true
      first[t] = 0
      last[t] = end
    }
    for (k, node) in g.nodes.enumerated() {
      for t in node.outputs {
        first[t] = min(first[t], k)
        last[t] = max(last[t], k)
      }
      for t in node.inputs where t >= 0 && !g.tensors[t].isConstant {
        last[t] = max(last[t], k)
      }
    }
    for t in g.outputs where !g.tensors[t].isConstant { last[t] = end }
    for t in pinned where t >= 0 && t < n && first[t] != Int.max {
      first[t] = 0
      last[t] = end
    }

    // Buffers: one per arena tensor, merged for in-place ops.
    var bufferOf = [Int](repeating: -1, count: n)
    var bufSize: [Int] = []
    var bufFirst: [Int] = []
    var bufLast: [Int] = []
    var unplanned = 0
    func aligned(_ x: Int) -> Int { (x + alignment - 1) / alignment * alignment }
    func newBuffer(_ t: Int) -> Int {
      bufSize.append(aligned(g.tensors[t].nbytes))
      bufFirst.append(first[t])
      bufLast.append(last[t])
      unplanned += aligned(g.tensors[t].nbytes)
      return bufSize.count - 1
    }
    for t in g.inputs { bufferOf[t] = newBuffer(t) }
    for (k, node) in g.nodes.enumerated() {
      for (j, t) in node.outputs.enumerated() {
        if j == 0, node.op.traits.inPlace, let x = node.inputs.first, x >= 0,
          !g.tensors[x].isConstant, !isInput[x], bufferOf[x] >= 0, last[x] == k,
          g.tensors[x].nbytes == g.tensors[t].nbytes
        {
          let b = bufferOf[x]
          bufferOf[t] = b
          bufLast[b] = max(bufLast[b], last[t])
          unplanned += aligned(g.tensors[t].nbytes)
        } else {
          bufferOf[t] = newBuffer(t)
        }
      }
    }

    // Greedy placement, largest first (ties: earlier first), into the lowest gap.
    let order = bufSize.indices.sorted { a, b in
      bufSize[a] != bufSize[b] ? bufSize[a] > bufSize[b] : bufFirst[a] < bufFirst[b]
    }
    var offset = [Int](repeating: 0, count: bufSize.count)
    var placed: [Int] = []
    var total = 0
    for b in order {
      var busy: [(Int, Int)] = []
      for p in placed where bufFirst[p] <= bufLast[b] && bufFirst[b] <= bufLast[p] {
        busy.append((offset[p], offset[p] + bufSize[p]))
      }
      busy.sort { $0.0 < $1.0 }
      var candidate = 0
      for (lo, hi) in busy {
        if candidate + bufSize[b] <= lo { break }
        candidate = max(candidate, hi)
      }
      offset[b] = candidate
      guard let top = checkedAdd(candidate, bufSize[b]) else { throw TinfError(.outOfMemory, "arena size overflows") }
      total = max(total, top)
      placed.append(b)
    }

    var offsets = [Int?](repeating: nil, count: n)
    var lifetimes = [ClosedRange<Int>?](repeating: nil, count: n)
    for t in 0..<n where bufferOf[t] >= 0 {
      let b = bufferOf[t]
      offsets[t] = offset[b]
      lifetimes[t] = bufFirst[b]...bufLast[b]
    }
    var result = MemoryPlan(offsets: offsets, size: total, unplannedSize: unplanned, lifetimes: lifetimes)
    result.buffers = bufferOf
    result.tensorLifetimes = (0..<n).map { t in bufferOf[t] >= 0 ? first[t]...max(first[t], last[t]) : nil }
    return result
  }
}
