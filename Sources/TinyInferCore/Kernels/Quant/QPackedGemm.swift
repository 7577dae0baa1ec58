import TinyInferShims

/// int8 GEMM for the integer Conv2D and FullyConnected and the hybrid
/// (dynamic-range) FullyConnected:
///
///     acc[m, n] = init[n] + sum_k a[m, k] * w[n, k]
///
/// with `a` unsigned 8-bit rows and `w` signed 8-bit weights, in exact
/// int32. The inner step is a u8 x s8 dot product of four (`ti_dpbusd16`:
/// AVX-512 VNNI `vpdpbusd` where the build has it, a portable exact C
/// fallback otherwise). `vpdpbusd` adds the four products straight into
/// int32 without an int16 intermediate, so unlike `vpmaddubsw` nothing
/// saturates: the answer to the u8 x s8 saturation problem is to never
/// form a saturating pair sum. Signed int8 activations become unsigned by
/// flipping the sign bit (`a ^ 0x80 = a + 128`); the caller folds the
/// resulting `128 * sum_k w[n, k]` (and zero points and bias) into `init`.
///
/// Weights are packed once into panels of 16 output channels; in a panel,
/// each group of four depth values is one 64-byte vector
/// `panel[p][g][j][i] = w[16p + j, 4g + i]` (zero past N and K). Rows of `a`
/// are read four bytes at a time, so callers give rows padded to a multiple
/// of four (`paddedDepth`); the padding may hold anything, since it meets
/// zero weights.
enum QPackedGemm {
  static let nr = 16
  static let mr = 8

  /// Depth rounded up to a multiple of four: the row length callers give.
  @inline(__always)
  static func paddedDepth(_ k: Int) -> Int { (k &+ 3) & ~3 }

  /// Packed weights with their column sums (the sums of each output
  /// channel's weights, for the callers' zero-point corrections).
  final class Weights {
    let data: Scratch<Int8>
    let colSums: Scratch<Int32>
    let n: Int
    let k: Int
    var groups: Int { paddedDepth(k) >> 2 }
    var panels: Int { (n &+ nr &- 1) / nr }

    /// Packs `w` ([n, k] row-major, int8).
    init(_ w: UnsafePointer<Int8>, n: Int, k: Int) throws(TinfError) {
      self.n = n
      self.k = k
      let groups = paddedDepth(k) >> 2
      let panels = (n &+ nr &- 1) / nr
      guard let bytes = checkedMul(panels &* groups, 64) else { throw .unsupported("int8 weights too large to pack") }
      data = try Scratch<Int8>(count: bytes)  // zeroed
      colSums = try Scratch<Int32>(count: panels &* nr)
      for c in 0..<n {
        let src = w + c &* k
        let p = c / nr
        let j = c &- p &* nr
        let offset: Int = p &* groups &* 64 &+ j &* 4
        let dst = data.base + offset
        var s: Int32 = 0
        for kk in 0..<k {
          dst[(kk >> 2) &* 64 &+ (kk & 3)] = src[kk]
          s &+= Int32(src[kk])
        }
        colSums.base[c] = s
      }
    }
  }

  /// Rows 0..<rows of `acc` (row stride `ldo`), all n columns:
  /// `acc[m, c] = init[c] + sum_k a[m, k] w[c, k]`, where row m of `a`
  /// starts at `a + m * lda` and holds `paddedDepth(k)` bytes. `init` holds
  /// one value per column, padded to whole panels. `panels` limits the
  /// columns to those panels (for splitting columns between threads).
  static func run(
    rows: Int, a: UnsafePointer<UInt8>, lda: Int, weights wt: Weights, initial: UnsafePointer<Int32>,
    acc: UnsafeMutablePointer<Int32>, ldo: Int, panels range: Range<Int>? = nil
  ) {
    let all = range ?? 0..<wt.panels
    let panels = all.upperBound
    let groups = wt.groups
    let n = wt.n
    let w = UnsafeRawPointer(wt.data.base)
    let panelBytes = groups &* 64
    if rows == 1 {
      var p = all.lowerBound
      while p &+ 4 <= panels {
        row1x4(a, groups, w + p &* panelBytes, panelBytes, initial + p &* nr, acc + p &* nr, valid: n &- p &* nr)
        p &+= 4
      }
      while p < panels {
        row1(a, groups, w + p &* panelBytes, initial + p &* nr, acc + p &* nr, valid: min(nr, n &- p &* nr))
        p &+= 1
      }
      return
    }
    withUnsafeTemporaryAllocation(of: UnsafePointer<UInt8>.self, capacity: 8) { t in
      let ptrs = t.baseAddress!
      var m = 0
      while m < rows {
        let count = min(mr, rows &- m)
        // Rows past `count` repeat row 0 (computed, never stored).
        for i in 0..<8 { ptrs[i] = a + (m &* lda &+ (i < count ? i &* lda : 0)) }
        for p in all {
          tile8(
            UnsafePointer(ptrs), 1, groups, w + p &* panelBytes, initial + p &* nr, acc + (m &* ldo &+ p &* nr),
            ldo: ldo, rows: count, valid: min(nr, n &- p &* nr))
        }
        m &+= mr
      }
    }
  }

  @inline(__always)
  static func bcast(_ a: UnsafeRawPointer, _ g: Int) -> SIMD16<Int32> {
    SIMD16<Int32>(repeating: a.loadUnaligned(fromByteOffset: g &<< 2, as: Int32.self))
  }

  // The tiles are out of line so their loops stay in vector registers
  // (checked with objdump: one vpdpbusd per row and panel step).

  /// 8 rows x 16 columns: eight accumulators, one weight vector per step.
  /// The depth is made of `segments` pieces of `segGroups` groups of four
  /// bytes, each row reading each piece from its own address:
  /// `ptrs[s * 8 + r]` is row r's piece s. A GEMM has one piece (the row);
  /// an indirect convolution one per window row (kw * cin bytes, padded to
  /// a multiple of four with bytes that meet zero weights). The panel is
  /// the usual one for the padded depth segments * 4 * segGroups.
  @inline(never)
  static func tile8(
    _ ptrs: UnsafePointer<UnsafePointer<UInt8>>, _ segments: Int, _ segGroups: Int, _ panel: UnsafeRawPointer,
    _ initial: UnsafePointer<Int32>, _ out: UnsafeMutablePointer<Int32>, ldo: Int, rows: Int, valid: Int
  ) {
    let i0 = UnsafeRawPointer(initial).load(as: SIMD16<Int32>.self)
    var c0 = i0
    var c1 = i0
    var c2 = i0
    var c3 = i0
    var c4 = i0
    var c5 = i0
    var c6 = i0
    var c7 = i0
    for sg in 0..<segments {
      let q = ptrs + sg &* 8
      let a0 = UnsafeRawPointer(q[0]), a1 = UnsafeRawPointer(q[1]), a2 = UnsafeRawPointer(q[2])
      let a3 = UnsafeRawPointer(q[3]), a4 = UnsafeRawPointer(q[4]), a5 = UnsafeRawPointer(q[5])
      let a6 = UnsafeRawPointer(q[6]), a7 = UnsafeRawPointer(q[7])
      let pb = panel + sg &* segGroups &* 64
      for g in 0..<segGroups {
        let v = pb.load(fromByteOffset: g &<< 6, as: SIMD16<Int32>.self)
        c0 = ti_dpbusd16(c0, bcast(a0, g), v)
        c1 = ti_dpbusd16(c1, bcast(a1, g), v)
        c2 = ti_dpbusd16(c2, bcast(a2, g), v)
        c3 = ti_dpbusd16(c3, bcast(a3, g), v)
        c4 = ti_dpbusd16(c4, bcast(a4, g), v)
        c5 = ti_dpbusd16(c5, bcast(a5, g), v)
        c6 = ti_dpbusd16(c6, bcast(a6, g), v)
        c7 = ti_dpbusd16(c7, bcast(a7, g), v)
      }
    }
    store(c0, out, valid)
    if rows > 1 { store(c1, out + ldo, valid) }
    if rows > 2 { store(c2, out + 2 &* ldo, valid) }
    if rows > 3 { store(c3, out + 3 &* ldo, valid) }
    if rows > 4 { store(c4, out + 4 &* ldo, valid) }
    if rows > 5 { store(c5, out + 5 &* ldo, valid) }
    if rows > 6 { store(c6, out + 6 &* ldo, valid) }
    if rows > 7 { store(c7, out + 7 &* ldo, valid) }
  }

  /// 1 row x 64 columns (four panels, `panelBytes` apart).
  @inline(never)
  static func row1x4(
    _ a: UnsafePointer<UInt8>, _ groups: Int, _ panel: UnsafeRawPointer, _ panelBytes: Int,
    _ initial: UnsafePointer<Int32>, _ out: UnsafeMutablePointer<Int32>, valid: Int
  ) {
    let ini = UnsafeRawPointer(initial)
    var c0 = ini.load(as: SIMD16<Int32>.self)
    var c1 = ini.load(fromByteOffset: 64, as: SIMD16<Int32>.self)
    var c2 = ini.load(fromByteOffset: 128, as: SIMD16<Int32>.self)
    var c3 = ini.load(fromByteOffset: 192, as: SIMD16<Int32>.self)
    let ar = UnsafeRawPointer(a)
    let p1 = panel + panelBytes
    let p2 = p1 + panelBytes
    let p3 = p2 + panelBytes
    // Two groups per step into two sets of accumulators: eight chains.
    var d0 = SIMD16<Int32>(repeating: 0)
    var d1 = d0
    var d2 = d0
    var d3 = d0
    var g = 0
    while g &+ 2 <= groups {
      let x = bcast(ar, g)
      let o = g &<< 6
      c0 = ti_dpbusd16(c0, x, panel.load(fromByteOffset: o, as: SIMD16<Int32>.self))
      c1 = ti_dpbusd16(c1, x, p1.load(fromByteOffset: o, as: SIMD16<Int32>.self))
      c2 = ti_dpbusd16(c2, x, p2.load(fromByteOffset: o, as: SIMD16<Int32>.self))
      c3 = ti_dpbusd16(c3, x, p3.load(fromByteOffset: o, as: SIMD16<Int32>.self))
      let x1 = bcast(ar, g &+ 1)
      let o1 = o &+ 64
      d0 = ti_dpbusd16(d0, x1, panel.load(fromByteOffset: o1, as: SIMD16<Int32>.self))
      d1 = ti_dpbusd16(d1, x1, p1.load(fromByteOffset: o1, as: SIMD16<Int32>.self))
      d2 = ti_dpbusd16(d2, x1, p2.load(fromByteOffset: o1, as: SIMD16<Int32>.self))
      d3 = ti_dpbusd16(d3, x1, p3.load(fromByteOffset: o1, as: SIMD16<Int32>.self))
      g &+= 2
    }
    if g < groups {
      let x = bcast(ar, g)
      let o = g &<< 6
      c0 = ti_dpbusd16(c0, x, panel.load(fromByteOffset: o, as: SIMD16<Int32>.self))
      c1 = ti_dpbusd16(c1, x, p1.load(fromByteOffset: o, as: SIMD16<Int32>.self))
      c2 = ti_dpbusd16(c2, x, p2.load(fromByteOffset: o, as: SIMD16<Int32>.self))
      c3 = ti_dpbusd16(c3, x, p3.load(fromByteOffset: o, as: SIMD16<Int32>.self))
    }
    c0 &+= d0
    c1 &+= d1
    c2 &+= d2
    c3 &+= d3
    store(c0, out, min(nr, valid))
    store(c1, out + 16, min(nr, valid &- 16))
    store(c2, out + 32, min(nr, valid &- 32))
    store(c3, out + 48, min(nr, valid &- 48))
  }

  /// 1 row x 16 columns, two accumulators over even and odd groups.
  @inline(never)
  static func row1(
    _ a: UnsafePointer<UInt8>, _ groups: Int, _ panel: UnsafeRawPointer, _ initial: UnsafePointer<Int32>,
    _ out: UnsafeMutablePointer<Int32>, valid: Int
  ) {
    var c0 = UnsafeRawPointer(initial).load(as: SIMD16<Int32>.self)
    var c1 = SIMD16<Int32>(repeating: 0)
    let ar = UnsafeRawPointer(a)
    var g = 0
    while g &+ 2 <= groups {
      c0 = ti_dpbusd16(c0, bcast(ar, g), panel.load(fromByteOffset: g &<< 6, as: SIMD16<Int32>.self))
      c1 = ti_dpbusd16(c1, bcast(ar, g &+ 1), panel.load(fromByteOffset: (g &+ 1) &<< 6, as: SIMD16<Int32>.self))
      g &+= 2
    }
    if g < groups {
      c0 = ti_dpbusd16(c0, bcast(ar, g), panel.load(fromByteOffset: g &<< 6, as: SIMD16<Int32>.self))
    }
    store(c0 &+ c1, out, valid)
  }

  @inline(__always)
  static func store(_ v: SIMD16<Int32>, _ dst: UnsafeMutablePointer<Int32>, _ valid: Int) {
    if valid >= nr {
      UnsafeMutableRawPointer(dst).storeBytes(of: v, as: SIMD16<Int32>.self)
    } else if valid > 0 {
      withUnsafeBytes(of: v) { b in
        UnsafeMutableRawPointer(dst).copyMemory(from: b.baseAddress!, byteCount: valid &* 4)
      }
    }
  }

  /// Copies `count` int8 values as unsigned (`x ^ 0x80 = x + 128`), and
  /// fills `dst` up to `paddedDepth(count)` with zeros.
  @inline(__always)
  static func toUnsigned(_ src: UnsafePointer<Int8>, _ dst: UnsafeMutablePointer<UInt8>, _ count: Int) {
    var i = 0
    let flip = SIMD16<UInt8>(repeating: 0x80)
    let s = UnsafeRawPointer(src)
    let d = UnsafeMutableRawPointer(dst)
    while i &+ 16 <= count {
      d.storeBytes(of: s.loadUnaligned(fromByteOffset: i, as: SIMD16<UInt8>.self) ^ flip, toByteOffset: i, as: SIMD16<UInt8>.self)
      i &+= 16
    }
    while i < count {
      dst[i] = UInt8(bitPattern: src[i]) ^ 0x80
      i &+= 1
    }
    while i & 3 != 0 {
      dst[i] = 0
      i &+= 1
    }
  }
}
