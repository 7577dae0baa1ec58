#define _GNU_SOURCE
#include "tinyinfer_shims.h"
#include "tinyinfer_cpu.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char ti_error_buf[1024];

void ti_shim_set_error(const char *msg, size_t len) {
  if (len > sizeof ti_error_buf - 1) len = sizeof ti_error_buf - 1;
  if (msg && len) memcpy(ti_error_buf, msg, len);
  ti_error_buf[len] = 0;
}

const char *ti_shim_error(void) { return ti_error_buf; }

void *ti_shim_map_file(const char *path, size_t *size_out, int *errno_out) {
  *size_out = 0;
  *errno_out = 0;
  /* The file type is checked before opening (open() on a FIFO with no
   * writer blocks for ever), and the open is non-blocking in case the path
   * changes between the two calls; fstat checks the opened file again. */
  struct stat st;
  if (stat(path, &st) != 0) { *errno_out = errno; return NULL; }
  if (!S_ISREG(st.st_mode)) { *errno_out = ti_shim_not_regular(st.st_mode); return NULL; }
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) { *errno_out = errno; return NULL; }
  if (fstat(fd, &st) != 0) { *errno_out = errno; close(fd); return NULL; }
  if (!S_ISREG(st.st_mode)) { *errno_out = ti_shim_not_regular(st.st_mode); close(fd); return NULL; }
  if (st.st_size == 0) { close(fd); return NULL; }
  void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  close(fd);
  if (p == MAP_FAILED) { *errno_out = e; return NULL; }
  *size_out = (size_t)st.st_size;
  return p;
}

int ti_shim_not_regular(unsigned mode) {
  if (S_ISDIR(mode)) return TI_NOT_REGULAR_DIR;
  if (S_ISFIFO(mode)) return TI_NOT_REGULAR_FIFO;
  if (S_ISCHR(mode)) return TI_NOT_REGULAR_CHAR;
  if (S_ISBLK(mode)) return TI_NOT_REGULAR_BLOCK;
  if (S_ISSOCK(mode)) return TI_NOT_REGULAR_SOCKET;
  return TI_NOT_REGULAR_OTHER;
}

const char *ti_shim_file_error(int err) {
  switch (err) {
  case TI_NOT_REGULAR_DIR: return "is a directory, not a model file";
  case TI_NOT_REGULAR_FIFO: return "is a FIFO (named pipe), not a regular file";
  case TI_NOT_REGULAR_CHAR: return "is a character device, not a regular file";
  case TI_NOT_REGULAR_BLOCK: return "is a block device, not a regular file";
  case TI_NOT_REGULAR_SOCKET: return "is a socket, not a regular file";
  case TI_NOT_REGULAR_OTHER: return "is not a regular file";
  default: return strerror(err);
  }
}

struct ti_mutex { pthread_mutex_t mu; };

ti_mutex *ti_shim_mutex_create(void) {
  ti_mutex *m = malloc(sizeof *m);
  if (m && pthread_mutex_init(&m->mu, NULL) != 0) { free(m); return NULL; }
  return m;
}

void ti_shim_mutex_lock(ti_mutex *m) { if (m) pthread_mutex_lock(&m->mu); }
void ti_shim_mutex_unlock(ti_mutex *m) { if (m) pthread_mutex_unlock(&m->mu); }
void ti_shim_mutex_destroy(ti_mutex *m) {
  if (!m) return;
  pthread_mutex_destroy(&m->mu);
  free(m);
}

void ti_shim_unmap(void *addr, size_t size) { if (addr) munmap(addr, size); }

const char *ti_shim_strerror(int err) { return strerror(err); }

/* Every block has a 64-byte header before it: the mapping's size for a
 * large block, 0 for a small one (from posix_memalign); then, for a large
 * block, its populating thread (ti_shim_alloc_background) or NULL. Large
 * blocks are weights packed at load and arenas: populating them at once
 * costs far less than one page fault per 4 KB on first touch. */
#define TI_ALLOC_HEADER 64
#define TI_ALLOC_MAPPED (1u << 20)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14 */
#endif

typedef struct ti_populate_job {
  pthread_t thread;
  char *addr;
  size_t size;
  int write;  /* 1: faulted in as written (an arena); 0: as read (a file's pages) */
  int stop;   /* atomic: set by the owner, which then joins */
  pid_t pid;  /* the process that started the thread (a forked child has no such thread) */
} ti_populate_job;

static void *ti_populate_run(void *arg) {
  ti_populate_job *j = arg;
  /* Faults every page in as a write (or a read) would, without changing a
   * byte: the owner may be using the block already. One touch per page, not
   * madvise(MADV_POPULATE_*): that holds the process's memory-map lock for
   * each call, and the owner's own mmap, brk and mprotect (the session's
   * arena, malloc, thread stacks) waited for it; a page fault takes only
   * the lock of its own mapping (MobileNetV2 in fresh processes, C load +
   * session: 0.97-1.14 ms with 32 KB madvise pieces, 0.90 ms touching; the
   * first run as fast either way). A read touch of a file's page maps its
   * neighbours too (the kernel's fault-around); a write touch adds 0
   * atomically, so a concurrent write of the owner is never undone. Only
   * bytes of the range are touched: its first one, then the first of each
   * page it reaches into (weights read in place may sit in a caller's
   * heap buffer, whose neighbours are not ours to read). The stop flag is
   * read every 8 pages: a free soon after the start does not wait for the
   * rest. */
  const uintptr_t page = 4096;
  unsigned char zero = 0;
  __asm__ volatile("" : "+r"(zero)); /* a 0 the compiler cannot see: the add stays a real write */
  uintptr_t q = (uintptr_t)j->addr, end = q + j->size;
  for (size_t n = 0; q < end; n++, q = (q & ~(page - 1)) + page) {
    if ((n & 7) == 0 && __atomic_load_n(&j->stop, __ATOMIC_RELAXED)) break;
    if (j->write) (void)__atomic_fetch_add((unsigned char *)q, zero, __ATOMIC_RELAXED);
    else (void)*(volatile const unsigned char *)q;
  }
  return NULL;
}

/* A thread (on another core) populating the pages of [addr, addr + size)
 * as written (`write` 1) or as read, or NULL when none could be started. */
static ti_populate_job *ti_populate_start(char *addr, size_t size, int write) {
  ti_populate_job *job = malloc(sizeof *job);
  if (!job) return NULL;
  job->addr = addr, job->size = size, job->write = write, job->stop = 0, job->pid = getpid();
  int rc = ti_cpu_helper_thread(&job->thread, 0, ti_populate_run, job);
  if (rc != 0) {
    free(job);
    return NULL;
  }
  return job;
}

static void ti_populate_stop(ti_populate_job *job) {
  if (!job) return;
  /* In a child forked while the thread ran (a model loaded, then a
   * multiprocessing pool started), the thread does not exist: joining it
   * would wait forever. The child's copy of the range needs no one. */
  if (job->pid == getpid()) {
    __atomic_store_n(&job->stop, 1, __ATOMIC_RELAXED);
    pthread_join(job->thread, NULL);
  }
  free(job);
}

void *ti_shim_populate_read_background(const void *addr, size_t size) {
  if (!addr || size == 0) return NULL;
  ti_populate_job *job = ti_populate_start((char *)addr, size, 0);
  if (!job) { /* no thread: here, by whole pages (older kernel: first touch) */
    uintptr_t page = 4096, lo = (uintptr_t)addr & ~(page - 1), hi = ((uintptr_t)addr + size + page - 1) & ~(page - 1);
    (void)madvise((void *)lo, hi - lo, MADV_POPULATE_READ);
  }
  return job;
}

void ti_shim_populate_stop(void *job) { ti_populate_stop(job); }

/* 0: mapped populated in the call (MAP_POPULATE); 1: not populated, a
 * thread populates it (joined by ti_shim_free). */
static void *ti_shim_alloc_mode(size_t size, int background) {
  if (size == 0 || size > SIZE_MAX - 2 * TI_ALLOC_HEADER) return NULL;
  size_t total = ((size + 63) & ~(size_t)63) + TI_ALLOC_HEADER;
  char *p = NULL;
#ifdef MAP_POPULATE
  if (total >= TI_ALLOC_MAPPED) {
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | (background ? 0 : MAP_POPULATE);
    void *m = mmap(NULL, total, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (m == MAP_FAILED) return NULL;
    p = m;
    ti_populate_job *job = NULL;
    if (background && (job = ti_populate_start(p, total, 1)) == NULL)
      (void)madvise(p, total, MADV_POPULATE_WRITE); /* no thread: here */
    *(size_t *)p = total;
    memcpy(p + sizeof(size_t), &job, sizeof job);
    return p + TI_ALLOC_HEADER;
  }
#endif
  (void)background;
  if (posix_memalign((void **)&p, 64, total) != 0) return NULL;
  *(size_t *)p = 0;
  return p + TI_ALLOC_HEADER;
}

void *ti_shim_alloc(size_t size) { return ti_shim_alloc_mode(size, 0); }
void *ti_shim_alloc_background(size_t size) { return ti_shim_alloc_mode(size, 1); }

const void *ti_shim_zeros(size_t size) {
#if defined(MAP_ANONYMOUS)
  static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  static void *region;
  static size_t mapped;
  if (size > ((size_t)256 << 20)) return NULL;
  void *r = NULL;
  pthread_mutex_lock(&mu);
  if (size <= mapped) {
    r = region;
  } else {
    size_t want = size < 2 * mapped ? 2 * mapped : size;
    want = (want + 65535) & ~(size_t)65535;
    void *m = mmap(NULL, want, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m != MAP_FAILED) region = m, mapped = want, r = m;
  }
  pthread_mutex_unlock(&mu);
  return r;
#else
  (void)size;
  return NULL;
#endif
}

void *ti_shim_alloc_zeroed(size_t size) {
  char *q = ti_shim_alloc(size);
  if (q && *(size_t *)(q - TI_ALLOC_HEADER) == 0) memset(q, 0, size); /* from posix_memalign: not zeroed */
  return q;
}

int ti_shim_alloc_mapped(const void *q) {
  return q && *(const size_t *)((const char *)q - TI_ALLOC_HEADER) != 0;
}

void ti_shim_free(void *q) {
  if (!q) return;
  char *p = (char *)q - TI_ALLOC_HEADER;
  size_t mapped = *(size_t *)p;
  if (!mapped) {
    free(p);
    return;
  }
  ti_populate_job *job;
  memcpy(&job, p + sizeof(size_t), sizeof job);
  ti_populate_stop(job); /* the thread must be done with the range before it can be mapped again */
  munmap(p, mapped);
}

uint64_t ti_shim_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* d[0, n) = s[0, n) in 16-byte pieces, the last one overlapping the one
 * before when n is not a multiple of 16 (n >= 16). Plain loops: the
 * unrolled and vectorized code clang made of them spent more on its checks
 * than on the copy of rows of 16-64 bytes. */
static inline void ti_copy16(uint8_t *d, const uint8_t *s, intptr_t n) {
  intptr_t i = 0;
#pragma clang loop vectorize(disable) unroll(disable)
  for (; i + 16 < n; i += 16) __builtin_memcpy(d + i, s + i, 16);
  __builtin_memcpy(d + n - 16, s + n - 16, 16);
}

/* d[0, n) = the 16-byte pattern p (periodic in the element size, n a
 * multiple of it, so every piece, the overlapping last one too, is in
 * phase; n >= 16). */
static inline void ti_fill16(uint8_t *d, const uint8_t *p, intptr_t n) {
  intptr_t i = 0;
#pragma clang loop vectorize(disable) unroll(disable)
  for (; i + 16 < n; i += 16) __builtin_memcpy(d + i, p, 16);
  __builtin_memcpy(d + n - 16, p, 16);
}

/* The same for 0 <= n < 16: two 8- or 4-byte pieces, overlapping (in
 * phase for a pattern: n and 8 are multiples of the element size), or
 * bytes. */
static inline void ti_copy_short(uint8_t *d, const uint8_t *s, intptr_t n) {
  if (n >= 8) {
    __builtin_memcpy(d, s, 8);
    __builtin_memcpy(d + n - 8, s + n - 8, 8);
  } else if (n >= 4) {
    __builtin_memcpy(d, s, 4);
    __builtin_memcpy(d + n - 4, s + n - 4, 4);
  } else {
    for (intptr_t i = 0; i < n; i++) d[i] = s[i];
  }
}

void ti_shim_pad_rows(const void *src, void *dst, intptr_t rows, intptr_t in_row, intptr_t before, intptr_t after,
                      uint64_t fill, intptr_t es) {
  uint8_t pat[16];
  const unsigned mask = es == 8 ? 7u : es == 4 ? 3u : es == 2 ? 1u : 0u;
  for (unsigned i = 0; i < 16; i++) pat[i] = (uint8_t)(fill >> (8 * (i & mask)));
  const uint8_t *s = (const uint8_t *)src;
  uint8_t *d = (uint8_t *)dst;
  const intptr_t out_row = before + in_row + after;
  if (before == 0 && in_row >= 16 && after >= 16) {  /* the channel padding of a residual branch */
    for (intptr_t r = 0; r < rows; r++) {
      uint8_t *o = d + r * out_row;
      ti_copy16(o, s + r * in_row, in_row);
      ti_fill16(o + in_row, pat, after);
    }
    return;
  }
  for (intptr_t r = 0; r < rows; r++) {
    uint8_t *o = d + r * out_row;
    if (before >= 16) ti_fill16(o, pat, before); else ti_copy_short(o, pat, before);
    if (in_row >= 16) ti_copy16(o + before, s + r * in_row, in_row); else ti_copy_short(o + before, s + r * in_row, in_row);
    if (after >= 16) ti_fill16(o + before + in_row, pat, after); else ti_copy_short(o + before + in_row, pat, after);
  }
}

/* One definition for both element types (`p[j] != 0`: -0.0 is zero, NaN is not). */
#define TI_COUNT_NONZERO(name, T)                                  \
  intptr_t name(const T *p, intptr_t n, intptr_t cap) {            \
    intptr_t nnz = 0;                                              \
    for (intptr_t i = 0; i < n && nnz <= cap; i += 4096) {         \
      intptr_t end = n - i < 4096 ? n : i + 4096;                  \
      int32_t c = 0;                                               \
      for (intptr_t j = i; j < end; j++) c += p[j] != 0;           \
      nnz += c;                                                    \
    }                                                              \
    return nnz;                                                    \
  }
TI_COUNT_NONZERO(ti_shim_count_nonzero_f32, float)
TI_COUNT_NONZERO(ti_shim_count_nonzero_i8, int8_t)

void ti_shim_csr_f32(const float *w, intptr_t rows, intptr_t k, int32_t *start, int32_t *idx, float *val) {
  intptr_t q = 0;
  for (intptr_t r = 0; r < rows; r++) {
    start[r] = (int32_t)q;
    const float *row = w + r * k;
    for (intptr_t i = 0; i < k; i++) {
      float v = row[i];
      idx[q] = (int32_t)i;
      val[q] = v;
      q += v != 0.0f;
    }
  }
  start[rows] = (int32_t)q;
}

void ti_shim_csr_i8(const int8_t *w, intptr_t rows, intptr_t k, int32_t *start, int32_t *idx, int8_t *val,
                    int32_t *sums) {
  intptr_t q = 0;
  for (intptr_t r = 0; r < rows; r++) {
    start[r] = (int32_t)q;
    const int8_t *row = w + r * k;
    int32_t s = 0;
    for (intptr_t i = 0; i < k; i++) {
      int8_t v = row[i];
      idx[q] = (int32_t)i;
      val[q] = v;
      s += v;
      q += v != 0;
    }
    sums[r] = s;
  }
  start[rows] = (int32_t)q;
}

int ti_shim_linear_fit(const int8_t *target, intptr_t n1, int32_t x1lo, intptr_t n2, int32_t x2lo, int64_t p1,
                       int64_t p2, int32_t shift, int32_t lo, int32_t hi, int64_t *lower, int64_t *upper) {
  const int64_t none = (int64_t)1 << 60;
  int64_t L = -none, U = none;
  const int narrow = shift >= 0 && shift <= 22 && p2 > -(1 << 23) && p2 < (1 << 23) && x2lo >= -128 && x2lo + n2 <= 129;
  int32_t x2p[257];
  if (narrow)
    for (intptr_t j = 0; j < n2; j++) x2p[j] = (x2lo + (int32_t)j) * (int32_t)p2;
  for (intptr_t r = 0; r < n1; r++) {
    const int8_t *row = target + r * n2;
    const int64_t b1 = (int64_t)(x1lo + r) * p1;
    int64_t l, u;
    if (narrow) {
      /* |t << shift| <= 2^29 and |x2 p2| < 2^30: every lane value fits int32. */
      const int32_t none32 = INT32_MAX;
      int32_t lm = -none32, um = none32;
      for (intptr_t j = 0; j < n2; j++) {
        const int32_t t = row[j];
        const int32_t a = (t * (1 << shift)) - x2p[j], b = ((t + 1) * (1 << shift)) - x2p[j];
        const int32_t ca = t > lo ? a : -none32, cb = t < hi ? b : none32;
        lm = ca > lm ? ca : lm;
        um = cb < um ? cb : um;
      }
      l = lm == -none32 ? -none : (int64_t)lm - b1;
      u = um == none32 ? none : (int64_t)um - b1;
    } else {
      l = -none, u = none;
      for (intptr_t j = 0; j < n2; j++) {
        const int64_t t = row[j], base = b1 + (int64_t)(x2lo + j) * p2;
        const int64_t a = t * ((int64_t)1 << shift) - base, b = (t + 1) * ((int64_t)1 << shift) - base;
        if (t > lo && a > l) l = a;
        if (t < hi && b < u) u = b;
      }
    }
    if (l > L) L = l;
    if (u < U) U = u;
    if (L >= U) return 0;
  }
  *lower = L, *upper = U;
  return 1;
}

int ti_shim_cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : (int)n;
}

int ti_shim_write_file(const char *path, const void *data, size_t size) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  const char *p = data;
  while (size > 0) {
    ssize_t w = write(fd, p, size);
    if (w < 0) { if (errno == EINTR) continue; int e = errno; close(fd); return e; }
    p += w; size -= (size_t)w;
  }
  if (close(fd) != 0) return errno;
  return 0;
}

/* ---- thread pool ----------------------------------------------------
 * One job at a time, run by the caller and the workers together. Every
 * hand-off costs cache-line transfers between cores (a job cost the caller
 * 0.65-0.95 us with the job spread over five lines, 0.35-0.8 us in one:
 * bench/pool_handoff.c), so a job is published in one line: its
 * function, context and item count, and `claim`, which packs the job's
 * sequence number (high 32 bits) with the next unclaimed item (low 32).
 * A thread claims an item by compare-and-swap on `claim`: a worker that
 * read an older job's fields fails the swap (the sequence moved) and
 * never runs a stale item, so no other handshake guards the job's
 * fields. Finished items add to `done`, a running count the caller
 * compares with its own target. Between jobs a worker polls `claim` for
 * a short, bounded time (TI_POOL_SPIN_NS: the next op of a graph usually
 * follows within microseconds, and a condition-variable wake-up costs tens
 * of microseconds on a VM), then sleeps until woken: idle workers never
 * burn a core. The caller likewise polls `done`, then sleeps. */

#include <stdatomic.h>
#define TI_POOL_SPIN_NS 50000ull

struct ti_pool {
  int threads;            /* total, including the caller */
  pthread_t *workers;     /* threads - 1 */
  pthread_mutex_t mu;
  pthread_cond_t wake;    /* sleeping workers wait for a new job */
  pthread_cond_t done_cv; /* the caller waits for the end of a job */
  uint32_t seq;           /* the caller's: sequence of the last job */
  uint32_t target;        /* the caller's: `done` once the last job ends */
  /* The job: written by the caller, read by every thread (one line). */
  _Alignas(64) atomic_ullong claim;
  _Atomic(void (*)(void *, int)) fn;
  _Atomic(void *) ctx;
  atomic_int n;
  /* Items finished by workers, a running count (wraps). */
  _Alignas(64) atomic_uint done;
  /* Written rarely: sleeping workers, a sleeping caller, stop. */
  _Alignas(64) atomic_int sleepers;
  atomic_int waiting;
  atomic_int stop;
};

static inline void ti_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* Claims and runs items of job `seq` until none is left or the job
 * changed; returns how many it ran. A worker counts each in `done` (the
 * caller counts its own). */
static int ti_pool_work(ti_pool *p, uint32_t seq, int worker) {
  int ran = 0;
  unsigned long long c = atomic_load(&p->claim);
  for (;;) {
    if ((uint32_t)(c >> 32) != seq) return ran;
    int i = (int)(uint32_t)c;
    void (*fn)(void *, int) = atomic_load_explicit(&p->fn, memory_order_relaxed);
    void *ctx = atomic_load_explicit(&p->ctx, memory_order_relaxed);
    int n = atomic_load_explicit(&p->n, memory_order_relaxed);
    if (i >= n) return ran;
    /* The fields above belong to job `seq` if the swap succeeds: the
     * caller closes a job's claim before it writes the next job's fields. */
    if (!atomic_compare_exchange_weak(&p->claim, &c, c + 1)) continue;
    fn(ctx, i);
    ran++;
    if (worker) {
      atomic_fetch_add(&p->done, 1);
      if (atomic_load(&p->waiting)) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->done_cv);
        pthread_mutex_unlock(&p->mu);
      }
    }
    c = atomic_load(&p->claim);
  }
}

static void *ti_pool_main(void *arg) {
  ti_pool *p = arg;
  uint32_t seen = 0;
  for (;;) {
    uint64_t t0 = ti_shim_now_ns();
    unsigned spins = 0;
    uint32_t seq;
    while ((seq = (uint32_t)(atomic_load(&p->claim) >> 32)) == seen && !atomic_load(&p->stop)) {
      ti_cpu_relax();
      if ((++spins & 63) == 0 && ti_shim_now_ns() - t0 > TI_POOL_SPIN_NS) break;
    }
    if (seq == seen && !atomic_load(&p->stop)) {
      pthread_mutex_lock(&p->mu);
      atomic_fetch_add(&p->sleepers, 1);
      while ((seq = (uint32_t)(atomic_load(&p->claim) >> 32)) == seen && !atomic_load(&p->stop))
        pthread_cond_wait(&p->wake, &p->mu);
      atomic_fetch_sub(&p->sleepers, 1);
      pthread_mutex_unlock(&p->mu);
    }
    if (atomic_load(&p->stop)) break;
    seen = seq;
    ti_pool_work(p, seq, 1);
  }
  return NULL;
}

ti_pool *ti_pool_create(int threads) {
  if (threads < 1) threads = 1;
  if (threads > 256) threads = 256;
  ti_pool *p = NULL;
  if (posix_memalign((void **)&p, 64, sizeof *p) != 0) return NULL;
  memset(p, 0, sizeof *p);
  p->threads = 1;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->wake, NULL);
  pthread_cond_init(&p->done_cv, NULL);
  atomic_init(&p->claim, 0);
  atomic_init(&p->fn, NULL);
  atomic_init(&p->ctx, NULL);
  atomic_init(&p->n, 0);
  atomic_init(&p->done, 0);
  atomic_init(&p->sleepers, 0);
  atomic_init(&p->waiting, 0);
  atomic_init(&p->stop, 0);
  if (threads > 1) {
    p->workers = calloc((size_t)threads - 1, sizeof(pthread_t));
    if (!p->workers) { ti_pool_destroy(p); return NULL; }
    for (int t = 0; t < threads - 1; t++) {
      if (pthread_create(&p->workers[t], NULL, ti_pool_main, p) != 0) break;
      p->threads++;
    }
  }
  return p;
}

void ti_pool_destroy(ti_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  atomic_store(&p->stop, 1);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  for (int t = 0; t < p->threads - 1; t++) pthread_join(p->workers[t], NULL);
  free(p->workers);
  pthread_cond_destroy(&p->wake);
  pthread_cond_destroy(&p->done_cv);
  pthread_mutex_destroy(&p->mu);
  free(p);
}

int ti_pool_threads(const ti_pool *p) { return p ? p->threads : 1; }

int ti_shim_thread_pick_enabled(void) {
  const char *v = getenv("TINYINFER_THREAD_PICK");
  return !(v && v[0] == '0' && v[1] == 0);
}

int ti_shim_sparse_measure_enabled(void) {
  const char *v = getenv("TINYINFER_SPARSE_MEASURE");
  return !(v && v[0] == '0' && v[1] == 0);
}

void ti_pool_run(ti_pool *p, void (*fn)(void *, int), void *ctx, int n) {
  if (n <= 0) return;
  if (!p || p->threads == 1 || n == 1) {
    for (int i = 0; i < n; i++) fn(ctx, i);
    return;
  }
  /* First close the previous job: a thread that read its claim and is
   * about to swap it would otherwise succeed after the fields below change
   * and run an item of this job twice. The closing sequence has no items
   * (index past any count); the job's own sequence follows it. */
  atomic_store(&p->claim, ((unsigned long long)(p->seq + 1) << 32) | 0x7fffffffull);
  uint32_t seq = (p->seq += 2);
  atomic_store_explicit(&p->fn, fn, memory_order_relaxed);
  atomic_store_explicit(&p->ctx, ctx, memory_order_relaxed);
  atomic_store_explicit(&p->n, n, memory_order_relaxed);
  /* Publishes the job with item 0 taken by the caller (so, with as many
   * items as threads, each thread gets the same item from job to job and
   * finds its part of the data in its own cache). Sequentially consistent,
   * so that the load of `sleepers` below and a worker's check of `claim`
   * see one another. */
  atomic_store(&p->claim, ((unsigned long long)seq << 32) | 1ull);
  if (atomic_load(&p->sleepers) > 0) {
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
  }
  fn(ctx, 0);
  int mine = 1 + ti_pool_work(p, seq, 0);
  /* Wait for the items the workers took: poll briefly, then sleep. */
  const uint32_t target = (p->target += (uint32_t)(n - mine));
  uint64_t t0 = ti_shim_now_ns();
  unsigned spins = 0;
  while (atomic_load(&p->done) != target) {
    ti_cpu_relax();
    if ((++spins & 63) == 0 && ti_shim_now_ns() - t0 > TI_POOL_SPIN_NS) {
      pthread_mutex_lock(&p->mu);
      atomic_store(&p->waiting, 1);
      while (atomic_load(&p->done) != target) pthread_cond_wait(&p->done_cv, &p->mu);
      atomic_store(&p->waiting, 0);
      pthread_mutex_unlock(&p->mu);
      break;
    }
  }
}

float ti_shim_expf(float x) { return expf(x); }
float ti_shim_logf(float x) { return logf(x); }
float ti_shim_tanhf(float x) { return tanhf(x); }
float ti_shim_floorf(float x) { return floorf(x); }
float ti_shim_ceilf(float x) { return ceilf(x); }
float ti_shim_roundf(float x) { return roundf(x); }

/* Condition variables and threads for the micro-batcher (issue 17). */
struct ti_cond { pthread_cond_t cv; };

ti_cond *ti_shim_cond_create(void) {
  ti_cond *c = malloc(sizeof *c);
  if (!c) return NULL;
  pthread_condattr_t a;
  if (pthread_condattr_init(&a) != 0) { free(c); return NULL; }
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC); /* the clock of ti_shim_now_ns */
  int rc = pthread_cond_init(&c->cv, &a);
  pthread_condattr_destroy(&a);
  if (rc != 0) { free(c); return NULL; }
  return c;
}

void ti_shim_cond_destroy(ti_cond *c) {
  if (!c) return;
  pthread_cond_destroy(&c->cv);
  free(c);
}

void ti_shim_cond_wait(ti_cond *c, ti_mutex *m) { if (c && m) pthread_cond_wait(&c->cv, &m->mu); }

int ti_shim_cond_wait_until(ti_cond *c, ti_mutex *m, uint64_t deadline_ns) {
  if (!c || !m) return 1;
  struct timespec ts;
  ts.tv_sec = (time_t)(deadline_ns / 1000000000ull);
  ts.tv_nsec = (long)(deadline_ns % 1000000000ull);
  return pthread_cond_timedwait(&c->cv, &m->mu, &ts) == ETIMEDOUT;
}

void ti_shim_cond_signal(ti_cond *c) { if (c) pthread_cond_signal(&c->cv); }
void ti_shim_cond_broadcast(ti_cond *c) { if (c) pthread_cond_broadcast(&c->cv); }

struct ti_thread { pthread_t id; void (*fn)(void *); void *ctx; };

static void *ti_thread_main(void *arg) {
  ti_thread *t = arg;
  t->fn(t->ctx);
  return NULL;
}

ti_thread *ti_shim_thread_start(void (*fn)(void *ctx), void *ctx) {
  if (!fn) return NULL;
  ti_thread *t = malloc(sizeof *t);
  if (!t) return NULL;
  t->fn = fn;
  t->ctx = ctx;
  if (pthread_create(&t->id, NULL, ti_thread_main, t) != 0) { free(t); return NULL; }
  return t;
}

void ti_shim_thread_join(ti_thread *t) {
  if (!t) return;
  pthread_join(t->id, NULL);
  free(t);
}

void ti_shim_fd_notify(int fd) {
  uint64_t one = 1;
  ssize_t n = write(fd, &one, sizeof one);
  (void)n;
}
