/* Per-level kernel variants without per-file CPU flags.
 *
 * A kernel is written once, in a `.inc` file, with clang's vector extensions
 * (ext_vector_type, __builtin_shufflevector, __builtin_convertvector) and
 * intrinsics only behind TI_HAS_* checks. A level's `.c` file includes it
 * between TI_LEVEL_BEGIN_<LEVEL> and TI_LEVEL_END, which apply a target
 * attribute to every function in between, and defines TI_FN(name) to give
 * each level's functions their own names (name_baseline, name_avx2, ...).
 * The same source thus compiles to SSE2, AVX2+FMA and AVX-512 code in one
 * library built with no -march at all, and to NEON (and SDOT) on AArch64.
 * A table of function pointers per level (chosen once by ti_cpu_level(),
 * tinyinfer_cpu.h) is what the Swift core calls.
 *
 * Floating-point contraction: clang fuses a*b+c into an FMA only where the
 * level has FMA, so float results may differ in the last bits between
 * levels (within the op tests' tolerances); integer kernels are bit-exact
 * at every level. */
#ifndef TINYINFER_KERNEL_LEVELS_H
#define TINYINFER_KERNEL_LEVELS_H

#if defined(__x86_64__)
#define TI_X86 1
#define TI_LEVEL_BEGIN_AVX2 \
  _Pragma("clang attribute push(__attribute__((target(\"avx2,fma,f16c,bmi,bmi2,popcnt\"))), apply_to = function)")
#define TI_LEVEL_BEGIN_AVX512 \
  _Pragma("clang attribute push(__attribute__((target(\"avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,bmi,bmi2,popcnt\"))), apply_to = function)")
#define TI_LEVEL_BEGIN_AVX512VNNI \
  _Pragma("clang attribute push(__attribute__((target(\"avx512vnni,avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,bmi,bmi2,popcnt\"))), apply_to = function)")
#define TI_LEVEL_END _Pragma("clang attribute pop")
#else
#define TI_X86 0
#endif

#if defined(__aarch64__)
#define TI_ARM64 1
#define TI_LEVEL_BEGIN_DOTPROD \
  _Pragma("clang attribute push(__attribute__((target(\"dotprod\"))), apply_to = function)")
#define TI_LEVEL_END _Pragma("clang attribute pop")
#else
#define TI_ARM64 0
#endif

#endif
