/* SIMD instructions that Swift cannot express with its SIMD types, as
 * static inline wrappers compiled with the core's target flags (none: the
 * core is built for the architecture's baseline). Each wrapper has a
 * portable C fallback with the same exact result, so the core calls them
 * unconditionally. The float kernels' per-level variants are in
 * tinyinfer_kernels_f32.h. */
#ifndef TINYINFER_SIMD_H
#define TINYINFER_SIMD_H
#include <stdint.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif
#if defined(__AVX512F__) && defined(__AVX512VNNI__)
#define TI_SIMD_DPBUSD_NATIVE 1
#else
#define TI_SIMD_DPBUSD_NATIVE 0
#endif

/* 16 lanes of int32 (Swift: SIMD16<Int32>). */
typedef int32_t ti_i32x16 __attribute__((ext_vector_type(16)));

#if defined(__aarch64__) && !TI_SIMD_DPBUSD_NATIVE
/* AArch64: 1 when the CPU has the Armv8.2 dot product instructions (SDOT,
 * Linux HWCAP_ASIMDDP), set once at load by the shim (0: the portable path;
 * TINYINFER_ISA=baseline keeps it 0). A port's shim defines it (0 is safe). */
extern int ti_cpu_dotprod;

/* ti_dpbusd16 with SDOT (signed x signed bytes): a holds unsigned bytes,
 * sum a*b = sum (a - 128)*b + 128*sum b, where a - 128 is a ^ 0x80 read as
 * a signed byte and 128*sum b = -(-128 * sum b). Exact and wrapping in
 * int32 like the portable path. Inline assembly (with the dotprod extension
 * enabled for the instruction alone) so that it inlines into code built for
 * baseline Armv8.0; callers only reach it when ti_cpu_dotprod is 1. */
static inline __attribute__((always_inline)) ti_i32x16 ti_dpbusd16_sdot(ti_i32x16 acc, ti_i32x16 a, ti_i32x16 b) {
  typedef int32_t i32x4 __attribute__((ext_vector_type(4)));
  typedef uint32_t u32x4 __attribute__((ext_vector_type(4)));
  typedef int8_t s8x16 __attribute__((ext_vector_type(16)));
  typedef int32_t i32x8 __attribute__((ext_vector_type(8)));
  const s8x16 m128 = (s8x16)(-128);
  ti_i32x16 x = a ^ (ti_i32x16)(int32_t)0x80808080;
  i32x4 q[4];
#define TI_SDOT_QUARTER(i, l0, l1, l2, l3)                                                              \
  do {                                                                                               \
    i32x4 c = __builtin_shufflevector(acc, acc, l0, l1, l2, l3), corr = (i32x4)0;                    \
    s8x16 xv = (s8x16)__builtin_shufflevector(x, x, l0, l1, l2, l3);                                 \
    s8x16 bv = (s8x16)__builtin_shufflevector(b, b, l0, l1, l2, l3);                                 \
    __asm__(".arch_extension dotprod\n\tsdot %0.4s, %1.16b, %2.16b" : "+w"(c) : "w"(xv), "w"(bv));    \
    __asm__(".arch_extension dotprod\n\tsdot %0.4s, %1.16b, %2.16b" : "+w"(corr) : "w"(m128), "w"(bv)); \
    q[i] = (i32x4)((u32x4)c - (u32x4)corr);                                                          \
  } while (0)
  TI_SDOT_QUARTER(0, 0, 1, 2, 3);
  TI_SDOT_QUARTER(1, 4, 5, 6, 7);
  TI_SDOT_QUARTER(2, 8, 9, 10, 11);
  TI_SDOT_QUARTER(3, 12, 13, 14, 15);
#undef TI_SDOT_QUARTER
  i32x8 lo = __builtin_shufflevector(q[0], q[1], 0, 1, 2, 3, 4, 5, 6, 7);
  i32x8 hi = __builtin_shufflevector(q[2], q[3], 0, 1, 2, 3, 4, 5, 6, 7);
  return __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
#define TI_SIMD_DPBUSD_SDOT 1
#else
#define TI_SIMD_DPBUSD_SDOT 0
#endif

/* For each 32-bit lane j: acc[j] + sum over i < 4 of u8(a[j] byte i) *
 * s8(b[j] byte i), exact and wrapping in int32 (AVX-512 VNNI vpdpbusd,
 * which does not saturate). The products and their sums of four fit in
 * int32 without overflow; only the accumulator wraps. */
static inline __attribute__((always_inline)) ti_i32x16 ti_dpbusd16(ti_i32x16 acc, ti_i32x16 a, ti_i32x16 b) {
#if TI_SIMD_DPBUSD_NATIVE
  return (ti_i32x16)_mm512_dpbusd_epi32((__m512i)acc, (__m512i)a, (__m512i)b);
#else
#if TI_SIMD_DPBUSD_SDOT
  if (ti_cpu_dotprod) return ti_dpbusd16_sdot(acc, a, b);
#endif
  typedef uint8_t u8x64 __attribute__((ext_vector_type(64)));
  typedef int8_t s8x64 __attribute__((ext_vector_type(64)));
  typedef int16_t i16x64 __attribute__((ext_vector_type(64)));
  typedef int32_t i32x64 __attribute__((ext_vector_type(64)));
  /* |u8 * s8| <= 255 * 128 = 32640: each product fits in int16. */
  i16x64 p = __builtin_convertvector((u8x64)a, i16x64) * __builtin_convertvector((s8x64)b, i16x64);
  i32x64 q = __builtin_convertvector(p, i32x64);
  ti_i32x16 s0 = __builtin_shufflevector(q, q, 0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60);
  ti_i32x16 s1 = __builtin_shufflevector(q, q, 1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45, 49, 53, 57, 61);
  ti_i32x16 s2 = __builtin_shufflevector(q, q, 2, 6, 10, 14, 18, 22, 26, 30, 34, 38, 42, 46, 50, 54, 58, 62);
  ti_i32x16 s3 = __builtin_shufflevector(q, q, 3, 7, 11, 15, 19, 23, 27, 31, 35, 39, 43, 47, 51, 55, 59, 63);
  /* Unsigned arithmetic: wrapping, as the instruction. */
  typedef uint32_t u32x16 __attribute__((ext_vector_type(16)));
  return (ti_i32x16)((u32x16)acc + (u32x16)s0 + (u32x16)s1 + (u32x16)s2 + (u32x16)s3);
#endif
}

#endif
