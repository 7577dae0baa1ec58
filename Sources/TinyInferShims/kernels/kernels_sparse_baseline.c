/* The sparse weight kernels at the baseline level (x86-64 SSE2, AArch64
 * and ARMv7 NEON), and the choice of the level's table. */
#include "levels.h"
#include "tinyinfer_cpu.h"
#include "tinyinfer_kernels_sparse.h"
#define TI_SP_L 4
#define TI_SP_NAME "baseline"
#define TI_FN(name) name##_baseline
#include "sparse_kernels.inc"

#if TI_X86
extern const ti_sparse_kernels ti_sparse_table_avx2, ti_sparse_table_avx512;
#endif

const ti_sparse_kernels *ti_sparse_kernels_get(void) {
#if TI_X86
  int level = ti_cpu_level();
  if (level >= TI_ISA_AVX512) return &ti_sparse_table_avx512;
  if (level >= TI_ISA_AVX2) return &ti_sparse_table_avx2;
#endif
  return &ti_sparse_table_baseline;
}
