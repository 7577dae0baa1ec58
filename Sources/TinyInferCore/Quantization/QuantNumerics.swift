/// Number formats used by the quantizer and the hybrid kernels: IEEE half
/// conversion (by bits, so no Float16 support is needed on the target),
/// the rounding rules, affine parameters from a range, and the int4 block
/// layout. docs/quantization.md ("Modes") documents every rule here.
enum QuantNumerics {
  // MARK: - float16

  /// float32 -> IEEE binary16 bits, round to nearest even; overflow gives
  /// +-inf, NaN stays NaN.
  static func halfBits(_ v: Float) -> UInt16 {
    let b = v.bitPattern
    let sign = UInt16((b >> 16) & 0x8000)
    let exp = Int((b >> 23) & 0xFF)
    var man = b & 0x7F_FFFF
    if exp == 0xFF { return sign | 0x7C00 | (man != 0 ? 0x200 : 0) }
    let e = exp - 127 + 15
    if e >= 31 { return sign | 0x7C00 }
    if e <= 0 {
      // Subnormal half (or zero): shift the full mantissa right.
      if e < -10 { return sign }
      man |= 0x80_0000
      let shift = UInt32(14 - e)
      let half = UInt32(1) << (shift - 1)
      let rest = man & ((UInt32(1) << shift) - 1)
      var h = man >> shift
      if rest > half || (rest == half && (h & 1) == 1) { h += 1 }
      return sign | UInt16(h)
    }
    var h = UInt32(e) << 10 | (man >> 13)
    let rest = man & 0x1FFF
    if rest > 0x1000 || (rest == 0x1000 && (h & 1) == 1) { h += 1 }  // may carry into the exponent: correct
    return sign | UInt16(truncatingIfNeeded: h)
  }

  /// IEEE binary16 bits -> float32 (exact).
  @inline(__always)
  static func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let e = UInt32(h >> 10) & 0x1F
    let m = UInt32(h & 0x3FF)
    if e == 0 {
      let v = Float(m) * (1.0 / 16_777_216.0)  // m * 2^-24
      return sign != 0 ? -v : v
    }
    if e == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (m << 13)) }
    return Float(bitPattern: sign | ((e + 112) << 23) | (m << 13))
  }

  // MARK: - rounding

  /// Round half to even (PyTorch nearbyint, ONNX): the dynamic-int8 and int4 rule.
  @inline(__always)
  static func roundEven(_ x: Float) -> Float { x.rounded(.toNearestOrEven) }

  /// Round half away from zero (TFLite, C `round`): the int8-static rule.
  @inline(__always)
  static func roundAway(_ x: Float) -> Float { x.rounded(.toNearestOrAwayFromZero) }

  // MARK: - affine parameters

  /// Per-tensor int8 parameters of an activation range (TFLite): the range is
  /// widened to contain 0, scale = (hi - lo) / 255, zero point =
  /// round(-128 - lo / scale) clamped to [-128, 127]. An empty range gets
  /// scale 1/255 around 0.
  static func int8Params(lo: Float, hi: Float) -> (scale: Float, zeroPoint: Int32) {
    var l = min(lo, 0)
    var h = max(hi, 0)
    if !(l.isFinite) { l = -Float.greatestFiniteMagnitude / 512 }
    if !(h.isFinite) { h = Float.greatestFiniteMagnitude / 512 }
    var scale = (h - l) / 255
    if !(scale > 1e-12) { scale = 1.0 / 255 }
    let zp = roundAway(-128 - l / scale)
    return (scale, Int32(max(-128, min(127, zp))))
  }

  /// Symmetric int8 weights per channel: scale_c = max|w_c| / 127 (1 for an
  /// all-zero channel), q = clamp(round(w / scale_c), -127, 127).
  /// `channels` slices of the data: channel c holds the elements whose index
  /// i satisfies (i / inner) % channels == c (inner = product of the dims
  /// after the channel axis).
  static func int8PerChannel(_ w: [Float], channels: Int, inner: Int, halfEven: Bool) -> (q: [UInt8], scales: [Float]) {
    var amax = [Float](repeating: 0, count: channels)
    for i in w.indices {
      let c = (i / inner) % channels
      let a = abs(w[i])
      if a > amax[c] { amax[c] = a }
    }
    var scales = [Float](repeating: 1, count: channels)
    for c in 0..<channels where amax[c] > 0 && amax[c].isFinite { scales[c] = amax[c] / 127 }
    var q = [UInt8](repeating: 0, count: w.count)
    for i in w.indices {
      let c = (i / inner) % channels
      let r = w[i] / scales[c]
      let v = halfEven ? roundEven(r) : roundAway(r)
      let cl = max(-127, min(127, v.isNaN ? 0 : v))
      q[i] = UInt8(bitPattern: Int8(cl))
    }
    return (q, scales)
  }

  // MARK: - int4 blocks (ggml Q4_0 layout)

  /// Elements per int4 block.
  static let q4Block = 32
  /// Bytes per int4 block: a float16 scale, then 16 bytes of nibbles.
  static let q4BlockBytes = 18

  /// Packs rows of `k` floats into Q4_0 blocks: per block of 32 (the last
  /// one zero padded), d = m / -8 where m is the element of largest
  /// magnitude (sign kept), q = clamp(round_half_even(x / d) + 8, 0, 15),
  /// value = (q - 8) * d. Byte j of the 16 holds element j in its low nibble
  /// and element j + 16 in its high nibble. Each row takes ceil(k/32)*18 bytes.
  static func packQ4(_ w: [Float], rows: Int, k: Int) -> [UInt8] {
    let nb = (k + q4Block - 1) / q4Block
    var out = [UInt8](repeating: 0, count: rows * nb * q4BlockBytes)
    var blk = [Float](repeating: 0, count: q4Block)
    for r in 0..<rows {
      for b in 0..<nb {
        var m: Float = 0
        for j in 0..<q4Block {
          let i = b * q4Block + j
          var v: Float = i < k ? w[r * k + i] : 0
          if !v.isFinite { v = 0 }
          blk[j] = v
          if abs(v) > abs(m) { m = v }
        }
        let d = m / -8
        let dh = halfBits(d)
        // Quantize against the scale as stored (float16), so the kernel's
        // value matches what was optimized here.
        let ds = halfToFloat(dh)
        let id: Float = ds != 0 ? 1 / ds : 0
        let o = (r * nb + b) * q4BlockBytes
        out[o] = UInt8(dh & 0xFF)
        out[o + 1] = UInt8(dh >> 8)
        for j in 0..<16 {
          let lo = Int(max(0, min(15, roundEven(blk[j] * id) + 8)))
          let hi = Int(max(0, min(15, roundEven(blk[j + 16] * id) + 8)))
          out[o + 2 + j] = UInt8(lo | (hi << 4))
        }
      }
    }
    return out
  }
}
