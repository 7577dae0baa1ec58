/* The CPU's instruction-set level, detected once when the library loads.
 * Hot kernels come in one variant per level (compiled with per-function
 * target attributes, never with the build machine's -march); the core picks
 * the variant of ti_cpu_level(). Everything else is baseline code. */
#ifndef TINYINFER_CPU_H
#define TINYINFER_CPU_H

/* Levels, ordered: a level includes every lower one of its architecture.
 *   x86-64:  0 baseline (SSE2), 1 avx2 (AVX2 + FMA + F16C, OS saves ymm),
 *            2 avx512 (F, BW, VL, DQ, OS saves zmm; VNNI reported apart).
 *   AArch64: 0 baseline (NEON, FMA), 1 dotprod (SDOT, Armv8.2 DotProd).
 *   other:   0 baseline only. */
enum {
  TI_ISA_BASELINE = 0,
  TI_ISA_AVX2 = 1,
  TI_ISA_AVX512 = 2,
  TI_ISA_DOTPROD = 1
};

/* The level the kernels run at: the best the CPU and OS support, or lower
 * when the environment variable TINYINFER_ISA names a lower level (read
 * once, at load; a higher or unknown name leaves the detected level). */
int ti_cpu_level(void);
/* The best level the CPU and OS support, whatever TINYINFER_ISA says. */
int ti_cpu_detected_level(void);
/* 1 when the chosen level is avx512 and the CPU has AVX-512 VNNI (vpdpbusd). */
int ti_cpu_vnni(void);
/* 1 when ti_cpu_vnni() and the CPU has AMX tiles with int8 products
 * (AMX-TILE, AMX-INT8) whose state the OS saves, unless TINYINFER_AMX is
 * "0": the int8 GEMM's blocks of 16 rows then run on the tiles
 * (kernels/kernels_q8_amx.c), once ti_cpu_amx_ready() says the OS let the
 * process use them. */
int ti_cpu_amx(void);
/* ti_cpu_amx()'s value, for the kernels (set when the library loads;
 * cleared when the OS refuses the tiles). Read it atomically. */
extern int ti_cpu_amx_on;
/* Asks the OS once (Linux: arch_prctl) for the tiles' state; 1 when
 * granted. Called by the GEMM before its first use of the tiles. */
int ti_cpu_amx_ready(void);
/* 1 when the chosen level is avx512 and the CPU has AVX-512 VBMI (byte
 * permutes across a whole register: vpermb, vpermt2b), unless TINYINFER_VBMI
 * is "0": the int8 table lookup (the math kernels' lookup256) then takes 64
 * values per two vpermt2b, and with VNNI the int8 depthwise kernel takes
 * four taps per vpdpbusd on groups built by vpermb (q8_depthwise.inc's
 * dw_vprows). */
int ti_cpu_vbmi(void);
/* ti_cpu_vbmi()'s value, for the kernels (set when the library loads). */
extern int ti_cpu_vbmi_on;
/* The name of a level on this architecture ("baseline", "avx2", ...; "?" if none). */
const char *ti_cpu_level_name(int level);
/* The features the detection saw, space-separated, e.g. "sse4.2 avx avx2 fma
 * f16c avx512f avx512bw avx512vl avx512dq avx512vnni" (static storage). */
const char *ti_cpu_features(void);
/* The value of TINYINFER_ISA at load ("" when unset; static storage). */
const char *ti_cpu_requested(void);
/* Starts a helper thread (a checksum, an arena's pages): a 64 KB stack,
 * detached or joinable, and on Linux placed on the CPUs the caller may use
 * other than the one it is on, when there is one (a new thread otherwise
 * often starts on its creator's CPU and waits there for a time slice while
 * another core idles). thread_out: a pthread_t * (may be NULL when
 * detached). Returns pthread_create's status (0: started). */
int ti_cpu_helper_thread(void *thread_out, int detached, void *(*run)(void *), void *arg);
#endif
