/* The float32 kernels at the baseline level (x86-64 SSE2; AArch64 NEON,
 * ARMv7 NEON where the build enables it), and the choice of table. */
#include "f32_common.h"
#include "levels.h"
#include "tinyinfer_cpu.h"

#define TI_FN(name) name##_baseline
#if defined(__aarch64__)
/* 32 NEON registers: 6 rows of 4 accumulators, 4 for the weights. */
#define TF_MR 6
#else
/* 16 xmm (or ARMv7 q) registers: 4 rows of 4 accumulators would take them all. */
#define TF_MR 3
/* gemm_tile8: 6 rows x two xmm (8 columns). */
#define TF_MR8 6
#endif
#include "f32_kernels.inc"
#undef TF_MR
#undef TF_MR8
#undef TI_FN

#if TI_X86
extern const ti_f32_kernels ti_f32_table_avx2, ti_f32_table_avx512;
#endif

static const ti_f32_kernels *choose(void) {
#if TI_X86
  int level = ti_cpu_level();
  if (level >= TI_ISA_AVX512) return &ti_f32_table_avx512;
  if (level >= TI_ISA_AVX2) return &ti_f32_table_avx2;
#endif
  return &ti_f32_table_baseline;
}

/* Chosen on first use and kept (ti_cpu_level() is fixed once detected;
 * racing first calls store the same pointer). */
const ti_f32_kernels *ti_f32_kernels_get(void) {
  static const ti_f32_kernels *table;
  const ti_f32_kernels *t = __atomic_load_n(&table, __ATOMIC_ACQUIRE);
  if (!t) {
    t = choose();
    __atomic_store_n(&table, t, __ATOMIC_RELEASE);
  }
  return t;
}
