/* int8 kernels, baseline level: SSE2 on x86-64 (exact pmaddwd widening),
 * NEON (portable vector code) on ARM, plain vectors elsewhere; and the
 * choice of the level's table. */
#include "tinyinfer_kernels_q8.h"
#include "tinyinfer_cpu.h"
#include "levels.h"
#include <stdint.h>
#if TI_X86
#include <immintrin.h>
#define TI_Q8_MADD 1
#else
#define TI_Q8_GENERIC 1
#endif
#define TI_Q8_W 4
#define TI_Q8_NAME "baseline"
#define TI_FN(name) name##_baseline
#include "q8_gemm.inc"

#if TI_X86
extern const ti_q8_kernels ti_q8_table_avx2, ti_q8_table_avx512;
#elif TI_ARM64
extern const ti_q8_kernels ti_q8_table_dotprod;
#endif

const ti_q8_kernels *ti_q8_kernels_get(void) {
  int level = ti_cpu_level();
  (void)level;
#if TI_X86
  /* AVX-512 without VNNI: the AVX2 kernels (exact widening on ymm). */
  if (level >= TI_ISA_AVX512 && ti_cpu_vnni()) return &ti_q8_table_avx512;
  if (level >= TI_ISA_AVX2) return &ti_q8_table_avx2;
#elif TI_ARM64
  if (level >= TI_ISA_DOTPROD) return &ti_q8_table_dotprod;
#endif
  return &ti_q8_table_baseline;
}
