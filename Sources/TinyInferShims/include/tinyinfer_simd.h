/* SIMD instructions that Swift cannot express with its SIMD types, as
 * static inline wrappers compiled with the core's target flags (the Swift
 * target passes -Xcc -march=native unless TINF_PORTABLE=1). Each wrapper has
 * a portable C fallback with the same exact result, so the core calls them
 * unconditionally. (The int8 dot products are per-level C kernels:
 * tinyinfer_kernels_q8.h.) */
#ifndef TINYINFER_SIMD_H
#define TINYINFER_SIMD_H
#include <stdint.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif
/* 16 lanes of float32 (Swift: SIMD16<Float>). */
typedef float ti_f32x16 __attribute__((ext_vector_type(16)));

/* Clamps each lane to [lo, hi] keeping NaN lanes NaN, as the scalar
 * `x < lo ? lo : (x > hi ? hi : x)`: vmaxps/vminps return their second
 * operand when a lane is NaN, so x goes second. (Swift's generic SIMD
 * min/max helpers were not always inlined in Embedded mode.) */
static inline __attribute__((always_inline)) ti_f32x16 ti_clamp16f(ti_f32x16 x, ti_f32x16 lo, ti_f32x16 hi) {
#if defined(__AVX512F__)
  return (ti_f32x16)_mm512_min_ps((__m512)hi, _mm512_max_ps((__m512)lo, (__m512)x));
#else
  ti_f32x16 r;
  for (int i = 0; i < 16; i++) {
    float v = x[i];
    r[i] = v < lo[i] ? lo[i] : (v > hi[i] ? hi[i] : v);
  }
  return r;
#endif
}

/* 8 lanes of float32 (Swift: SIMD8<Float>); the clamp of ti_clamp16f. */
typedef float ti_f32x8 __attribute__((ext_vector_type(8)));

static inline __attribute__((always_inline)) ti_f32x8 ti_clamp8f(ti_f32x8 x, ti_f32x8 lo, ti_f32x8 hi) {
#if defined(__AVX__)
  return (ti_f32x8)_mm256_min_ps((__m256)hi, _mm256_max_ps((__m256)lo, (__m256)x));
#else
  ti_f32x8 r;
  for (int i = 0; i < 8; i++) {
    float v = x[i];
    r[i] = v < lo[i] ? lo[i] : (v > hi[i] ? hi[i] : v);
  }
  return r;
#endif
}

/* 1 when the build targets AVX-512 (32 vector registers), else 0. */
static inline int ti_simd_avx512(void) {
#if defined(__AVX512F__)
  return 1;
#else
  return 0;
#endif
}

#endif
