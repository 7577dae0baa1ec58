/* int8 kernels, AVX2 level (x86-64 only): exact widening with vpmaddwd on ymm. */
#include "levels.h"
#if TI_X86
#include "tinyinfer_kernels_q8.h"
#include <immintrin.h>
#include <stdint.h>
#define TI_Q8_MADD 1
#define TI_Q8_W 8
#define TI_Q8_NAME "avx2"
#define TI_FN(name) name##_avx2
TI_LEVEL_BEGIN_AVX2
#include "q8_gemm.inc"
TI_LEVEL_END
#endif
