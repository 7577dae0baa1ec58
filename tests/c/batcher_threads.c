/* The micro-batching queue from C (include/tinyinfer.h, "micro-batching
 * queue"): many threads with good and bad requests, submissions and their
 * completions, a run failing on one request's data, shutdown with pending
 * requests, and argument checks. Results are compared with batch-1 runs of
 * a plain session (the unbatched path): equal up to float rounding (a row
 * in a batch goes through the GEMM's multi-row tile, which adds in another
 * order than the one-row kernel), and identical for the gather model.
 *
 *   batcher_threads MLP.tinf GATHER.tinf
 *
 * MLP: one float32 input [1, D] and one float32 output [1, K]; GATHER: an
 * int32 index [1, 1] into a 16-row table (an index >= 16 fails the run).
 * Prints "N passed, M failed"; exit status 0 when none failed. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tinyinfer.h"

static int passed, failed;
static pthread_mutex_t count_mu = PTHREAD_MUTEX_INITIALIZER;

static void check(int ok, const char *what) {
  pthread_mutex_lock(&count_mu);
  if (ok) {
    passed++;
  } else {
    failed++;
    printf("FAIL %s (last error: %s)\n", what, tinf_last_error());
  }
  pthread_mutex_unlock(&count_mu);
}

enum { ROWS = 64, THREADS = 16, PER_THREAD = 120, MAX_BATCH = 8 };

static size_t d_in, d_out;         /* floats per row */
static float *xs, *ref;            /* ROWS rows of inputs and of their batch-1 outputs */
static tinf_batcher *shared;

static uint32_t next_rand(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  return *s >> 8;
}

/* 1 when n floats of a equal b's up to rounding (1e-5 relative). */
static int near(const float *a, const float *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    float d = a[i] - b[i], m = b[i] < 0 ? -b[i] : b[i];
    if (d < 0) d = -d;
    if (!(d <= 1e-5f * (m > 1.0f ? m : 1.0f))) return 0;
  }
  return 1;
}

/* Runs rows [first, first + n) of xs through the batcher; 1 when the
 * outputs equal the batch-1 session's (up to rounding). */
static int run_rows(tinf_batcher *b, int first, int n, tinf_status *st) {
  float *out = malloc((size_t)n * d_out * sizeof(float));
  const void *in[1] = {xs + (size_t)first * d_in};
  void *outs[1] = {out};
  size_t in_n[1] = {(size_t)n * d_in * sizeof(float)};
  size_t out_n[1] = {(size_t)n * d_out * sizeof(float)};
  *st = tinf_batcher_run(b, n, in, in_n, 1, outs, out_n, 1, -1);
  int same = *st == TINF_OK && near(out, ref + (size_t)first * d_out, (size_t)n * d_out);
  free(out);
  return same;
}

static void *caller(void *arg) {
  uint32_t seed = (uint32_t)(uintptr_t)arg * 7919u + 1u;
  int good = 0, good_ok = 0, bad = 0, bad_ok = 0;
  for (int k = 0; k < PER_THREAD; k++) {
    int n = 1 + (int)(next_rand(&seed) % 3);
    int first = (int)(next_rand(&seed) % (ROWS - n + 1));
    if (k % 7 == 3) { /* a bad request: one byte short; refused alone */
      float out[3 * 64];
      const void *in[1] = {xs};
      void *outs[1] = {out};
      size_t in_n[1] = {(size_t)n * d_in * sizeof(float) - 1};
      size_t out_n[1] = {(size_t)n * d_out * sizeof(float)};
      bad++;
      bad_ok += tinf_batcher_run(shared, n, in, in_n, 1, outs, out_n, 1, -1) == TINF_ERR_SHAPE;
    } else {
      tinf_status st;
      good++;
      good_ok += run_rows(shared, first, n, &st);
    }
  }
  check(good_ok == good, "every good request of a thread gets the batch-1 values");
  check(bad_ok == bad, "every bad request of a thread is refused with TINF_ERR_SHAPE");
  return NULL;
}

typedef struct {
  tinf_batcher *b;
  int ok;
} blocked_arg;

static void *blocked_caller(void *arg) {
  blocked_arg *a = arg;
  tinf_status st;
  a->ok = run_rows(a->b, 5, 1, &st);
  return NULL;
}

static int load(const char *path, tinf_model **m) {
  if (tinf_model_load_file(path, m) != TINF_OK) {
    printf("cannot load %s: %s\n", path, tinf_last_error());
    return 0;
  }
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s MLP.tinf GATHER.tinf\n", argv[0]);
    return 2;
  }
  tinf_model *m = NULL, *g = NULL;
  if (!load(argv[1], &m) || !load(argv[2], &g)) return 1;
  tinf_tensor_info ii, oi;
  tinf_model_input_info(m, 0, &ii);
  tinf_model_output_info(m, 0, &oi);
  d_in = ii.nbytes / sizeof(float);
  d_out = oi.nbytes / sizeof(float);

  /* The unbatched reference: each row alone on a batch-1 session. */
  xs = malloc(ROWS * d_in * sizeof(float));
  ref = malloc(ROWS * d_out * sizeof(float));
  uint32_t seed = 12345;
  for (size_t i = 0; i < ROWS * d_in; i++) xs[i] = (float)((int)(next_rand(&seed) % 2001) - 1000) / 500.0f;
  tinf_session *s = NULL;
  check(tinf_session_create(m, NULL, &s) == TINF_OK, "a batch-1 session");
  for (int r = 0; r < ROWS; r++) {
    tinf_session_set_input(s, 0, xs + (size_t)r * d_in, d_in * sizeof(float));
    tinf_session_run(s);
    tinf_session_get_output(s, 0, ref + (size_t)r * d_out, d_out * sizeof(float));
  }
  tinf_session_free(s);

  /* Arguments. */
  tinf_batcher *b = NULL;
  check(tinf_batcher_create(NULL, 8, 0, 1, 1, &b) == TINF_ERR_INVALID_ARGUMENT, "create: model NULL");
  check(tinf_batcher_create(m, 8, 0, 1, 1, NULL) == TINF_ERR_INVALID_ARGUMENT, "create: out NULL");
  check(tinf_batcher_create(m, 0, 0, 1, 1, &b) == TINF_ERR_INVALID_ARGUMENT, "create: max_batch 0");
  check(tinf_batcher_create(m, 8, -1, 1, 1, &b) == TINF_ERR_INVALID_ARGUMENT, "create: max_delay_us < 0");
  check(tinf_batcher_create(m, 8, 0, 0, 1, &b) == TINF_ERR_INVALID_ARGUMENT, "create: workers 0");
  check(tinf_batcher_create(m, 8, 0, 1, 300, &b) == TINF_ERR_INVALID_ARGUMENT, "create: threads 300");
  check(b == NULL, "nothing made by a failed create");
  check(tinf_batcher_create(m, MAX_BATCH, 500, 2, 1, &shared) == TINF_OK, "create");
  {
    float out[64 * 4];
    const void *in[1] = {xs};
    void *outs[1] = {out};
    size_t in_n[1] = {d_in * sizeof(float)};
    size_t out_n[1] = {d_out * sizeof(float)};
    check(tinf_batcher_run(NULL, 1, in, in_n, 1, outs, out_n, 1, -1) == TINF_ERR_INVALID_ARGUMENT, "run: NULL");
    check(tinf_batcher_run(shared, 1, NULL, in_n, 1, outs, out_n, 1, -1) == TINF_ERR_INVALID_ARGUMENT,
          "run: inputs NULL");
    check(tinf_batcher_run(shared, 0, in, in_n, 1, outs, out_n, 1, -1) == TINF_ERR_INVALID_ARGUMENT, "run: 0 rows");
    check(tinf_batcher_run(shared, MAX_BATCH + 1, in, in_n, 1, outs, out_n, 1, -1) == TINF_ERR_INVALID_ARGUMENT,
          "run: rows over max_batch");
    check(tinf_batcher_run(shared, 1, in, in_n, 2, outs, out_n, 1, -1) == TINF_ERR_INVALID_ARGUMENT,
          "run: 2 inputs");
    check(tinf_batcher_run(shared, 2, in, in_n, 1, outs, out_n, 1, -1) == TINF_ERR_SHAPE, "run: nbytes of 1 row");
    const void *null_in[1] = {NULL};
    check(tinf_batcher_run(shared, 1, null_in, in_n, 1, outs, out_n, 1, -1) == TINF_ERR_INVALID_ARGUMENT,
          "run: inputs[0] NULL");
    check(tinf_batcher_close(shared, 2) == TINF_ERR_INVALID_ARGUMENT, "close: cancel 2");
    tinf_batcher_counters c;
    check(tinf_batcher_stats(shared, NULL) == TINF_ERR_INVALID_ARGUMENT, "stats: out NULL");
    check(tinf_batcher_submit(shared, 1, in, in_n, 1, outs, out_n, 0, 7) == TINF_ERR_INVALID_ARGUMENT,
          "submit: 0 outputs");
    check(tinf_batcher_stats(shared, &c) == TINF_OK && c.requests == 0 && c.max_batch == MAX_BATCH &&
              c.workers == 2 && c.threads == 1,
          "stats: nothing accepted yet");
  }

  /* One caller: every row and value, as the batch-1 session. */
  {
    int same = 1;
    tinf_status st;
    for (int r = 0; r + 3 <= ROWS; r += 3) same &= run_rows(shared, r, 3, &st);
    for (int r = 0; r < ROWS; r++) same &= run_rows(shared, r, 1, &st);
    check(same, "one caller: outputs equal the batch-1 session's");
  }

  /* Many threads, good and bad requests mixed. */
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, caller, (void *)(uintptr_t)i);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  tinf_batcher_counters c;
  tinf_batcher_stats(shared, &c);
  check(c.failed == 0 && c.queued == 0 && c.running == 0, "stats after the threads: nothing failed or left");
  check(c.batches <= c.requests && c.rows >= c.requests, "stats after the threads: batches and rows");
  printf("threads: %llu requests, %llu rows in %llu batches\n", (unsigned long long)c.requests,
         (unsigned long long)c.rows, (unsigned long long)c.batches);

  /* The same with turns (tinf_batcher_set_turn): the callers of a batch
   * are woken one at a time, each when the previous one comes back (or
   * after 200 us); C threads share no lock, so most turns expire. */
  check(tinf_batcher_set_turn(NULL, 100) == TINF_ERR_INVALID_ARGUMENT, "set_turn: batcher NULL");
  check(tinf_batcher_set_turn(shared, -1) == TINF_ERR_INVALID_ARGUMENT, "set_turn: turn_us < 0");
  check(tinf_batcher_set_turn(shared, 2000000) == TINF_ERR_INVALID_ARGUMENT, "set_turn: turn_us over a second");
  check(tinf_batcher_set_turn(shared, 200) == TINF_OK, "set_turn 200 us");
  for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, caller, (void *)(uintptr_t)i);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  check(tinf_batcher_set_turn(shared, 0) == TINF_OK, "set_turn 0");
  tinf_batcher_stats(shared, &c);
  check(c.failed == 0 && c.queued == 0 && c.running == 0, "stats after the threads with turns: nothing failed or left");

  /* Submissions with a notify fd (tinf_batcher_set_notify_fd): a wake-up
   * is written when completions appear; the reader reads it first, then
   * takes the completions without waiting. */
  check(tinf_batcher_set_notify_fd(NULL, 1) == TINF_ERR_INVALID_ARGUMENT, "set_notify_fd: batcher NULL");
  check(tinf_batcher_set_notify_fd(shared, -2) == TINF_ERR_INVALID_ARGUMENT, "set_notify_fd: fd < -1");
  {
    enum { N = 40 };
    int fds[2];
    check(pipe(fds) == 0, "a pipe");
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    check(tinf_batcher_set_notify_fd(shared, fds[1]) == TINF_OK, "set_notify_fd");
    float *outs_all = malloc(N * d_out * sizeof(float));
    int seen[N] = {0}, right = 1, got = 0, wakeups = 0;
    for (int i = 0; i < N; i++) {
      const void *in[1] = {xs + (size_t)(i % ROWS) * d_in};
      void *outs[1] = {outs_all + (size_t)i * d_out};
      size_t in_n[1] = {d_in * sizeof(float)};
      size_t out_n[1] = {d_out * sizeof(float)};
      right &= tinf_batcher_submit(shared, 1, in, in_n, 1, outs, out_n, 1, (uint64_t)i) == TINF_OK;
    }
    while (got < N) {
      struct pollfd pf = {fds[0], POLLIN, 0};
      if (poll(&pf, 1, 5000) != 1) break;
      unsigned char buf[256];
      if (read(fds[0], buf, sizeof buf) > 0) wakeups++;
      uint64_t tags[8];
      int32_t sts[8], n = 8;
      while (n == 8) {
        if (tinf_batcher_completed(shared, tags, sts, 8, 0, &n) != TINF_OK) break;
        for (int k = 0; k < n; k++) {
          right &= tags[k] < N && !seen[tags[k]] && sts[k] == TINF_OK;
          if (tags[k] < N) seen[tags[k]] = 1;
          got++;
        }
      }
    }
    for (int i = 0; i < N; i++)
      right &= near(outs_all + (size_t)i * d_out, ref + (size_t)(i % ROWS) * d_out, d_out);
    check(got == N && right && wakeups >= 1, "notify fd: woken, every tag once, OK, batch-1 values");
    check(tinf_batcher_set_notify_fd(shared, -1) == TINF_OK, "set_notify_fd -1");
    close(fds[0]);
    close(fds[1]);
    free(outs_all);
  }

  /* Submissions and their completions. */
  {
    enum { N = 100 };
    float *outs_all = malloc(N * d_out * sizeof(float));
    int seen[N] = {0};
    int submitted = 1;
    for (int i = 0; i < N; i++) {
      const void *in[1] = {xs + (size_t)(i % ROWS) * d_in};
      void *outs[1] = {outs_all + (size_t)i * d_out};
      size_t in_n[1] = {d_in * sizeof(float)};
      size_t out_n[1] = {d_out * sizeof(float)};
      submitted &= tinf_batcher_submit(shared, 1, in, in_n, 1, outs, out_n, 1, 1000u + (uint64_t)i) == TINF_OK;
    }
    check(submitted, "submit: every request queued");
    int got = 0, right = 1;
    uint64_t tags[16];
    int32_t sts[16];
    int32_t n;
    while (got < N) {
      if (tinf_batcher_completed(shared, tags, sts, 16, 5000000, &n) != TINF_OK || n == 0) break;
      for (int k = 0; k < n; k++) {
        int i = (int)(tags[k] - 1000u);
        right &= i >= 0 && i < N && !seen[i] && sts[k] == TINF_OK;
        if (i >= 0 && i < N) seen[i] = 1;
        got++;
      }
    }
    for (int i = 0; i < N; i++)
      right &= near(outs_all + (size_t)i * d_out, ref + (size_t)(i % ROWS) * d_out, d_out);
    check(got == N && right, "completed: every tag once, OK, batch-1 values");
    check(tinf_batcher_completed(shared, tags, sts, 16, 0, &n) == TINF_OK && n == 0, "completed: none left");
    /* (whether they were gathered depends on timing here: a run of this
     * model is shorter than a submission; the Python tests check gathering
     * on a slow model) */
    free(outs_all);
  }

  /* Close: refuses new requests, is idempotent. */
  check(tinf_batcher_close(shared, 0) == TINF_OK, "close");
  check(tinf_batcher_close(shared, 1) == TINF_OK, "close again");
  {
    tinf_status st;
    run_rows(shared, 0, 1, &st);
    check(st == TINF_ERR_INVALID_STATE, "run after close: TINF_ERR_INVALID_STATE");
    uint64_t tag;
    int32_t sts, n;
    check(tinf_batcher_completed(shared, &tag, &sts, 1, -1, &n) == TINF_ERR_INVALID_STATE,
          "completed after close: no wait, TINF_ERR_INVALID_STATE");
  }
  tinf_batcher_free(shared);
  tinf_batcher_free(NULL);

  /* Shutdown with pending requests: cancel fails the queued ones clearly. */
  {
    enum { N = 4000 }; /* more than the worker runs while they are submitted */
    check(tinf_batcher_create(m, 1, 0, 1, 1, &b) == TINF_OK, "create (max_batch 1)");
    float *outs_all = malloc(N * d_out * sizeof(float));
    for (int i = 0; i < N; i++) {
      const void *in[1] = {xs + (size_t)(i % ROWS) * d_in};
      void *outs[1] = {outs_all + (size_t)i * d_out};
      size_t in_n[1] = {d_in * sizeof(float)};
      size_t out_n[1] = {d_out * sizeof(float)};
      tinf_batcher_submit(b, 1, in, in_n, 1, outs, out_n, 1, (uint64_t)i);
    }
    check(tinf_batcher_close(b, 1) == TINF_OK, "close with cancel");
    int ok = 0, cancelled = 0, other = 0, right = 1;
    uint64_t tags[64];
    int32_t sts[64];
    int32_t n;
    while (tinf_batcher_completed(b, tags, sts, 64, -1, &n) == TINF_OK) {
      for (int k = 0; k < n; k++) {
        if (sts[k] == TINF_OK) {
          ok++;
          right &= near(outs_all + tags[k] * d_out, ref + (tags[k] % ROWS) * d_out, d_out);
        } else if (sts[k] == TINF_ERR_INVALID_STATE && strstr(tinf_last_error(), "closed before this request ran")) {
          cancelled++;
        } else {
          other++;
        }
      }
    }
    printf("cancel: %d ran, %d cancelled\n", ok, cancelled);
    check(ok + cancelled == N && other == 0 && cancelled > 0 && right,
          "close with cancel: each request ran (right values) or failed as closed");
    tinf_batcher_free(b);
    free(outs_all);
  }

  /* Shutdown with callers waiting: close (no cancel) lets them all finish. */
  {
    check(tinf_batcher_create(m, 4, 200000, 1, 1, &b) == TINF_OK, "create (200 ms delay)");
    blocked_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
      args[i].b = b;
      args[i].ok = 0;
      pthread_create(&t[i], NULL, blocked_caller, &args[i]);
    }
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    check(tinf_batcher_close(b, 0) == TINF_OK, "close with callers waiting");
    int all = 1;
    for (int i = 0; i < THREADS; i++) {
      pthread_join(t[i], NULL);
      all &= args[i].ok;
    }
    check(all, "close without cancel: every waiting caller got its rows");
    tinf_batcher_free(b);
  }

  /* A run failing on one request's data fails that request alone. */
  {
    check(tinf_batcher_create(g, 16, 20000, 1, 1, &b) == TINF_OK, "create (gather)");
    enum { N = 48 };
    int32_t idx[N];
    float outs_all[N * 4];
    unsigned bad = 0;
    for (int i = 0; i < N; i++) {
      idx[i] = (i % 11 == 5) ? 100 + i : i % 16;
      bad += idx[i] >= 16;
    }
    for (int i = 0; i < N; i++) {
      const void *in[1] = {&idx[i]};
      void *outs[1] = {outs_all + i * 4};
      size_t in_n[1] = {sizeof(int32_t)};
      size_t out_n[1] = {4 * sizeof(float)};
      tinf_batcher_submit(b, 1, in, in_n, 1, outs, out_n, 1, (uint64_t)i);
    }
    int right = 1, got = 0;
    uint64_t tags[64];
    int32_t sts[64];
    int32_t n;
    while (got < N && tinf_batcher_completed(b, tags, sts, 64, 5000000, &n) == TINF_OK && n > 0) {
      for (int k = 0; k < n; k++) {
        int i = (int)tags[k];
        got++;
        if (idx[i] >= 16) {
          right &= sts[k] == TINF_ERR_RUNTIME && strstr(tinf_last_error(), "out of range") != NULL;
        } else {
          right &= sts[k] == TINF_OK;
          for (int j = 0; j < 4; j++) right &= outs_all[i * 4 + j] == (float)(idx[i] * 4 + j);
        }
      }
    }
    check(got == N && right, "gather: the bad indices fail alone, the others get their rows");
    tinf_batcher_stats(b, &c);
    check(c.isolated > 0 && c.failed == bad, "gather: failed batches ran request by request; the bad ones failed");
    tinf_batcher_free(b); /* closes */
  }

  tinf_model_free(m); /* the batchers are gone; freeing a model a batcher holds is allowed too */
  tinf_model_free(g);
  free(xs);
  free(ref);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
