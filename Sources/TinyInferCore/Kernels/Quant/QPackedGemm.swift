import TinyInferShims

/// int8 GEMM for the integer Conv2D and FullyConnected and the hybrid
/// (dynamic-range) FullyConnected:
///
///     acc[m, n] = init[n] + sum_k a[m, k] * w[n, k]
///
/// with `a` unsigned 8-bit rows and `w` signed 8-bit weights, in exact
/// int32. The tiles are C kernels, one variant per instruction-set level
/// chosen at run time (`ti_q8_kernels`, tinyinfer_kernels_q8.h): AVX-512
/// VNNI `vpdpbusd`, an exact widening `vpmaddwd` path on AVX2 and SSE2, SDOT
/// or NEON on AArch64. None forms a saturating int16 pair sum (as
/// `vpmaddubsw` would): every level gives the same exact result. Signed int8 activations become unsigned by
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
  /// Rows past the last whole block of eight (of `run`) at most this many
  /// go one at a time through the level's `gemv_s7`, where it applies.
  static let gemvTail = 4

  /// Depth rounded up to a multiple of four: the row length callers give.
  @inline(__always)
  static func paddedDepth(_ k: Int) -> Int { (k &+ 3) & ~3 }

  /// Packed weights with their column sums (the sums of each output
  /// channel's weights, for the callers' zero-point corrections).
  final class Weights {
    let data: Scratch<Int8>
    let colSums: Scratch<Int32>
    /// The int8 kernels of the CPU's level, fetched when the weights are packed.
    let kernels: ti_q8_kernels
    let n: Int
    let k: Int
    /// Whether a weight is -128 (outside TFLite's int8 weight range
    /// [-127, 127]): the level's `gemv_s7` then does not apply.
    let hasMinus128: Bool
    var groups: Int { paddedDepth(k) >> 2 }
    var panels: Int { (n &+ nr &- 1) / nr }

    /// Packs `w` ([n, k] row-major, int8).
    init(_ w: UnsafePointer<Int8>, n: Int, k: Int) throws(TinfError) {
      self.n = n
      self.k = k
      kernels = ti_q8_kernels_get().pointee
      let groups = paddedDepth(k) >> 2
      let panels = (n &+ nr &- 1) / nr
      guard let bytes = checkedMul(panels &* groups, 64) else { throw .unsupported("int8 weights too large to pack") }
      data = try Scratch<Int8>(count: bytes)  // zeroed
      colSums = try Scratch<Int32>(count: panels &* nr)
      var minus128 = false
      for c in 0..<n {
        let src = w + c &* k
        let p = c / nr
        let j = c &- p &* nr
        let offset: Int = p &* groups &* 64 &+ j &* 4
        let dst = UnsafeMutableRawPointer(data.base + offset)
        // Four depth values (one group) per word move; the sum in vectors.
        let raw = UnsafeRawPointer(src)
        var kk = 0
        while kk &+ 4 <= k {
          dst.storeBytes(of: raw.loadUnaligned(fromByteOffset: kk, as: UInt32.self), toByteOffset: kk &* 16, as: UInt32.self)
          kk &+= 4
        }
        let d = dst.assumingMemoryBound(to: Int8.self)
        while kk < k {
          d[(kk >> 2) &* 64 &+ (kk & 3)] = src[kk]
          kk &+= 1
        }
        colSums.base[c] = sumInt8(src, k)
        if !minus128 {
          for kk in 0..<k where src[kk] == -128 { minus128 = true }
        }
      }
      hasMinus128 = minus128
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
    let c0 = all.lowerBound &* nr
    let c1 = panels &* nr
    // The level's one-row kernel for weights in [-127, 127] where it has
    // one (AVX2: vpsignb and vpmaddubsw, exact there), from initial plus
    // 128 times the column sums (it sums (a - 128) w; at most 4096
    // columns, on the stack): for one row, and for the last few rows past
    // whole blocks of eight (gemm_rows computes a block of eight rows
    // however few of them are stored: two or three rows, the pixels of a
    // short 1-D convolution, cost it as much as eight).
    let tail = rows & 7
    if let s7 = wt.kernels.gemv_s7, !wt.hasMinus128, c1 &- c0 <= 4096, rows == 1 || (tail != 0 && tail <= gemvTail) {
      let full = rows &- tail
      if full > 0 {
        wt.kernels.gemm_rows(a, lda, full, groups, w, panelBytes, all.lowerBound, panels, initial, acc, ldo, n)
      }
      withUnsafeTemporaryAllocation(of: Int32.self, capacity: c1 &- c0) { t in
        let b = t.baseAddress!
        for c in c0..<c1 { b[c &- c0] = initial[c] &+ (wt.colSums.base[c] &<< 7) }
        for r in full..<rows {
          s7(a + r &* lda, groups, w, panelBytes, all.lowerBound, panels, UnsafePointer(b - c0), acc + r &* ldo, n)
        }
      }
      return
    }
    if rows == 1 {
      // The level's one-row kernel (with VNNI the weights read as one
      // sequential stream; elsewhere four panels at a time).
      wt.kernels.gemv(a, groups, w, panelBytes, all.lowerBound, panels, initial, acc, n)
      return
    }
    // Blocks of eight rows over the panels (the level's C kernel; with VNNI
    // three panels per tile).
    wt.kernels.gemm_rows(a, lda, rows, groups, w, panelBytes, all.lowerBound, panels, initial, acc, ldo, n)
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
