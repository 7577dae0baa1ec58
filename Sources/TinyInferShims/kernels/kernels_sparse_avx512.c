/* The sparse weight kernels at the AVX-512 level (x86-64 only). */
#include "levels.h"
#if TI_X86
#include "tinyinfer_kernels_sparse.h"
#include <immintrin.h>
#define TI_SP_L 16
#define TI_SP_NAME "avx512"
#define TI_SP_GATHER512 1
#define TI_FN(name) name##_avx512
TI_LEVEL_BEGIN_AVX512
#include "sparse_kernels.inc"
TI_LEVEL_END
#endif
