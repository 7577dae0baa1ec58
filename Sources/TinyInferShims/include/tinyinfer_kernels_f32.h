/* The float32 inner kernels, one variant per CPU level (kernels/levels.h):
 * ti_f32_kernels_get() returns the table of the level ti_cpu_level() chose,
 * filled once. The Swift kernels keep their loops, threading and binding
 * and call these for the inner work (fetching the function pointers once,
 * in bind). Written once in kernels/f32_*.inc, compiled per level by
 * kernels/kernels_f32_<level>.c. */
#ifndef TINYINFER_KERNELS_F32_H
#define TINYINFER_KERNELS_F32_H
#include <stdint.h>

#pragma clang assume_nonnull begin

typedef struct ti_f32_kernels {
  /* Rows of a GEMM tile at this level (8 with 32 vector registers, else
   * fewer); gemm_tile computes up to this many rows. */
  long gemm_mr;
  /* Up to gemm_mr rows (`rows`) of tiles against packed panels p0..<p1
   * of 16 output channels (PackedGemm.swift; panel p at packed + p * k *
   * 16, k = segments * seglen): the depth is `segments` pieces of `seglen`
   * values, row r reading piece s at ptrs[s * 8 + r] (all 8 pointers of a
   * piece readable; rows past `rows` are computed and not stored); stores
   * sum + bias clamped to [lo, hi] at columns 16p..<min(16p+16, n) of y
   * (row stride ldy). */
  void (*_Nonnull gemm_tile)(const float *_Nonnull const *_Nonnull ptrs, long segments, long seglen,
                             const float *packed, long p0, long p1, const float *_Nullable bias, long n, float lo,
                             float hi, float *y, long ldy, long rows);
  /* One row a (k floats) against panels p0..<p1 of `packed` (k * 16 floats
   * each): y[col] for the panels' columns below n. */
  void (*_Nonnull gemm_row)(const float *a, long k, const float *packed, long p0, long p1,
                            const float *_Nullable bias, long n, float lo, float hi, float *y);
  /* Rows 0..<rows of a (row r at a + r * lda, k floats) against panels
   * p0..<p1, stored at y + r * ldy: gemm_tile on tiles of gemm_mr rows
   * (the rows left in a last tile), a single last row through gemm_row,
   * looped in C. */
  void (*_Nonnull gemm_rows)(const float *a, long lda, long rows, long k, const float *packed, long p0, long p1,
                             const float *_Nullable bias, long n, float lo, float hi, float *y, long ldy);
  /* Rows of gemm_tile8 (at least gemm_mr where the level has a wider
   * tile for 8 columns; equal to it elsewhere). */
  long gemm_mr8;
  /* Up to gemm_mr8 rows (`rows`, only those read) of a, row r at a + r *
   * lda (k floats), against one packed panel (k * 16 floats) of n <= 8
   * valid columns: y[r * ldy + j] = clamp(sum + bias[j], lo, hi), j < n. */
  void (*_Nonnull gemm_tile8)(const float *a, long lda, long k, const float *panel, const float *_Nullable bias,
                              long n, float lo, float hi, float *y, long ldy, long rows);
  /* Conv2D (one group, packed weights, window columns contiguous: dilation
   * 1 along x) output pixels ox0..<ox1 of one output row, y at pixel ox0
   * (n floats each): rows[i] is input row i of the window (its column 0;
   * w pixels of cin floats) or NULL for a row above or below the image (no
   * contribution); pixel ox reads columns ox * sw - padl + j, j < kw, zeros
   * outside 0..<w. scratch: kh * (7 * sw + kw) * cin floats. Accumulators
   * start from the bias, clamped to [lo, hi]. */
  void (*_Nonnull conv_row)(const float *_Nullable const *_Nonnull rows, long kh, long w, long cin, long kw, long sw,
                            long padl, long ox0, long ox1, const float *packed, long panels,
                            const float *_Nullable bias, long n, float lo, float hi, float *y, float *scratch);
  /* Rows m0..<m1, columns n0..<n1 of y = a * w^T (+ bias): a [M, k] row
   * stride lda, w [N, k] row stride ldw, y row stride ldy. */
  void (*_Nonnull gemm_abt)(const float *a, long lda, const float *w, long ldw, const float *_Nullable bias,
                            float *y, long ldy, long m0, long m1, long n0, long n1, long k);
  /* Rows m0..<m1 of y = a * b: a [M, k] (lda), b [k, n] (ldb), y (ldy). */
  void (*_Nonnull gemm_ab)(const float *a, long lda, const float *b, long ldb, float *y, long ldy, long m0,
                           long m1, long n, long k);
  /* Depthwise (multiplier 1) output pixels px0..<px1 of one row, general
   * window (DepthwiseConv2D.swift depthwiseRow). */
  void (*_Nonnull dw_row)(float *yrow, const float *ximg, const float *w, const float *_Nullable bias, long c,
                          long h, long wi, long kh, long kw, long iy0, long padl, long sw, long dh, long dw,
                          float lo, float hi, long px0, long px1);
  /* Depthwise 3x3 interior pixels px0..<px1 of one row (any c). */
  void (*_Nonnull dw_3x3)(float *yrow, const float *row0, const float *row1, const float *row2, const float *w,
                          const float *_Nullable bias, long c, long padl, long sw, float lo, float hi, long px0,
                          long px1);
  /* max(init, x[0..<n]) ignoring NaN (the caller looks for NaN apart). */
  float (*_Nonnull max_run)(float init, const float *x, long n);
  /* y[i] = f(x[i]) for i < n, x and y the same buffer or disjoint:
   * exp (ti_f32_exp1), logistic 1 / (1 + exp(-x)), exact GELU
   * 0.5 x (1 + erf(x / sqrt 2)) (ti_f32_erf1). */
  void (*_Nonnull exp)(const float *x, float *y, long n);
  void (*_Nonnull logistic)(const float *x, float *y, long n);
  void (*_Nonnull gelu)(const float *x, float *y, long n);
  /* One contiguous softmax row: y = exp(beta x - max(beta x)) / sum
   * (beta >= 0; a NaN anywhere gives NaN). */
  void (*_Nonnull softmax_row)(const float *x, float *y, long n, float beta);
  /* One layer-normalization row of d values: (x - mean) / sqrt(var + eps)
   * * g (+ b), mean and variance summed in order in float32. */
  void (*_Nonnull layernorm_row)(const float *x, float *y, const float *g, const float *_Nullable b, long d,
                                 float eps);
  /* Pooling steps over c channels: y = max(y, x) with NaN propagating, and
   * y += x. */
  void (*_Nonnull pool_max)(float *y, const float *x, long c);
  void (*_Nonnull pool_add)(float *y, const float *x, long c);
  /* The average's end: y[i] = clamp(y[i] / divisor, lo, hi) over c channels
   * (NaN stays NaN). */
  void (*_Nonnull pool_divide)(float *y, long c, float divisor, float lo, float hi);
  /* Eight dot products of length k, rows a[0..3] against rows b0 and b1:
   * r[j * 4 + i] = dot(a[i], b_j) (the grouped convolution's step). */
  void (*_Nonnull dot4x2)(const float *_Nonnull const *_Nonnull a, const float *_Nonnull b0, const float *_Nonnull b1,
                          long k, float *_Nonnull r);
  /* The int4 (Q4_0) row dot product: nb blocks of 18 bytes (float16 scale,
   * then 16 bytes of nibbles, low nibbles elements 0-15, high 16-31, each
   * minus 8) against 32 * nb floats of x. */
  float (*_Nonnull dot_q4)(const float *_Nonnull x, const unsigned char *_Nonnull w, long nb);
  /* acc[i] += (double)x[i] for i < n (Mean over outer axes). */
  void (*_Nonnull sum_f64_row)(double *acc, const float *x, long n);
  /* Columns of x [rows, n]: y[j] = (float)(acc / divisor), acc the sum
   * in double of x[r * n + j] over r in order from 0 (sum_f64_row's sums
   * and Mean's rounding, the same bits). */
  void (*_Nonnull mean_cols)(const float *x, long rows, long n, double divisor, float *y);
  /* One row of a broadcast binary op (Binary.swift): y[i] = op(a[i * ia],
   * b[i * ib]) for i < n, ia and ib 0 or 1; y may be a or b. op is a
   * TI_F32_BIN_* code. */
  void (*_Nonnull binary_row)(int op, const float *a, long ia, const float *b, long ib, float *y, long n);
  /* binary_row on `rows` rows: row r of a at a + r * sa, of b at b + r * sb
   * (sa, sb 0 for a row repeated), of y at y + r * n. */
  void (*_Nonnull binary_rows)(int op, const float *a, long sa, long ia, const float *b, long sb, long ib, float *y,
                               long rows, long n);
  /* Add with a PRelu fused (issue 20): rows of c channels, t = a + b,
   * y = t >= 0 ? t : t * slope[channel] (NaN stays NaN), for rows
   * elements of a, b and y (contiguous; y may be a or b). */
  void (*_Nonnull add_prelu)(const float *a, const float *b, const float *slope, float *y, long rows, long c);
  /* Max pooling (issue 20): output pixels 0..<ow of one row (yrow, c
   * channels each) of image ximg [h, w, c], window kh x kw from input row
   * iy0 and column ox * sw - padl, clipped to the image; the maximum with
   * NaN propagating (pool_max's rule), from -inf, clamped to [lo, hi]. */
  void (*_Nonnull max_pool_row)(float *yrow, const float *ximg, long c, long h, long w, long kh, long kw, long iy0,
                                long padl, long sw, long ow, float lo, float hi);
  /* y[i] = the float16 value of the bits h[i], exactly (subnormals, inf and
   * NaN included), for i < n: Dequantize of float16 weights (issue 18: the
   * load of fp16 models). */
  void (*_Nonnull from_f16)(const uint16_t *h, float *y, long n);
} ti_f32_kernels;

/* Binary ops of binary_row: +, -, *, /, maximum and minimum (NaN
 * propagating), PRelu (a >= 0 ? a : a * b). */
enum {
  TI_F32_BIN_ADD = 0,
  TI_F32_BIN_SUB = 1,
  TI_F32_BIN_MUL = 2,
  TI_F32_BIN_DIV = 3,
  TI_F32_BIN_MAX = 4,
  TI_F32_BIN_MIN = 5,
  TI_F32_BIN_PRELU = 6,
};

/* The table of the chosen level (ti_cpu_level()). */
const ti_f32_kernels *ti_f32_kernels_get(void);

/* exp(x) in float32 without libm: Cephes' expf (range reduction by ln 2 in
 * two parts, a degree-6 polynomial, 2^n built in the exponent bits), about
 * 1 ulp; overflow gives +inf, underflow 0, NaN stays NaN. Plain arithmetic
 * and selects, so loops of it vectorize (the kernels' exp) and the Swift
 * core calls it for single values. */
static inline __attribute__((always_inline)) float ti_f32_exp1(float x0) {
  float x = x0 < -87.33654f ? -87.33654f : (x0 > 88.72283f ? 88.72283f : x0);
  /* n = round(x / ln 2) by the 1.5 * 2^23 trick; its integer sits in the
   * low mantissa bits of t. */
  float t = x * 1.44269504f + 12582912.0f;
  float nf = t - 12582912.0f;
  float r = x - nf * 0.693359375f + nf * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float e = p * (r * r) + r + 1;
  union { float f; unsigned u; } tb = {t}, sc;
  sc.u = (tb.u - 0x4B400000u + 127u) << 23;
  float v = e * sc.f;
  return x0 > 88.72283f ? __builtin_inff() : (x0 < -87.33654f ? 0 : v);
}

/* erf(x): Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7). */
static inline __attribute__((always_inline)) float ti_f32_erf1(float v) {
  float a = v < 0 ? -v : v;
  float t = 1 / (1 + 0.3275911f * a);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  float r = 1 - p * t * ti_f32_exp1(-a * a);
  return v < 0 ? -r : r;
}

#pragma clang assume_nonnull end

#endif
