/*
 * run_model.c - load a .tinf model, describe it, run it, time it.
 *
 *   run_model [-n RUNS] [-t THREADS] [-k VALUES] model.tinf [input0.bin input1.bin ...]
 *
 * Each inputN.bin holds the raw little-endian bytes of input N (exactly its
 * size); without them the inputs are zeros. Prints the inputs and outputs
 * (name, dtype, shape), the first VALUES values of each output, and the
 * median time of RUNS runs.
 *
 * Build (from the repository root, after scripts/build-lib.sh):
 *
 *   cc -std=c99 -Wall -Wextra -Werror -Iinclude examples/c/run_model.c \
 *      -Lpython/tinyinfer/lib -ltinyinfer -Wl,-rpath,$PWD/python/tinyinfer/lib \
 *      -o examples/c/run_model
 *
 * or `make -C examples/c`.
 */
#define _POSIX_C_SOURCE 199309L

#include <math.h> /* NAN, INFINITY (macros only: no libm needed) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tinyinfer.h"

static const char *dtype_name(int32_t dtype) {
  switch (dtype) {
  case TINF_DTYPE_FLOAT32: return "float32";
  case TINF_DTYPE_FLOAT16: return "float16";
  case TINF_DTYPE_INT8: return "int8";
  case TINF_DTYPE_UINT8: return "uint8";
  case TINF_DTYPE_INT32: return "int32";
  case TINF_DTYPE_INT64: return "int64";
  case TINF_DTYPE_INT16: return "int16";
  case TINF_DTYPE_BOOL: return "bool";
  default: return "unknown";
  }
}

static void print_info(const char *kind, int32_t index, const tinf_tensor_info *info) {
  int32_t d;
  printf("%s %d: %s %s [", kind, (int)index, info->name, dtype_name(info->dtype));
  for (d = 0; d < info->rank; d++) printf(d ? ", %lld" : "%lld", (long long)info->dims[d]);
  printf("] (%lu bytes)\n", (unsigned long)info->nbytes);
}

/* Fails with the library's message: prints it and returns 1. */
static int fail(const char *what, tinf_status status) {
  fprintf(stderr, "run_model: %s: %s (%s)\n", what, tinf_last_error(), tinf_status_string(status));
  return 1;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* x * 2^e without libm. */
static double ldexp_compat(double x, int e) {
  while (e > 0) { x *= 2.0; e--; }
  while (e < 0) { x *= 0.5; e++; }
  return x;
}

/* Little-endian decoding of element i as a double, for printing. */
static double element(const unsigned char *p, int32_t dtype, size_t i) {
  size_t sz = tinf_dtype_size(dtype), k;
  uint64_t u = 0;
  const unsigned char *e = p + i * sz;
  for (k = 0; k < sz; k++) u |= (uint64_t)e[k] << (8 * k);
  switch (dtype) {
  case TINF_DTYPE_FLOAT32: {
    uint32_t bits = (uint32_t)u;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
  }
  case TINF_DTYPE_FLOAT16: {
    uint32_t h = (uint32_t)u, sign = (h >> 15) & 1, ex = (h >> 10) & 31, man = h & 1023;
    double v;
    if (ex == 0) v = ldexp_compat((double)man, -24);
    else if (ex == 31) v = man ? (double)NAN : (double)INFINITY;
    else v = ldexp_compat((double)(man | 1024), (int)ex - 25);
    return sign ? -v : v;
  }
  case TINF_DTYPE_INT8: return (double)(int8_t)u;
  case TINF_DTYPE_UINT8: return (double)(uint8_t)u;
  case TINF_DTYPE_INT16: return (double)(int16_t)u;
  case TINF_DTYPE_INT32: return (double)(int32_t)u;
  case TINF_DTYPE_INT64: return (double)(int64_t)u;
  case TINF_DTYPE_BOOL: return u ? 1.0 : 0.0;
  default: return 0.0;
  }
}

static int read_file(const char *path, void *dst, size_t nbytes) {
  FILE *f = fopen(path, "rb");
  long size;
  if (!f) {
    perror(path);
    return 1;
  }
  if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
    perror(path);
    fclose(f);
    return 1;
  }
  if ((unsigned long)size != (unsigned long)nbytes) {
    fprintf(stderr, "run_model: %s has %ld bytes, the input takes %lu\n", path, size, (unsigned long)nbytes);
    fclose(f);
    return 1;
  }
  if (nbytes && fread(dst, 1, nbytes, f) != nbytes) {
    fprintf(stderr, "run_model: cannot read %s\n", path);
    fclose(f);
    return 1;
  }
  fclose(f);
  return 0;
}

static void usage(void) {
  fprintf(stderr,
          "usage: run_model [-n RUNS] [-t THREADS] [-k VALUES] model.tinf [input0.bin ...]\n"
          "  -n RUNS     timed runs (default 10; the median is printed)\n"
          "  -t THREADS  threads of the session (default 1, 0 = all CPUs)\n"
          "  -k VALUES   values printed per output (default 8)\n");
}

static int parse_int(const char *s, long lo, long hi, long *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == 0 || *end != 0 || v < lo || v > hi) return 1;
  *out = v;
  return 0;
}

int main(int argc, char **argv) {
  long runs = 10, threads = 1, show = 8;
  int argi = 1, rc = 1;
  int32_t n_in = 0, n_out = 0, i, ops = 0, tensors = 0;
  size_t weights = 0, arena = 0, unplanned = 0;
  tinf_model *model = NULL;
  tinf_options *options = NULL;
  tinf_session *session = NULL;
  double *times = NULL;
  tinf_status s;

  while (argi < argc && argv[argi][0] == '-' && argv[argi][1] != 0) {
    const char *opt = argv[argi];
    long *target = NULL, lo = 0, hi = 0;
    if (strcmp(opt, "-h") == 0 || strcmp(opt, "--help") == 0) {
      usage();
      return 0;
    }
    if (strcmp(opt, "-n") == 0) { target = &runs; lo = 1; hi = 1000000; }
    else if (strcmp(opt, "-t") == 0) { target = &threads; lo = 0; hi = 256; }
    else if (strcmp(opt, "-k") == 0) { target = &show; lo = 0; hi = 1L << 30; }
    if (!target || argi + 1 >= argc || parse_int(argv[argi + 1], lo, hi, target)) {
      fprintf(stderr, "run_model: bad option %s%s%s\n", opt, argi + 1 < argc ? " " : "", argi + 1 < argc ? argv[argi + 1] : "");
      usage();
      return 2;
    }
    argi += 2;
  }
  if (argi >= argc) {
    usage();
    return 2;
  }

  printf("tinyinfer %s (ABI %d, .tinf %d.%d)\n", tinf_version_string(), (int)tinf_abi_version(),
         (int)tinf_format_version_major(), (int)tinf_format_version_minor());
  if (tinf_abi_version() != TINF_ABI_VERSION) {
    fprintf(stderr, "run_model: the library has ABI %d, this program was built for %d\n", (int)tinf_abi_version(),
            TINF_ABI_VERSION);
    return 1;
  }

  if ((s = tinf_model_load_file(argv[argi], &model)) != TINF_OK) return fail(argv[argi], s);
  if ((s = tinf_model_input_count(model, &n_in)) != TINF_OK ||
      (s = tinf_model_output_count(model, &n_out)) != TINF_OK ||
      (s = tinf_model_stats(model, &ops, &tensors, &weights)) != TINF_OK) {
    rc = fail("describe", s);
    goto done;
  }
  printf("model %s: %d ops, %d tensors, %lu weight bytes\n", argv[argi], (int)ops, (int)tensors,
         (unsigned long)weights);
  {
    int32_t n_meta = 0;
    if ((s = tinf_model_metadata_count(model, &n_meta)) != TINF_OK) {
      rc = fail("metadata", s);
      goto done;
    }
    for (i = 0; i < n_meta; i++) {
      const char *k = NULL, *v = NULL;
      if ((s = tinf_model_metadata(model, i, &k, &v)) != TINF_OK) {
        rc = fail("metadata", s);
        goto done;
      }
      printf("  %s: %s\n", k, v);
    }
  }
  if (argc - argi - 1 != 0 && argc - argi - 1 != n_in) {
    fprintf(stderr, "run_model: the model takes %d input(s), %d file(s) given\n", (int)n_in, argc - argi - 1);
    rc = 2;
    goto done;
  }

  if ((s = tinf_options_create(&options)) != TINF_OK ||
      (s = tinf_options_set_threads(options, (int32_t)threads)) != TINF_OK) {
    rc = fail("options", s);
    goto done;
  }
  if ((s = tinf_session_create(model, options, &session)) != TINF_OK) {
    rc = fail("session", s);
    goto done;
  }
  tinf_options_free(options);
  options = NULL;

  for (i = 0; i < n_in; i++) {
    tinf_tensor_info info;
    void *data = NULL;
    size_t nbytes = 0;
    if ((s = tinf_model_input_info(model, i, &info)) != TINF_OK) {
      rc = fail("input info", s);
      goto done;
    }
    print_info("input", i, &info);
    /* Zero-copy: read the file straight into the session's input buffer
     * (a fresh session's inputs are zeros). */
    if ((s = tinf_session_input_data(session, i, &data, &nbytes)) != TINF_OK) {
      rc = fail("input data", s);
      goto done;
    }
    if (argc - argi - 1 > 0 && read_file(argv[argi + 1 + i], data, nbytes)) goto done;
  }
  for (i = 0; i < n_out; i++) {
    tinf_tensor_info info;
    if ((s = tinf_model_output_info(model, i, &info)) != TINF_OK) {
      rc = fail("output info", s);
      goto done;
    }
    print_info("output", i, &info);
  }
  {
    int32_t t = 0;
    if ((s = tinf_session_threads(session, &t)) != TINF_OK ||
        (s = tinf_session_arena_bytes(session, &arena, &unplanned)) != TINF_OK) {
      rc = fail("session", s);
      goto done;
    }
    printf("session: %d thread(s), arena %lu bytes (%lu without reuse)\n", (int)t, (unsigned long)arena,
           (unsigned long)unplanned);
  }

  /* One warm-up run, then RUNS timed runs. */
  if ((s = tinf_session_run(session)) != TINF_OK) {
    rc = fail("run", s);
    goto done;
  }
  times = malloc((size_t)runs * sizeof *times);
  if (!times) {
    fprintf(stderr, "run_model: out of memory\n");
    goto done;
  }
  for (i = 0; i < (int32_t)runs; i++) {
    double t0 = now_ms();
    if ((s = tinf_session_run(session)) != TINF_OK) {
      rc = fail("run", s);
      goto done;
    }
    times[i] = now_ms() - t0;
  }

  for (i = 0; i < n_out; i++) {
    tinf_tensor_info info;
    const void *data = NULL;
    size_t nbytes = 0, count, j, esize;
    if ((s = tinf_model_output_info(model, i, &info)) != TINF_OK ||
        (s = tinf_session_output_data(session, i, &data, &nbytes)) != TINF_OK) {
      rc = fail("output", s);
      goto done;
    }
    esize = tinf_dtype_size(info.dtype);
    count = esize ? nbytes / esize : 0;
    printf("%s:", info.name);
    for (j = 0; j < count && j < (size_t)show; j++) printf(" %.6g", element(data, info.dtype, j));
    if (count > (size_t)show) printf(" ... (%lu values)", (unsigned long)count);
    printf("\n");
  }
  qsort(times, (size_t)runs, sizeof *times, cmp_double);
  printf("median %.4f ms over %ld run(s) (min %.4f, max %.4f)\n",
         runs % 2 ? times[runs / 2] : (times[runs / 2 - 1] + times[runs / 2]) / 2, runs, times[0],
         times[runs - 1]);
  rc = 0;

done:
  free(times);
  tinf_options_free(options);
  tinf_session_free(session);
  tinf_model_free(model);
  return rc;
}
