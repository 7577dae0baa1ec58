/* The operating-system calls the Swift core needs, as small C functions.
 * The core imports nothing else from the platform (no Glibc module), so a
 * port to another OS or a microcontroller replaces this file alone. */
#ifndef TINYINFER_SHIMS_H
#define TINYINFER_SHIMS_H
#include <stddef.h>
#include <stdint.h>

/* Per-thread last error message (NUL-terminated, truncated to 1023 bytes). */
void ti_shim_set_error(const char *msg, size_t len);
const char *ti_shim_error(void);

/* Maps a whole file read-only. Returns NULL and sets *errno_out on failure;
 * a zero-length file returns NULL with *errno_out = 0. */
void *ti_shim_map_file(const char *path, size_t *size_out, int *errno_out);
void ti_shim_unmap(void *addr, size_t size);
/* strerror text for an errno value (static storage). */
const char *ti_shim_strerror(int err);
/* Codes ti_shim_map_file gives (in *errno_out) for a path that exists but
 * is not a regular file (checked before opening: a FIFO would block), and
 * the text of any code it gives: "is a FIFO (named pipe), not a regular
 * file", or strerror's for an errno value. */
enum { TI_NOT_REGULAR_DIR = -1, TI_NOT_REGULAR_FIFO = -2, TI_NOT_REGULAR_CHAR = -3, TI_NOT_REGULAR_BLOCK = -4,
       TI_NOT_REGULAR_SOCKET = -5, TI_NOT_REGULAR_OTHER = -6 };
int ti_shim_not_regular(unsigned mode);
const char *ti_shim_file_error(int err);

/* A plain mutex (a session's: run and free exclude each other). create
 * returns NULL when out of memory; lock/unlock/destroy accept NULL. */
typedef struct ti_mutex ti_mutex;
ti_mutex *ti_shim_mutex_create(void);
void ti_shim_mutex_lock(ti_mutex *m);
void ti_shim_mutex_unlock(ti_mutex *m);
void ti_shim_mutex_destroy(ti_mutex *m);

/* 64-byte aligned allocation; NULL on failure or size 0. Blocks of 1 MB
 * and more are mapped with their pages populated at once (packed weights,
 * arenas: no page fault per 4 KB on first touch). Free with ti_shim_free. */
void *ti_shim_alloc(size_t size);
/* As ti_shim_alloc, but a large block's pages are populated by a thread of
 * its own while the caller goes on (a session's arena: its creation does
 * not wait for 1 MB and more of pages, its first run finds them populated
 * or faults the rest itself). The block may be written at once;
 * ti_shim_free joins the thread. */
void *ti_shim_alloc_background(size_t size);
/* Maps the pages of the range [addr, addr + size) of a mapping (each page
 * read once: for pages in the page cache far cheaper than faulting them one
 * by one on the first run) on a thread of its own, placed off the caller's
 * CPU, while the caller goes on; the pages are usable at once (a page the
 * thread has not reached is faulted by its first touch). Returns the job,
 * which ti_shim_populate_stop must be given before the range is unmapped,
 * or NULL (nothing to stop: MADV_POPULATE_READ in the call when no thread
 * could be started; nothing on a kernel older than Linux 5.14). */
void *ti_shim_populate_read_background(const void *addr, size_t size);
/* Stops and joins a ti_shim_populate_read_background job; NULL: nothing. */
void ti_shim_populate_stop(void *job);
/* At least `size` bytes of zeros, read-only, shared by every caller and
 * never freed (one mapping of the process, replaced by a twice larger one
 * when a caller needs more: the old ones stay mapped, so all the bytes ever
 * mapped are at most twice the largest request; untouched anonymous pages
 * read as the kernel's one zero page: no memory and no zeroing), or NULL
 * (no mmap on this platform, a request over 256 MiB, or no memory): then
 * use ti_shim_alloc_zeroed. Thread-safe. */
const void *ti_shim_zeros(size_t size);
/* ti_shim_alloc's block with every byte zero (a large block is mapped
 * zeroed by the kernel: no second pass over it). */
void *ti_shim_alloc_zeroed(size_t size);
void ti_shim_free(void *p);
/* 1 when the block `p` (of ti_shim_alloc or ti_shim_alloc_background) is a
 * mapping of its own: every byte reads zero until written. 0 otherwise. */
int ti_shim_alloc_mapped(const void *p);

/* QLinearFit.fit's scan (Kernels/Quant/QLinearFit.swift): rows x1 =
 * x1lo ..< x1lo + n1 of `target` (n2 int8 values each, for x2 = x2lo ..<
 * x2lo + n2) and the offsets c for which clamp((x1 p1 + x2 p2 + c) >>
 * shift, lo, hi) gives every value t: c >= (t << shift) - base where t >
 * lo, c < ((t + 1) << shift) - base where t < hi (base = x1 p1 + x2 p2).
 * Returns 0 as soon as no c is left, else 1 with the interval [*lower,
 * *upper) (+-2^60 where a side is unconstrained). In int32 lanes when the
 * slopes allow (|p| < 2^23, shift <= 22), which vectorizes; int64 otherwise. */
int ti_shim_linear_fit(const int8_t *target, intptr_t n1, int32_t x1lo, intptr_t n2, int32_t x2lo, int64_t p1,
                       int64_t p2, int32_t shift, int32_t lo, int32_t hi, int64_t *lower, int64_t *upper);

/* Monotonic clock in nanoseconds. */
uint64_t ti_shim_now_ns(void);
/* The number of nonzero values among p[0 ..< n] (float: -0.0 counts as
 * zero, NaN as nonzero), stopping once it exceeds `cap` (then any count
 * above cap): the load's sparsity scan of FullyConnected and 1x1 weights
 * (SparseGemm.prepare), branch-free so that half-zero weights cost no
 * mispredictions. */
intptr_t ti_shim_count_nonzero_f32(const float *p, intptr_t n, intptr_t cap);
intptr_t ti_shim_count_nonzero_i8(const int8_t *p, intptr_t n, intptr_t cap);
/* The CSR form of the rows x k matrix w (row-major): start[r] ..< start[r +
 * 1] index idx (column) and val (value) of row r's nonzeros (as counted by
 * ti_shim_count_nonzero_*), start has rows + 1 entries; idx and val room for
 * nnz + 1 (one slot past the last nonzero is written and not counted:
 * the copy is branch-free). _i8 also writes sums[r], the sum of row r. */
/* Constant padding of the innermost padded dim (Pad): `rows` rows of
 * in_row bytes at src to rows of before + in_row + after bytes at dst, the
 * padding filled with the element `fill` (its es low bytes, little-endian;
 * es 1, 2, 4 or 8; before and after multiples of es). No overlap. */
void ti_shim_pad_rows(const void *src, void *dst, intptr_t rows, intptr_t in_row, intptr_t before,
                      intptr_t after, uint64_t fill, intptr_t es);
void ti_shim_csr_f32(const float *w, intptr_t rows, intptr_t k, int32_t *start, int32_t *idx, float *val);
void ti_shim_csr_i8(const int8_t *w, intptr_t rows, intptr_t k, int32_t *start, int32_t *idx, int8_t *val,
                    int32_t *sums);
/* Number of online CPUs (>= 1). */
int ti_shim_cpu_count(void);

/* Writes a file in one go; returns 0 or an errno value. */
int ti_shim_write_file(const char *path, const void *data, size_t size);

/* Thread pool primitive: runs fn(ctx, i) for i in [0, n) on up to `threads`
 * threads (the caller's thread included) and returns when all are done.
 * The caller runs item 0 itself. One job at a time: calls on one pool must
 * not overlap. Between jobs workers poll for at most 50 us, then sleep on a
 * condition variable (no CPU while idle). */
typedef struct ti_pool ti_pool;
ti_pool *ti_pool_create(int threads);
void ti_pool_destroy(ti_pool *pool);
int ti_pool_threads(const ti_pool *pool);
void ti_pool_run(ti_pool *pool, void (*fn)(void *ctx, int i), void *ctx, int n);
/* 0 when the environment has TINYINFER_THREAD_PICK=0 (sessions then run on
 * all their threads without timing one thread against them), else 1. */
int ti_shim_thread_pick_enabled(void);
/* 0 when the environment has TINYINFER_SPARSE_MEASURE=0 (a load then
 * chooses sparse or dense kernels from the density thresholds alone,
 * without timing the close cases; Runtime/SparseMeasure.swift), else 1. */
int ti_shim_sparse_measure_enabled(void);

/* libm for the kernels that need its exact results (tables, rounding). */
float ti_shim_expf(float x);
float ti_shim_logf(float x);
float ti_shim_tanhf(float x);
float ti_shim_floorf(float x);
float ti_shim_ceilf(float x);
float ti_shim_roundf(float x);

/* Condition variables and plain threads (the micro-batcher, issue 17: its
 * callers wait in the library, its workers gather their requests). A cond
 * is used with one ti_mutex. wait_until takes a deadline on the clock of
 * ti_shim_now_ns and returns 1 when it passed, 0 when woken (or spuriously).
 * create returns NULL when out of memory; the others accept NULL. */
typedef struct ti_cond ti_cond;
ti_cond *ti_shim_cond_create(void);
void ti_shim_cond_destroy(ti_cond *c);
void ti_shim_cond_wait(ti_cond *c, ti_mutex *m);
int ti_shim_cond_wait_until(ti_cond *c, ti_mutex *m, uint64_t deadline_ns);
void ti_shim_cond_signal(ti_cond *c);
void ti_shim_cond_broadcast(ti_cond *c);
/* Starts fn(ctx) on a new thread; NULL when it cannot (the caller runs
 * nothing then). join waits for it to return and frees the handle. */
typedef struct ti_thread ti_thread;
ti_thread *ti_shim_thread_start(void (*fn)(void *ctx), void *ctx);
void ti_shim_thread_join(ti_thread *t);
/* Writes a uint64 1 to fd (an eventfd adds 1; a pipe gets 8 bytes); errors
 * (a full non-blocking pipe: a wake-up is pending anyway) are ignored. */
void ti_shim_fd_notify(int fd);

#endif
