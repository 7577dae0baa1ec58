/* CPU detection: the instruction-set level the kernels run at (see
 * tinyinfer_cpu.h). x86-64 reads CPUID and the OS's XSAVE state (XGETBV),
 * AArch64 Linux the kernel's HWCAP bits. Done once, on first use. */
#define _GNU_SOURCE
#include "tinyinfer_cpu.h"
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int detected_level, chosen_level, vnni, amx, vbmi;
int ti_cpu_amx_on; /* ti_cpu_amx(), read by the kernels after init */
int ti_cpu_vbmi_on; /* ti_cpu_vbmi(), read by the kernels after init */
static char features[192];
static char requested[32];
static pthread_once_t once = PTHREAD_ONCE_INIT;

__attribute__((unused)) static void add_feature(const char *name) {
  size_t used = strlen(features), len = strlen(name);
  if (used + len + 2 > sizeof features) return;
  if (used) features[used++] = ' ';
  memcpy(features + used, name, len + 1);
}

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

static const char *const level_names[] = {"baseline", "avx2", "avx512"};
enum { top_level = TI_ISA_AVX512 };

static uint64_t xgetbv0(void) {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((uint64_t)hi << 32) | lo;
}

static int detect(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return TI_ISA_BASELINE;
  int sse42 = (c >> 20) & 1, fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1,
      f16c = (c >> 29) & 1;
  uint64_t xcr0 = osxsave ? xgetbv0() : 0;
  int os_ymm = (xcr0 & 0x6) == 0x6;     /* SSE and AVX state */
  int os_zmm = (xcr0 & 0xe6) == 0xe6;   /* and opmask, ZMM_Hi256, Hi16_ZMM */
  unsigned b7 = 0, c7 = 0, d7 = 0;
  if (__get_cpuid_max(0, NULL) >= 7) __cpuid_count(7, 0, a, b7, c7, d7);
  int avx2 = (b7 >> 5) & 1, f = (b7 >> 16) & 1, dq = (b7 >> 17) & 1, bw = (b7 >> 30) & 1, vl = (b7 >> 31) & 1,
      has_vnni = (c7 >> 11) & 1, has_vbmi = (c7 >> 1) & 1;
  if (sse42) add_feature("sse4.2");
  if (avx && os_ymm) add_feature("avx");
  if (avx2 && os_ymm) add_feature("avx2");
  if (fma && os_ymm) add_feature("fma");
  if (f16c && os_ymm) add_feature("f16c");
  if (os_zmm) {
    if (f) add_feature("avx512f");
    if (bw) add_feature("avx512bw");
    if (vl) add_feature("avx512vl");
    if (dq) add_feature("avx512dq");
    if (has_vnni) add_feature("avx512vnni");
    if (has_vbmi) add_feature("avx512vbmi");
  }
  /* AMX: the tiles (AMX-TILE, EDX bit 24) and their int8 products
   * (AMX-INT8, bit 25), saved by the OS (XCR0 bits 17 and 18); used with
   * VNNI. The permission Linux wants for their state is asked for at the
   * first GEMM that would use them (ti_cpu_amx_ready), not here. */
  int amx_ok = ((d7 >> 24) & 1) && ((d7 >> 25) & 1) && (xcr0 & 0x60000) == 0x60000 && has_vnni && os_zmm;
  if (amx_ok) add_feature("amx-int8");
  if (!(avx && avx2 && fma && f16c && os_ymm)) return TI_ISA_BASELINE;
  if (!(f && bw && vl && dq && os_zmm)) return TI_ISA_AVX2;
  vnni = has_vnni;
  amx = amx_ok;
  vbmi = has_vbmi;
  return TI_ISA_AVX512;
}

#elif defined(__aarch64__)
static const char *const level_names[] = {"baseline", "dotprod"};
enum { top_level = TI_ISA_DOTPROD };
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
#endif

static int detect(void) {
  add_feature("neon");
#if defined(__linux__)
  if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) {
    add_feature("dotprod");
    return TI_ISA_DOTPROD;
  }
#endif
  return TI_ISA_BASELINE;
}

#else
static const char *const level_names[] = {"baseline"};
enum { top_level = TI_ISA_BASELINE };
static int detect(void) { return TI_ISA_BASELINE; }
#endif

static void init(void) {
  detected_level = detect();
  chosen_level = detected_level;
  const char *isa = getenv("TINYINFER_ISA");
  if (isa) {
    size_t n = strlen(isa);
    if (n >= sizeof requested) n = sizeof requested - 1;
    memcpy(requested, isa, n);
    requested[n] = 0;
    for (int level = 0; level <= top_level; level++)
      if (strcmp(isa, level_names[level]) == 0 && level < chosen_level) chosen_level = level;
  }
  if (chosen_level < top_level) vnni = 0;
  const char *amx_env = getenv("TINYINFER_AMX");
  if (!vnni || (amx_env && strcmp(amx_env, "0") == 0)) amx = 0;
  ti_cpu_amx_on = amx;
  const char *vbmi_env = getenv("TINYINFER_VBMI");
  if (chosen_level < top_level || (vbmi_env && strcmp(vbmi_env, "0") == 0)) vbmi = 0;
  ti_cpu_vbmi_on = vbmi;
}

/* Detected when the library loads, before any kernel runs; calls also
 * detect on first use where constructors do not run. */
__attribute__((constructor)) static void init_at_load(void) { pthread_once(&once, init); }

int ti_cpu_level(void) {
  pthread_once(&once, init);
  return chosen_level;
}

int ti_cpu_detected_level(void) {
  pthread_once(&once, init);
  return detected_level;
}

int ti_cpu_vnni(void) {
  pthread_once(&once, init);
  return vnni;
}

int ti_cpu_amx(void) {
  pthread_once(&once, init);
  return amx;
}

int ti_cpu_vbmi(void) {
  pthread_once(&once, init);
  return vbmi;
}

/* The process's permission to use the tiles' 8 KB of state (Linux:
 * arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA), asked once, at the first
 * GEMM that would use them: a process that runs none keeps its signal
 * frames as they were (once granted, the kernel refuses a thread an
 * alternate signal stack too small for the tiles' state). Refused (Linux
 * before 5.16, another system, a thread's signal stack too small), the
 * tiles are off for the process. */
static pthread_once_t amx_once = PTHREAD_ONCE_INIT;
static int amx_granted;
static void amx_request(void) {
#if defined(__linux__) && defined(__x86_64__)
  amx_granted = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
#endif
  if (!amx_granted) __atomic_store_n(&ti_cpu_amx_on, 0, __ATOMIC_RELAXED);
}
int ti_cpu_amx_ready(void) {
  pthread_once(&amx_once, amx_request);
  return amx_granted;
}

const char *ti_cpu_level_name(int level) {
  return level >= 0 && level <= top_level ? level_names[level] : "?";
}

const char *ti_cpu_features(void) {
  pthread_once(&once, init);
  return features;
}

const char *ti_cpu_requested(void) {
  pthread_once(&once, init);
  return requested;
}

/* Every CPU the caller may run on except the one it is on, when there is
 * one (Linux only). */
static void ti_cpu_attr_elsewhere(pthread_attr_t *attr) {
#if defined(__linux__) && defined(CPU_SET)
  cpu_set_t allowed;
  int cpu = sched_getcpu();
  if (cpu < 0 || cpu >= CPU_SETSIZE || sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
  if (!CPU_ISSET(cpu, &allowed)) return;
  CPU_CLR(cpu, &allowed);
  if (CPU_COUNT(&allowed) > 0) pthread_attr_setaffinity_np(attr, sizeof allowed, &allowed);
#else
  (void)attr;
#endif
}

int ti_cpu_helper_thread(void *thread_out, int detached, void *(*run)(void *), void *arg) {
  pthread_attr_t attr;
  int rc = pthread_attr_init(&attr);
  if (rc != 0) return rc;
  /* A small stack: helpers keep their state in registers and a few locals. */
  size_t stack = 64 * 1024;
  if (stack < (size_t)PTHREAD_STACK_MIN) stack = (size_t)PTHREAD_STACK_MIN;
  pthread_attr_setstacksize(&attr, stack);
  if (detached) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  ti_cpu_attr_elsewhere(&attr);
  pthread_t thread;
  rc = pthread_create(&thread, &attr, run, arg);
  pthread_attr_destroy(&attr);
  if (rc == 0 && thread_out) memcpy(thread_out, &thread, sizeof thread);
  return rc;
}
