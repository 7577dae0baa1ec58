/* The elementwise math kernels at the AVX2 level (x86-64 only). */
#include "levels.h"
#if TI_X86
#include "f32_common.h"
#include "tinyinfer_kernels_math.h"
#include <immintrin.h>
#define TI_MATH_AVX2 1
#define TI_FN(name) name##_avx2
TI_LEVEL_BEGIN_AVX2
#include "f32_math.inc"
TI_LEVEL_END
#endif
