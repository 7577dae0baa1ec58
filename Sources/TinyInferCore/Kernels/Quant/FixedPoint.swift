import TinyInferShims

/// The integer arithmetic of TFLite's int8 kernels (docs/quantization.md,
/// "Integer kernels"), bit for bit: QuantizeMultiplier
/// (tensorflow/lite/kernels/internal/quantization_util.cc), gemmlowp's
/// SaturatingRoundingDoublingHighMul and RoundingDivideByPOT, and
/// MultiplyByQuantizedMultiplier with double rounding (TFLite's default build).
/// Values that C computes in int32 wrap here as they do in practice there
/// (`&+`, `&*`).
enum FixedPoint {
  /// A real multiplier as `multiplier * 2^(shift - 31)`, multiplier in
  /// [2^30, 2^31) (or 0).
  struct Multiplier {
    var multiplier: Int32
    var shift: Int32
  }

  /// TFLite QuantizeMultiplier: frexp, round half away from zero to 31 bits;
  /// multipliers below about 2^-31 flush to zero.
  static func quantize(_ d: Double) -> Multiplier {
    if d == 0 || !d.isFinite { return Multiplier(multiplier: 0, shift: 0) }
    let mag = d.magnitude
    // frexp: mag = q * 2^e with q in [0.5, 1).
    var shift = Int(mag.exponent) + 1
    var q = mag.significand * 0.5
    if d < 0 { q = -q }
    var qFixed = Int64((q * 2147483648.0).rounded(.toNearestOrAwayFromZero))
    if qFixed == Int64(1) << 31 {
      qFixed /= 2
      shift += 1
    }
    if shift < -31 { return Multiplier(multiplier: 0, shift: 0) }
    return Multiplier(multiplier: Int32(truncatingIfNeeded: qFixed), shift: Int32(truncatingIfNeeded: shift))
  }

  /// QuantizeMultiplier for a requantization: refuses a multiplier whose
  /// left shift would overflow (> 2^30), which no sensible set of scales gives.
  static func requantization(_ d: Double, _ what: String) throws(TinfError) -> Multiplier {
    let m = quantize(d)
    guard m.shift <= 30 else {
      throw .unsupported("the \(what) rescaling factor \(d) is too large (the scales do not fit int8 arithmetic)")
    }
    return m
  }

  /// gemmlowp SaturatingRoundingDoublingHighMul (ARM VQRDMULH).
  @inline(__always)
  static func srdhm(_ a: Int32, _ b: Int32) -> Int32 {
    if a == b && a == Int32.min { return Int32.max }
    let ab = Int64(a) &* Int64(b)
    let nudge: Int64 = ab >= 0 ? (1 << 30) : (1 - (1 << 30))
    return Int32(truncatingIfNeeded: (ab &+ nudge) / (1 << 31))
  }

  /// gemmlowp RoundingDivideByPOT: x / 2^e rounded half away from zero, e in 0...31.
  @inline(__always)
  static func rdbpot(_ x: Int32, _ e: Int32) -> Int32 {
    let mask = Int32(truncatingIfNeeded: (Int64(1) << Int64(e)) &- 1)
    let remainder = x & mask
    let threshold = (mask >> 1) &+ (x < 0 ? 1 : 0)
    return (x >> e) &+ (remainder > threshold ? 1 : 0)
  }

  /// MultiplyByQuantizedMultiplier (double rounding).
  @inline(__always)
  static func mul(_ x: Int32, _ m: Int32, _ shift: Int32) -> Int32 {
    let left = shift > 0 ? shift : 0
    let right = shift > 0 ? 0 : -shift
    return rdbpot(srdhm(x &* (Int32(1) &<< left), m), right)
  }

  @inline(__always)
  static func mul(_ x: Int32, _ m: Multiplier) -> Int32 { mul(x, m.multiplier, m.shift) }

  /// gemmlowp SaturatingRoundingMultiplyByPOT<e> for e in 1...31 (a saturating left shift).
  @inline(__always)
  static func saturatingShiftLeft(_ x: Int32, _ e: Int32) -> Int32 {
    let threshold = (Int32(1) &<< (31 &- e)) &- 1
    if x > threshold { return Int32.max }
    if x < -threshold { return Int32.min }
    return x &<< e
  }

  // MARK: 16-bit variants (HardSwish), with C's promotions and truncations

  @inline(__always)
  static func srdhm16(_ a: Int16, _ b: Int16) -> Int16 {
    if a == b && a == Int16.min { return Int16.max }
    let ab = Int32(a) &* Int32(b)
    let nudge: Int32 = ab >= 0 ? (1 << 14) : (1 - (1 << 14))
    return Int16(truncatingIfNeeded: (ab &+ nudge) / (1 << 15))
  }

  /// gemmlowp RoundingDivideByPOT instantiated on int16_t (e in 0...31: the
  /// mask is (2^e - 1) truncated to 16 bits, as the C code does).
  @inline(__always)
  static func rdbpot16(_ x: Int16, _ e: Int32) -> Int16 {
    let mask = Int16(truncatingIfNeeded: (Int64(1) << Int64(e)) &- 1)
    let remainder = x & mask
    let threshold = Int16(truncatingIfNeeded: Int32(mask >> 1) &+ (x < 0 ? 1 : 0))
    let shifted = Int16(truncatingIfNeeded: Int32(x) >> e)
    return Int16(truncatingIfNeeded: Int32(shifted) &+ (remainder > threshold ? 1 : 0))
  }

  // MARK: gemmlowp fixed-point functions (softmax)

  /// exp(a) for a in [-1/4, 0), Q0.31 in and out.
  static func expOnIntervalNegQuarterTo0(_ a: Int32) -> Int32 {
    let constantTerm: Int32 = 1_895_147_668  // exp(-1/8)
    let oneThird: Int32 = 715_827_883
    let x = a &+ (1 << 28)
    let x2 = srdhm(x, x)
    let x3 = srdhm(x2, x)
    let x4 = srdhm(x2, x2)
    let x4Over4 = rdbpot(x4, 2)
    let poly = rdbpot(srdhm(x4Over4 &+ x3, oneThird) &+ x2, 1)
    return constantTerm &+ srdhm(constantTerm, x &+ poly)
  }

  /// gemmlowp exp_on_negative_values for a Q5.26 input (5 integer bits), Q0.31 out.
  static func expOnNegativeValuesQ5(_ a: Int32) -> Int32 {
    let fractionalBits: Int32 = 26
    let quarter = Int32(1) << (fractionalBits - 2)
    let aModQuarterMinusQuarter = (a & (quarter &- 1)) &- quarter
    var result = expOnIntervalNegQuarterTo0(saturatingShiftLeft(aModQuarterMinusQuarter, 5))
    let remainder = aModQuarterMinusQuarter &- a
    // The barrel shifter: exp(-2^k) for each bit k of the remainder.
    @inline(__always) func step(_ exponent: Int32, _ multiplier: Int32) {
      if remainder & (Int32(1) << (fractionalBits + exponent)) != 0 { result = srdhm(result, multiplier) }
    }
    step(-2, 1_672_461_947)  // exp(-1/4)
    step(-1, 1_302_514_674)  // exp(-1/2)
    step(0, 790_015_084)  // exp(-1)
    step(1, 290_630_308)  // exp(-2)
    step(2, 39_332_535)  // exp(-4)
    step(3, 720_401)  // exp(-8)
    step(4, 242)  // exp(-16)
    return a == 0 ? Int32.max : result
  }

  /// gemmlowp one_over_one_plus_x_for_x_in_0_1, Q0.31 in and out.
  static func oneOverOnePlusX(_ a: Int32) -> Int32 {
    let sum = Int64(a) &+ Int64(Int32.max)
    let halfDenominator = Int32(truncatingIfNeeded: (sum &+ (sum >= 0 ? 1 : -1)) / 2)
    var x = 1_515_870_810 &+ srdhm(halfDenominator, -1_010_580_540)  // 48/17 - 32/17 d, Q2.29
    for _ in 0..<3 {
      let hdx = srdhm(halfDenominator, x)
      let oneMinus = (Int32(1) << 29) &- hdx
      x = x &+ saturatingShiftLeft(srdhm(x, oneMinus), 2)
    }
    return saturatingShiftLeft(x, 1)
  }

  /// TFLite GetReciprocal: 1 / x for x with `integerDigits` integer bits,
  /// as a Q0.31 value and the number of bits of x above 1.0.
  static func reciprocal(_ x: Int32, integerDigits: Int32) -> (Int32, Int32) {
    let headroomPlusOne = Int32(UInt32(bitPattern: x).leadingZeroBitCount)
    let bitsOverUnit = integerDigits - headroomPlusOne
    let shiftedMinusOne = Int32(bitPattern: (UInt32(bitPattern: x) &<< UInt32(headroomPlusOne)) &- (1 << 31))
    return (oneOverOnePlusX(shiftedMinusOne), bitsOverUnit)
  }
}

// MARK: - Quantization parameters of int8 kernels

/// Per-tensor quantization parameters.
struct QParams: Equatable {
  var scale: Float
  var zeroPoint: Int32

  /// The same parameters up to float rounding (scales within 1e-6 relative):
  /// what an op that moves or compares raw int8 values keeps.
  func matches(_ o: QParams) -> Bool {
    zeroPoint == o.zeroPoint && (scale - o.scale).magnitude <= 1e-6 * max(scale, o.scale)
  }
}

enum QCheck {
  /// Whether the op's `requantization` attribute asks for the float32
  /// output stage (1) rather than TFLite's fixed-point one (0, the default).
  static func floatRequantization(_ ctx: KernelContext) throws(TinfError) -> Bool {
    try ctx.attrs.int(.requantization, default: 0, in: 0...1) == 1
  }

  /// An op whose int8 output keeps its input's parameters (pooling,
  /// ResizeBilinear): other output parameters are refused.
  static func outputKeeps(_ xq: QParams, _ yq: QParams, _ op: String) throws(TinfError) {
    guard xq.matches(yq) else {
      throw .unsupported(
        "int8 \(op) keeps the input's quantization (scale \(xq.scale), zero point \(xq.zeroPoint)); "
          + "the output declares scale \(yq.scale), zero point \(yq.zeroPoint)")
    }
  }

  /// The input is int8 (uint8 and other dtypes are refused with the reason).
  static func requireInt8(_ t: TensorDesc, _ what: String) throws(TinfError) {
    if t.dtype == .int8 { return }
    if t.dtype == .uint8 {
      throw TinfError(
        .unsupportedDType,
        "\(what) '\(t.name)' is uint8: the integer kernels follow the TFLite int8 spec (int8 activations); "
          + "requantize it to int8 with a Quantize op")
    }
    throw TinfError(.unsupportedDType, "\(what) '\(t.name)' is \(t.dtype.name); the integer kernel takes int8")
  }

  /// Per-tensor parameters of an int8 tensor (one scale; an axis with one
  /// scale counts as per tensor), zero point in [-128, 127].
  static func perTensor(_ t: TensorDesc, _ what: String) throws(TinfError) -> QParams {
    guard let q = t.quant else {
      throw TinfError(.badFormat, "\(what) '\(t.name)' is int8 but has no quantization parameters")
    }
    guard q.scales.count == 1, q.zeroPoints.count == 1 else {
      throw .unsupported(
        "\(what) '\(t.name)' must be quantized per tensor; it has \(q.scales.count) scales along axis \(q.axis ?? -1)")
    }
    let s = q.scales[0]
    guard s.isFinite && s > 0 else { throw TinfError(.badFormat, "\(what) '\(t.name)' has the scale \(s)") }
    let zp = q.zeroPoints[0]
    guard zp >= -128 && zp <= 127 else {
      throw TinfError(.badFormat, "\(what) '\(t.name)' has the zero point \(zp), outside int8")
    }
    return QParams(scale: s, zeroPoint: zp)
  }

  /// The output's per-tensor parameters, checked at bind time (the file
  /// declares them on the op's output tensor).
  static func output(_ ctx: KernelContext, _ i: Int = 0) throws(TinfError) -> QParams {
    let t = ctx.outputs[i]
    guard t.quant != nil else {
      throw TinfError(
        .badFormat,
        "output '\(t.name)' has no quantization parameters; an int8 op's output tensor must declare them")
    }
    return try perTensor(t, "output")
  }

  /// Scales of int8 weights, one per channel: per tensor (replicated) or per
  /// channel along `axis` with exactly `channels` scales. Zero points must be
  /// 0 (symmetric weights) unless `allowZeroPoint` (per-tensor only); returns
  /// the scales and the per-tensor zero point.
  static func weights(
    _ w: TensorDesc, channels: Int, axis: Int, allowZeroPoint: Bool = false, _ what: String
  ) throws(TinfError) -> (scales: [Float], zeroPoint: Int32) {
    guard w.dtype == .int8 else {
      throw TinfError(.unsupportedDType, "weights '\(w.name)' are \(w.dtype.name); int8 \(what) takes int8 weights")
    }
    guard let q = w.quant else {
      throw TinfError(.badFormat, "weights '\(w.name)' are int8 but have no quantization parameters")
    }
    for s in q.scales where !(s.isFinite && s > 0) {
      throw TinfError(.badFormat, "weights '\(w.name)' have the scale \(s)")
    }
    if q.scales.count == 1 {
      let zp = q.zeroPoints.first ?? 0
      guard zp == 0 || (allowZeroPoint && zp >= -128 && zp <= 127) else {
        throw .unsupported("weights '\(w.name)' have the zero point \(zp); \(what) takes symmetric weights (zero point 0)")
      }
      return ([Float](repeating: q.scales[0], count: channels), zp)
    }
    guard q.axis == axis, q.scales.count == channels, q.zeroPoints.count == channels else {
      throw TinfError(
        .badFormat,
        "weights '\(w.name)' have \(q.scales.count) scales along axis \(q.axis ?? -1); per-channel weights of \(what) "
          + "need one scale per output channel (\(channels)) along axis \(axis)")
    }
    for z in q.zeroPoints where z != 0 {
      throw .unsupported("weights '\(w.name)' have the zero point \(z); per-channel weights must be symmetric (zero point 0)")
    }
    return (q.scales, 0)
  }

  /// An optional int32 bias of `n` elements.
  static func bias(_ inputs: [TensorDesc?], _ i: Int, _ n: Int) throws(TinfError) {
    guard i < inputs.count, let b = inputs[i] else { return }
    guard b.dtype == .int32 else {
      throw TinfError(.unsupportedDType, "bias '\(b.name)' is \(b.dtype.name); int8 kernels take an int32 bias")
    }
    guard b.count == n, b.shape.last == n else {
      throw .shape("bias '\(b.name)' \(describe(b.shape)) must have \(n) elements")
    }
  }

  /// CalculateActivationRangeQuantized: the fused activation's clamp in the
  /// output's quantized domain, within [qmin, qmax].
  static func activationRange(_ act: Activation, _ out: QParams, qmin: Int32 = -128, qmax: Int32 = 127)
    throws(TinfError) -> (lo: Int32, hi: Int32)
  {
    func q(_ f: Float) throws(TinfError) -> Int64 {
      let t = (f / out.scale).rounded(.toNearestOrAwayFromZero)
      guard t >= -2147483648.0 && t < 2147483648.0 else {
        throw .unsupported("the fused activation bound \(f) does not fit the output scale \(out.scale)")
      }
      return Int64(out.zeroPoint) + Int64(t)
    }
    var lo = Int64(qmin)
    var hi = Int64(qmax)
    switch act {
    case .none: break
    case .relu: lo = max(lo, try q(0))
    case .relu6:
      lo = max(lo, try q(0))
      hi = min(hi, try q(6))
    case .reluN1To1:
      lo = max(lo, try q(-1))
      hi = min(hi, try q(1))
    }
    return (Int32(truncatingIfNeeded: lo), Int32(truncatingIfNeeded: hi))
  }
}

/// Requantizes an int32 accumulator and clamps it: TFLite's output stage.
@inline(__always)
func requantize(_ acc: Int32, _ m: Int32, _ shift: Int32, _ zp: Int32, _ lo: Int32, _ hi: Int32) -> Int8 {
  let v = FixedPoint.mul(acc, m, shift) &+ zp
  return Int8(truncatingIfNeeded: min(max(v, lo), hi))
}

// MARK: - Memory owned by bound integer kernels

/// Bytes allocated once at bind time (64-byte aligned, zeroed), freed with
/// the kernel closure that captures it.
final class QBuffer {
  let raw: UnsafeMutableRawPointer
  let bytes: Int

  init(bytes: Int) throws(TinfError) {
    let n = max(bytes, 64)
    guard let p = ti_shim_alloc(n) else {
      throw TinfError(.outOfMemory, "cannot allocate \(n) bytes of kernel scratch memory")
    }
    raw = p
    self.bytes = n
    raw.initializeMemory(as: UInt8.self, repeating: 0, count: n)
  }

  convenience init(int32 values: [Int32]) throws(TinfError) {
    try self.init(bytes: values.count &* 4)
    let p = int32
    for i in 0..<values.count { p[i] = values[i] }
  }

  convenience init(int8 values: [Int8]) throws(TinfError) {
    try self.init(bytes: values.count)
    let p = int8
    for i in 0..<values.count { p[i] = values[i] }
  }

  var int8: UnsafeMutablePointer<Int8> { raw.assumingMemoryBound(to: Int8.self) }
  var int32: UnsafeMutablePointer<Int32> { raw.assumingMemoryBound(to: Int32.self) }

  deinit { ti_shim_free(raw) }
}

// MARK: - Vector helpers

// Lane conversions written out: the standard library's generic
// SIMD(truncatingIfNeeded:) and clamped(...) are not always inlined (a
// call per vector in a hot loop); these are, and compile to vpmovsx & co.

@inline(__always)
func widen(_ v: SIMD16<Int8>) -> SIMD16<Int16> {
  var r = SIMD16<Int16>()
  for i in 0..<16 { r[i] = Int16(v[i]) }
  return r
}

@inline(__always)
func widen(_ v: SIMD16<Int16>) -> SIMD16<Int32> {
  var r = SIMD16<Int32>()
  for i in 0..<16 { r[i] = Int32(v[i]) }
  return r
}

@inline(__always)
func widen(_ v: SIMD8<Int32>) -> SIMD8<Int64> {
  var r = SIMD8<Int64>()
  for i in 0..<8 { r[i] = Int64(v[i]) }
  return r
}

@inline(__always)
func narrow(_ v: SIMD8<Int64>) -> SIMD8<Int32> {
  var r = SIMD8<Int32>()
  for i in 0..<8 { r[i] = Int32(truncatingIfNeeded: v[i]) }
  return r
}

/// Clamps each lane to [lo, hi] and narrows it to int8.
@inline(__always)
func clampNarrow(_ v: SIMD8<Int32>, _ lo: Int32, _ hi: Int32) -> SIMD8<Int8> {
  var r = SIMD8<Int8>()
  for i in 0..<8 { r[i] = Int8(truncatingIfNeeded: min(max(v[i], lo), hi)) }
  return r
}

@inline(__always)
func loadInt8x16(_ p: UnsafeRawPointer, _ offset: Int) -> SIMD16<Int16> {
  widen(p.loadUnaligned(fromByteOffset: offset, as: SIMD16<Int8>.self))
}

/// The level's C kernel of `dotInt8Rows` (ti_q8_kernels.dot_rows).
typealias Q8DotRows = @convention(c) (UnsafePointer<Int8>, UnsafePointer<Int8>, Int, Int, UnsafeMutablePointer<Int32>) -> Void

/// The dot products of the int8 row `a` with rows `rows` of `w` (each `k`
/// long), 64 rows at a time in the level's C kernel `dot` (fetched at
/// bind): `finish(r, dot)` for each row r in order.
@inline(__always)
func dotInt8Rows(
  _ dot: Q8DotRows, _ a: UnsafePointer<Int8>, _ w: UnsafePointer<Int8>, _ k: Int, _ rows: Range<Int>,
  _ finish: (Int, Int32) -> Void
) {
  withUnsafeTemporaryAllocation(of: Int32.self, capacity: 64) { t in
    let out = t.baseAddress!
    var c = rows.lowerBound
    while c < rows.upperBound {
      let n = min(64, rows.upperBound &- c)
      dot(a, w + c &* k, k, n, out)
      for j in 0..<n { finish(c &+ j, out[j]) }
      c &+= n
    }
  }
}

/// Sum of n int8 values, in int32.
@inline(__always)
func sumInt8(_ a: UnsafePointer<Int8>, _ n: Int) -> Int32 {
  var acc = SIMD16<Int32>()
  var i = 0
  let ra = UnsafeRawPointer(a)
  while i &+ 16 <= n {
    acc &+= widen(loadInt8x16(ra, i))
    i &+= 16
  }
  var s = acc.wrappedSum()
  while i < n {
    s &+= Int32(a[i])
    i &+= 1
  }
  return s
}

/// y[i] = table[x[i] + 128] for n int8 values (x and y may be the same
/// buffer): the level's C kernel (tinyinfer_kernels_math.h lookup256; 32
/// values per step with AVX-512BW).
@inline(__always)
func lookup256(_ x: UnsafePointer<Int8>, _ y: UnsafeMutablePointer<Int8>, _ table: UnsafePointer<Int8>, _ n: Int) {
  ti_math_kernels_get().pointee.lookup256(x, y, table, n)
}
