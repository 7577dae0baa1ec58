/* The session pool's cost per job (ti_pool_run in
 * Sources/TinyInferShims/shims.c), two threads, back-to-back jobs of two
 * items that each spin for a set time, against running both items on the
 * calling thread. A job's overhead is its time minus one item's.
 *
 *   cc -O2 -ISources/TinyInferShims/include bench/pool_handoff.c \
 *      Sources/TinyInferShims/shims.c Sources/TinyInferShims/cpu.c -lpthread -lm -o /tmp/pool_handoff
 *   /tmp/pool_handoff
 *
 * To compare with another commit's pool, compile that commit's shims.c
 * (git show COMMIT:Sources/TinyInferShims/shims.c > /tmp/old_shims.c). */
#include "tinyinfer_shims.h"
#include <stdio.h>

static volatile double sink;
static long spin;

static void item(void *ctx, int i) {
  (void)ctx; (void)i;
  double s = 0;
  for (long k = 0; k < spin; k++) s += k * 0.5;
  sink = s;
}

int main(void) {
  ti_pool *p = ti_pool_create(2);
  if (!p || ti_pool_threads(p) != 2) return 1;
  const long spins[] = {0, 100, 1000, 3000, 10000};
  const int jobs = 20000;
  for (int w = 0; w < 5; w++) {
    spin = spins[w];
    double best_pool = 1e30, best_serial = 1e30;
    for (int rep = 0; rep < 5; rep++) {
      uint64_t t0 = ti_shim_now_ns();
      for (int j = 0; j < jobs; j++) ti_pool_run(p, item, NULL, 2);
      double pool = (ti_shim_now_ns() - t0) / (double)jobs;
      t0 = ti_shim_now_ns();
      for (int j = 0; j < jobs; j++) { item(NULL, 0); item(NULL, 1); }
      double serial = (ti_shim_now_ns() - t0) / (double)jobs;
      if (pool < best_pool) best_pool = pool;
      if (serial < best_serial) best_serial = serial;
    }
    printf("items of %5.0f ns: two on one thread %7.0f ns, a job on two threads %7.0f ns, overhead %5.0f ns\n",
           best_serial / 2, best_serial, best_pool, best_pool - best_serial / 2);
  }
  ti_pool_destroy(p);
  return 0;
}
