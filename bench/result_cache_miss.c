/* The result cache's cost per miss from C, without Python (issue 18;
 * BENCHMARKS.md, "Result cache"): one session of MODEL, its input changed
 * before every call (every call a miss), bound to a tinf_result_cache
 * (16 MB, admission "repeat", 16384 remembered keys, as tinyinfer.ResultCache's
 * defaults) or unbound, in ROUNDS short alternating rounds of N calls.
 * Prints the minimum over rounds of each arm (on a shared machine the
 * minimum is the round nobody preempted) and the medians.
 *
 *   cc -O2 -Iinclude bench/result_cache_miss.c -Lpython/tinyinfer/lib -ltinyinfer \
 *      -Wl,-rpath,$PWD/python/tinyinfer/lib -o /tmp/rc_miss
 *   /tmp/rc_miss bench/models/mlp.int8-dynamic.tinf [N=3000] [ROUNDS=61]
 */
#include "tinyinfer.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL.tinf [N] [ROUNDS]\n", argv[0]);
    return 2;
  }
  int n = argc > 2 ? atoi(argv[2]) : 3000, rounds = argc > 3 ? atoi(argv[3]) : 61;
  if (n < 1 || rounds < 1 || rounds > 1000) return 2;
  tinf_model *m;
  tinf_session *s;
  tinf_result_cache *c;
  void *in;
  size_t nb;
  if (tinf_model_load_file(argv[1], &m) || tinf_session_create(m, NULL, &s) ||
      tinf_session_input_data(s, 0, &in, &nb) || nb < 4 ||
      tinf_result_cache_create(16 << 20, TINF_RESULT_CACHE_ADMIT_REPEAT, 16384, 64, &c)) {
    fprintf(stderr, "%s: %s\n", argv[1], tinf_last_error());
    return 1;
  }
  float *x = in; /* the bench models' first input is float32 */
  for (size_t i = 0; i < nb / 4; i++) x[i] = (float)(i % 7) * 0.1f;
  double *off = malloc(sizeof(double) * rounds), *on = malloc(sizeof(double) * rounds);
  for (int r = 0; r < rounds; r++) {
    for (int k = 0; k < 2; k++) {
      int bound = k ^ (r & 1);
      tinf_session_set_result_cache(s, bound ? c : NULL, "bench", 5);
      double t0 = now();
      for (int i = 0; i < n; i++) {
        x[0] += 1.0f;
        tinf_session_run(s);
      }
      (bound ? on : off)[r] = (now() - t0) / n;
    }
  }
  qsort(off, rounds, sizeof(double), cmp);
  qsort(on, rounds, sizeof(double), cmp);
  printf("%s: min run %.1f ns, min bound %.1f ns, cost %.1f ns (%.2f%%); medians %.1f / %.1f ns\n", argv[1],
         off[0] * 1e9, on[0] * 1e9, (on[0] - off[0]) * 1e9, (on[0] / off[0] - 1) * 100, off[rounds / 2] * 1e9,
         on[rounds / 2] * 1e9);
  tinf_session_set_result_cache(s, NULL, NULL, 0);
  tinf_result_cache_free(c);
  tinf_session_free(s);
  tinf_model_free(m);
  free(off);
  free(on);
  return 0;
}
