/* The int8 kernels' inner loops, one variant per instruction-set level
 * (kernels/q8_*.inc compiled by kernels/kernels_q8_<level>.c), chosen once
 * by ti_q8_kernels_get(). Every variant gives the same result bit for bit
 * (exact int32 arithmetic, wrapping like the instructions).
 *
 * The GEMM works on the packed layout of QPackedGemm (Swift): panels of 16
 * output channels; in a panel each group of four depth values is 64 bytes,
 * panel[g][j][i] = w[16p + j, 4g + i]; activations are unsigned bytes read
 * four at a time. */
#ifndef TINYINFER_KERNELS_Q8_H
#define TINYINFER_KERNELS_Q8_H
#include <stdint.h>

#pragma clang assume_nonnull begin

/* The constants of the int8 Add/Sub and Mul rows (QAddOp, QMulOp in Swift):
 * zero points of a and b; the input stages of Add (multipliers and shifts,
 * applied to (x - z) << 20); the output stage; negate: Sub. */
typedef struct ti_q8_binary {
  int32_t za, zb, a_mult, a_shift, b_mult, b_shift, out_mult, out_shift, zp, lo, hi, negate;
} ti_q8_binary;

/* The constants of int8 PRelu (prelu.cc): zero points of x, the slope and
 * y; MultiplyByQuantizedMultiplier of s_x / s_y (m1, s1) and of
 * s_x s_a / s_y (m2, s2). */
typedef struct ti_q8_prelu {
  int32_t zx, za, m1, s1, m2, s2, zy;
} ti_q8_prelu;

/* A floor-linear int8 elementwise op (issue 14, QLinearFit in Swift):
 * y = clamp((x1 pa + x2 pb + c) >> shift, lo, hi) on the raw int8 inputs. */
typedef struct ti_q8_lin2 {
  int32_t pa, pb, c, shift, lo, hi;
} ti_q8_lin2;

/* int8 PRelu as two floor-linear pieces (issue 14): y = clamp((x p + q) >>
 * shift, -128, 127) with (p, q) = (pp, qp) where x >= zx, else the
 * channel's (pn, qn). */
typedef struct ti_q8_prelu_lin {
  int32_t zx, pp, qp, shift;
} ti_q8_prelu_lin;

/* int8 PRelu of v = x - zp_x with 16-bit slopes (add_prelu16_row): y =
 * clamp((max(v, 0) pp + min(v, 0) pn + (v < 0 ? qn : qp)) >> shift, -128,
 * 127), pp and the channel's pn within int16. */
typedef struct ti_q8_prelu16 {
  int32_t qp, shift;
} ti_q8_prelu16;

/* A float32 requantization table (QRequantTable's float32 mode, models
 * quantized by tinyinfer with requantization "float32"): every entry of
 * its left-shift row is TI_Q8_RQ_FLOAT (never a shift: those are >= 0),
 * its multiplier row holds each channel's scale s as float bits, and the
 * output stage is XNNPACK's and onnxruntime's: y = clamp(roundeven(fl(
 * fl(acc) s)) + zp, lo, hi), the product in float32 and rounded half to
 * even. Every kernel that takes a `table` honours it. */
#define TI_Q8_RQ_FLOAT (-1)

/* Bytes per block of 16 channels of rq_prepare's output. */
#define TI_Q8_RQ_BLOCK_BYTES 1024
/* An int8 depthwise layer with depth multiplier 1 and c >= 16 (QDepthwiseConv2D
 * in Swift) for dw_prep and dw_rows: weights w [kh, kw, c], bias (c int32 or
 * NULL), the requantization table (as in `requantize`); the image h x in_w
 * (c channels, rows in_w * c apart), window kh x kw with strides sh, sw,
 * dilations dh, dw and the top / left padding; ow output pixels per row;
 * zero points of x and y, the output clamp. */
typedef struct ti_q8_dw {
  const int8_t *w;
  const int32_t *_Nullable bias;
  const int32_t *table;
  intptr_t stride, c, h, in_w, kh, kw, sh, sw, dh, dw, pad_t, pad_l, ow;
  int32_t xz, zp, lo, hi;
} ti_q8_dw;

typedef struct ti_q8_kernels {
  /* 8 rows x 16 columns of one panel: out[r * ldo + j] = initial[j] +
   * sum over the depth of a_r * w (for r < rows, j < valid). The depth is
   * `segments` pieces of `seg_groups` groups of four bytes; row r reads
   * piece s at ptrs[s * 8 + r] (all eight pointers valid). */
  void (*_Nonnull gemm_tile8)(const uint8_t *_Nonnull const *_Nonnull ptrs, intptr_t segments, intptr_t seg_groups,
                              const void *panel, const int32_t *initial, int32_t *out, intptr_t ldo,
                              intptr_t rows, intptr_t valid);
  /* y[i] = clamp(MultiplyByQuantizedMultiplier(acc[i], M_t) + zp, lo, hi)
   * for i < n (n >= 16), with the per-entry constants of QRequantTable
   * (Swift): four rows of `stride` int32 at `table` (left shifts,
   * multipliers, right shifts, 2^right - 1); value i takes entry
   * t = first + i, or i % period when period > 0 (then first is 0). */
  void (*_Nonnull requantize)(const int32_t *acc, const int32_t *table, intptr_t stride, intptr_t first,
                              intptr_t period, int32_t zp, int32_t lo, int32_t hi, int8_t *y, intptr_t n);
  /* Depthwise 3x3 (dilation 1) with depth multiplier 1 and c >= 16 (c
   * channels; 16 at a time, the last block overlapping the one before):
   * one output row of ow pixels at y. x0..x2: the window rows' input rows
   * (channel 0 of column 0; a row of in_w zero points where the window row
   * is outside the image); output column ox reads input columns
   * ox * sw - pad_l + 0...2, those outside the image counting as the zero
   * point (contributing nothing). w: the nine taps' weights, c apart
   * ([3, 3, c]); bias: c int32 or NULL; xz the input zero point;
   * table/stride: the requantization entries of every channel (as in
   * `requantize`). */
  void (*_Nonnull dw3x3_row)(const int8_t *x0, const int8_t *x1, const int8_t *x2, int8_t *y, const int8_t *w,
                             intptr_t c, intptr_t sw, intptr_t pad_l, intptr_t in_w, intptr_t ow,
                             const int32_t *_Nullable bias, int32_t xz, const int32_t *table, intptr_t stride,
                             int32_t zp, int32_t lo, int32_t hi);
  /* The same for any kh x kw window with dilation dw along W: rows holds
   * the kh window rows' input rows (zero-point rows outside the image),
   * input column of tap j: ox * sw - pad_l + j * dw; w: [kh, kw, c]. */
  void (*_Nonnull dw_row)(const int8_t *_Nonnull const *_Nonnull rows, intptr_t kh, intptr_t kw, int8_t *y,
                          const int8_t *w, intptr_t c, intptr_t sw, intptr_t dw, intptr_t pad_l, intptr_t in_w,
                          intptr_t ow, const int32_t *_Nullable bias, int32_t xz, const int32_t *table,
                          intptr_t stride, int32_t zp, int32_t lo, int32_t hi);
  /* y[i] = Add/Sub(a[i], b[i]) (TFLite's integer Add) for the first
   * elements of n, a whole number of vectors; returns how many were done. */
  intptr_t (*_Nonnull add_row)(const int8_t *a, const int8_t *b, int8_t *y, intptr_t n, const ti_q8_binary *p);
  /* y[i] = Mul(a[i], b[i]) likewise. */
  intptr_t (*_Nonnull mul_row)(const int8_t *a, const int8_t *b, int8_t *y, intptr_t n, const ti_q8_binary *p);
  /* y[i] = clamp(round(x[i] / scale) + zp, lo, hi) (Quantize to int8;
   * half_even: ties to even, else away from zero; NaN gives zp) for the
   * first elements of n, a whole number of vectors; returns how many. */
  intptr_t (*_Nonnull quantize_f32)(const float *x, int8_t *y, intptr_t n, float scale, int32_t zp, int32_t lo,
                                    int32_t hi, int32_t half_even);
  /* out[r] = sum over i < k of a[i] * w[r * k + i] for r < rows (int8 x
   * int8, exact, wrapping in int32). */
  void (*_Nonnull dot_rows)(const int8_t *a, const int8_t *w, intptr_t k, intptr_t rows, int32_t *out);
  /* The int8 average pool's finish: y[i] = clamp(s[i] / count rounded half
   * away from zero, lo, hi) (count <= 4096) for the first elements of n, a
   * whole number of vectors; returns how many. */
  intptr_t (*_Nonnull average_row)(const int32_t *s, int32_t count, int32_t lo, int32_t hi, int8_t *y, intptr_t n);
  /* Per-tensor Dequantize of int8: y[i] = float(scale * (x[i] - zp)) in
   * double, likewise for the first whole vectors; returns how many. */
  intptr_t (*_Nonnull dequantize)(const int8_t *x, float *y, intptr_t n, double scale, int32_t zp);
  /* acc[i] += x[i] (int8 into wrapping int32) likewise; returns how many. */
  intptr_t (*_Nonnull accumulate)(int32_t *acc, const int8_t *x, intptr_t n);
  /* The hybrid FullyConnected's row quantization: q[i] (i < k) = x[i]
   * quantized to uint8 with the row's own range (widened to contain 0):
   * scale = (max - min) / 255, zero point round(-min / scale), q =
   * clamp(round_half_even(x / scale) + zp, 0, 255); a row without range
   * gives zeros, scale 1, zero point 0. */
  void (*_Nonnull hybrid_quantize_row)(const float *x, intptr_t k, uint8_t *q, float *scale, int32_t *zp);
  /* Its output: y[i] = clamp(float(acc[i] - zp col_sums[i]) * (xs * w_scale[i])
   * (+ bias[i]), lo, hi) for i < n (v < lo ? lo : v > hi ? hi : v, so NaN
   * stays NaN; -inf and inf for no activation). */
  void (*_Nonnull hybrid_output_row)(const int32_t *acc, const int32_t *col_sums, int32_t zp, float xs,
                                     const float *w_scale, const float *_Nullable bias, float *y, intptr_t n,
                                     float lo, float hi);
  /* The level's name ("baseline", "avx2", "avx512-vnni", "dotprod"). */
  const char *name;
  /* int8 PRelu: y[i] = clamp(zy + (x' >= 0 ? MBQM(x', m1, s1) : MBQM(x' a', m2, s2)), -128, 127) with
   * x' = x[i] - zx, a' = alpha[i % period] - za (y may be x), for the first elements of n, a whole
   * number of vectors; returns how many (0 unless period is 1, a multiple of the vector or >= n). */
  intptr_t (*_Nonnull prelu_row)(const int8_t *x, const int8_t *alpha, intptr_t period, int8_t *y, intptr_t n,
                                 const ti_q8_prelu *p);
  /* FullyConnected's requantization (LiteRT 2.3's reference kernel): y[i] =
   * clamp(round_half_away(double(acc[i]) * scale[i]) + zp, lo, hi) for i < n
   * (any n), the product clamped to +-2^30 first. */
  void (*_Nonnull requantize_f64)(const int32_t *acc, const double *scale, int32_t zp, int32_t lo, int32_t hi,
                                  int8_t *y, intptr_t n);
  /* Rows [0, rows) of a (row r at a + r * lda, `groups` groups of four
   * bytes) times panels [p0, p1) (panel p at panel + p * panel_bytes):
   * out[r * ldo + c] = initial[c] + sum over the depth of a_r * w_c for
   * those panels' columns c < n (out and initial indexed by column). */
  void (*_Nonnull gemm_rows)(const uint8_t *a, intptr_t lda, intptr_t rows, intptr_t groups, const void *panel,
                             intptr_t panel_bytes, intptr_t p0, intptr_t p1, const int32_t *initial, int32_t *out,
                             intptr_t ldo, intptr_t n);
  /* One row a (`groups` groups of four bytes) times panels [p0, p1):
   * out[c] = initial[c] + sum over the depth of a * w_c for those panels'
   * columns c < n; the same values as gemm_rows with one row. */
  void (*_Nonnull gemv)(const uint8_t *a, intptr_t groups, const void *panel, intptr_t panel_bytes, intptr_t p0,
                        intptr_t p1, const int32_t *initial, int32_t *out, intptr_t n);
  /* --- issue 14: int8 that stays fast on real models (q8_linear.inc) --- */
  /* y[i] = clamp((a[i] pa + b[i] pb + c) >> shift, lo, hi) (y may be a or
   * b) for the first elements of n, a whole number of vectors; returns how
   * many. The caller guarantees no int32 overflow for any int8 a, b. */
  intptr_t (*_Nonnull add_lin_row)(const int8_t *a, const int8_t *b, int8_t *y, intptr_t n, const ti_q8_lin2 *p);
  /* y[i] = clamp((x[i] P + Q) >> shift, -128, 127), (P, Q) = (pp, qp) where
   * x[i] >= zx, else (pn[i % period], qn[i % period]) (y may be x), for the
   * first elements of n, a whole number of vectors; returns how many (0
   * unless period is 1, a multiple of the vector or >= n). */
  intptr_t (*_Nonnull prelu_lin_row)(const int8_t *x, const int32_t *pn, const int32_t *qn, intptr_t period,
                                     int8_t *y, intptr_t n, const ti_q8_prelu_lin *p);
  /* int8 max pooling: output pixels 0..<ow of one row (yrow, c channels
   * each) of image ximg [h, w, c], window kh x kw from input row iy0 and
   * column ox * sw - padl, clipped to the image; the maximum clamped to
   * [lo, hi] (within -128...127). */
  void (*_Nonnull max_pool_row)(int8_t *yrow, const int8_t *ximg, intptr_t c, intptr_t h, intptr_t w, intptr_t kh,
                                intptr_t kw, intptr_t iy0, intptr_t padl, intptr_t sw, intptr_t ow, int32_t lo,
                                int32_t hi);
  /* add_lin_row's t = clamp((a[i] pa + b[i] pb + c) >> shift, lo, hi), then
   * prelu_lin_row's y[i] of t (an int8 Add with a fused int8 PRelu), same
   * return value and period rule as prelu_lin_row. */
  intptr_t (*_Nonnull add_prelu_lin_row)(const int8_t *a, const int8_t *b, int8_t *y, intptr_t n,
                                         const ti_q8_lin2 *p, const int32_t *pn, const int32_t *qn, intptr_t period,
                                         const ti_q8_prelu_lin *q);
  /* Rows of channels (a convolution's output pixels): y[r * ldy + j] =
   * requantize's value of acc[r * lda + j] with table entry j, for r <
   * rows and j < c (c >= 16); table and stride as in `requantize`. */
  void (*_Nonnull requantize_rows)(const int32_t *acc, intptr_t lda, intptr_t rows, intptr_t c,
                                   const int32_t *table, intptr_t stride, int32_t zp, int32_t lo, int32_t hi,
                                   int8_t *y, intptr_t ldy);
  /* gemm_tile8's eight rows (ptrs, segments, seg_groups, rows) times
   * panels [p0, p1) (panel p at panel + p * panel_bytes): out[r * ldo + c]
   * = initial[c] + sum over the depth of a_r * w_c for those panels'
   * columns c < n (out and initial indexed by column). */
  void (*_Nonnull gemm_indirect)(const uint8_t *_Nonnull const *_Nonnull ptrs, intptr_t segments,
                                 intptr_t seg_groups, const void *panel, intptr_t panel_bytes, intptr_t p0,
                                 intptr_t p1, const int32_t *initial, int32_t *out, intptr_t ldo, intptr_t rows,
                                 intptr_t n);
  /* The constants of `requantize` for `blocks` whole blocks of 16 channels
   * (table entries from 16b for block b; table and stride as there), laid
   * out for conv_rows16 at out + b * TI_Q8_RQ_BLOCK_BYTES. Returns 1, or 0
   * where the level has no conv_rows16 (nothing written). */
  intptr_t (*_Nonnull rq_prepare)(const int32_t *table, intptr_t stride, intptr_t blocks, int32_t zp, void *out);
  /* A direct int8 convolution of one output row for windows of short rows
   * (q8_requant.inc): y[ox * cout + c] for ox < ow, c < cout, from the int16
   * image of x - zp_x (zero padding) at x (the window of pixel 0; window
   * rows row_stride and pixels pix_step elements apart; each window row
   * `pairs` int16 pairs, one element past an odd row read), weights w as
   * int16 pairs [blocks][kh][pairs][16][2], bias blocks * 16 int32, rq from
   * rq_prepare. Returns 1, or 0 where the level has none (nothing done). */
  intptr_t (*_Nonnull conv_rows16)(const int16_t *x, intptr_t row_stride, intptr_t kh, intptr_t pairs,
                                   intptr_t pix_step, intptr_t ow, const int16_t *w, const int32_t *bias,
                                   const void *rq, intptr_t blocks, intptr_t cout, int32_t lo, int32_t hi,
                                   int8_t *y);
  /* A 1x1 convolution of depth k <= 128, stride 1, no padding (q8_requant.inc):
   * y[p * cout + c] for p < pixels, c < cout, from x (k int8 bytes per
   * pixel, consecutive), zero point xz; w, bias and rq as conv_rows16's with
   * kh = 1 and pairs = (k + 1) / 2. Returns 1, or 0 where the level has
   * none or k is past its limit (64 with AVX-512 VNNI; nothing done: a call
   * with 0 pixels tells at bind). */
  intptr_t (*_Nonnull conv1x1_rows)(const int8_t *x, intptr_t pixels, intptr_t k, int32_t xz, const int16_t *w,
                                    const int32_t *bias, const void *rq, intptr_t blocks, intptr_t cout, int32_t lo,
                                    int32_t hi, int8_t *y);
  /* --- depthwise with its per-block data built once (q8_depthwise.inc) --- */
  /* The bytes of the level's precomputed data for layer p (0: the level has
   * none for this shape; dw_rows then takes NULL); when out is not NULL
   * (64-byte aligned, that many bytes) also writes it. Built by the level
   * that reads it (dw_rows of the same table). With c < 16, dw_rows may
   * only be called when this returned more than 0 (the other kernels take
   * at least 16 channels). */
  intptr_t (*_Nonnull dw_prep)(const ti_q8_dw *p, void *_Nullable out);
  /* Output rows [oy0, oy1) of one image ximg [h, in_w, c] of layer p to y
   * (row oy0 at y, rows ow * c apart), with the data dw_prep wrote (or NULL
   * when it returned 0); window rows above or below the image and columns
   * left or right of it read nothing and count as the zero point
   * (contributing nothing, as in the reference kernel that skips them).
   * rows: room for kh pointers (scratch). Same values as dw_row / dw3x3_row
   * on the rows inside the image. */
  void (*_Nonnull dw_rows)(const ti_q8_dw *p, const void *_Nullable prep, const int8_t *ximg, int8_t *y,
                           intptr_t oy0, intptr_t oy1, const int8_t *_Nonnull *_Nonnull rows);
  /* --- issue 14: int8 Maximum / Minimum and ResizeBilinear (q8_resize.inc) --- */
  /* y[i] = max(a[i], b[i * b_step]) (min when is_min) of the raw int8
   * values for i < n, b_step 0 (b[0] broadcast) or 1 (y may be a or b). */
  void (*_Nonnull minmax_row)(const int8_t *a, const int8_t *b, int8_t *y, intptr_t n, intptr_t b_step,
                              int32_t is_min);
  /* ResizeBilinear int8, horizontal pass of one input row: h[ox * c + ch] =
   * row[x0[ox] + ch] (1024 - wx[ox]) + row[x1[ox] + ch] wx[ox]. */
  void (*_Nonnull bilinear_h)(const int8_t *row, int32_t *h, intptr_t c, intptr_t ow, const int32_t *x0,
                              const int32_t *x1, const int32_t *wx);
  /* Its vertical pass: y[i] = round_half_away((h0[i] (1024 - wy) + h1[i] wy) / 2^20), i < n. */
  void (*_Nonnull bilinear_v)(const int32_t *h0, const int32_t *h1, int8_t *y, intptr_t n, int32_t wy);
  /* An int8 Add with a fused int8 PRelu, the PRelu in 16-bit lanes: v =
   * clamp((a[i] pa + b[i] pb + c) >> shift, lo, hi) with p's c, lo and hi
   * already less the PRelu's input zero point (v = t - zp_x), then y[i] as
   * ti_q8_prelu16 says with pq[e] = pp & 0xffff | pn << 16 and qn[e] for
   * e = i % period (one entry when period is 1), each group of 16 entries
   * in the order of the vpunpck{l,h}wd halves ([0-3, 8-11] then [4-7,
   * 12-15]) and, when period is a multiple of 32, each group of 32 as the
   * first halves of its two groups of 16 then their second halves
   * (QPReluKernel.slot16); returns how many elements
   * it did (a multiple of 16; 0 unless period is 1 or a multiple of 16).
   * NULL at levels without it (the caller keeps add_prelu_lin_row). */
  intptr_t (*_Nullable add_prelu16_row)(const int8_t *a, const int8_t *b, int8_t *y, intptr_t n,
                                        const ti_q8_lin2 *p, const int32_t *pq, const int32_t *qn, intptr_t period,
                                        const ti_q8_prelu16 *q);
  /* gemv for weights in [-127, 127] only (no byte of the panels is -128):
   * out[c] = initial[c] + sum over the depth of (a - 128) * w_c, so the
   * caller passes initial + 128 * sum w_c to get gemv's values. NULL at
   * levels without it (the caller keeps gemv). */
  void (*_Nullable gemv_s7)(const uint8_t *a, intptr_t groups, const void *panel, intptr_t panel_bytes,
                            intptr_t p0, intptr_t p1, const int32_t *initial, int32_t *out, intptr_t n);
  /* mul_row with the float32 output stage (Mul's `requantization` 1): y[i] =
   * clamp(roundeven(fl(fl((a - za)(b - zb)) scale)) + zp, lo, hi) with p's
   * za, zb, zp, lo, hi (its multipliers unused); return value as mul_row. */
  intptr_t (*_Nonnull mul_row_f32)(const int8_t *a, const int8_t *b, int8_t *y, intptr_t n, const ti_q8_binary *p,
                                   float scale);
} ti_q8_kernels;

/* The table of the level ti_cpu_level() chose (with VNNI: ti_cpu_vnni()). */
const ti_q8_kernels *ti_q8_kernels_get(void);

/* gemm_rows on AMX tiles (kernels/kernels_q8_amx.c; x86-64, only where
 * ti_cpu_amx()): its first rows & ~15 rows, the same values; returns the
 * rows done. Called by the VNNI level's gemm_rows. */
intptr_t ti_q8_gemm_rows_amx(const uint8_t *a, intptr_t lda, intptr_t rows, intptr_t groups, const void *panel,
                             intptr_t panel_bytes, intptr_t p0, intptr_t p1, const int32_t *initial, int32_t *out,
                             intptr_t ldo, intptr_t n);

#pragma clang assume_nonnull end
#endif
