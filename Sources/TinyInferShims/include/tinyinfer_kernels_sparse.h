/* Sparse weight kernels (FullyConnected and 1x1 Conv2D with constant
 * weights mostly zero), one variant per CPU level (kernels/levels.h),
 * chosen once by ti_sparse_kernels_get(). Written once in
 * kernels/sparse_kernels.inc, compiled by kernels/kernels_sparse_<level>.c.
 *
 * Weights [n, k] are stored row-compressed (SparseGemm.swift): output
 * channel c has the nonzeros start[c] ..< start[c + 1] of `idx` (input
 * channel, 0 <= idx < k, increasing) and `val`.
 *
 * Several rows (pixels of a 1x1 convolution, a batch) go through tiles of
 * `tile` rows: the tile's inputs are transposed into scratch (k x tile), so
 * each nonzero is one broadcast and tile / lanes multiply-adds on
 * contiguous vectors (the layout of XNNPACK's sparse kernels, reached from
 * NHWC by the transposition). A single row is a row-compressed dot product
 * per output channel. float32 2:4 weights (f32_nm24) keep the rows NHWC and
 * select each output channel's two inputs of every group of 4 with byte
 * shuffles (kernels/sparse_kernels.inc).
 *
 * The int8 kernels compute exact sums (in float while a row has at most
 * 1024 inputs, where every partial sum of int8 products is an integer of
 * at most 2^24 in magnitude; in int32 above), plus initial[c] in wrapping
 * int32, so they equal the dense int8 kernels bit for bit: acc[c] =
 * initial[c] + sum x[k] * w[c, k] over the nonzeros, x and w int8. */
#ifndef TINYINFER_KERNELS_SPARSE_H
#define TINYINFER_KERNELS_SPARSE_H
#include <stdint.h>

#pragma clang assume_nonnull begin

typedef struct ti_sparse_kernels {
  /* Rows per tile of the multi-row kernels at this level. */
  long tile;
  /* Rows (count <= tile) at rows[0 ..< count] (k floats each) times the
   * sparse weights, output channels c0 ..< c1: y[r * ldy + c] =
   * clamp(bias[c] + sum, lo, hi). scratch: k * tile floats, 64-byte aligned. */
  void (*_Nonnull f32_tile)(const float *_Nonnull const *_Nonnull rows, long count, long k, const int32_t *start,
                            const int32_t *idx, const float *val, const float *_Nullable bias, long c0, long c1,
                            float lo, float hi, float *y, long ldy, float *scratch);
  /* One row x (k floats): y[c] = clamp(bias[c] + sum, lo, hi) for c0 ..< c1. */
  void (*_Nonnull f32_row)(const float *x, const int32_t *start, const int32_t *idx, const float *val,
                           const float *_Nullable bias, long c0, long c1, float lo, float hi, float *y);
  /* int8: acc[r * ldo + c] = initial[c] + sum over the nonzeros of
   * rows[r][idx] * val (int32, wrapping) for r < count, c0 <= c < c1.
   * fval: val as floats where no output channel has more than 1024
   * nonzeros (the sums in float, exact), else NULL (the sums in int32).
   * scratch: k * tile int32, 64-byte aligned. */
  void (*_Nonnull q8_tile)(const int8_t *_Nonnull const *_Nonnull rows, long count, long k, const int32_t *start,
                           const int32_t *idx, const int8_t *val, const float *_Nullable fval,
                           const int32_t *initial, long c0, long c1, int32_t *acc, long ldo, int32_t *scratch);
  /* int8, one row: acc[c] = initial[c] + sum for c0 ..< c1. */
  void (*_Nonnull q8_row)(const int8_t *x, const int32_t *start, const int32_t *idx, const int8_t *val,
                          const int32_t *initial, long c0, long c1, int32_t *acc);
  const char *name;
  /* q8_tile with fval (every channel at most 1024 nonzeros) and the float32
   * output stage of a TI_Q8_RQ_FLOAT table fused: int8 y[r * ldy + c] =
   * clamp(roundeven(fl(fl(acc) scales[c])) + zp, lo, hi), acc as q8_tile's
   * (tinyinfer_kernels_q8.h). scratch as q8_tile's. */
  void (*_Nonnull q8_tile_rq)(const int8_t *_Nonnull const *_Nonnull rows, long count, long k, const int32_t *start,
                              const int32_t *idx, const float *fval, const int32_t *initial, const float *scales,
                              int32_t zp, int32_t lo, int32_t hi, long c0, long c1, int8_t *y, long ldy,
                              int32_t *scratch);
  /* 2:4 weights (at most 2 nonzeros in every 4 consecutive input channels
   * of each output channel; k a multiple of 4), packed by nm24_pack: rows
   * x + r * ldx (k floats) for r < m, y[r * ldy + c] = clamp(bias[c] + sum,
   * lo, hi) for c < n. */
  void (*_Nonnull f32_nm24)(const float *x, long ldx, long m, long k, const float *val, const int32_t *sel,
                            const float *_Nullable bias, long n, float lo, float hi, float *y, long ldy);
  /* Packs dense weights w [n, k] for f32_nm24, with P = n rounded up to a
   * multiple of nm24_lanes: val and sel P * k / 2 floats and int32.
   * Returns 0 (val and sel partly written) when k is not a multiple of 4 or
   * a group of 4 has more than 2 nonzeros. */
  long (*_Nonnull nm24_pack)(const float *w, long n, long k, float *val, int32_t *sel);
  /* Output channels per block of the 2:4 kernel (the level's float lanes). */
  long nm24_lanes;
  /* int8 2:4 weights (k a multiple of 4), packed by q8_nm24_pack: rows x +
   * r * ldx (k int8 each) for r < m, acc[c] = initial[c] + sum over the
   * inputs of (x + 128) w (int32, wrapping; the caller's initial[c] =
   * bias[c] - (128 + zp_x) sum w_c gives the dense kernels' sums), for c <
   * n. scales not NULL: the float32 output stage of TI_Q8_RQ_FLOAT tables
   * (q8_tile_rq's), int8 y[r * ldy + c] = clamp(roundeven(fl(fl(acc)
   * scales[c])) + zp, lo, hi) with lo, hi within int8; NULL: int32 y[r * ldy
   * + c] = acc (zp, lo, hi unused). scratch: 8 * (8 * ceil(k / 8) + 16)
   * bytes. Every level computes it; AVX2 and AVX-512 with 256-bit shuffles,
   * the others lane by lane (sparse_kernels.inc). */
  void (*_Nonnull q8_nm24)(const int8_t *x, long ldx, long m, long k, const int32_t *packed,
                           const int32_t *initial, long n, const float *_Nullable scales, int32_t zp, int32_t lo,
                           int32_t hi, void *y, long ldy, uint8_t *scratch);
  /* Packs int8 weights w [n, k] for q8_nm24: packed 32 * ceil(n / 8) *
   * ceil(k / 8) int32, sums[c] = sum of row c (n int32). Returns 0 (partly
   * written) when k is not a multiple of 4 or a group of 4 has more than 2
   * nonzeros. */
  long (*_Nonnull q8_nm24_pack)(const int8_t *w, long n, long k, int32_t *packed, int32_t *sums);
} ti_sparse_kernels;

const ti_sparse_kernels *ti_sparse_kernels_get(void);

#pragma clang assume_nonnull end
#endif
