import TinyInferShims

/// Float32 GEMM with weights packed once, at model load, into panels of 16
/// output channels: `y[m, n] = act(sum_k a[m, k] * w[n, k] + bias[n])`.
///
/// Packing: the weights `w` [N, K] (FullyConnected's layout, and Conv2D's
/// [Cout, KH*KW*Cin] for one group) become ceil(N/16) panels of K x 16
/// floats, `panel[p][k][j] = w[16p + j, k]` (zeros past N), so the
/// micro-kernel reads 16 consecutive floats per k.
///
/// Micro-kernel: 8 rows x 16 columns of accumulators with AVX-512 (eight
/// zmm registers), 6 x 16 otherwise (twelve ymm with AVX2); per k it loads
/// one 16-wide weight vector, broadcasts one activation per row and does
/// one fused multiply-add per row. Bias and the fused activation are
/// applied (in registers) when the tile is stored.
enum PackedGemm {
  static let nr = 16
  /// Rows per tile: 8 where the build has 32 vector registers (AVX-512),
  /// else 6 (sixteen ymm registers with AVX2 hold six SIMD16 accumulators).
  static let mr = ti_simd_avx512() != 0 ? 8 : 6

  /// Elements of the packed form of an [n, k] matrix.
  static func packedCount(n: Int, k: Int) -> Int { (n + nr - 1) / nr * k * nr }

  /// Packs `w` [n, k] (row stride k) into `dst` (packedCount elements):
  /// panels of 16 rows, k-major, zeros past n. The panel is written in
  /// order while 16 source rows are read side by side (writing a panel
  /// column by column instead was slower: the panel does not fit in L1).
  @inline(never)
  static func pack(_ w: UnsafePointer<Float>, n: Int, k: Int, into dst: UnsafeMutablePointer<Float>) {
    let panels = (n + nr - 1) / nr
    for p in 0..<panels {
      let base = dst + p &* k &* nr
      let rows = min(nr, n &- p &* nr)
      let src = w + p &* nr &* k
      for kk in 0..<k {
        let d = base + kk &* nr
        for j in 0..<rows { d[j] = src[j &* k &+ kk] }
        for j in rows..<nr { d[j] = 0 }
      }
    }
  }

  /// Computes rows `rows` of y for output columns of panels `panels`. `row(m)`
  /// gives the address of row m of a (k contiguous floats).
  @inline(__always)
  static func run(
    rows: Range<Int>, panels: Range<Int>, k: Int, n: Int, packed: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, lo: Float, hi: Float, y: UnsafeMutablePointer<Float>, ldy: Int,
    row: (Int) -> UnsafePointer<Float>
  ) {
    var m = rows.lowerBound
    while m < rows.upperBound {
      let count = min(mr, rows.upperBound &- m)
      let a0 = row(m)
      let a1 = count > 1 ? row(m &+ 1) : a0
      let a2 = count > 2 ? row(m &+ 2) : a0
      let a3 = count > 3 ? row(m &+ 3) : a0
      let a4 = count > 4 ? row(m &+ 4) : a0
      let a5 = count > 5 ? row(m &+ 5) : a0
      let a6 = count > 6 ? row(m &+ 6) : a0
      let a7 = count > 7 ? row(m &+ 7) : a0
      if count == 1 {
        // One row (a GEMV, or the last row): kernels that do not compute
        // copies of it, two panels at a time (eight independent FMA chains).
        var p = panels.lowerBound
        while p &+ 2 <= panels.upperBound {
          tile1x2(a0, k: k, panel: packed + p &* k &* nr, bias: bias, col: p &* nr, n: n, lo: lo, hi: hi, y: y + m &* ldy)
          p &+= 2
        }
        if p < panels.upperBound {
          tile1(a0, k: k, panel: packed + p &* k &* nr, bias: bias, col: p &* nr, n: n, lo: lo, hi: hi, y: y + m &* ldy)
        }
      } else {
        if mr == 8 {
          withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: 8) { t in
            let ptrs = t.baseAddress!
            ptrs[0] = a0
            ptrs[1] = a1
            ptrs[2] = a2
            ptrs[3] = a3
            ptrs[4] = a4
            ptrs[5] = a5
            ptrs[6] = a6
            ptrs[7] = a7
            for p in panels {
              tile8(
                UnsafePointer(ptrs), segments: 1, segLen: k, panel: packed + p &* k &* nr, bias: bias, col: p &* nr,
                n: n, lo: lo, hi: hi, y: y + m &* ldy, ldy: ldy, rows: count)
            }
          }
        } else {
          for p in panels {
            tile(
              a0, a1, a2, a3, a4, a5, k: k, panel: packed + p &* k &* nr, bias: bias, col: p &* nr, n: n, lo: lo,
              hi: hi, y: y + m &* ldy, ldy: ldy, rows: count)
          }
        }
      }
      m &+= mr
    }
  }

  // Kept out of line: inlined into its callers' closures, LLVM scalarized
  // the SIMD16 loop (checked with objdump); on its own it is 4x-unrolled
  // vfmadd231ps with embedded broadcasts.
  @inline(never)
  static func tile(
    _ a0: UnsafePointer<Float>, _ a1: UnsafePointer<Float>, _ a2: UnsafePointer<Float>,
    _ a3: UnsafePointer<Float>, _ a4: UnsafePointer<Float>, _ a5: UnsafePointer<Float>,
    k: Int, panel: UnsafePointer<Float>, bias: UnsafePointer<Float>?, col: Int, n: Int, lo: Float, hi: Float,
    y: UnsafeMutablePointer<Float>, ldy: Int, rows: Int
  ) {
    var c0 = SIMD16<Float>(repeating: 0)
    var c1 = c0
    var c2 = c0
    var c3 = c0
    var c4 = c0
    var c5 = c0
    let b = UnsafeRawPointer(panel)
    for kk in 0..<k {
      let v = b.load(fromByteOffset: kk &* 64, as: SIMD16<Float>.self)
      c0.addProduct(SIMD16(repeating: a0[kk]), v)
      c1.addProduct(SIMD16(repeating: a1[kk]), v)
      c2.addProduct(SIMD16(repeating: a2[kk]), v)
      c3.addProduct(SIMD16(repeating: a3[kk]), v)
      c4.addProduct(SIMD16(repeating: a4[kk]), v)
      c5.addProduct(SIMD16(repeating: a5[kk]), v)
    }
    storeRows((c0, c1, c2, c3, c4, c5, c0, c0), bias: bias, col: col, n: n, lo: lo, hi: hi, y: y, ldy: ldy, rows: rows)
  }

  /// The 8-row tile, for CPUs with 32 vector registers (AVX-512): eight
  /// accumulator chains keep both FMA units busy. The depth is made of
  /// `segments` pieces of `segLen` values, each row reading each piece from
  /// its own address: `ptrs[s * 8 + r]` is row r's piece s. A GEMM has one
  /// piece (the row); an indirect convolution one per window row (kw * cin
  /// consecutive input floats, read in place). The panel is the usual one
  /// for depth segments * segLen.
  @inline(never)
  static func tile8(
    _ ptrs: UnsafePointer<UnsafePointer<Float>>, segments: Int, segLen: Int, panel: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, col: Int, n: Int, lo: Float, hi: Float, y: UnsafeMutablePointer<Float>, ldy: Int,
    rows: Int
  ) {
    var c0 = SIMD16<Float>(repeating: 0)
    var c1 = c0
    var c2 = c0
    var c3 = c0
    var c4 = c0
    var c5 = c0
    var c6 = c0
    var c7 = c0
    for sg in 0..<segments {
      let q = ptrs + sg &* 8
      let a0 = q[0], a1 = q[1], a2 = q[2], a3 = q[3], a4 = q[4], a5 = q[5], a6 = q[6], a7 = q[7]
      let b = UnsafeRawPointer(panel + sg &* segLen &* nr)
      @inline(__always) func step(_ kk: Int) {
        let v = b.load(fromByteOffset: kk &* 64, as: SIMD16<Float>.self)
        c0.addProduct(SIMD16(repeating: a0[kk]), v)
        c1.addProduct(SIMD16(repeating: a1[kk]), v)
        c2.addProduct(SIMD16(repeating: a2[kk]), v)
        c3.addProduct(SIMD16(repeating: a3[kk]), v)
        c4.addProduct(SIMD16(repeating: a4[kk]), v)
        c5.addProduct(SIMD16(repeating: a5[kk]), v)
        c6.addProduct(SIMD16(repeating: a6[kk]), v)
        c7.addProduct(SIMD16(repeating: a7[kk]), v)
      }
      // Unrolled by four by hand (LLVM unrolled this loop only by two once
      // the rows came from a table, and the 1x1 convolutions ran 3% slower).
      var kk = 0
      while kk &+ 4 <= segLen {
        step(kk)
        step(kk &+ 1)
        step(kk &+ 2)
        step(kk &+ 3)
        kk &+= 4
      }
      while kk < segLen {
        step(kk)
        kk &+= 1
      }
    }
    storeRows((c0, c1, c2, c3, c4, c5, c6, c7), bias: bias, col: col, n: n, lo: lo, hi: hi, y: y, ldy: ldy, rows: rows)
  }

  /// One row against one panel: four accumulators over k (unrolled by 4)
  /// so the loads of the streamed weights overlap.
  @inline(never)
  static func tile1(
    _ a: UnsafePointer<Float>, k: Int, panel: UnsafePointer<Float>, bias: UnsafePointer<Float>?, col: Int, n: Int,
    lo: Float, hi: Float, y: UnsafeMutablePointer<Float>
  ) {
    var c0 = SIMD16<Float>(repeating: 0)
    var c1 = c0
    var c2 = c0
    var c3 = c0
    let b = UnsafeRawPointer(panel)
    var kk = 0
    while kk &+ 4 <= k {
      c0.addProduct(SIMD16(repeating: a[kk]), b.load(fromByteOffset: kk &* 64, as: SIMD16<Float>.self))
      c1.addProduct(SIMD16(repeating: a[kk &+ 1]), b.load(fromByteOffset: (kk &+ 1) &* 64, as: SIMD16<Float>.self))
      c2.addProduct(SIMD16(repeating: a[kk &+ 2]), b.load(fromByteOffset: (kk &+ 2) &* 64, as: SIMD16<Float>.self))
      c3.addProduct(SIMD16(repeating: a[kk &+ 3]), b.load(fromByteOffset: (kk &+ 3) &* 64, as: SIMD16<Float>.self))
      kk &+= 4
    }
    while kk < k {
      c0.addProduct(SIMD16(repeating: a[kk]), b.load(fromByteOffset: kk &* 64, as: SIMD16<Float>.self))
      kk &+= 1
    }
    let valid = min(nr, n &- col)
    let bv = biasVector(bias, col, valid)
    store((c0 + c1) + (c2 + c3), bv, SIMD16(repeating: lo), SIMD16(repeating: hi), y + col, valid)
  }

  /// tile1 on two adjacent panels (columns col..<col+32), each summed in
  /// the same order as tile1, so results do not depend on the pairing.
  @inline(never)
  static func tile1x2(
    _ a: UnsafePointer<Float>, k: Int, panel: UnsafePointer<Float>, bias: UnsafePointer<Float>?, col: Int, n: Int,
    lo: Float, hi: Float, y: UnsafeMutablePointer<Float>
  ) {
    var c0 = SIMD16<Float>(repeating: 0)
    var c1 = c0
    var c2 = c0
    var c3 = c0
    var d0 = c0
    var d1 = c0
    var d2 = c0
    var d3 = c0
    let b = UnsafeRawPointer(panel)
    let e = UnsafeRawPointer(panel + k &* nr)
    var kk = 0
    while kk &+ 4 <= k {
      let x0 = SIMD16(repeating: a[kk])
      let x1 = SIMD16(repeating: a[kk &+ 1])
      let x2 = SIMD16(repeating: a[kk &+ 2])
      let x3 = SIMD16(repeating: a[kk &+ 3])
      let o = kk &* 64
      c0.addProduct(x0, b.load(fromByteOffset: o, as: SIMD16<Float>.self))
      d0.addProduct(x0, e.load(fromByteOffset: o, as: SIMD16<Float>.self))
      c1.addProduct(x1, b.load(fromByteOffset: o &+ 64, as: SIMD16<Float>.self))
      d1.addProduct(x1, e.load(fromByteOffset: o &+ 64, as: SIMD16<Float>.self))
      c2.addProduct(x2, b.load(fromByteOffset: o &+ 128, as: SIMD16<Float>.self))
      d2.addProduct(x2, e.load(fromByteOffset: o &+ 128, as: SIMD16<Float>.self))
      c3.addProduct(x3, b.load(fromByteOffset: o &+ 192, as: SIMD16<Float>.self))
      d3.addProduct(x3, e.load(fromByteOffset: o &+ 192, as: SIMD16<Float>.self))
      kk &+= 4
    }
    while kk < k {
      let x0 = SIMD16(repeating: a[kk])
      c0.addProduct(x0, b.load(fromByteOffset: kk &* 64, as: SIMD16<Float>.self))
      d0.addProduct(x0, e.load(fromByteOffset: kk &* 64, as: SIMD16<Float>.self))
      kk &+= 1
    }
    let loV = SIMD16<Float>(repeating: lo)
    let hiV = SIMD16<Float>(repeating: hi)
    @inline(__always) func finish(_ sum: SIMD16<Float>, _ cc: Int) {
      let valid = min(nr, n &- cc)
      let bv = biasVector(bias, cc, valid)
      store(sum, bv, loV, hiV, y + cc, valid)
    }
    finish((c0 + c1) + (c2 + c3), col)
    finish((d0 + d1) + (d2 + d3), col &+ nr)
  }

  /// Bias of columns col..<col+valid as a vector (zeros past valid, or
  /// without a bias).
  @inline(__always)
  static func biasVector(_ bias: UnsafePointer<Float>?, _ col: Int, _ valid: Int) -> SIMD16<Float> {
    guard let bias else { return SIMD16<Float>(repeating: 0) }
    if valid == nr { return UnsafeRawPointer(bias + col).loadUnaligned(as: SIMD16<Float>.self) }
    var bv = SIMD16<Float>(repeating: 0)
    for j in 0..<valid { bv[j] = bias[col &+ j] }
    return bv
  }

  /// Stores the first `rows` (at most 8) accumulator rows of a tile at
  /// columns col..<min(col + 16, n) of y (row stride ldy).
  @inline(__always)
  static func storeRows(
    _ c: (SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>,
      SIMD16<Float>),
    bias: UnsafePointer<Float>?, col: Int, n: Int, lo: Float, hi: Float, y: UnsafeMutablePointer<Float>, ldy: Int,
    rows: Int
  ) {
    let valid = min(nr, n &- col)
    let bv = biasVector(bias, col, valid)
    let vlo = SIMD16<Float>(repeating: lo)
    let vhi = SIMD16<Float>(repeating: hi)
    let dst = y + col
    store(c.0, bv, vlo, vhi, dst, valid)
    if rows > 1 { store(c.1, bv, vlo, vhi, dst + ldy, valid) }
    if rows > 2 { store(c.2, bv, vlo, vhi, dst + 2 &* ldy, valid) }
    if rows > 3 { store(c.3, bv, vlo, vhi, dst + 3 &* ldy, valid) }
    if rows > 4 { store(c.4, bv, vlo, vhi, dst + 4 &* ldy, valid) }
    if rows > 5 { store(c.5, bv, vlo, vhi, dst + 5 &* ldy, valid) }
    if rows > 6 { store(c.6, bv, vlo, vhi, dst + 6 &* ldy, valid) }
    if rows > 7 { store(c.7, bv, vlo, vhi, dst + 7 &* ldy, valid) }
  }

  /// Adds the bias, clamps to the activation range (in registers:
  /// ti_clamp16f) and stores `valid` lanes.
  @inline(__always)
  static func store(
    _ c: SIMD16<Float>, _ bias: SIMD16<Float>, _ lo: SIMD16<Float>, _ hi: SIMD16<Float>,
    _ dst: UnsafeMutablePointer<Float>, _ valid: Int
  ) {
    let v = ti_clamp16f(c + bias, lo, hi)
    if valid == nr {
      UnsafeMutableRawPointer(dst).storeBytes(of: v, as: SIMD16<Float>.self)
    } else {
      for j in 0..<valid { dst[j] = v[j] }
    }
  }
}

/// Weights packed for PackedGemm at load, owned by the model and shared by
/// all its sessions (read-only once made).
public final class PackedWeights {
  let ptr: UnsafeMutablePointer<Float>
  let n: Int
  let k: Int

  init?(_ w: UnsafePointer<Float>, n: Int, k: Int) {
    let count = PackedGemm.packedCount(n: n, k: k)
    guard let bytes = checkedMul(count, 4), let raw = ti_shim_alloc(bytes) else { return nil }
    ptr = raw.bindMemory(to: Float.self, capacity: count)
    self.n = n
    self.k = k
    PackedGemm.pack(w, n: n, k: k, into: ptr)
  }

  deinit { ti_shim_free(ptr) }

  var bytes: Int { PackedGemm.packedCount(n: n, k: k) * 4 }
}
