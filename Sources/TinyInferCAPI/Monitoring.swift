// The C API for monitoring and memory analysis (issue 19): the model's memory
// by part, the session's arena plan per tensor (the arena timeline of
// `inspect --memory`), and the per-run time log tinyinfer.Monitor attaches.

import CTinyInfer
import TinyInferCore
import TinyInferShims

@c @implementation
public func tinf_model_memory(
  _ model: OpaquePointer?, _ file: UnsafeMutablePointer<Int>?, _ weights: UnsafeMutablePointer<Int>?,
  _ folded: UnsafeMutablePointer<Int>?, _ packed: UnsafeMutablePointer<Int>?
) -> tinf_status {
  guard let m = modelHandle(model) else { return nullArg("tinf_model_memory") }
  file?.pointee = m.model.fileSize
  weights?.pointee = m.model.weightBytes
  folded?.pointee = m.model.foldedBytes
  packed?.pointee = m.model.packedBytes
  return ok()
}

@c @implementation
public func tinf_session_plan_entry(
  _ session: OpaquePointer?, _ tensor: Int32, _ out: UnsafeMutablePointer<tinf_plan_entry>?
) -> tinf_status {
  guard let s = sessionHandle(session), let out else { return nullArg("tinf_session_plan_entry") }
  let plan = s.session.plan
  let n = s.session.graph.tensors.count
  guard tensor >= 0 && Int(tensor) < n else {
    return fail(.invalidArgument, "tinf_session_plan_entry: tensor \(tensor) out of range 0..<\(n)")
  }
  let t = Int(tensor)
  var e = tinf_plan_entry()
  e.buffer = -1
  if t < plan.buffers.count, plan.buffers[t] >= 0, let offset = plan.offsets[t], let life = plan.tensorLifetimes[t] {
    let bytes = s.session.graph.tensors[t].nbytes
    let a = MemoryPlanner.alignment
    e.buffer = Int32(truncatingIfNeeded: plan.buffers[t])
    e.first_op = Int32(truncatingIfNeeded: life.lowerBound)
    e.last_op = Int32(truncatingIfNeeded: life.upperBound)
    e.offset = offset
    e.nbytes = bytes
    e.buffer_bytes = bytes / a * a + (bytes % a == 0 ? 0 : a)
  }
  out.pointee = e
  return ok()
}

@c @implementation
public func tinf_session_set_run_log(
  _ session: OpaquePointer?, _ log: UnsafeMutablePointer<UInt64>?, _ capacity: Int64, _ flags: UInt32
) -> tinf_status {
  guard let s = sessionHandle(session) else { return nullArg("tinf_session_set_run_log") }
  s.session.runLogSkip = 0
  guard let log else {
    s.session.runLog = nil
    s.session.runLogCapacity = 1
    return ok()
  }
  guard capacity >= 1 && capacity < Int64(Int.max / 8) - 2 else {
    return fail(.invalidArgument, "tinf_session_set_run_log: capacity must be >= 1 and fit in memory, got \(capacity)")
  }
  guard flags & ~UInt32(TINF_RUN_LOG_EVERY_RUN.rawValue) == 0 else {
    return fail(.invalidArgument, "tinf_session_set_run_log: unknown flags \(flags)")
  }
  s.session.runLogCapacity = Int(capacity)
  s.session.runLogEveryRun = flags & UInt32(TINF_RUN_LOG_EVERY_RUN.rawValue) != 0
  s.session.runLog = log
  return ok()
}
