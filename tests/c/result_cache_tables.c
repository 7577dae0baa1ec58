/* The result cache's C tables and key hash (Sources/TinyInferShims/hash.c),
 * built from source by python/tests/test_result_cache_tables.py and run at
 * each CPU level (TINYINFER_ISA):
 * - ti_hash64_quick equals its scalar reference (ti_hash64_quick_reference)
 *   at every length around the stripe, block and tail boundaries, seeds and
 *   misaligned starts, and ti_hash64 its own; the values are printed, so
 *   that the test compares the levels;
 * - every single-bit change of a 3136-byte input (the MLP's) changes the
 *   quick hash, and no two of those changes give the same value;
 * - ti_seen_ring against a plain model of its window (a key remembered
 *   among the last `max` remembered ones is taken; else remembered), for
 *   several windows, keys spread or crowded at the ends of the table: its answers, its live count, and a map holding at most
 *   2 max keys (live and stale) and the live ones alone after each sweep.
 * Prints "ok" last; exits 1 with the failed check. */
#include "tinyinfer_cpu.h"
#include "tinyinfer_hash.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static uint64_t rng_state = 0x1234567;
static uint64_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* The key of number i: spread (i times an odd constant), or crowded: homes
 * at the map's first slot and its last ones (the last three of 256 slots,
 * the last of fewer), so that runs wrap around the end of the table. */
static uint64_t ring_key(int i, int crowded) {
  if (!crowded) return (uint64_t)i * 0x9E3779B97F4A7C15ULL; /* key 0 hashes to 0: a valid key */
  uint64_t c = 0x9E3779B97F4A7C15ULL, inv = c; /* the map's multiplier and its inverse mod 2^64 */
  for (int k = 0; k < 6; k++) inv *= 2 - c * inv;
  uint64_t low = (uint64_t)(i / 4) << 20;
  static const uint64_t tops[4] = {0, 0xFF, 0xFE, 0xFD}; /* homes 0, then the last slots (of 256 and more) */
  return ((tops[i % 4] << 56) | low) * inv;
}

static int check_ring(size_t max, int keys, int steps, int crowded) {
  ti_seen_ring r;
  ti_seen_ring_init(&r, max);
  long *number = malloc(sizeof(long) * keys); /* its number among the remembered, or -1 */
  for (int i = 0; i < keys; i++) number[i] = -1;
  long count = 0;
  int sweeps = 0;
  size_t bound = 2 * max > 64 ? 2 * max : 64;
  for (int step = 0; step < steps; step++) {
    int i = (int)(rng() % (uint64_t)keys);
    uint64_t h = ring_key(i, crowded);
    int expect = number[i] >= 0 && number[i] >= count - (long)max;
    size_t before = r.map.count;
    int got = ti_seen_ring_take_or_remember(&r, h);
    if (expect) number[i] = -1;
    else number[i] = count++;
    size_t live = 0;
    for (int j = 0; j < keys; j++) live += number[j] >= 0 && number[j] >= count - (long)max;
    /* the map: the live keys and stale ones, at most max(2 max, 64); a
     * remembering that did not grow it swept it, leaving the live keys alone */
    int swept = !got && r.map.count < before; /* (replacing a stale entry keeps the count) */
    sweeps += swept;
    if (got != expect || live != r.live || r.map.count < r.live || r.map.count > bound ||
        (swept && r.map.count != r.live)) {
      printf("seen ring (max %zu): step %d key %d: got %d live %zu map %zu, expected %d live %zu\n", max, step, i, got,
             r.live, r.map.count, expect, live);
      return 0;
    }
    if (step == steps / 2) { /* a clear starts over */
      ti_seen_ring_clear(&r);
      for (int j = 0; j < keys; j++) number[j] = -1;
      count = 0;
    }
  }
  ti_seen_ring_clear(&r);
  free(number);
  if (sweeps == 0 && (size_t)keys > bound) { /* more keys than the bound: it must have swept */
    printf("seen ring (max %zu): never swept\n", max);
    return 0;
  }
  return 1;
}

int main(void) {
  enum { BIG = 1 << 17 };
  unsigned char *data = malloc(BIG + 8);
  for (size_t i = 0; i < BIG + 8; i++) data[i] = (unsigned char)rng();
  const uint64_t seeds[] = {0, 1, 0x123456789ABCDEFULL, ~0ULL};
  printf("isa %d\n", ti_cpu_level());
  for (size_t n = 0; n <= BIG; n = n < 4200 ? n + 1 : n * 2 + 3)
    for (int s = 0; s < 4; s++)
      for (int off = 0; off < 8; off += 5) {
        uint64_t q = ti_hash64_quick(data + off, n, seeds[s]);
        if (q != ti_hash64_quick_reference(data + off, n, seeds[s])) {
          printf("ti_hash64_quick differs from its reference: length %zu seed %d offset %d\n", n, s, off);
          return 1;
        }
        if (ti_hash64(data + off, n, seeds[s]) != ti_hash64_reference(data + off, n, seeds[s])) {
          printf("ti_hash64 differs from its reference: length %zu seed %d offset %d\n", n, s, off);
          return 1;
        }
        if (n % 97 == 0 || n > 4200) printf("%zu %d %d %016llx\n", n, s, off, (unsigned long long)q);
      }
  enum { N = 3136 };
  uint64_t *flips = malloc(sizeof(uint64_t) * (8 * N + 1));
  for (int b = 0; b < 8 * N; b++) {
    data[b / 8] ^= (unsigned char)(1u << (b % 8));
    flips[b] = ti_hash64_quick(data, N, 7);
    data[b / 8] ^= (unsigned char)(1u << (b % 8));
  }
  flips[8 * N] = ti_hash64_quick(data, N, 7);
  qsort(flips, 8 * N + 1, sizeof(uint64_t), cmp_u64);
  for (int b = 0; b < 8 * N; b++)
    if (flips[b] == flips[b + 1]) {
      printf("two single-bit changes of a %d-byte input share a quick hash\n", N);
      return 1;
    }
  if (!check_ring(1, 4, 2000, 0) || !check_ring(3, 10, 4000, 0) || !check_ring(5, 1000, 4000, 0) ||
      !check_ring(8, 40, 20000, 0) || !check_ring(64, 300, 40000, 0) || !check_ring(64, 300, 40000, 1) ||
      !check_ring(8, 100, 20000, 1))
    return 1;
  free(flips);
  free(data);
  printf("ok\n");
  return 0;
}
