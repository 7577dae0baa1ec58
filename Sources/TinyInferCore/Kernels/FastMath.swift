import TinyInferShims

/// Vectorized float32 exp, logistic, erf and GELU over memory are C kernels
/// per CPU level (tinyinfer_kernels_f32.h: exp, logistic, gelu,
/// softmax_row), fetched in bind (PackedGemm.kernels); the libm calls they
/// replace cost 10-20 ns per element. Single values use the same formulas:
///
/// exp: Cephes' expf (range reduction by ln 2 in two parts, a degree-6
/// polynomial, 2^n built in the exponent bits): about 1 ulp; overflow gives
/// +inf, underflow 0, NaN stays NaN (ti_f32_exp1).
/// erf: Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7, ti_f32_erf1).
enum FastMath {
  @inline(__always)
  static func expScalar(_ x: Float) -> Float { ti_f32_exp1(x) }
}
