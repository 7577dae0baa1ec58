/* The prepack cache's files (tinyinfer_cachefile.h). */
#define _GNU_SOURCE
#include "tinyinfer_cachefile.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- SHA-256 (FIPS 180-4) ------------------------------------------------ */

static const uint32_t ti_sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static inline uint32_t ti_ror32(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void ti_sha256_block(uint32_t h[8], const uint8_t *p) {
  uint32_t w[64];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = ti_ror32(w[i - 15], 7) ^ ti_ror32(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ti_ror32(w[i - 2], 17) ^ ti_ror32(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = k + (ti_ror32(e, 6) ^ ti_ror32(e, 11) ^ ti_ror32(e, 25)) + ((e & f) ^ (~e & g)) + ti_sha256_k[i] + w[i];
    uint32_t t2 = (ti_ror32(a, 2) ^ ti_ror32(a, 13) ^ ti_ror32(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    k = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
  h[5] += f;
  h[6] += g;
  h[7] += k;
}

void ti_sha256_init(ti_sha256 *c) {
  static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(c->h, h0, sizeof h0);
  c->length = 0;
  c->used = 0;
}

void ti_sha256_update(ti_sha256 *c, const void *data, size_t size) {
  const uint8_t *p = (const uint8_t *)data;
  c->length += size;
  if (c->used > 0) {
    size_t take = 64 - c->used < size ? 64 - c->used : size;
    memcpy(c->block + c->used, p, take);
    c->used += take;
    p += take;
    size -= take;
    if (c->used < 64) return;
    ti_sha256_block(c->h, c->block);
    c->used = 0;
  }
  for (; size >= 64; p += 64, size -= 64) ti_sha256_block(c->h, p);
  if (size > 0) memcpy(c->block, p, size);
  c->used = size;
}

void ti_sha256_final(ti_sha256 *c, uint8_t out[32]) {
  uint64_t bits = c->length * 8;
  c->block[c->used++] = 0x80;
  if (c->used > 56) {
    memset(c->block + c->used, 0, 64 - c->used);
    ti_sha256_block(c->h, c->block);
    c->used = 0;
  }
  memset(c->block + c->used, 0, 56 - c->used);
  for (int i = 0; i < 8; i++) c->block[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
  ti_sha256_block(c->h, c->block);
  for (int i = 0; i < 8; i++) {
    out[4 * i] = (uint8_t)(c->h[i] >> 24);
    out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
    out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
    out[4 * i + 3] = (uint8_t)c->h[i];
  }
}

/* ---- keys ------------------------------------------------------------------ */

void ti_cache_key(const void *const *parts, const size_t *sizes, int count, uint8_t out[32]) {
  ti_sha256 c;
  ti_sha256_init(&c);
  for (int i = 0; i < count; i++) {
    uint8_t len[8];
    for (int j = 0; j < 8; j++) len[j] = (uint8_t)((uint64_t)sizes[i] >> (8 * j));
    ti_sha256_update(&c, len, 8);
    if (sizes[i] > 0) ti_sha256_update(&c, parts[i], sizes[i]);
  }
  ti_sha256_final(&c, out);
}

static void ti_hex(const uint8_t *bytes, size_t n, char *dst) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    dst[2 * i] = digits[bytes[i] >> 4];
    dst[2 * i + 1] = digits[bytes[i] & 15];
  }
  dst[2 * n] = 0;
}

/* ---- the folder -------------------------------------------------------------- */

/* Appends s[0..n) to dst at *len (cap bytes in all, NUL kept); 0, or -1 when it does not fit. */
static int ti_append(char *dst, size_t cap, size_t *len, const char *s, size_t n) {
  if (*len + n + 1 > cap) return -1;
  memcpy(dst + *len, s, n);
  *len += n;
  dst[*len] = 0;
  return 0;
}

/* os.path.expanduser: a leading "~" (the home folder: $HOME, else the
 * password entry's) or "~user" (that user's); anything else unchanged. */
static int ti_expand_user(const char *path, char *dst, size_t cap, size_t *len) {
  *len = 0;
  if (cap > 0) dst[0] = 0;
  if (path[0] != '~') return ti_append(dst, cap, len, path, strlen(path));
  const char *slash = strchr(path, '/');
  size_t name_len = (slash ? (size_t)(slash - path) : strlen(path)) - 1;
  const char *rest = path + 1 + name_len;
  const char *home = NULL;
  char buf[4096];
  struct passwd pw, *found = NULL;
  if (name_len == 0) {
    home = getenv("HOME");
    if (!home) {
      if (getpwuid_r(getuid(), &pw, buf, sizeof buf, &found) != 0 || !found) {
        return ti_append(dst, cap, len, path, strlen(path)); /* no password entry: unchanged, as Python */
      }
      home = found->pw_dir;
    }
  } else {
    char name[256];
    if (name_len >= sizeof name) return -1;
    memcpy(name, path + 1, name_len);
    name[name_len] = 0;
    if (getpwnam_r(name, &pw, buf, sizeof buf, &found) != 0 || !found) {
      return ti_append(dst, cap, len, path, strlen(path)); /* an unknown user: unchanged, as Python */
    }
    home = found->pw_dir;
  }
  size_t hl = strlen(home);
  while (hl > 0 && home[hl - 1] == '/') hl--; /* userhome.rstrip("/") */
  if (ti_append(dst, cap, len, home, hl) != 0 || ti_append(dst, cap, len, rest, strlen(rest)) != 0) return -1;
  if (*len == 0) return ti_append(dst, cap, len, "/", 1); /* "... or root" */
  return 0;
}

/* os.path.join(a, b) for a relative b: a "/" between them unless a is empty or ends with one. */
static int ti_join(char *dst, size_t cap, size_t *len, const char *b) {
  if (*len > 0 && dst[*len - 1] != '/' && ti_append(dst, cap, len, "/", 1) != 0) return -1;
  return ti_append(dst, cap, len, b, strlen(b));
}

/* os.path.abspath: the working folder before a relative path, then the
 * path normalized (no ".", "..", empty or trailing components; a leading
 * "//" kept as POSIX allows). */
static int ti_abspath(const char *path, char *dst, size_t cap) {
  char joined[8192];
  size_t jl = 0;
  joined[0] = 0;
  if (path[0] != '/') {
    if (!getcwd(joined, sizeof joined)) return -1;
    jl = strlen(joined);
    if (ti_join(joined, sizeof joined, &jl, path) != 0) return -1;
  } else if (ti_append(joined, sizeof joined, &jl, path, strlen(path)) != 0) {
    return -1;
  }
  size_t len = 0;
  int lead = joined[0] == '/' ? 1 : 0;
  if (lead && joined[1] == '/' && joined[2] != '/') lead = 2;
  for (int i = 0; i < lead; i++)
    if (ti_append(dst, cap, &len, "/", 1) != 0) return -1;
  size_t root = len;
  const char *p = joined;
  while (*p) {
    while (*p == '/') p++;
    if (!*p) break;
    const char *end = strchr(p, '/');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n == 1 && p[0] == '.') {
      /* skip */
    } else if (n == 2 && p[0] == '.' && p[1] == '.') {
      while (len > root && dst[len - 1] != '/') len--;
      if (len > root) len--; /* the "/" before the dropped component */
      dst[len] = 0;
    } else {
      if (len > root && ti_append(dst, cap, &len, "/", 1) != 0) return -1;
      if (ti_append(dst, cap, &len, p, n) != 0) return -1;
    }
    p += n;
  }
  if (len == 0 && ti_append(dst, cap, &len, ".", 1) != 0) return -1;
  return (int)len;
}

int ti_cache_folder(char *dst, size_t cap) {
  char tmp[8192];
  size_t len = 0;
  const char *d = getenv("TINYINFER_CACHE_DIR");
  if (d && d[0]) {
    if (ti_expand_user(d, tmp, sizeof tmp, &len) != 0) return -1;
    return ti_abspath(tmp, dst, cap);
  }
  const char *xdg = getenv("XDG_CACHE_HOME");
  if (xdg && xdg[0]) {
    if (ti_append(tmp, sizeof tmp, &len, xdg, strlen(xdg)) != 0) return -1;
  } else if (ti_expand_user("~", tmp, sizeof tmp, &len) != 0 || ti_join(tmp, sizeof tmp, &len, ".cache") != 0) {
    return -1;
  }
  if (ti_join(tmp, sizeof tmp, &len, "tinyinfer") != 0 || len + 1 > cap) return -1;
  memcpy(dst, tmp, len + 1);
  return (int)len;
}

int ti_prepack_cache_env_off(void) {
  const char *v = getenv("TINYINFER_PREPACK_CACHE");
  if (!v) return 0;
  while (*v == ' ' || (*v >= '\t' && *v <= '\r')) v++;
  size_t n = strlen(v);
  while (n > 0 && (v[n - 1] == ' ' || (v[n - 1] >= '\t' && v[n - 1] <= '\r'))) n--;
  static const char *const off[] = {"0", "false", "no", "off"};
  for (int i = 0; i < 4; i++) {
    if (strlen(off[i]) == n && strncasecmp(v, off[i], n) == 0) return 1;
  }
  return 0;
}

/* ---- one load's plan ------------------------------------------------------------ */

/* <folder>/<hex><suffix> into dst; 0, or -1 when it does not fit. */
static int ti_entry_path(const char *folder, const char *hex, const char *suffix, char *dst, size_t cap) {
  size_t len = 0;
  if (ti_append(dst, cap, &len, folder, strlen(folder)) != 0) return -1;
  if (ti_join(dst, cap, &len, hex) != 0) return -1;
  return ti_append(dst, cap, &len, suffix, strlen(suffix));
}

/* The .ref file of the identity (device, inode, size, modification and
 * change times in ns) of the model file whose stat is `st` into ref_path; 0,
 * or -1 when the path does not fit. */
static int ti_ref_path(const struct stat *st, const char *folder, char *ref_path, size_t cap) {
  char ident[160];
  int n = snprintf(ident, sizeof ident, "%llu:%llu:%lld:%lld:%lld", (unsigned long long)st->st_dev,
                   (unsigned long long)st->st_ino, (long long)st->st_size,
                   (long long)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec,
                   (long long)st->st_ctim.tv_sec * 1000000000LL + st->st_ctim.tv_nsec);
  if (n <= 0 || (size_t)n >= sizeof ident) return -1;
  static const char ref_kind[] = "prepack-ref";
  const void *ref_parts[2] = {ref_kind, ident};
  size_t ref_sizes[2] = {sizeof ref_kind - 1, (size_t)n};
  uint8_t ref_key[32];
  ti_cache_key(ref_parts, ref_sizes, 2, ref_key);
  char hex[65];
  ti_hex(ref_key, 32, hex);
  return ti_entry_path(folder, hex, ".ref", ref_path, cap);
}

/* The content hash a .ref holds (64 lowercase hex digits, and a newline
 * after them at most: the regex ^[0-9a-f]{64}$) into content; 1 when it is
 * there and valid, else 0. */
static int ti_read_ref(const char *ref_path, char content[64]) {
  /* tinyinfer.cache.read_prefix: non-blocking (a FIFO does not hang), at most 65 bytes. */
  int fd = open(ref_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return 0;
  char text[66];
  ssize_t got = read(fd, text, 65);
  close(fd);
  if (got != 64 && !(got == 65 && text[64] == '\n')) return 0;
  for (int i = 0; i < 64; i++) {
    char c = text[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return 0;
  }
  memcpy(content, text, 64);
  return 1;
}

/* The image's key for the content hash and its file; 0, or -1 when the path does not fit. */
static int ti_image_plan(const char content[64], const char *folder, uint32_t flags, const char *version,
                         const char *isa, int32_t layout, char *image_path, size_t cap, uint8_t key[32]) {
  char flags_text[16], layout_text[16], hex[65];
  int fl = snprintf(flags_text, sizeof flags_text, "%u", flags);
  int ll = snprintf(layout_text, sizeof layout_text, "%d", (int)layout);
  static const char kind[] = "prepack";
  const void *parts[6] = {kind, content, flags_text, version, isa, layout_text};
  size_t sizes[6] = {sizeof kind - 1, 64, (size_t)fl, strlen(version), strlen(isa), (size_t)ll};
  ti_cache_key(parts, sizes, 6, key);
  ti_hex(key, 32, hex);
  return ti_entry_path(folder, hex, ".pack", image_path, cap) != 0 ? -1 : 0;
}

int ti_prepack_plan(const char *model_path, const char *folder, uint32_t flags, const char *version,
                    const char *isa, int32_t layout, char *image_path, size_t cap, uint8_t key[32]) {
  struct stat st;
  char ref_path[8192], content[64];
  if (stat(model_path, &st) != 0 || !S_ISREG(st.st_mode)) return -1;
  if (ti_ref_path(&st, folder, ref_path, sizeof ref_path) != 0) return -1;
  if (!ti_read_ref(ref_path, content)) return 1;
  return ti_image_plan(content, folder, flags, version, isa, layout, image_path, cap, key);
}

/* ---- writing entries (tinf_model_save_prepack_cached) ---------------------------- */

#define TI_TMP_PREFIX ".tmp-"               /* tinyinfer.cache._TMP_PREFIX */
#define TI_STALE_TMP_SECONDS 3600           /* tinyinfer.cache._STALE_TMP_SECONDS */
#define TI_DEFAULT_MAX_BYTES (1ULL << 30)   /* tinyinfer.cache.DEFAULT_MAX_BYTES */

unsigned long long ti_cache_max_bytes(void) {
  const char *v = getenv("TINYINFER_CACHE_MAX_BYTES");
  if (v && *v) {
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    while (end && (*end == ' ' || (*end >= '\t' && *end <= '\r'))) end++;
    if (errno == 0 && end && *end == 0 && n >= 0) return (unsigned long long)n;
  }
  return TI_DEFAULT_MAX_BYTES;
}

/* mkdir -p: the folder and any missing parents, mode 0700 (os.makedirs); 0 or an errno value. */
static int ti_make_folders(char *folder) {
  for (char *p = folder + 1;; p++) {
    if (*p != '/' && *p != 0) continue;
    char c = *p;
    *p = 0;
    int e = (mkdir(folder, 0700) != 0 && errno != EEXIST) ? errno : 0;
    *p = c;
    if (e) return e;
    if (c == 0) return 0;
  }
}

int ti_cache_write_atomic(const char *path, const void *data, size_t size) {
  char folder[8192], tmp[8192 + 32];
  size_t n = strlen(path);
  if (n >= sizeof folder) return ENAMETOOLONG;
  memcpy(folder, path, n + 1);
  char *slash = strrchr(folder, '/');
  if (!slash) return EINVAL;
  *slash = 0;
  if (folder[0] == 0) { folder[0] = '/'; folder[1] = 0; }
  int made = ti_make_folders(folder);
  if (made) return made;
  if (snprintf(tmp, sizeof tmp, "%s/" TI_TMP_PREFIX "XXXXXX", folder) >= (int)sizeof tmp) return ENAMETOOLONG;
  int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) return errno;
  const char *p = data;
  size_t left = size;
  int err = 0;
  while (left > 0 && !err) {
    ssize_t w = write(fd, p, left);
    if (w < 0) { if (errno != EINTR) err = errno; continue; }
    p += w;
    left -= (size_t)w;
  }
  if (!err && fchmod(fd, 0600) != 0) err = errno;  /* private to its user, as the package's entries */
  if (!err && fsync(fd) != 0) err = errno;
  if (close(fd) != 0 && !err) err = errno;
  if (!err && rename(tmp, path) != 0) err = errno;
  if (err) { unlink(tmp); return err; }
  int dfd = open(folder, O_RDONLY | O_CLOEXEC | O_DIRECTORY);  /* the rename itself durable */
  if (dfd >= 0) { (void)fsync(dfd); close(dfd); }
  return 0;
}

/* An entry's name: 1 to 128 of [0-9a-zA-Z_-], then one of the kinds' suffixes (tinyinfer.cache.KINDS). */
static int ti_entry_name(const char *name) {
  const char *dot = strrchr(name, '.');
  if (!dot || dot == name || dot - name > 128) return 0;
  if (strcmp(dot, ".bin") != 0 && strcmp(dot, ".pack") != 0 && strcmp(dot, ".ref") != 0) return 0;
  for (const char *c = name; c < dot; c++) {
    if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_' || *c == '-'))
      return 0;
  }
  return 1;
}

typedef struct { char name[160]; long long mtime_ns; unsigned long long size; } ti_cache_item;

static int ti_item_older(const void *a, const void *b) {
  const ti_cache_item *x = a, *y = b;
  return x->mtime_ns < y->mtime_ns ? -1 : x->mtime_ns > y->mtime_ns;
}

void ti_cache_trim(const char *folder, const char *keep) {
  DIR *d = opendir(folder);
  if (!d) return;
  ti_cache_item *items = NULL;
  size_t count = 0, capacity = 0;
  unsigned long long total = 0;
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  char path[8192 + 256];
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    if (strlen(e->d_name) >= sizeof items->name) continue;
    if (snprintf(path, sizeof path, "%s/%s", folder, e->d_name) >= (int)sizeof path) continue;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;  /* removed meanwhile, or not a file */
    if (strncmp(e->d_name, TI_TMP_PREFIX, sizeof TI_TMP_PREFIX - 1) == 0) {
      if (now.tv_sec - st.st_mtim.tv_sec > TI_STALE_TMP_SECONDS) unlink(path);  /* a crashed writer's */
      continue;
    }
    if (!ti_entry_name(e->d_name)) continue;
    if (count == capacity) {
      size_t c = capacity ? capacity * 2 : 64;
      ti_cache_item *grown = realloc(items, c * sizeof *items);
      if (!grown) break;
      items = grown;
      capacity = c;
    }
    strcpy(items[count].name, e->d_name);
    items[count].mtime_ns = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    items[count].size = (unsigned long long)st.st_size;
    total += items[count].size;
    count++;
  }
  closedir(d);
  const unsigned long long limit = ti_cache_max_bytes();
  if (total > limit && count > 0) {
    qsort(items, count, sizeof *items, ti_item_older);  /* least recently used first */
    const char *keep_name = keep ? strrchr(keep, '/') : NULL;
    keep_name = keep_name ? keep_name + 1 : keep;
    for (size_t i = 0; i < count && total > limit; i++) {
      if (keep_name && strcmp(items[i].name, keep_name) == 0) continue;
      if (snprintf(path, sizeof path, "%s/%s", folder, items[i].name) >= (int)sizeof path) continue;
      if (unlink(path) == 0 || errno == ENOENT) total -= items[i].size;
    }
  }
  free(items);
}

int ti_prepack_save_plan(const char *model_path, const char *folder, uint32_t flags, const char *version,
                         const char *isa, int32_t layout, char *image_path, size_t cap, uint8_t key[32],
                         long long *file_size) {
  struct stat st;
  char ref_path[8192], content[64];
  if (stat(model_path, &st) != 0) return errno;
  if (!S_ISREG(st.st_mode)) return -1;
  if ((long long)st.st_size != *file_size) {
    *file_size = (long long)st.st_size;
    return -2;
  }
  if (ti_ref_path(&st, folder, ref_path, sizeof ref_path) != 0) return ENAMETOOLONG;
  if (!ti_read_ref(ref_path, content)) {
    /* The file's bytes hashed once for its identity: later loads read the .ref. */
    int fd = open(model_path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return errno;
    enum { chunk = 1 << 16 };
    unsigned char *buf = malloc(chunk);
    if (!buf) { close(fd); return ENOMEM; }
    ti_sha256 h;
    ti_sha256_init(&h);
    for (;;) {
      ssize_t got = read(fd, buf, chunk);
      if (got < 0) {
        if (errno == EINTR) continue;
        int e = errno;
        free(buf);
        close(fd);
        return e;
      }
      if (got == 0) break;
      ti_sha256_update(&h, buf, (size_t)got);
    }
    free(buf);
    close(fd);
    uint8_t digest[32];
    ti_sha256_final(&h, digest);
    char hex[65];
    ti_hex(digest, 32, hex);
    memcpy(content, hex, 64);
    int e = ti_cache_write_atomic(ref_path, content, 64);
    if (e) return e;
  }
  return ti_image_plan(content, folder, flags, version, isa, layout, image_path, cap, key) != 0 ? ENAMETOOLONG : 0;
}

void ti_touch_file(const char *path) { (void)utimensat(AT_FDCWD, path, NULL, 0); }
