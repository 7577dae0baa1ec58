/* One and two threads, two builds of the library side by side in one
 * process (dlopen), rounds alternating between the four configurations, so
 * a machine whose speed drifts from minute to minute (a shared VM) slows all
 * four alike. Prints, per build, the lowest of the rounds' median run times
 * (us) at 1 and 2 threads and their ratio.
 *
 *   cc -O2 bench/threads_libs.c -ldl -o /tmp/threads_libs
 *   /tmp/threads_libs MODEL.tinf RUNS ROUNDS LIB_A.so LIB_B.so
 *
 * (stop 41: 150 runs, 8-10 rounds; LIB_A a copy of the start commit's
 * library, LIB_B this tree's.) */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int (*load_f)(const char *, void **);
typedef int (*options_f)(void **);
typedef int (*threads_f)(void *, int);
typedef int (*session_f)(void *, void *, void **);
typedef int (*run_f)(void *);

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec * 1e-3;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s MODEL.tinf RUNS ROUNDS LIB_A.so LIB_B.so\n", argv[0]);
    return 2;
  }
  const char *model = argv[1];
  int runs = atoi(argv[2]), rounds = atoi(argv[3]);
  if (runs < 1 || rounds < 1) return 2;
  void *sessions[2][2];
  run_f run[2];
  for (int l = 0; l < 2; l++) {
    void *h = dlopen(argv[4 + l], RTLD_NOW | RTLD_LOCAL);
    if (!h) { fprintf(stderr, "%s\n", dlerror()); return 1; }
    load_f load = (load_f)dlsym(h, "tinf_model_load_file");
    options_f options = (options_f)dlsym(h, "tinf_options_create");
    threads_f threads = (threads_f)dlsym(h, "tinf_options_set_threads");
    session_f session = (session_f)dlsym(h, "tinf_session_create");
    run[l] = (run_f)dlsym(h, "tinf_session_run");
    if (!load || !options || !threads || !session || !run[l]) { fprintf(stderr, "missing symbols\n"); return 1; }
    void *m;
    if (load(model, &m)) { fprintf(stderr, "cannot load %s\n", model); return 1; }
    for (int t = 0; t < 2; t++) {
      void *o;
      if (options(&o) || threads(o, t + 1) || session(m, o, &sessions[l][t])) return 1;
    }
  }
  double *medians[2][2];
  for (int l = 0; l < 2; l++)
    for (int t = 0; t < 2; t++) medians[l][t] = malloc(sizeof(double) * rounds);
  double *v = malloc(sizeof(double) * runs);
  for (int r = 0; r < rounds; r++)
    for (int l = 0; l < 2; l++)
      for (int t = 0; t < 2; t++) {
        for (int i = 0; i < 10; i++) run[l](sessions[l][t]);
        for (int i = 0; i < runs; i++) {
          double a = now_us();
          if (run[l](sessions[l][t])) return 1;
          v[i] = now_us() - a;
        }
        qsort(v, runs, sizeof(double), by_value);
        medians[l][t][r] = v[runs / 2];
      }
  printf("%s", model);
  for (int l = 0; l < 2; l++) {
    double best[2];
    for (int t = 0; t < 2; t++) {
      qsort(medians[l][t], rounds, sizeof(double), by_value);
      best[t] = medians[l][t][0];
    }
    printf(" | %s: 1 thread %.1f, 2 threads %.1f, x%.2f", l ? "B" : "A", best[0], best[1], best[0] / best[1]);
  }
  printf("\n");
  return 0;
}
