/* The Batcher's C-thread figure (bench/batcher.py builds and runs this):
 * N pthreads each sending one-row requests in a loop for S seconds, either
 * each on its own batch-1 session (tinf_session_set_input / run /
 * get_output: the unbatched baseline) or all through one tinf_batcher
 * (tinf_batcher_run). No interpreter lock is involved: this is what the
 * batcher itself gains or costs.
 *
 *   batcher_c MODEL.tinf CALLERS SECONDS MAX_BATCH MAX_DELAY_US WORKERS THREADS
 *
 * Prints two lines, "unbatched N REQ_PER_S P50_MS P99_MS CPU_US" and
 * "batcher N REQ_PER_S P50_MS P99_MS CPU_US ROWS_PER_BATCH" (CPU_US: the
 * process's CPU time, user and system, per request). The model's first
 * input and output are used (one row of each); other inputs stay zero. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "tinyinfer.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct {
  double *lat;
  size_t n, cap;
} lats;

static void add(lats *l, double v) {
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 4096;
    l->lat = realloc(l->lat, l->cap * sizeof(double));
    if (!l->lat) {
      fprintf(stderr, "out of memory\n");
      exit(1);
    }
  }
  l->lat[l->n++] = v;
}

static tinf_model *model;
static tinf_batcher *batcher;
static size_t in_bytes, out_bytes;
static double stop_at;
static pthread_barrier_t start;
static int failures;

typedef struct {
  int index;
  tinf_session *session; /* NULL: through the batcher */
  lats l;
} caller_arg;

static void *caller(void *p) {
  caller_arg *a = p;
  unsigned char *x = calloc(1, in_bytes), *y = malloc(out_bytes);
  for (size_t i = 0; i < in_bytes / sizeof(float); i++) ((float *)x)[i] = (float)((i * 7 + (size_t)a->index) % 13) / 13.0f;
  const void *ins[1] = {x};
  void *outs[1] = {y};
  size_t in_n[1] = {in_bytes}, out_n[1] = {out_bytes};
  pthread_barrier_wait(&start);
  for (;;) {
    double t0 = now();
    if (t0 >= stop_at) break;
    tinf_status st;
    if (a->session) {
      st = tinf_session_set_input(a->session, 0, x, in_bytes);
      if (st == TINF_OK) st = tinf_session_run(a->session);
      if (st == TINF_OK) st = tinf_session_get_output(a->session, 0, y, out_bytes);
    } else {
      st = tinf_batcher_run(batcher, 1, ins, in_n, 1, outs, out_n, 1, -1);
    }
    if (st != TINF_OK) {
      __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
      break;
    }
    add(&a->l, now() - t0);
  }
  free(x);
  free(y);
  return NULL;
}

static double cpu_seconds(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec * 1e-6 + (double)u.ru_stime.tv_sec +
         (double)u.ru_stime.tv_usec * 1e-6;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Runs n callers for `seconds`; prints "NAME n req/s p50 p99 cpu_us" (no newline). */
static void arm(const char *name, int n, double seconds, int batched) {
  caller_arg *args = calloc((size_t)n, sizeof(caller_arg));
  pthread_t *th = calloc((size_t)n, sizeof(pthread_t));
  tinf_options *o = NULL;
  tinf_options_create(&o);
  tinf_options_set_threads(o, 1);
  for (int i = 0; i < n; i++) {
    args[i].index = i;
    if (!batched && tinf_session_create(model, o, &args[i].session) != TINF_OK) {
      fprintf(stderr, "session: %s\n", tinf_last_error());
      exit(1);
    }
  }
  tinf_options_free(o);
  pthread_barrier_init(&start, NULL, (unsigned)n + 1);
  for (int i = 0; i < n; i++) pthread_create(&th[i], NULL, caller, &args[i]);
  stop_at = now() + seconds;
  double t0 = now(), c0 = cpu_seconds();
  pthread_barrier_wait(&start);
  for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
  double wall = now() - t0, cpu = cpu_seconds() - c0;
  pthread_barrier_destroy(&start);
  size_t total = 0;
  for (int i = 0; i < n; i++) total += args[i].l.n;
  double *all = malloc((total ? total : 1) * sizeof(double));
  size_t k = 0;
  for (int i = 0; i < n; i++) {
    memcpy(all + k, args[i].l.lat, args[i].l.n * sizeof(double));
    k += args[i].l.n;
    free(args[i].l.lat);
    tinf_session_free(args[i].session);
  }
  qsort(all, total, sizeof(double), cmp);
  double p50 = total ? all[total / 2] : 0, p99 = total ? all[(size_t)((double)(total - 1) * 0.99)] : 0;
  printf("%s %d %.0f %.4f %.4f %.2f", name, n, (double)total / wall, p50 * 1e3, p99 * 1e3,
         total ? cpu * 1e6 / (double)total : 0.0);
  free(all);
  free(args);
  free(th);
}

int main(int argc, char **argv) {
  if (argc != 8) {
    fprintf(stderr, "usage: %s MODEL.tinf CALLERS SECONDS MAX_BATCH MAX_DELAY_US WORKERS THREADS\n", argv[0]);
    return 2;
  }
  int n = atoi(argv[2]), max_batch = atoi(argv[4]), workers = atoi(argv[6]), threads = atoi(argv[7]);
  double seconds = atof(argv[3]);
  long long delay_us = atoll(argv[5]);
  if (tinf_model_load_file(argv[1], &model) != TINF_OK) {
    fprintf(stderr, "cannot load %s: %s\n", argv[1], tinf_last_error());
    return 1;
  }
  tinf_tensor_info ii, oi;
  tinf_model_input_info(model, 0, &ii);
  tinf_model_output_info(model, 0, &oi);
  in_bytes = ii.nbytes;
  out_bytes = oi.nbytes;

  arm("unbatched", n, seconds, 0);
  printf("\n");
  if (tinf_batcher_create(model, max_batch, delay_us, workers, threads, &batcher) != TINF_OK) {
    fprintf(stderr, "batcher: %s\n", tinf_last_error());
    return 1;
  }
  tinf_batcher_counters c0, c1;
  tinf_batcher_stats(batcher, &c0);
  arm("batcher", n, seconds, 1);
  tinf_batcher_stats(batcher, &c1);
  uint64_t nb = c1.batches - c0.batches;
  printf(" %.2f\n", nb ? (double)(c1.rows - c0.rows) / (double)nb : 0.0);
  tinf_batcher_close(batcher, 0);
  tinf_batcher_free(batcher);
  tinf_model_free(model);
  if (failures) {
    fprintf(stderr, "%d requests failed: %s\n", failures, tinf_last_error());
    return 1;
  }
  return 0;
}
