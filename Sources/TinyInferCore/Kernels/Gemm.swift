import TinyInferShims

/// Float32 GEMM on unpacked operands, used by FullyConnected (weights not
/// packed at load) and MatMul; the inner loops are C kernels per CPU level
/// (tinyinfer_kernels_f32.h: gemm_abt, gemm_ab), fetched once in bind
/// (PackedGemm.kernels) and passed in.
enum Gemm {
  /// Rows `rows`, columns `cols` of y = a * w^T (+ bias), depth `k`: a
  /// [M, k] row stride `lda`, w [n, k] row stride `ldw`, y row stride
  /// `ldy`. Eight (then four, then one) dot products at a time.
  @inline(__always)
  static func abT(
    _ kern: ti_f32_kernels, _ a: UnsafePointer<Float>, lda: Int, _ w: UnsafePointer<Float>, ldw: Int,
    _ bias: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>, ldy: Int, rows: Range<Int>, cols: Range<Int>,
    k: Int
  ) {
    kern.gemm_abt(
      a, lda, w, ldw, bias, y, ldy, rows.lowerBound, rows.upperBound, cols.lowerBound, cols.upperBound, k)
  }

  /// Rows `rows` of y = a * b, a [M, k] (row stride lda), b [k, n] (row
  /// stride ldb): each row of y is the sum over k of a[i, k] times row k of
  /// b, 64 (then 16) columns at a time. No horizontal sums: the form for
  /// MatMul's short depths.
  @inline(__always)
  static func ab(
    _ kern: ti_f32_kernels, _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
    _ y: UnsafeMutablePointer<Float>, ldy: Int, rows: Range<Int>, n: Int, k: Int
  ) {
    kern.gemm_ab(a, lda, b, ldb, y, ldy, rows.lowerBound, rows.upperBound, n, k)
  }
}
