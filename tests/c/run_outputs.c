/*
 * run_outputs.c - run a .tinf model once on given inputs and write each
 * output's raw bytes to a file, for comparing builds of libtinyinfer.so
 * (scripts/test-aarch64.sh runs it under qemu-aarch64 and compares with the
 * x86-64 library's outputs).
 *
 *   run_outputs [-t THREADS] model.tinf OUT_PREFIX [input0.bin input1.bin ...]
 *
 * Each inputN.bin holds exactly the raw little-endian bytes of input N.
 * Writes OUT_PREFIX.N.bin for each output N and prints one line per output:
 *   output N NAME DTYPE d0,d1,... NBYTES
 * Exit status: 0 on success, 1 on a library error (its message on stderr),
 * 2 on bad usage or an I/O error.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tinyinfer.h"

static int read_exact(const char *path, void *dst, size_t nbytes) {
  FILE *f = fopen(path, "rb");
  long size;
  int rc = 0;
  if (!f) {
    perror(path);
    return 2;
  }
  if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
    perror(path);
    rc = 2;
  } else if ((unsigned long)size != (unsigned long)nbytes) {
    fprintf(stderr, "run_outputs: %s has %ld bytes, the input takes %lu\n", path, size, (unsigned long)nbytes);
    rc = 2;
  } else if (nbytes && fread(dst, 1, nbytes, f) != nbytes) {
    fprintf(stderr, "run_outputs: cannot read %s\n", path);
    rc = 2;
  }
  fclose(f);
  return rc;
}

static int write_all(const char *path, const void *src, size_t nbytes) {
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    return 2;
  }
  if ((nbytes && fwrite(src, 1, nbytes, f) != nbytes) || fclose(f) != 0) {
    fprintf(stderr, "run_outputs: cannot write %s\n", path);
    return 2;
  }
  return 0;
}

static int fail(const char *what, tinf_status status) {
  fprintf(stderr, "run_outputs: %s: %s (%s)\n", what, tinf_last_error(), tinf_status_string(status));
  return 1;
}

int main(int argc, char **argv) {
  int argi = 1, rc = 0;
  long threads = 1;
  int32_t n_in = 0, n_out = 0, i, d;
  tinf_model *model = NULL;
  tinf_options *options = NULL;
  tinf_session *session = NULL;
  tinf_status s;

  if (argi + 1 < argc && strcmp(argv[argi], "-t") == 0) {
    char *end;
    threads = strtol(argv[argi + 1], &end, 10);
    if (*argv[argi + 1] == 0 || *end != 0 || threads < 0 || threads > 256) {
      fprintf(stderr, "run_outputs: bad thread count %s\n", argv[argi + 1]);
      return 2;
    }
    argi += 2;
  }
  if (argc - argi < 2) {
    fprintf(stderr, "usage: run_outputs [-t THREADS] model.tinf OUT_PREFIX [input0.bin ...]\n");
    return 2;
  }
  if (tinf_abi_version() != TINF_ABI_VERSION) {
    fprintf(stderr, "run_outputs: the library has ABI %d, this program was built for %d\n", (int)tinf_abi_version(),
            TINF_ABI_VERSION);
    return 1;
  }
  const char *model_path = argv[argi], *prefix = argv[argi + 1];
  argi += 2;

  if ((s = tinf_model_load_file(model_path, &model)) != TINF_OK) return fail(model_path, s);
  if ((s = tinf_model_input_count(model, &n_in)) != TINF_OK || (s = tinf_model_output_count(model, &n_out)) != TINF_OK) {
    rc = fail("describe", s);
    goto done;
  }
  if (argc - argi != n_in) {
    fprintf(stderr, "run_outputs: the model has %d inputs, %d files given\n", (int)n_in, argc - argi);
    rc = 2;
    goto done;
  }
  if ((s = tinf_options_create(&options)) != TINF_OK || (s = tinf_options_set_threads(options, (int32_t)threads)) != TINF_OK ||
      (s = tinf_session_create(model, options, &session)) != TINF_OK) {
    rc = fail("session", s);
    goto done;
  }
  for (i = 0; i < n_in; i++) {
    void *data = NULL;
    size_t nbytes = 0;
    if ((s = tinf_session_input_data(session, i, &data, &nbytes)) != TINF_OK) {
      rc = fail("input", s);
      goto done;
    }
    if ((rc = read_exact(argv[argi + i], data, nbytes)) != 0) goto done;
  }
  if ((s = tinf_session_run(session)) != TINF_OK) {
    rc = fail("run", s);
    goto done;
  }
  for (i = 0; i < n_out; i++) {
    tinf_tensor_info info;
    const void *data = NULL;
    size_t nbytes = 0;
    char path[4096];
    if ((s = tinf_session_output_info(session, i, &info)) != TINF_OK ||
        (s = tinf_session_output_data(session, i, &data, &nbytes)) != TINF_OK) {
      rc = fail("output", s);
      goto done;
    }
    if (snprintf(path, sizeof path, "%s.%d.bin", prefix, (int)i) >= (int)sizeof path) {
      fprintf(stderr, "run_outputs: output prefix too long\n");
      rc = 2;
      goto done;
    }
    if ((rc = write_all(path, data, nbytes)) != 0) goto done;
    printf("output %d %s %d ", (int)i, info.name, (int)info.dtype);
    for (d = 0; d < info.rank; d++) printf(d ? ",%lld" : "%lld", (long long)info.dims[d]);
    printf(" %lu\n", (unsigned long)nbytes);
  }

done:
  tinf_session_free(session);
  tinf_options_free(options);
  tinf_model_free(model);
  return rc;
}
