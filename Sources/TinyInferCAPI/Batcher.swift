// The C API of the micro-batching queue (include/tinyinfer.h, section
// "micro-batching queue", issue 17). Callers wait in the library, not in
// their language: tinf_batcher_run queues a request and sleeps on its own
// condition variable; worker threads (each with its own sessions, one per
// batch size) gather queued requests into one batch, run it, copy each
// request's rows out and wake its caller. tinf_batcher_submit queues without
// waiting; tinf_batcher_completed hands back finished submissions in groups
// (one wake-up per batch for an event loop, not one per request).
//
// Locks: `mu` (the batcher's) guards the queue, the counters and the
// completions; each request's own `mu` guards its `done` flag. A thread
// holding `mu` may take a request's lock, never the other way round.

import CTinyInfer
import TinyInferCore
import TinyInferShims

/// One queued request. Kept on a free list and reused (its lock and condition
/// variable are made once), so a request allocates nothing once the list
/// has grown to the number of concurrent callers.
final class BatchRequest {
  let mu: OpaquePointer
  let cond: OpaquePointer
  let inputs: UnsafeMutablePointer<UnsafeRawPointer?>
  let outputs: UnsafeMutablePointer<UnsafeMutableRawPointer?>
  var rows = 0
  var status: Status = .ok
  var message = ""
  /// Set (under `mu`) when the request is answered.
  var done = false
  /// Still in the queue (under the batcher's lock): a timed-out caller may withdraw it.
  var queued = false
  /// A submission (tinf_batcher_submit): answered through the completions.
  var isAsync = false
  var tag: UInt64 = 0
  /// When it was queued (ti_shim_now_ns).
  var arrival: UInt64 = 0

  private init(mu: OpaquePointer, cond: OpaquePointer, nIn: Int, nOut: Int) {
    self.mu = mu
    self.cond = cond
    inputs = .allocate(capacity: max(nIn, 1))
    outputs = .allocate(capacity: max(nOut, 1))
  }

  static func make(nIn: Int, nOut: Int) -> BatchRequest? {
    guard let m = ti_shim_mutex_create() else { return nil }
    guard let c = ti_shim_cond_create() else {
      ti_shim_mutex_destroy(m)
      return nil
    }
    return BatchRequest(mu: m, cond: c, nIn: nIn, nOut: nOut)
  }

  deinit {
    ti_shim_cond_destroy(cond)
    ti_shim_mutex_destroy(mu)
    inputs.deallocate()
    outputs.deallocate()
  }

  func fail(_ s: Status, _ m: String) {
    status = s
    message = m
  }
}

/// A finished submission waiting for tinf_batcher_completed.
struct BatchCompletion {
  let tag: UInt64
  let status: Status
  let message: String
}

/// One worker's sessions, by size slot (the sizes are powers of two below
/// max_batch, and max_batch).
final class BatchWorker {
  unowned(unsafe) let batcher: BatcherHandle
  var sessions: [Session?]
  var thread: OpaquePointer? = nil
  /// Borrowed by a caller running its request on its own thread (under the batcher's lock).
  var claimed = false
  init(_ b: BatcherHandle, first: Session?) {
    batcher = b
    sessions = [Session?](repeating: nil, count: b.sizes.count)
    sessions[b.sizes.count - 1] = first
  }
}

final class BatcherHandle {
  let model: ModelHandle
  let maxBatch: Int
  let maxDelayNs: UInt64
  let threads: Int
  let workerCount: Int
  /// Session sizes, ascending; slotFor[r] is the slot of the smallest size >= r rows.
  let sizes: [Int]
  let slotFor: [Int]
  /// Bytes of one row (item) of each input and output.
  let inItem: [Int]
  let outItem: [Int]
  let inShapes: [[Int]]  // each input's shape without its first dimension

  let mu: OpaquePointer
  /// Workers wait here for requests (and for more while gathering).
  let work: OpaquePointer
  /// tinf_batcher_completed waits here; so do close (for the queue to drain) and free (for callers to leave).
  let changed: OpaquePointer
  /// Serializes tinf_batcher_close calls (the joins).
  let closeMu: OpaquePointer

  var queue: [BatchRequest] = []
  var head = 0
  var queuedRows = 0
  var free: [BatchRequest] = []
  var completions: [BatchCompletion] = []
  var workers: [BatchWorker] = []
  /// Workers neither running a batch nor borrowed: a caller that finds the
  /// queue empty borrows one and runs its request at once on its own thread
  /// (no hand-over to a worker and back), as an unbatched run would.
  var idle: [BatchWorker] = []
  /// Requests being run that way.
  var solo = 0
  var joined = false
  var closed = false
  /// Requests in batches being run.
  var running = 0
  /// Callers inside tinf_batcher_run, and submissions not yet answered.
  var callersInside = 0
  /// Threads inside tinf_batcher_completed.
  var completedInside = 0
  var outstandingAsync = 0
  /// Most requests in flight (queued or running) since the last batch was
  /// taken, and the same for the last few batches: how many a gathering
  /// worker may expect.
  var peak = 0
  var peaks = [Int](repeating: 0, count: 8)
  var peakAt = 0
  // counters (tinf_batcher_stats)
  var requests: UInt64 = 0
  var rowsRun: UInt64 = 0
  var batches: UInt64 = 0
  var failed: UInt64 = 0
  var isolated: UInt64 = 0
  /// Callers wait for one lock to run (an interpreter's, such as Python's
  /// GIL): their answered requests wait in `ready` and their callers are
  /// woken one at a time, each when the previous one comes back into
  /// tinf_batcher_run (so it has let the lock go) or after `turnNs`; 0: off
  /// (tinf_batcher_set_turn).
  var turnNs: UInt64 = 0
  var ready: [BatchRequest] = []
  var readyHead = 0
  /// A caller woken through `ready` has not come back yet (since `turnSince`).
  var turnHeld = false
  var turnSince: UInt64 = 0
  /// Written (a uint64 1) when completions go from none to some; -1: none (tinf_batcher_set_notify_fd).
  var notifyFd: Int32 = -1

  init(
    model: ModelHandle, maxBatch: Int, maxDelayNs: UInt64, threads: Int, workerCount: Int, sizes: [Int], inItem: [Int], outItem: [Int],
    inShapes: [[Int]], mu: OpaquePointer, work: OpaquePointer, changed: OpaquePointer, closeMu: OpaquePointer
  ) {
    self.model = model
    self.maxBatch = maxBatch
    self.maxDelayNs = maxDelayNs
    self.threads = threads
    self.workerCount = workerCount
    self.sizes = sizes
    var slot = [Int](repeating: 0, count: maxBatch + 1)
    var s = 0
    for r in 1...maxBatch {
      while sizes[s] < r { s += 1 }
      slot[r] = s
    }
    slotFor = slot
    self.inItem = inItem
    self.outItem = outItem
    self.inShapes = inShapes
    self.mu = mu
    self.work = work
    self.changed = changed
    self.closeMu = closeMu
  }

  deinit {
    ti_shim_cond_destroy(work)
    ti_shim_cond_destroy(changed)
    ti_shim_mutex_destroy(mu)
    ti_shim_mutex_destroy(closeMu)
  }

  var queuedCount: Int { queue.count - head }
  var readyCount: Int { ready.count - readyHead }

  /// Requests a gathering worker waits for: the recent peak in flight shared
  /// among the workers (so that their batches overlap rather than take
  /// turns), at most max_batch (under mu).
  var target: Int {
    min(maxBatch, max(1, (recentPeak + workerCount - 1) / workerCount))
  }

  /// The most requests in flight at once (queued, running, run by their
  /// callers) over the last few batches and since: how many a gathering
  /// worker may expect (under mu).
  var recentPeak: Int {
    var m = peak
    for p in peaks { m = max(m, p) }
    return m
  }

  /// A session of `sizes[slot]` rows with the batcher's threads.
  func makeSession(_ slot: Int) throws(TinfError) -> Session {
    var o = SessionOptions(threads: threads)
    for (i, s) in inShapes.enumerated() { o.inputShapes[i] = [sizes[slot]] + s }
    return try Session.create(model: model.model, options: o)
  }

  // MARK: callers

  /// Queues `r` (under mu), counting it in flight; true when a worker
  /// must be woken (the caller broadcasts `work` after unlocking, so the
  /// woken worker does not wait for the lock it holds).
  func enqueue(_ r: BatchRequest) -> Bool {
    r.arrival = ti_shim_now_ns()
    r.queued = true
    queue.append(r)
    queuedRows += r.rows
    requests &+= 1
    peak = max(peak, inFlight)
    // A worker needs waking for the first queued request (an idle one
    // waits for it) and when the ones gathering have what they wait for;
    // in between, a gathering worker's wait ends at its deadline anyway.
    // (One wake-up a request cost more than the batch saved, from asyncio.)
    return queuedCount == 1 || queuedRows >= maxBatch || queuedCount >= target
      || queuedCount >= recentPeak - running - solo
  }

  /// Requests queued, running, or answered and waiting for their turn (under mu).
  var inFlight: Int { queuedCount + running + solo + readyCount }

  /// Wakes the caller of `r`, answered (under r.mu, taken here).
  func wake(_ r: BatchRequest) {
    ti_shim_mutex_lock(r.mu)
    r.done = true
    ti_shim_cond_signal(r.cond)
    ti_shim_mutex_unlock(r.mu)
  }

  /// Ends the turn of the caller last woken and wakes the next answered one
  /// (under mu): called when a caller comes back into tinf_batcher_run, and
  /// by the workers when a turn has lasted turnNs (then every answered caller
  /// is woken: the one holding the turn is doing something else).
  func passTurn(all: Bool = false) {
    turnHeld = false
    while readyHead < ready.count {
      let r = ready[readyHead]
      readyHead += 1
      wake(r)
      if !all {
        turnHeld = true
        turnSince = ti_shim_now_ns()
        break
      }
    }
    if readyHead == ready.count {
      ready.removeAll(keepingCapacity: true)
      readyHead = 0
    }
  }

  /// When the current turn has lasted turnNs: wakes every answered caller (under mu).
  func expireTurn() {
    if turnHeld && readyCount > 0 && ti_shim_now_ns() &- turnSince >= turnNs { passTurn(all: true) }
  }

  /// Removes `r` from the queue if it is still there (under mu).
  func withdraw(_ r: BatchRequest) -> Bool {
    guard r.queued else { return false }
    var i = head
    while i < queue.count && queue[i] !== r { i += 1 }
    guard i < queue.count else { return false }
    queue.remove(at: i)
    queuedRows -= r.rows
    r.queued = false
    return true
  }

  /// Adds submission `r`'s completion and recycles it (under mu); `wake`:
  /// wakes the completion waiters.
  func complete(_ r: BatchRequest, wake: Bool = true) {
    if completions.isEmpty && notifyFd >= 0 { ti_shim_fd_notify(notifyFd) }
    completions.append(BatchCompletion(tag: r.tag, status: r.status, message: r.message))
    outstandingAsync -= 1
    r.message = ""
    free.append(r)
    if wake { ti_shim_cond_broadcast(changed) }
  }

  /// Answers `r` (its status and message set): wakes its caller or adds a
  /// completion. Called without mu held for a blocking caller's request.
  func answer(_ r: BatchRequest) {
    if r.isAsync {
      ti_shim_mutex_lock(mu)
      complete(r)
      ti_shim_mutex_unlock(mu)
    } else {
      wake(r)
    }
  }

  // MARK: workers

  /// A worker's loop: gather, run, answer, until closed and drained. `w`
  /// is in `idle` whenever it is neither running a batch nor borrowed.
  func workerLoop(_ w: BatchWorker) {
    ti_shim_mutex_lock(mu)
    while true {
      expireTurn()
      if queuedCount == 0 || w.claimed {
        if closed && queuedCount == 0 { break }  // closed and drained
        if turnHeld && readyCount > 0 {
          _ = ti_shim_cond_wait_until(work, mu, turnSince &+ turnNs)
        } else {
          ti_shim_cond_wait(work, mu)
        }
        continue
      }
      removeIdle(w)
      // Wait for more while fewer are queued than this worker's share of
      // those in flight recently (`target`: with the workers each taking a
      // share, one batch runs while the callers of another come back; waiting
      // for all of them made p99 the whole max_delay) and than are in
      // flight, at most max_delay after the oldest came. For a blocking
      // caller's request, only while another batch is running or callers
      // are coming back through their turns: with nothing else running,
      // waiting would leave the cores idle while the other callers are still
      // on their way (a caller in Python gets back to the queue only after
      // its turn with the GIL); taking what is queued keeps the runs and the
      // callers overlapping. Submissions come in bursts from threads that do
      // not wait for them, an event loop's: waiting for the burst costs
      // nothing there.
      let deadline = queue[head].arrival &+ maxDelayNs
      while !closed && queuedRows < maxBatch {
        if queuedCount >= target || queuedCount >= recentPeak - running - solo { break }
        if running + solo == 0 && readyCount == 0 && !turnHeld && !queue[head].isAsync { break }
        let now = ti_shim_now_ns()
        if now >= deadline { break }
        let until = turnHeld && readyCount > 0 ? min(deadline, turnSince &+ turnNs) : deadline
        if ti_shim_cond_wait_until(work, mu, until) != 0 && until == deadline { break }
        expireTurn()
        if queuedCount == 0 { break }
      }
      if queuedCount == 0 {  // withdrawn meanwhile
        idle.append(w)
        continue
      }
      var batch: [BatchRequest] = []
      var rows = 0
      while head < queue.count && rows + queue[head].rows <= maxBatch {
        let r = queue[head]
        r.queued = false
        batch.append(r)
        rows += r.rows
        head += 1
      }
      queuedRows -= rows
      if head > 64 && head * 2 > queue.count {
        queue.removeFirst(head)
        head = 0
      }
      running += batch.count
      peaks[peakAt] = peak
      peakAt = (peakAt + 1) % peaks.count
      peak = inFlight
      ti_shim_mutex_unlock(mu)

      let ok = runBatch(w, batch, rows)

      ti_shim_mutex_lock(mu)
      running -= batch.count
      if ok {
        batches &+= 1
        rowsRun &+= UInt64(rows)
      }
      for r in batch where r.status != .ok { failed &+= 1 }
      // Submissions complete under this one hold of the lock, with one
      // wake-up of the completion waiters for the batch; blocking callers
      // are woken after it. (Completed requests go back to the free list
      // and may be reused at once: split the batch first.)
      var blocking: [BatchRequest] = []
      var submitted = false
      for r in batch {
        if r.isAsync {
          complete(r, wake: false)
          submitted = true
        } else {
          blocking.append(r)
        }
      }
      if submitted { ti_shim_cond_broadcast(changed) }
      if turnNs > 0 && !closed {
        // Their callers wake one at a time (passTurn), the first now unless
        // another caller holds the turn.
        ready.append(contentsOf: blocking)
        if !turnHeld { passTurn() }
        expireTurn()
      } else {
        ti_shim_mutex_unlock(mu)
        for r in blocking { answer(r) }
        ti_shim_mutex_lock(mu)
      }
      idle.append(w)
    }
    removeIdle(w)
    ti_shim_mutex_unlock(mu)
  }

  /// Takes `w` out of `idle` (under mu).
  func removeIdle(_ w: BatchWorker) {
    if let i = idle.firstIndex(where: { $0 === w }) { idle.remove(at: i) }
  }

  /// Runs `r` at once on the caller's thread with the idle worker `w`'s
  /// sessions (taken from `idle` and marked claimed under mu by the caller),
  /// then gives `w` back.
  func runSolo(_ w: BatchWorker, _ r: BatchRequest) {
    let ok = runBatch(w, [r], r.rows)
    ti_shim_mutex_lock(mu)
    if ok {
      batches &+= 1
      rowsRun &+= UInt64(r.rows)
    } else {
      failed &+= 1
    }
    w.claimed = false
    idle.append(w)
    solo -= 1
    if queuedCount > 0 { ti_shim_cond_broadcast(work) }
    ti_shim_cond_broadcast(changed)
    ti_shim_mutex_unlock(mu)
  }

  /// The session of `slot` for worker `w`, made when first needed.
  func session(_ w: BatchWorker, _ slot: Int) throws(TinfError) -> Session {
    if let s = w.sessions[slot] { return s }
    let s = try makeSession(slot)
    w.sessions[slot] = s
    return s
  }

  /// Runs `batch` (rows in all) as one session run and copies each
  /// request's rows out; when that fails, runs each request alone so only
  /// the failing ones fail. True when the batched run succeeded.
  func runBatch(_ w: BatchWorker, _ batch: [BatchRequest], _ rows: Int) -> Bool {
    do throws(TinfError) {
      try runRows(w, batch, rows)
      for r in batch { r.status = .ok }
      return true
    } catch {
      if batch.count == 1 {
        batch[0].fail(error.status, error.message)
        return false
      }
    }
    ti_shim_mutex_lock(mu)
    isolated &+= 1
    ti_shim_mutex_unlock(mu)
    for r in batch {
      do throws(TinfError) {
        try runRows(w, [r], r.rows)
        r.status = .ok
        ti_shim_mutex_lock(mu)
        batches &+= 1
        rowsRun &+= UInt64(r.rows)
        ti_shim_mutex_unlock(mu)
      } catch {
        r.fail(error.status, error.message)
      }
    }
    return false
  }

  /// Copies the requests' rows into the session of their size (zeros after
  /// them), runs it and copies each request's output rows out.
  func runRows(_ w: BatchWorker, _ reqs: [BatchRequest], _ rows: Int) throws(TinfError) {
    let slot = slotFor[rows]
    let s = try session(w, slot)
    let size = sizes[slot]
    for i in 0..<inItem.count {
      let item = inItem[i]
      guard let base = s.inputBuffer(i).baseAddress else { continue }
      var at = 0
      for r in reqs {
        if let src = r.inputs[i] { (base + at * item).copyMemory(from: src, byteCount: r.rows * item) }
        at += r.rows
      }
      if at < size { (base + at * item).initializeMemory(as: UInt8.self, repeating: 0, count: (size - at) * item) }
    }
    try s.run()
    for o in 0..<outItem.count {
      let item = outItem[o]
      guard let base = s.outputBuffer(o).baseAddress else { continue }
      var at = 0
      for r in reqs {
        if let dst = r.outputs[o] { dst.copyMemory(from: base + at * item, byteCount: r.rows * item) }
        at += r.rows
      }
    }
  }

  // MARK: closing

  /// Refuses new requests; fails the queued ones (cancel) or lets the
  /// workers run them; waits for the workers to finish and joins them.
  func close(cancel: Bool) {
    ti_shim_mutex_lock(closeMu)
    ti_shim_mutex_lock(mu)
    closed = true
    var cancelled: [BatchRequest] = []
    if cancel {
      while head < queue.count {
        let r = queue[head]
        r.queued = false
        r.fail(.invalidState, "tinf_batcher: the batcher was closed before this request ran")
        failed &+= 1
        cancelled.append(r)
        head += 1
      }
      queue.removeAll()
      head = 0
      queuedRows = 0
    }
    passTurn(all: true)  // closed: callers are woken at once from here on
    ti_shim_cond_broadcast(work)
    ti_shim_cond_broadcast(changed)
    ti_shim_mutex_unlock(mu)
    for r in cancelled { answer(r) }
    ti_shim_mutex_lock(mu)
    while solo > 0 { ti_shim_cond_wait(changed, mu) }  // requests run on their callers' threads
    ti_shim_mutex_unlock(mu)
    if !joined {
      // The workers drain the queue (closed: they take it without waiting) and return.
      for w in workers { ti_shim_thread_join(w.thread) }
      ti_shim_mutex_lock(mu)
      workers = []
      idle = []
      joined = true
      ti_shim_cond_broadcast(changed)
      ti_shim_mutex_unlock(mu)
    }
    ti_shim_mutex_unlock(closeMu)
  }
}

private func batcherHandle(_ p: OpaquePointer?) -> BatcherHandle? {
  guard let p else { return nil }
  return Unmanaged<BatcherHandle>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
}

/// The argument checks tinf_batcher_run and tinf_batcher_submit share;
/// nil when the request is acceptable.
private func checkRequest(
  _ b: BatcherHandle, _ fn: StaticString, _ rows: Int64, _ inputs: UnsafePointer<UnsafeRawPointer?>?,
  _ inNbytes: UnsafePointer<Int>?, _ nIn: Int32, _ outputs: UnsafePointer<UnsafeMutableRawPointer?>?,
  _ outNbytes: UnsafePointer<Int>?, _ nOut: Int32
) -> tinf_status? {
  if let bad = firstNull(fn, ("inputs", inputs == nil), ("input_nbytes", inNbytes == nil),
    ("outputs", outputs == nil), ("output_nbytes", outNbytes == nil)) { return bad }
  guard let inputs, let inNbytes, let outputs, let outNbytes else { return nullArg(fn) }
  guard Int(nIn) == b.inItem.count, Int(nOut) == b.outItem.count else {
    return fail(.invalidArgument, string(fn) + ": the model has \(b.inItem.count) input(s) and \(b.outItem.count) output(s), got \(nIn) and \(nOut)")
  }
  guard rows >= 1 && rows <= Int64(b.maxBatch) else {
    return fail(.invalidArgument, string(fn) + ": a request has 1...max_batch (\(b.maxBatch)) rows, got \(rows)")
  }
  let r = Int(rows)
  for i in 0..<b.inItem.count {
    guard inputs[i] != nil else { return fail(.invalidArgument, string(fn) + ": inputs[\(i)] is NULL") }
    guard inNbytes[i] == r * b.inItem[i] else {
      return fail(.shape, string(fn) + ": input \(i) of \(r) row(s) has \(r * b.inItem[i]) bytes (\(b.inItem[i]) a row), got \(inNbytes[i])")
    }
  }
  for o in 0..<b.outItem.count {
    guard outputs[o] != nil else { return fail(.invalidArgument, string(fn) + ": outputs[\(o)] is NULL") }
    guard outNbytes[o] == r * b.outItem[o] else {
      return fail(.shape, string(fn) + ": output \(o) of \(r) row(s) has \(r * b.outItem[o]) bytes (\(b.outItem[o]) a row), got \(outNbytes[o])")
    }
  }
  return nil
}

/// A request object from the free list (or a new one), filled; nil when out of memory. Under b.mu.
private func takeRequest(
  _ b: BatcherHandle, _ rows: Int64, _ inputs: UnsafePointer<UnsafeRawPointer?>,
  _ outputs: UnsafePointer<UnsafeMutableRawPointer?>
) -> BatchRequest? {
  guard let r = b.free.popLast() ?? BatchRequest.make(nIn: b.inItem.count, nOut: b.outItem.count) else { return nil }
  r.rows = Int(rows)
  for i in 0..<b.inItem.count { r.inputs[i] = inputs[i] }
  for o in 0..<b.outItem.count { r.outputs[o] = outputs[o] }
  r.status = .ok
  r.message = ""
  r.done = false
  return r
}

/// Locks b.mu and takes a request for `fn`: the request with b.mu held, or
/// nil and the status (closed, out of memory) with b.mu released.
private func lockAndTakeRequest(
  _ b: BatcherHandle, _ fn: StaticString, _ rows: Int64, _ inputs: UnsafePointer<UnsafeRawPointer?>,
  _ outputs: UnsafePointer<UnsafeMutableRawPointer?>
) -> (BatchRequest?, tinf_status) {
  ti_shim_mutex_lock(b.mu)
  guard !b.closed else {
    ti_shim_mutex_unlock(b.mu)
    return (nil, fail(.invalidState, string(fn) + ": the batcher is closed"))
  }
  guard let r = takeRequest(b, rows, inputs, outputs) else {
    ti_shim_mutex_unlock(b.mu)
    return (nil, fail(.outOfMemory, string(fn) + ": cannot allocate a request"))
  }
  return (r, ok())
}

/// Microseconds (< 0: none) to a deadline on ti_shim_now_ns's clock, clamped to a day.
private func deadline(_ us: Int64) -> UInt64? {
  guard us >= 0 else { return nil }
  return ti_shim_now_ns() &+ UInt64(min(us, 86_400_000_000)) * 1000
}

// MARK: - C API

@c @implementation
public func tinf_batcher_create(
  _ model: OpaquePointer?, _ maxBatch: Int32, _ maxDelayUs: Int64, _ workers: Int32, _ threads: Int32,
  _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> tinf_status {
  if let bad = firstNull("tinf_batcher_create", ("model", model == nil), ("out_batcher", out == nil)) { return bad }
  guard let m = modelHandle(model), let out else { return nullArg("tinf_batcher_create") }
  guard maxBatch >= 1 && maxBatch <= 65536 else {
    return fail(.invalidArgument, "tinf_batcher_create: max_batch must be 1...65536, got \(maxBatch)")
  }
  guard maxDelayUs >= 0 && maxDelayUs <= 10_000_000 else {
    return fail(.invalidArgument, "tinf_batcher_create: max_delay_us must be 0...10000000, got \(maxDelayUs)")
  }
  guard workers >= 1 && workers <= 64 else {
    return fail(.invalidArgument, "tinf_batcher_create: workers must be 1...64, got \(workers)")
  }
  guard threads >= 0 && threads <= 256 else {
    return fail(.invalidArgument, "tinf_batcher_create: threads must be 0...256, got \(threads)")
  }
  let mdl = m.model
  guard !mdl.inputs.isEmpty else { return fail(.invalidArgument, "tinf_batcher_create: the model has no inputs") }
  var inShapes: [[Int]] = []
  for t in mdl.inputs {
    guard !t.shape.isEmpty else {
      return fail(.shape, "tinf_batcher_create: input '\(t.name)' is a scalar: it has no batch (first) dimension")
    }
    inShapes.append(Array(t.shape.dropFirst()))
  }
  var sizes: [Int] = []
  var p = 1
  while p < Int(maxBatch) {
    sizes.append(p)
    p *= 2
  }
  sizes.append(Int(maxBatch))
  let nThreads = threads == 0 ? Int(ti_shim_cpu_count()) : Int(threads)
  guard let mu = ti_shim_mutex_create() else { return fail(.outOfMemory, "tinf_batcher_create: cannot allocate a mutex") }
  guard let closeMu = ti_shim_mutex_create() else {
    ti_shim_mutex_destroy(mu)
    return fail(.outOfMemory, "tinf_batcher_create: cannot allocate a mutex")
  }
  guard let work = ti_shim_cond_create() else {
    ti_shim_mutex_destroy(mu)
    ti_shim_mutex_destroy(closeMu)
    return fail(.outOfMemory, "tinf_batcher_create: cannot allocate a condition variable")
  }
  guard let changed = ti_shim_cond_create() else {
    ti_shim_mutex_destroy(mu)
    ti_shim_mutex_destroy(closeMu)
    ti_shim_cond_destroy(work)
    return fail(.outOfMemory, "tinf_batcher_create: cannot allocate a condition variable")
  }
  // The largest batch's session, made now: a model that cannot take
  // max_batch rows (or a max_batch whose arena does not fit) fails here.
  // Row sizes come from it.
  var o = SessionOptions(threads: nThreads)
  for (i, s) in inShapes.enumerated() { o.inputShapes[i] = [Int(maxBatch)] + s }
  let first: Session
  do throws(TinfError) {
    first = try Session.create(model: mdl, options: o)
  } catch {
    ti_shim_mutex_destroy(mu)
    ti_shim_mutex_destroy(closeMu)
    ti_shim_cond_destroy(work)
    ti_shim_cond_destroy(changed)
    return fail(error.status, "tinf_batcher_create: a session of max_batch (\(maxBatch)) rows: " + error.message)
  }
  let b0 = first
  func cleanup() {
    ti_shim_mutex_destroy(mu)
    ti_shim_mutex_destroy(closeMu)
    ti_shim_cond_destroy(work)
    ti_shim_cond_destroy(changed)
  }
  guard b0.variables == nil else {
    cleanup()
    return fail(.invalidArgument,
      "tinf_batcher_create: the model keeps state between runs (variables): one batch would mix its callers' streams")
  }
  let inItem = (0..<mdl.inputs.count).map { b0.inputBuffer($0).count / Int(maxBatch) }
  var outItem: [Int] = []
  for i in 0..<b0.graph.outputs.count {
    let t = b0.graph.tensors[b0.graph.outputs[i]]
    guard t.shape.first == Int(maxBatch) else {
      cleanup()
      return fail(.shape,
        "tinf_batcher_create: output '\(t.name)' has shape \(t.shape) at a batch of \(maxBatch): its first dimension is not the batch")
    }
    outItem.append(t.nbytes / Int(maxBatch))
  }
  let b = BatcherHandle(
    model: m, maxBatch: Int(maxBatch), maxDelayNs: UInt64(maxDelayUs) * 1000, threads: nThreads, workerCount: Int(workers), sizes: sizes,
    inItem: inItem, outItem: outItem, inShapes: inShapes, mu: mu, work: work, changed: changed, closeMu: closeMu)
  for k in 0..<Int(workers) {
    let w = BatchWorker(b, first: k == 0 ? b0 : nil)
    ti_shim_mutex_lock(b.mu)
    b.workers.append(w)
    b.idle.append(w)
    ti_shim_mutex_unlock(b.mu)
    w.thread = ti_shim_thread_start(
      { ctx in
        let w = Unmanaged<BatchWorker>.fromOpaque(ctx!).takeUnretainedValue()
        w.batcher.workerLoop(w)
      }, Unmanaged.passUnretained(w).toOpaque())
    if w.thread == nil {
      ti_shim_mutex_lock(b.mu)
      b.workers.removeLast()
      b.removeIdle(w)
      ti_shim_mutex_unlock(b.mu)
      b.close(cancel: true)  // stops and joins the ones started
      return fail(.outOfMemory, "tinf_batcher_create: cannot start worker thread \(k)")
    }
  }
  out.pointee = retain(b)
  return ok()
}

@c @implementation
public func tinf_batcher_run(
  _ batcher: OpaquePointer?, _ rows: Int64, _ inputs: UnsafePointer<UnsafeRawPointer?>?,
  _ inNbytes: UnsafePointer<Int>?, _ nIn: Int32, _ outputs: UnsafePointer<UnsafeMutableRawPointer?>?,
  _ outNbytes: UnsafePointer<Int>?, _ nOut: Int32, _ timeoutUs: Int64
) -> tinf_status {
  guard let b = batcherHandle(batcher) else { return nullArg("tinf_batcher_run", "batcher") }
  if let bad = checkRequest(b, "tinf_batcher_run", rows, inputs, inNbytes, nIn, outputs, outNbytes, nOut) { return bad }
  guard let inputs, let outputs else { return nullArg("tinf_batcher_run") }
  let until = deadline(timeoutUs)
  let (request, status) = lockAndTakeRequest(b, "tinf_batcher_run", rows, inputs, outputs)
  guard let r = request else { return status }  // b.mu held from here
  r.isAsync = false
  if b.turnHeld { b.passTurn() }  // this caller has let its interpreter lock go: the next one's turn
  b.callersInside += 1
  b.peak = max(b.peak, b.inFlight + 1)
  if b.queuedCount == 0, let w = b.idle.popLast() {
    // Nothing queued and a worker idle: run it now on this thread, as an
    // unbatched run would, without handing it to a worker and back. A
    // caller's sleep and wake-up cost about 10 us of CPU on the 2-core VM
    // (futex, scheduler, the hypervisor's wake-up of an idle core), more
    // than a batch-1 run of the MLP: batching every request whenever others
    // were in flight (batches of 9-10 rows instead of 2-3 with 16 callers)
    // took 16 us of CPU a request against 13-15 us (C threads; 6-7 us
    // unbatched; BENCHMARKS.md, "Batch processing"). Requests that come
    // while the workers are busy are batched.
    w.claimed = true
    b.solo += 1
    b.requests &+= 1
    ti_shim_mutex_unlock(b.mu)
    b.runSolo(w, r)
    r.done = true
  } else {
    let wake = b.enqueue(r)
    ti_shim_mutex_unlock(b.mu)
    if wake { ti_shim_cond_broadcast(b.work) }
  }

  var timedOut = false
  ti_shim_mutex_lock(r.mu)
  while !r.done {
    guard let until else {
      ti_shim_cond_wait(r.cond, r.mu)
      continue
    }
    if ti_shim_cond_wait_until(r.cond, r.mu, until) != 0 && !r.done {
      ti_shim_mutex_unlock(r.mu)
      ti_shim_mutex_lock(b.mu)
      timedOut = b.withdraw(r)
      ti_shim_mutex_unlock(b.mu)
      ti_shim_mutex_lock(r.mu)
      if timedOut { break }
      while !r.done { ti_shim_cond_wait(r.cond, r.mu) }  // taken into a batch: wait for it
    }
  }
  ti_shim_mutex_unlock(r.mu)
  let st = timedOut ? Status.runtime : r.status
  let msg = timedOut ? "tinf_batcher_run: timed out: the request was not taken into a batch in time (it did not run)" : r.message
  ti_shim_mutex_lock(b.mu)
  r.message = ""
  b.free.append(r)
  b.callersInside -= 1
  if b.callersInside == 0 { ti_shim_cond_broadcast(b.changed) }
  ti_shim_mutex_unlock(b.mu)
  return st == .ok ? ok() : fail(st, msg)
}

@c @implementation
public func tinf_batcher_submit(
  _ batcher: OpaquePointer?, _ rows: Int64, _ inputs: UnsafePointer<UnsafeRawPointer?>?,
  _ inNbytes: UnsafePointer<Int>?, _ nIn: Int32, _ outputs: UnsafePointer<UnsafeMutableRawPointer?>?,
  _ outNbytes: UnsafePointer<Int>?, _ nOut: Int32, _ tag: UInt64
) -> tinf_status {
  guard let b = batcherHandle(batcher) else { return nullArg("tinf_batcher_submit", "batcher") }
  if let bad = checkRequest(b, "tinf_batcher_submit", rows, inputs, inNbytes, nIn, outputs, outNbytes, nOut) {
    return bad
  }
  guard let inputs, let outputs else { return nullArg("tinf_batcher_submit") }
  let (request, status) = lockAndTakeRequest(b, "tinf_batcher_submit", rows, inputs, outputs)
  guard let r = request else { return status }  // b.mu held from here
  r.isAsync = true
  r.tag = tag
  b.outstandingAsync += 1
  let wake = b.enqueue(r)
  ti_shim_mutex_unlock(b.mu)
  if wake { ti_shim_cond_broadcast(b.work) }
  return ok()
}

@c @implementation
public func tinf_batcher_completed(
  _ batcher: OpaquePointer?, _ tags: UnsafeMutablePointer<UInt64>?, _ statuses: UnsafeMutablePointer<Int32>?,
  _ capacity: Int32, _ timeoutUs: Int64, _ count: UnsafeMutablePointer<Int32>?
) -> tinf_status {
  if let bad = firstNull("tinf_batcher_completed", ("batcher", batcher == nil), ("tags", tags == nil),
    ("statuses", statuses == nil), ("out_count", count == nil)) { return bad }
  guard let b = batcherHandle(batcher), let tags, let statuses, let count else { return nullArg("tinf_batcher_completed") }
  guard capacity >= 1 else { return fail(.invalidArgument, "tinf_batcher_completed: capacity must be >= 1, got \(capacity)") }
  count.pointee = 0
  let until = deadline(timeoutUs)
  ti_shim_mutex_lock(b.mu)
  b.completedInside += 1
  defer {
    b.completedInside -= 1
    if b.completedInside == 0 { ti_shim_cond_broadcast(b.changed) }
    ti_shim_mutex_unlock(b.mu)
  }
  while b.completions.isEmpty {
    if b.closed && b.outstandingAsync == 0 {
      return fail(.invalidState, "tinf_batcher_completed: the batcher is closed and no submitted request is outstanding")
    }
    guard let until else {
      ti_shim_cond_wait(b.changed, b.mu)
      continue
    }
    if timeoutUs == 0 || ti_shim_cond_wait_until(b.changed, b.mu, until) != 0 { break }
  }
  var n = 0
  var message: String? = nil
  while n < Int(capacity) && n < b.completions.count {
    let c = b.completions[n]
    tags[n] = c.tag
    statuses[n] = c.status.rawValue
    n += 1
    if c.status != .ok {
      message = c.message
      break
    }
  }
  b.completions.removeFirst(n)
  count.pointee = Int32(n)
  if let message { setLastError(message) }
  return ok()
}

@c @implementation
public func tinf_batcher_close(_ batcher: OpaquePointer?, _ cancel: Int32) -> tinf_status {
  guard let b = batcherHandle(batcher) else { return nullArg("tinf_batcher_close", "batcher") }
  guard cancel == 0 || cancel == 1 else {
    return fail(.invalidArgument, "tinf_batcher_close: cancel must be 0 or 1, got \(cancel)")
  }
  b.close(cancel: cancel == 1)
  return ok()
}

@c @implementation
public func tinf_batcher_free(_ batcher: OpaquePointer?) {
  guard let b = batcherHandle(batcher) else { return }
  b.close(cancel: false)
  // Callers answered but still returning from tinf_batcher_run, and
  // threads woken in tinf_batcher_completed.
  ti_shim_mutex_lock(b.mu)
  while b.callersInside > 0 || b.completedInside > 0 { ti_shim_cond_wait(b.changed, b.mu) }
  ti_shim_mutex_unlock(b.mu)
  Unmanaged<BatcherHandle>.fromOpaque(UnsafeRawPointer(batcher!)).release()
}

@c @implementation
public func tinf_batcher_stats(_ batcher: OpaquePointer?, _ out: UnsafeMutablePointer<tinf_batcher_counters>?)
  -> tinf_status
{
  if let bad = firstNull("tinf_batcher_stats", ("batcher", batcher == nil), ("out", out == nil)) { return bad }
  guard let b = batcherHandle(batcher), let out else { return nullArg("tinf_batcher_stats") }
  ti_shim_mutex_lock(b.mu)
  var c = tinf_batcher_counters()
  c.requests = b.requests
  c.rows = b.rowsRun
  c.batches = b.batches
  c.failed = b.failed
  c.isolated = b.isolated
  c.queued = Int64(b.queuedCount)
  c.running = Int64(b.running)
  c.max_batch = Int32(b.maxBatch)
  c.workers = Int32(b.workerCount)
  c.threads = Int32(b.threads)
  ti_shim_mutex_unlock(b.mu)
  out.pointee = c
  return ok()
}

// MARK: - wake-ups (issue 17, item 3: throughput of interpreter callers)

@c @implementation
public func tinf_batcher_set_turn(_ batcher: OpaquePointer?, _ turnUs: Int64) -> tinf_status {
  guard let b = batcherHandle(batcher) else { return nullArg("tinf_batcher_set_turn", "batcher") }
  guard turnUs >= 0 && turnUs <= 1_000_000 else {
    return fail(.invalidArgument, "tinf_batcher_set_turn: turn_us must be 0...1000000, got \(turnUs)")
  }
  ti_shim_mutex_lock(b.mu)
  b.turnNs = UInt64(turnUs) * 1000
  if turnUs == 0 { b.passTurn(all: true) }
  ti_shim_cond_broadcast(b.work)
  ti_shim_mutex_unlock(b.mu)
  return ok()
}

@c @implementation
public func tinf_batcher_set_notify_fd(_ batcher: OpaquePointer?, _ fd: Int32) -> tinf_status {
  guard let b = batcherHandle(batcher) else { return nullArg("tinf_batcher_set_notify_fd", "batcher") }
  guard fd >= -1 else { return fail(.invalidArgument, "tinf_batcher_set_notify_fd: fd must be >= 0, or -1 for none; got \(fd)") }
  ti_shim_mutex_lock(b.mu)
  b.notifyFd = fd
  if fd >= 0 && !b.completions.isEmpty { ti_shim_fd_notify(fd) }
  ti_shim_mutex_unlock(b.mu)
  return ok()
}
