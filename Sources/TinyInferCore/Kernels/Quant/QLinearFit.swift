import TinyInferShims

/// Issue 14: an int8 elementwise op as a floor-linear function of its raw
/// int8 inputs, `y = clamp((x1 p1 + x2 p2 + c) >> shift, lo, hi)` in int32,
/// equal to the op's fixed-point reference (TFLite's double-rounding
/// MultiplyByQuantizedMultiplier chains) on every input it is used for.
///
/// The reference is a composition of rounded affine maps of the inputs, so
/// it is the floor of an affine function up to rounding noise far below one
/// output step; `find` picks p1, p2 near the real slopes times 2^shift and
/// then the interval of offsets c that reproduces every target value
/// (checked exhaustively: 65536 pairs for Add, 256 values per PRelu piece).
/// Where no such c exists (the noise straddles an output step) or the
/// int32 lanes could overflow, it returns nil and the caller keeps the
/// fixed-point kernel. A kernel then costs two multiplies and a shift per
/// lane instead of three 64-bit-product requantizations.
struct QLinearFit {
  let p1: Int32
  let p2: Int32
  let c: Int32

  /// The shifts tried, most precise first (the int32 range allows 22 bits
  /// for slopes up to about 2^7 / 128 per input).
  static let shifts: [Int] = [22, 20, 18, 16]

  /// The fit at `shift` for `target[(x1 - r1.lowerBound) * r2.count + (x2 -
  /// r2.lowerBound)]` (values already clamped to [lo, hi]; a target at lo
  /// only requires the linear value <= lo, at hi >= hi), p1 and p2 tried
  /// within one of the rounded `slope * 2^shift`; nil if none fits.
  static func find(
    _ r1: ClosedRange<Int>, _ r2: ClosedRange<Int>, _ target: UnsafePointer<Int8>, slope1: Double, slope2: Double,
    shift: Int, lo: Int32, hi: Int32
  ) -> QLinearFit? {
    let s = Double(Int64(1) << shift)
    let (f1, f2) = (slope1 * s, slope2 * s)
    guard f1.isFinite, f2.isFinite, f1.magnitude < 1e9, f2.magnitude < 1e9 else { return nil }
    let (c1, c2) = (Int64(f1.rounded()), Int64(f2.rounded()))
    for d1 in [0, -1, 1] as [Int64] {
      for d2 in [0, -1, 1] as [Int64] where slope2 != 0 || d2 == 0 {
        if let f = fit(r1, r2, target, c1 &+ d1, c2 &+ d2, shift, lo, hi) { return f }
      }
    }
    return nil
  }

  private static func fit(
    _ r1: ClosedRange<Int>, _ r2: ClosedRange<Int>, _ target: UnsafePointer<Int8>, _ p1: Int64, _ p2: Int64,
    _ shift: Int, _ lo: Int32, _ hi: Int32
  ) -> QLinearFit? {
    let none = Int64(1) << 60
    var lower = -none
    var upper = none
    // One input (r2 = 0...0, PRelu's pieces): the values as one row, so
    // that the scan runs along them (base = x1 p1 either way).
    let ok =
      r2 == 0...0
      ? ti_shim_linear_fit(target, 1, 0, r1.count, Int32(r1.lowerBound), 0, p1, Int32(shift), lo, hi, &lower, &upper)
      : ti_shim_linear_fit(
        target, r1.count, Int32(r1.lowerBound), r2.count, Int32(r2.lowerBound), p1, p2, Int32(shift), lo, hi, &lower,
        &upper)
    guard ok == 1 else { return nil }
    let c = lower != -none ? lower : (upper != none ? upper &- 1 : 0)
    // Every partial sum of the kernel's int32 lanes stays in range.
    let m1 = Int64(max(r1.lowerBound.magnitude, r1.upperBound.magnitude)) &* p1.magnitude.int64
    let m2 = Int64(max(r2.lowerBound.magnitude, r2.upperBound.magnitude)) &* p2.magnitude.int64
    guard m1 &+ m2 &+ c.magnitude.int64 < Int64(Int32.max) else { return nil }
    return QLinearFit(p1: Int32(p1), p2: Int32(p2), c: Int32(c))
  }
}

extension UInt64 {
  fileprivate var int64: Int64 { Int64(truncatingIfNeeded: self) }
}
