/* Vector types and helpers of the float32 kernels (f32_*.inc). Included by
 * each kernels_f32_<level>.c; every helper is static inline, so it compiles
 * inside the level's target region. */
#ifndef TINYINFER_F32_COMMON_H
#define TINYINFER_F32_COMMON_H
#include <stdint.h>
#include <stddef.h>
#include "tinyinfer_kernels_f32.h"

/* The helpers pass 16-lane vectors by value at levels without 512-bit
 * registers; they are always inlined, so no call uses that ABI. */
#pragma clang diagnostic ignored "-Wpsabi"

typedef float tf_f32x16 __attribute__((ext_vector_type(16)));
typedef float tf_f32x8 __attribute__((ext_vector_type(8)));
typedef float tf_f32x4 __attribute__((ext_vector_type(4)));
typedef int32_t tf_i32x16 __attribute__((ext_vector_type(16)));
typedef int32_t tf_i32x8 __attribute__((ext_vector_type(8)));
typedef int32_t tf_i32x4 __attribute__((ext_vector_type(4)));
/* Unaligned forms, for loads and stores through pointers. */
typedef float tf_f32x16u __attribute__((ext_vector_type(16), aligned(4)));
typedef float tf_f32x8u __attribute__((ext_vector_type(8), aligned(4)));
typedef float tf_f32x4u __attribute__((ext_vector_type(4), aligned(4)));

#define TF_LD16(p) (*(const tf_f32x16u *)(const void *)(p))
#define TF_LD8(p) (*(const tf_f32x8u *)(const void *)(p))
#define TF_ST16(p, v) (*(tf_f32x16u *)(void *)(p) = (v))
#define TF_ST8(p, v) (*(tf_f32x8u *)(void *)(p) = (v))
#define TF_LD4(p) (*(const tf_f32x4u *)(const void *)(p))
#define TF_ST4(p, v) (*(tf_f32x4u *)(void *)(p) = (v))

#endif
