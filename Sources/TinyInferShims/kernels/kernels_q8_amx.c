/* The int8 GEMM of tinyinfer_kernels_q8.h's gemm_rows on Intel AMX tiles
 * (AMX-TILE + AMX-INT8: Sapphire Rapids and later), called by the AVX-512
 * VNNI level's ti_q8_gemm_rows (q8_gemm.inc) for its blocks of 16 rows when
 * ti_cpu_amx() (tinyinfer_cpu.h: the CPU has the tiles, the OS saves them,
 * Linux granted the process their state, TINYINFER_AMX is not 0 and no
 * lower level was forced).
 *
 * The packed weights need no other layout: a VNNI panel (16 columns, group
 * g's four bytes of each column at panel + 64 g) is, 16 groups at a time,
 * a B tile (16 rows of 64 bytes, stride 64) for tdpbusd, which multiplies
 * the unsigned activation bytes of an A tile (16 rows of up to 64 bytes,
 * stride lda) by them and adds the four products of each group to an int32
 * lane of a C tile (16 x 16): vpdpbusd's arithmetic, exact, wrapping in
 * int32, so the results are the other levels' bit for bit.
 *
 * Tiles: C0, C1 (16 rows x 2 panels), A and B0, B1 for the full 64-byte
 * pieces of the depth, and At, Bt0, Bt1 for its last groups % 16 groups
 * (shapes fixed by the configuration, so every load reads only the rows'
 * and panels' own bytes). The accumulators start from the column's
 * initial value (a tile load of stride 0). Panels outer, rows inner: a
 * pair of panels (2 x 64 x groups bytes) stays in L1 over the row blocks. */
#include "levels.h"
#if TI_X86
#include "tinyinfer_kernels_q8.h"
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

typedef struct {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} ti_amx_cfg;

enum { C0 = 0, C1 = 1, TA = 2, TB0 = 3, TB1 = 4, TAT = 5, TBT0 = 6, TBT1 = 7 };

#define TI_AMX_TARGET __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))

/* Stores C tile `t` (16 rows of panel p) at out: whole when the panel's 16
 * columns are valid, else through a buffer, columns < valid. */
#define TI_AMX_STORE(t, o, ldo, valid)                                        \
  do {                                                                        \
    if ((valid) >= 16) {                                                      \
      _tile_stored(t, (o), (ldo) * 4);                                        \
    } else {                                                                  \
      int32_t buf_[256];                                                      \
      _tile_stored(t, buf_, 64);                                              \
      for (int r_ = 0; r_ < 16; r_++)                                         \
        memcpy((o) + r_ * (ldo), buf_ + 16 * r_, (size_t)(valid) * 4);        \
    }                                                                         \
  } while (0)

TI_AMX_TARGET intptr_t ti_q8_gemm_rows_amx(const uint8_t *a, intptr_t lda, intptr_t rows, intptr_t groups,
                                           const void *panel, intptr_t panel_bytes, intptr_t p0, intptr_t p1,
                                           const int32_t *initial, int32_t *out, intptr_t ldo, intptr_t n) {
  const intptr_t rows16 = rows & ~(intptr_t)15, full = groups / 16, kt = groups % 16;
  if (rows16 == 0 || p1 <= p0 || groups <= 0) return 0;
  ti_amx_cfg cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int t = C0; t <= TB1; t++) cfg.rows[t] = 16, cfg.colsb[t] = 64;
  if (kt) {
    cfg.rows[TAT] = 16, cfg.colsb[TAT] = (uint16_t)(4 * kt);
    cfg.rows[TBT0] = cfg.rows[TBT1] = (uint8_t)kt, cfg.colsb[TBT0] = cfg.colsb[TBT1] = 64;
  }
  _tile_loadconfig(&cfg);
  const int8_t *pn = (const int8_t *)panel;
  const intptr_t tail = 64 * full; /* byte offset of the tail groups in a row and in a panel */
  intptr_t p = p0;
  for (; p + 2 <= p1; p += 2) {
    const int8_t *w0 = pn + p * panel_bytes, *w1 = w0 + panel_bytes;
    const intptr_t valid0 = n - p * 16, valid1 = n - (p + 1) * 16;
    for (intptr_t m = 0; m < rows16; m += 16) {
      const uint8_t *am = a + m * lda;
      _tile_loadd(C0, initial + p * 16, 0);
      _tile_loadd(C1, initial + (p + 1) * 16, 0);
      for (intptr_t k = 0; k < full; k++) {
        _tile_loadd(TA, am + 64 * k, lda);
        _tile_loadd(TB0, w0 + 1024 * k, 64);
        _tile_loadd(TB1, w1 + 1024 * k, 64);
        _tile_dpbusd(C0, TA, TB0);
        _tile_dpbusd(C1, TA, TB1);
      }
      if (kt) {
        _tile_loadd(TAT, am + tail, lda);
        _tile_loadd(TBT0, w0 + 16 * tail, 64);
        _tile_loadd(TBT1, w1 + 16 * tail, 64);
        _tile_dpbusd(C0, TAT, TBT0);
        _tile_dpbusd(C1, TAT, TBT1);
      }
      int32_t *o = out + m * ldo + p * 16;
      TI_AMX_STORE(C0, o, ldo, valid0);
      TI_AMX_STORE(C1, o + 16, ldo, valid1);
    }
  }
  if (p < p1) {
    const int8_t *w0 = pn + p * panel_bytes;
    const intptr_t valid0 = n - p * 16;
    for (intptr_t m = 0; m < rows16; m += 16) {
      const uint8_t *am = a + m * lda;
      _tile_loadd(C0, initial + p * 16, 0);
      for (intptr_t k = 0; k < full; k++) {
        _tile_loadd(TA, am + 64 * k, lda);
        _tile_loadd(TB0, w0 + 1024 * k, 64);
        _tile_dpbusd(C0, TA, TB0);
      }
      if (kt) {
        _tile_loadd(TAT, am + tail, lda);
        _tile_loadd(TBT0, w0 + 16 * tail, 64);
        _tile_dpbusd(C0, TAT, TBT0);
      }
      TI_AMX_STORE(C0, out + m * ldo + p * 16, ldo, valid0);
    }
  }
  _tile_release();
  return rows16;
}
#endif
