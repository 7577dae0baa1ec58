/*
 * abi_smoke.c - a smoke test of the C ABI of libtinyinfer.so, in strict C99.
 *
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude tests/c/abi_smoke.c \
 *      -Lpython/tinyinfer/lib -ltinyinfer -Wl,-rpath,$PWD/python/tinyinfer/lib -o abi_smoke
 *   ./abi_smoke model.tinf
 *
 * Calls every function of include/tinyinfer.h with NULL arguments and checks
 * the status codes, builds a small model with the builder, loads the model
 * given as argv[1] (from the file and from a buffer), runs it on zero inputs,
 * and frees handles in both orders. Prints "N passed, M failed" and exits
 * non-zero on any failure.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tinyinfer.h"

static int passed, failed;

static void check(int ok, const char *what, int line) {
  if (ok) {
    passed++;
  } else {
    failed++;
    printf("FAIL line %d: %s (last error: \"%s\")\n", line, what, tinf_last_error());
  }
}
#define CHECK(cond) check((cond) != 0, #cond, __LINE__)
/* A failed call must return `code` and leave a message. */
#define EXPECT(code, call)                                                   \
  do {                                                                       \
    tinf_status s_ = (call);                                                 \
    check(s_ == (code) && (s_ == TINF_OK || tinf_last_error()[0] != 0), #call, __LINE__); \
    if (s_ != (code)) printf("  got status %d (%s), expected %d\n", (int)s_, tinf_status_string(s_), (int)(code)); \
  } while (0)
#define NULLARG(call) EXPECT(TINF_ERR_INVALID_ARGUMENT, call)

static void null_arguments(void) {
  tinf_model *m = NULL;
  tinf_session *s = NULL;
  tinf_options *o = NULL;
  tinf_builder *b = NULL;
  tinf_tensor_info info;
  tinf_tensor_detail detail;
  int32_t n = 0;
  size_t z = 0;
  uint64_t ns = 0;
  const uint64_t *nsp = NULL;
  const int32_t *ip = NULL;
  void *p = NULL;
  const void *cp = NULL;
  const char *k = NULL, *v = NULL;
  char buf[64];
  int64_t dims[1] = {2};
  int32_t idx[1] = {0};
  float f[1] = {1.0f};
  int64_t ints[1] = {1};

  memset(buf, 0, sizeof buf);
  /* static functions */
  CHECK(strcmp(tinf_status_string(TINF_OK), "ok") == 0);
  CHECK(strcmp(tinf_status_string((tinf_status)999), "unknown status") == 0);
  CHECK(tinf_last_error() != NULL);
  CHECK(tinf_version_string() != NULL && tinf_version_string()[0] != 0);
  CHECK(tinf_abi_version() == TINF_ABI_VERSION);
  CHECK(tinf_format_version_major() >= 1);
  CHECK(tinf_format_version_minor() >= 0);
  CHECK(tinf_dtype_size(TINF_DTYPE_FLOAT32) == 4 && tinf_dtype_size(TINF_DTYPE_INT64) == 8);
  CHECK(tinf_dtype_size(0) == 0 && tinf_dtype_size(-1) == 0);
  CHECK(tinf_op_count() > 0 && tinf_op_name(1) != NULL && tinf_op_name(0) == NULL);
  CHECK(tinf_op_name(tinf_op_count() + 1) == NULL);
  CHECK(tinf_attr_count() > 0 && tinf_attr_name(1) != NULL && tinf_attr_name(0) == NULL);
  CHECK(tinf_attr_name(tinf_attr_count() + 1) == NULL);

  /* models */
  NULLARG(tinf_model_load_file(NULL, &m));
  NULLARG(tinf_model_load_file("x.tinf", NULL));
  NULLARG(tinf_model_load_buffer(NULL, 64, &m));
  NULLARG(tinf_model_load_buffer(buf, sizeof buf, NULL));
  CHECK(m == NULL);
  EXPECT(TINF_ERR_BAD_FORMAT, tinf_model_load_buffer(buf, sizeof buf, &m));
  CHECK(m == NULL);
  EXPECT(TINF_ERR_IO, tinf_model_load_file("/nonexistent/abi_smoke.tinf", &m));
  CHECK(m == NULL);
  NULLARG(tinf_model_load_file_flags(NULL, 0, &m));
  NULLARG(tinf_model_load_file_flags("x.tinf", 0, NULL));
  NULLARG(tinf_model_load_file_flags("x.tinf", 0x80, &m));
  NULLARG(tinf_model_load_buffer_flags(NULL, 64, 0, &m));
  NULLARG(tinf_model_load_buffer_flags(buf, sizeof buf, TINF_LOAD_NO_GRAPH_PASSES, NULL));
  NULLARG(tinf_model_load_buffer_flags(buf, sizeof buf, 0x80, &m));
  CHECK(m == NULL);
  EXPECT(TINF_ERR_BAD_FORMAT, tinf_model_load_buffer_flags(buf, sizeof buf, TINF_LOAD_NO_GRAPH_PASSES, &m));
  CHECK(m == NULL);
  /* the prepack cache's own lookup, its folder and its key function */
  NULLARG(tinf_model_load_file_cached(NULL, 0, NULL, &m));
  NULLARG(tinf_model_load_file_cached("x.tinf", 0, NULL, NULL));
  NULLARG(tinf_model_load_file_cached("x.tinf", 0x80, "", &m));
  CHECK(m == NULL);
  NULLARG(tinf_cache_folder(NULL, 4, &z));
  EXPECT(TINF_OK, tinf_cache_folder(NULL, 0, &z));
  CHECK(z > 0);
  EXPECT(TINF_OK, tinf_cache_folder(buf, sizeof buf, NULL));
  CHECK(strlen(buf) == (z < sizeof buf ? z : sizeof buf - 1));
  NULLARG(tinf_cache_key(NULL, NULL, 0, NULL));
  NULLARG(tinf_cache_key(NULL, NULL, 1, buf));
  NULLARG(tinf_cache_key(NULL, NULL, -1, buf));
  EXPECT(TINF_OK, tinf_cache_key(NULL, NULL, 0, buf));
  memset(buf, 0, sizeof buf);
  tinf_model_free(NULL);
  NULLARG(tinf_model_input_count(NULL, &n));
  NULLARG(tinf_model_output_count(NULL, &n));
  NULLARG(tinf_model_input_info(NULL, 0, &info));
  NULLARG(tinf_model_output_info(NULL, 0, &info));
  NULLARG(tinf_model_find_input(NULL, "x", &n));
  NULLARG(tinf_model_find_output(NULL, "x", &n));
  NULLARG(tinf_model_metadata_count(NULL, &n));
  NULLARG(tinf_model_metadata(NULL, 0, &k, &v));
  NULLARG(tinf_model_stats(NULL, &n, &n, &z));
  NULLARG(tinf_model_tensor_count(NULL, &n));
  NULLARG(tinf_model_tensor_detail(NULL, 0, &detail));
  NULLARG(tinf_model_op(NULL, 0, &n, &n, &ip, &n, &ip));
  NULLARG(tinf_model_sizes(NULL, &z, &z, &z, &z));
  NULLARG(tinf_model_load_ns(NULL, &ns));
  NULLARG(tinf_model_pass_count(NULL, &n));
  NULLARG(tinf_model_pass(NULL, 0, &k));

  /* options */
  NULLARG(tinf_options_create(NULL));
  tinf_options_free(NULL);
  NULLARG(tinf_options_set_threads(NULL, 1));

  /* sessions */
  NULLARG(tinf_session_create(NULL, NULL, &s));
  CHECK(s == NULL);
  tinf_session_free(NULL);
  NULLARG(tinf_session_set_input(NULL, 0, buf, 4));
  NULLARG(tinf_session_input_data(NULL, 0, &p, &z));
  NULLARG(tinf_session_run(NULL));
  NULLARG(tinf_session_get_output(NULL, 0, buf, 4));
  NULLARG(tinf_session_output_data(NULL, 0, &cp, &z));
  NULLARG(tinf_session_arena_bytes(NULL, &z, &z));
  NULLARG(tinf_session_run_profiled(NULL, &nsp, &n));
  NULLARG(tinf_session_threads(NULL, &n));

  /* builder */
  NULLARG(tinf_builder_create(NULL));
  tinf_builder_free(NULL);
  NULLARG(tinf_builder_set_metadata(NULL, "k", "v"));
  NULLARG(tinf_builder_add_tensor(NULL, "t", TINF_DTYPE_FLOAT32, 1, dims, NULL, 0, &n));
  NULLARG(tinf_builder_set_quant(NULL, 0, -1, 1, f, idx));
  NULLARG(tinf_builder_add_op(NULL, 1, 1, idx, 1, idx, &n));
  NULLARG(tinf_builder_set_attr_int(NULL, 0, 1, 1));
  NULLARG(tinf_builder_set_attr_float(NULL, 0, 1, 1.0f));
  NULLARG(tinf_builder_set_attr_ints(NULL, 0, 1, 1, ints));
  NULLARG(tinf_builder_set_attr_floats(NULL, 0, 1, 1, f));
  NULLARG(tinf_builder_set_attr_string(NULL, 0, 1, "s"));
  NULLARG(tinf_builder_set_graph_inputs(NULL, 1, idx));
  NULLARG(tinf_builder_set_graph_outputs(NULL, 1, idx));
  NULLARG(tinf_builder_finish(NULL));
  NULLARG(tinf_builder_data(NULL, &cp, &z));

  /* NULL out-pointers on live handles */
  EXPECT(TINF_OK, tinf_builder_create(&b));
  NULLARG(tinf_builder_set_metadata(b, NULL, "v"));
  NULLARG(tinf_builder_add_tensor(b, NULL, TINF_DTYPE_FLOAT32, 1, dims, NULL, 0, &n));
  NULLARG(tinf_builder_data(b, NULL, &z));
  EXPECT(TINF_ERR_INVALID_STATE, tinf_builder_data(b, &cp, &z));
  tinf_builder_free(b);
  EXPECT(TINF_OK, tinf_options_create(&o));
  EXPECT(TINF_ERR_INVALID_ARGUMENT, tinf_options_set_threads(o, -1));
  EXPECT(TINF_ERR_INVALID_ARGUMENT, tinf_options_set_threads(o, 257));
  tinf_options_free(o);
}

/* y = relu(x) for x[2,3], through the builder, and loaded from its bytes. */
static void builder_model(void) {
  tinf_builder *b = NULL;
  tinf_model *m = NULL;
  tinf_session *s = NULL;
  const void *data = NULL;
  size_t nbytes = 0;
  int64_t dims[2] = {2, 3};
  int32_t x = -1, y = -1, op = -1, relu = -1, i;
  float in[6] = {-1, 2, -3, 4, -5, 6}, out[6];

  for (i = 1; i <= tinf_op_count(); i++)
    if (tinf_op_name(i) && strcmp(tinf_op_name(i), "Relu") == 0) relu = i;
  CHECK(relu > 0);
  EXPECT(TINF_OK, tinf_builder_create(&b));
  EXPECT(TINF_OK, tinf_builder_set_metadata(b, "name", "abi_smoke"));
  EXPECT(TINF_OK, tinf_builder_add_tensor(b, "x", TINF_DTYPE_FLOAT32, 2, dims, NULL, 0, &x));
  EXPECT(TINF_OK, tinf_builder_add_tensor(b, "y", 0, -1, NULL, NULL, 0, &y));
  EXPECT(TINF_ERR_UNSUPPORTED_OP, tinf_builder_add_op(b, 0, 1, &x, 1, &y, &op));
  EXPECT(TINF_OK, tinf_builder_add_op(b, relu, 1, &x, 1, &y, &op));
  CHECK(op == 0);
  EXPECT(TINF_ERR_INVALID_ARGUMENT, tinf_builder_set_attr_int(b, 5, 1, 0));
  EXPECT(TINF_ERR_BAD_FORMAT, tinf_builder_finish(b)); /* no outputs yet */
  EXPECT(TINF_ERR_INVALID_STATE, tinf_builder_data(b, &data, &nbytes));
  EXPECT(TINF_OK, tinf_builder_set_graph_inputs(b, 1, &x));
  EXPECT(TINF_OK, tinf_builder_set_graph_outputs(b, 1, &y));
  EXPECT(TINF_OK, tinf_builder_finish(b));
  EXPECT(TINF_OK, tinf_builder_data(b, &data, &nbytes));
  CHECK(data != NULL && nbytes > 64 && memcmp(data, "TINF", 4) == 0);
  if (!data) {
    tinf_builder_free(b);
    return;
  }
  /* the builder's bytes are 64-byte aligned: the model borrows them, so the
   * builder must outlive the model and its session */
  EXPECT(TINF_OK, tinf_model_load_buffer(data, nbytes, &m));
  EXPECT(TINF_OK, tinf_session_create(m, NULL, &s));
  EXPECT(TINF_OK, tinf_session_set_input(s, 0, in, sizeof in));
  EXPECT(TINF_OK, tinf_session_run(s));
  EXPECT(TINF_OK, tinf_session_get_output(s, 0, out, sizeof out));
  CHECK(out[0] == 0 && out[1] == 2 && out[2] == 0 && out[3] == 4 && out[4] == 0 && out[5] == 6);
  tinf_session_free(s);
  tinf_model_free(m);
  tinf_builder_free(b);
}

static unsigned char *read_all(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  unsigned char *data;
  long n;
  if (!f) return NULL;
  if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) <= 0 || fseek(f, 0, SEEK_SET) != 0) {
    fclose(f);
    return NULL;
  }
  data = malloc((size_t)n + 1);
  if (data && fread(data + 1, 1, (size_t)n, f) != (size_t)n) {
    free(data);
    data = NULL;
  }
  fclose(f);
  *size = (size_t)n;
  return data;
}

/* Describes and runs `m` on zero inputs with `threads`; checks the API on it. */
static void exercise(tinf_model *m, int32_t threads, int free_model_first) {
  tinf_options *o = NULL;
  tinf_session *s = NULL;
  tinf_tensor_info info;
  int32_t n_in = -1, n_out = -1, n_meta = -1, ops = -1, tensors = -1, i, t = -1, idx = -1;
  size_t weights = 0, arena = 0, unplanned = 0;

  EXPECT(TINF_OK, tinf_model_input_count(m, &n_in));
  EXPECT(TINF_OK, tinf_model_output_count(m, &n_out));
  EXPECT(TINF_OK, tinf_model_metadata_count(m, &n_meta));
  EXPECT(TINF_OK, tinf_model_stats(m, &ops, &tensors, &weights));
  CHECK(n_in >= 0 && n_out >= 1 && n_meta >= 0 && ops >= 1 && tensors >= n_in + n_out);
  NULLARG(tinf_model_input_count(m, NULL));
  NULLARG(tinf_model_input_info(m, 0, NULL));
  NULLARG(tinf_model_find_input(m, NULL, &idx));
  NULLARG(tinf_model_input_info(m, n_in, &info));
  NULLARG(tinf_model_output_info(m, -1, &info));
  NULLARG(tinf_model_metadata(m, n_meta, NULL, NULL));
  for (i = 0; i < n_meta; i++) {
    const char *k = NULL, *v = NULL;
    EXPECT(TINF_OK, tinf_model_metadata(m, i, &k, &v));
    CHECK(k != NULL && v != NULL);
  }
  {
    /* inspection: tensors, ops, sizes, load time */
    int32_t n_t = -1, j, op = 0, ni = -1, no = -1;
    const int32_t *ins = NULL, *outs = NULL;
    tinf_tensor_detail d;
    size_t hs = 0, gs = 0, ds = 0, fs = 0;
    uint64_t ns = 0;
    int tensors_ok = 1, ops_ok = 1;
    EXPECT(TINF_OK, tinf_model_tensor_count(m, &n_t));
    CHECK(n_t >= n_in + n_out);
    NULLARG(tinf_model_tensor_count(m, NULL));
    NULLARG(tinf_model_tensor_detail(m, 0, NULL));
    NULLARG(tinf_model_tensor_detail(m, n_t, &d));
    NULLARG(tinf_model_tensor_detail(m, -1, &d));
    for (j = 0; j < n_t; j++) {
      if (tinf_model_tensor_detail(m, j, &d) != TINF_OK || !d.name || d.rank < 0 || d.rank > TINF_MAX_RANK ||
          d.kind < 0 || d.kind > 3 || (d.quant_count > 0 && (!d.scales || !d.zero_points)))
        tensors_ok = 0;
    }
    CHECK(tensors_ok);
    for (j = 0; j < ops; j++) {
      int32_t q;
      if (tinf_model_op(m, j, &op, &ni, &ins, &no, &outs) != TINF_OK || tinf_op_name(op) == NULL || ni < 0 ||
          no < 1 || (ni > 0 && !ins) || !outs) {
        ops_ok = 0;
        continue;
      }
      for (q = 0; q < ni; q++) if (ins[q] < -1 || ins[q] >= n_t) ops_ok = 0;
      for (q = 0; q < no; q++) if (outs[q] < 0 || outs[q] >= n_t) ops_ok = 0;
    }
    CHECK(ops_ok);
    NULLARG(tinf_model_op(m, ops, &op, &ni, &ins, &no, &outs));
    NULLARG(tinf_model_op(m, -1, &op, &ni, &ins, &no, &outs));
    EXPECT(TINF_OK, tinf_model_sizes(m, &hs, &gs, &ds, &fs));
    CHECK(hs == 64 && gs > 0);
    EXPECT(TINF_OK, tinf_model_load_ns(m, &ns));
    NULLARG(tinf_model_load_ns(m, NULL));
    int32_t n_pass = -1;
    const char *line = NULL;
    EXPECT(TINF_OK, tinf_model_pass_count(m, &n_pass));
    CHECK(n_pass >= 0);
    NULLARG(tinf_model_pass_count(m, NULL));
    for (int32_t j = 0; j < n_pass; j++) {
      line = NULL;
      EXPECT(TINF_OK, tinf_model_pass(m, j, &line));
      CHECK(line != NULL && line[0] != 0);
    }
    NULLARG(tinf_model_pass(m, n_pass, &line));
    NULLARG(tinf_model_pass(m, -1, &line));
    NULLARG(tinf_model_pass(m, 0, NULL));
  }

  EXPECT(TINF_OK, tinf_options_create(&o));
  EXPECT(TINF_OK, tinf_options_set_threads(o, threads));
  NULLARG(tinf_session_create(m, o, NULL));
  EXPECT(TINF_OK, tinf_session_create(m, o, &s));
  tinf_options_free(o); /* sessions copy their options */
  if (!s) return;
  EXPECT(TINF_OK, tinf_session_threads(s, &t));
  CHECK(t == threads);
  EXPECT(TINF_OK, tinf_session_arena_bytes(s, &arena, &unplanned));
  CHECK(arena <= unplanned);

  for (i = 0; i < n_in; i++) {
    void *p = NULL;
    size_t nbytes = 0;
    EXPECT(TINF_OK, tinf_model_input_info(m, i, &info));
    CHECK(info.name != NULL && info.rank >= 0 && info.rank <= TINF_MAX_RANK);
    CHECK(info.nbytes > 0 && tinf_dtype_size(info.dtype) > 0);
    EXPECT(TINF_OK, tinf_model_find_input(m, info.name, &idx));
    CHECK(idx == i);
    EXPECT(TINF_OK, tinf_session_input_data(s, i, &p, &nbytes));
    CHECK(p != NULL && nbytes == info.nbytes);
    if (p) memset(p, 0, nbytes);
    NULLARG(tinf_session_set_input(s, i, p, nbytes + 1));
    EXPECT(TINF_OK, tinf_session_set_input(s, i, p, nbytes));
  }
  NULLARG(tinf_session_input_data(s, n_in, NULL, NULL));
  EXPECT(TINF_OK, tinf_session_run(s));
  {
    const uint64_t *times = NULL;
    int32_t n_times = -1;
    EXPECT(TINF_OK, tinf_session_run_profiled(s, &times, &n_times));
    CHECK(n_times == ops && (ops == 0 || times != NULL));
  }
  if (free_model_first) tinf_model_free(m); /* the session keeps the model alive */
  EXPECT(TINF_OK, tinf_session_run(s));
  for (i = 0; i < n_out; i++) {
    const void *p = NULL;
    size_t nbytes = 0;
    unsigned char *copy;
    EXPECT(TINF_OK, tinf_session_output_data(s, i, &p, &nbytes));
    CHECK(p != NULL && nbytes > 0);
    copy = malloc(nbytes + 1);
    if (copy && p) {
      EXPECT(TINF_OK, tinf_session_get_output(s, i, copy, nbytes));
      CHECK(memcmp(copy, p, nbytes) == 0);
      NULLARG(tinf_session_get_output(s, i, copy, nbytes - 1));
    }
    free(copy);
  }
  NULLARG(tinf_session_output_data(s, n_out, NULL, NULL));
  tinf_session_free(s);
  if (!free_model_first) tinf_model_free(m);
}

int main(int argc, char **argv) {
  tinf_model *m1 = NULL, *m2 = NULL, *m3 = NULL;
  unsigned char *bytes;
  size_t size = 0;

  if (argc != 2) {
    fprintf(stderr, "usage: abi_smoke model.tinf\n");
    return 2;
  }
  null_arguments();
  builder_model();

  /* Through the prepack cache's lookup with no folder (""): a plain load. */
  EXPECT(TINF_OK, tinf_model_load_file_cached(argv[1], 0, "", &m1));
  tinf_model_free(m1);
  m1 = NULL;
  /* From the file; session freed first, then model first. */
  EXPECT(TINF_OK, tinf_model_load_file(argv[1], &m1));
  if (m1) exercise(m1, 1, 0);
  EXPECT(TINF_OK, tinf_model_load_file(argv[1], &m2));
  if (m2) exercise(m2, 2, 1);
  /* From an unaligned buffer: the library copies it, so it is freed at once. */
  bytes = read_all(argv[1], &size);
  CHECK(bytes != NULL);
  if (bytes) {
    size_t n, refused = 0;
    EXPECT(TINF_OK, tinf_model_load_buffer(bytes + 1, size, &m3));
    /* every truncation of the file is refused as BAD_FORMAT */
    for (n = 1; n < size; n++) {
      tinf_model *t = NULL;
      if (tinf_model_load_buffer(bytes + 1, n, &t) == TINF_ERR_BAD_FORMAT && t == NULL) refused++;
      tinf_model_free(t);
    }
    CHECK(refused == size - 1);
    memset(bytes, 0xAB, size + 1);
    free(bytes);
    if (m3) exercise(m3, 1, 1);
  }

  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
