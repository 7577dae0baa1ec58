/// Overflow-checked arithmetic for sizes that come from files: never traps.

/// The largest number of elements (and of bytes) one tensor may have
/// (4 Gi): a documented limit that also keeps products of dims far from Int
/// overflow.
public let maxTensorBytes = MemoryLayout<Int>.size == 8 ? Int(truncatingIfNeeded: Int64(1) << 32) : 1 << 30
/// The largest arena a session allocates by default (8 GiB); a hostile file
/// cannot make a session reserve more.
public let defaultMaxArenaBytes = MemoryLayout<Int>.size == 8 ? Int(truncatingIfNeeded: Int64(1) << 33) : 1 << 30
/// The magnitude limit of int attributes (2^30: far beyond any real size,
/// and safe from overflow on 32-bit targets).
public let attrLimit = 1 << 30
/// The largest rank of a tensor.
public let maxRank = 8

@inline(__always)
func checkedMul(_ a: Int, _ b: Int) -> Int? {
  let (r, o) = a.multipliedReportingOverflow(by: b)
  return o ? nil : r
}

@inline(__always)
func checkedAdd(_ a: Int, _ b: Int) -> Int? {
  let (r, o) = a.addingReportingOverflow(b)
  return o ? nil : r
}

/// Number of elements of a shape whose dims are all >= 1, or nil on overflow
/// or past `maxTensorBytes` elements.
func elementCount(_ shape: [Int]) -> Int? {
  var n = 1
  for d in shape {
    if d < 1 { return nil }
    guard let m = checkedMul(n, d), m <= maxTensorBytes else { return nil }
    n = m
  }
  return n
}

/// Shape as text, "[1, 28, 28, 3]".
func describe(_ shape: [Int]) -> String {
  var s = "["
  for (i, d) in shape.enumerated() {
    if i > 0 { s += ", " }
    s += "\(d)"
  }
  return s + "]"
}

/// Row-major strides of a shape (in elements).
func stridesOf(_ shape: [Int]) -> [Int] {
  var s = [Int](repeating: 1, count: shape.count)
  var acc = 1
  var i = shape.count - 1
  while i >= 0 {
    s[i] = acc
    acc = acc &* shape[i]
    i -= 1
  }
  return s
}

extension String {
  /// A String with the contents of a static string.
  init(_ s: StaticString) {
    self = String(decoding: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount), as: UTF8.self)
  }
}

/// A shape given as `rank` and a C array of dims: rank 0...maxRank, `dims`
/// non-NULL when rank > 0, each dim in 1...maxDim (at most `maxTensorBytes`,
/// so it fits Int on 32-bit targets too).
public func readShape(rank: Int, dims: UnsafePointer<Int64>?, maxDim: Int64 = Int64(maxTensorBytes))
  throws(TinfError) -> [Int]
{
  guard rank >= 0 && rank <= maxRank, rank == 0 || dims != nil else {
    throw .arg("rank must be 0...\(maxRank) with non-NULL dims (got \(rank))")
  }
  let limit = min(maxDim, Int64(maxTensorBytes))
  var shape: [Int] = []
  for i in 0..<rank {
    let d = dims![i]
    guard d >= 1 && d <= limit else { throw .arg("dims[\(i)] is \(d): each dimension must be in 1...\(limit)") }
    shape.append(Int(d))
  }
  return shape
}
