/* ti_hash64 (tinyinfer_hash.h): eight 64-bit lanes over 64-byte stripes.
 * Each stripe adds to lane i the 32x32->64 product of the halves of
 * (word i ^ key i) and adds word i itself to lane i^1 (so no input bit is
 * lost by a product that happens to be zero); every 16 stripes the lanes are
 * scrambled (xorshift, key, odd multiply), so a difference cannot cancel
 * across blocks. The tail is zero-padded into a last stripe; the length and
 * the seed enter the final mix. Written so that the lane loop vectorizes
 * (pmuludq on SSE2, vpmuludq on AVX2); the AVX2 variant is the same source
 * under a target attribute, chosen by ti_cpu_level(). */
#include "tinyinfer_hash.h"
#include "tinyinfer_cpu.h"
#include <string.h>

#define TI_HASH_P1 0x9E3779B185EBCA87ULL
#define TI_HASH_P2 0xC2B2AE3D27D4EB4FULL
#define TI_HASH_P3 0x165667B19E3779F9ULL
#define TI_HASH_BLOCK 16 /* stripes between scrambles */

static inline uint64_t ti_mix64(uint64_t x) {
  x ^= x >> 33;
  x *= TI_HASH_P2;
  x ^= x >> 29;
  x *= TI_HASH_P3;
  x ^= x >> 32;
  return x;
}

static inline uint64_t ti_load64(const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

#define TI_HASH_STRIPES(NAME)                                                                    \
  static void NAME(uint64_t *restrict acc, const uint64_t *restrict key, const unsigned char *p, \
                   size_t stripes) {                                                             \
    for (size_t s = 0; s < stripes; s++, p += 64) {                                              \
      uint64_t w[8];                                                                             \
      for (int i = 0; i < 8; i++) w[i] = ti_load64(p + 8 * i);                                   \
      for (int i = 0; i < 8; i++) {                                                              \
        uint64_t d = w[i] ^ key[i];                                                              \
        acc[i] += (d & 0xFFFFFFFFULL) * (d >> 32);                                               \
        acc[i ^ 1] += w[i];                                                                      \
      }                                                                                          \
    }                                                                                            \
  }

TI_HASH_STRIPES(ti_hash_stripes_baseline)
#if defined(__x86_64__)
__attribute__((target("avx2"))) TI_HASH_STRIPES(ti_hash_stripes_avx2)
#endif

static void ti_hash_scramble(uint64_t *acc, const uint64_t *key) {
  for (int i = 0; i < 8; i++) {
    uint64_t a = acc[i];
    a ^= a >> 47;
    a ^= key[i];
    acc[i] = a * TI_HASH_P1;
  }
}

uint64_t ti_hash64(const void *data, size_t size, uint64_t seed) {
  uint64_t key[8], acc[8];
  uint64_t k = seed ^ TI_HASH_P3;
  for (int i = 0; i < 8; i++) {
    k += TI_HASH_P1; /* splitmix64 steps from the seed */
    key[i] = ti_mix64(k);
    acc[i] = (uint64_t)(i + 1) * TI_HASH_P2;
  }
  void (*stripes)(uint64_t *restrict, const uint64_t *restrict, const unsigned char *, size_t) =
      ti_hash_stripes_baseline;
#if defined(__x86_64__)
  if (ti_cpu_level() >= TI_ISA_AVX2) stripes = ti_hash_stripes_avx2;
#endif
  const unsigned char *p = (const unsigned char *)data;
  size_t n = p ? size : 0;
  size_t full = n / 64;
  while (full > 0) {
    size_t m = full < TI_HASH_BLOCK ? full : TI_HASH_BLOCK;
    stripes(acc, key, p, m);
    ti_hash_scramble(acc, key);
    p += 64 * m;
    full -= m;
  }
  size_t rest = n % 64;
  if (rest) {
    unsigned char last[64];
    memset(last, 0, sizeof last);
    memcpy(last, p, rest);
    stripes(acc, key, last, 1);
    ti_hash_scramble(acc, key);
  }
  uint64_t h = ti_mix64((uint64_t)size * TI_HASH_P1 ^ seed);
  for (int i = 0; i < 8; i++) h = ti_mix64(h ^ acc[i]) + key[i];
  return ti_mix64(h);
}

int ti_bytes_equal(const void *a, const void *b, size_t size) { return size == 0 || memcmp(a, b, size) == 0; }
