/* A fast 64-bit checksum for the prepack cache (docs/caching.md): a
 * Fletcher-style pair of sums (s1 += word; s2 += s1, modulo 2^64) over
 * 64-bit words in eight independent lanes, which compile to vector
 * additions at the x86-64 baseline (SSE2), then mixed into one value. Any
 * one changed word changes s1, and a moved word changes s2. Not
 * cryptographic: it detects corrupt or truncated cache files, it does not
 * authenticate them. */
#include <string.h>
#include "tinyinfer_shims.h"

#define TI_LANES 8

static uint64_t mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDULL;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ULL;
  h ^= h >> 33;
  return h;
}

uint64_t ti_shim_hash64(const void *data, size_t size, uint64_t seed) {
  const unsigned char *p = (const unsigned char *)data;
  uint64_t s1[TI_LANES], s2[TI_LANES];
  for (int j = 0; j < TI_LANES; j++) { s1[j] = seed + (uint64_t)j; s2[j] = 0; }
  size_t blocks = size / (8 * TI_LANES);
  for (size_t i = 0; i < blocks; i++) {
    uint64_t w[TI_LANES];
    memcpy(w, p + i * 8 * TI_LANES, sizeof w);
    for (int j = 0; j < TI_LANES; j++) {
      s1[j] += w[j];
      s2[j] += s1[j];
    }
  }
  size_t done = blocks * 8 * TI_LANES;
  unsigned char tail[8 * TI_LANES] = {0};
  memcpy(tail, p + done, size - done);
  uint64_t h = mix64(seed ^ (uint64_t)size);
  for (int j = 0; j < TI_LANES; j++) {
    uint64_t w;
    memcpy(&w, tail + 8 * j, 8);
    h = mix64(h ^ (s1[j] + w)) + mix64(s2[j] + s1[j] + w);
  }
  return mix64(h);
}
