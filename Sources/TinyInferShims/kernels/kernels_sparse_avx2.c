/* The sparse weight kernels at the AVX2+FMA level (x86-64 only). */
#include "levels.h"
#if TI_X86
#include "tinyinfer_kernels_sparse.h"
#include <immintrin.h>
#define TI_SP_L 8
#define TI_SP_NAME "avx2"
#define TI_SP_GATHER 1
#define TI_FN(name) name##_avx2
TI_LEVEL_BEGIN_AVX2
#include "sparse_kernels.inc"
TI_LEVEL_END
#endif
