import TinyInferShims

/// A session's worker threads (from the C shim: workers sleep between jobs).
/// With one thread no worker exists and `parallelFor` runs inline.
public final class ThreadPool {
  let raw: OpaquePointer?
  public let threads: Int
  /// The closure of the parallelFor in progress (read by the workers).
  private var job: ((Int) -> Void)? = nil
  /// Run on the calling thread only: set by the session when its runs are
  /// faster on one thread (ThreadPick). forEachChunk and parallelRanges then
  /// make one chunk, as with one thread (whose results the threads' equal:
  /// kernels split work on whole tiles); a direct parallelFor runs its items
  /// in turn. Read and written by the running thread only.
  public var inline = false

  public init(threads: Int) {
    if threads > 1, let p = ti_pool_create(Int32(clamping: threads)) {
      raw = p
      self.threads = Int(ti_pool_threads(p))
    } else {
      raw = nil
      self.threads = 1
    }
  }

  deinit { ti_pool_destroy(raw) }

  /// Runs `body(i)` for i in 0..<n, spread over the pool's threads, and
  /// returns when every call has finished. `body` must be safe to call
  /// concurrently for different i.
  public func parallelFor(_ n: Int, _ body: (Int) -> Void) {
    guard let raw, n > 1, !inline else {
      for i in 0..<n { body(i) }
      return
    }
    // The job is handed to the workers through this object (the closure is
    // not boxed). Known cost: in Embedded mode withoutActuallyEscaping
    // allocates one small checking context per call, so a parallelized op
    // allocates once per run when the session has more than one thread; with
    // one thread nothing is allocated (checked by counting swift_allocObject).
    withoutActuallyEscaping(body) { b in
      job = b
      ti_pool_run(
        raw,
        { ctx, i in
          Unmanaged<ThreadPool>.fromOpaque(ctx!).takeUnretainedValue().job?(Int(i))
        }, Unmanaged.passUnretained(self).toOpaque(), Int32(clamping: n))
      job = nil
    }
  }

  /// Splits 0..<total into about `threads` chunks of at least `minChunk`
  /// items and runs `body(range)` on each.
  public func parallelRanges(_ total: Int, minChunk: Int, _ body: (Range<Int>) -> Void) {
    let chunks = min(inline ? 1 : threads, max(1, total / max(minChunk, 1)))
    if chunks <= 1 {
      body(0..<total)
      return
    }
    parallelFor(chunks) { c in
      let lo = total * c / chunks
      let hi = total * (c + 1) / chunks
      body(lo..<hi)
    }
  }
}
