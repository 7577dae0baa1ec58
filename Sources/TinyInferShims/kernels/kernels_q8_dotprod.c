/* int8 kernels, AArch64 dotprod level (Armv8.2 DotProd): SDOT. */
#include "levels.h"
#if TI_ARM64
#include "tinyinfer_kernels_q8.h"
#include <arm_neon.h>
#include <stdint.h>
#define TI_Q8_SDOT 1
#define TI_Q8_W 4
#define TI_Q8_NAME "dotprod"
#define TI_FN(name) name##_dotprod
TI_LEVEL_BEGIN_DOTPROD
#include "q8_gemm.inc"
TI_LEVEL_END
#endif
