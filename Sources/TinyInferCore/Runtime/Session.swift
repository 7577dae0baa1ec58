import TinyInferShims

/// Options for a session.
public struct SessionOptions: Sendable {
  /// Threads to use; 0 means the number of online CPUs.
  public var threads: Int = 1
  /// The largest arena the session may allocate.
  public var maxArenaBytes: Int = defaultMaxArenaBytes
  /// Shapes for the graph inputs (by input index) that replace the file's,
  /// for example another batch size; shapes are inferred again for the session.
  public var inputShapes: [Int: [Int]] = [:]
  /// The most work one run may take (multiply-adds or element visits,
  /// `WorkCost`); a model over it is refused when the session is made.
  public var maxWork: UInt64 = WorkCost.defaultLimit
  public init(threads: Int = 1, maxArenaBytes: Int = defaultMaxArenaBytes) {
    self.threads = threads
    self.maxArenaBytes = maxArenaBytes
  }

  /// Sets the shape of graph input `index` (`rank` dims at `dims`, each
  /// 1...2^30) for the sessions made with these options.
  public mutating func setInputShape(_ index: Int, rank: Int, dims: UnsafePointer<Int64>?) throws(TinfError) {
    guard index >= 0 && index < ModelFile.maxTensors else { throw .arg("input index \(index) out of range") }
    inputShapes[index] = try readShape(rank: rank, dims: dims, maxDim: 1 << 30)
  }
}

/// One execution context of a model: its arena, its bound kernels and its
/// threads. Used by one thread at a time; sessions of one model are
/// independent and run concurrently.
public final class Session {
  public let model: Model
  /// The graph as this session runs it (the model's, or re-inferred for
  /// other input shapes).
  public let graph: Graph
  public let plan: MemoryPlan
  public let pool: ThreadPool
  private let arena: UnsafeMutableRawPointer?
  private let pointers: [UnsafeMutableRawPointer?]
  private let kernels: [BoundKernel]
  /// The first ops run by sub-batches, when the batch's activations
  /// outgrow the cache (SubBatch.swift); nil: every op over the whole batch.
  private let prefix: SubBatchPrefix?

  /// Per-op run times of the last `run(profile: true)`, in nanoseconds.
  public private(set) var opNanoseconds: [UInt64]
  /// Run-time log (tinf_session_set_run_log, for monitors): when set, each
  /// successful `run()` increments runLog[0]; timed runs also write their
  /// nanoseconds to runLog[2 + runLog[1] % runLogCapacity] and increment
  /// runLog[1]. Every run is timed while runs take runLogShortRunNs or more
  /// (or with runLogEveryRun); after a shorter one, the next runLogStride - 1
  /// runs are not (two clock reads would cost a few percent of them).
  /// Owned by the caller; nil (the default) costs one branch per run.
  public var runLog: UnsafeMutablePointer<UInt64>? = nil
  public var runLogCapacity: Int = 1
  public var runLogEveryRun = false
  public var runLogSkip = 0
  public static let runLogShortRunNs: UInt64 = 16_000
  public static let runLogStride = 16

  /// Plans the arena, allocates it and binds every kernel. (A factory rather
  /// than a throwing initializer: Embedded Swift leaks a partially
  /// initialized object when an initializer throws.)
  public static func create(model: Model, options: SessionOptions = SessionOptions()) throws(TinfError) -> Session {
    guard options.threads >= 0 && options.threads <= 256 else {
      throw .arg("threads must be 0...256, got \(options.threads)")
    }
    var g = model.graph
    if !options.inputShapes.isEmpty {
      var shapes = g.inputs.map { g.tensors[$0].shape }
      for (i, s) in options.inputShapes {
        guard i >= 0 && i < shapes.count else { throw .arg("input index \(i) out of range") }
        shapes[i] = s
      }
      g = try g.withInputShapes(shapes)
    }
    let hoist = Hoisting.ops(g)  // computed once below, not per run (Hoisting.swift)
    let plan = try MemoryPlanner.planSession(g)
    guard plan.size <= options.maxArenaBytes else {
      throw TinfError(.outOfMemory, "the arena would need \(plan.size) bytes, over the limit of \(options.maxArenaBytes)")
    }
    // The work limit (WorkLimit.swift), once the arena is known to fit.
    let work = WorkCost.of(g)
    try WorkCost.check(work, options.maxWork)
    let pool = ThreadPool(threads: options.threads == 0 ? Int(ti_shim_cpu_count()) : options.threads)
    guard let mutex = ti_shim_mutex_create() else { throw TinfError(.outOfMemory, "cannot allocate a mutex") }
    var arena: UnsafeMutableRawPointer? = nil
    if plan.size > 0 {
      guard let a = ti_shim_alloc_background(plan.size) else {
        ti_shim_mutex_destroy(mutex)
        throw TinfError(.outOfMemory, "cannot allocate an arena of \(plan.size) bytes")
      }
      // Inputs start as zeros rather than leftover memory (a mapped arena
      // is zeros already: writing them would also fault its pages in here,
      // ahead of the thread that populates them; 0.1 ms for MobileNetV2).
      for t in g.inputs where ti_shim_alloc_mapped(a) == 0 {
        if let off = plan.offsets[t] { (a + off).initializeMemory(as: UInt8.self, repeating: 0, count: g.tensors[t].nbytes) }
      }
      arena = a
    }
    let ptrs = tensorPointers(model, g, plan, arena)
    var kernels: [BoundKernel]
    let variables: VariableStore?
    do throws(TinfError) {
      variables = try VariableStore.make(g) { model.constantData($0) }
      let meter = g.subgraphs.isEmpty ? nil : WorkMeter(limit: options.maxWork, mainWork: work, graph: g)
      kernels = try bindKernels(model, g, 0..<g.nodes.count, ptrs, pool, variables: variables, meter: meter)
    } catch {
      ti_shim_free(arena)
      ti_shim_mutex_destroy(mutex)
      throw error
    }
    _ = Hoisting.run(&kernels, hoist)
    var prefix: SubBatchPrefix? = nil
    do throws(TinfError) {
      prefix = try SubBatchPrefix.make(model: model, graph: g, pointers: ptrs, pool: pool)
    } catch {
      prefix = nil  // the whole batch op by op, as without it
    }
    return Session(
      model: model, graph: g, plan: plan, pool: pool, arena: arena, pointers: ptrs, kernels: kernels, prefix: prefix,
      work: work, mutex: mutex, variables: variables)
  }

  /// Where each tensor of `g` lives: constants in the model, the rest at
  /// their plan's offsets in `arena` (nil: unused).
  static func tensorPointers(_ model: Model, _ g: Graph, _ plan: MemoryPlan, _ arena: UnsafeMutableRawPointer?)
    -> [UnsafeMutableRawPointer?]
  {
    var ptrs = [UnsafeMutableRawPointer?](repeating: nil, count: g.tensors.count)
    for t in 0..<g.tensors.count {
      if g.tensors[t].isConstant {
        ptrs[t] = model.constantData(t)
      } else if let off = plan.offsets[t], let arena {
        ptrs[t] = arena + off
      }
    }
    return ptrs
  }

  /// Binds the kernels of ops `ops` of graph `g` (the model's graph or the
  /// same with other shapes) on tensor data `ptrs`.
  static func bindKernels(
    _ model: Model, _ g: Graph, _ ops: Range<Int>, _ ptrs: [UnsafeMutableRawPointer?], _ pool: ThreadPool,
    variables: VariableStore? = nil, meter: WorkMeter? = nil, subgraph: Bool = false
  ) throws(TinfError) -> [BoundKernel] {
    var kernels: [BoundKernel] = []
    kernels.reserveCapacity(ops.count)
    for k in ops {
      let node = g.nodes[k]
      let ctx = KernelContext(
        node: node,
        inputs: node.inputs.map { $0 >= 0 ? g.tensors[$0] : nil },
        outputs: node.outputs.map { g.tensors[$0] },
        inputData: node.inputs.map { $0 >= 0 ? ptrs[$0] : nil },
        outputData: node.outputs.map { ptrs[$0]! },
        pool: pool,
        packed: subgraph ? nil : model.packed[k], sparse: subgraph ? nil : model.sparse[k], variables: variables,
        model: model, meter: meter)
      do throws(TinfError) {
        kernels.append(BoundKernel(run: try Registry.bind(ctx)))
      } catch {
        throw error.prefixed("op \(k) (\(node.op.name))")
      }
    }
    return kernels
  }

  private init(
    model: Model, graph: Graph, plan: MemoryPlan, pool: ThreadPool, arena: UnsafeMutableRawPointer?,
    pointers: [UnsafeMutableRawPointer?], kernels: [BoundKernel], prefix: SubBatchPrefix?, work: UInt64,
    mutex: OpaquePointer, variables: VariableStore?
  ) {
    self.variables = variables
    self.prefix = prefix
    self.work = work
    self.mutex = mutex
    self.model = model
    self.graph = graph
    self.plan = plan
    self.pool = pool
    self.arena = arena
    self.pointers = pointers
    self.kernels = kernels
    self.opNanoseconds = [UInt64](repeating: 0, count: kernels.count)
  }

  deinit {
    if let arena { ti_shim_free(arena) }
    ti_shim_mutex_destroy(mutex)
  }

  /// Whether runs use the pool's threads (ThreadPick; two or more threads).
  private var pick = ThreadPick()

  /// The work of one run (`WorkCost`), checked against
  /// `SessionOptions.maxWork` when the session was made.
  public let work: UInt64
  /// Held by every run and by `close`: a run and a close exclude each other.
  private let mutex: OpaquePointer
  private var closed = false

  /// The session's variables (Runtime/Variables.swift); nil when the model has none.
  public let variables: VariableStore?

  /// Sets every variable back to its initial value (a new stream), waiting
  /// for a run in progress on another thread; `.invalidState` when closed.
  /// Nothing to do for a model without variables.
  public func resetState() throws(TinfError) {
    try lockForRun()
    defer { ti_shim_mutex_unlock(mutex) }
    variables?.reset()
  }

  /// Marks the session closed, waiting for a run in progress on another
  /// thread to end; later runs fail with `.invalidState`. The C API's
  /// tinf_session_free calls it before releasing the session, so a free
  /// racing a run never frees memory the run is using.
  public func close() {
    ti_shim_mutex_lock(mutex)
    closed = true
    ti_shim_mutex_unlock(mutex)
  }

  /// Takes the run lock, failing when the session is closed.
  private func lockForRun() throws(TinfError) {
    ti_shim_mutex_lock(mutex)
    if closed {
      ti_shim_mutex_unlock(mutex)
      throw TinfError(.invalidState, "the session is closed")
    }
  }

  /// Runs every op once on the current inputs.
  public func run(profile: Bool = false) throws(TinfError) {
    try lockForRun()
    defer { ti_shim_mutex_unlock(mutex) }
    try runHoldingLock(profile: profile)
  }

  /// Calls `body` holding the run lock (the one `run` takes), failing with
  /// `.invalidState` when the session is closed; `body` runs the ops with
  /// `runHoldingLock()`. The C API's result cache answers a hit (a copy
  /// into the output buffers) or runs a miss inside it, so a free never
  /// pulls the arena from under either.
  public func withRunLock<R>(_ body: () throws(TinfError) -> R) throws(TinfError) -> R {
    try lockForRun()
    defer { ti_shim_mutex_unlock(mutex) }
    return try body()
  }

  /// `run`'s work, for a caller inside `withRunLock`.
  public func runHoldingLock(profile: Bool = false) throws(TinfError) {
    if !profile {
      guard let log = runLog else {
        try runPicked()
        return
      }
      if runLogSkip > 0 {
        runLogSkip -= 1
        try runPicked()
        log[0] &+= 1
        return
      }
      let t0 = ti_shim_now_ns()
      try runPicked()
      let dt = ti_shim_now_ns() &- t0
      let n = log[1]
      log[2 + Int(n % UInt64(runLogCapacity))] = dt
      log[1] = n &+ 1
      log[0] &+= 1
      runLogSkip = runLogEveryRun || dt >= Session.runLogShortRunNs ? 0 : Session.runLogStride - 1
      return
    }
    var start = 0
    if let p = prefix {
      try p.run(profile: true)
      for k in 0..<p.count { opNanoseconds[k] = p.opNanoseconds[k] }
      start = p.count
    }
    for k in start..<kernels.count {
      let t0 = ti_shim_now_ns()
      try kernels[k].run()
      opNanoseconds[k] = ti_shim_now_ns() &- t0
    }
  }

  /// `runAll`, on the pool's threads or on one (ThreadPick): a session with
  /// two or more threads times runs 16-47 of every 2048, in blocks of eight
  /// on one thread and on all, then keeps all only if they were at least 3%
  /// faster by the best time of each. On a 2-core VM a thread that reads
  /// what the other core wrote pays for moving it, and a transformer
  /// encoder of 100 us ran 0.8x on two threads: the session picks one
  /// thread for it.
  @inline(__always)
  private func runPicked() throws(TinfError) {
    guard pool.threads > 1 && pick.enabled else {
      try runAll()
      return
    }
    let c = pick.count
    pick.count = c &+ 1 == ThreadPick.period ? 0 : c &+ 1
    let p = c &- ThreadPick.probeStart
    guard p >= 0 && p < ThreadPick.probeRuns else {
      try runAll()
      return
    }
    // Blocks of eight runs, one thread, all, one, all; the first two runs of
    // a block are not timed (alternating run by run measured the threads 40%
    // slower than they run: each run found the other's data in the wrong
    // core, and so do the first runs after a switch).
    let oneThread = p & 8 == 0
    pool.inline = oneThread
    defer {
      // The choice, made even when this last run failed (a run that
      // failed is not timed).
      if p == ThreadPick.probeRuns &- 1 {
        pool.inline = !(pick.bestAll < pick.bestOne &- pick.bestOne / 32)
        pick.bestOne = .max
        pick.bestAll = .max
      }
    }
    let t0 = ti_shim_now_ns()
    try runAll()
    let dt = ti_shim_now_ns() &- t0
    if p & 7 >= 2 {
      if oneThread {
        pick.bestOne = min(pick.bestOne, dt)
      } else {
        pick.bestAll = min(pick.bestAll, dt)
      }
    }
  }

  /// Every op once: the sub-batched prefix (if any), then the rest over
  /// the whole batch.
  @inline(__always)
  private func runAll() throws(TinfError) {
    var k = 0
    if let p = prefix {
      try p.run(profile: false)
      k = p.count
    }
    // A local copy of the array: the loop reads it without retaining and
    // releasing the property's buffer around every call.
    let ks = kernels
    while k < ks.count {
      try ks[k].run()
      k &+= 1
    }
  }

  /// Runs every op once, calling `observe(tensor, bytes)` right after each op
  /// for each of its outputs (before any later op may reuse the memory).
  /// Graph inputs are not reported (read them with `inputBuffer`). Used by
  /// calibration and by the quantization report; not for hot loops.
  public func run(observe: (Int, UnsafeRawBufferPointer) -> Void) throws(TinfError) {
    try lockForRun()
    defer { ti_shim_mutex_unlock(mutex) }
    let g = model.graph
    for k in kernels.indices {
      try kernels[k].run()
      for t in g.nodes[k].outputs {
        observe(t, UnsafeRawBufferPointer(start: pointers[t], count: g.tensors[t].nbytes))
      }
    }
  }

  /// The buffer of graph input `i` (inside the arena; never overwritten by a run).
  public func inputBuffer(_ i: Int) -> UnsafeMutableRawBufferPointer {
    let t = graph.inputs[i]
    return UnsafeMutableRawBufferPointer(start: pointers[t], count: graph.tensors[t].nbytes)
  }

  /// The data of graph output `i`, valid until the next run.
  public func outputBuffer(_ i: Int) -> UnsafeRawBufferPointer {
    let t = graph.outputs[i]
    return UnsafeRawBufferPointer(start: pointers[t], count: graph.tensors[t].nbytes)
  }

  public var threads: Int { pool.threads }
}

/// The state of a session's choice between its threads and one
/// (Session.runPicked).
struct ThreadPick {
  /// The first of the runs of every period that compare one thread and all:
  /// a new session's first runs pay for cold caches and a sleeping worker.
  static let probeStart = 16
  /// How many: blocks of eight, one thread, all, one, all (runPicked).
  static let probeRuns = 32
  /// Runs between the starts of two probes.
  static let period = 2048
  /// TINYINFER_THREAD_PICK=0 turns the choice off (every run on all threads).
  let enabled = ti_shim_thread_pick_enabled() != 0
  var count = 0
  var bestOne: UInt64 = .max
  var bestAll: UInt64 = .max
}
