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
/* 1 when the `size` bytes at a and b are equal (memcmp), else 0. */
int ti_bytes_equal(const void *a, const void *b, size_t size);
#endif
