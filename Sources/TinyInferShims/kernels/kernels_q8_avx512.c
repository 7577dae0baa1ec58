/* int8 kernels, AVX-512 level with VNNI (x86-64 only): vpdpbusd on zmm.
 * AVX-512 CPUs without VNNI use the AVX2 kernels. */
#include "levels.h"
#if TI_X86
#include "tinyinfer_kernels_q8.h"
#include "tinyinfer_cpu.h"
#include <immintrin.h>
#include <stdint.h>
#define TI_Q8_VNNI 1
#define TI_Q8_W 16
#define TI_Q8_NAME "avx512-vnni"
#define TI_FN(name) name##_avx512
TI_LEVEL_BEGIN_AVX512VNNI
#include "q8_gemm.inc"
TI_LEVEL_END
#endif
