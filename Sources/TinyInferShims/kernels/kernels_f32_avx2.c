/* The float32 kernels at the AVX2+FMA+F16C level (x86-64 only). */
#include "levels.h"
#if TI_X86
#include "f32_common.h"
#include <immintrin.h>
#define TF_AVX2 1
#define TI_FN(name) name##_avx2
/* 16 ymm registers: 6 rows x 2 ymm accumulators, a weight pair, a broadcast. */
#define TF_MR 6
/* gemm_tile8: 12 rows x one ymm (8 columns), a weight vector, a broadcast. */
#define TF_MR8 12
TI_LEVEL_BEGIN_AVX2
#include "f32_kernels.inc"
TI_LEVEL_END
#endif
