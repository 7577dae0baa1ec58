import TinyInferShims

/// The sparse-or-dense choice measured at load (issue 15: "measure and
/// decide at prepare time"). `SparseGemm.prepare` proposes the sparse form
/// of an op from its weights' density against a threshold measured per
/// dispatch level (SparseGemm.maxDensity). Far below the threshold the
/// sparse kernel wins on every machine measured; near it the winner depends
/// on the machine and the layer's shape (face_detection_full_range_sparse's
/// 70%-zero 1x1 layers on an Intel AVX-512 core: dense 0.57-0.75x of the
/// sparse time on 8 -> 32, 64 -> 16, 64 -> 32 and 96 -> 48, sparse 0.70-0.89x
/// of dense on 32 -> 8, 32 -> 128 and 96 -> 384). So for an op whose density
/// is above half its threshold (`uncertain`), and for a probe (a form the
/// level's rules do not take but that may pay on this machine: float32 2:4
/// weights at AVX-512, one-row float32 weights of 65% to 90% zeros or under
/// 1 MiB), the load binds both kernels on scratch buffers of the op's own
/// shapes (at most `maxRows` rows of them: both kernels' time grows with
/// the rows in step), runs each (one untimed run, then 5 to 50 rounds
/// alternating the two: `rounds`) and keeps the faster by the best run: the sparse
/// form stays unless dense beat it by at least 3%, a probe is kept only
/// when it beat dense by that much in two timings (one bench run saw a
/// one-row probe kept that ran 0.64x: a slow spell of the machine). The ops are timed in order of their
/// dense work, largest first (`work`). The pass report says which and the
/// times (of the rows timed).
///
/// Limits: the measurements of one load stop after `budgetNs`: the ops
/// after keep the threshold's choice, and probes not timed stay dense; a
/// model with many large candidates loads at most about that much slower.
/// One thread, the file's shapes (a session with other shapes keeps the
/// choice). `TINYINFER_SPARSE_MEASURE=0` turns the measuring off (the
/// thresholds alone, no probes: the same choice on every load). A float32
/// op's output depends on the choice (sums in another order; int8's does
/// not), so two loads may differ by float rounding where a close op went
/// the other way; `sparse=True`/`False` (`TINF_LOAD_DENSE`,
/// `TINF_LOAD_SPARSE_ALWAYS`) fix it. A prepack image lists every op with
/// constant weights that its writing load kept dense (packed or scanned), so
/// a cached load takes the writing load's choices without measuring again.
struct SparseMeasure {
  /// Wall time all the measurements of one load may take.
  static let budgetNs: UInt64 = 10_000_000
  /// Rows (pixels of a 1x1 convolution) timed at most.
  static let maxRows = 1024
  /// Rounds of the two kernels, alternating, after one untimed run each: at
  /// least `rounds`, and on short ops as many as take about `targetNs` per
  /// kernel, at most `maxRounds` (a one-row layer of 7 us timed in 5 rounds
  /// went either way from load to load: the first rounds of a process run
  /// cold).
  static let rounds = 5
  static let maxRounds = 50
  static let targetNs: UInt64 = 200_000
  /// Dense must beat the sparse kernel's best run by this factor to replace
  /// it (and a probe must beat dense's by as much to be kept).
  static let denseMargin = 0.97

  static var enabled: Bool { ti_shim_sparse_measure_enabled() != 0 }

  /// Whether the budget of this load has time left (`time` returns nil once it has not).
  var budgetLeft: Bool { spent < SparseMeasure.budgetNs }

  private var spent: UInt64 = 0
  private var pool: ThreadPool? = nil

  /// The best times (ns) of the op on its sparse form `s` and on its dense
  /// kernel (`packed`: the float32 packed weights it would get, nil for
  /// int8, whose kernels pack at bind), or nil when either kernel does not
  /// bind or the budget is spent.
  mutating func time(
    _ node: Node, inputs: [TensorDesc?], outputs: [TensorDesc], data: [UnsafeMutableRawPointer?],
    sparse s: SparseWeights, packed: PackedWeights?
  ) -> (sparse: UInt64, dense: UInt64)? {
    guard spent < SparseMeasure.budgetNs, inputs.count >= 1, let x = inputs[0], outputs.count == 1, s.k > 0 else {
      return nil
    }
    let t0 = ti_shim_now_ns()
    defer { spent &+= ti_shim_now_ns() &- t0 }
    // Both kernels' time grows with the rows in step: time at most
    // `maxRows` of them (a 1x1 convolution's pixels as one row of an image).
    var inputs = inputs
    var outputs = outputs
    if x.count / s.k > SparseMeasure.maxRows {
      let r = SparseMeasure.maxRows
      if node.op == .conv2D, x.shape.count == 4, outputs[0].shape.count == 4 {
        inputs[0]!.shape = [1, 1, r, s.k]
        outputs[0].shape = [1, 1, r, s.n]
      } else if node.op == .fullyConnected, x.shape.count == 2, outputs[0].shape.count == 2 {
        inputs[0]!.shape = [r, s.k]
        outputs[0].shape = [r, s.n]
      }
    }
    // Scratch for the inputs that are not constants (the activations),
    // filled with a pattern of small values, and for the outputs.
    var owned: [UnsafeMutableRawPointer] = []
    defer { for p in owned { ti_shim_free(p) } }
    func scratch(_ d: TensorDesc, fill: Bool) -> UnsafeMutableRawPointer? {
      let bytes = max(d.nbytes, 1)
      guard let p = ti_shim_alloc(bytes) else { return nil }
      owned.append(p)
      guard fill else { return p }
      switch d.dtype {
      case .float32:
        let f = p.bindMemory(to: Float.self, capacity: bytes / 4)
        for i in 0..<(bytes / 4) { f[i] = Float(i & 15) * 0.125 - 1 }
      default:
        let b = p.bindMemory(to: UInt8.self, capacity: bytes)
        for i in 0..<bytes { b[i] = UInt8(truncatingIfNeeded: (i & 31) &+ 112) }
      }
      return p
    }
    var inData = data
    for i in 0..<inputs.count where inData[i] == nil {
      guard let d = inputs[i] else { continue }
      guard let p = scratch(d, fill: true) else { return nil }
      inData[i] = p
    }
    var outData: [UnsafeMutableRawPointer] = []
    for d in outputs {
      guard let p = scratch(d, fill: false) else { return nil }
      outData.append(p)
    }
    if pool == nil { pool = ThreadPool(threads: 1) }
    guard let pool else { return nil }
    func bind(_ sparse: SparseWeights?, _ packed: PackedWeights?) -> KernelFn? {
      let ctx = KernelContext(
        node: node, inputs: inputs, outputs: outputs, inputData: inData, outputData: outData, pool: pool,
        packed: packed, sparse: sparse)
      return try? Registry.bind(ctx)
    }
    guard let runSparse = bind(s, nil), let runDense = bind(nil, packed) else { return nil }
    func once(_ f: KernelFn) -> UInt64? {
      let a = ti_shim_now_ns()
      do throws(TinfError) { try f() } catch { return nil }
      return ti_shim_now_ns() &- a
    }
    guard let first = once(runSparse), let second = once(runDense) else { return nil }
    let per = max(min(first, second), 1)
    let rounds = max(SparseMeasure.rounds, min(SparseMeasure.maxRounds, Int(SparseMeasure.targetNs / per)))
    var best = (sparse: UInt64.max, dense: UInt64.max)
    for _ in 0..<rounds {
      guard let a = once(runSparse), let b = once(runDense) else { return nil }
      best = (min(best.sparse, a), min(best.dense, b))
    }
    return best
  }

  /// Whether the choice of sparse form `s` is to be timed: a probe (a form
  /// the level's rules do not take but that may pay here), or unstructured
  /// weights denser than half the threshold the rules chose them against.
  static func uncertain(_ s: SparseWeights) -> Bool {
    if s.probe { return true }
    guard let limit = s.threshold else { return false }
    return 1 - s.sparsity > limit / 2
  }

  /// The dense kernel's work on the op (multiply-adds), what the load
  /// measures first: the budget goes where the most time is at stake.
  static func work(_ x: TensorDesc?, _ s: SparseWeights) -> Int { (x?.count ?? 0) / max(s.k, 1) &* s.n &* s.k }
}
