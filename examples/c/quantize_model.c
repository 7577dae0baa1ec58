/*
 * quantize_model: quantizes a float32 .tinf from C.
 *
 *   quantize_model MODE IN.tinf OUT.tinf [CALIB.bin]
 *
 * MODE is fp16, int8-dynamic, int8-static or int4. int8-static calibrates on
 * CALIB.bin: a raw little-endian file holding whole samples of the model's
 * first (only) input, one after the other (for example 200 digits of
 * 28x28x1 float32). Build:
 *
 *   cc -std=c99 -Wall -Wextra -Werror -Iinclude examples/c/quantize_model.c \
 *      -Lpython/tinyinfer/lib -ltinyinfer -Wl,-rpath,$PWD/python/tinyinfer/lib -o quantize_model
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tinyinfer.h"

static int fail(const char *what) {
  fprintf(stderr, "quantize_model: %s: %s\n", what, tinf_last_error());
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s fp16|int8-dynamic|int8-static|int4 IN.tinf OUT.tinf [CALIB.bin]\n", argv[0]);
    return 2;
  }
  int32_t mode;
  if (strcmp(argv[1], "fp16") == 0) mode = TINF_QUANT_FP16;
  else if (strcmp(argv[1], "int8-dynamic") == 0) mode = TINF_QUANT_INT8_DYNAMIC;
  else if (strcmp(argv[1], "int8-static") == 0) mode = TINF_QUANT_INT8_STATIC;
  else if (strcmp(argv[1], "int4") == 0) mode = TINF_QUANT_INT4;
  else {
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
  }

  tinf_model *model = NULL;
  tinf_quantizer *q = NULL;
  unsigned char *calib = NULL;
  int rc = 1;
  if (tinf_model_load_file(argv[2], &model) != TINF_OK) return fail("load");
  if (tinf_quantizer_create(model, mode, &q) != TINF_OK) { rc = fail("quantizer"); goto done; }

  if (mode == TINF_QUANT_INT8_STATIC) {
    if (argc < 5) {
      fprintf(stderr, "int8-static needs a calibration file\n");
      rc = 2;
      goto done;
    }
    tinf_tensor_info info;
    if (tinf_model_input_info(model, 0, &info) != TINF_OK) { rc = fail("input info"); goto done; }
    FILE *f = fopen(argv[4], "rb");
    if (!f) { perror(argv[4]); goto done; }
    calib = malloc(info.nbytes);
    if (!calib) { fclose(f); goto done; }
    int samples = 0;
    while (fread(calib, 1, info.nbytes, f) == info.nbytes) {
      const void *inputs[1] = {calib};
      size_t sizes[1] = {info.nbytes};
      if (tinf_quantizer_observe(q, 1, inputs, sizes) != TINF_OK) { fclose(f); rc = fail("observe"); goto done; }
      samples++;
    }
    fclose(f);
    printf("calibrated on %d samples of %zu bytes\n", samples, info.nbytes);
  }

  if (tinf_quantizer_finish(q) != TINF_OK) { rc = fail("finish"); goto done; }
  const void *data = NULL;
  size_t size = 0;
  if (tinf_quantizer_data(q, &data, &size) != TINF_OK) { rc = fail("data"); goto done; }
  FILE *out = fopen(argv[3], "wb");
  if (!out || fwrite(data, 1, size, out) != size || fclose(out) != 0) {
    perror(argv[3]);
    goto done;
  }
  printf("%s: %zu bytes (%s)\n", argv[3], size, argv[1]);
  rc = 0;

done:
  free(calib);
  tinf_quantizer_free(q);
  tinf_model_free(model);
  return rc;
}
