/* The session thread pool (Sources/TinyInferShims/shims.c, ti_pool_*):
 * every item of every job runs exactly once, with that job's function and
 * context, and ti_pool_run returns only once all have finished; the caller
 * runs item 0. Jobs of 2 to 40 items back to back (workers still finishing
 * the previous job while the next is published), with pauses past the
 * workers' polling time so they sleep and are woken, on 2, 3 and 8 threads
 * (more threads than cores). Compiled with the pool's own source
 * (python/tests/test_pool_stress.py):
 *   cc -O2 -ISources/TinyInferShims/include tests/c/pool_stress.c \
 *      Sources/TinyInferShims/shims.c Sources/TinyInferShims/cpu.c -lpthread -lm
 * Exits 1 at the first item run twice, skipped or run for the wrong job
 * (a hang is a failure of the test's timeout). */
#include "tinyinfer_shims.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

enum { maxItems = 40 };
static atomic_int counts[maxItems];
static atomic_int wrong;
static int current;
static pthread_t caller;

struct job { int id, n; };

static void item(void *ctx, int i) {
  const struct job *j = ctx;
  if (j->id != current || i < 0 || i >= j->n) atomic_fetch_add(&wrong, 1);
  if (i == 0 && !pthread_equal(pthread_self(), caller)) atomic_fetch_add(&wrong, 1);
  atomic_fetch_add(&counts[i], 1);
  if ((i * 7 + j->id) % 13 == 0) {  /* some items take longer */
    volatile int s = 0;
    for (int k = 0; k < 2000; k++) s += k;
  }
}

static int run(int threads, long jobs) {
  ti_pool *p = ti_pool_create(threads);
  if (!p || ti_pool_threads(p) != threads) { printf("pool of %d threads not created\n", threads); return 1; }
  caller = pthread_self();
  unsigned seed = 12345u + (unsigned)threads;
  for (long r = 0; r < jobs; r++) {
    seed = seed * 1103515245u + 12345u;
    struct job j = {(int)r, 2 + (int)((seed >> 8) % (maxItems - 1))};
    current = j.id;
    for (int i = 0; i < j.n; i++) atomic_store(&counts[i], 0);
    ti_pool_run(p, item, &j, j.n);
    for (int i = 0; i < j.n; i++) {
      if (atomic_load(&counts[i]) != 1) {
        printf("threads %d, job %ld of %d items: item %d ran %d times\n", threads, r, j.n, i, atomic_load(&counts[i]));
        return 1;
      }
    }
    if (atomic_load(&wrong)) { printf("threads %d, job %ld: an item ran for the wrong job or thread\n", threads, r); return 1; }
    if (r % 4000 == 3999) usleep(200);  /* past the workers' 50 us of polling: they sleep */
  }
  ti_pool_destroy(p);
  printf("threads %d: %ld jobs, every item once\n", threads, jobs);
  return 0;
}

int main(void) {
  long jobs = 400000;
  if (run(2, jobs) || run(3, jobs / 2) || run(8, jobs / 10)) return 1;
  return 0;
}
