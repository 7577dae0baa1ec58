import TinyInferShims

/// The prepack cache's file (docs/caching.md): a model's float32 weights as
/// packed for PackedGemm, written once by the caller (the C API, Python's
/// tinyinfer.prepack_cache) after a load that packed them, and mapped
/// read-only by later loads instead of packing again.
///
/// The core only reads and writes images; where they live, their names,
/// keys, atomic writes and the size bound belong to the caller. An image is
/// never trusted: `PrepackImage.adopt` maps it and checks, before any kernel
/// may read it, the magic, the layout version, the exact size, the caller's
/// key, the CPU level, the model's file size and graph section, one entry
/// per packed op with that op's index and [n, k], every entry's range and
/// alignment, a checksum of everything past the first 32 bytes
/// (`ti_hash64_chunked`), and samples of every entry against the model's own
/// weights. Any failure packs the weights as without an image, and
/// `Model.prepackNote` says why.
///
/// Layout (little-endian):
///
/// | offset | type | field |
/// |---|---|---|
/// | 0 | 8 bytes | magic `TINFPACK` |
/// | 8 | u32 | layout version (`PrepackImage.layoutVersion`) |
/// | 12 | u32 | header size (256) |
/// | 16 | u64 | image size (the whole file) |
/// | 24 | u64 | checksum of bytes 32 ..< image size (`ti_hash64_chunked`) |
/// | 32 | u32 | entries |
/// | 36 | u32 | key length (at most 64) |
/// | 40 | 64 bytes | key (the caller's; zero padded) |
/// | 104 | 16 bytes | CPU level name (`tinf_cpu_isa`; zero padded) |
/// | 120 | u64 | the model's file size |
/// | 128 | u64 | checksum of the model's graph section |
/// | 136 | u32 | scanned ops |
/// | 140 | 116 bytes | zero |
/// | 256 | entries x 32 | op index (u32), zero (u32), n, k, offset of the packed floats (u64 each; a multiple of 64) |
/// | | scanned x 4 | op index (u32) of each op whose weights the writing load scanned for the sparse kernels and kept dense without packing them (a one-row classifier head) |
/// | | | the packed floats of each entry, at its offset |
public enum PrepackImage {
  /// Bumped whenever the image layout or the packed layout of PackedGemm
  /// changes, or the rules that decide which ops it lists (packed dense
  /// rather than sparse: SparseGemm.pays). 2: float32 tiles from 55% zeros
  /// on layers of at most 128 input channels. 3: int8 1x1 convolutions
  /// with the float32 output stage sparse from 65% zeros at AVX2. 4: float32
  /// 2:4 weights of several rows on the 2:4 kernel at AVX2. 5: the
  /// checksum in chunks (`ti_hash64_chunked`), shared by the load and its
  /// checksum thread. 6: FullyConnected weights of 1 MB and more on one row
  /// are not packed (`FullyConnectedKernel.packsAtLoad`). (int8 ops are
  /// never listed, whatever kernel they take: the int8 2:4 kernel of stop
  /// 34 left the rule as it was.) 7: the scanned ops (a cached load
  /// skips their sparse-weight scan too: MobileNetV2's 5 MB head was read
  /// up to its density threshold on every load). Scanned ops may be int8
  /// ones, so from 7 on a change to the rules that choose a sparse kernel
  /// for any op (`SparseGemm.prepare`), float32 or int8, needs a new version.
  /// 8: close sparse-or-dense choices timed at load (`SparseMeasure`); an
  /// op made dense there is listed with its packed weights, and a load
  /// from an image that lists ops does not time again. 9: probes (forms
  /// the rules do not take, timed at load: float32 2:4 weights at AVX-512,
  /// one-row float32 weights of 65-90% zeros or under 1 MiB) and one-row
  /// ops near their threshold timed; the int8 2:4 kernel wherever the int8
  /// kernels are AVX2's. An op the image does not list ran sparse in its
  /// writing load, so a cached load takes a probe it does not list sparse.
  public static let layoutVersion: UInt32 = 9
  static let headerSize = 256
  static let entrySize = 32
  static let maxKey = 64
  static let magic: [UInt8] = [0x54, 0x49, 0x4E, 0x46, 0x50, 0x41, 0x43, 0x4B]  // TINFPACK

  /// What the model knows of itself that an image must match.
  struct Facts {
    let fileSize: Int
    let graphHash: UInt64
  }

  /// The CPU level's name, zero padded to 16 bytes.
  static var levelName: [UInt8] {
    var out = [UInt8](repeating: 0, count: 16)
    if let p = ti_cpu_level_name(ti_cpu_level()) {
      var i = 0
      while i < 15, p[i] != 0 {
        out[i] = UInt8(bitPattern: p[i])
        i += 1
      }
    }
    return out
  }

  /// The result of packing a model's weights, from an image or not.
  struct Outcome {
    var weights: [PackedWeights?]
    var state: PrepackState
    var note: String
    var fromImage: Int
    var packedNow: Int
    var mapping: (UnsafeMutableRawPointer, Int)?
  }

  /// An image mapped when a load starts (`open`), before the graph is
  /// parsed: its checksum is computed on a thread of its own meanwhile
  /// (`ti_hash64_start`; on a 2-core machine this hid most of the 0.3-0.7
  /// ms a cached MobileNetV2 load spent reading its 6.6 MB image), joined
  /// by `check`, which hashes the chunks the thread has not reached. Nothing in it is trusted before `check` has passed. Every
  /// Opened is given to `adopt` or to `close` exactly once: both join the
  /// thread before the mapping can go away.
  struct Opened {
    let request: PrepackRequest
    /// The mapping, or nil (then `refusal` says why).
    var mapping: (UnsafeMutableRawPointer, Int)?
    var refusal: (String, absent: Bool)
    /// The checksum's thread, or nil (not started, or already joined).
    var job: OpaquePointer?
    var checksum: UInt64?

    /// The checksum of bytes 32 ..< size (`ti_hash64_chunked`): shared with the thread,
    /// or computed here when none was started. Nil when there is no mapping.
    mutating func sum() -> UInt64? {
      if let checksum { return checksum }
      guard let (p, n) = mapping, n >= 32 else { return nil }
      let v: UInt64
      if let job {
        v = ti_hash64_finish(job)
        self.job = nil
      } else {
        v = ti_hash64_chunked(p + 32, n &- 32, 0)
      }
      checksum = v
      return v
    }

    /// Joins the thread and unmaps (the image is not used).
    mutating func close() {
      if let job {
        _ = ti_hash64_finish(job)
        self.job = nil
      }
      if let (p, n) = mapping { ti_shim_unmap(p, n) }
      mapping = nil
    }
  }

  /// Images smaller than this are checksummed by `check` itself: a thread
  /// costs more to start than hashing them (about 20 GB/s from memory).
  static let hashThreadMin = 1 << 20

  /// Maps the image of `r` and starts its checksum (see `Opened`).
  static func open(_ r: PrepackRequest) -> Opened {
    var o = Opened(request: r, mapping: nil, refusal: ("", absent: false), job: nil, checksum: nil)
    guard r.key.count <= maxKey else {
      o.refusal = ("the key is longer than \(maxKey) bytes", absent: false)
      return o
    }
    guard !r.imagePath.utf8.contains(0) else {
      o.refusal = ("the image path contains a NUL byte", absent: false)
      return o
    }
    let (p, size, err) = mapFile(r.imagePath)
    guard let p else {
      if err == 0 {
        o.refusal = ("the image is empty (truncated)", absent: false)
      } else {
        // ENOENT, ENOTDIR (a part of the folder's path is a file): there is no image.
        o.refusal = ("no image: \(String(cString: ti_shim_file_error(err)))", absent: err == 2 || err == 20)
      }
      return o
    }
    o.mapping = (p, size)
    // Only an image whose header says it is one and has its exact size is
    // worth reading in the background: `check` refuses the others first.
    let base = UnsafeRawPointer(p)
    if size >= hashThreadMin, (0..<8).allSatisfy({ base.load(fromByteOffset: $0, as: UInt8.self) == magic[$0] }),
      load64(base, 16) == UInt64(size)
    {
      o.job = ti_hash64_start(base + 32, size &- 32, 0)
    }
    return o
  }

  /// Packs `matrices` (one per op; nil for ops without packed weights),
  /// taking them from the image `opened` when it is valid (it is unmapped
  /// otherwise); `ready`: ops packed already (by the load's timing of
  /// sparse-or-dense choices, `SparseMeasure`), used as they are when the
  /// image is not.
  static func adopt(
    _ matrices: [(weights: UnsafePointer<Float>, n: Int, k: Int)?], opened: Opened?, facts: Facts,
    ready: [Int: PackedWeights] = [:]
  ) -> Outcome {
    var out = Outcome(weights: [], state: .notRequested, note: "", fromImage: 0, packedNow: 0, mapping: nil)
    if var o = opened {
      switch map(&o, matrices, facts) {
      case .mapped(let m):
        let base = UnsafeRawPointer(m.0)
        var e = 0
        for mat in matrices {
          guard let mat else {
            out.weights.append(nil)
            continue
          }
          let off = Int(truncatingIfNeeded: load64(base, headerSize &+ e &* entrySize &+ 24))
          let p = (base + off).assumingMemoryBound(to: Float.self)
          out.weights.append(PackedWeights(borrowing: p, n: mat.n, k: mat.k))
          e &+= 1
        }
        out.state = .fromImage
        out.fromImage = e
        out.mapping = m
        return out
      case .refused(let text, let absent):
        out.state = absent ? .absent : .rejected
        out.note = text
      }
    }
    for (i, mat) in matrices.enumerated() {
      let p = mat.flatMap { m in ready[i] ?? PackedWeights(m.weights, n: m.n, k: m.k) }
      if p != nil { out.packedNow &+= 1 }
      out.weights.append(p)
    }
    return out
  }

  /// The ops the image `o` has entries or scanned ops for (by op index, of
  /// `opCount` ops), read from its tables without checking the rest: the
  /// load skips the sparse-weight scan of these ops (an image lists only
  /// ops a load with the same key kept dense). Nothing is trusted here:
  /// `adopt` checks the image before use, and a load whose image is not
  /// used scans the skipped ops after all (`Model`). All false when there
  /// is no readable image.
  static func listedOps(_ o: Opened, opCount: Int) -> [Bool] {
    var listed = [Bool](repeating: false, count: opCount)
    guard let (p, size) = o.mapping else { return listed }
    let base = UnsafeRawPointer(p)
    guard size >= headerSize, (0..<8).allSatisfy({ base.load(fromByteOffset: $0, as: UInt8.self) == magic[$0] }),
      load32(base, 8) == layoutVersion
    else { return listed }
    let count = Int(load32(base, 32))
    let scanned = Int(load32(base, 136))
    guard count <= opCount, scanned <= opCount, let end = checkedAdd(headerSize, count &* entrySize &+ scanned &* 4),
      end <= size
    else { return listed }
    for e in 0..<count {
      let op = Int(load32(base, headerSize &+ e &* entrySize))
      if op < opCount { listed[op] = true }
    }
    for e in 0..<scanned {
      let op = Int(load32(base, headerSize &+ count &* entrySize &+ e &* 4))
      if op < opCount { listed[op] = true }
    }
    return listed
  }

  /// Maps `path` (no NUL byte) read-only: (address or nil, size, errno of a failure; 0 for an empty file).
  private static func mapFile(_ path: String) -> (UnsafeMutableRawPointer?, Int, Int32) {
    var path = path
    var size = 0
    var err: Int32 = 0
    let p = path.withUTF8 { buf -> UnsafeMutableRawPointer? in
      var cpath = [CChar](repeating: 0, count: buf.count + 1)
      for i in 0..<buf.count { cpath[i] = CChar(bitPattern: buf[i]) }
      return ti_shim_map_file(cpath, &size, &err)
    }
    return (p, size, err)
  }

  enum Mapping {
    case mapped((UnsafeMutableRawPointer, Int))
    /// Why not; `absent`: the file does not exist.
    case refused(String, absent: Bool)
  }

  /// Checks everything of the opened image (see the type's comment); it is
  /// closed (unmapped) when refused.
  private static func map(
    _ o: inout Opened, _ matrices: [(weights: UnsafePointer<Float>, n: Int, k: Int)?], _ facts: Facts
  ) -> Mapping {
    guard let m = o.mapping else { return .refused(o.refusal.0, absent: o.refusal.absent) }
    if let why = check(UnsafeRawPointer(m.0), m.1, o.request, matrices, facts, sum: { o.sum() }) {
      o.close()
      return .refused(why, absent: false)
    }
    // The thread (if any) was joined by `sum`.
    return .mapped(m)
  }

  /// nil when the image is valid for this model and key, else the reason.
  /// `sum`: the checksum of bytes 32 ..< size (Opened.sum).
  static func check(
    _ base: UnsafeRawPointer, _ size: Int, _ r: PrepackRequest,
    _ matrices: [(weights: UnsafePointer<Float>, n: Int, k: Int)?], _ facts: Facts, sum: () -> UInt64?
  ) -> String? {
    guard size >= headerSize else { return "truncated: \(size) bytes, less than the header" }
    for i in 0..<8 where base.load(fromByteOffset: i, as: UInt8.self) != magic[i] {
      return "not a prepack image (bad magic)"
    }
    let version = load32(base, 8)
    guard version == layoutVersion else { return "layout version \(version), this library writes \(layoutVersion)" }
    guard load32(base, 12) == UInt32(headerSize) else { return "bad header size" }
    let declared = load64(base, 16)
    guard declared == UInt64(size) else { return "truncated or extended: \(size) bytes, the header says \(declared)" }
    // Cheap checks first: a foreign image is refused without reading it all.
    let keyLen = Int(load32(base, 36))
    guard keyLen == r.key.count, r.key.indices.allSatisfy({ base.load(fromByteOffset: 40 &+ $0, as: UInt8.self) == r.key[$0] })
    else { return "written for another key (another model, options, library version or CPU level)" }
    let level = levelName
    for i in 0..<16 where base.load(fromByteOffset: 104 &+ i, as: UInt8.self) != level[i] {
      return "written for another CPU level"
    }
    guard load64(base, 120) == UInt64(facts.fileSize), load64(base, 128) == facts.graphHash else {
      return "written for another model (file size or graph differs)"
    }
    let wanted = matrices.compactMap { $0 }
    let count = Int(load32(base, 32))
    guard count == wanted.count else { return "\(count) packed ops, the model has \(wanted.count)" }
    let scanned = Int(load32(base, 136))
    guard scanned <= matrices.count, let tableEnd = checkedAdd(headerSize, count &* entrySize &+ scanned &* 4),
      tableEnd <= size
    else { return "truncated entry table" }
    for e in 0..<scanned {
      let op = Int(load32(base, headerSize &+ count &* entrySize &+ e &* 4))
      guard op < matrices.count, matrices[op] == nil else { return "scanned op \(op) is not an unpacked op of this model" }
    }
    var e = 0
    for (op, mat) in matrices.enumerated() {
      guard let mat else { continue }
      let at = headerSize &+ e &* entrySize
      let off = load64(base, at &+ 24)
      guard Int(load32(base, at)) == op, load64(base, at &+ 8) == UInt64(mat.n), load64(base, at &+ 16) == UInt64(mat.k)
      else { return "entry \(e) is not op \(op) [\(mat.n), \(mat.k)]" }
      guard let bytes = checkedMul(PackedGemm.packedCount(n: mat.n, k: mat.k), 4), off % 64 == 0,
        off >= UInt64(tableEnd), off <= UInt64(size), UInt64(bytes) <= UInt64(size) &- off
      else { return "entry \(e) lies outside the image" }
      e &+= 1
    }
    guard sum() == load64(base, 24) else { return "checksum mismatch (corrupt)" }
    // Samples of every entry against the model's weights (the packed layout
    // of PackedGemm.pack): catches an image of another model that passed the
    // checks above. The first 8 and the last 8 weights: two pages of the
    // model's file at most (a cached load reads its weights nowhere else;
    // 16 samples spread over each tensor faulted about 500 pages of
    // MobileNetV2's file in, 0.15 ms).
    e = 0
    for mat in wanted {
      let off = Int(truncatingIfNeeded: load64(base, headerSize &+ e &* entrySize &+ 24))
      let packed = (base + off).assumingMemoryBound(to: UInt32.self)
      let total = mat.n &* mat.k
      let samples = min(total, 16)
      for s in 0..<samples {
        let idx = s < samples / 2 ? s : total &- (samples &- s)
        let row = idx / mat.k
        let col = idx &- row &* mat.k
        let at = (row / PackedGemm.nr) &* mat.k &* PackedGemm.nr &+ col &* PackedGemm.nr &+ row % PackedGemm.nr
        let want = UnsafeRawPointer(mat.weights).load(fromByteOffset: idx &* 4, as: UInt32.self)
        guard packed[at] == want else { return "entry \(e) does not hold this model's weights" }
      }
      e &+= 1
    }
    return nil
  }

  @inline(__always)
  static func load32(_ p: UnsafeRawPointer, _ at: Int) -> UInt32 {
    UInt32(littleEndian: p.loadUnaligned(fromByteOffset: at, as: UInt32.self))
  }

  @inline(__always)
  static func load64(_ p: UnsafeRawPointer, _ at: Int) -> UInt64 {
    UInt64(littleEndian: p.loadUnaligned(fromByteOffset: at, as: UInt64.self))
  }

  @inline(__always)
  static func store32(_ p: UnsafeMutableRawPointer, _ at: Int, _ v: UInt32) {
    p.storeBytes(of: v.littleEndian, toByteOffset: at, as: UInt32.self)
  }

  @inline(__always)
  static func store64(_ p: UnsafeMutableRawPointer, _ at: Int, _ v: UInt64) {
    p.storeBytes(of: v.littleEndian, toByteOffset: at, as: UInt64.self)
  }
}

/// Where a model's packed weights came from.
public enum PrepackState: Int32, Sendable {
  /// No image was asked for: weights packed at load.
  case notRequested = 0
  /// Mapped from a valid image: nothing packed.
  case fromImage = 1
  /// The image file does not exist: weights packed at load.
  case absent = 2
  /// The image exists but failed a check (`Model.prepackNote`): weights packed at load.
  case rejected = 3
}

/// An image to take packed weights from (`Model.load(..., prepack:)`).
public struct PrepackRequest: Sendable {
  public var imagePath: String
  /// The caller's key (at most 64 bytes): an image written under another key is refused.
  public var key: [UInt8]

  public init(imagePath: String, key: [UInt8]) {
    self.imagePath = imagePath
    self.key = key
  }
}

extension Model {
  /// Bytes of this model's prepack image (header, entries, packed floats), or
  /// 0 when it packed no weights (nothing to cache).
  public var prepackImageSize: Int {
    var off = PrepackImage.headerSize &+ packedOpCount &* PrepackImage.entrySize &+ scannedOps.count &* 4
    guard packedOpCount > 0 else { return 0 }
    for p in packed {
      guard let p else { continue }
      off = (off &+ 63) & ~63
      off &+= p.bytes
    }
    return off
  }

  private var packedOpCount: Int { packed.reduce(0) { $0 &+ ($1 == nil ? 0 : 1) } }

  /// The image's scanned ops: FullyConnected and Conv2D ops with constant
  /// weights that this load kept on the dense kernels without packing them
  /// (their sparse-weight scan found them dense).
  private var scannedOps: [Int] {
    var out: [Int] = []
    for (k, node) in graph.nodes.enumerated() where packed[k] == nil && sparse[k] == nil {
      guard node.op == .fullyConnected || node.op == .conv2D, node.inputs.count >= 2, node.inputs[1] >= 0,
        graph.tensors[node.inputs[1]].isConstant
      else { continue }
      out.append(k)
    }
    return out
  }

  /// Writes the prepack image for `key` into `dst` (exactly `prepackImageSize` bytes).
  public func writePrepackImage(key: [UInt8], into dst: UnsafeMutableRawBufferPointer) throws(TinfError) {
    let size = prepackImageSize
    guard size > 0 else { throw TinfError(.invalidState, "the model packed no weights: there is no image to write") }
    guard key.count <= PrepackImage.maxKey else { throw .arg("the key is longer than \(PrepackImage.maxKey) bytes") }
    guard let base = dst.baseAddress, dst.count == size else {
      throw .arg("the image takes exactly \(size) bytes, the buffer has \(dst.count)")
    }
    base.initializeMemory(as: UInt8.self, repeating: 0, count: size)
    for (i, b) in PrepackImage.magic.enumerated() { base.storeBytes(of: b, toByteOffset: i, as: UInt8.self) }
    PrepackImage.store32(base, 8, PrepackImage.layoutVersion)
    PrepackImage.store32(base, 12, UInt32(PrepackImage.headerSize))
    PrepackImage.store64(base, 16, UInt64(size))
    PrepackImage.store32(base, 32, UInt32(packedOpCount))
    PrepackImage.store32(base, 36, UInt32(key.count))
    for (i, b) in key.enumerated() { base.storeBytes(of: b, toByteOffset: 40 &+ i, as: UInt8.self) }
    for (i, b) in PrepackImage.levelName.enumerated() { base.storeBytes(of: b, toByteOffset: 104 &+ i, as: UInt8.self) }
    PrepackImage.store64(base, 120, UInt64(fileSize))
    PrepackImage.store64(base, 128, graphHash)
    let scanned = scannedOps
    PrepackImage.store32(base, 136, UInt32(scanned.count))
    for (i, op) in scanned.enumerated() {
      PrepackImage.store32(base, PrepackImage.headerSize &+ packedOpCount &* PrepackImage.entrySize &+ i &* 4, UInt32(op))
    }
    var off = PrepackImage.headerSize &+ packedOpCount &* PrepackImage.entrySize &+ scanned.count &* 4
    var e = 0
    for (op, p) in packed.enumerated() {
      guard let p else { continue }
      off = (off &+ 63) & ~63
      let at = PrepackImage.headerSize &+ e &* PrepackImage.entrySize
      PrepackImage.store32(base, at, UInt32(op))
      PrepackImage.store64(base, at &+ 8, UInt64(p.n))
      PrepackImage.store64(base, at &+ 16, UInt64(p.k))
      PrepackImage.store64(base, at &+ 24, UInt64(off))
      (base + off).copyMemory(from: UnsafeRawPointer(p.ptr), byteCount: p.bytes)
      off &+= p.bytes
      e &+= 1
    }
    PrepackImage.store64(base, 24, ti_hash64_chunked(base + 32, size &- 32, 0))
  }
}
