import TinyInferShims

/// Float32 GEMM with weights packed once, at model load, into panels of 16
/// output channels: `y[m, n] = act(sum_k a[m, k] * w[n, k] + bias[n])`.
///
/// Packing: the weights `w` [N, K] (FullyConnected's layout, and Conv2D's
/// [Cout, KH*KW*Cin] for one group) become ceil(N/16) panels of K x 16
/// floats, `panel[p][k][j] = w[16p + j, k]` (zeros past N), so the
/// micro-kernel reads 16 consecutive floats per k.
///
/// Micro-kernel (C, per CPU level: tinyinfer_kernels_f32.h): 8 rows x 16
/// columns of accumulators at the AVX-512 level (eight zmm registers), 6 x
/// 16 at AVX2 (twelve ymm), fewer at baseline; per k it loads one 16-wide
/// weight vector, broadcasts one activation per row and does one
/// multiply-add per row. Bias and the fused activation are applied (in
/// registers) when the tile is stored. A single row (a GEMV) has kernels of
/// its own, two panels at a time.
enum PackedGemm {
  static let nr = 16

  /// The float32 kernels of the CPU level chosen at load: fetched once per
  /// bind and captured by the kernel closure.
  static var kernels: ti_f32_kernels { ti_f32_kernels_get().pointee }

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

  /// Whether `threads` threads should split a product of `pixels` rows
  /// over `panels` column panels by panels rather than by rows: true when
  /// the busiest thread then runs at most 3/4 of the tile-panel products
  /// (a tile computes `mr` rows whatever its count: 16 rows over two
  /// threads at mr 6 are two tiles each, against three tiles on half the
  /// panels). A smaller gain is not worth it: with a panel split every
  /// thread writes part of every row, so the next op's rows come from the
  /// other core's cache (measured: 64 rows at mr 6, 8% fewer products,
  /// ran the layer and the depthwise layer after it 15-20% slower).
  static func panelsSplitBetter(pixels: Int, panels: Int, mr: Int, threads: Int) -> Bool {
    guard threads > 1, panels >= threads, pixels > 0, mr > 0 else { return false }
    let tiles = { (rows: Int) in (rows &+ mr &- 1) / mr }
    let byRows = tiles((pixels &+ threads &- 1) / threads) &* panels
    let byPanels = tiles(pixels) &* ((panels &+ threads &- 1) / threads)
    return byPanels &* 4 <= byRows &* 3
  }

  /// PackedGemm.run on rows at a fixed stride (row r at a + r * lda): the
  /// same tiles and kernels, looped in C by the level's gemm_rows (no call
  /// and pointer table per tile from here: a narrow layer's tile is a few
  /// dozen cycles).
  @inline(__always)
  static func runStrided(
    _ kern: ti_f32_kernels, rows: Range<Int>, a: UnsafePointer<Float>, lda: Int, panels: Range<Int>, k: Int, n: Int,
    packed: UnsafePointer<Float>, bias: UnsafePointer<Float>?, lo: Float, hi: Float, y: UnsafeMutablePointer<Float>,
    ldy: Int
  ) {
    guard !rows.isEmpty, !panels.isEmpty else { return }
    kern.gemm_rows(
      a + rows.lowerBound &* lda, lda, rows.count, k, packed, panels.lowerBound, panels.upperBound, bias, n, lo, hi,
      y + rows.lowerBound &* ldy, ldy)
  }

  /// Computes rows `rows` of y for output columns of panels `panels` with
  /// the kernels `kern` (PackedGemm.kernels). `row(m)` gives the address of
  /// row m of a (k contiguous floats).
  @inline(__always)
  static func run(
    _ kern: ti_f32_kernels, rows: Range<Int>, panels: Range<Int>, k: Int, n: Int, packed: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, lo: Float, hi: Float, y: UnsafeMutablePointer<Float>, ldy: Int,
    row: (Int) -> UnsafePointer<Float>
  ) {
    let mr = kern.gemm_mr
    var m = rows.lowerBound
    while m < rows.upperBound {
      let count = min(mr, rows.upperBound &- m)
      if count == 1 {
        kern.gemm_row(row(m), k, packed, panels.lowerBound, panels.upperBound, bias, n, lo, hi, y + m &* ldy)
      } else {
        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: 8) { t in
          let ptrs = t.baseAddress!
          // Every row pointer is read: rows past count repeat row m (their
          // results are not stored).
          let a0 = row(m)
          for r in 0..<8 { ptrs[r] = r < count ? row(m &+ r) : a0 }
          kern.gemm_tile(
            UnsafePointer(ptrs), 1, k, packed, panels.lowerBound, panels.upperBound, bias, n, lo, hi, y + m &* ldy, ldy,
            count)
        }
      }
      m &+= mr
    }
  }
}

/// Weights packed for PackedGemm at load, owned by the model and shared by
/// all its sessions (read-only once made).
public final class PackedWeights {
  let ptr: UnsafeMutablePointer<Float>
  let n: Int
  let k: Int
  /// false when `ptr` points into a prepack image the model maps (Runtime/PrepackImage.swift).
  let owned: Bool

  init?(_ w: UnsafePointer<Float>, n: Int, k: Int) {
    let count = PackedGemm.packedCount(n: n, k: k)
    guard let bytes = checkedMul(count, 4), let raw = ti_shim_alloc(bytes) else { return nil }
    ptr = raw.bindMemory(to: Float.self, capacity: count)
    self.n = n
    self.k = k
    owned = true
    PackedGemm.pack(w, n: n, k: k, into: ptr)
  }

  /// Weights already packed (read-only memory that outlives this object).
  init(borrowing packed: UnsafePointer<Float>, n: Int, k: Int) {
    ptr = UnsafeMutablePointer(mutating: packed)
    self.n = n
    self.k = k
    owned = false
  }

  deinit { if owned { ti_shim_free(ptr) } }

  var bytes: Int { PackedGemm.packedCount(n: n, k: k) * 4 }
}
