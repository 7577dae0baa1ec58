/* The float32 inner kernels, one variant per CPU level (kernels/levels.h):
 * ti_f32_kernels_get() returns the table of the level ti_cpu_level() chose,
 * filled once. The Swift kernels keep their loops, threading and binding
 * and call these for the inner work (fetching the function pointers once,
 * in bind). Written once in kernels/f32_*.inc, compiled per level by
 * kernels/kernels_f32_<level>.c. */
#ifndef TINYINFER_KERNELS_F32_H
#define TINYINFER_KERNELS_F32_H

#pragma clang assume_nonnull begin

typedef struct ti_f32_kernels {
  /* Rows of a GEMM tile at this level (8 with 32 vector registers, else
   * fewer); gemm_tile computes up to this many rows. */
  long gemm_mr;
  /* Up to gemm_mr rows (`rows`) of a tile against one packed panel of 16
   * output channels (PackedGemm.swift): the depth is `segments` pieces of
   * `seglen` values, row r reading piece s at ptrs[s * 8 + r]; stores
   * act(sum + bias) clamped to [lo, hi] at columns col..<min(col+16, n) of
   * y (row stride ldy). */
  void (*_Nonnull gemm_tile)(const float *_Nonnull const *_Nonnull ptrs, long segments, long seglen, const float *panel,
                             const float *_Nullable bias, long col, long n, float lo, float hi, float *y,
                             long ldy, long rows);
  /* One row a (k floats) against panels p0..<p1 of `packed` (k * 16 floats
   * each): y[col] for the panels' columns below n. */
  void (*_Nonnull gemm_row)(const float *a, long k, const float *packed, long p0, long p1,
                            const float *_Nullable bias, long n, float lo, float hi, float *y);
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
  /* Depthwise 3x3 interior pixels px0..<px1 of one row (c % 8 == 0). */
  void (*_Nonnull dw_3x3)(float *yrow, const float *row0, const float *row1, const float *row2, const float *w,
                          const float *_Nullable bias, long c, long padl, long sw, float lo, float hi, long px0,
                          long px1);
  /* max(init, x[0..<n]) ignoring NaN (the caller looks for NaN apart). */
  float (*_Nonnull max_run)(float init, const float *x, long n);
} ti_f32_kernels;

/* The table of the chosen level (ti_cpu_level()). */
const ti_f32_kernels *ti_f32_kernels_get(void);

#pragma clang assume_nonnull end

#endif
