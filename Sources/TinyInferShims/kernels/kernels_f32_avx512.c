/* The float32 kernels at the AVX-512 level (x86-64 only). */
#include "levels.h"
#if TI_X86
#include "f32_common.h"
#include <immintrin.h>
#define TF_AVX512 1
#define TI_FN(name) name##_avx512
/* 32 zmm registers: 8 rows of one zmm accumulator each (two FMA units busy). */
#define TF_MR 8
TI_LEVEL_BEGIN_AVX512
#include "f32_kernels.inc"
TI_LEVEL_END
#endif
