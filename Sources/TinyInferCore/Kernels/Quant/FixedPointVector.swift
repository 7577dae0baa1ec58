import TinyInferShims

/// The fixed-point helpers of FixedPoint.swift on sixteen int32 lanes, bit
/// for bit the same results as the scalar ones (checked by
/// python/tests/test_ops_int8.py against the numpy reference, and by an
/// exhaustive-edge comparison with the scalar code when they were written).
///
/// Written with SIMD16 arithmetic, shifts, bitwise ops and bit casts only:
/// no comparisons into SIMDMask and no generic stdlib helpers
/// (`replacing(with:where:)`, `clamped`), which were not always inlined in
/// Embedded mode. The core is built with no CPU flags, so this is SSE2 code on
/// x86-64 (NEON on AArch64); the per-channel requantization of the GEMM
/// outputs, the hot use, is the per-level C kernel of tinyinfer_kernels_q8.h.
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

    @inline(__always)
    init(left: SIMD16<Int32>, multiplier: SIMD16<Int32>, right: SIMD16<Int32>, mask: SIMD16<Int32>) {
      self.left = left
      self.multiplier = multiplier
      self.right = right
      self.mask = mask
    }

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
      let p = UnsafeRawPointer(t.base + offset)
      let n = t.stride &* 4
      left = p.loadUnaligned(as: SIMD16<Int32>.self)
      multiplier = p.loadUnaligned(fromByteOffset: n, as: SIMD16<Int32>.self)
      right = p.loadUnaligned(fromByteOffset: 2 &* n, as: SIMD16<Int32>.self)
      mask = p.loadUnaligned(fromByteOffset: 3 &* n, as: SIMD16<Int32>.self)
    }
  }
}

/// The output stage of a per-tensor int8 kernel,
/// `clamp(MultiplyByQuantizedMultiplier(acc, M) + zp, lo, hi)`: `one` for
/// one value; `lanes` for 16, as `clampNarrow(FixedPoint.mul(acc, lanes) &+
/// zp, lo, hi)` written at the call (a method was left out of line, checked
/// with objdump). Per-channel stages: `QRequantTable`.
struct QOutputStage {
  let multiplier: FixedPoint.Multiplier
  let lanes: FixedPoint.Requant16
  let zp: Int32, lo: Int32, hi: Int32

  init(_ m: FixedPoint.Multiplier, zp: Int32, lo: Int32, hi: Int32) {
    multiplier = m
    lanes = FixedPoint.Requant16(m)
    (self.zp, self.lo, self.hi) = (zp, lo, hi)
  }

  @inline(__always)
  func one(_ acc: Int32) -> Int8 {
    requantize(acc, multiplier.multiplier, multiplier.shift, zp, lo, hi)
  }
}

/// Per-channel requantization constants laid out for `Requant16`: four rows
/// of `stride` int32 (left shifts, multipliers, right shifts, masks).
/// Entry t holds channel `t % count`. With `periodic`, the rows repeat the
/// channels over `period = lcm(count, 16)` entries plus 16, so a flat run
/// of pixels x channels (consecutive pixels of `count` channels each) is
/// requantized 16 values at a time whatever `count` is (`requantizeFlat`).
///
/// A float32 table (`init(inScale:...float: true)`, the `requantization`
/// attribute of models tinyinfer quantized) holds TI_Q8_RQ_FLOAT in its
/// left-shift row and each channel's float32 scale (bits) in its multiplier
/// row: `y = clamp(roundeven(fl(fl(acc) s)) + zp, lo, hi)`, XNNPACK's and
/// onnxruntime's output stage, which costs a third of the fixed-point one's
/// vector operations on x86 (no 32 x 32 -> 64-bit lane products). The C
/// kernels recognise it by the marker; `requantizeOne` here likewise.
struct QRequantTable {
  let buffer: QBuffer
  let base: UnsafePointer<Int32>
  let stride: Int
  let count: Int
  /// Entries before the channels repeat (a multiple of 16 and of count),
  /// or 0 when the table is not periodic.
  let period: Int

  /// The level's C requantization kernel (ti_q8_kernels), fetched at bind.
  let kernel: @convention(c) (
    UnsafePointer<Int32>, UnsafePointer<Int32>, Int, Int, Int, Int32, Int32, Int32, UnsafeMutablePointer<Int8>, Int
  ) -> Void
  /// Its kernel for rows of channels (`requantize_rows`), fetched at bind.
  let rowsKernel: @convention(c) (
    UnsafePointer<Int32>, Int, Int, Int, UnsafePointer<Int32>, Int, Int32, Int32, Int32, UnsafeMutablePointer<Int8>, Int
  ) -> Void
  /// FullyConnected's table (`init(doubleScales:)`): one real scale per
  /// channel, requantized in double as LiteRT 2.3's reference kernel does
  /// (`round(acc * scale)`, half away from zero), not by multipliers.
  let scales: UnsafePointer<Double>?

  /// Largest period built: beyond it `requantizeFlat` is not offered.
  static let maxPeriod = 4096

  /// Whether this is a float32 table (TI_Q8_RQ_FLOAT).
  let isFloat: Bool

  /// A fixed-point table (`multipliers`, `shifts`: TFLite's
  /// QuantizeMultiplier of each channel's scale) or, with `floatScales`, a
  /// float32 table of those scales.
  init(
    multipliers: UnsafePointer<Int32>, shifts: UnsafePointer<Int32>, count: Int, periodic: Bool = false,
    floatScales: [Float]? = nil
  ) throws(TinfError) {
    var g = 16
    var b = count
    while b != 0 { (g, b) = (b, g % b) }  // gcd(16, count)
    let lcm = count / max(g, 1) &* 16
    period = periodic && count > 0 && lcm <= QRequantTable.maxPeriod ? lcm : 0
    stride = period > 0 ? period &+ 16 : (count &+ 15) & ~15
    self.count = count
    kernel = ti_q8_kernels_get().pointee.requantize
    rowsKernel = ti_q8_kernels_get().pointee.requantize_rows
    scales = nil
    isFloat = floatScales != nil
    buffer = try QBuffer(bytes: 4 &* stride &* 4)
    let p = buffer.int32
    base = UnsafePointer(p)
    let entries = period > 0 ? stride : count
    if let floatScales {
      for t in 0..<entries {
        p[t] = TI_Q8_RQ_FLOAT
        p[stride &+ t] = Int32(bitPattern: floatScales[t % count].bitPattern)
        p[2 &* stride &+ t] = 0
        p[3 &* stride &+ t] = 0
      }
      return
    }
    for t in 0..<entries {
      let c = t % count
      let s = shifts[c]
      let r = s > 0 ? 0 : 0 &- s
      p[t] = s > 0 ? s : 0
      p[stride &+ t] = multipliers[c]
      p[2 &* stride &+ t] = r
      p[3 &* stride &+ t] = Int32(truncatingIfNeeded: (Int64(1) << Int64(r)) &- 1)
    }
  }

  /// The table of `M_c = s_x s_w[c] / s_y` for each weight scale, computed
  /// in double (TFLite's per-channel convolution kernels); with `float`, a
  /// float32 table of those scales rounded to float (the same scales are
  /// refused either way).
  init(
    inScale: Float, weightScales: [Float], outScale: Float, periodic: Bool = false, float: Bool = false,
    _ what: String
  ) throws(TinfError) {
    var m: [Int32] = []
    var s: [Int32] = []
    var f: [Float] = []
    for ws in weightScales {
      let real = Double(inScale) * Double(ws) / Double(outScale)
      let q = try FixedPoint.requantization(real, what)
      m.append(q.multiplier)
      s.append(q.shift)
      f.append(Float(real))
    }
    try self.init(multipliers: m, shifts: s, count: m.count, periodic: periodic, floatScales: float ? f : nil)
  }

  /// Channel c's float32 scale (a float32 table).
  @inline(__always)
  func floatScale(_ t: Int) -> Float { Float(bitPattern: UInt32(bitPattern: base[stride &+ t])) }

  /// FullyConnected's output stage: `M_n = s_x s_w[n] / s_y` in double (the
  /// product first, then the quotient), applied in double with one rounding,
  /// half away from zero: `clamp(round(acc M_n) + zp)`. This is what LiteRT
  /// 2.3's reference FullyConnected (BUILTIN_REF) computes, per channel and
  /// per tensor alike; TFLite's multiplier path (QuantizeMultiplier, double
  /// rounding) differs from it by one step on rare near-ties. Scales whose
  /// multiplier would not fit the fixed-point path are refused as there.
  init(doubleScales inScale: Float, weightScales: [Float], outScale: Float, _ what: String) throws(TinfError) {
    count = weightScales.count
    stride = (count &+ 15) & ~15
    period = 0
    isFloat = false
    kernel = ti_q8_kernels_get().pointee.requantize
    rowsKernel = ti_q8_kernels_get().pointee.requantize_rows
    buffer = try QBuffer(bytes: stride &* 8)
    base = UnsafePointer(buffer.int32)
    let d = buffer.raw.assumingMemoryBound(to: Double.self)
    for (c, ws) in weightScales.enumerated() {
      let real = Double(inScale) * Double(ws) / Double(outScale)
      _ = try FixedPoint.requantization(real, what)
      d[c] = real
    }
    scales = UnsafePointer(d)
  }

  /// Whether `requantizeFlat` may be used.
  var isPeriodic: Bool { period > 0 }

  /// The scalar output stage for entry t.
  @inline(__always)
  func requantizeOne(_ acc: Int32, _ t: Int, _ zp: Int32, _ lo: Int32, _ hi: Int32) -> Int8 {
    if let scales { return requantizeDouble(acc, scales[t], zp, lo, hi) }
    if isFloat { return requantizeFloat(acc, floatScale(t), zp, lo, hi) }
    return tinyInferRequantize(acc, base[stride &+ t], base[t] &- base[2 &* stride &+ t], zp, lo, hi)
  }

  /// The outputs of `pixels` consecutive pixels of `count` channels each
  /// (consecutive in acc and in y): in one flat run with a periodic table,
  /// else pixel by pixel.
  @inline(__always)
  func requantizePixels(
    _ acc: UnsafePointer<Int32>, _ pixels: Int, zp: Int32, lo: Int32, hi: Int32, _ y: UnsafeMutablePointer<Int8>
  ) {
    if count >= 16 && pixels >= 4 && scales == nil {
      // Per block of 16 channels over the pixels: the block's constants
      // are prepared once (the level's requantize_rows); for fewer pixels
      // than four that preparation costs more than it saves.
      rowsKernel(acc, count, pixels, count, base, stride, zp, lo, hi, y, count)
    } else if isPeriodic {
      requantizeFlat(acc, zp: zp, lo: lo, hi: hi, y, pixels &* count)
    } else {
      for s in 0..<pixels {
        requantize(acc + s &* count, from: 0, zp: zp, lo: lo, hi: hi, y + s &* count, count)
      }
    }
  }

  /// `n` values of consecutive pixels (channel of value f: f % count),
  /// 16 at a time in the C kernel (the last block overlapping the one
  /// before; it recomputes the same values). Needs a periodic table.
  @inline(__always)
  func requantizeFlat(_ acc: UnsafePointer<Int32>, zp: Int32, lo: Int32, hi: Int32, _ y: UnsafeMutablePointer<Int8>, _ n: Int) {
    if n < 16 {
      for f in 0..<n { y[f] = requantizeOne(acc[f], f % count, zp, lo, hi) }
      return
    }
    kernel(acc, base, stride, 0, period, zp, lo, hi, y, n)
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

extension QRequantTable {
  /// The output stage of the GEMM-based integer kernels: for j < n,
  /// `y[j] = clamp(MultiplyByQuantizedMultiplier(acc[j], M_{c0+j}) + zp)`,
  /// 16 lanes at a time in the C kernel (the last block overlapping the one
  /// before when n is not a multiple of 16), one at a time below 16.
  @inline(__always)
  func requantize(
    _ acc: UnsafePointer<Int32>, from c0: Int, zp: Int32, lo: Int32, hi: Int32, _ y: UnsafeMutablePointer<Int8>,
    _ n: Int
  ) {
    if let scales {
      ti_q8_kernels_get().pointee.requantize_f64(acc, scales + c0, zp, lo, hi, y, n)
      return
    }
    if n < 16 {
      for j in 0..<n { y[j] = requantizeOne(acc[j], c0 &+ j, zp, lo, hi) }
      return
    }
    kernel(acc, base, stride, c0, 0, zp, lo, hi, y, n)
  }
}

/// The scalar form of the C kernel `requantize_f64` (q8_requant.inc):
/// `clamp(round(acc * scale) + zp, lo, hi)` in double, half away from zero,
/// the product clamped to +-2^30 first.
@inline(__always)
func requantizeDouble(_ acc: Int32, _ scale: Double, _ zp: Int32, _ lo: Int32, _ hi: Int32) -> Int8 {
  let v = min(max(Double(acc) * scale, -1_073_741_824), 1_073_741_824)
  let r = Int32(v.rounded(.toNearestOrAwayFromZero)) &+ zp
  return Int8(truncatingIfNeeded: min(max(r, lo), hi))
}

/// The scalar form of a float32 table's output stage (TI_Q8_RQ_FLOAT, the C
/// kernels' rq_float): `clamp(roundeven(fl(fl(acc) s)) + zp, lo, hi)`, the
/// product clamped to [-2^15, 2^15 - 1] and rounded half to even by the
/// 1.5 * 2^23 magic number (floats in [2^23, 2^24) are the integers).
@inline(__always)
func requantizeFloat(_ acc: Int32, _ scale: Float, _ zp: Int32, _ lo: Int32, _ hi: Int32) -> Int8 {
  let f = min(max(Float(acc) * scale, -32768), 32767)
  let r = Int32(bitPattern: (f + 12_582_912).bitPattern) &- 0x4B40_0000 &+ zp
  return Int8(truncatingIfNeeded: min(max(r, lo), hi))
}

/// `requantize` under a name that the extension above can call unambiguously.
@inline(__always)
func tinyInferRequantize(_ acc: Int32, _ m: Int32, _ shift: Int32, _ zp: Int32, _ lo: Int32, _ hi: Int32) -> Int8 {
  requantize(acc, m, shift, zp, lo, hi)
}
