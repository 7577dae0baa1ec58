@testable import TinyInferCore
import XCTest

/// The 16-lane fixed-point helpers (FixedPointVector.swift) against the
/// scalar ones, lane by lane: edge values (INT32_MIN * INT32_MIN, which
/// saturates, and the other int32 ends) and pseudo-random ones.
final class FixedPointVectorTests: XCTestCase {
  static let edges: [Int32] = [
    Int32.min, Int32.min + 1, -(1 << 30), -65536, -12345, -2, -1, 0, 1, 2, 3, 12345, 1 << 20, 1 << 30,
    (1 << 30) + 1, Int32.max - 1, Int32.max,
  ]

  /// xorshift64*: deterministic, no Foundation.
  struct Rng {
    var s: UInt64 = 0x9E37_79B9_7F4A_7C15
    mutating func next() -> UInt64 {
      s ^= s >> 12
      s ^= s << 25
      s ^= s >> 27
      return s &* 2_685_821_657_736_338_717
    }
    mutating func int32() -> Int32 {
      let r = next()
      switch r % 4 {
      case 0: return FixedPointVectorTests.edges[Int((r >> 8) % UInt64(FixedPointVectorTests.edges.count))]
      case 1: return Int32(truncatingIfNeeded: Int64((r >> 8) % 4001) - 2000)
      default: return Int32(truncatingIfNeeded: r >> 16)
      }
    }
  }

  func testSrdhmAndRdbpotMatchScalar() {
    var rng = Rng()
    // Every pair of edge values.
    var pairs: [(Int32, Int32)] = []
    for a in Self.edges { for b in Self.edges { pairs.append((a, b)) } }
    for _ in 0..<200_000 { pairs.append((rng.int32(), rng.int32())) }
    var i = 0
    while i < pairs.count {
      var a = SIMD16<Int32>()
      var b = SIMD16<Int32>()
      var e = SIMD16<Int32>()
      for l in 0..<16 {
        let p = pairs[(i + l) % pairs.count]
        a[l] = p.0
        b[l] = p.1
        e[l] = Int32(truncatingIfNeeded: (i + l) % 32)
      }
      let s = FixedPoint.srdhm(a, b)
      let ns = FixedPoint.srdhmNoSaturation(a, b)
      let mask = (SIMD16<Int32>(repeating: 1) &<< e) &- 1
      let r = FixedPoint.rdbpot(a, e, mask: mask)
      for l in 0..<16 {
        XCTAssertEqual(s[l], FixedPoint.srdhm(a[l], b[l]), "srdhm(\(a[l]), \(b[l]))")
        if !(a[l] == Int32.min && b[l] == Int32.min) {
          XCTAssertEqual(ns[l], FixedPoint.srdhm(a[l], b[l]), "srdhmNoSaturation(\(a[l]), \(b[l]))")
        }
        XCTAssertEqual(r[l], FixedPoint.rdbpot(a[l], e[l]), "rdbpot(\(a[l]), \(e[l]))")
      }
      i += 16
    }
    XCTAssertEqual(FixedPoint.srdhm(SIMD16(repeating: Int32.min), SIMD16(repeating: Int32.min)), SIMD16(repeating: Int32.max))
  }

  func testMultiplyByQuantizedMultiplierMatchesScalar() {
    var rng = Rng()
    for factor in [1e-9, 0.0003, 0.01, 0.3, 0.5, 0.75, 0.999999, 1.0, 1.5, 7.0, 1000.0, 1e6] {
      let m = FixedPoint.quantize(factor)
      let r = FixedPoint.Requant16(m)
      for _ in 0..<2000 {
        var x = SIMD16<Int32>()
        for l in 0..<16 { x[l] = rng.int32() }
        let v = FixedPoint.mul(x, r)
        for l in 0..<16 {
          XCTAssertEqual(v[l], FixedPoint.mul(x[l], m), "mul(\(x[l]), \(factor))")
        }
      }
    }
  }

  /// requantizePixels against the scalar output stage, value by value:
  /// the level's requantize_rows (16 channels or more: per block of 16
  /// channels, one 64-bit rounding on x86) and the flat kernel below 16,
  /// with multipliers below and above 1 (left shifts), zero multipliers,
  /// channel counts that are not multiples of 16 (the overlapping last
  /// block), edge accumulators and activation clamps.
  func testRequantizePixelsMatchesScalar() throws {
    var rng = Rng()
    let factors = [1e-9, 0.0003, 0.01, 0.3, 0.5, 0.75, 0.999999, 1.0, 1.5, 7.0, 1000.0, 0.0, 2.0 / 3.0]
    for count in [16, 17, 24, 40, 48, 64, 3, 8] {
      var m: [Int32] = []
      var s: [Int32] = []
      for c in 0..<count {
        let q = FixedPoint.quantize(factors[(c &* 7 &+ count) % factors.count])
        m.append(q.multiplier)
        s.append(q.shift)
      }
      let table = try m.withUnsafeBufferPointer { mp in
        try s.withUnsafeBufferPointer { sp in
          try QRequantTable(multipliers: mp.baseAddress!, shifts: sp.baseAddress!, count: count, periodic: true)
        }
      }
      let pixels = 13
      let acc = (0..<pixels &* count).map { _ in rng.int32() }
      var y = [Int8](repeating: 0, count: pixels &* count)
      for (zp, lo, hi) in [(Int32(-128), Int32(-128), Int32(127)), (5, -128, 127), (-3, -3, 60)] {
        acc.withUnsafeBufferPointer { a in
          y.withUnsafeMutableBufferPointer { yp in
            table.requantizePixels(a.baseAddress!, pixels, zp: zp, lo: lo, hi: hi, yp.baseAddress!)
          }
        }
        for i in 0..<pixels &* count {
          XCTAssertEqual(y[i], table.requantizeOne(acc[i], i % count, zp, lo, hi), "count \(count) value \(i) acc \(acc[i])")
        }
      }
    }
  }
}
