/* The elementwise math kernels at the baseline level (x86-64 SSE2; AArch64
 * NEON), and the choice of table. */
#include "f32_common.h"
#include "levels.h"
#include "tinyinfer_cpu.h"
#include "tinyinfer_kernels_math.h"

#define TI_FN(name) name##_baseline
#include "f32_math.inc"
#undef TI_FN

#if TI_X86
extern const ti_math_kernels ti_math_table_avx2, ti_math_table_avx512;
#endif

static const ti_math_kernels *choose(void) {
#if TI_X86
  int level = ti_cpu_level();
  if (level >= TI_ISA_AVX512) return &ti_math_table_avx512;
  if (level >= TI_ISA_AVX2) return &ti_math_table_avx2;
#endif
  return &ti_math_table_baseline;
}

/* Chosen on first use and kept (ti_cpu_level() is fixed once detected). */
const ti_math_kernels *ti_math_kernels_get(void) {
  static const ti_math_kernels *table;
  const ti_math_kernels *t = __atomic_load_n(&table, __ATOMIC_ACQUIRE);
  if (!t) {
    t = choose();
    __atomic_store_n(&table, t, __ATOMIC_RELEASE);
  }
  return t;
}
