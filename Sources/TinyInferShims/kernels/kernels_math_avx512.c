/* The elementwise math kernels at the AVX512 level (x86-64 only). */
#include "levels.h"
#if TI_X86
#include "f32_common.h"
#include "tinyinfer_cpu.h"
#include "tinyinfer_kernels_math.h"
#include <immintrin.h>
/* The int8 table lookup with AVX-512 VBMI, 64 values a step: the table in
 * four registers of 64 entries; vpermt2b picks by index bits 0-6 from a
 * pair (entries 0-127, then 128-255) and bit 7 chooses between the two
 * results. The last n % 64 values through masked loads and stores. */
__attribute__((target("avx512vbmi,avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,bmi,bmi2,popcnt")))
static void ti_math_lookup256_vbmi(const int8_t *x, int8_t *y, const int8_t *t, long n) {
  const __m512i t0 = _mm512_loadu_si512((const void *)t), t1 = _mm512_loadu_si512((const void *)(t + 64));
  const __m512i t2 = _mm512_loadu_si512((const void *)(t + 128)), t3 = _mm512_loadu_si512((const void *)(t + 192));
  const __m512i flip = _mm512_set1_epi8((char)0x80);
  long i = 0;
  for (; i + 64 <= n; i += 64) {
    __m512i u = _mm512_xor_si512(_mm512_loadu_si512((const void *)(x + i)), flip);
    __m512i lo = _mm512_permutex2var_epi8(t0, u, t1), hi = _mm512_permutex2var_epi8(t2, u, t3);
    _mm512_storeu_si512((void *)(y + i), _mm512_mask_blend_epi8(_mm512_movepi8_mask(u), lo, hi));
  }
  if (i < n) {
    __mmask64 m = _bzhi_u64(~0ULL, (unsigned)(n - i));
    __m512i u = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, x + i), flip);
    __m512i lo = _mm512_permutex2var_epi8(t0, u, t1), hi = _mm512_permutex2var_epi8(t2, u, t3);
    _mm512_mask_storeu_epi8(y + i, m, _mm512_mask_blend_epi8(_mm512_movepi8_mask(u), lo, hi));
  }
}

#define TI_MATH_AVX512 1
#define TI_FN(name) name##_avx512
TI_LEVEL_BEGIN_AVX512
#include "f32_math.inc"
TI_LEVEL_END

#endif
