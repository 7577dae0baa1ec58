/// A bounds-checked little-endian reader over bytes that may be hostile.
/// Every read checks the remaining length first and throws BAD_FORMAT.
struct ByteReader {
  let base: UnsafeRawBufferPointer
  private(set) var pos: Int = 0
  /// What is being read, for error messages.
  var context: String = "model"

  init(_ base: UnsafeRawBufferPointer) { self.base = base }

  var remaining: Int { base.count - pos }

  mutating func need(_ n: Int) throws(TinfError) {
    guard n >= 0 && n <= remaining else {
      throw .format("truncated \(context): needs \(n) bytes at offset \(pos), \(remaining) left")
    }
  }

  mutating func u8() throws(TinfError) -> UInt8 {
    try need(1)
    defer { pos += 1 }
    return base[pos]
  }

  mutating func u16() throws(TinfError) -> UInt16 {
    try need(2)
    defer { pos += 2 }
    return UInt16(littleEndian: base.loadUnaligned(fromByteOffset: pos, as: UInt16.self))
  }

  mutating func u32() throws(TinfError) -> UInt32 {
    try need(4)
    defer { pos += 4 }
    return UInt32(littleEndian: base.loadUnaligned(fromByteOffset: pos, as: UInt32.self))
  }

  mutating func i32() throws(TinfError) -> Int32 { Int32(bitPattern: try u32()) }

  mutating func u64() throws(TinfError) -> UInt64 {
    try need(8)
    defer { pos += 8 }
    return UInt64(littleEndian: base.loadUnaligned(fromByteOffset: pos, as: UInt64.self))
  }

  mutating func i64() throws(TinfError) -> Int64 { Int64(bitPattern: try u64()) }

  mutating func f32() throws(TinfError) -> Float { Float(bitPattern: try u32()) }

  /// A count followed by at least `minBytesEach` bytes per element: refuses
  /// counts the remaining bytes cannot hold, so no header can make us
  /// allocate more than the file's size. `what` names the count in the
  /// message, built only when it is refused.
  mutating func count(minBytesEach: Int, max: Int, _ what: @autoclosure () -> String) throws(TinfError) -> Int {
    let c = Int(try u32())
    guard c <= max else { throw .format("\(what()): count \(c) exceeds the limit \(max)") }
    guard c <= remaining / Swift.max(minBytesEach, 1) else {
      throw .format("\(what()): count \(c) does not fit in the \(remaining) bytes left")
    }
    return c
  }

  /// A string: u32 byte length then UTF-8 bytes.
  mutating func string(max: Int = 1 << 20, _ what: @autoclosure () -> String) throws(TinfError) -> String {
    let n = try count(minBytesEach: 1, max: max, what())
    try need(n)
    let s = String(decoding: UnsafeRawBufferPointer(rebasing: base[pos..<(pos + n)]), as: UTF8.self)
    pos += n
    return s
  }

  mutating func skip(_ n: Int) throws(TinfError) {
    try need(n)
    pos += n
  }
}

/// Appends little-endian values to a byte array.
struct ByteWriter {
  var bytes: [UInt8] = []

  mutating func u8(_ v: UInt8) { bytes.append(v) }
  mutating func u16(_ v: UInt16) {
    bytes.append(UInt8(truncatingIfNeeded: v))
    bytes.append(UInt8(truncatingIfNeeded: v >> 8))
  }
  mutating func u32(_ v: UInt32) {
    for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(8 * i))) }
  }
  mutating func i32(_ v: Int32) { u32(UInt32(bitPattern: v)) }
  mutating func u64(_ v: UInt64) {
    for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(8 * i))) }
  }
  mutating func i64(_ v: Int64) { u64(UInt64(bitPattern: v)) }
  mutating func f32(_ v: Float) { u32(v.bitPattern) }
  mutating func string(_ s: String) {
    var s = s
    s.withUTF8 { buf in
      u32(UInt32(buf.count))
      bytes.append(contentsOf: buf)
    }
  }
  mutating func pad(to alignment: Int) {
    while bytes.count % alignment != 0 { bytes.append(0) }
  }
  mutating func patchU64(at offset: Int, _ v: UInt64) {
    for i in 0..<8 { bytes[offset + i] = UInt8(truncatingIfNeeded: v >> UInt64(8 * i)) }
  }
}
