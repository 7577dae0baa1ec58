import TinyInferShims

/// The sparse encoding of a constant in a .tinf file (format 1.1,
/// docs/format.md "Sparse constants"): a tensor of rank >= 1 seen as
/// `rows = dims[0]` rows of `cols` elements stores only its elements whose
/// bytes are not all zero:
///
///     rows x u32      entries per row
///     entries x u8    column deltas: column = previous column + delta
///                     (previous = -1 at a row's start), delta 1...255
///     zero padding    to a multiple of the element size
///     entries x elem  the elements' bytes
///
/// A gap of more than 255 columns is bridged by entries holding zero. The
/// loader checks everything (row counts summing to the entries, every
/// column inside its row, the exact size) and expands the constants into
/// one dense buffer before the graph sees them, so nothing after the loader
/// knows a tensor was stored sparse. Writers use it when it at most halves a
/// constant of 4 KiB or more (`ModelFile.write`), or, for a constant marked
/// `storeSparse` (its source stored it sparse), whenever it is smaller.
enum SparseEncoding {
  static let code: UInt8 = 1
  /// Smallest dense size the writer considers.
  static let minBytes = 4096
  /// A file's sparse constants may expand to at most this many times its
  /// data section (plus `expansionSlack`): a few bytes cannot ask for gigabytes.
  static let maxExpansion = 256
  static let expansionSlack = 1 << 20

  /// Bytes of the encoding with these sizes, or nil on overflow.
  static func encodedSize(rows: Int, entries: Int, elemSize: Int) -> Int? {
    guard let head = checkedMul(rows, 4), let valueBytes = checkedMul(entries, elemSize) else { return nil }
    let idxEnd = head &+ entries
    guard idxEnd >= head else { return nil }
    let padded = (idxEnd &+ elemSize &- 1) / elemSize &* elemSize
    let total = padded &+ valueBytes
    return total >= padded ? total : nil
  }

  /// The encoding of `bytes` (a tensor of `shape`, elements of `elemSize`
  /// bytes) when it takes at most half the dense size (`whenSmaller`: when
  /// it is smaller, whatever the size), else nil.
  static func encode(_ bytes: [UInt8], shape: [Int], elemSize: Int, whenSmaller: Bool = false)
    -> (data: [UInt8], entries: Int)?
  {
    guard bytes.count >= (whenSmaller ? 1 : minBytes), shape.count >= 1, elemSize >= 1, shape[0] >= 1,
      bytes.count % elemSize == 0
    else { return nil }
    let rows = shape[0]
    let count = bytes.count / elemSize
    guard count % rows == 0 else { return nil }
    let cols = count / rows
    func nonzero(_ e: Int) -> Bool {
      for b in 0..<elemSize where bytes[e &* elemSize &+ b] != 0 { return true }
      return false
    }
    // Count first, to decide.
    var counts = [UInt32](repeating: 0, count: rows)
    var entries = 0
    for r in 0..<rows {
      var prev = -1
      var n = 0
      for c in 0..<cols where nonzero(r &* cols &+ c) {
        n &+= (c &- prev &- 1) / 255  // fillers bridging long gaps
        n &+= 1
        prev = c
      }
      counts[r] = UInt32(truncatingIfNeeded: n)
      entries &+= n
    }
    guard let size = encodedSize(rows: rows, entries: entries, elemSize: elemSize),
      whenSmaller ? size < bytes.count : size * 2 <= bytes.count
    else {
      return nil
    }
    var out = [UInt8](repeating: 0, count: size)
    for r in 0..<rows {
      let v = counts[r]
      out[4 * r] = UInt8(truncatingIfNeeded: v)
      out[4 * r + 1] = UInt8(truncatingIfNeeded: v >> 8)
      out[4 * r + 2] = UInt8(truncatingIfNeeded: v >> 16)
      out[4 * r + 3] = UInt8(truncatingIfNeeded: v >> 24)
    }
    let idxBase = rows &* 4
    let valBase = (idxBase &+ entries &+ elemSize &- 1) / elemSize &* elemSize
    var q = 0
    for r in 0..<rows {
      var prev = -1
      for c in 0..<cols where nonzero(r &* cols &+ c) {
        while c &- prev > 255 {
          out[idxBase &+ q] = 255  // a filler: value bytes stay zero
          prev &+= 255
          q &+= 1
        }
        out[idxBase &+ q] = UInt8(truncatingIfNeeded: c &- prev)
        let src = (r &* cols &+ c) &* elemSize
        for b in 0..<elemSize { out[valBase &+ q &* elemSize &+ b] = bytes[src &+ b] }
        prev = c
        q &+= 1
      }
    }
    return (out, entries)
  }

  /// Checks every sparse constant of `def` against the data section and
  /// expands all constants into one new dense buffer (owned by the caller,
  /// freed with ti_shim_free), rewriting their ranges to it. Returns the
  /// buffer and its size.
  static func expand(_ def: inout GraphDef, data: UnsafeRawBufferPointer) throws(TinfError)
    -> (buffer: UnsafeMutableRawPointer, size: Int)
  {
    // Layout of the dense buffer, every constant checked first.
    var ranges: [Range<Int>?] = []
    var total = 0
    let limit = data.count > (Int.max - expansionSlack) / maxExpansion
      ? Int.max : data.count &* maxExpansion &+ expansionSlack
    for (i, t) in def.tensors.enumerated() {
      guard let r = t.constant else {
        ranges.append(nil)
        continue
      }
      guard r.lowerBound >= 0, r.upperBound <= data.count else {
        throw .format("constant tensor \(i) '\(t.name)': data range \(r) lies outside the data section")
      }
      var bytes = r.count
      if t.sparseEntries != nil {
        guard let dtype = t.dtype, let shape = t.shape, shape.count >= 1, let count = elementCount(shape),
          let dense = checkedMul(count, dtype.size), dense <= maxTensorBytes
        else { throw .format("sparse constant tensor \(i) '\(t.name)' needs a dtype and a shape of rank >= 1") }
        bytes = dense
      }
      let start = (total &+ ModelFile.alignment &- 1) / ModelFile.alignment &* ModelFile.alignment
      guard start <= limit, bytes <= limit &- start else {
        throw .format(
          "the sparse constants expand to more than \(maxExpansion) x the data section (\(data.count) bytes)")
      }
      ranges.append(start..<(start &+ bytes))
      total = start &+ bytes
    }
    guard let buffer = ti_shim_alloc_zeroed(max(total, 1)) else {
      throw TinfError(.outOfMemory, "cannot allocate \(total) bytes for the expanded sparse constants")
    }
    do throws(TinfError) {
      for (i, t) in def.tensors.enumerated() {
        guard let src = t.constant, let dst = ranges[i] else { continue }
        let out = buffer + dst.lowerBound
        let enc = UnsafeRawBufferPointer(rebasing: data[src])
        if let entries = t.sparseEntries {
          try decode(enc, entries: entries, shape: t.shape!, elemSize: t.dtype!.size, into: out, what: "\(i) '\(t.name)'")
        } else if let b = enc.baseAddress, !enc.isEmpty {
          out.copyMemory(from: b, byteCount: enc.count)
        }
        def.tensors[i].constant = dst
        def.tensors[i].sparseEntries = nil
      }
    } catch {
      ti_shim_free(buffer)
      throw error
    }
    return (buffer, total)
  }

  /// Checks and decodes one sparse constant into `out` (zeroed, dense size).
  static func decode(
    _ enc: UnsafeRawBufferPointer, entries: Int, shape: [Int], elemSize: Int, into out: UnsafeMutableRawPointer,
    what: String
  ) throws(TinfError) {
    let rows = shape[0]
    guard rows >= 1, let count = elementCount(shape) else { throw .format("sparse constant tensor \(what) has no rows") }
    let cols = count / rows
    guard let size = encodedSize(rows: rows, entries: entries, elemSize: elemSize), size == enc.count else {
      throw .format(
        "sparse constant tensor \(what): \(enc.count) bytes, but \(rows) rows and \(entries) entries take a different size")
    }
    guard let base = enc.baseAddress else { return }
    let idxBase = rows &* 4
    let valBase = (idxBase &+ entries &+ elemSize &- 1) / elemSize &* elemSize
    var q = 0
    for r in 0..<rows {
      let p = base + 4 &* r
      let n = Int(UInt32(p.load(as: UInt8.self)) | UInt32(p.load(fromByteOffset: 1, as: UInt8.self)) << 8
        | UInt32(p.load(fromByteOffset: 2, as: UInt8.self)) << 16 | UInt32(p.load(fromByteOffset: 3, as: UInt8.self)) << 24)
      guard n <= entries &- q else {
        throw .format("sparse constant tensor \(what): row \(r) claims \(n) entries, more than remain")
      }
      // The columns first (checked), then the values: typed copies for the
      // usual element sizes (a memcpy call per value took a tenth of a
      // sparse model's load).
      var col = -1
      for j in 0..<n {
        let delta = Int(base.load(fromByteOffset: idxBase &+ q &+ j, as: UInt8.self))
        col &+= delta
        guard delta >= 1, col < cols else {
          throw .format("sparse constant tensor \(what): row \(r) has a column index outside 0..<\(cols)")
        }
      }
      let row = out + r &* cols &* elemSize
      @inline(__always) func scatter<T>(_: T.Type) {
        var c = -1
        for j in 0..<n {
          c &+= Int(base.load(fromByteOffset: idxBase &+ q &+ j, as: UInt8.self))
          let v = (base + (valBase &+ (q &+ j) &* elemSize)).loadUnaligned(as: T.self)
          (row + c &* elemSize).storeBytes(of: v, as: T.self)
        }
      }
      switch elemSize {
      case 4: scatter(UInt32.self)
      case 2: scatter(UInt16.self)
      case 1: scatter(UInt8.self)
      case 8: scatter(UInt64.self)
      default:
        var c = -1
        for j in 0..<n {
          c &+= Int(base.load(fromByteOffset: idxBase &+ q &+ j, as: UInt8.self))
          (row + c &* elemSize).copyMemory(from: base + (valBase &+ (q &+ j) &* elemSize), byteCount: elemSize)
        }
      }
      q &+= n
    }
    guard q == entries else {
      throw .format("sparse constant tensor \(what): the rows hold \(q) entries, the header says \(entries)")
    }
  }
}
