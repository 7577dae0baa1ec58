// The C API of batch planning (include/tinyinfer.h, section "batch planning",
// issue 17): the bytes a batch size needs, from the planner without
// allocating, and the batch size to use under a memory budget.

import CTinyInfer
import TinyInferCore
import TinyInferShims

/// The input shapes of a session running `batch` items at once: the
/// options' shapes (or the file's) with the first dimension set to `batch`.
private func batchShapes(_ model: Model, _ options: SessionOptions, _ batch: Int) throws(TinfError) -> [[Int]] {
  var shapes: [[Int]] = []
  for (i, t) in model.inputs.enumerated() {
    var s = options.inputShapes[i] ?? t.shape
    guard !s.isEmpty else {
      throw TinfError(.shape, "input '\(t.name)' is a scalar: it has no batch (first) dimension")
    }
    s[0] = batch
    shapes.append(s)
  }
  return shapes
}

/// Bytes the model holds in memory whatever the batch: its constants (used
/// in place from the file), the tensors folded at load and the packed weights.
private func modelBytes(_ model: Model) -> Int {
  model.weightBytes &+ model.foldedBytes &+ model.packedBytes
}

/// The arena a session at `batch` needs, planned on the re-inferred graph.
private func arenaBytes(_ model: Model, _ options: SessionOptions, _ batch: Int) throws(TinfError) -> Int {
  let g = try model.graph.withInputShapes(try batchShapes(model, options, batch))
  return try MemoryPlanner.planSession(g).size
}

/// arena + model + batch * item, or nil on overflow.
private func totalBytes(_ arena: Int, _ model: Int, _ batch: Int, _ item: Int) -> Int? {
  let (items, o1) = batch.multipliedReportingOverflow(by: item)
  let (a, o2) = arena.addingReportingOverflow(model)
  let (t, o3) = a.addingReportingOverflow(items)
  return o1 || o2 || o3 ? nil : t
}

/// Best-of-runs items per second of a session at `batch`, running for about
/// `ms` milliseconds after one warm-up run (at least one timed run).
private func measure(_ model: Model, _ options: SessionOptions, _ batch: Int, _ ms: UInt64) throws(TinfError) -> Double {
  var o = options
  let shapes = try batchShapes(model, options, batch)
  for (i, s) in shapes.enumerated() { o.inputShapes[i] = s }
  let s = try Session.create(model: model, options: o)
  try s.run()
  let start = ti_shim_now_ns()
  var best = UInt64.max
  repeat {
    let t0 = ti_shim_now_ns()
    try s.run()
    best = min(best, max(ti_shim_now_ns() &- t0, 1))
  } while ti_shim_now_ns() &- start < ms &* 1_000_000
  return Double(batch) * 1e9 / Double(best)
}

@c @implementation
public func tinf_model_batch_bytes(
  _ model: OpaquePointer?, _ options: OpaquePointer?, _ batch: Int64, _ outArena: UnsafeMutablePointer<Int>?,
  _ outModel: UnsafeMutablePointer<Int>?
) -> tinf_status {
  guard let m = modelHandle(model) else { return nullArg("tinf_model_batch_bytes") }
  guard batch >= 1 && batch <= 1 << 30 else { return fail(.invalidArgument, "batch must be 1...2^30, got \(batch)") }
  let opts = optionsHandle(options)?.options ?? SessionOptions()
  return status { () throws(TinfError) in
    let arena = try arenaBytes(m.model, opts, Int(batch))
    outArena?.pointee = arena
    outModel?.pointee = modelBytes(m.model)
  }
}

@c @implementation
public func tinf_model_batch_plan(
  _ model: OpaquePointer?, _ options: OpaquePointer?, _ budget: Int, _ itemBytes: Int, _ batchLimit: Int64,
  _ measureMs: UInt32, _ overheadNs: UInt32, _ capacity: Int32, _ outBatches: UnsafeMutablePointer<Int64>?,
  _ outBytes: UnsafeMutablePointer<Int>?, _ outItemsPerSecond: UnsafeMutablePointer<Double>?,
  _ outCount: UnsafeMutablePointer<Int32>?, _ outBest: UnsafeMutablePointer<Int32>?
) -> tinf_status {
  guard let m = modelHandle(model), let outBatches, let outBytes, let outItemsPerSecond, let outCount, let outBest
  else { return nullArg("tinf_model_batch_plan") }
  guard capacity >= 1 else { return fail(.invalidArgument, "capacity must be >= 1, got \(capacity)") }
  guard budget >= 0 && itemBytes >= 0 else { return fail(.invalidArgument, "budget and item bytes must be >= 0") }
  guard batchLimit >= 0 && batchLimit <= 1 << 30 else {
    return fail(.invalidArgument, "batch_limit must be 0 (2^30) ... 2^30, got \(batchLimit)")
  }
  outCount.pointee = 0
  outBest.pointee = -1
  let opts = optionsHandle(options)?.options ?? SessionOptions()
  guard opts.threads >= 0 && opts.threads <= 256 else { return fail(.invalidArgument, "threads must be 0...256") }
  let limit = batchLimit == 0 ? 1 << 30 : Int(batchLimit)
  let resident = modelBytes(m.model)
  do throws(TinfError) {
    // Bytes at `b`, or nil when the graph cannot take a batch of b (b > 1).
    func need(_ b: Int) throws(TinfError) -> Int? {
      let arena: Int
      do throws(TinfError) {
        arena = try arenaBytes(m.model, opts, b)
      } catch {
        if b == 1 || error.status != .shape && error.status != .unsupportedOp { throw error }
        return nil
      }
      return totalBytes(arena, resident, b, itemBytes) ?? Int.max
    }
    guard let one = try need(1) else { return fail(.internal, "batch 1 did not plan") }
    guard one <= budget else {
      outBatches[0] = 1
      outBytes[0] = one
      return fail(.outOfMemory,
        "a memory budget of \(budget) bytes is below what batch 1 needs: \(one) bytes "
          + "(model \(resident) + arena \(one &- resident &- itemBytes) + per item \(itemBytes))")
    }
    // The largest batch that fits: doubling, then bisection (bytes grow with the batch).
    var lo = 1
    var loBytes = one
    var hi = 0  // 0: no batch known not to fit yet
    while hi == 0 && lo < limit {
      let b = min(lo &* 2, limit)
      if let n = try need(b), n <= budget { lo = b; loBytes = n } else { hi = b }
    }
    while hi != 0 && hi - lo > 1 {
      let mid = lo + (hi - lo) / 2
      if let n = try need(mid), n <= budget { lo = mid; loBytes = n } else { hi = mid }
    }
    // Candidates: powers of two below the largest, and the largest; the
    // `capacity` largest of them.
    var sizes: [Int] = []
    var p = 1
    while p < lo { sizes.append(p); p &*= 2 }
    sizes.append(lo)
    if sizes.count > Int(capacity) { sizes.removeFirst(sizes.count - Int(capacity)) }
    var bytes: [Int] = []
    for b in sizes { bytes.append(b == lo ? loBytes : try need(b) ?? Int.max) }
    var rates = [Double](repeating: 0, count: sizes.count)
    if measureMs > 0 {
      let share = max(UInt64(measureMs) / UInt64(sizes.count), 1)
      for (i, b) in sizes.enumerated() {
        // items per second counting the caller's per-batch cost with each run
        let r = try measure(m.model, opts, b, share)
        rates[i] = Double(b) / (Double(b) / r + Double(overheadNs) * 1e-9)
      }
    }
    // Best: the highest rate; the smallest batch within 5% of it (less memory
    // and latency for a difference within the noise). Unmeasured: the largest.
    var best = sizes.count - 1
    if measureMs > 0 {
      let top = rates.max() ?? 0
      best = rates.firstIndex { $0 >= 0.95 * top } ?? best
    }
    for i in 0..<sizes.count {
      outBatches[i] = Int64(sizes[i])
      outBytes[i] = bytes[i]
      outItemsPerSecond[i] = rates[i]
    }
    outCount.pointee = Int32(sizes.count)
    outBest.pointee = Int32(best)
    return ok()
  } catch {
    return fail(error)
  }
}
