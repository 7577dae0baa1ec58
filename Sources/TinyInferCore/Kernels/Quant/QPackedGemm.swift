/// int8 GEMM for the integer Conv2D: `acc[m, n] = sum_k a[m, k] * w[n, k]`
/// in exact int32, with the weights widened to int32 and packed once into
/// panels of 16 output channels (`panel[p][k][j] = w[16p + j, k]`), the
/// layout of the float32 PackedGemm. A 6x16 tile keeps six SIMD16<Int32>
/// accumulators; per k it loads one weight vector and multiply-adds six
/// broadcast activations (vpmulld + vpaddd). Products of int8 values and
/// their sums over k < 2^16 cannot overflow int32.
enum QPackedGemm {
  static let nr = PackedGemm.nr
  static let mr = PackedGemm.mr

  /// Rows 0..<rows of acc (row stride `ldo`), all n columns.
  @inline(__always)
  static func run(
    rows: Int, k: Int, n: Int, packed: UnsafePointer<Int32>, acc: UnsafeMutablePointer<Int32>, ldo: Int,
    row: (Int) -> UnsafePointer<Int8>
  ) {
    let panels = (n + nr - 1) / nr
    var m = 0
    while m < rows {
      let count = min(mr, rows &- m)
      let a0 = row(m)
      let a1 = count > 1 ? row(m &+ 1) : a0
      let a2 = count > 2 ? row(m &+ 2) : a0
      let a3 = count > 3 ? row(m &+ 3) : a0
      let a4 = count > 4 ? row(m &+ 4) : a0
      let a5 = count > 5 ? row(m &+ 5) : a0
      for p in 0..<panels {
        tile(a0, a1, a2, a3, a4, a5, k: k, panel: packed + p &* k &* nr, col: p &* nr, n: n, out: acc + m &* ldo,
             ldo: ldo, rows: count)
      }
      m &+= mr
    }
  }

  // Out of line so the SIMD16 loop stays vectorized (checked with objdump).
  @inline(never)
  static func tile(
    _ a0: UnsafePointer<Int8>, _ a1: UnsafePointer<Int8>, _ a2: UnsafePointer<Int8>, _ a3: UnsafePointer<Int8>,
    _ a4: UnsafePointer<Int8>, _ a5: UnsafePointer<Int8>, k: Int, panel: UnsafePointer<Int32>, col: Int, n: Int,
    out: UnsafeMutablePointer<Int32>, ldo: Int, rows: Int
  ) {
    var c0 = SIMD16<Int32>(repeating: 0)
    var c1 = c0
    var c2 = c0
    var c3 = c0
    var c4 = c0
    var c5 = c0
    let b = UnsafeRawPointer(panel)
    for kk in 0..<k {
      let v = b.load(fromByteOffset: kk &* 64, as: SIMD16<Int32>.self)
      c0 &+= SIMD16(repeating: Int32(a0[kk])) &* v
      c1 &+= SIMD16(repeating: Int32(a1[kk])) &* v
      c2 &+= SIMD16(repeating: Int32(a2[kk])) &* v
      c3 &+= SIMD16(repeating: Int32(a3[kk])) &* v
      c4 &+= SIMD16(repeating: Int32(a4[kk])) &* v
      c5 &+= SIMD16(repeating: Int32(a5[kk])) &* v
    }
    let valid = min(nr, n &- col)
    store(c0, out + col, valid)
    if rows > 1 { store(c1, out + (ldo &+ col), valid) }
    if rows > 2 { store(c2, out + (2 &* ldo &+ col), valid) }
    if rows > 3 { store(c3, out + (3 &* ldo &+ col), valid) }
    if rows > 4 { store(c4, out + (4 &* ldo &+ col), valid) }
    if rows > 5 { store(c5, out + (5 &* ldo &+ col), valid) }
  }

  @inline(__always)
  static func store(_ v: SIMD16<Int32>, _ dst: UnsafeMutablePointer<Int32>, _ valid: Int) {
    if valid == nr {
      UnsafeMutableRawPointer(dst).storeBytes(of: v, as: SIMD16<Int32>.self)
    } else {
      for j in 0..<valid { dst[j] = v[j] }
    }
  }
}
