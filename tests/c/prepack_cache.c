/* The prepack cache from C alone (python/tests/test_prepack_cache.py runs
 * it): tinf_model_load_file_cached, then tinf_model_save_prepack_cached
 * writes the .ref and the image, and the next cached load maps them (state
 * TINF_PREPACK_FROM_IMAGE) and computes the same outputs bit for bit; a save
 * after a hit writes nothing; four threads saving at once leave one valid
 * image; the argument checks; a folder that cannot be written gives
 * TINF_ERR_IO with the reason and leaves no temporary file.
 *
 *   prepack_cache MODEL.tinf OTHER.tinf FOLDER READONLY_FOLDER
 *
 * OTHER.tinf: another model (another size). Prints the first load's outputs
 * (one value a line), then "ok". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tinyinfer.h"

static int failures = 0;
#define CHECK(cond, ...)                                      \
  do {                                                        \
    if (!(cond)) {                                            \
      fprintf(stderr, "FAIL line %d: %s: ", __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                           \
      fprintf(stderr, " (last error: %s)\n", tinf_last_error()); \
      failures++;                                             \
    }                                                         \
  } while (0)

static const char *model_path, *folder;

/* Runs the model's one float input (filled with a pattern) into out; the number of output values. */
static size_t run(tinf_model *m, float *out, size_t capacity) {
  tinf_session *s = NULL;
  CHECK(tinf_session_create(m, NULL, &s) == TINF_OK, "session");
  if (!s) return 0;
  tinf_tensor_info in, o;
  CHECK(tinf_model_input_info(m, 0, &in) == TINF_OK && tinf_model_output_info(m, 0, &o) == TINF_OK, "infos");
  size_t n = in.nbytes / sizeof(float), k = o.nbytes / sizeof(float);
  float *x = malloc(in.nbytes);
  for (size_t i = 0; i < n; i++) x[i] = (float)((int)(i % 13) - 6) * 0.125f;
  CHECK(tinf_session_set_input(s, 0, x, in.nbytes) == TINF_OK, "input");
  CHECK(tinf_session_run(s) == TINF_OK, "run");
  if (k > capacity) {
    CHECK(k <= capacity, "output of %zu values", k);
    k = 0;
  } else {
    CHECK(tinf_session_get_output(s, 0, out, o.nbytes) == TINF_OK, "output");
  }
  free(x);
  tinf_session_free(s);
  return k;
}

static int32_t state_of(tinf_model *m) {
  int32_t state = -1;
  tinf_model_prepack_info(m, &state, NULL, NULL);
  return state;
}

static void *save_in_thread(void *arg) {
  tinf_model *m = arg;
  int32_t written = -1;
  CHECK(tinf_model_save_prepack_cached(m, model_path, 0, folder, &written) == TINF_OK, "threaded save");
  CHECK(written == 1, "threaded save wrote %d", (int)written);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: prepack_cache MODEL.tinf OTHER.tinf FOLDER READONLY_FOLDER\n");
    return 2;
  }
  model_path = argv[1];
  folder = argv[3];
  const char *other = argv[2], *readonly = argv[4];
  float first[4096], again[4096];

  /* A miss: no .ref yet; the load packs. */
  tinf_model *m = NULL;
  CHECK(tinf_model_load_file_cached(model_path, 0, folder, &m) == TINF_OK, "first load");
  if (!m) return 1;
  CHECK(state_of(m) != TINF_PREPACK_FROM_IMAGE, "the first load mapped an image");
  size_t k = run(m, first, 4096);

  /* Argument checks. */
  int32_t written = -1;
  CHECK(tinf_model_save_prepack_cached(NULL, model_path, 0, folder, &written) == TINF_ERR_INVALID_ARGUMENT, "NULL model");
  CHECK(written == 0, "written %d after a refusal", (int)written);
  CHECK(tinf_model_save_prepack_cached(m, NULL, 0, folder, NULL) == TINF_ERR_INVALID_ARGUMENT, "NULL path");
  CHECK(tinf_model_save_prepack_cached(m, model_path, 0x80000000u, folder, NULL) == TINF_ERR_INVALID_ARGUMENT,
        "unknown flags");
  CHECK(tinf_model_save_prepack_cached(m, ".", 0, folder, NULL) == TINF_ERR_INVALID_ARGUMENT, "a folder as the file");
  CHECK(tinf_model_save_prepack_cached(m, other, 0, folder, NULL) == TINF_ERR_INVALID_ARGUMENT, "another model's file");
  CHECK(strstr(tinf_last_error(), "not the file this model was loaded from") != NULL, "message: %s", tinf_last_error());
  CHECK(tinf_model_save_prepack_cached(m, "/nonexistent/m.tinf", 0, folder, NULL) == TINF_ERR_IO, "a missing file");
  /* The cache off: nothing written, not an error. */
  written = -1;
  CHECK(tinf_model_save_prepack_cached(m, model_path, 0, "", &written) == TINF_OK && written == 0, "folder \"\"");
  /* A folder that cannot be written. */
  CHECK(tinf_model_save_prepack_cached(m, model_path, 0, readonly, &written) == TINF_ERR_IO, "read-only folder");
  CHECK(strstr(tinf_last_error(), "cannot") != NULL, "message: %s", tinf_last_error());

  /* The save, then a hit with the same outputs. */
  written = -1;
  CHECK(tinf_model_save_prepack_cached(m, model_path, 0, folder, &written) == TINF_OK, "save");
  CHECK(written == 1, "written %d", (int)written);
  tinf_model_free(m);
  m = NULL;
  CHECK(tinf_model_load_file_cached(model_path, 0, folder, &m) == TINF_OK, "second load");
  if (!m) return 1;
  CHECK(state_of(m) == TINF_PREPACK_FROM_IMAGE, "the second load did not map the image (state %d)", (int)state_of(m));
  CHECK(run(m, again, 4096) == k && memcmp(first, again, k * sizeof *first) == 0, "outputs differ after the hit");
  written = -1;
  CHECK(tinf_model_save_prepack_cached(m, model_path, 0, folder, &written) == TINF_OK && written == 0,
        "a save after a hit wrote %d", (int)written);
  tinf_model_free(m);

  /* Four threads saving at once (each its own load that packed): one valid image. */
  tinf_model *ms[4] = {NULL, NULL, NULL, NULL};
  pthread_t t[4];
  for (int i = 0; i < 4; i++) {
    CHECK(tinf_model_load_file_flags(model_path, 0, &ms[i]) == TINF_OK, "load %d", i);
  }
  for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, save_in_thread, ms[i]);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  for (int i = 0; i < 4; i++) tinf_model_free(ms[i]);
  m = NULL;
  CHECK(tinf_model_load_file_cached(model_path, 0, folder, &m) == TINF_OK, "load after the threads");
  if (m) {
    CHECK(state_of(m) == TINF_PREPACK_FROM_IMAGE, "no hit after the threads (state %d)", (int)state_of(m));
    CHECK(run(m, again, 4096) == k && memcmp(first, again, k * sizeof *first) == 0, "outputs differ");
    tinf_model_free(m);
  }

  for (size_t i = 0; i < k; i++) printf("%.9g\n", first[i]);
  if (failures) return 1;
  printf("ok\n");
  return 0;
}
