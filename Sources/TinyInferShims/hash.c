/* ti_hash64 (tinyinfer_hash.h): eight 64-bit lanes over 64-byte stripes.
 * Each stripe adds to lane i the 32x32->64 product of the halves of
 * (word i ^ key i) and adds word i itself to lane i^1 (so no input bit is
 * lost by a product that happens to be zero); every 16 stripes the lanes are
 * scrambled (xorshift, key, odd multiply), so a difference cannot cancel
 * across blocks. The tail is zero-padded into a last stripe; the length and
 * the seed enter the final mix. The values are stored on disk (the
 * conversion and prepack caches' checksums), so every variant below gives
 * the scalar definition's value exactly: ti_hash_absorb_scalar is the
 * definition; the vector variant (SSE2/NEON at baseline, AVX2, AVX-512 under
 * target attributes, chosen once by ti_cpu_level()) regroups its sums. */
#include "tinyinfer_hash.h"
#include "tinyinfer_cpu.h"
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define TI_HASH_P1 0x9E3779B185EBCA87ULL
#define TI_HASH_P2 0xC2B2AE3D27D4EB4FULL
#define TI_HASH_P3 0x165667B19E3779F9ULL
#define TI_HASH_BLOCK 16 /* stripes between scrambles */

/* The final mix (of one word, or of each lane of a vector). */
#define TI_HASH_MIX64(T, NAME)                           \
  static inline __attribute__((always_inline)) T NAME(T x) { \
    x ^= x >> 33;                                        \
    x *= TI_HASH_P2;                                     \
    x ^= x >> 29;                                        \
    x *= TI_HASH_P3;                                     \
    x ^= x >> 32;                                        \
    return x;                                            \
  }
TI_HASH_MIX64(uint64_t, ti_mix64)

static inline uint64_t ti_load64(const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

/* The definition, one stripe at a time: the reference every variant must
 * equal (and the code on big-endian hosts). */
/* ti_hash64_quick's finish: the lanes times odd constants, summed (mod 2^64,
 * so any order gives the same value), with the size, through one final mix:
 * about 30 cycles where the definition's serial fold of eight mixes takes
 * about 120. */
static const uint64_t ti_hash_quick_mul[8] = {
    TI_HASH_P1, TI_HASH_P2, TI_HASH_P3, TI_HASH_P1 ^ (TI_HASH_P2 << 1), TI_HASH_P2 ^ (TI_HASH_P3 << 1),
    TI_HASH_P3 ^ (TI_HASH_P1 << 1), TI_HASH_P1 + TI_HASH_P3 * 2, TI_HASH_P2 + TI_HASH_P1 * 2};

static inline uint64_t ti_hash_fold_quick(const uint64_t acc[8], size_t size, uint64_t seed) {
  uint64_t s = 0;
  for (int i = 0; i < 8; i++) s += acc[i] * ti_hash_quick_mul[i];
  return ti_mix64(s ^ ((uint64_t)size * TI_HASH_P1) ^ seed);
}

static uint64_t ti_hash_scalar(const unsigned char *p, size_t n, size_t size, uint64_t seed, int quick) {
  uint64_t key[8], acc[8];
  uint64_t k = seed ^ TI_HASH_P3;
  for (int i = 0; i < 8; i++) {
    k += TI_HASH_P1; /* splitmix64 steps from the seed */
    key[i] = ti_mix64(k);
    acc[i] = (uint64_t)(i + 1) * TI_HASH_P2;
  }
  unsigned char last[64];
  size_t full = n / 64, stripes = (n + 63) / 64;
  for (size_t s = 0; s < stripes; s++) {
    const unsigned char *q = p + 64 * s;
    if (64 * s + 64 > n) { /* the tail, zero-padded */
      memset(last, 0, sizeof last);
      memcpy(last, q, n - 64 * s);
      q = last;
    }
    for (int i = 0; i < 8; i++) {
      uint64_t w = ti_load64(q + 8 * i);
      uint64_t d = w ^ key[i];
      acc[i] += (d & 0xFFFFFFFFULL) * (d >> 32);
      acc[i ^ 1] += w;
    }
    /* scrambled after every TI_HASH_BLOCK full stripes, after the last
     * full stripe and after the tail */
    if ((s + 1) % TI_HASH_BLOCK == 0 || s + 1 == full || s + 1 == stripes) {
      for (int i = 0; i < 8; i++) {
        uint64_t a = acc[i];
        a ^= a >> 47;
        a ^= key[i];
        acc[i] = a * TI_HASH_P1;
      }
    }
  }
  if (quick) return ti_hash_fold_quick(acc, size, seed);
  uint64_t h = ti_mix64((uint64_t)size * TI_HASH_P1 ^ seed);
  for (int i = 0; i < 8; i++) h = ti_mix64(h ^ acc[i]) + key[i];
  return ti_mix64(h);
}

typedef uint64_t (*ti_hash_fn)(const unsigned char *, size_t, size_t, uint64_t);

#if !(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
/* The same function on 8-lane vectors (clang's ext_vector_type), one
 * source compiled per CPU level under target attributes: SSE2 (or NEON) at
 * baseline, AVX2, AVX-512 (vpmuludq on zmm, vpmullq for the scrambles).
 * Additions mod 2^64 commute, so within a block the products and the words
 * are summed apart (two interleaved sets, for independent chains) and the
 * words' sum enters the accumulators lane-swapped (lane i^1) once, before
 * the scramble; the keys are derived in all lanes at once. The value is the
 * scalar code's, bit for bit (tested at every level, and against a Python
 * transcription, in python/tests/test_subgraph.py). */
typedef uint64_t ti_u64x8 __attribute__((ext_vector_type(8), aligned(8)));
/* The helpers below take and return vectors but are always inlined into the
 * per-level functions, so no vector crosses a call (no ABI to differ). */
#pragma clang diagnostic ignored "-Wpsabi"

TI_HASH_MIX64(ti_u64x8, ti_mix64x8)

static inline __attribute__((always_inline)) ti_u64x8 ti_load64x8(const unsigned char *p) {
  ti_u64x8 v;
  memcpy(&v, p, 64);
  return v;
}

/* Absorbs `stripes` (1...TI_HASH_BLOCK) stripes at p into `a`, then scrambles. */
static inline __attribute__((always_inline)) ti_u64x8 ti_hash_block(ti_u64x8 a, ti_u64x8 k, const unsigned char *p,
                                                                     size_t stripes) {
  const ti_u64x8 lo = (ti_u64x8)0xFFFFFFFFULL;
  ti_u64x8 prod0 = 0, prod1 = 0, sum0 = 0, sum1 = 0;
  size_t s = 0;
  for (; s + 2 <= stripes; s += 2, p += 128) {
    ti_u64x8 w0 = ti_load64x8(p), w1 = ti_load64x8(p + 64);
    ti_u64x8 d0 = w0 ^ k, d1 = w1 ^ k;
    prod0 += (d0 & lo) * (d0 >> 32);
    prod1 += (d1 & lo) * (d1 >> 32);
    sum0 += w0;
    sum1 += w1;
  }
  if (s < stripes) {
    ti_u64x8 w0 = ti_load64x8(p);
    ti_u64x8 d0 = w0 ^ k;
    prod0 += (d0 & lo) * (d0 >> 32);
    sum0 += w0;
  }
  ti_u64x8 sum = sum0 + sum1;
  a += prod0 + prod1 + __builtin_shufflevector(sum, sum, 1, 0, 3, 2, 5, 4, 7, 6);
  a ^= a >> 47;
  a ^= k;
  return a * TI_HASH_P1;
}

static inline __attribute__((always_inline)) uint64_t ti_hash_vector(const unsigned char *p, size_t n, size_t size,
                                                                      uint64_t seed, int quick) {
  const ti_u64x8 lane = {1, 2, 3, 4, 5, 6, 7, 8};
  ti_u64x8 k = ti_mix64x8((ti_u64x8)(seed ^ TI_HASH_P3) + lane * TI_HASH_P1);
  ti_u64x8 a = lane * TI_HASH_P2;
  size_t full = n / 64;
  for (; full >= TI_HASH_BLOCK; full -= TI_HASH_BLOCK, p += 64 * TI_HASH_BLOCK) a = ti_hash_block(a, k, p, TI_HASH_BLOCK);
  if (full > 0) {
    a = ti_hash_block(a, k, p, full);
    p += 64 * full;
  }
  size_t rest = n % 64;
  if (rest) {
    unsigned char last[64];
    memset(last, 0, sizeof last);
    memcpy(last, p, rest);
    a = ti_hash_block(a, k, last, 1);
  }
  if (quick) { /* ti_hash_fold_quick in the lanes: products, then halves added */
    ti_u64x8 m = a * ti_load64x8((const unsigned char *)ti_hash_quick_mul);
    typedef uint64_t ti_u64x4 __attribute__((ext_vector_type(4), aligned(8)));
    typedef uint64_t ti_u64x2 __attribute__((ext_vector_type(2), aligned(8)));
    ti_u64x4 m4 = __builtin_shufflevector(m, m, 0, 1, 2, 3) + __builtin_shufflevector(m, m, 4, 5, 6, 7);
    ti_u64x2 m2 = __builtin_shufflevector(m4, m4, 0, 1) + __builtin_shufflevector(m4, m4, 2, 3);
    return ti_mix64((m2[0] + m2[1]) ^ ((uint64_t)size * TI_HASH_P1) ^ seed);
  }
  uint64_t h = ti_mix64((uint64_t)size * TI_HASH_P1 ^ seed);
  for (int i = 0; i < 8; i++) h = ti_mix64(h ^ a[i]) + k[i];
  return ti_mix64(h);
}

/* One function per CPU level and finish (the definition's, or quick). */
#define TI_HASH_LEVEL(NAME, TARGET)                                                                              \
  TARGET static uint64_t NAME(const unsigned char *p, size_t n, size_t size, uint64_t seed) {                    \
    return ti_hash_vector(p, n, size, seed, 0);                                                                  \
  }                                                                                                              \
  TARGET static uint64_t NAME##_quick(const unsigned char *p, size_t n, size_t size, uint64_t seed) {            \
    return ti_hash_vector(p, n, size, seed, 1);                                                                  \
  }
TI_HASH_LEVEL(ti_hash_baseline, )
#if defined(__x86_64__)
TI_HASH_LEVEL(ti_hash_avx2, __attribute__((target("avx2"))))
TI_HASH_LEVEL(ti_hash_avx512, __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2"))))
#endif
#else
static uint64_t ti_hash_baseline(const unsigned char *p, size_t n, size_t size, uint64_t seed) {
  return ti_hash_scalar(p, n, size, seed, 0);
}
static uint64_t ti_hash_baseline_quick(const unsigned char *p, size_t n, size_t size, uint64_t seed) {
  return ti_hash_scalar(p, n, size, seed, 1);
}
#endif

/* The variants of the CPU level in use (TINYINFER_ISA forces a lower one):
 * [0] the definition's finish, [1] the quick one. */
static ti_hash_fn ti_hash_chosen(int quick) {
  static ti_hash_fn chosen[2];
  ti_hash_fn f = __atomic_load_n(&chosen[quick], __ATOMIC_RELAXED);
  if (f) return f;
  f = quick ? ti_hash_baseline_quick : ti_hash_baseline;
#if defined(__x86_64__) && !(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
  int level = ti_cpu_level();
  if (level >= TI_ISA_AVX512) f = quick ? ti_hash_avx512_quick : ti_hash_avx512;
  else if (level >= TI_ISA_AVX2) f = quick ? ti_hash_avx2_quick : ti_hash_avx2;
#endif
  __atomic_store_n(&chosen[quick], f, __ATOMIC_RELAXED);
  return f;
}

/* (data may be NULL when size is 0: nothing is read, the size still enters the finish) */
uint64_t ti_hash64(const void *data, size_t size, uint64_t seed) { return ti_hash_chosen(0)(data, data ? size : 0, size, seed); }
uint64_t ti_hash64_reference(const void *data, size_t size, uint64_t seed) {
  return ti_hash_scalar(data, data ? size : 0, size, seed, 0);
}
uint64_t ti_hash64_quick(const void *data, size_t size, uint64_t seed) {
  return ti_hash_chosen(1)(data, data ? size : 0, size, seed);
}
uint64_t ti_hash64_quick_reference(const void *data, size_t size, uint64_t seed) {
  return ti_hash_scalar(data, data ? size : 0, size, seed, 1);
}

/* ti_hash64_chunked: chunks of TI_HASH_CHUNK bytes (the last one shorter),
 * chunk i hashed as ti_hash64(chunk, length, i), folded in order by
 * ti_hash_fold_chunk from seed ^ size * P1, with the chunk count in the
 * last mix. Chunks are independent, so a job's thread and its caller share
 * them (below). */
#define TI_HASH_CHUNK ((size_t)256 << 10)

static size_t ti_hash_chunks(size_t size) { return size == 0 ? 1 : (size - 1) / TI_HASH_CHUNK + 1; }

static uint64_t ti_hash_chunk(const unsigned char *p, size_t size, size_t i) {
  size_t at = i * TI_HASH_CHUNK, n = size - at < TI_HASH_CHUNK ? size - at : TI_HASH_CHUNK;
  return ti_hash64(size ? p + at : NULL, n, (uint64_t)i);
}

static inline uint64_t ti_hash_fold_chunk(uint64_t acc, uint64_t h) { return ti_mix64(acc ^ h) + TI_HASH_P3; }
static inline uint64_t ti_hash_fold_start(size_t size, uint64_t seed) { return seed ^ ((uint64_t)size * TI_HASH_P1); }
static inline uint64_t ti_hash_fold_end(uint64_t acc, size_t chunks) { return ti_mix64(acc ^ (uint64_t)chunks); }

uint64_t ti_hash64_chunked(const void *data, size_t size, uint64_t seed) {
  size_t chunks = ti_hash_chunks(size);
  uint64_t acc = ti_hash_fold_start(size, seed);
  for (size_t i = 0; i < chunks; i++) acc = ti_hash_fold_chunk(acc, ti_hash_chunk(data, size, i));
  return ti_hash_fold_end(acc, chunks);
}

/* A job's chunks are claimed one at a time (`next`) by its thread and, from
 * ti_hash64_finish on, by the caller too: the caller never waits for a
 * thread that has not started (on a busy machine a new thread may wait
 * milliseconds for a core), only for a chunk the thread is hashing. The
 * thread is detached: whichever of the two lets go of the job last frees it. */
struct ti_hash_job {
  int refs;      /* atomic: the thread's and the caller's */
  size_t next;   /* atomic: the next chunk to claim */
  size_t done;   /* atomic: chunks hashed */
  size_t chunks;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  const unsigned char *data;
  size_t size;
  uint64_t seed;
  uint64_t h[]; /* the chunks' hashes */
};

static void ti_hash_job_release(ti_hash_job *j) {
  if (__atomic_sub_fetch(&j->refs, 1, __ATOMIC_ACQ_REL) == 0) {
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
  }
}

/* Hashes unclaimed chunks until none is left. */
static void ti_hash_job_work(ti_hash_job *j) {
  for (;;) {
    size_t i = __atomic_fetch_add(&j->next, 1, __ATOMIC_ACQ_REL);
    if (i >= j->chunks) return;
    j->h[i] = ti_hash_chunk(j->data, j->size, i);
    if (__atomic_add_fetch(&j->done, 1, __ATOMIC_ACQ_REL) == j->chunks) {
      pthread_mutex_lock(&j->mu);
      pthread_cond_broadcast(&j->cv);
      pthread_mutex_unlock(&j->mu);
    }
  }
}

static void *ti_hash_job_run(void *arg) {
  ti_hash_job *j = arg;
  ti_hash_job_work(j);
  ti_hash_job_release(j);
  return NULL;
}

ti_hash_job *ti_hash64_start(const void *data, size_t size, uint64_t seed) {
  size_t chunks = ti_hash_chunks(size);
  if (chunks > (SIZE_MAX - sizeof(ti_hash_job)) / sizeof(uint64_t)) return NULL;
  ti_hash_job *j = malloc(sizeof *j + chunks * sizeof(uint64_t));
  if (!j) return NULL;
  j->refs = 2, j->next = 0, j->done = 0, j->chunks = chunks;
  j->data = data, j->size = size, j->seed = seed;
  if (pthread_mutex_init(&j->mu, NULL) != 0) { free(j); return NULL; }
  if (pthread_cond_init(&j->cv, NULL) != 0) { pthread_mutex_destroy(&j->mu); free(j); return NULL; }
  int rc = ti_cpu_helper_thread(NULL, 1, ti_hash_job_run, j);
  if (rc != 0) {
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
    return NULL;
  }
  return j;
}

uint64_t ti_hash64_finish(ti_hash_job *j) {
  ti_hash_job_work(j);
  if (__atomic_load_n(&j->done, __ATOMIC_ACQUIRE) != j->chunks) {
    pthread_mutex_lock(&j->mu);
    while (__atomic_load_n(&j->done, __ATOMIC_ACQUIRE) != j->chunks) pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
  }
  uint64_t acc = ti_hash_fold_start(j->size, j->seed);
  for (size_t i = 0; i < j->chunks; i++) acc = ti_hash_fold_chunk(acc, j->h[i]);
  acc = ti_hash_fold_end(acc, j->chunks);
  ti_hash_job_release(j);
  return acc;
}

int ti_bytes_equal(const void *a, const void *b, size_t size) { return size == 0 || memcmp(a, b, size) == 0; }

/* -- ti_u64_map ------------------------------------------------------------
 * Linear probing from a Fibonacci-hashed home slot (the keys are hashes, but
 * tinf_result_cache may mask them to a few bits); deletion shifts the
 * following run back, so there are no tombstones and a miss stops at the
 * first empty slot. Capacity: a power of two, at most half full. */
#define TI_U64_MAP_MIN 16

static inline size_t ti_u64_map_home(const ti_u64_map *m, uint64_t key) {
  return (size_t)((key * 0x9E3779B97F4A7C15ULL) >> m->shift);
}

void ti_u64_map_init(ti_u64_map *m) { memset(m, 0, sizeof *m); }

void ti_u64_map_free(ti_u64_map *m) {
  free(m->slots);
  ti_u64_map_init(m);
}

uint64_t ti_u64_map_get(const ti_u64_map *m, uint64_t key) {
  if (m->count == 0) return 0;
  for (size_t i = ti_u64_map_home(m, key);; i = (i + 1) & m->mask) {
    uint64_t v = m->slots[i].val;
    if (v == 0) return 0;
    if (m->slots[i].key == key) return v;
  }
}

/* Puts key -> val (val != 0) into a table with room (count < capacity/2). */
static uint64_t ti_u64_map_place(ti_u64_map *m, uint64_t key, uint64_t val) {
  for (size_t i = ti_u64_map_home(m, key);; i = (i + 1) & m->mask) {
    uint64_t v = m->slots[i].val;
    if (v == 0) {
      m->slots[i].key = key;
      m->slots[i].val = val;
      m->count++;
      return 0;
    }
    if (m->slots[i].key == key) {
      m->slots[i].val = val;
      return v;
    }
  }
}

static int ti_u64_map_grow(ti_u64_map *m) {
  /* No doubling past 2^40 slots, nor past what size_t holds (32-bit targets). */
  if (m->mask > (SIZE_MAX >> 2)) return 0;
  size_t cap = m->mask ? 2 * (m->mask + 1) : TI_U64_MAP_MIN;
  if ((uint64_t)cap > ((uint64_t)1 << 40)) return 0;
  ti_u64_slot *slots = calloc(cap, sizeof *slots);
  if (!slots) return 0;
  ti_u64_map old = *m;
  int bits = 0;
  while (((size_t)1 << bits) < cap) bits++;
  m->slots = slots;
  m->mask = cap - 1;
  m->shift = 64 - bits;
  m->count = 0;
  for (size_t i = 0; old.slots && i <= old.mask; i++)
    if (old.slots[i].val) ti_u64_map_place(m, old.slots[i].key, old.slots[i].val);
  free(old.slots);
  return 1;
}

int ti_u64_map_put(ti_u64_map *m, uint64_t key, uint64_t val, uint64_t *old) {
  if (val == 0) return 0;
  if (2 * (m->count + 1) > (m->mask ? m->mask + 1 : 0) && !ti_u64_map_grow(m)) {
    /* full: an existing key can still take its new value */
    uint64_t v = ti_u64_map_get(m, key);
    if (v == 0) return 0;
    ti_u64_map_place(m, key, val);
    if (old) *old = v;
    return 1;
  }
  uint64_t v = ti_u64_map_place(m, key, val);
  if (old) *old = v;
  return 1;
}

uint64_t ti_u64_map_remove(ti_u64_map *m, uint64_t key) {
  if (m->count == 0) return 0;
  size_t i = ti_u64_map_home(m, key);
  for (;; i = (i + 1) & m->mask) {
    if (m->slots[i].val == 0) return 0;
    if (m->slots[i].key == key) break;
  }
  uint64_t v = m->slots[i].val;
  /* backward shift: move each later entry of the run whose home is not in
   * (i, j] into the hole */
  for (size_t j = i;;) {
    j = (j + 1) & m->mask;
    if (m->slots[j].val == 0) break;
    size_t home = ti_u64_map_home(m, m->slots[j].key);
    if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
      m->slots[i] = m->slots[j];
      i = j;
    }
  }
  m->slots[i].val = 0;
  m->count--;
  return v;
}

/* -- ti_seen_ring ------------------------------------------------------------
 * A miss touches one random cache line of the map (the new hash's home, read
 * then written; prefetched before the model runs); the remembered key that
 * leaves the window is not looked up (its entry goes stale, told by its
 * number), and stale entries are swept out in place, in two sequential
 * passes, once the map holds 2 max entries (the map keeps its capacity: no
 * allocation). */
void ti_seen_ring_init(ti_seen_ring *r, size_t max) {
  memset(r, 0, sizeof *r);
  r->max = max ? max : 1;
}

void ti_seen_ring_clear(ti_seen_ring *r) {
  size_t max = r->max;
  ti_u64_map_free(&r->map);
  free(r->taken);
  ti_seen_ring_init(r, max);
}

/* Removes the entries out of the window (numbers < sequence - max) in two
 * sequential passes: empty the stale slots, then put every kept entry back
 * at the first empty slot from its home (never past where it was). The
 * second pass starts after a slot that was empty before the first (the map
 * is at most half full), so no run crosses its start and each kept entry's
 * home lies between that start and the entry: the entries already put back
 * stay reachable. */
static void ti_seen_ring_sweep(ti_seen_ring *r) {
  ti_u64_map *m = &r->map;
  uint64_t floor = r->sequence > r->max ? r->sequence - r->max : 0;
  size_t start = 0;
  while (m->slots[start].val != 0) start++;
  for (size_t i = 0; i <= m->mask; i++)
    if (m->slots[i].val != 0 && m->slots[i].val - 1 < floor) {
      m->slots[i].val = 0;
      m->count--;
    }
  for (size_t k = 1; k <= m->mask; k++) {
    size_t i = (start + k) & m->mask;
    if (m->slots[i].val == 0) continue;
    ti_u64_slot e = m->slots[i];
    m->slots[i].val = 0;
    size_t j = ti_u64_map_home(m, e.key);
    while (m->slots[j].val != 0) j = (j + 1) & m->mask;
    m->slots[j] = e;
  }
}

void ti_seen_ring_prefetch(const ti_seen_ring *r, uint64_t h) {
  /* without the caller's lock: a stale pointer only makes a useless prefetch (prefetches never fault) */
  ti_u64_slot *slots = __atomic_load_n(&r->map.slots, __ATOMIC_RELAXED);
  int shift = __atomic_load_n(&r->map.shift, __ATOMIC_RELAXED);
  size_t mask = __atomic_load_n(&r->map.mask, __ATOMIC_RELAXED);
  if (slots) __builtin_prefetch(slots + (((size_t)((h * 0x9E3779B97F4A7C15ULL) >> shift)) & mask), 1);
}

int ti_seen_ring_take_or_remember(ti_seen_ring *r, uint64_t h) {
  uint64_t n = r->max;
  uint64_t v = ti_u64_map_get(&r->map, h);
  if (v != 0 && v - 1 + n >= r->sequence) { /* remembered within the window: its repeat */
    ti_u64_map_remove(&r->map, h);
    r->taken[(v - 1) % n] = 1;
    r->live--;
    return 1;
  }
  size_t slot = r->next;
  if (r->sequence >= n) {
    if (!r->taken[slot]) r->live--; /* the key remembered max ago leaves the window */
  } else if (slot >= r->capacity) {
    size_t cap = r->capacity ? 2 * r->capacity : 64;
    if (cap > r->max) cap = r->max;
    unsigned char *grown = realloc(r->taken, cap);
    if (!grown) return 0; /* out of memory: not remembered */
    r->taken = grown;
    r->capacity = cap;
  }
  int stored = ti_u64_map_put(&r->map, h, r->sequence + 1, NULL);
  r->taken[slot] = !stored; /* out of memory: the window moves on without h */
  r->sequence++;
  r->next = slot + 1 == n ? 0 : slot + 1;
  if (!stored) return 0;
  r->live++;
  if (r->map.count >= 64 && r->map.count >= 2 * r->max) ti_seen_ring_sweep(r);
  return 0;
}
