/*
 * tinyinfer.h - the C API of tinyinfer, a small neural-network inference runtime.
 *
 * This header is the source of truth for the ABI: the Swift implementation is
 * checked against it by the compiler (`@c @implementation`).
 *
 * Quick start:
 *
 *     tinf_model *model = NULL;
 *     tinf_session *session = NULL;
 *     if (tinf_model_load_file("mlp.tinf", &model) != TINF_OK) {
 *         fprintf(stderr, "%s\n", tinf_last_error());
 *         return 1;
 *     }
 *     tinf_session_create(model, NULL, &session);
 *     tinf_session_set_input(session, 0, input, sizeof input);
 *     tinf_session_run(session);
 *     tinf_session_get_output(session, 0, output, sizeof output);
 *     tinf_session_free(session);
 *     tinf_model_free(model);
 *
 * Conventions
 * - Every name starts with tinf_ / TINF_. Handles are opaque pointers.
 * - Fallible calls return tinf_status (TINF_OK == 0) and write results through
 *   trailing out-parameters; on failure the out-parameters are left untouched
 *   unless said otherwise, and tinf_last_error() describes the failure.
 * - Byte counts are size_t, indices and counts int32_t.
 * - No call aborts the process: NULL handles, bad indices and wrong sizes return
 *   TINF_ERR_INVALID_ARGUMENT. Every pointer argument is required unless its
 *   function says it may be NULL; the message names the NULL argument.
 * - Each function lists the statuses it can return ("Statuses:").
 * - *_free(NULL) is a no-op.
 *
 * Threads
 * - A tinf_model is immutable once loaded: any number of threads may use it
 *   and create sessions from it at the same time.
 * - A tinf_session is used by one thread at a time (calls on one session must
 *   not overlap; runs are serialized by the session's lock, and
 *   tinf_session_free waits for a run in progress). Separate sessions run
 *   concurrently.
 * - tinf_builder, tinf_options: one thread at a time.
 * - The last-error message is per thread.
 */
#ifndef TINYINFER_H
#define TINYINFER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TINF_VERSION_MAJOR 0
#define TINF_VERSION_MINOR 1
#define TINF_VERSION_PATCH 0
/* Bumped on any incompatible change of this header; bindings refuse a
 * library whose tinf_abi_version() differs from the value they were built for. */
#define TINF_ABI_VERSION 1
/* The largest rank a tensor may have. */
#define TINF_MAX_RANK 8

/* ---- status and errors ---------------------------------------------------- */

/* Append-only: values never change meaning. */
typedef enum tinf_status {
  TINF_OK = 0,
  TINF_ERR_INVALID_ARGUMENT = 1, /* NULL handle, bad index, wrong size, bad value */
  TINF_ERR_IO = 2,               /* a file could not be opened, mapped or written */
  TINF_ERR_BAD_FORMAT = 3,       /* not a .tinf file, truncated, corrupt or inconsistent */
  TINF_ERR_VERSION = 4,          /* a .tinf major version this library does not read */
  TINF_ERR_UNSUPPORTED_OP = 5,   /* an op, attribute or shape the kernels do not support */
  TINF_ERR_UNSUPPORTED_DTYPE = 6,/* a dtype an op does not support */
  TINF_ERR_SHAPE = 7,            /* shapes that do not fit together */
  TINF_ERR_OUT_OF_MEMORY = 8,
  TINF_ERR_INVALID_STATE = 9,    /* a call in the wrong order */
  TINF_ERR_INTERNAL = 10,
  TINF_ERR_RUNTIME = 11          /* a run failed on its data (for example a Gather index out of range) */
} tinf_status;

/* A static, human-readable name for a status ("ok", "invalid argument", ...).
 * Never NULL; unknown values give "unknown status". */
const char *tinf_status_string(tinf_status status);

/* The message of the last failed call made on this thread, or "" if none.
 * Owned by the library; valid until the next tinf_ call on this thread. */
const char *tinf_last_error(void);

/* ---- versions ------------------------------------------------------------- */

/* "MAJOR.MINOR.PATCH" of the library (static storage). */
const char *tinf_version_string(void);
/* TINF_ABI_VERSION of the library as built. */
int32_t tinf_abi_version(void);
/* The newest .tinf format version this library writes (a file gets the
 * oldest minor that holds it: 1.0 unless it stores a constant sparse); it
 * reads every minor version of the same major (see docs/format.md). */
int32_t tinf_format_version_major(void);
int32_t tinf_format_version_minor(void);

/* ---- CPU ------------------------------------------------------------------ */

/* The instruction-set level the kernels run at, chosen once when the library
 * is first used: the best the CPU and the OS support ("baseline", "avx2" or
 * "avx512" on x86-64; "baseline" or "dotprod" on AArch64; "baseline"
 * elsewhere), or a lower one when the environment variable TINYINFER_ISA
 * names it (for testing; a higher or unknown name is ignored).
 * Static storage, never NULL. Thread-safe. Cannot fail. */
const char *tinf_cpu_isa(void);
/* The best level the CPU and the OS support, whatever TINYINFER_ISA says.
 * Static storage, never NULL. Thread-safe. Cannot fail. */
const char *tinf_cpu_isa_detected(void);
/* The CPU features the detection found, space-separated (for example
 * "sse4.2 avx avx2 fma f16c avx512f avx512bw avx512vl avx512dq avx512vnni");
 * "avx512vnni" means the int8 kernels use vpdpbusd at the avx512 level.
 * Static storage, never NULL. Thread-safe. Cannot fail. */
const char *tinf_cpu_features(void);

/* ---- element types -------------------------------------------------------- */

/* Append-only; the values are the dtype codes of the .tinf format. */
typedef enum tinf_dtype {
  TINF_DTYPE_FLOAT32 = 1,
  TINF_DTYPE_FLOAT16 = 2,
  TINF_DTYPE_INT8 = 3,
  TINF_DTYPE_UINT8 = 4,
  TINF_DTYPE_INT32 = 5,
  TINF_DTYPE_INT64 = 6,
  TINF_DTYPE_INT16 = 7,
  TINF_DTYPE_BOOL = 8
} tinf_dtype;

/* Size in bytes of one element, or 0 for an unknown dtype. */
size_t tinf_dtype_size(int32_t dtype);

/* Description of a model input or output. */
typedef struct tinf_tensor_info {
  const char *name;              /* NUL-terminated, owned by the model: valid while the model lives */
  int32_t dtype;                 /* a tinf_dtype */
  int32_t rank;                  /* 0..TINF_MAX_RANK */
  int64_t dims[TINF_MAX_RANK];   /* dims[0..rank-1]; the rest are 0 */
  size_t nbytes;                 /* bytes of the whole tensor */
} tinf_tensor_info;

/* ---- models --------------------------------------------------------------- */

typedef struct tinf_model tinf_model;

/* Loads a .tinf file by memory-mapping it read-only: weights are used in place.
 * The file is validated completely (offsets, sizes, shapes, attributes) before
 * this returns. path: borrowed, NUL-terminated. On success *out_model owns a new
 * model that the caller frees with tinf_model_free. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (NULL argument, unknown flags);
 * TINF_ERR_IO (missing, unreadable, or not a regular file: FIFO, device, socket, directory);
 * TINF_ERR_BAD_FORMAT; TINF_ERR_VERSION; TINF_ERR_UNSUPPORTED_OP; TINF_ERR_UNSUPPORTED_DTYPE; TINF_ERR_SHAPE;
 * TINF_ERR_OUT_OF_MEMORY */
tinf_status tinf_model_load_file(const char *path, tinf_model **out_model);

/* Loads a model from a caller's buffer. If data is 64-byte aligned the buffer is
 * borrowed, used in place, and must stay valid and unchanged until the model
 * (and every session made from it) is freed; otherwise the library copies it
 * into an aligned buffer of its own and the caller may free data on return. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (NULL argument, unknown flags); TINF_ERR_BAD_FORMAT (also an
 * empty buffer); TINF_ERR_VERSION; TINF_ERR_UNSUPPORTED_OP; TINF_ERR_UNSUPPORTED_DTYPE; TINF_ERR_SHAPE;
 * TINF_ERR_OUT_OF_MEMORY */
tinf_status tinf_model_load_buffer(const void *data, size_t size, tinf_model **out_model);

/* Flags of tinf_model_load_file_flags and tinf_model_load_buffer_flags (a bit
 * set). Append-only. With neither TINF_LOAD_DENSE nor TINF_LOAD_SPARSE_ALWAYS,
 * an op whose weight density is close to its sparse kernel's threshold is
 * timed on both kernels during the load (at most 10 ms of timing per load)
 * and gets the faster; TINYINFER_SPARSE_MEASURE=0 in the environment turns
 * that off (docs/pruning.md). */
typedef enum tinf_load_flag {
  TINF_LOAD_NO_GRAPH_PASSES = 1, /* skip the graph optimization passes (constant folding still runs) */
  TINF_LOAD_DENSE = 2,           /* keep every op on the dense kernels (no sparse kernel is chosen; docs/pruning.md) */
  TINF_LOAD_SPARSE_ALWAYS = 4    /* the sparse kernel for every op that has one and any zero weight (benchmarks);
                                    TINF_LOAD_DENSE wins when both are set */
} tinf_load_flag;

/* tinf_model_load_file and tinf_model_load_buffer with flags (0: the same as
 * without). Unknown bits give TINF_ERR_INVALID_ARGUMENT. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (NULL argument, unknown flags);
 * TINF_ERR_IO (missing, unreadable, or not a regular file: FIFO, device, socket, directory);
 * TINF_ERR_BAD_FORMAT; TINF_ERR_VERSION; TINF_ERR_UNSUPPORTED_OP; TINF_ERR_UNSUPPORTED_DTYPE; TINF_ERR_SHAPE;
 * TINF_ERR_OUT_OF_MEMORY */
tinf_status tinf_model_load_file_flags(const char *path, uint32_t flags, tinf_model **out_model);
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (NULL argument, unknown flags); TINF_ERR_BAD_FORMAT (also an
 * empty buffer); TINF_ERR_VERSION; TINF_ERR_UNSUPPORTED_OP; TINF_ERR_UNSUPPORTED_DTYPE; TINF_ERR_SHAPE;
 * TINF_ERR_OUT_OF_MEMORY */
tinf_status tinf_model_load_buffer_flags(const void *data, size_t size, uint32_t flags, tinf_model **out_model);

/* Releases the caller's reference. Sessions keep their model alive, so models
 * and sessions may be freed in any order. NULL is a no-op. */
void tinf_model_free(tinf_model *model);

/* Number of graph inputs / outputs. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument) */
tinf_status tinf_model_input_count(const tinf_model *model, int32_t *out_count);
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument) */
tinf_status tinf_model_output_count(const tinf_model *model, int32_t *out_count);
/* Describes input / output `index` (0-based). The name inside *out_info is
 * owned by the model. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, index out of range) */
tinf_status tinf_model_input_info(const tinf_model *model, int32_t index, tinf_tensor_info *out_info);
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, index out of range) */
tinf_status tinf_model_output_info(const tinf_model *model, int32_t index, tinf_tensor_info *out_info);
/* Index of the input / output with this name; TINF_ERR_INVALID_ARGUMENT if none. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, no input of that name) */
tinf_status tinf_model_find_input(const tinf_model *model, const char *name, int32_t *out_index);
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, no output of that name) */
tinf_status tinf_model_find_output(const tinf_model *model, const char *name, int32_t *out_index);

/* Metadata key/value pairs (model name, producer, free entries). The strings
 * are NUL-terminated and owned by the model. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument) */
tinf_status tinf_model_metadata_count(const tinf_model *model, int32_t *out_count);
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, index out of range) */
tinf_status tinf_model_metadata(const tinf_model *model, int32_t index, const char **out_key, const char **out_value);
/* Counts of the graph: ops, tensors, and bytes of constant data. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument) */
tinf_status tinf_model_stats(const tinf_model *model, int32_t *out_ops, int32_t *out_tensors, size_t *out_weight_bytes);

/* Every tensor of the loaded graph (after constant folding), for tools. */
typedef struct tinf_tensor_detail {
  const char *name;              /* owned by the model */
  int32_t dtype;
  int32_t rank;
  int64_t dims[TINF_MAX_RANK];
  size_t nbytes;
  int32_t kind;                  /* 0 computed by an op, 1 constant from the file, 2 folded at load, 3 graph input */
  int32_t quant_axis;            /* -1 per tensor (or no quantization) */
  int32_t quant_count;           /* number of scales; 0 when not quantized */
  const float *scales;           /* quant_count values, owned by the model */
  const int32_t *zero_points;    /* quant_count values, owned by the model */
} tinf_tensor_detail;

/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument) */
tinf_status tinf_model_tensor_count(const tinf_model *model, int32_t *out_count);
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, index out of range) */
tinf_status tinf_model_tensor_detail(const tinf_model *model, int32_t index, tinf_tensor_detail *out_detail);
/* Op `index` of the graph as it runs (after folding): its op id and tensor
 * indices (-1: absent optional input). The arrays are owned by the model. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, index out of range) */
tinf_status tinf_model_op(const tinf_model *model, int32_t index, int32_t *out_op, int32_t *out_n_inputs,
                          const int32_t **out_inputs, int32_t *out_n_outputs, const int32_t **out_outputs);
/* Bytes of the file's parts: header, graph section, data section, and the
 * bytes that constant folding added in memory at load. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument) */
tinf_status tinf_model_sizes(const tinf_model *model, size_t *out_header, size_t *out_graph, size_t *out_data,
                             size_t *out_folded);
/* Nanoseconds that loading took (map, parse, validate, fold). */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument) */
tinf_status tinf_model_load_ns(const tinf_model *model, uint64_t *out_ns);
/* What the load-time passes did, one line each in order: constant folding
 * ("fold constant Dequantize -> w1"), then the graph passes ("fold BatchNorm
 * 'bn1' into Conv2D 'conv1'", "fuse Relu 'r1' into Conv2D 'bn1'",
 * "reorder: arena 53440 -> 34496 B", ...; docs/architecture.md). The
 * strings are NUL-terminated and owned by the model. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument) */
tinf_status tinf_model_pass_count(const tinf_model *model, int32_t *out_count);
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, index out of range) */
tinf_status tinf_model_pass(const tinf_model *model, int32_t index, const char **out_text);

/* ---- session options ------------------------------------------------------ */

typedef struct tinf_options tinf_options;

/* Default options: 1 thread. The caller frees them with tinf_options_free;
 * sessions copy what they need, so options may be freed right after use. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument) */
tinf_status tinf_options_create(tinf_options **out_options);
void tinf_options_free(tinf_options *options);
/* Threads a session may use, 1..256 (0 means the number of online CPUs). A
 * session with two or more threads times its runs 16-47 of every 2048 in
 * blocks of eight on one thread and on all, and runs on one thread when all
 * were not at least 3% faster (outputs are the same either way);
 * TINYINFER_THREAD_PICK=0 in the environment when the session is made
 * turns this off. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (NULL options, threads outside 0...256) */
tinf_status tinf_options_set_threads(tinf_options *options, int32_t threads);

/* Replaces the shape of input `index` for sessions made with these options
 * (for example a batch of 32 instead of the file's 1). Shapes are inferred
 * again when the session is created; an op that cannot take the new shape
 * makes tinf_session_create fail with its reason. dims: borrowed. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (NULL options, index out of range, rank outside 0...8, NULL
 * dims with rank > 0, a dims[i] outside 1...2^30) */
tinf_status tinf_options_set_input_shape(tinf_options *options, int32_t index, int32_t rank, const int64_t *dims);

/* ---- sessions ------------------------------------------------------------- */

typedef struct tinf_session tinf_session;

/* Creates a session: plans and allocates its arena and binds the kernels.
 * model: borrowed; the session keeps its own reference to it.
 * options: borrowed, may be NULL for defaults.
 * On success *out_session is owned by the caller (tinf_session_free). */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, an input shape the model cannot take, work
 * over the limit: tinf_options_set_max_work); TINF_ERR_SHAPE; TINF_ERR_UNSUPPORTED_OP;
 * TINF_ERR_UNSUPPORTED_DTYPE; TINF_ERR_OUT_OF_MEMORY (the arena over its limit or not allocated) */
tinf_status tinf_session_create(tinf_model *model, const tinf_options *options, tinf_session **out_session);
/* Frees a session. A run of it in progress on another thread is waited for
 * (its memory is never freed under it); the handle must not be used after
 * the call returns. NULL is a no-op. */
void tinf_session_free(tinf_session *session);

/* Copies nbytes from data into input `index`; nbytes must equal the input's size. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, index out of range, nbytes not the tensor's
 * size) */
tinf_status tinf_session_set_input(tinf_session *session, int32_t index, const void *data, size_t nbytes);
/* Zero-copy input: the session's own buffer for input `index`, to be written by
 * the caller before tinf_session_run. Owned by the session; valid until the
 * session is freed. Inputs are never overwritten by a run. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, index out of range) */
tinf_status tinf_session_input_data(tinf_session *session, int32_t index, void **out_data, size_t *out_nbytes);
/* Input / output descriptions as this session runs them (they differ from the
 * model's when tinf_options_set_input_shape was used). Names owned by the model. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, index out of range) */
tinf_status tinf_session_input_info(const tinf_session *session, int32_t index, tinf_tensor_info *out_info);
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, index out of range) */
tinf_status tinf_session_output_info(const tinf_session *session, int32_t index, tinf_tensor_info *out_info);
/* Runs the graph once on the current inputs (a session bound to a result
 * cache answers inputs stored there by copying the stored outputs into its
 * output buffers: section "result cache"). */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (NULL session); TINF_ERR_INVALID_STATE (the session is being
 * freed by another thread); TINF_ERR_RUNTIME (a run failed on its data, e.g. a Gather index out of range) */
tinf_status tinf_session_run(tinf_session *session);
/* Copies output `index` into dst; nbytes must equal the output's size. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, index out of range, nbytes not the tensor's
 * size) */
tinf_status tinf_session_get_output(tinf_session *session, int32_t index, void *dst, size_t nbytes);
/* Zero-copy output: a read-only pointer to output `index`, owned by the
 * session, valid until the next tinf_session_run or tinf_session_free. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, index out of range) */
tinf_status tinf_session_output_data(tinf_session *session, int32_t index, const void **out_data, size_t *out_nbytes);
/* Bytes of the session's arena (all intermediate tensors, inputs and outputs),
 * and the sum of their sizes without reuse, for comparison. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument) */
tinf_status tinf_session_arena_bytes(const tinf_session *session, size_t *out_arena, size_t *out_unplanned);
/* Runs once like tinf_session_run and records each op's time; then
 * *out_ns points to tinf_model_op count values (nanoseconds, owned by the
 * session, valid until the next run or free). */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument); TINF_ERR_INVALID_STATE; TINF_ERR_RUNTIME
 * (as tinf_session_run) */
tinf_status tinf_session_run_profiled(tinf_session *session, const uint64_t **out_ns, int32_t *out_count);
/* Threads the session actually uses. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument) */
tinf_status tinf_session_threads(const tinf_session *session, int32_t *out_threads);

/* ---- op and attribute names ------------------------------------------------ */

/* Name of op id `op` ("Conv2D", ...) or NULL if the id is unknown (static storage).
 * Ids are the op codes of the .tinf format; ids 1..tinf_op_count() exist. */
const char *tinf_op_name(int32_t op);
int32_t tinf_op_count(void);

/* Flags of tinf_op_traits (a bit set). Append-only. */
typedef enum tinf_op_flag {
  TINF_OP_FUSED_ACTIVATION = 1, /* its float32 kernel applies the `activation` attribute (a Relu/Relu6 after it fuses) */
  TINF_OP_IN_PLACE = 2,         /* output 0 may share input 0's buffer */
  TINF_OP_INT8_KERNEL = 4,      /* it has an integer kernel for int8 input with quantization parameters */
  TINF_OP_HYBRID_KERNEL = 8     /* int8-dynamic / int4 rewrite it to the hybrid FullyConnected kernel */
} tinf_op_flag;

/* What the core knows of op id `op` (its op-traits table, the same facts
 * the library's passes use): the inputs it takes (*out_min_inputs to
 * *out_max_inputs; an absent optional input counts), the most outputs it
 * makes (it makes at least 1), tinf_op_flag bits, and the input slots that
 * hold weights (bit i: input i). Every out pointer may be NULL. Unknown id:
 * TINF_ERR_UNSUPPORTED_OP. No allocation, any thread. */
/* Statuses: TINF_OK; TINF_ERR_UNSUPPORTED_OP (unknown op id); every out pointer may be NULL */
tinf_status tinf_op_traits(int32_t op, int32_t *out_min_inputs, int32_t *out_max_inputs, int32_t *out_max_outputs,
                           uint32_t *out_flags, uint32_t *out_weight_slots);
/* Name of attribute key `key` ("strides", ...) or NULL if unknown; keys 1..tinf_attr_count(). */
const char *tinf_attr_name(int32_t key);
int32_t tinf_attr_count(void);

/* ---- building .tinf files -------------------------------------------------- */

typedef struct tinf_builder tinf_builder;

/* A builder assembles a graph and serializes it as a .tinf file. Every
 * pointer argument is borrowed for the duration of the call only (data is
 * copied). Owned by the caller: tinf_builder_free. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument) */
tinf_status tinf_builder_create(tinf_builder **out_builder);
void tinf_builder_free(tinf_builder *builder);
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, a key or value over the format's limits) */
tinf_status tinf_builder_set_metadata(tinf_builder *builder, const char *key, const char *value);
/* Adds a tensor. rank -1 leaves the shape to inference (intermediates only).
 * data/nbytes: the constant's contents (nbytes must match), or NULL/0 for a
 * tensor computed at run time. dtype 0 leaves the dtype to inference. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL builder, name or out_index; TINF_ERR_NULL data with
 * nbytes > 0 or data with nbytes 0; TINF_ERR_nbytes not the constant's size; TINF_ERR_a bad rank or dims[i]);
 * TINF_ERR_UNSUPPORTED_DTYPE */
tinf_status tinf_builder_add_tensor(tinf_builder *builder, const char *name, int32_t dtype, int32_t rank,
                                    const int64_t *dims, const void *data, size_t nbytes, int32_t *out_index);
/* Quantization parameters: axis -1 for per-tensor (count 1), else per-axis. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, a bad index, count or value);
 * TINF_ERR_UNSUPPORTED_OP; TINF_ERR_UNSUPPORTED_DTYPE */
tinf_status tinf_builder_set_quant(tinf_builder *builder, int32_t tensor, int32_t axis, int32_t count,
                                   const float *scales, const int32_t *zero_points);
/* Appends an op (execution order is the order of calls). An input of -1 is an
 * absent optional input. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, a bad index, count or value);
 * TINF_ERR_UNSUPPORTED_OP; TINF_ERR_UNSUPPORTED_DTYPE */
tinf_status tinf_builder_add_op(tinf_builder *builder, int32_t op, int32_t n_inputs, const int32_t *inputs,
                                int32_t n_outputs, const int32_t *outputs, int32_t *out_index);
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, a bad index, count or value);
 * TINF_ERR_UNSUPPORTED_OP; TINF_ERR_UNSUPPORTED_DTYPE */
tinf_status tinf_builder_set_attr_int(tinf_builder *builder, int32_t op_index, int32_t key, int64_t value);
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, a bad index, count or value);
 * TINF_ERR_UNSUPPORTED_OP; TINF_ERR_UNSUPPORTED_DTYPE */
tinf_status tinf_builder_set_attr_float(tinf_builder *builder, int32_t op_index, int32_t key, float value);
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, a bad index, count or value);
 * TINF_ERR_UNSUPPORTED_OP; TINF_ERR_UNSUPPORTED_DTYPE */
tinf_status tinf_builder_set_attr_ints(tinf_builder *builder, int32_t op_index, int32_t key, int32_t count,
                                       const int64_t *values);
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, a bad index, count or value);
 * TINF_ERR_UNSUPPORTED_OP; TINF_ERR_UNSUPPORTED_DTYPE */
tinf_status tinf_builder_set_attr_floats(tinf_builder *builder, int32_t op_index, int32_t key, int32_t count,
                                         const float *values);
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, a bad index, count or value);
 * TINF_ERR_UNSUPPORTED_OP; TINF_ERR_UNSUPPORTED_DTYPE */
tinf_status tinf_builder_set_attr_string(tinf_builder *builder, int32_t op_index, int32_t key, const char *value);
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, a bad index, count or value);
 * TINF_ERR_UNSUPPORTED_OP; TINF_ERR_UNSUPPORTED_DTYPE */
tinf_status tinf_builder_set_graph_inputs(tinf_builder *builder, int32_t count, const int32_t *tensors);
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, a bad index, count or value);
 * TINF_ERR_UNSUPPORTED_OP; TINF_ERR_UNSUPPORTED_DTYPE */
tinf_status tinf_builder_set_graph_outputs(tinf_builder *builder, int32_t count, const int32_t *tensors);
/* Serializes the graph and validates it by loading it (shape inference
 * included), so a builder never writes a file the library refuses.
 * Afterwards tinf_builder_data gives the bytes: owned by the builder, valid
 * until the builder is changed or freed. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (NULL builder); TINF_ERR_any status of tinf_model_load_buffer
 * (the bytes are validated by loading them) */
tinf_status tinf_builder_finish(tinf_builder *builder);
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument); TINF_ERR_INVALID_STATE (no successful
 * finish since the last change) */
tinf_status tinf_builder_data(const tinf_builder *builder, const void **out_data, size_t *out_nbytes);

/* ---- quantization ----------------------------------------------------------- */

/* A quantizer turns a loaded float32 model into a quantized .tinf file
 * (docs/quantization.md). Typical use:
 *
 *     tinf_quantizer *q = NULL;
 *     tinf_quantizer_create(model, TINF_QUANT_INT8_STATIC, &q);
 *     for each calibration sample: tinf_quantizer_observe(q, 1, &ptr, &nbytes);
 *     tinf_quantizer_finish(q);
 *     tinf_quantizer_data(q, &data, &size);   write data to a file
 *     tinf_quantizer_free(q);
 *
 * The quantizer keeps its own reference to the model. One thread at a time. */

/* Modes. Append-only. */
typedef enum tinf_quant_mode {
  TINF_QUANT_FP16 = 1,         /* float32 weights stored as float16 (folded back to float32 at load) */
  TINF_QUANT_INT8_DYNAMIC = 2, /* FullyConnected/MatMul weights int8 per channel; activations quantized per row at run time */
  TINF_QUANT_INT8_STATIC = 3,  /* full integer, TFLite int8 spec, from calibration (observe first) */
  TINF_QUANT_INT4 = 4          /* FullyConnected/MatMul weights int4, blocks of 32 with a float16 scale */
} tinf_quant_mode;

/* How calibration chooses an activation's range (int8-static). Append-only. */
typedef enum tinf_calib_method {
  TINF_CALIB_MINMAX = 1,     /* observed min and max (the default) */
  TINF_CALIB_PERCENTILE = 2, /* the p and 100-p percentiles (p = 99.99 by default) */
  TINF_CALIB_MSE = 3,        /* the clipping range minimizing the quantization's mean squared error */
  TINF_CALIB_ENTROPY = 4     /* the |x| threshold minimizing the KL divergence (TensorRT) */
} tinf_calib_method;

typedef struct tinf_quantizer tinf_quantizer;

/* Creates a quantizer for `model` (borrowed; the quantizer keeps a reference). */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, unknown mode); TINF_ERR_UNSUPPORTED_OP;
 * TINF_ERR_OUT_OF_MEMORY */
tinf_status tinf_quantizer_create(tinf_model *model, int32_t mode, tinf_quantizer **out_quantizer);
void tinf_quantizer_free(tinf_quantizer *quantizer);
/* A tinf_calib_method; percentile is used by TINF_CALIB_PERCENTILE (50..100;
 * 0 keeps the current value). May be changed between finishes. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (NULL quantizer, unknown method or bad percentile) */
tinf_status tinf_quantizer_set_method(tinf_quantizer *quantizer, int32_t method, float percentile);
/* Runs the float32 model once on one set of inputs (n_inputs buffers in
 * input order, nbytes[i] each, exactly the input's size; copied) and records
 * the range and histogram of every float32 tensor. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, wrong input count or byte sizes);
 * TINF_ERR_INVALID_STATE (a mode without calibration); TINF_ERR_RUNTIME */
tinf_status tinf_quantizer_observe(tinf_quantizer *quantizer, int32_t n_inputs, const void *const *inputs,
                                   const size_t *nbytes);
/* Number of observe calls so far. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument) */
tinf_status tinf_quantizer_sample_count(const tinf_quantizer *quantizer, int64_t *out_count);
/* For tensor `tensor` of the model (tinf_model_tensor_detail index): the
 * range the current method chooses and the observed min and max. Any
 * out-pointer may be NULL. TINF_ERR_INVALID_STATE without calibration data. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (NULL quantizer, index out of range); TINF_ERR_INVALID_STATE
 * (no calibration data) */
tinf_status tinf_quantizer_tensor_range(const tinf_quantizer *quantizer, int32_t tensor, float *out_lo, float *out_hi,
                                        float *out_min, float *out_max);
/* Layers: the ops of the model this mode quantizes. For layer `layer`: its op
 * index (tinf_model_op), op id, name (its first output's name, owned by the
 * quantizer) and whether the last finish quantized it (0 before any). */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument) */
tinf_status tinf_quantizer_layer_count(const tinf_quantizer *quantizer, int32_t *out_count);
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, index out of range) */
tinf_status tinf_quantizer_layer(const tinf_quantizer *quantizer, int32_t layer, int32_t *out_op_index,
                                 int32_t *out_op, const char **out_name, int32_t *out_quantized);
/* Keeps layer `layer` in float32 (keep != 0) or not, for the next finish. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, index out of range) */
tinf_status tinf_quantizer_keep_float(tinf_quantizer *quantizer, int32_t layer, int32_t keep);
/* Rewrites and serializes. May be called again (after keep_float or
 * set_method); each call resets the comparison sums. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (NULL quantizer); TINF_ERR_INVALID_STATE (int8-static without
 * calibration data); TINF_ERR_UNSUPPORTED_OP; TINF_ERR_OUT_OF_MEMORY */
tinf_status tinf_quantizer_finish(tinf_quantizer *quantizer);
/* The file of the last finish: owned by the quantizer, valid until the next
 * finish or free. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument); TINF_ERR_INVALID_STATE (no finish yet) */
tinf_status tinf_quantizer_data(const tinf_quantizer *quantizer, const void **out_data, size_t *out_nbytes);
/* Runs the float32 and the quantized model on the same inputs and adds, per
 * layer output and per graph output, sum(x^2) and sum((x - x_quantized)^2)
 * (int8 tensors dequantized). SQNR in dB = 10 log10(signal / noise). */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, wrong input count or byte sizes);
 * TINF_ERR_INVALID_STATE (no finish yet); TINF_ERR_RUNTIME */
tinf_status tinf_quantizer_compare(tinf_quantizer *quantizer, int32_t n_inputs, const void *const *inputs,
                                   const size_t *nbytes);
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, index out of range) */
tinf_status tinf_quantizer_layer_error(const tinf_quantizer *quantizer, int32_t layer, double *out_signal,
                                       double *out_noise);
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, index out of range) */
tinf_status tinf_quantizer_output_error(const tinf_quantizer *quantizer, int32_t output, double *out_signal,
                                        double *out_noise);

/* ---- monitoring and memory analysis (issue 19: tinyinfer.Monitor, inspect --memory) ---- */

/* Memory the model holds, in bytes: the whole file (mapped read-only when
 * loaded from a path, an owned copy when loaded from a buffer), the constant
 * data (weights) the graph uses as loaded, the constants folded at load
 * (owned), and the weights repacked at load for the kernels (owned, shared
 * by every session of the model). Any out pointer may be NULL.
 * Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT when model is NULL. */
tinf_status tinf_model_memory(const tinf_model *model, size_t *out_file, size_t *out_weights, size_t *out_folded,
                              size_t *out_packed);

/* One tensor's place in a session's arena, as the memory planner chose it. */
typedef struct tinf_plan_entry {
  int32_t buffer;                /* arena buffer index; -1: not in the arena (constant, unused) and nothing below is set */
  int32_t first_op;              /* first op the tensor is alive at (graph inputs: 0) */
  int32_t last_op;               /* last op that reads it; graph inputs and outputs: the op count (alive to the end) */
  size_t offset;                 /* bytes from the start of the arena */
  size_t nbytes;                 /* the tensor's bytes */
  size_t buffer_bytes;           /* the buffer's bytes (64-byte aligned); tensors an op computes in place share their
                                    input's buffer (same index and offset) */
} tinf_plan_entry;

/* Entry for tensor `tensor` (0 .. tinf_model_tensor_count - 1) of the
 * session's plan: together the entries give the arena timeline (which
 * tensors are alive at each op, bytes over the op sequence).
 * Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT for a NULL pointer or a
 * tensor index out of range. */
tinf_status tinf_session_plan_entry(const tinf_session *session, int32_t tensor, tinf_plan_entry *out_entry);

/* Run-time log for monitors: with log set (capacity + 2 uint64 values,
 * borrowed: the caller keeps it alive and unchanged until it detaches it or
 * frees the session), each successful tinf_session_run increments log[0]
 * (runs since the caller zeroed it); a timed run also writes its nanoseconds
 * to log[2 + log[1] % capacity] and increments log[1]. Every run is timed
 * while runs take 16 us or more; after a shorter one the next 15 are not
 * (two clock reads, ~50 ns, would be a few percent of such runs), unless
 * flags has TINF_RUN_LOG_EVERY_RUN. log NULL (capacity and flags ignored)
 * detaches. Costs one branch per run when detached. Not synchronized: set
 * it while no run of the session is under way.
 * Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT for a NULL session, unknown
 * flags, or a capacity < 1 (or one whose log would not fit in memory) with a log. */
typedef enum tinf_run_log_flag { TINF_RUN_LOG_EVERY_RUN = 1 } tinf_run_log_flag;
tinf_status tinf_session_set_run_log(tinf_session *session, uint64_t *log, int64_t capacity, uint32_t flags);
/* ---- batch planning (issue 17: batch sizes under a memory budget) ---------- */

/* Bytes a session running `batch` items at once needs, from the memory
 * planner, without allocating or running anything: *out_arena is the arena
 * when the first dimension of every input is `batch` (the other dimensions as
 * set by tinf_options_set_input_shape, else the file's); *out_model_bytes is
 * what the model itself holds in memory whatever the batch (its constants,
 * the tensors folded at load and the packed weights), shared by every
 * session of the model. Kernel scratch memory (the int8 kernels' row
 * buffers, a few per thread) is not counted. options: borrowed, may be NULL.
 * Either out pointer may be NULL.
 * Statuses: TINF_ERR_INVALID_ARGUMENT (NULL model, batch outside 1..2^30),
 * TINF_ERR_SHAPE or TINF_ERR_UNSUPPORTED_OP (an input without a first
 * dimension, or an op that cannot take that batch, with its reason).
 * Any thread; no allocation beyond the planning itself. */
tinf_status tinf_model_batch_bytes(const tinf_model *model, const tinf_options *options, int64_t batch,
                                   size_t *out_arena, size_t *out_model_bytes);

/* Chooses a batch size under a memory budget. The largest batch B (at most
 * batch_limit; 0 means 2^30) whose arena + model bytes + B * item_bytes fits
 * in budget_bytes is found with the planner alone (item_bytes: what the
 * caller keeps per item besides the session, e.g. staging buffers; may be 0).
 * The candidates are the powers of two below B and B itself (the `capacity`
 * largest of them; 32 always suffice): out_batches, out_bytes (their bytes,
 * as above) and out_items_per_second get one entry each, ascending, and
 * *out_count their number. With measure_ms > 0, a session with the options'
 * threads runs each candidate for about measure_ms / count milliseconds
 * (after one warm-up run; the figure is the best run's items per second,
 * counting overhead_ns more per run: what the caller spends on each batch
 * besides the run, e.g. a Python call and its copies; may be 0) and
 * *out_best is the index of the smallest candidate within 5% of the highest
 * throughput; with measure_ms = 0 nothing runs, the rates are 0 and
 * *out_best is the largest. Measuring takes about measure_ms plus one run
 * per candidate, allocates one candidate's session at a time and frees it.
 * A batch the graph cannot take (a Reshape to a fixed batch) counts as not
 * fitting. Arrays: caller-owned, `capacity` entries each.
 * Statuses: TINF_ERR_INVALID_ARGUMENT (NULL pointer, capacity < 1, bad
 * limits or threads); TINF_ERR_OUT_OF_MEMORY when batch 1 does not fit: then
 * out_batches[0] = 1, out_bytes[0] = the bytes batch 1 needs, *out_count = 0,
 * and tinf_last_error() says both figures; TINF_ERR_SHAPE /
 * TINF_ERR_UNSUPPORTED_OP when batch 1 cannot be planned; the statuses of
 * tinf_session_create and tinf_session_run while measuring.
 * Any thread, concurrently with other calls on the model (it is only read). */
tinf_status tinf_model_batch_plan(tinf_model *model, const tinf_options *options, size_t budget_bytes,
                                  size_t item_bytes, int64_t batch_limit, uint32_t measure_ms, uint32_t overhead_ns,
                                  int32_t capacity, int64_t *out_batches, size_t *out_bytes,
                                  double *out_items_per_second, int32_t *out_count, int32_t *out_best);
/* ---- pruning (docs/pruning.md) ---------------------------------------------- */

/* A pruner sets weights of a loaded float32 model to zero and writes the
 * pruned model as a new .tinf file. Layers are the FullyConnected and
 * Conv2D ops with constant float32 weights: rows of k values per output
 * channel ([N, K]; a Conv2D's [Cout, KH, KW, Cin / groups] flattened), the
 * innermost `run` values of a row (K, or Cin / groups) holding N:M groups.
 * Typical use:
 *
 *     tinf_pruner *p = NULL;
 *     tinf_pruner_create(model, &p);
 *     tinf_pruner_magnitude(p, -1, 0.8f);        one threshold over all layers
 *     tinf_pruner_finish(p);
 *     tinf_pruner_data(p, &data, &size);          write data to a file
 *     tinf_pruner_free(p);
 *
 * The pruner keeps its own reference to the model. One thread at a time.
 * Statuses: TINF_ERR_INVALID_ARGUMENT for a NULL handle or pointer, a layer
 * out of range, a sparsity outside [0, 1), an N:M pattern a layer cannot
 * hold, a count that differs from the layer's; TINF_ERR_INVALID_STATE for
 * tinf_pruner_data before a finish; TINF_ERR_OUT_OF_MEMORY. */
typedef struct tinf_pruner tinf_pruner;

tinf_status tinf_pruner_create(tinf_model *model, tinf_pruner **out_pruner);
void tinf_pruner_free(tinf_pruner *pruner);
tinf_status tinf_pruner_layer_count(const tinf_pruner *pruner, int32_t *out_count);
/* Layer `layer`: its op index (tinf_model_op), output channels n, values per
 * output channel k, innermost run, input channels of its input tensor (the
 * last dim), and name (its first output's, owned by the pruner). Any
 * out-pointer may be NULL. */
tinf_status tinf_pruner_layer(const tinf_pruner *pruner, int32_t layer, int32_t *out_op_index, int64_t *out_n,
                              int64_t *out_k, int64_t *out_run, int64_t *out_input_channels, const char **out_name);
/* Copies the layer's current n * k weights into dst (count must be n * k). */
tinf_status tinf_pruner_get_weights(const tinf_pruner *pruner, int32_t layer, float *dst, size_t count);
/* Replaces them (count n * k finite values). */
tinf_status tinf_pruner_set_weights(tinf_pruner *pruner, int32_t layer, const float *src, size_t count);
/* Zeros the fraction `sparsity` (in [0, 1)) of weights of smallest magnitude,
 * of one layer or (layer -1) of all layers under one threshold. */
tinf_status tinf_pruner_magnitude(tinf_pruner *pruner, int32_t layer, double sparsity);
/* Keeps the n largest of every m consecutive weights of each row's
 * innermost run (1 <= n < m <= 64): one layer (its run a multiple of m, else
 * TINF_ERR_INVALID_ARGUMENT), or (layer -1) every layer that can hold it;
 * out_skipped (may be NULL) gets how many layers could not. */
tinf_status tinf_pruner_nm(tinf_pruner *pruner, int32_t layer, int32_t n, int32_t m, int32_t *out_skipped);
/* Runs the model on one set of inputs (as tinf_quantizer_observe) and adds
 * each layer's input x^2 per input channel (activation statistics for
 * activation-aware pruning). */
tinf_status tinf_pruner_observe(tinf_pruner *pruner, int32_t n_inputs, const void *const *inputs, const size_t *nbytes);
/* The layer's per-input-channel sums of x^2 (count = its input channels) and
 * how many positions were summed (out_positions may be NULL). */
tinf_status tinf_pruner_input_squares(const tinf_pruner *pruner, int32_t layer, double *dst, size_t count,
                                      int64_t *out_positions);
/* Serializes the model with the current weights. */
tinf_status tinf_pruner_finish(tinf_pruner *pruner);
/* The file of the last finish: owned by the pruner, valid until the next
 * finish or free. */
tinf_status tinf_pruner_data(const tinf_pruner *pruner, const void **out_data, size_t *out_nbytes);
/* How tensor `index` (tinf_model_tensor_detail) of a loaded model was stored
 * and how sparse it is: out_sparse 1 when the file stored it in the sparse
 * encoding (docs/format.md), out_stored_bytes its bytes in the file (0 for a
 * computed tensor), out_zeros the fraction of its elements that are zero
 * (constants; 0 for others). Any out-pointer may be NULL.
 * TINF_ERR_INVALID_ARGUMENT for a NULL model or an index out of range. */
tinf_status tinf_model_tensor_storage(const tinf_model *model, int32_t index, int32_t *out_sparse,
                                      size_t *out_stored_bytes, double *out_zeros);
/* ---- reliability: the work limit (issue 12) ---------------------------------- */

/* The most work one run of a session made with these options may take, in
 * multiply-adds (Conv2D, DepthwiseConv2D, TransposeConv2D, FullyConnected,
 * MatMul), window visits (pooling) or element visits (every other op: its
 * input plus output elements), summed over the ops (docs/format.md, Limits).
 * tinf_session_create refuses a model over it with TINF_ERR_INVALID_ARGUMENT.
 * Default 2^33 (about 8.6e9). Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (options NULL,
 * max_work 0). */
tinf_status tinf_options_set_max_work(tinf_options *options, uint64_t max_work);
/* The work of one run of this session (the figure checked against the
 * limit). Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (session or out_work NULL). */
tinf_status tinf_session_work(const tinf_session *session, uint64_t *out_work);
/* ---- state: resource variables (issue 14) ------------------------------------- */

/* A model with variables (ReadVariable / AssignVariable, docs/ops.md "State":
 * TFLite resource variables) keeps their values in each session, across
 * tinf_session_run calls; a new session starts from the initial values.
 * tinf_session_reset_state sets every variable of the session back to its
 * initial value (a new stream). It waits for a run in progress on another
 * thread. Nothing to do (TINF_OK) for a model without variables.
 * Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (session NULL). */
tinf_status tinf_session_reset_state(tinf_session *session);
/* The number of variables of the session (0 for a model without).
 * Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (session or out_count NULL). */
tinf_status tinf_session_state_count(const tinf_session *session, int32_t *out_count);
/* ---- control flow: subgraphs (issue 14) ---------------------------------------- */

/* Moves the ops from index first_op to the last one added into a new
 * subgraph (docs/format.md, version 1.2) whose inputs and outputs are these
 * tensors (inputs: non-constant tensors with dtype and shape; outputs: at
 * least one); *out_index is the subgraph's index, for the `subgraphs`
 * attribute of If / While (docs/ops.md, "Control flow"). Later ops go to the
 * main graph again, so a subgraph used inside another is added first. Arrays
 * are copied. Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (NULL builder,
 * name or out_index, NULL list with a count, an index out of range, no
 * outputs, more than 1024 subgraphs). Whole-graph checks happen at finish. */
tinf_status tinf_builder_add_subgraph(tinf_builder *builder, const char *name, int32_t first_op, int32_t n_inputs,
                                      const int32_t *inputs, int32_t n_outputs, const int32_t *outputs,
                                      int32_t *out_index);

/* ---- quantization: float-sensitive ops kept in float32 (issue 14) -------------- */

/* int8-static keeps the ops int8 would destroy a model through in float32 by
 * default (attention-mask arithmetic and the Softmax it feeds, log /
 * spectrogram paths; docs/quantization.md, "Kept in float32"). enabled = 0
 * quantizes every op it can instead (force int8), for the next finish. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (NULL quantizer) */
tinf_status tinf_quantizer_set_auto_float(tinf_quantizer *quantizer, int32_t enabled);
/* int8-static of a QDQ model (Quantize/Dequantize pairs around float ops, as
 * the ONNX converter writes QuantizeLinear/DequantizeLinear): enabled = 1
 * takes every parameter from the graph's pairs and its 8-bit weights as given
 * instead of calibrating (no observe needed); ops the graph gives no
 * parameters for stay float32 (docs/quantization.md, "QDQ models"). */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (NULL quantizer) */
tinf_status tinf_quantizer_set_graph_params(tinf_quantizer *quantizer, int32_t enabled);
/* The output stage of int8-static's Conv2D, DepthwiseConv2D,
 * TransposeConv2D and Mul (their `requantization` attribute; docs/quantization.md,
 * "Requantization"): TINF_REQUANT_FLOAT32 (the default) y = clamp(
 * roundeven(fl(acc s)) + zp) in float32, as XNNPACK and onnxruntime compute
 * it, about a third of the vector work of TINF_REQUANT_FIXED, TFLite's
 * fixed-point multipliers (bit for bit LiteRT's reference kernels; results
 * differ by at most one step, on near-ties). QDQ models quantized with
 * graph parameters and imported int8 models keep the fixed-point stage.
 * For the next finish. */
#define TINF_REQUANT_FIXED 0
#define TINF_REQUANT_FLOAT32 1
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (NULL quantizer, unknown mode) */
tinf_status tinf_quantizer_set_requantization(tinf_quantizer *quantizer, int32_t mode);
/* Why the last finish kept layer `layer` in float32 as float-sensitive (a
 * sentence naming the tensor or op concerned), or NULL when it did not (it
 * was quantized, kept by tinf_quantizer_keep_float, or has no int8 form).
 * The string is owned by the quantizer, valid until the next finish or free. */
/* Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument, index out of range) */
tinf_status tinf_quantizer_float_reason(const tinf_quantizer *quantizer, int32_t layer, const char **out_reason);
/* ---- caching: intermediate tensors, shared backbones, the result cache's hash (issue 18) ---- */

/* tinf_model_subgraph flag: graph inputs of `model` that the outputs still
 * need are appended to the new model's inputs (after the named ones, in
 * `model`'s input order) instead of being an error. */
typedef enum tinf_subgraph_flag {
  TINF_SUBGRAPH_ADD_GRAPH_INPUTS = 1
} tinf_subgraph_flag;
/* A model from the tensors named by input_names (graph inputs or tensors a
 * run computes, in this order: the new model's inputs) to those named by
 * output_names (any tensor a run takes or computes: the new model's outputs),
 * running only the ops the outputs need from those inputs; everything
 * upstream of the inputs and everything no output needs is left out. Names
 * are those of tinf_model_tensor_detail (after the load-time passes). The new
 * model is a view of `model`: it shares its constants and packed weights
 * (same kernels, so its outputs are bit for bit those of a full run), keeps
 * `model` alive (either may be freed first) and is freed with
 * tinf_model_free; make sessions of it as of any model (the requested
 * outputs are graph outputs of its sessions, so they live to the end of a
 * run). n_inputs may be 0 (with TINF_SUBGRAPH_ADD_GRAPH_INPUTS: the graph
 * inputs the outputs need); input_names may then be NULL.
 * Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (model, a names array with a
 * count > 0, a name or out_model NULL; a count out of range, n_outputs < 1;
 * unknown flags; a name no tensor has; a constant; a tensor the load-time
 * passes removed; a name given twice; a graph input the outputs need that is
 * not given, without the flag; a given input that an op the outputs need also
 * computes); TINF_ERR_OUT_OF_MEMORY. */
tinf_status tinf_model_subgraph(const tinf_model *model, const char *const *input_names, int32_t n_inputs,
                                const char *const *output_names, int32_t n_outputs, uint32_t flags,
                                tinf_model **out_model);
/* The model as a .tinf file: its graph as loaded (after the load-time
 * passes) with the constants its ops read; for a view made by
 * tinf_model_subgraph, the view's own inputs, ops and outputs, so a backbone
 * or a head can be saved and loaded by itself with the same results bit for
 * bit. *out_size gets the file's size; with dst non-NULL the file is written
 * there (capacity bytes available; the caller's memory). Each call
 * serializes the graph again. Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT
 * (model or out_size NULL, dst NULL with capacity > 0, capacity less than
 * the size); TINF_ERR_UNSUPPORTED_OP (a graph with control-flow subgraphs). */
tinf_status tinf_model_serialize(const tinf_model *model, void *dst, size_t capacity, size_t *out_size);
/* A fast non-cryptographic 64-bit hash of `size` bytes at `data` under
 * `seed` (data may be NULL when size is 0), the same on every CPU and
 * architecture. For lookups only: two equal hashes do not prove two byte
 * ranges equal (tinyinfer.ResultCache compares the bytes on a match).
 * Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (out_hash NULL, data NULL with size > 0). */
tinf_status tinf_hash64(const void *data, size_t size, uint64_t seed, uint64_t *out_hash);

/* ---- prepack cache (issue 18): packed weights from an image file ------------ */

/* A load that packs float32 FullyConnected / Conv2D weights for the GEMM
 * kernels can save them as a "prepack image"; a later load of the same model
 * maps that image read-only (shared by every process that maps it) instead
 * of packing again. The library reads and writes images; where they live,
 * their keys, atomic writes and the size bound are the caller's (the Python
 * package's tinyinfer.prepack_cache does all of it, and so does
 * tinf_model_load_file_cached with tinf_model_save_prepack_cached;
 * docs/caching.md).
 * An image is never trusted: before use the library checks its magic,
 * layout version, size, key, CPU level, the model's file size and graph,
 * every entry against the model's ops, a checksum of its bytes, and samples
 * of the packed weights against the model's; any failure packs as usual. */

/* The layout version of prepack images this library reads and writes. */
int32_t tinf_prepack_layout_version(void);

/* As tinf_model_load_file_flags / tinf_model_load_buffer_flags, taking the
 * packed weights from the image at `image_path` when it is valid for this
 * model and `key` (key_size bytes, at most 64; any bytes the caller chooses,
 * for example a hash of the model, the load flags, the library version and
 * the CPU level). A missing, unreadable or invalid image is not an error:
 * the weights are packed and tinf_model_prepack_info says why. The model
 * keeps the image mapped until it and its sessions are freed; writers must
 * replace an image by renaming a new file over it, never rewrite it in place.
 * image_path NULL: as the _flags functions. key may be NULL when key_size is 0.
 * Statuses: those of the _flags functions; TINF_ERR_INVALID_ARGUMENT also for
 * key_size > 64 or key NULL with key_size > 0. */
tinf_status tinf_model_load_file_prepacked(const char *path, uint32_t flags, const char *image_path,
                                           const void *key, size_t key_size, tinf_model **out_model);
tinf_status tinf_model_load_buffer_prepacked(const void *data, size_t size, uint32_t flags, const char *image_path,
                                             const void *key, size_t key_size, tinf_model **out_model);

/* The prepack cache's whole load in the library (the files the Python
 * package's tinyinfer.prepack_cache writes; docs/caching.md, "Where the files
 * are"): as tinf_model_load_file_flags, taking the packed weights from the
 * image of this file in `folder` when one is there and valid. The image is
 * found from the file's identity (device, inode, size, modification and
 * change times): <folder>/<id>.ref holds the sha256 of the file's bytes, and
 * the image is <folder>/<key>.pack, key = tinf_cache_key of "prepack", that
 * hash, the flags in decimal, tinf_version_string(), tinf_cpu_isa() and
 * tinf_prepack_layout_version() in decimal (as text). An image used is marked recently used
 * (its times set to now). Nothing is written: with no .ref for this identity
 * yet (a new or changed file) the load packs with state
 * TINF_PREPACK_NOT_REQUESTED, and tinf_model_save_prepack_cached writes the
 * .ref and the image (or the caller does, from tinf_model_prepack_image). folder NULL: the default
 * folder (tinf_cache_folder), or none when the environment variable
 * TINYINFER_PREPACK_CACHE is 0, false, no or off; "": no cache.
 * Statuses: those of tinf_model_load_file_flags. */
tinf_status tinf_model_load_file_cached(const char *path, uint32_t flags, const char *folder, tinf_model **out_model);
/* The write side of tinf_model_load_file_cached, for C programs (the Python
 * package writes the same files itself): after a load of the file `path`
 * with `flags` (the load's flags: they are part of the image's key), writes
 * what the next cached load of the unchanged file needs into `folder`: the
 * file's <id>.ref (the sha256 of its bytes, hashed here when the .ref is
 * missing) and the image <key>.pack of the model's packed weights
 * (tinf_model_prepack_image). Each file is written atomically (a temporary
 * file ".tmp-*" in the folder, fsync, rename over the old file: a reader
 * maps the old image or the new one, never part of one; concurrent writers
 * of one key write the same bytes and the last rename wins), mode 0600; the
 * folder and its missing parents are made (mode 0700). Then the folder is trimmed to
 * $TINYINFER_CACHE_MAX_BYTES (default 1 GiB): the least recently used
 * entries of every kind go first, never the image just written, and
 * temporary files older than an hour (a crashed writer's) are removed.
 * Nothing is written (*out_written 0, TINF_OK) when the model's weights came
 * from an image, when it packed none, or when the cache is off (folder "",
 * or folder NULL with TINYINFER_PREPACK_CACHE off); folder NULL: the
 * default folder (tinf_cache_folder). out_written (may be NULL): 1 when the
 * image was written. Typical use: tinf_model_load_file_cached, then, when
 * tinf_model_prepack_info's state is not TINF_PREPACK_FROM_IMAGE, this.
 * Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (model or path NULL, unknown
 * flags, path not a regular file, or not the file the model was loaded
 * from: another size); TINF_ERR_IO (the file cannot be read, or a cache
 * file cannot be written: the message names it and why, e.g. "No space
 * left on device"); TINF_ERR_OUT_OF_MEMORY. */
tinf_status tinf_model_save_prepack_cached(const tinf_model *model, const char *path, uint32_t flags,
                                           const char *folder, int32_t *out_written);
/* The default cache folder: $TINYINFER_CACHE_DIR made absolute (a leading ~
 * or ~user expanded), else $XDG_CACHE_HOME/tinyinfer, else
 * ~/.cache/tinyinfer; copied NUL-terminated into dst (capacity bytes,
 * truncated to fit; dst may be NULL when capacity is 0); out_length (may be
 * NULL) gets the full length without the NUL. Statuses: TINF_OK;
 * TINF_ERR_INVALID_ARGUMENT (dst NULL with capacity > 0); TINF_ERR_IO (a
 * relative $TINYINFER_CACHE_DIR and no working folder, or a path over 8 KB). */
tinf_status tinf_cache_folder(char *dst, size_t capacity, size_t *out_length);
/* A cache key: the SHA-256 of the parts, each preceded by its size as 8
 * little-endian bytes, into out_key (32 bytes). parts[i] may be NULL when
 * sizes[i] is 0; parts and sizes may be NULL when count is 0. Statuses:
 * TINF_OK; TINF_ERR_INVALID_ARGUMENT (out_key NULL, count < 0, parts or sizes
 * NULL with count > 0, a NULL part with a nonzero size). */
tinf_status tinf_cache_key(const void *const *parts, const size_t *sizes, int32_t count, void *out_key);

/* Where the model's packed weights came from. */
typedef enum tinf_prepack_state {
  TINF_PREPACK_NOT_REQUESTED = 0, /* no image asked for: packed at load */
  TINF_PREPACK_FROM_IMAGE = 1,    /* mapped from a valid image: nothing packed */
  TINF_PREPACK_ABSENT = 2,        /* the image file does not exist: packed at load */
  TINF_PREPACK_REJECTED = 3       /* the image failed a check (the note says which): packed at load */
} tinf_prepack_state;

/* out_state: a tinf_prepack_state; out_from_image: ops whose packed weights
 * were mapped from the image; out_packed: ops packed at this load. Any
 * out-pointer may be NULL. Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (model NULL). */
tinf_status tinf_model_prepack_info(const tinf_model *model, int32_t *out_state, int32_t *out_from_image,
                                    int32_t *out_packed);
/* Why the image was not used ("" when it was, or none was asked for), copied
 * NUL-terminated into dst (capacity bytes, truncated to fit; dst may be NULL
 * when capacity is 0); out_length (may be NULL) gets the full length without
 * the NUL. Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (model NULL, dst NULL
 * with capacity > 0). */
tinf_status tinf_model_prepack_note(const tinf_model *model, char *dst, size_t capacity, size_t *out_length);
/* The model's prepack image for `key`: *out_size gets its size (0 when the
 * model packed no weights: nothing to save); with dst non-NULL, dst_size
 * must equal that size and the image is written into dst (the caller's
 * memory). Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (model or out_size
 * NULL, key_size > 64, key NULL with key_size > 0, dst_size not the image's
 * size); TINF_ERR_INVALID_STATE (dst given but the model packed no weights). */
tinf_status tinf_model_prepack_image(const tinf_model *model, const void *key, size_t key_size, void *dst,
                                     size_t dst_size, size_t *out_size);

/* ---- result cache (issue 18): outputs answered by tinf_session_run ------- */

/* A table of model outputs keyed by inputs, shared by any sessions bound to
 * it (tinf_session_set_result_cache): tinf_session_run on a bound session
 * hashes the session's input buffers (tinf_hash64's absorption with a cheaper
 * finish: these keys live only in memory; seeded with the
 * binding's signature: the caller's model key, every input's and output's
 * dtype and shape), and when an entry holds the same signature and input
 * bytes (compared byte for byte: equal hashes are never trusted) copies its
 * outputs into the session's output buffers instead of running. Otherwise
 * it runs and, when admitted, stores copies of the inputs and outputs (the
 * caller's buffers are never shared with the cache, so nothing a caller
 * writes reaches an entry). Entries are dropped least recently used first
 * so that the bytes held (inputs and outputs) stay within max_bytes; an
 * entry larger than max_bytes is not stored. Thread-safe: one lock guards
 * the table; any threads may share a cache through their own sessions. */
typedef struct tinf_result_cache tinf_result_cache;

typedef enum tinf_result_cache_admit {
  TINF_RESULT_CACHE_ADMIT_ALWAYS = 0, /* every miss is stored */
  TINF_RESULT_CACHE_ADMIT_REPEAT = 1  /* a miss is stored the second time its key comes (the first time the key is
                                         remembered among the max_seen most recent): inputs that never repeat cost
                                         a hash and a lookup, no copies, and do not push out repeating ones */
} tinf_result_cache_admit;

typedef struct tinf_result_cache_counts {
  uint64_t hits;       /* runs answered from an entry */
  uint64_t misses;     /* runs computed (collisions included) */
  uint64_t evicted;    /* entries dropped for room */
  uint64_t too_large;  /* results not stored: inputs + outputs over max_bytes */
  uint64_t collisions; /* misses on an entry of the same hash but other input bytes (it is replaced) */
  uint64_t deferred;   /* ADMIT_REPEAT: results not stored because their key came for the first time */
  uint64_t entries;    /* entries held */
  uint64_t bytes;      /* bytes held (inputs and outputs) */
  uint64_t max_bytes;  /* the bound */
  uint64_t seen;       /* ADMIT_REPEAT: keys remembered (at most max_seen) */
} tinf_result_cache_counts;

/* A new empty cache holding at most max_bytes of inputs and outputs.
 * admit: a tinf_result_cache_admit. max_seen: how many first-time keys
 * ADMIT_REPEAT remembers (1...2^26). hash_bits: 64 for normal use; fewer
 * keeps only that many low bits of each hash (0: every key of the cache
 * collides), for tests of the exact comparison. Free with
 * tinf_result_cache_free; sessions bound to it keep it alive.
 * Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (out_cache NULL, max_bytes
 * over 2^48, admit unknown, max_seen or hash_bits out of range);
 * TINF_ERR_OUT_OF_MEMORY. */
tinf_status tinf_result_cache_create(size_t max_bytes, int32_t admit, size_t max_seen, int32_t hash_bits,
                                     tinf_result_cache **out_cache);
/* Releases the caller's reference (sessions still bound keep the cache). NULL is a no-op. */
void tinf_result_cache_free(tinf_result_cache *cache);
/* Drops every entry and remembered key (the counts stay); out_dropped (may
 * be NULL) gets how many entries. Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (cache NULL). */
tinf_status tinf_result_cache_clear(tinf_result_cache *cache, size_t *out_dropped);
/* The counts, one consistent snapshot. Statuses: TINF_OK;
 * TINF_ERR_INVALID_ARGUMENT (cache or out_stats NULL). */
tinf_status tinf_result_cache_stats(tinf_result_cache *cache, tinf_result_cache_counts *out_stats);
/* Binds `session` to `cache` (NULL unbinds): its tinf_session_run answers
 * from and stores into the cache (tinf_session_run_profiled and the
 * observers of monitoring do not). key (key_size bytes, at most 256; may be
 * NULL when key_size is 0) names the model for the cache: sessions bound with
 * the same key and the same input and output dtypes and shapes share
 * entries, so the caller gives equal keys only to models that compute the
 * same outputs (for example a hash of the model's bytes and load flags).
 * The session keeps the cache alive. Not to be called while the session runs
 * on another thread. Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (session
 * NULL, key_size over 256, key NULL with key_size > 0, a model with
 * variables: its outputs depend on earlier runs); TINF_ERR_OUT_OF_MEMORY. */
tinf_status tinf_session_set_result_cache(tinf_session *session, tinf_result_cache *cache, const void *key,
                                          size_t key_size);
/* ---- micro-batching queue (issue 17) ----
 * A batcher gathers requests from many threads into batched runs of one
 * model, like Triton's dynamic batching. A caller's thread waits inside
 * tinf_batcher_run (a binding that releases its interpreter lock, as
 * Python's ctypes does, lets other callers go on meanwhile). `workers`
 * threads inside the library each own sessions for the power-of-two batch
 * sizes below max_batch and max_batch (made when first needed; the
 * max_batch one at create); a worker takes the queued requests, up to
 * max_batch rows (a request is never split), waiting for more at most
 * max_delay_us after the oldest came and only while fewer are queued than
 * were in flight at once recently and than its share of them (that peak
 * divided among the workers), and when the oldest is a blocking
 * caller's (tinf_batcher_run) only while another batch is running; a caller
 * of tinf_batcher_run that finds nothing queued and a worker idle runs its
 * request at once on its own thread with that worker's sessions. It copies their rows
 * into one session (zero rows pad it up to its size), runs it and copies
 * each request's rows to its outputs. When a batched run fails (a Gather
 * index out of range in one request), each of its requests runs alone, so
 * only the failing ones fail. Every input's first dimension is the batch,
 * and every output's must be too (checked at create). Models with
 * variables (state between runs) are refused. All functions are safe to call
 * from any thread; statuses come with a message (tinf_last_error) on the
 * calling thread. */
typedef struct tinf_batcher tinf_batcher;

/* Counters of a batcher (tinf_batcher_stats). */
typedef struct tinf_batcher_counters {
  uint64_t requests; /* requests accepted (run and submit; refused ones not counted) */
  uint64_t rows;     /* rows run (padding not counted) */
  uint64_t batches;  /* successful session runs */
  uint64_t failed;   /* requests answered with an error (a timeout is not counted) */
  uint64_t isolated; /* batched runs that failed, whose requests then ran one by one */
  int64_t queued;    /* requests queued now */
  int64_t running;   /* requests in batches running now */
  int32_t max_batch;
  int32_t workers;
  int32_t threads;   /* each session's threads */
} tinf_batcher_counters;

/* Makes a batcher of `model` (which it keeps alive: the model may be freed
 * first). max_batch 1...65536 rows a batch; max_delay_us 0...10^7; workers
 * 1...64 worker threads (batches running at once); threads 0...256 each
 * session's intra-op threads (0: the CPU count). *out_batcher is freed with
 * tinf_batcher_free. Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (NULL
 * argument, a value out of range, a model without inputs or with
 * variables); TINF_ERR_SHAPE (a scalar input, an output whose first
 * dimension is not the batch); those of tinf_session_create for a session of
 * max_batch rows (TINF_ERR_SHAPE: the graph does not take that batch;
 * TINF_ERR_OUT_OF_MEMORY); TINF_ERR_OUT_OF_MEMORY (locks, threads). */
tinf_status tinf_batcher_create(tinf_model *model, int32_t max_batch, int64_t max_delay_us, int32_t workers,
                                int32_t threads, tinf_batcher **out_batcher);

/* Runs one request of `rows` rows (1...max_batch) and waits for it.
 * inputs[i] (n_inputs pointers, the model's input count) holds input i's
 * rows, input_nbytes[i] = rows x its bytes per row; outputs[o] (n_outputs,
 * the model's output count) receives output o's rows, output_nbytes[o] =
 * rows x its bytes per row. Rows are the model's dtypes, C order. The
 * library reads the inputs and writes the outputs only until this returns;
 * all memory stays the caller's. timeout_us < 0 waits as long as it takes;
 * otherwise a request not yet taken into a batch when it passes is withdrawn
 * (it never runs; one already taken is waited for).
 * Statuses: TINF_OK (the outputs are written); TINF_ERR_INVALID_ARGUMENT (a
 * NULL pointer, rows out of range, n_inputs or n_outputs not the model's);
 * TINF_ERR_SHAPE (an nbytes that is not rows x the row size: the request is
 * refused alone, nothing queued); TINF_ERR_INVALID_STATE (the batcher is
 * closed, or was closed with cancel before the request ran);
 * TINF_ERR_RUNTIME (the run failed on this request's rows, or the timeout
 * passed: the message starts "tinf_batcher_run: timed out"); any status of
 * tinf_session_run and tinf_session_create (TINF_ERR_OUT_OF_MEMORY). After a
 * failure the outputs' contents are unspecified. */
tinf_status tinf_batcher_run(tinf_batcher *batcher, int64_t rows, const void *const *inputs,
                             const size_t *input_nbytes, int32_t n_inputs, void *const *outputs,
                             const size_t *output_nbytes, int32_t n_outputs, int64_t timeout_us);

/* As tinf_batcher_run, without waiting: queues the request under the
 * caller's `tag` and returns. The pointer arrays are copied; the input and
 * output memory they point to must stay valid and unchanged until
 * tinf_batcher_completed returns `tag`. Statuses: TINF_OK (queued: its
 * outcome comes from tinf_batcher_completed); the argument statuses of
 * tinf_batcher_run (nothing queued); TINF_ERR_INVALID_STATE (closed). */
tinf_status tinf_batcher_submit(tinf_batcher *batcher, int64_t rows, const void *const *inputs,
                                const size_t *input_nbytes, int32_t n_inputs, void *const *outputs,
                                const size_t *output_nbytes, int32_t n_outputs, uint64_t tag);

/* Takes finished submissions, oldest first: up to `capacity` (>= 1) tags
 * into tags[] and their statuses (tinf_status values, as tinf_batcher_run
 * would return) into statuses[]; *out_count gets how many. It stops after
 * the first failed one and sets the calling thread's tinf_last_error to that
 * request's message. Waits until at least one is finished, at most
 * timeout_us (< 0: no limit; 0: does not wait; *out_count 0 when nothing
 * came). Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (NULL argument,
 * capacity < 1); TINF_ERR_INVALID_STATE (closed, nothing finished and no
 * submission outstanding: a completion thread may stop). */
tinf_status tinf_batcher_completed(tinf_batcher *batcher, uint64_t *tags, int32_t *statuses, int32_t capacity,
                                   int64_t timeout_us, int32_t *out_count);

/* Closes the batcher: new requests are refused with TINF_ERR_INVALID_STATE;
 * with cancel 0 the queued requests still run, with cancel 1 they fail with
 * TINF_ERR_INVALID_STATE ("closed before this request ran"); batches already
 * running finish. Returns when every worker has stopped (so every request is
 * answered). Idempotent; concurrent calls wait for each other. Statuses:
 * TINF_OK; TINF_ERR_INVALID_ARGUMENT (batcher NULL, cancel not 0 or 1). */
tinf_status tinf_batcher_close(tinf_batcher *batcher, int32_t cancel);

/* Closes (cancel 0) if not closed, waits for callers still returning from
 * tinf_batcher_run, and frees the batcher and its sessions (finished
 * submissions not taken are dropped). No thread may use the handle after.
 * NULL is allowed. */
void tinf_batcher_free(tinf_batcher *batcher);

/* The batcher's counters. Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (a NULL argument). */
tinf_status tinf_batcher_stats(const tinf_batcher *batcher, tinf_batcher_counters *out);

/* Wake-ups for callers that share one lock (issue 17, item 3), such as
 * Python threads and their GIL. With turn_us > 0, the callers of a batch's
 * tinf_batcher_run requests are woken one at a time, in order: the next
 * when a caller comes back into tinf_batcher_run (its binding has let the
 * lock go, so the woken one finds it free instead of waking, finding it
 * taken and sleeping again), or when a woken caller has not come back
 * within turn_us (then every answered caller is woken). A gathering worker
 * also waits for callers still coming back through their turns. 0 (the
 * default): each caller is woken as soon as its rows are out. Statuses:
 * TINF_OK; TINF_ERR_INVALID_ARGUMENT (batcher NULL, turn_us outside
 * 0...1000000). */
tinf_status tinf_batcher_set_turn(tinf_batcher *batcher, int64_t turn_us);
/* An event loop's wake-up for submissions: when finished submissions go
 * from none to some, the library writes a uint64 1 to fd (an eventfd adds
 * 1; a pipe gets 8 bytes; make it non-blocking: a failed write is ignored,
 * a wake-up is pending anyway). The reader reads the fd first, then calls
 * tinf_batcher_completed (timeout 0) until it returns fewer than its
 * capacity. fd stays the caller's; -1 (the default) stops the writes (set
 * it before closing the fd: no write happens after this call returns).
 * Written at once when completions are already waiting. Statuses: TINF_OK;
 * TINF_ERR_INVALID_ARGUMENT (batcher NULL, fd < -1). */
tinf_status tinf_batcher_set_notify_fd(tinf_batcher *batcher, int32_t fd);
/* ---- pruning (issue 15): sparse storage of converted sparse constants ---- */
/* Marks constant `tensor` of the builder (on != 0) to be stored in the
 * sparse encoding of format 1.1 whenever that is smaller than dense (without
 * the mark: only when it at most halves a constant of 4 KiB or more). The
 * converters mark constants their source stored sparse (TFLite `sparsity`),
 * so such a model's file stays small; the loader expands them as any sparse
 * constant. Statuses: TINF_OK; TINF_ERR_INVALID_ARGUMENT (builder NULL,
 * tensor out of range or not a constant; a finished builder). */
tinf_status tinf_builder_set_store_sparse(tinf_builder *builder, int32_t tensor, int32_t on);

#ifdef __cplusplus
}
#endif
#endif /* TINYINFER_H */
