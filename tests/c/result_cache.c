/*
 * result_cache.c - the C result cache and model serialization (issue 18), in strict C99.
 *
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude tests/c/result_cache.c \
 *      -Lpython/tinyinfer/lib -ltinyinfer -Wl,-rpath,$PWD/python/tinyinfer/lib -o result_cache
 *   ./result_cache model.tinf
 *
 * For a model with one float32 input and one float32 output: two sessions
 * bound to one cache under one key; the second session's run of the first
 * one's input is a hit that gives the same bytes; the counts; the caller's
 * copy written over does not reach the cache; a cache of one entry evicts
 * the older; clear; the cache outlives its handle in the sessions bound to
 * it; tinf_model_serialize's bytes load and give the same outputs. Prints
 * the output values of the first run (one per line, %.9g) and "ok", or
 * "FAIL ..." and exits 1.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tinyinfer.h"

#define CHECK(cond)                                                                          \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      printf("FAIL line %d: %s (last error: \"%s\")\n", __LINE__, #cond, tinf_last_error()); \
      exit(1);                                                                               \
    }                                                                                        \
  } while (0)

static void run_with(tinf_session *s, const float *in, size_t in_bytes, float *out, size_t out_bytes) {
  CHECK(tinf_session_set_input(s, 0, in, in_bytes) == TINF_OK);
  CHECK(tinf_session_run(s) == TINF_OK);
  CHECK(tinf_session_get_output(s, 0, out, out_bytes) == TINF_OK);
}

int main(int argc, char **argv) {
  tinf_model *model = NULL;
  tinf_session *s1 = NULL, *s2 = NULL;
  tinf_result_cache *cache = NULL, *small = NULL;
  tinf_result_cache_counts c;
  tinf_tensor_info ii, oi;
  size_t n_in, n_out, i, dropped = 99, size = 0;
  float *x, *y, *y2, *y3;
  void *file;
  const char key[] = "model-a";

  if (argc != 2) {
    fprintf(stderr, "usage: %s model.tinf\n", argv[0]);
    return 2;
  }
  CHECK(tinf_model_load_file(argv[1], &model) == TINF_OK);
  CHECK(tinf_session_create(model, NULL, &s1) == TINF_OK);
  CHECK(tinf_session_create(model, NULL, &s2) == TINF_OK);
  CHECK(tinf_session_input_info(s1, 0, &ii) == TINF_OK && ii.dtype == TINF_DTYPE_FLOAT32);
  CHECK(tinf_session_output_info(s1, 0, &oi) == TINF_OK && oi.dtype == TINF_DTYPE_FLOAT32);
  n_in = ii.nbytes / 4;
  n_out = oi.nbytes / 4;
  x = malloc(ii.nbytes);
  y = malloc(oi.nbytes);
  y2 = malloc(oi.nbytes);
  y3 = malloc(oi.nbytes);
  CHECK(x && y && y2 && y3);
  for (i = 0; i < n_in; i++) x[i] = (float)((int)(i % 7) - 3) * 0.25f;

  CHECK(tinf_result_cache_create(1 << 20, TINF_RESULT_CACHE_ADMIT_ALWAYS, 16, 64, &cache) == TINF_OK);
  CHECK(tinf_session_set_result_cache(s1, cache, key, sizeof key) == TINF_OK);
  CHECK(tinf_session_set_result_cache(s2, cache, key, sizeof key) == TINF_OK);
  run_with(s1, x, ii.nbytes, y, oi.nbytes); /* a miss, stored */
  run_with(s2, x, ii.nbytes, y2, oi.nbytes); /* the other session: a hit */
  CHECK(memcmp(y, y2, oi.nbytes) == 0);
  CHECK(tinf_result_cache_stats(cache, &c) == TINF_OK);
  CHECK(c.hits == 1 && c.misses == 1 && c.entries == 1 && c.bytes == ii.nbytes + oi.nbytes);
  CHECK(c.max_bytes == (1u << 20) && c.evicted == 0 && c.collisions == 0);
  /* the caller's copy is the caller's */
  for (i = 0; i < n_out; i++) y2[i] = -1.0f;
  run_with(s2, x, ii.nbytes, y3, oi.nbytes);
  CHECK(memcmp(y, y3, oi.nbytes) == 0);
  /* another input: a miss */
  x[0] += 1.0f;
  run_with(s1, x, ii.nbytes, y3, oi.nbytes);
  CHECK(tinf_result_cache_stats(cache, &c) == TINF_OK && c.misses == 2 && c.entries == 2);
  x[0] -= 1.0f;

  /* a bound of one entry: the older is evicted */
  CHECK(tinf_result_cache_create(ii.nbytes + oi.nbytes, TINF_RESULT_CACHE_ADMIT_ALWAYS, 16, 64, &small) == TINF_OK);
  CHECK(tinf_session_set_result_cache(s1, small, key, sizeof key) == TINF_OK);
  run_with(s1, x, ii.nbytes, y3, oi.nbytes);
  x[1] += 1.0f;
  run_with(s1, x, ii.nbytes, y3, oi.nbytes);
  x[1] -= 1.0f;
  run_with(s1, x, ii.nbytes, y3, oi.nbytes); /* evicted: a miss again */
  CHECK(memcmp(y, y3, oi.nbytes) == 0);
  CHECK(tinf_result_cache_stats(small, &c) == TINF_OK && c.hits == 0 && c.misses == 3 && c.evicted == 2);
  CHECK(c.entries == 1);
  CHECK(tinf_result_cache_clear(small, &dropped) == TINF_OK && dropped == 1);
  CHECK(tinf_result_cache_stats(small, &c) == TINF_OK && c.entries == 0 && c.bytes == 0);
  tinf_result_cache_free(small); /* s1 still holds it */
  run_with(s1, x, ii.nbytes, y3, oi.nbytes);
  CHECK(memcmp(y, y3, oi.nbytes) == 0);
  CHECK(tinf_session_set_result_cache(s1, NULL, NULL, 0) == TINF_OK); /* unbound: frees it */

  /* NULL arguments */
  CHECK(tinf_result_cache_create(16, 7, 16, 64, &small) == TINF_ERR_INVALID_ARGUMENT);
  CHECK(tinf_result_cache_stats(NULL, &c) == TINF_ERR_INVALID_ARGUMENT);
  CHECK(tinf_result_cache_stats(cache, NULL) == TINF_ERR_INVALID_ARGUMENT);
  CHECK(tinf_result_cache_clear(NULL, NULL) == TINF_ERR_INVALID_ARGUMENT);
  CHECK(tinf_session_set_result_cache(NULL, cache, NULL, 0) == TINF_ERR_INVALID_ARGUMENT);
  tinf_result_cache_free(NULL);

  /* the model as bytes, loaded again: the same outputs */
  CHECK(tinf_model_serialize(model, NULL, 0, &size) == TINF_OK && size > 0);
  file = malloc(size);
  CHECK(file != NULL);
  CHECK(tinf_model_serialize(model, file, size - 1, &size) == TINF_ERR_INVALID_ARGUMENT);
  CHECK(tinf_model_serialize(model, file, size, &size) == TINF_OK);
  {
    tinf_model *again = NULL;
    tinf_session *s3 = NULL;
    CHECK(tinf_model_load_buffer(file, size, &again) == TINF_OK);
    CHECK(tinf_session_create(again, NULL, &s3) == TINF_OK);
    run_with(s3, x, ii.nbytes, y3, oi.nbytes);
    CHECK(memcmp(y, y3, oi.nbytes) == 0);
    tinf_session_free(s3);
    tinf_model_free(again);
  }

  for (i = 0; i < n_out; i++) printf("%.9g\n", y[i]);
  tinf_result_cache_free(cache); /* before the sessions: they hold it */
  tinf_session_free(s1);
  tinf_session_free(s2);
  tinf_model_free(model);
  free(file);
  free(x);
  free(y);
  free(y2);
  free(y3);
  printf("ok\n");
  return 0;
}
