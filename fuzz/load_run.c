/* libFuzzer harness: load + prepare + run of any bytes as a .tinf model,
 * through the C API of a sanitized build of the library (fuzz/build.sh,
 * scripts/fuzz.sh). A crash, a sanitizer report, a leak or a run over the
 * time limit (libFuzzer -timeout) is a finding; a refusal (any status) is
 * the expected outcome for a bad file.
 *
 * The session's work limit is lowered (TINF_FUZZ_MAX_WORK, default 2^24
 * multiply-adds or element visits) so that every accepted model runs in
 * milliseconds: the work limit itself is what keeps a hostile file from
 * taking minutes, and its figure is checked against the limit here. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tinyinfer.h"

static uint64_t max_work = (uint64_t)1 << 24;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  const char *w = getenv("TINF_FUZZ_MAX_WORK");
  if (w && *w) max_work = strtoull(w, NULL, 10);
  return 0;
}

static void run_model(tinf_model *model) {
  tinf_options *opts = NULL;
  if (tinf_options_create(&opts) != TINF_OK) return;
  tinf_options_set_threads(opts, 1);
  tinf_options_set_max_work(opts, max_work);
  tinf_session *s = NULL;
  if (tinf_session_create(model, opts, &s) == TINF_OK) {
    uint64_t work = 0;
    if (tinf_session_work(s, &work) != TINF_OK || work > max_work) abort(); /* the limit must hold */
    int32_t n_in = 0, n_out = 0;
    tinf_model_input_count(model, &n_in);
    /* inputs: a byte pattern (so data-dependent paths such as Gather indices run too) */
    for (int32_t i = 0; i < n_in; i++) {
      void *p = NULL;
      size_t nb = 0;
      if (tinf_session_input_data(s, i, &p, &nb) == TINF_OK && p) memset(p, 0x3c + i, nb);
    }
    if (tinf_session_run(s) == TINF_OK) {
      tinf_model_output_count(model, &n_out);
      for (int32_t i = 0; i < n_out; i++) {
        const void *p = NULL;
        size_t nb = 0;
        if (tinf_session_output_data(s, i, &p, &nb) == TINF_OK && p && nb) {
          volatile uint8_t sink = ((const uint8_t *)p)[nb - 1]; /* the whole output is addressable */
          (void)sink;
        }
      }
    }
    tinf_session_free(s);
  }
  tinf_options_free(opts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tinf_model *m = NULL;
  /* both load paths: flags 0 and without the graph passes */
  for (uint32_t flags = 0; flags <= TINF_LOAD_NO_GRAPH_PASSES; flags++) {
    if (tinf_model_load_buffer_flags(data, size, flags, &m) == TINF_OK) {
      int32_t ops = 0, tensors = 0;
      size_t weights = 0;
      tinf_model_stats(m, &ops, &tensors, &weights);
      run_model(m);
      tinf_model_free(m);
      m = NULL;
    }
  }
  return 0;
}
