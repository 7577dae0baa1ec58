/* A fast non-cryptographic 64-bit hash of a byte range (issue 18: the keys
 * of tinyinfer.ResultCache; tinf_hash64 in the C API). Not for security:
 * whoever uses it for equality compares the bytes on a match. The value is
 * the same on every CPU level and architecture (little-endian loads). */
#ifndef TINYINFER_HASH_H
#define TINYINFER_HASH_H
#include <stddef.h>
#include <stdint.h>

/* The hash of `size` bytes at `data` (data may be NULL when size is 0) under `seed`. */
uint64_t ti_hash64(const void *data, size_t size, uint64_t seed);
/* The same value computed by the definition's plain scalar code, whatever
 * the CPU level (slower; for tests of the vector variants ti_hash64 uses). */
uint64_t ti_hash64_reference(const void *data, size_t size, uint64_t seed);
/* The same absorption with a cheaper finish (the lanes times constants,
 * summed, one mix; about 30 cycles instead of about 120): for keys that only
 * live in memory (tinf_result_cache), never for values stored on disk; its
 * values may change between versions. Equal at every CPU level to
 * ti_hash64_quick_reference. */
uint64_t ti_hash64_quick(const void *data, size_t size, uint64_t seed);
uint64_t ti_hash64_quick_reference(const void *data, size_t size, uint64_t seed);
/* A checksum for large byte ranges that two threads can share (the prepack
 * image's, issue 18): chunks of 256 KB, each ti_hash64(chunk, length,
 * chunk index), folded in order with the size and seed. Stored on disk:
 * the same value on every CPU level and architecture. */
uint64_t ti_hash64_chunked(const void *data, size_t size, uint64_t seed);
/* ti_hash64_chunked with a thread of its own (a load parses and optimizes
 * the graph meanwhile). The bytes must stay readable and unchanged until
 * ti_hash64_finish. Returns NULL when no thread could be started (the
 * caller computes ti_hash64_chunked itself). */
typedef struct ti_hash_job ti_hash_job;
ti_hash_job *ti_hash64_start(const void *data, size_t size, uint64_t seed);
/* The value of ti_hash64_chunked: the caller hashes the chunks the thread
 * has not claimed yet (so it never waits for a thread that has not
 * started), then waits for those the thread is hashing. Lets go of the job:
 * every started job is finished exactly once, after which the thread never
 * reads the bytes. */
uint64_t ti_hash64_finish(ti_hash_job *job);
/* 1 when the `size` bytes at a and b are equal (memcmp), else 0. */
int ti_bytes_equal(const void *a, const void *b, size_t size);

/* A table from 64-bit keys (hashes) to nonzero 64-bit values, open
 * addressing: no allocation per entry, no hashing of the key again (the
 * tables of tinf_result_cache, ResultCache.swift). Not thread-safe (callers
 * lock). Zero-initialize (ti_u64_map_init) before use; ti_u64_map_free
 * releases its memory and leaves it empty. A value of 0 means absent. */
typedef struct ti_u64_slot {
  uint64_t key;
  uint64_t val; /* 0: the slot is empty */
} ti_u64_slot;
typedef struct ti_u64_map {
  ti_u64_slot *slots;
  size_t mask;    /* capacity - 1 (capacity 0 before the first put) */
  size_t count;
  int shift;      /* 64 - log2(capacity) */
} ti_u64_map;
void ti_u64_map_init(ti_u64_map *m);
void ti_u64_map_free(ti_u64_map *m);
/* The value of key, or 0 when absent. */
uint64_t ti_u64_map_get(const ti_u64_map *m, uint64_t key);
/* Sets key -> val (val != 0); *old (if not NULL) gets the value it replaced,
 * or 0. Returns 1, or 0 when val is 0 or the table cannot grow (out of
 * memory; the table is unchanged). */
int ti_u64_map_put(ti_u64_map *m, uint64_t key, uint64_t val, uint64_t *old);
/* Removes key; returns its value, or 0 when absent. */
uint64_t ti_u64_map_remove(ti_u64_map *m, uint64_t key);

/* The keys seen once and not yet again among the `max` most recently
 * remembered (the admission "repeat" of tinf_result_cache). A map from each
 * hash to 1 + its number in the order remembered; an entry whose number is
 * max or more behind is stale (as if absent) and swept out (in place) when
 * the map holds 2 max entries; per window slot (number % max) a flag for a
 * key that came again (so `live` counts exactly). Not thread-safe (callers
 * lock), except ti_seen_ring_prefetch. Init before use; clear frees the
 * memory and empties it. */
typedef struct ti_seen_ring {
  ti_u64_map map;
  unsigned char *taken; /* per slot: 1 when its key came again (or was never stored) */
  size_t capacity;      /* of taken, grown up to max */
  size_t max;
  uint64_t sequence;    /* the next number */
  size_t next;          /* its slot: sequence % max */
  size_t live;          /* keys remembered in the window and not come again */
} ti_seen_ring;
void ti_seen_ring_init(ti_seen_ring *r, size_t max);
void ti_seen_ring_clear(ti_seen_ring *r);
/* 1 when h was remembered in the window (it is forgotten now: this is its
 * repeat); else 0, and h is remembered (unless out of memory). */
int ti_seen_ring_take_or_remember(ti_seen_ring *r, uint64_t h);
/* Starts fetching the memory ti_seen_ring_take_or_remember(r, h) will read
 * (may be called without the lock that guards r). */
void ti_seen_ring_prefetch(const ti_seen_ring *r, uint64_t h);
#endif
