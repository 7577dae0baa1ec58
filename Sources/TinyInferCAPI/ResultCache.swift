// The result cache of tinf_session_run (issue 18; include/tinyinfer.h,
// section "result cache"): a table of outputs keyed by a session's inputs,
// answered inside the run call so that a cached run costs the caller what an
// uncached one does. Python's tinyinfer.ResultCache is a shell over it.
//
// A session bound to a cache (tinf_session_set_result_cache) hashes its
// input buffers (ti_hash64_quick, seeded with the hash of the binding's signature:
// the caller's model key, every input's dtype and shape, every output's
// size), looks the hash up and compares the stored signature and input
// bytes with its own; a match copies the stored outputs into the session's
// output buffers. Otherwise the session runs and, when admitted, stores
// copies of its inputs and outputs (admission "repeat" asks its remembered
// keys after the run, so that their table's cache line is fetched meanwhile). Entries are kept least recently used
// first within max_bytes (inputs and outputs; the signature is not counted).
// One ti_mutex guards the table; hashing, running and the copies of an
// admission happen outside it, a hit's comparison and copy inside (an entry
// is never freed while read). The session's run lock is held throughout, so
// a tinf_session_free waits for a hit's copy as for a run.

import CTinyInfer
import TinyInferCore
import TinyInferShims

/// One stored result: `key` holds the binding's signature then every
/// input's bytes; `outputs` every output's bytes, in order.
final class ResultEntry {
  let hash: UInt64
  let key: UnsafeMutableRawPointer
  let keyBytes: Int
  let signatureBytes: Int
  let outputs: UnsafeMutableRawPointer?
  let outputBytes: Int
  /// Bytes counted against the bound: inputs and outputs.
  var charged: Int { keyBytes - signatureBytes + outputBytes }
  /// The list from least to most recently used (the table holds each
  /// entry's one retain, ResultCacheObject.table).
  @exclusivity(unchecked) unowned(unsafe) var older: ResultEntry? = nil
  @exclusivity(unchecked) unowned(unsafe) var newer: ResultEntry? = nil

  init(hash: UInt64, key: UnsafeMutableRawPointer, keyBytes: Int, signatureBytes: Int,
       outputs: UnsafeMutableRawPointer?, outputBytes: Int) {
    self.hash = hash
    self.key = key
    self.keyBytes = keyBytes
    self.signatureBytes = signatureBytes
    self.outputs = outputs
    self.outputBytes = outputBytes
  }

  deinit {
    ti_shim_free(key)
    ti_shim_free(outputs)
  }
}

/// What a lookup found.
enum ResultLookup {
  case hit
  /// Run, then store.
  case missAdmit
  /// Run, then ask `repeated` whether to store (admit_repeat).
  case missAsk
}

/// tinf_result_cache.
///
/// The tables are C (hash.c: ti_u64_map, open addressing on the 64-bit key
/// itself, no per-entry allocation, no rehash of the key; ti_seen_ring), and
/// the mutable fields are only touched under the mutex (so without dynamic
/// exclusivity checks), so that a miss, the common case of a workload
/// without repeats, costs the hash of the inputs, the lock and a few probes
/// (issue 18's budget: under 2% of a 4 us run), and the remembered keys
/// table is read after the run, its line prefetched before.
final class ResultCacheObject {
  let maxBytes: Int
  let admitRepeat: Bool
  let maxSeen: Int
  let keyMask: UInt64
  private let mutex: OpaquePointer?
  /// hash -> the entry (its bits; the table holds one retain of it).
  private let table: UnsafeMutablePointer<ti_u64_map>
  @exclusivity(unchecked) private unowned(unsafe) var oldest: ResultEntry? = nil
  @exclusivity(unchecked) private unowned(unsafe) var newest: ResultEntry? = nil
  @exclusivity(unchecked) private var bytes = 0
  @exclusivity(unchecked) private var hits: UInt64 = 0
  @exclusivity(unchecked) private var misses: UInt64 = 0
  @exclusivity(unchecked) private var evicted: UInt64 = 0
  @exclusivity(unchecked) private var tooLarge: UInt64 = 0
  @exclusivity(unchecked) private var collisions: UInt64 = 0
  @exclusivity(unchecked) private var deferred: UInt64 = 0
  /// admit_repeat: the hashes seen once and not stored, the maxSeen most
  /// recent (ti_seen_ring, hash.c).
  private let seen: UnsafeMutablePointer<ti_seen_ring>

  init?(maxBytes: Int, admitRepeat: Bool, maxSeen: Int, hashBits: Int) {
    guard let m = ti_shim_mutex_create() else { return nil }
    mutex = m
    table = UnsafeMutablePointer<ti_u64_map>.allocate(capacity: 1)
    seen = UnsafeMutablePointer<ti_seen_ring>.allocate(capacity: 1)
    ti_u64_map_init(table)
    ti_seen_ring_init(seen, maxSeen)
    self.maxBytes = maxBytes
    self.admitRepeat = admitRepeat
    self.maxSeen = maxSeen
    keyMask = hashBits >= 64 ? ~0 : (UInt64(1) << UInt64(hashBits)) &- 1
  }

  deinit {
    removeAll()
    table.deallocate()
    seen.deallocate()
    ti_shim_mutex_destroy(mutex)
  }

  // -- the table and the LRU list (callers hold the mutex) --------------------
  @inline(__always)
  private static func bits(_ e: ResultEntry) -> UInt64 {
    UInt64(UInt(bitPattern: Unmanaged.passUnretained(e).toOpaque()))
  }

  @inline(__always)
  private static func entry(_ v: UInt64) -> Unmanaged<ResultEntry> {
    Unmanaged<ResultEntry>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(v))!)
  }

  private func unlink(_ e: ResultEntry) {
    if let o = e.older { o.newer = e.newer } else { oldest = e.newer }
    if let n = e.newer { n.older = e.older } else { newest = e.older }
    e.older = nil
    e.newer = nil
  }

  private func pushNewest(_ e: ResultEntry) {
    e.older = newest
    e.newer = nil
    if let n = newest { n.newer = e } else { oldest = e }
    newest = e
  }

  /// Unlinks and releases the entry the table held under `v` (already removed from it).
  private func drop(_ v: UInt64) {
    let u = ResultCacheObject.entry(v)
    let e = u.takeUnretainedValue()
    unlink(e)
    bytes -= e.charged
    u.release()
  }

  private func removeAll() {
    var e = oldest
    while let x = e {
      e = x.newer
      Unmanaged.passUnretained(x).release()
    }
    ti_u64_map_free(table)
    oldest = nil
    newest = nil
    bytes = 0
    ti_seen_ring_clear(seen)
  }

  // -- a run ----------------------------------------------------------------
  /// Looks `h` up for `binding` (its session's inputs hashed to `h`): on a
  /// match copies the outputs into the session's output buffers.
  func lookup(_ h: UInt64, _ binding: ResultCacheBinding) -> ResultLookup {
    ti_shim_mutex_lock(mutex)
    defer { ti_shim_mutex_unlock(mutex) }
    let v = ti_u64_map_get(table, h)
    if v != 0 {
      let e = ResultCacheObject.entry(v).takeUnretainedValue()
      if binding.matches(e) {
        binding.copyOutputs(from: e.outputs)
        unlink(e)
        pushNewest(e)
        hits &+= 1
        return .hit
      }
      misses &+= 1
      collisions &+= 1
      return .missAdmit  // replaces the entry of the other input
    }
    misses &+= 1
    if !admitRepeat { return .missAdmit }
    // The remembered keys are asked after the run: the one random cache line
    // they read (a miss to memory when the model's weights have pushed the
    // table out of cache) arrives while the model runs.
    ti_seen_ring_prefetch(seen, h)
    return .missAsk
  }

  /// admit_repeat, after a miss's run: whether `h` was remembered (its
  /// repeat: store it); else remembers it (deferred).
  func repeated(_ h: UInt64) -> Bool {
    ti_shim_mutex_lock(mutex)
    defer { ti_shim_mutex_unlock(mutex) }
    if ti_seen_ring_take_or_remember(seen, h) != 0 { return true }
    deferred &+= 1
    return false
  }

  /// Stores copies of the binding's session's inputs and outputs under `h`
  /// (after a run), then evicts least recently used entries down to the bound.
  func admit(_ h: UInt64, _ binding: ResultCacheBinding) {
    let inputBytes = binding.inputBytes, outputBytes = binding.outputBytes
    guard inputBytes + outputBytes <= maxBytes else {
      ti_shim_mutex_lock(mutex)
      tooLarge &+= 1
      ti_shim_mutex_unlock(mutex)
      return
    }
    let keyBytes = binding.signatureBytes + inputBytes
    guard let key = ti_shim_alloc(keyBytes) else { return }
    var outputs: UnsafeMutableRawPointer? = nil
    if outputBytes > 0 {
      outputs = ti_shim_alloc(outputBytes)
      if outputs == nil {
        ti_shim_free(key)
        return
      }
    }
    binding.copyKey(to: key)
    if let outputs { binding.copyOutputs(to: outputs) }
    let e = ResultEntry(hash: h, key: key, keyBytes: keyBytes, signatureBytes: binding.signatureBytes,
                        outputs: outputs, outputBytes: outputBytes)
    let v = ResultCacheObject.bits(e)
    ti_shim_mutex_lock(mutex)
    defer { ti_shim_mutex_unlock(mutex) }
    var old: UInt64 = 0
    guard ti_u64_map_put(table, h, v, &old) != 0 else { return }  // out of memory: not stored
    _ = Unmanaged.passUnretained(e).retain()  // the table's
    if old != 0 { drop(old) }
    pushNewest(e)
    bytes += e.charged
    while bytes > maxBytes, let victim = oldest {
      drop(ti_u64_map_remove(table, victim.hash))
      evicted &+= 1
    }
  }

  /// Drops every entry and remembered key; returns how many entries.
  func clear() -> Int {
    ti_shim_mutex_lock(mutex)
    defer { ti_shim_mutex_unlock(mutex) }
    let n = table.pointee.count
    removeAll()
    return n
  }

  func stats(_ out: UnsafeMutablePointer<tinf_result_cache_counts>) {
    ti_shim_mutex_lock(mutex)
    defer { ti_shim_mutex_unlock(mutex) }
    out.pointee.hits = hits
    out.pointee.misses = misses
    out.pointee.evicted = evicted
    out.pointee.too_large = tooLarge
    out.pointee.collisions = collisions
    out.pointee.deferred = deferred
    out.pointee.entries = UInt64(table.pointee.count)
    out.pointee.bytes = UInt64(bytes)
    out.pointee.max_bytes = UInt64(maxBytes)
    out.pointee.seen = UInt64(seen.pointee.live)
  }
}

/// One input or output buffer of a bound session (fixed for the session's
/// life: the arena is planned once).
struct ResultCacheBuffer {
  var base: UnsafeMutableRawPointer?
  var count: Int
  /// Outputs: whether a hit copies into it (an output that is a constant
  /// holds its value already, and may be read-only mapped memory).
  var copy: Bool
}

/// A session's tie to a cache: the signature its keys start with, and its
/// buffers (read on every run without touching the graph).
final class ResultCacheBinding {
  let cache: ResultCacheObject
  let signature: UnsafeMutableRawPointer
  let signatureBytes: Int
  let signatureHash: UInt64
  private let buffers: UnsafeMutablePointer<ResultCacheBuffer>
  private let inputCount: Int
  private let outputCount: Int
  let inputBytes: Int
  let outputBytes: Int

  /// nil when out of memory.
  init?(cache: ResultCacheObject, session s: Session, key: UnsafeRawPointer?, keySize: Int) {
    self.cache = cache
    var sig: [UInt64] = [0x7469_6e66_2d72_6331, UInt64(keySize)]  // "tinf-rc1"
    var words = [UInt64](repeating: 0, count: (keySize + 7) / 8)
    if let key, keySize > 0 {
      words.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: key, byteCount: keySize) }
    }
    sig += words
    let g = s.graph
    for side in [g.inputs, g.outputs] {
      sig.append(UInt64(side.count))
      for t in side {
        let info = g.tensors[t]
        sig.append(UInt64(info.dtype.rawValue))
        sig.append(UInt64(info.shape.count))
        for d in info.shape { sig.append(UInt64(d)) }
      }
    }
    let n = sig.count * 8
    inputCount = g.inputs.count
    outputCount = g.outputs.count
    let nb = max(inputCount + outputCount, 1)
    guard let p = ti_shim_alloc(n) else { return nil }
    guard let bp = ti_shim_alloc(nb * MemoryLayout<ResultCacheBuffer>.stride) else {
      ti_shim_free(p)
      return nil
    }
    sig.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: n) }
    signatureBytes = n
    signature = p
    signatureHash = ti_hash64_quick(p, n, 0)
    buffers = bp.bindMemory(to: ResultCacheBuffer.self, capacity: nb)
    var inBytes = 0, outBytes = 0
    for i in 0..<inputCount {
      let b = s.inputBuffer(i)
      (buffers + i).initialize(to: ResultCacheBuffer(base: b.baseAddress, count: b.count, copy: true))
      inBytes += b.count
    }
    for i in 0..<outputCount {
      let b = s.outputBuffer(i)
      (buffers + inputCount + i).initialize(to: ResultCacheBuffer(
        base: UnsafeMutableRawPointer(mutating: b.baseAddress), count: b.count,
        copy: b.count > 0 && !g.tensors[g.outputs[i]].isConstant))
      outBytes += b.count
    }
    inputBytes = inBytes
    outputBytes = outBytes
  }

  deinit {
    ti_shim_free(signature)
    ti_shim_free(buffers)
  }

  /// Whether entry `e` holds this signature and the session's current input bytes.
  func matches(_ e: ResultEntry) -> Bool {
    guard e.signatureBytes == signatureBytes, e.keyBytes == signatureBytes + inputBytes,
      ti_bytes_equal(e.key, signature, signatureBytes) != 0
    else { return false }
    var off = signatureBytes
    for i in 0..<inputCount {
      let b = buffers[i]
      if b.count > 0 && ti_bytes_equal(e.key + off, b.base!, b.count) == 0 { return false }
      off += b.count
    }
    return true
  }

  /// A hit: the stored outputs into the session's output buffers.
  func copyOutputs(from src: UnsafeMutableRawPointer?) {
    guard let src else { return }
    var off = 0
    for i in 0..<outputCount {
      let b = buffers[inputCount + i]
      if b.copy { b.base!.copyMemory(from: src + off, byteCount: b.count) }
      off += b.count
    }
  }

  /// An admission: the session's outputs, in order, to `dst` (outputBytes).
  func copyOutputs(to dst: UnsafeMutableRawPointer) {
    var off = 0
    for i in 0..<outputCount {
      let b = buffers[inputCount + i]
      if b.count > 0 { (dst + off).copyMemory(from: b.base!, byteCount: b.count) }
      off += b.count
    }
  }

  /// An admission: the signature then the session's inputs to `dst` (signatureBytes + inputBytes).
  func copyKey(to dst: UnsafeMutableRawPointer) {
    dst.copyMemory(from: signature, byteCount: signatureBytes)
    var off = signatureBytes
    for i in 0..<inputCount {
      let b = buffers[i]
      if b.count > 0 { (dst + off).copyMemory(from: b.base!, byteCount: b.count) }
      off += b.count
    }
  }

  /// tinf_session_run on a bound session: a hit copies the stored outputs,
  /// a miss runs (and stores when admitted).
  func run(_ s: Session) throws(TinfError) {
    try s.withRunLock { () throws(TinfError) in
      var h = signatureHash
      for i in 0..<inputCount {
        let b = buffers[i]
        h = ti_hash64_quick(b.base, b.count, h)
      }
      h &= cache.keyMask
      switch cache.lookup(h, self) {
      case .hit:
        return
      case .missAsk:
        try s.runHoldingLock()
        if cache.repeated(h) { cache.admit(h, self) }
      case .missAdmit:
        try s.runHoldingLock()
        cache.admit(h, self)
      }
    }
  }
}

private func resultCache(_ p: OpaquePointer?) -> ResultCacheObject? {
  guard let p else { return nil }
  return Unmanaged<ResultCacheObject>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
}

/// The largest bound and remembered-key count accepted (2^48 bytes; 2^26 keys).
private let maxBound = 1 << 48
private let maxSeenLimit = 1 << 26

@c @implementation
public func tinf_result_cache_create(
  _ maxBytes: Int, _ admit: Int32, _ maxSeen: Int, _ hashBits: Int32, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> tinf_status {
  guard let out else { return nullArg("tinf_result_cache_create", "out_cache") }
  guard maxBytes >= 0 && maxBytes <= maxBound else {
    return fail(.invalidArgument, "tinf_result_cache_create: max_bytes \(maxBytes) out of range 0...2^48")
  }
  guard admit == Int32(TINF_RESULT_CACHE_ADMIT_ALWAYS.rawValue) || admit == Int32(TINF_RESULT_CACHE_ADMIT_REPEAT.rawValue)
  else {
    return fail(.invalidArgument, "tinf_result_cache_create: admit must be TINF_RESULT_CACHE_ADMIT_ALWAYS or _REPEAT, got \(admit)")
  }
  guard maxSeen >= 1 && maxSeen <= maxSeenLimit else {
    return fail(.invalidArgument, "tinf_result_cache_create: max_seen \(maxSeen) out of range 1...2^26")
  }
  guard hashBits >= 0 && hashBits <= 64 else {
    return fail(.invalidArgument, "tinf_result_cache_create: hash_bits \(hashBits) out of range 0...64")
  }
  guard let c = ResultCacheObject(maxBytes: maxBytes, admitRepeat: admit == Int32(TINF_RESULT_CACHE_ADMIT_REPEAT.rawValue),
                                  maxSeen: maxSeen, hashBits: Int(hashBits))
  else { return fail(.outOfMemory, "tinf_result_cache_create: out of memory") }
  out.pointee = retain(c)
  return ok()
}

@c @implementation
public func tinf_result_cache_free(_ cache: OpaquePointer?) {
  guard let cache else { return }
  Unmanaged<ResultCacheObject>.fromOpaque(UnsafeRawPointer(cache)).release()
}

@c @implementation
public func tinf_result_cache_clear(_ cache: OpaquePointer?, _ dropped: UnsafeMutablePointer<Int>?) -> tinf_status {
  guard let c = resultCache(cache) else { return nullArg("tinf_result_cache_clear", "cache") }
  let n = c.clear()
  dropped?.pointee = n
  return ok()
}

@c @implementation
public func tinf_result_cache_stats(_ cache: OpaquePointer?, _ out: UnsafeMutablePointer<tinf_result_cache_counts>?)
  -> tinf_status
{
  guard let c = resultCache(cache) else { return nullArg("tinf_result_cache_stats", "cache") }
  guard let out else { return nullArg("tinf_result_cache_stats", "out_stats") }
  c.stats(out)
  return ok()
}

@c @implementation
public func tinf_session_set_result_cache(
  _ session: OpaquePointer?, _ cache: OpaquePointer?, _ key: UnsafeRawPointer?, _ keySize: Int
) -> tinf_status {
  guard let s = sessionHandle(session) else { return nullArg("tinf_session_set_result_cache", "session") }
  guard let c = resultCache(cache) else {
    s.resultCache = nil
    return ok()
  }
  guard keySize >= 0 && keySize <= 256 else {
    return fail(.invalidArgument, "tinf_session_set_result_cache: key_size \(keySize) out of range 0...256")
  }
  guard key != nil || keySize == 0 else { return nullArg("tinf_session_set_result_cache", "key") }
  guard s.session.variables == nil else {
    return fail(.invalidArgument, "tinf_session_set_result_cache: the model has variables (its outputs depend on "
      + "earlier runs), so equal inputs need not give equal outputs")
  }
  guard let b = ResultCacheBinding(cache: c, session: s.session, key: key, keySize: keySize) else {
    return fail(.outOfMemory, "tinf_session_set_result_cache: out of memory")
  }
  s.resultCache = b
  return ok()
}
