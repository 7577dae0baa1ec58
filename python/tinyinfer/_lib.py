"""Loads libtinyinfer.so and declares every C function of include/tinyinfer.h
once, in the header's order: each `_fn` line sits under the C declaration it
mirrors (test_errors.py checks the comments and the ctypes types against the
header).

The library is looked for where $TINYINFER_LIB says, else in this package's
lib/ folder. A library whose ABI version differs from ABI_VERSION is refused.
Functions that return tinf_status are checked by `_check`, which raises the
exception of that status (tinyinfer._errors.BY_STATUS) with tinf_last_error().
"""

from __future__ import annotations

import ctypes
import os
from ctypes import (POINTER, Structure, c_char_p, c_double, c_float, c_int32, c_int64, c_size_t, c_uint32, c_uint64,
                    c_void_p)

from ._errors import Status, error_for

ABI_VERSION = 1  # TINF_ABI_VERSION
MAX_RANK = 8     # TINF_MAX_RANK


class ModelHandle(c_void_p):
    """tinf_model *"""


class SessionHandle(c_void_p):
    """tinf_session *"""


class OptionsHandle(c_void_p):
    """tinf_options *"""


class BuilderHandle(c_void_p):
    """tinf_builder *"""


class QuantizerHandle(c_void_p):
    """tinf_quantizer *"""


class PrunerHandle(c_void_p):
    """tinf_pruner *"""


class TensorInfo(Structure):
    """tinf_tensor_info"""
    _fields_ = [("name", c_char_p), ("dtype", c_int32), ("rank", c_int32),
                ("dims", c_int64 * MAX_RANK), ("nbytes", c_size_t)]


class TensorDetail(Structure):
    """tinf_tensor_detail"""
    _fields_ = [("name", c_char_p), ("dtype", c_int32), ("rank", c_int32), ("dims", c_int64 * MAX_RANK),
                ("nbytes", c_size_t), ("kind", c_int32), ("quant_axis", c_int32), ("quant_count", c_int32),
                ("scales", POINTER(c_float)), ("zero_points", POINTER(c_int32))]


def _find_library() -> str:
    env = os.environ.get("TINYINFER_LIB")
    if env:
        return env
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib", "libtinyinfer.so")
    if os.path.exists(here):
        return here
    raise ImportError(
        "libtinyinfer.so not found: build it with scripts/build-lib.sh (or pip install ./python), "
        "or set TINYINFER_LIB to its path")


lib_path = _find_library()
lib = ctypes.CDLL(lib_path)


def _check(status, func, args):
    if status:  # TINF_OK is 0 (a plain int test: this runs on every call)
        raise error_for(int(status), lib.tinf_last_error().decode("utf-8", "replace"))
    return status


_STATUS = object()  # restype of a function returning tinf_status: c_int32, checked by _check


def _fn(name, argtypes, restype=_STATUS):
    f = getattr(lib, name)
    f.argtypes = argtypes
    if restype is _STATUS:
        f.restype = c_int32
        f.errcheck = _check
    else:
        f.restype = restype
    return f

# ---- status and errors, versions, element types ----

# const char *tinf_status_string(tinf_status status);
_fn("tinf_status_string", [c_int32], c_char_p)
# const char *tinf_last_error(void);
_fn("tinf_last_error", [], c_char_p)
# const char *tinf_version_string(void);
_fn("tinf_version_string", [], c_char_p)
# int32_t tinf_abi_version(void);
_fn("tinf_abi_version", [], c_int32)

if lib.tinf_abi_version() != ABI_VERSION:
    raise ImportError(f"{lib_path} has ABI version {lib.tinf_abi_version()}, this package needs {ABI_VERSION}")

# int32_t tinf_format_version_major(void);
_fn("tinf_format_version_major", [], c_int32)
# int32_t tinf_format_version_minor(void);
_fn("tinf_format_version_minor", [], c_int32)
# const char *tinf_cpu_isa(void);
_fn("tinf_cpu_isa", [], c_char_p)
# const char *tinf_cpu_isa_detected(void);
_fn("tinf_cpu_isa_detected", [], c_char_p)
# const char *tinf_cpu_features(void);
_fn("tinf_cpu_features", [], c_char_p)
# size_t tinf_dtype_size(int32_t dtype);
_fn("tinf_dtype_size", [c_int32], c_size_t)

# ---- models ----

# tinf_status tinf_model_load_file(const char *path, tinf_model **out_model);
_fn("tinf_model_load_file", [c_char_p, POINTER(ModelHandle)])
# tinf_status tinf_model_load_buffer(const void *data, size_t size, tinf_model **out_model);
_fn("tinf_model_load_buffer", [c_void_p, c_size_t, POINTER(ModelHandle)])
# tinf_status tinf_model_load_file_flags(const char *path, uint32_t flags, tinf_model **out_model);
_fn("tinf_model_load_file_flags", [c_char_p, c_uint32, POINTER(ModelHandle)])
# tinf_status tinf_model_load_buffer_flags(const void *data, size_t size, uint32_t flags, tinf_model **out_model);
_fn("tinf_model_load_buffer_flags", [c_void_p, c_size_t, c_uint32, POINTER(ModelHandle)])
# void tinf_model_free(tinf_model *model);
_fn("tinf_model_free", [ModelHandle], None)
# tinf_status tinf_model_input_count(const tinf_model *model, int32_t *out_count);
_fn("tinf_model_input_count", [ModelHandle, POINTER(c_int32)])
# tinf_status tinf_model_output_count(const tinf_model *model, int32_t *out_count);
_fn("tinf_model_output_count", [ModelHandle, POINTER(c_int32)])
# tinf_status tinf_model_input_info(const tinf_model *model, int32_t index, tinf_tensor_info *out_info);
_fn("tinf_model_input_info", [ModelHandle, c_int32, POINTER(TensorInfo)])
# tinf_status tinf_model_output_info(const tinf_model *model, int32_t index, tinf_tensor_info *out_info);
_fn("tinf_model_output_info", [ModelHandle, c_int32, POINTER(TensorInfo)])
# tinf_status tinf_model_find_input(const tinf_model *model, const char *name, int32_t *out_index);
_fn("tinf_model_find_input", [ModelHandle, c_char_p, POINTER(c_int32)])
# tinf_status tinf_model_find_output(const tinf_model *model, const char *name, int32_t *out_index);
_fn("tinf_model_find_output", [ModelHandle, c_char_p, POINTER(c_int32)])
# tinf_status tinf_model_metadata_count(const tinf_model *model, int32_t *out_count);
_fn("tinf_model_metadata_count", [ModelHandle, POINTER(c_int32)])
# tinf_status tinf_model_metadata(const tinf_model *model, int32_t index, const char **out_key,
#                                 const char **out_value);
_fn("tinf_model_metadata", [ModelHandle, c_int32, POINTER(c_char_p), POINTER(c_char_p)])
# tinf_status tinf_model_stats(const tinf_model *model, int32_t *out_ops, int32_t *out_tensors,
#                              size_t *out_weight_bytes);
_fn("tinf_model_stats", [ModelHandle, POINTER(c_int32), POINTER(c_int32), POINTER(c_size_t)])
# tinf_status tinf_model_tensor_count(const tinf_model *model, int32_t *out_count);
_fn("tinf_model_tensor_count", [ModelHandle, POINTER(c_int32)])
# tinf_status tinf_model_tensor_detail(const tinf_model *model, int32_t index, tinf_tensor_detail *out_detail);
_fn("tinf_model_tensor_detail", [ModelHandle, c_int32, POINTER(TensorDetail)])
# tinf_status tinf_model_op(const tinf_model *model, int32_t index, int32_t *out_op, int32_t *out_n_inputs,
#                           const int32_t **out_inputs, int32_t *out_n_outputs, const int32_t **out_outputs);
_fn("tinf_model_op", [ModelHandle, c_int32, POINTER(c_int32), POINTER(c_int32), POINTER(POINTER(c_int32)),
                     POINTER(c_int32), POINTER(POINTER(c_int32))])
# tinf_status tinf_model_sizes(const tinf_model *model, size_t *out_header, size_t *out_graph, size_t *out_data,
#                              size_t *out_folded);
_fn("tinf_model_sizes", [ModelHandle, POINTER(c_size_t), POINTER(c_size_t), POINTER(c_size_t), POINTER(c_size_t)])
# tinf_status tinf_model_load_ns(const tinf_model *model, uint64_t *out_ns);
_fn("tinf_model_load_ns", [ModelHandle, POINTER(c_uint64)])
# tinf_status tinf_model_pass_count(const tinf_model *model, int32_t *out_count);
_fn("tinf_model_pass_count", [ModelHandle, POINTER(c_int32)])
# tinf_status tinf_model_pass(const tinf_model *model, int32_t index, const char **out_text);
_fn("tinf_model_pass", [ModelHandle, c_int32, POINTER(c_char_p)])

# ---- session options ----

# tinf_status tinf_options_create(tinf_options **out_options);
_fn("tinf_options_create", [POINTER(OptionsHandle)])
# void tinf_options_free(tinf_options *options);
_fn("tinf_options_free", [OptionsHandle], None)
# tinf_status tinf_options_set_threads(tinf_options *options, int32_t threads);
_fn("tinf_options_set_threads", [OptionsHandle, c_int32])
# tinf_status tinf_options_set_input_shape(tinf_options *options, int32_t index, int32_t rank, const int64_t *dims);
_fn("tinf_options_set_input_shape", [OptionsHandle, c_int32, c_int32, POINTER(c_int64)])

# ---- sessions ----

# tinf_status tinf_session_create(tinf_model *model, const tinf_options *options, tinf_session **out_session);
_fn("tinf_session_create", [ModelHandle, OptionsHandle, POINTER(SessionHandle)])
# void tinf_session_free(tinf_session *session);
_fn("tinf_session_free", [SessionHandle], None)
# tinf_status tinf_session_set_input(tinf_session *session, int32_t index, const void *data, size_t nbytes);
_fn("tinf_session_set_input", [SessionHandle, c_int32, c_void_p, c_size_t])
# tinf_status tinf_session_input_data(tinf_session *session, int32_t index, void **out_data, size_t *out_nbytes);
_fn("tinf_session_input_data", [SessionHandle, c_int32, POINTER(c_void_p), POINTER(c_size_t)])
# tinf_status tinf_session_input_info(const tinf_session *session, int32_t index, tinf_tensor_info *out_info);
_fn("tinf_session_input_info", [SessionHandle, c_int32, POINTER(TensorInfo)])
# tinf_status tinf_session_output_info(const tinf_session *session, int32_t index, tinf_tensor_info *out_info);
_fn("tinf_session_output_info", [SessionHandle, c_int32, POINTER(TensorInfo)])
# tinf_status tinf_session_run(tinf_session *session);
_fn("tinf_session_run", [SessionHandle])
# The same C function without the errcheck wrapper, for the run fast paths
# of model.py (a Python call less per run), which test the status themselves
# (`check_status`).
session_run_unchecked = lib["tinf_session_run"]  # lib[name] is a function object of its own
session_run_unchecked.argtypes = [SessionHandle]
session_run_unchecked.restype = c_int32


def check_status(status: int) -> None:
    """Raises the exception for a non-zero tinf_status (as every checked call does)."""
    _check(status, None, None)
# tinf_status tinf_session_get_output(tinf_session *session, int32_t index, void *dst, size_t nbytes);
_fn("tinf_session_get_output", [SessionHandle, c_int32, c_void_p, c_size_t])
# tinf_status tinf_session_output_data(tinf_session *session, int32_t index, const void **out_data,
#                                      size_t *out_nbytes);
_fn("tinf_session_output_data", [SessionHandle, c_int32, POINTER(c_void_p), POINTER(c_size_t)])
# tinf_status tinf_session_arena_bytes(const tinf_session *session, size_t *out_arena, size_t *out_unplanned);
_fn("tinf_session_arena_bytes", [SessionHandle, POINTER(c_size_t), POINTER(c_size_t)])
# tinf_status tinf_session_run_profiled(tinf_session *session, const uint64_t **out_ns, int32_t *out_count);
_fn("tinf_session_run_profiled", [SessionHandle, POINTER(POINTER(c_uint64)), POINTER(c_int32)])
# tinf_status tinf_session_threads(const tinf_session *session, int32_t *out_threads);
_fn("tinf_session_threads", [SessionHandle, POINTER(c_int32)])

# ---- op and attribute names ----

# const char *tinf_op_name(int32_t op);
_fn("tinf_op_name", [c_int32], c_char_p)
# int32_t tinf_op_count(void);
_fn("tinf_op_count", [], c_int32)
# const char *tinf_attr_name(int32_t key);
_fn("tinf_attr_name", [c_int32], c_char_p)
# int32_t tinf_attr_count(void);
_fn("tinf_attr_count", [], c_int32)

# ---- building .tinf files ----

# tinf_status tinf_builder_create(tinf_builder **out_builder);
_fn("tinf_builder_create", [POINTER(BuilderHandle)])
# void tinf_builder_free(tinf_builder *builder);
_fn("tinf_builder_free", [BuilderHandle], None)
# tinf_status tinf_builder_set_metadata(tinf_builder *builder, const char *key, const char *value);
_fn("tinf_builder_set_metadata", [BuilderHandle, c_char_p, c_char_p])
# tinf_status tinf_builder_add_tensor(tinf_builder *builder, const char *name, int32_t dtype, int32_t rank,
#                                     const int64_t *dims, const void *data, size_t nbytes, int32_t *out_index);
_fn("tinf_builder_add_tensor", [BuilderHandle, c_char_p, c_int32, c_int32, POINTER(c_int64), c_void_p, c_size_t,
                               POINTER(c_int32)])
# tinf_status tinf_builder_set_quant(tinf_builder *builder, int32_t tensor, int32_t axis, int32_t count,
#                                    const float *scales, const int32_t *zero_points);
_fn("tinf_builder_set_quant", [BuilderHandle, c_int32, c_int32, c_int32, POINTER(c_float), POINTER(c_int32)])
# tinf_status tinf_builder_add_op(tinf_builder *builder, int32_t op, int32_t n_inputs, const int32_t *inputs,
#                                 int32_t n_outputs, const int32_t *outputs, int32_t *out_index);
_fn("tinf_builder_add_op", [BuilderHandle, c_int32, c_int32, POINTER(c_int32), c_int32, POINTER(c_int32),
                           POINTER(c_int32)])
# tinf_status tinf_builder_set_attr_int(tinf_builder *builder, int32_t op_index, int32_t key, int64_t value);
_fn("tinf_builder_set_attr_int", [BuilderHandle, c_int32, c_int32, c_int64])
# tinf_status tinf_builder_set_attr_float(tinf_builder *builder, int32_t op_index, int32_t key, float value);
_fn("tinf_builder_set_attr_float", [BuilderHandle, c_int32, c_int32, c_float])
# tinf_status tinf_builder_set_attr_ints(tinf_builder *builder, int32_t op_index, int32_t key, int32_t count,
#                                        const int64_t *values);
_fn("tinf_builder_set_attr_ints", [BuilderHandle, c_int32, c_int32, c_int32, POINTER(c_int64)])
# tinf_status tinf_builder_set_attr_floats(tinf_builder *builder, int32_t op_index, int32_t key, int32_t count,
#                                          const float *values);
_fn("tinf_builder_set_attr_floats", [BuilderHandle, c_int32, c_int32, c_int32, POINTER(c_float)])
# tinf_status tinf_builder_set_attr_string(tinf_builder *builder, int32_t op_index, int32_t key, const char *value);
_fn("tinf_builder_set_attr_string", [BuilderHandle, c_int32, c_int32, c_char_p])
# tinf_status tinf_builder_set_graph_inputs(tinf_builder *builder, int32_t count, const int32_t *tensors);
_fn("tinf_builder_set_graph_inputs", [BuilderHandle, c_int32, POINTER(c_int32)])
# tinf_status tinf_builder_set_graph_outputs(tinf_builder *builder, int32_t count, const int32_t *tensors);
_fn("tinf_builder_set_graph_outputs", [BuilderHandle, c_int32, POINTER(c_int32)])
# tinf_status tinf_builder_finish(tinf_builder *builder);
_fn("tinf_builder_finish", [BuilderHandle])
# tinf_status tinf_builder_data(const tinf_builder *builder, const void **out_data, size_t *out_nbytes);
_fn("tinf_builder_data", [BuilderHandle, POINTER(c_void_p), POINTER(c_size_t)])

# ---- quantization ----

# tinf_status tinf_quantizer_create(tinf_model *model, int32_t mode, tinf_quantizer **out_quantizer);
_fn("tinf_quantizer_create", [ModelHandle, c_int32, POINTER(QuantizerHandle)])
# void tinf_quantizer_free(tinf_quantizer *quantizer);
_fn("tinf_quantizer_free", [QuantizerHandle], None)
# tinf_status tinf_quantizer_set_method(tinf_quantizer *quantizer, int32_t method, float percentile);
_fn("tinf_quantizer_set_method", [QuantizerHandle, c_int32, c_float])
# tinf_status tinf_quantizer_observe(tinf_quantizer *quantizer, int32_t n_inputs, const void *const *inputs,
#                                    const size_t *nbytes);
_fn("tinf_quantizer_observe", [QuantizerHandle, c_int32, POINTER(c_void_p), POINTER(c_size_t)])
# tinf_status tinf_quantizer_sample_count(const tinf_quantizer *quantizer, int64_t *out_count);
_fn("tinf_quantizer_sample_count", [QuantizerHandle, POINTER(c_int64)])
# tinf_status tinf_quantizer_tensor_range(const tinf_quantizer *quantizer, int32_t tensor, float *out_lo,
#                                         float *out_hi, float *out_min, float *out_max);
_fn("tinf_quantizer_tensor_range", [QuantizerHandle, c_int32, POINTER(c_float), POINTER(c_float), POINTER(c_float),
                                   POINTER(c_float)])
# tinf_status tinf_quantizer_layer_count(const tinf_quantizer *quantizer, int32_t *out_count);
_fn("tinf_quantizer_layer_count", [QuantizerHandle, POINTER(c_int32)])
# tinf_status tinf_quantizer_layer(const tinf_quantizer *quantizer, int32_t layer, int32_t *out_op_index,
#                                  int32_t *out_op, const char **out_name, int32_t *out_quantized);
_fn("tinf_quantizer_layer", [QuantizerHandle, c_int32, POINTER(c_int32), POINTER(c_int32), POINTER(c_char_p),
                            POINTER(c_int32)])
# tinf_status tinf_quantizer_keep_float(tinf_quantizer *quantizer, int32_t layer, int32_t keep);
_fn("tinf_quantizer_keep_float", [QuantizerHandle, c_int32, c_int32])
# tinf_status tinf_quantizer_finish(tinf_quantizer *quantizer);
_fn("tinf_quantizer_finish", [QuantizerHandle])
# tinf_status tinf_quantizer_data(const tinf_quantizer *quantizer, const void **out_data, size_t *out_nbytes);
_fn("tinf_quantizer_data", [QuantizerHandle, POINTER(c_void_p), POINTER(c_size_t)])
# tinf_status tinf_quantizer_compare(tinf_quantizer *quantizer, int32_t n_inputs, const void *const *inputs,
#                                    const size_t *nbytes);
_fn("tinf_quantizer_compare", [QuantizerHandle, c_int32, POINTER(c_void_p), POINTER(c_size_t)])
# tinf_status tinf_quantizer_layer_error(const tinf_quantizer *quantizer, int32_t layer, double *out_signal,
#                                        double *out_noise);
_fn("tinf_quantizer_layer_error", [QuantizerHandle, c_int32, POINTER(c_double), POINTER(c_double)])
# tinf_status tinf_quantizer_output_error(const tinf_quantizer *quantizer, int32_t output, double *out_signal,
#                                         double *out_noise);
_fn("tinf_quantizer_output_error", [QuantizerHandle, c_int32, POINTER(c_double), POINTER(c_double)])

OP_IDS = {lib.tinf_op_name(i).decode(): i for i in range(1, lib.tinf_op_count() + 1)
          if lib.tinf_op_name(i) is not None}
ATTR_IDS = {lib.tinf_attr_name(i).decode(): i for i in range(1, lib.tinf_attr_count() + 1)
            if lib.tinf_attr_name(i) is not None}


# tinf_status tinf_op_traits(int32_t op, int32_t *out_min_inputs, int32_t *out_max_inputs, int32_t *out_max_outputs,
#                            uint32_t *out_flags, uint32_t *out_weight_slots);
_fn("tinf_op_traits", [c_int32, POINTER(c_int32), POINTER(c_int32), POINTER(c_int32), POINTER(ctypes.c_uint32),
                       POINTER(ctypes.c_uint32)])
# typedef enum tinf_op_flag { TINF_OP_FUSED_ACTIVATION = 1, TINF_OP_IN_PLACE = 2, TINF_OP_INT8_KERNEL = 4,
#                             TINF_OP_HYBRID_KERNEL = 8 } tinf_op_flag;
OP_FUSED_ACTIVATION, OP_IN_PLACE, OP_INT8_KERNEL, OP_HYBRID_KERNEL = 1, 2, 4, 8


def op_flags(op: str) -> int:
    """The core's tinf_op_flag bits of op `op` (a name of docs/ops.md)."""
    flags = ctypes.c_uint32()
    lib.tinf_op_traits(OP_IDS[op], None, None, None, ctypes.byref(flags), None)
    return flags.value


# Ops whose float32 kernel applies a fused activation (a Relu / Relu6 after one fuses into it).
OPS_TAKING_ACTIVATION = frozenset(op for op in OP_IDS if op_flags(op) & OP_FUSED_ACTIVATION)


# ---- monitoring and memory analysis (issue 19: tinyinfer.Monitor, inspect --memory) ----

class PlanEntry(Structure):
    """tinf_plan_entry"""
    _fields_ = [("buffer", c_int32), ("first_op", c_int32), ("last_op", c_int32), ("offset", c_size_t),
                ("nbytes", c_size_t), ("buffer_bytes", c_size_t)]


# tinf_status tinf_model_memory(const tinf_model *model, size_t *out_file, size_t *out_weights, size_t *out_folded,
#                               size_t *out_packed);
_fn("tinf_model_memory", [ModelHandle, POINTER(c_size_t), POINTER(c_size_t), POINTER(c_size_t), POINTER(c_size_t)])
# tinf_status tinf_session_plan_entry(const tinf_session *session, int32_t tensor, tinf_plan_entry *out_entry);
_fn("tinf_session_plan_entry", [SessionHandle, c_int32, POINTER(PlanEntry)])
# typedef enum tinf_run_log_flag { TINF_RUN_LOG_EVERY_RUN = 1 } tinf_run_log_flag;
RUN_LOG_EVERY_RUN = 1
# tinf_status tinf_session_set_run_log(tinf_session *session, uint64_t *log, int64_t capacity, uint32_t flags);
_fn("tinf_session_set_run_log", [SessionHandle, POINTER(c_uint64), c_int64, c_uint32])
# ---- batch planning (issue 17: batch sizes under a memory budget) ----

# tinf_status tinf_model_batch_bytes(const tinf_model *model, const tinf_options *options, int64_t batch,
#                                    size_t *out_arena, size_t *out_model_bytes);
_fn("tinf_model_batch_bytes", [ModelHandle, OptionsHandle, c_int64, POINTER(c_size_t), POINTER(c_size_t)])
# tinf_status tinf_model_batch_plan(tinf_model *model, const tinf_options *options, size_t budget_bytes,
#                                   size_t item_bytes, int64_t batch_limit, uint32_t measure_ms, uint32_t overhead_ns,
#                                   int32_t capacity, int64_t *out_batches, size_t *out_bytes,
#                                   double *out_items_per_second, int32_t *out_count, int32_t *out_best);
_fn("tinf_model_batch_plan", [ModelHandle, OptionsHandle, c_size_t, c_size_t, c_int64, c_uint32, c_uint32, c_int32,
                              POINTER(c_int64), POINTER(c_size_t), POINTER(c_double), POINTER(c_int32),
                              POINTER(c_int32)])
# ---- pruning (docs/pruning.md) ----

# tinf_status tinf_pruner_create(tinf_model *model, tinf_pruner **out_pruner);
_fn("tinf_pruner_create", [ModelHandle, POINTER(PrunerHandle)])
# void tinf_pruner_free(tinf_pruner *pruner);
_fn("tinf_pruner_free", [PrunerHandle], None)
# tinf_status tinf_pruner_layer_count(const tinf_pruner *pruner, int32_t *out_count);
_fn("tinf_pruner_layer_count", [PrunerHandle, POINTER(c_int32)])
# tinf_status tinf_pruner_layer(const tinf_pruner *pruner, int32_t layer, int32_t *out_op_index, int64_t *out_n,
#                               int64_t *out_k, int64_t *out_run, int64_t *out_input_channels, const char **out_name);
_fn("tinf_pruner_layer", [PrunerHandle, c_int32, POINTER(c_int32), POINTER(c_int64), POINTER(c_int64),
                          POINTER(c_int64), POINTER(c_int64), POINTER(c_char_p)])
# tinf_status tinf_pruner_get_weights(const tinf_pruner *pruner, int32_t layer, float *dst, size_t count);
_fn("tinf_pruner_get_weights", [PrunerHandle, c_int32, POINTER(c_float), c_size_t])
# tinf_status tinf_pruner_set_weights(tinf_pruner *pruner, int32_t layer, const float *src, size_t count);
_fn("tinf_pruner_set_weights", [PrunerHandle, c_int32, POINTER(c_float), c_size_t])
# tinf_status tinf_pruner_magnitude(tinf_pruner *pruner, int32_t layer, double sparsity);
_fn("tinf_pruner_magnitude", [PrunerHandle, c_int32, c_double])
# tinf_status tinf_pruner_nm(tinf_pruner *pruner, int32_t layer, int32_t n, int32_t m, int32_t *out_skipped);
_fn("tinf_pruner_nm", [PrunerHandle, c_int32, c_int32, c_int32, POINTER(c_int32)])
# tinf_status tinf_pruner_observe(tinf_pruner *pruner, int32_t n_inputs, const void *const *inputs, const size_t *nbytes);
_fn("tinf_pruner_observe", [PrunerHandle, c_int32, POINTER(c_void_p), POINTER(c_size_t)])
# tinf_status tinf_pruner_input_squares(const tinf_pruner *pruner, int32_t layer, double *dst, size_t count,
#                                       int64_t *out_positions);
_fn("tinf_pruner_input_squares", [PrunerHandle, c_int32, POINTER(c_double), c_size_t, POINTER(c_int64)])
# tinf_status tinf_pruner_finish(tinf_pruner *pruner);
_fn("tinf_pruner_finish", [PrunerHandle])
# tinf_status tinf_pruner_data(const tinf_pruner *pruner, const void **out_data, size_t *out_nbytes);
_fn("tinf_pruner_data", [PrunerHandle, POINTER(c_void_p), POINTER(c_size_t)])
# tinf_status tinf_model_tensor_storage(const tinf_model *model, int32_t index, int32_t *out_sparse,
#                                       size_t *out_stored_bytes, double *out_zeros);
_fn("tinf_model_tensor_storage", [ModelHandle, c_int32, POINTER(c_int32), POINTER(c_size_t), POINTER(c_double)])
# ---- reliability: the work limit (issue 12) ----

# tinf_status tinf_options_set_max_work(tinf_options *options, uint64_t max_work);
_fn("tinf_options_set_max_work", [OptionsHandle, c_uint64])
# tinf_status tinf_session_work(const tinf_session *session, uint64_t *out_work);
_fn("tinf_session_work", [SessionHandle, POINTER(c_uint64)])

# ---- quantization: float-sensitive ops kept in float32 (issue 14) ----

# tinf_status tinf_quantizer_set_auto_float(tinf_quantizer *quantizer, int32_t enabled);
_fn("tinf_quantizer_set_auto_float", [QuantizerHandle, c_int32])
# tinf_status tinf_quantizer_set_graph_params(tinf_quantizer *quantizer, int32_t enabled);
_fn("tinf_quantizer_set_graph_params", [QuantizerHandle, c_int32])
# tinf_status tinf_quantizer_set_requantization(tinf_quantizer *quantizer, int32_t mode);
_fn("tinf_quantizer_set_requantization", [QuantizerHandle, c_int32])
# tinf_status tinf_quantizer_float_reason(const tinf_quantizer *quantizer, int32_t layer, const char **out_reason);
_fn("tinf_quantizer_float_reason", [QuantizerHandle, c_int32, POINTER(c_char_p)])
# ---- caching: intermediate tensors, shared backbones, the result cache's hash (issue 18) ----

SUBGRAPH_ADD_GRAPH_INPUTS = 1  # TINF_SUBGRAPH_ADD_GRAPH_INPUTS (tinf_subgraph_flag)
# tinf_status tinf_model_subgraph(const tinf_model *model, const char *const *input_names, int32_t n_inputs,
#                                 const char *const *output_names, int32_t n_outputs, uint32_t flags,
#                                 tinf_model **out_model);
_fn("tinf_model_subgraph", [ModelHandle, POINTER(c_char_p), c_int32, POINTER(c_char_p), c_int32, c_uint32,
                            POINTER(ModelHandle)])
# tinf_status tinf_model_serialize(const tinf_model *model, void *dst, size_t capacity, size_t *out_size);
_fn("tinf_model_serialize", [ModelHandle, c_void_p, c_size_t, POINTER(c_size_t)])
# tinf_status tinf_hash64(const void *data, size_t size, uint64_t seed, uint64_t *out_hash);
_fn("tinf_hash64", [c_void_p, c_size_t, c_uint64, POINTER(c_uint64)])
# ---- state: resource variables (issue 14) ----

# tinf_status tinf_session_reset_state(tinf_session *session);
_fn("tinf_session_reset_state", [SessionHandle])
# tinf_status tinf_session_state_count(const tinf_session *session, int32_t *out_count);
_fn("tinf_session_state_count", [SessionHandle, POINTER(c_int32)])
# ---- control flow: subgraphs (issue 14) ----

# tinf_status tinf_builder_add_subgraph(tinf_builder *builder, const char *name, int32_t first_op, int32_t n_inputs,
#                                       const int32_t *inputs, int32_t n_outputs, const int32_t *outputs,
#                                       int32_t *out_index);
_fn("tinf_builder_add_subgraph", [BuilderHandle, c_char_p, c_int32, c_int32, POINTER(c_int32), c_int32,
                                  POINTER(c_int32), POINTER(c_int32)])

# ---- prepack cache (issue 18) ----

# int32_t tinf_prepack_layout_version(void);
_fn("tinf_prepack_layout_version", [], c_int32)
# tinf_status tinf_model_load_file_prepacked(const char *path, uint32_t flags, const char *image_path,
#                                            const void *key, size_t key_size, tinf_model **out_model);
_fn("tinf_model_load_file_prepacked", [c_char_p, c_uint32, c_char_p, c_void_p, c_size_t, POINTER(ModelHandle)])
# tinf_status tinf_model_load_file_cached(const char *path, uint32_t flags, const char *folder,
#                                         tinf_model **out_model);
_fn("tinf_model_load_file_cached", [c_char_p, c_uint32, c_char_p, POINTER(ModelHandle)])
# tinf_status tinf_model_save_prepack_cached(const tinf_model *model, const char *path, uint32_t flags,
#                                            const char *folder, int32_t *out_written);
_fn("tinf_model_save_prepack_cached", [ModelHandle, c_char_p, c_uint32, c_char_p, POINTER(c_int32)])
# tinf_status tinf_cache_folder(char *dst, size_t capacity, size_t *out_length);
_fn("tinf_cache_folder", [c_char_p, c_size_t, POINTER(c_size_t)])
# tinf_status tinf_cache_key(const void *const *parts, const size_t *sizes, int32_t count, void *out_key);
_fn("tinf_cache_key", [POINTER(c_void_p), POINTER(c_size_t), c_int32, c_void_p])
# tinf_status tinf_model_load_buffer_prepacked(const void *data, size_t size, uint32_t flags, const char *image_path,
#                                              const void *key, size_t key_size, tinf_model **out_model);
_fn("tinf_model_load_buffer_prepacked",
    [c_void_p, c_size_t, c_uint32, c_char_p, c_void_p, c_size_t, POINTER(ModelHandle)])
# tinf_status tinf_model_prepack_info(const tinf_model *model, int32_t *out_state, int32_t *out_from_image,
#                                     int32_t *out_packed);
_fn("tinf_model_prepack_info", [ModelHandle, POINTER(c_int32), POINTER(c_int32), POINTER(c_int32)])
# tinf_status tinf_model_prepack_note(const tinf_model *model, char *dst, size_t capacity, size_t *out_length);
_fn("tinf_model_prepack_note", [ModelHandle, c_char_p, c_size_t, POINTER(c_size_t)])
# tinf_status tinf_model_prepack_image(const tinf_model *model, const void *key, size_t key_size, void *dst,
#                                      size_t dst_size, size_t *out_size);
_fn("tinf_model_prepack_image", [ModelHandle, c_void_p, c_size_t, c_void_p, c_size_t, POINTER(c_size_t)])

# ---- result cache (issue 18): outputs answered by tinf_session_run ----

class ResultCacheHandle(c_void_p):
    """tinf_result_cache *"""


class ResultCacheStats(Structure):
    """tinf_result_cache_counts"""
    _fields_ = [(n, c_uint64) for n in ("hits", "misses", "evicted", "too_large", "collisions", "deferred",
                                         "entries", "bytes", "max_bytes", "seen")]


RESULT_CACHE_ADMIT_ALWAYS, RESULT_CACHE_ADMIT_REPEAT = 0, 1  # tinf_result_cache_admit

# tinf_status tinf_result_cache_create(size_t max_bytes, int32_t admit, size_t max_seen, int32_t hash_bits,
#                                      tinf_result_cache **out_cache);
_fn("tinf_result_cache_create", [c_size_t, c_int32, c_size_t, c_int32, POINTER(ResultCacheHandle)])
# void tinf_result_cache_free(tinf_result_cache *cache);
_fn("tinf_result_cache_free", [ResultCacheHandle], None)
# tinf_status tinf_result_cache_clear(tinf_result_cache *cache, size_t *out_dropped);
_fn("tinf_result_cache_clear", [ResultCacheHandle, POINTER(c_size_t)])
# tinf_status tinf_result_cache_stats(tinf_result_cache *cache, tinf_result_cache_counts *out_stats);
_fn("tinf_result_cache_stats", [ResultCacheHandle, POINTER(ResultCacheStats)])
# tinf_status tinf_session_set_result_cache(tinf_session *session, tinf_result_cache *cache, const void *key,
#                                           size_t key_size);
_fn("tinf_session_set_result_cache", [SessionHandle, ResultCacheHandle, c_void_p, c_size_t])
# ---- micro-batching queue (issue 17) ----


class BatcherHandle(c_void_p):
    """tinf_batcher *"""


class BatcherCounters(Structure):
    """tinf_batcher_counters"""
    _fields_ = [("requests", c_uint64), ("rows", c_uint64), ("batches", c_uint64), ("failed", c_uint64),
                ("isolated", c_uint64), ("queued", c_int64), ("running", c_int64), ("max_batch", c_int32),
                ("workers", c_int32), ("threads", c_int32)]


# tinf_status tinf_batcher_create(tinf_model *model, int32_t max_batch, int64_t max_delay_us, int32_t workers,
#                                 int32_t threads, tinf_batcher **out_batcher);
_fn("tinf_batcher_create", [ModelHandle, c_int32, c_int64, c_int32, c_int32, POINTER(BatcherHandle)])
# tinf_status tinf_batcher_run(tinf_batcher *batcher, int64_t rows, const void *const *inputs,
#                              const size_t *input_nbytes, int32_t n_inputs, void *const *outputs,
#                              const size_t *output_nbytes, int32_t n_outputs, int64_t timeout_us);
_fn("tinf_batcher_run", [BatcherHandle, c_int64, POINTER(c_void_p), POINTER(c_size_t), c_int32, POINTER(c_void_p),
                         POINTER(c_size_t), c_int32, c_int64])
# tinf_status tinf_batcher_submit(tinf_batcher *batcher, int64_t rows, const void *const *inputs,
#                                 const size_t *input_nbytes, int32_t n_inputs, void *const *outputs,
#                                 const size_t *output_nbytes, int32_t n_outputs, uint64_t tag);
_fn("tinf_batcher_submit", [BatcherHandle, c_int64, POINTER(c_void_p), POINTER(c_size_t), c_int32,
                            POINTER(c_void_p), POINTER(c_size_t), c_int32, c_uint64])
# The hot calls of tinyinfer.Batcher without argtypes (their conversion costs
# several us a call) nor the errcheck wrapper (the caller tests the status):
# every argument is passed as a prepared ctypes object.
# run blocks, so it lets the GIL go (CDLL); submit does not block (a short
# lock in the library) and keeps the GIL (PyDLL): letting it go and taking it
# back at every request made an event loop and the completion thread trade
# the GIL (a thread switch each) on every arun.
batcher_run_raw = lib["tinf_batcher_run"]  # lib[name] is a function object of its own
batcher_run_raw.restype = c_int32
batcher_submit_raw = ctypes.PyDLL(lib_path)["tinf_batcher_submit"]
batcher_submit_raw.restype = c_int32
# tinf_status tinf_batcher_completed(tinf_batcher *batcher, uint64_t *tags, int32_t *statuses, int32_t capacity,
#                                    int64_t timeout_us, int32_t *out_count);
_fn("tinf_batcher_completed", [BatcherHandle, POINTER(c_uint64), POINTER(c_int32), c_int32, c_int64,
                               POINTER(c_int32)])
# The same without the errcheck wrapper for tinyinfer.Batcher's completion
# thread, which tests the status itself (TINF_ERR_INVALID_STATE ends it).
batcher_completed_raw = lib["tinf_batcher_completed"]
batcher_completed_raw.argtypes = [BatcherHandle, POINTER(c_uint64), POINTER(c_int32), c_int32, c_int64,
                                  POINTER(c_int32)]
batcher_completed_raw.restype = c_int32
# tinf_status tinf_batcher_close(tinf_batcher *batcher, int32_t cancel);
_fn("tinf_batcher_close", [BatcherHandle, c_int32])
# void tinf_batcher_free(tinf_batcher *batcher);
_fn("tinf_batcher_free", [BatcherHandle], None)
# tinf_status tinf_batcher_stats(const tinf_batcher *batcher, tinf_batcher_counters *out);
_fn("tinf_batcher_stats", [BatcherHandle, POINTER(BatcherCounters)])
# tinf_status tinf_batcher_set_turn(tinf_batcher *batcher, int64_t turn_us);
_fn("tinf_batcher_set_turn", [BatcherHandle, c_int64])
# tinf_status tinf_batcher_set_notify_fd(tinf_batcher *batcher, int32_t fd);
_fn("tinf_batcher_set_notify_fd", [BatcherHandle, c_int32])
# ---- pruning (issue 15): sparse storage of converted sparse constants ----

# tinf_status tinf_builder_set_store_sparse(tinf_builder *builder, int32_t tensor, int32_t on);
_fn("tinf_builder_set_store_sparse", [BuilderHandle, c_int32, c_int32])
