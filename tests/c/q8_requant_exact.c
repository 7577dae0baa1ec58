/* The AVX2 int8 output stages against TFLite's MultiplyByQuantizedMultiplier
 * (SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT), value by
 * value: requantize_rows, conv1x1_rows (k = 1: accumulators = bias + w (x -
 * xz), the bias anywhere in int32) and dw_rows with dw_prep (3x3, stride 1
 * and 2), over random per-channel multipliers and shifts (blocks on
 * rq64_fast's conditions and outside them: r = 0, r > 23, left shifts, zero
 * multipliers), zero points and clamps (fused ReLU: lo >= zp, and not).
 * Compiled with the kernels' own source (python/tests/test_q8_requant_exact.py):
 *   clang -O2 -ISources/TinyInferShims/include -ISources/TinyInferShims/kernels
 *         tests/c/q8_requant_exact.c -o q8_requant_exact
 * and run on a CPU with AVX2; exits 1 at the first differences. */
#include "kernels_q8_avx2.c"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static uint64_t rs = 88172645463325252ull;
static uint64_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return rs; }
static int32_t srdhm(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  int64_t ab = (int64_t)a * b;
  int32_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  return (int32_t)((ab + nudge) / (1ll << 31));
}
static int32_t rdbpot(int32_t x, int e) {
  int32_t mask = (int32_t)((1ll << e) - 1), rem = x & mask, th = (mask >> 1) + (x < 0);
  return (x >> e) + (rem > th);
}
static int8_t ref(int32_t acc, int32_t left, int32_t m, int32_t right, int32_t zp, int32_t lo, int32_t hi) {
  int32_t x = (int32_t)((uint32_t)acc << left);
  int64_t v = (int64_t)rdbpot(srdhm(x, m), right) + zp;
  if (v < lo) v = lo; if (v > hi) v = hi;
  return (int8_t)v;
}
static int32_t racc(int kind) {
  switch (kind % 4) {
  case 0: return (int32_t)rnd();
  case 1: return (int32_t)(rnd() % 200001) - 100000;
  case 2: return (int32_t)(rnd() % 4001) - 2000;
  default: return (int32_t)(rnd() % 61) - 30;
  }
}
enum { C = 48, ROWS = 37 };
static int32_t table[4 * C];
static void mk_table(int cfg) {
  for (int j = 0; j < C; j++) {
    int32_t left = 0, right;
    int32_t m = (int32_t)((1u << 30) + (rnd() % (1u << 30)));
    if (cfg % 5 == 0) m = 1 << 30;
    if (cfg % 5 == 1 && j % 7 == 0) m = 0x7fffffff;
    right = 1 + (int)(rnd() % 12);
    if (cfg % 3 == 1) right = 1 + (int)(rnd() % 31);
    if (cfg % 7 == 3 && j == 5) right = 0;                   /* fallback: r = 0 */
    if (cfg % 11 == 4 && j == 9) { left = 2; right = 0; }    /* fallback: left */
    if (cfg % 13 == 6 && j == 17) m = 0;                     /* a zero multiplier */
    table[j] = left; table[C + j] = m; table[2 * C + j] = right; table[3 * C + j] = (int32_t)((1ll << right) - 1);
  }
}
static long test_rows_1x1(void) {
  long bad = 0, total = 0;
  static int32_t acc[ROWS * C];
  static int8_t y[ROWS * C];
  for (int cfg = 0; cfg < 4000; cfg++) {
    mk_table(cfg);
    int32_t zp = (int32_t)(rnd() % 256) - 128, lo = -128, hi = 127;
    int lc = cfg % 4;
    if (lc == 1) lo = zp;                                         /* relu */
    if (lc == 2) { lo = zp; hi = zp + 6 > 127 ? 127 : zp + 6; }   /* relu6-ish */
    if (lc == 3) { lo = -100; hi = 90; }
    for (int i = 0; i < ROWS * C; i++) acc[i] = racc(cfg + i);
    /* requantize_rows */
    ti_q8_requantize_rows_avx2(acc, C, ROWS, C, table, C, zp, lo, hi, y, C);
    for (int r = 0; r < ROWS; r++)
      for (int j = 0; j < C; j++) {
        int8_t e = ref(acc[r * C + j], table[j], table[C + j], table[2 * C + j], zp, lo, hi);
        total++;
        if (e != y[r * C + j] && bad++ < 10)
          printf("rows cfg %d r %d j %d acc %d m %d r %d zp %d lo %d: got %d want %d\n", cfg, r, j, acc[r * C + j],
                 table[C + j], table[2 * C + j], zp, lo, y[r * C + j], e);
      }
    /* conv1x1 with k = 1: acc = bias + w (x - xz) */
    static const int couts[] = {48, 24, 8, 40};
    int cout = couts[cfg % 4], blocks = (cout + 15) / 16;
    static int16_t w[3 * 32];
    static int32_t bias[48];
    static int8_t x[ROWS];
    static char rq[3 * TI_Q8_RQ_BLOCK_BYTES] __attribute__((aligned(64)));
    static int32_t tb[4 * 48];
    memset(w, 0, sizeof w);
    for (int j = 0; j < 48; j++) {
      bias[j] = racc(cfg + j);
      int16_t wt = (int16_t)((int)(rnd() % 255) - 127);
      if (j < cout) w[(j / 16) * 32 + (j % 16) * 2] = wt;
      for (int t = 0; t < 4; t++) tb[t * 48 + j] = j < cout ? table[t * C + j] : 0;
    }
    int32_t xz = (int32_t)(rnd() % 256) - 128;
    for (int p = 0; p < ROWS; p++) x[p] = (int8_t)(rnd() % 256);
    if (!ti_q8_rq_prepare_avx2(tb, 48, blocks, zp, rq)) { printf("no prepare\n"); return 1; }
    memset(y, 0x55, sizeof y);
    if (!ti_q8_conv1x1_rows_avx2(x, ROWS, 1, xz, w, bias, rq, blocks, cout, lo, hi, y)) { printf("no 1x1\n"); return 1; }
    for (int p = 0; p < ROWS; p++)
      for (int j = 0; j < cout; j++) {
        int16_t wt = w[(j / 16) * 32 + (j % 16) * 2];
        int32_t a = (int32_t)((uint32_t)bias[j] + (uint32_t)(wt * (x[p] - xz)));
        int8_t e = ref(a, tb[j], tb[48 + j], tb[96 + j], zp, lo, hi);
        total++;
        if (e != y[p * cout + j] && bad++ < 20)
          printf("1x1 cfg %d cout %d p %d j %d acc %d m %d r %d zp %d lo %d: got %d want %d\n", cfg, cout, p, j, a,
                 tb[48 + j], tb[96 + j], zp, lo, y[p * cout + j], e);
      }
  }
  printf("requantize_rows, conv1x1_rows: %ld of %ld differ\n", bad, total);
  return bad;
}

enum { CMAX = 48, H = 9, WI = 13 };
static long test_dw(void) {
  long bad = 0, total = 0;
  static int8_t w[9 * CMAX], x[H * WI * CMAX], y[H * WI * CMAX];
  static int32_t bias[CMAX], table[4 * CMAX];
  static char prep[1 << 16] __attribute__((aligned(64)));
  const int8_t *rows[8];
  for (int cfg = 0; cfg < 3000; cfg++) {
    int c = (cfg % 3 == 0) ? 48 : (cfg % 3 == 1 ? 32 : 40);
    int sw = 1 + cfg % 2, pad = 1, ow = (WI + 2 * pad - 3) / sw + 1, oh = (H + 2 * pad - 3) / sw + 1;
    int32_t zp = (int32_t)(rnd() % 256) - 128, xz = (int32_t)(rnd() % 256) - 128, lo = zp, hi = 127;
    if (cfg % 4 == 1) { lo = -128; zp = -128; }           /* ReLU6 as [0, 6]: no clamp */
    if (cfg % 4 == 2) { hi = zp + 40 > 127 ? 127 : zp + 40; }
    if (cfg % 4 == 3) lo = zp + 3 > 127 ? 127 : zp + 3;
    for (int j = 0; j < c; j++) {
      int32_t m = (int32_t)((1u << 30) + (rnd() % (1u << 30))), r = 1 + (int)(rnd() % 14);
      if (cfg % 7 == 2 && j == 3) m = 0;
      if (cfg % 9 == 5 && j == 7) r = 0;
      table[j] = 0; table[c + j] = m; table[2 * c + j] = r; table[3 * c + j] = (int32_t)((1ll << r) - 1);
      int kind = (int)(rnd() % 3);
      bias[j] = kind == 0 ? (int32_t)rnd() : kind == 1 ? (int32_t)(rnd() % 400001) - 200000 : (int32_t)(rnd() % 2001) - 1000;
    }
    for (int i = 0; i < 9 * c; i++) w[i] = (int8_t)(rnd() % 256);
    for (int i = 0; i < H * WI * c; i++) x[i] = (int8_t)(rnd() % 256);
    ti_q8_dw p = {w, bias, table, c, c, H, WI, 3, 3, sw, sw, 1, 1, pad, pad, ow, xz, zp, lo, hi};
    intptr_t bytes = ti_q8_dw_prep_avx2(&p, 0);
    if (bytes <= 0 || bytes > (intptr_t)sizeof prep) { printf("prep %ld\n", (long)bytes); return 1; }
    ti_q8_dw_prep_avx2(&p, prep);
    memset(y, 0x55, sizeof y);
    ti_q8_dw_rows_avx2(&p, prep, x, y, 0, oh, rows);
    for (int oy = 0; oy < oh; oy++)
      for (int ox = 0; ox < ow; ox++)
        for (int j = 0; j < c; j++) {
          uint32_t a = (uint32_t)bias[j];
          for (int i = 0; i < 3; i++)
            for (int k = 0; k < 3; k++) {
              int iy = oy * sw - pad + i, ix = ox * sw - pad + k;
              if (iy < 0 || iy >= H || ix < 0 || ix >= WI) continue;
              a += (uint32_t)(w[(i * 3 + k) * c + j] * (x[(iy * WI + ix) * c + j] - xz));
            }
          int8_t e = ref((int32_t)a, 0, table[c + j], table[2 * c + j], zp, lo, hi);
          int8_t g = y[(oy * ow + ox) * c + j];
          total++;
          if (e != g && bad++ < 20)
            printf("cfg %d c %d sw %d (%d,%d) ch %d acc %d m %d r %d zp %d lo %d hi %d: got %d want %d\n", cfg, c, sw, oy, ox, j,
                   (int32_t)a, table[c + j], table[2 * c + j], zp, lo, hi, g, e);
        }
  }
  printf("dw_rows: %ld of %ld differ\n", bad, total);
  return bad;
}

int main(void) {
  long bad = test_rows_1x1();
  bad += test_dw();
  return bad != 0;
}
