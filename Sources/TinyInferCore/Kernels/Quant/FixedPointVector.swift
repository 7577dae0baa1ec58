/// The fixed-point helpers of FixedPoint.swift on sixteen int32 lanes, bit
/// for bit the same results as the scalar ones (checked by
/// python/tests/test_ops_int8.py against the numpy reference, and by an
/// exhaustive-edge comparison with the scalar code when they were written).
///
/// Written with SIMD16 arithmetic, shifts, bitwise ops and bit casts only:
/// no comparisons into SIMDMask and no generic stdlib helpers
/// (`replacing(with:where:)`, `clamped`), which were not always inlined in
/// Embedded mode. With -march=native on AVX-512 a 64-bit product is two
/// vpmuldq on the even and odd lanes (checked with objdump); the portable
/// build gets SSE2 code for the same arithmetic.
extension FixedPoint {
  /// SaturatingRoundingDoublingHighMul on 16 lanes.
  ///
  /// (a b + nudge) / 2^31 truncated toward zero, with nudge 2^30 for a b >= 0
  /// and 1 - 2^30 below, equals floor((a b + 2^30) / 2^31) in both cases,
  /// and bits 31...62 of a b + 2^30 are that value's low 32 bits. The only
  /// product whose result does not fit int32 is INT32_MIN * INT32_MIN, where
  /// that gives INT32_MIN (no other pair does: |a b| < 2^62 otherwise), so
  /// INT32_MIN lanes become INT32_MAX.
  @inline(__always)
  static func srdhm(_ a: SIMD16<Int32>, _ b: SIMD16<Int32>) -> SIMD16<Int32> {
    let v = srdhmNoSaturation(a, b)
    // v - 1 where v == INT32_MIN (wrapping to INT32_MAX), v elsewhere.
    let t = v ^ SIMD16<Int32>(repeating: Int32.min)
    return v &- 1 &- ((t | (0 &- t)) &>> 31)
  }

  /// `srdhm` for lanes that are not both INT32_MIN (b > INT32_MIN, say).
  @inline(__always)
  static func srdhmNoSaturation(_ a: SIMD16<Int32>, _ b: SIMD16<Int32>) -> SIMD16<Int32> {
    let a64 = unsafeBitCast(a, to: SIMD8<Int64>.self)
    let b64 = unsafeBitCast(b, to: SIMD8<Int64>.self)
    let half = SIMD8<Int64>(repeating: 1 << 30)
    // Even lanes (the low halves, sign-extended) and odd lanes (the high halves).
    let even = ((a64 &<< 32) &>> 32) &* ((b64 &<< 32) &>> 32) &+ half
    let odd = (a64 &>> 32) &* (b64 &>> 32) &+ half
    let low = SIMD8<Int64>(repeating: 0xFFFF_FFFF)
    return unsafeBitCast(((even &>> 31) & low) | ((odd &<< 1) & ~low), to: SIMD16<Int32>.self)
  }

  /// RoundingDivideByPOT on 16 lanes: x / 2^e rounded half away from zero,
  /// e in 0...31 per lane, `mask` = 2^e - 1 (wrapping: INT32_MAX for e = 31).
  @inline(__always)
  static func rdbpot(_ x: SIMD16<Int32>, _ e: SIMD16<Int32>, mask: SIMD16<Int32>) -> SIMD16<Int32> {
    let remainder = x & mask
    let threshold = (mask &>> 1) &- (x &>> 31)  // + 1 for negative x
    // remainder, threshold in [0, 2^30]: threshold - remainder < 0 iff remainder > threshold.
    return (x &>> e) &- ((threshold &- remainder) &>> 31)
  }

  /// MultiplyByQuantizedMultiplier on 16 lanes with the constants of `r`.
  /// The multipliers of a `Requant16` come from `FixedPoint.quantize` of a
  /// positive factor: in [2^30, 2^31) or 0, never INT32_MIN, so the SRDHM
  /// cannot saturate and its check is left out.
  @inline(__always)
  static func mul(_ x: SIMD16<Int32>, _ r: Requant16) -> SIMD16<Int32> {
    rdbpot(srdhmNoSaturation(x &<< r.left, r.multiplier), r.right, mask: r.mask)
  }

  /// The constants of MultiplyByQuantizedMultiplier on 16 lanes: the left
  /// shift (max(shift, 0)), the multiplier, the right shift (max(-shift, 0))
  /// and 2^right - 1.
  struct Requant16 {
    var left: SIMD16<Int32>
    var multiplier: SIMD16<Int32>
    var right: SIMD16<Int32>
    var mask: SIMD16<Int32>

    /// The same multiplier on every lane.
    @inline(__always)
    init(_ m: Multiplier) {
      self.init(multiplier: m.multiplier, shift: m.shift)
    }

    /// `m` > INT32_MIN (see `mul`).
    @inline(__always)
    init(multiplier m: Int32, shift: Int32) {
      assert(m != Int32.min)
      let l = shift > 0 ? shift : 0
      let r = shift > 0 ? 0 : 0 &- shift
      left = SIMD16(repeating: l)
      multiplier = SIMD16(repeating: m)
      right = SIMD16(repeating: r)
      mask = SIMD16(repeating: Int32(truncatingIfNeeded: (Int64(1) << Int64(r)) &- 1))
    }

    /// Per-lane constants from four int32 rows (see `QRequantTable`).
    @inline(__always)
    init(_ t: QRequantTable, _ offset: Int) {
      let p = UnsafeRawPointer(t.buffer.int32 + offset)
      let n = t.stride &* 4
      left = p.loadUnaligned(as: SIMD16<Int32>.self)
      multiplier = p.loadUnaligned(fromByteOffset: n, as: SIMD16<Int32>.self)
      right = p.loadUnaligned(fromByteOffset: 2 &* n, as: SIMD16<Int32>.self)
      mask = p.loadUnaligned(fromByteOffset: 3 &* n, as: SIMD16<Int32>.self)
    }
  }
}

/// Per-channel requantization constants laid out for `Requant16`: four rows
/// of `stride` int32 (left shifts, multipliers, right shifts, masks).
struct QRequantTable {
  let buffer: QBuffer
  let stride: Int

  init(multipliers: UnsafePointer<Int32>, shifts: UnsafePointer<Int32>, count: Int) throws(TinfError) {
    stride = (count &+ 15) & ~15
    buffer = try QBuffer(bytes: 4 &* stride &* 4)
    let p = buffer.int32
    for c in 0..<count {
      let s = shifts[c]
      let r = s > 0 ? 0 : 0 &- s
      p[c] = s > 0 ? s : 0
      p[stride &+ c] = multipliers[c]
      p[2 &* stride &+ c] = r
      p[3 &* stride &+ c] = Int32(truncatingIfNeeded: (Int64(1) << Int64(r)) &- 1)
    }
  }
}

// MARK: - Lane conversions on 16 lanes

/// Sign-extends 16 int8 to int32 (vpmovsxbd).
@inline(__always)
func widen32(_ v: SIMD16<Int8>) -> SIMD16<Int32> {
  var r = SIMD16<Int32>()
  for i in 0..<16 { r[i] = Int32(v[i]) }
  return r
}

/// Clamps each lane to [lo, hi] and narrows it to int8 (vpmaxsd, vpminsd, vpmovdb).
@inline(__always)
func clampNarrow(_ v: SIMD16<Int32>, _ lo: Int32, _ hi: Int32) -> SIMD16<Int8> {
  var r = SIMD16<Int8>()
  for i in 0..<16 { r[i] = Int8(truncatingIfNeeded: min(max(v[i], lo), hi)) }
  return r
}
