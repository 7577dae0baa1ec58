/* The prepack cache's files, found by the library itself (issue 18:
 * tinf_model_load_file_cached): SHA-256, the cache's keys, its folder, and
 * the plan of one load (the .ref of a model file's identity -> the image's
 * path and key). The same definitions as the Python package's
 * tinyinfer.cache / tinyinfer.prepack_cache, which write these files
 * (docs/caching.md, "Where the files are"); tests check both against each
 * other and SHA-256 against hashlib. libc only. */
#ifndef TINYINFER_CACHEFILE_H
#define TINYINFER_CACHEFILE_H
#include <stddef.h>
#include <stdint.h>

/* SHA-256 (FIPS 180-4), incremental. */
typedef struct ti_sha256 {
  uint32_t h[8];
  uint64_t length; /* bytes absorbed */
  uint8_t block[64];
  size_t used; /* bytes of block filled */
} ti_sha256;
void ti_sha256_init(ti_sha256 *c);
void ti_sha256_update(ti_sha256 *c, const void *data, size_t size);
void ti_sha256_final(ti_sha256 *c, uint8_t out[32]);

/* A cache key: SHA-256 over the parts, each preceded by its length as 8
 * little-endian bytes (tinyinfer.cache.key). parts[i] may be NULL when sizes[i] is 0. */
void ti_cache_key(const void *const *parts, const size_t *sizes, int count, uint8_t out[32]);

/* The cache folder (tinyinfer.cache.cache_dir): $TINYINFER_CACHE_DIR made
 * absolute (a leading ~ or ~user expanded), else $XDG_CACHE_HOME/tinyinfer,
 * else ~/.cache/tinyinfer. Writes it NUL-terminated into dst; returns its
 * length, or -1 when it does not fit in cap bytes or cannot be found (no
 * working folder for a relative path). */
int ti_cache_folder(char *dst, size_t cap);
/* 1 when $TINYINFER_PREPACK_CACHE turns the prepack cache off (0, false,
 * no or off, any case, spaces around ignored), else 0. */
int ti_prepack_cache_env_off(void);

/* One cached load's plan (tinyinfer.prepack_cache.Plan): the model file's
 * identity (device, inode, size, modification and change times in ns) ->
 * <folder>/<sha256 key of "prepack-ref" and the identity>.ref, which holds
 * the file's content hash (64 lowercase hex digits) -> the image key =
 * ti_cache_key("prepack", content, flags in decimal, version, isa, layout in
 * decimal) and its file <folder>/<key hex>.pack. Returns 0 with image_path
 * (NUL-terminated, cap bytes) and key filled; 1 when there is no valid .ref
 * for this identity yet (the caller hashes the file and writes it); -1 when
 * the model file is not a regular file or a path does not fit. */
int ti_prepack_plan(const char *model_path, const char *folder, uint32_t flags, const char *version,
                    const char *isa, int32_t layout, char *image_path, size_t cap, uint8_t key[32]);

/* The write side, for tinf_model_save_prepack_cached. ti_prepack_save_plan:
 * as ti_prepack_plan, but a missing .ref is made (the file's bytes hashed,
 * the .ref written atomically). *file_size: the size of the file the model
 * was loaded from; another size returns -2 with the file's size there,
 * before anything is written. Returns 0, -1 when the model file is not a
 * regular file, -2, or an errno value (ENAMETOOLONG: a path does not fit;
 * a read or write error's). */
int ti_prepack_save_plan(const char *model_path, const char *folder, uint32_t flags, const char *version,
                         const char *isa, int32_t layout, char *image_path, size_t cap, uint8_t key[32],
                         long long *file_size);
/* Writes size bytes to path atomically (tinyinfer._atomic.write_atomic): a
 * temporary file ".tmp-XXXXXX" in path's folder (made with its missing
 * parents, mode 0700), mode 0600, fsync, rename over path, fsync of the folder.
 * Returns 0 or an errno value; on failure no temporary file is left. */
int ti_cache_write_atomic(const char *path, const void *data, size_t size);
/* The cache's size bound: $TINYINFER_CACHE_MAX_BYTES (a non-negative
 * integer), else 1 GiB (tinyinfer.cache.max_bytes). */
unsigned long long ti_cache_max_bytes(void);
/* tinyinfer.cache._trim: removes the least recently used entries of every
 * kind (.bin, .pack, .ref; oldest modification time first) until their
 * total fits ti_cache_max_bytes(), never `keep` (a path, may be NULL), and
 * temporary files older than an hour (a crashed writer's). */
void ti_cache_trim(const char *folder, const char *keep);

/* Sets a file's access and modification times to now (the cache's "recently
 * used"); errors are ignored. */
void ti_touch_file(const char *path);

#endif
