/* Vectorized elementwise float32 math, one variant per CPU level
 * (kernels/levels.h), in a table of its own: ti_math_kernels_get() returns
 * the level ti_cpu_level() chose. Written once in kernels/f32_math.inc,
 * compiled per level by kernels/kernels_math_<level>.c. Every function is
 * y[i] = f(x[i]) for i < n, x and y the same buffer or disjoint. Measured
 * errors against float64 are in docs/ops.md ("Accuracy of the elementwise
 * math"); python/tests/test_ops_transcendental.py checks them. */
#ifndef TINYINFER_KERNELS_MATH_H
#define TINYINFER_KERNELS_MATH_H

#include <stdint.h>

#pragma clang assume_nonnull begin

typedef struct ti_math_kernels {
  /* tanh: an odd polynomial below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1) above. */
  void (*_Nonnull tanh)(const float *x, float *y, long n);
  /* Natural log: exponent and mantissa from the bits, a degree-9
   * polynomial (Cephes logf); x < 0 or NaN gives NaN, 0 gives -inf,
   * +inf gives +inf, subnormals are scaled first. */
  void (*_Nonnull log)(const float *x, float *y, long n);
  /* erf: x P(x^2) below |x| = 1, 1 - exp(-x^2) Q(1/|x|) up to 4, +-1 beyond. */
  void (*_Nonnull erf)(const float *x, float *y, long n);
  /* The tanh form of GELU: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
  void (*_Nonnull gelu_tanh)(const float *x, float *y, long n);
  /* Rounding to an integer value: down, up, and to nearest with ties to
   * even (ONNX Round, TFLite ROUND); NaN, +-inf and -0 pass through. */
  void (*_Nonnull floor)(const float *x, float *y, long n);
  void (*_Nonnull ceil)(const float *x, float *y, long n);
  void (*_Nonnull round)(const float *x, float *y, long n);
  /* HardSwish and the int8 table lookup (issue 14: int8 against float32) */
  /* HardSwish: x min(max(x + 3, 0), 6) / 6 as (x c) (1 / 6); NaN passes. */
  void (*_Nonnull hard_swish)(const float *x, float *y, long n);
  /* y[i] = t[(uint8_t)x[i] ^ 0x80] (t: 256 entries indexed by the int8
   * value + 128) for i < n; x and y may be the same buffer. */
  void (*_Nonnull lookup256)(const int8_t *x, int8_t *y, const int8_t *t, long n);
} ti_math_kernels;

/* The table of the chosen level (ti_cpu_level()). */
const ti_math_kernels *ti_math_kernels_get(void);

#pragma clang assume_nonnull end

#endif
