/* A stand-in for eBPF for Windows' EbpfApi.dll, built by the wintool tests as libEbpfApi.so
 * so that hvlab's Windows tools (driver-payloads/windows-tools/, C#) run for real under mono.
 *
 * Same signatures and conventions as the exports the tools call (ebpfapi/Source.def,
 * libbpf's bpf.h): 0 or -errno with MSVC numbers. In-memory maps guarded by one mutex each;
 * one fake program object (`test_map_read_helper_value` reading `sample_hash_map` key 0
 * through the "helper" when `config_map[0] == 2`, like upstream's custom_map_basic).
 *
 * Switches (environment, read on every call so a test can flip them mid-run):
 *   EBPF_STUB_PROVIDER_AWAY_FILE  while this file exists the custom type's provider is away:
 *                                 create (type != 1, 2) / load / test run return -EINVAL
 *   EBPF_STUB_NOT_ELEVATED=1      every call returns -EPERM
 *   EBPF_STUB_FAIL_UPDATE_EVERY=N every Nth map update returns -EOTHER
 *   EBPF_STUB_REPORT=<file>       at exit, one JSON line of call counts and live objects
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EPERM_ 1
#define ENOENT_ 2
#define EBADF_ 9
#define E2BIG_ 7
#define EINVAL_ 22
#define ENOSPC_ 28
#define EOTHER_ 131

#define MAX_FDS 4096
#define MAX_THREADS 256

struct bpf_map_create_opts_stub { size_t sz; uint32_t pad[5]; uint32_t map_flags; uint64_t map_extra; uint32_t numa_node, map_ifindex; };
struct bpf_test_run_opts_stub {
    size_t sz; const void *data_in; void *data_out; uint32_t data_size_in, data_size_out;
    const void *ctx_in; void *ctx_out; uint32_t ctx_size_in, ctx_size_out, retval; int repeat;
    uint32_t duration, flags, cpu, batch_size;
};
_Static_assert(sizeof(struct bpf_map_create_opts_stub) == 48, "bpf_map_create_opts is 48 bytes on x64");
_Static_assert(sizeof(struct bpf_test_run_opts_stub) == 80, "bpf_test_run_opts is 80 bytes on x64");

struct map {
    pthread_mutex_t lock;
    uint32_t type, key_size, value_size, max_entries, count;
    int refs; /* fds + pins + program objects */
    unsigned char *keys, *values, *used;
    char name[64];
};

enum kind { FREE = 0, MAP, PROG };
static struct { enum kind kind; struct map *map; void *obj; } fds[MAX_FDS];
static struct { char path[256]; struct map *map; } pins[64];
static pthread_mutex_t table = PTHREAD_MUTEX_INITIALIZER;
static long calls_create, calls_update, calls_lookup, calls_delete, calls_test_run, calls_close, updates_seen;
static long live_maps, max_live_maps;
static pthread_t threads_seen[MAX_THREADS];
static int thread_count;

struct object { struct map *sample, *config; int prog_fd, sample_fd, config_fd; };

static int env_int(const char *name) { const char *v = getenv(name); return v ? atoi(v) : 0; }
static int provider_away(void) {
    const char *f = getenv("EBPF_STUB_PROVIDER_AWAY_FILE");
    return f && access(f, F_OK) == 0;
}
static void note_thread(void) {
    pthread_t self = pthread_self();
    pthread_mutex_lock(&table);
    int i;
    for (i = 0; i < thread_count; i++) if (pthread_equal(threads_seen[i], self)) break;
    if (i == thread_count && thread_count < MAX_THREADS) threads_seen[thread_count++] = self;
    pthread_mutex_unlock(&table);
}
#define ENTER() do { note_thread(); if (env_int("EBPF_STUB_NOT_ELEVATED")) return -EPERM_; } while (0)

static struct map *new_map(uint32_t type, const char *name, uint32_t ks, uint32_t vs, uint32_t max) {
    struct map *m = calloc(1, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
    m->type = type; m->key_size = ks; m->value_size = vs; m->max_entries = max;
    m->keys = calloc(max, ks); m->values = calloc(max, vs); m->used = calloc(max, 1);
    snprintf(m->name, sizeof m->name, "%s", name ? name : "");
    live_maps++;
    if (live_maps > max_live_maps) max_live_maps = live_maps;
    return m;
}
/* Called with `table` held. */
static void unref(struct map *m) {
    if (--m->refs > 0) return;
    free(m->keys); free(m->values); free(m->used); free(m);
    live_maps--;
}
static int add_fd(enum kind k, struct map *m) {
    for (int fd = 3; fd < MAX_FDS; fd++)
        if (fds[fd].kind == FREE) { fds[fd].kind = k; fds[fd].map = m; if (m) m->refs++; return fd; }
    return -ENOSPC_;
}
/* The map behind fd, with a reference so a concurrent close cannot free it. */
static struct map *get_map(int fd) {
    struct map *m = NULL;
    pthread_mutex_lock(&table);
    if (fd >= 0 && fd < MAX_FDS && fds[fd].kind == MAP) { m = fds[fd].map; m->refs++; }
    pthread_mutex_unlock(&table);
    return m;
}
static void put_map(struct map *m) { pthread_mutex_lock(&table); unref(m); pthread_mutex_unlock(&table); }

int bpf_map_create(int type, const char *name, uint32_t ks, uint32_t vs, uint32_t max, const struct bpf_map_create_opts_stub *opts) {
    ENTER();
    __atomic_add_fetch(&calls_create, 1, __ATOMIC_RELAXED);
    if (opts && (opts->sz != 48 || opts->map_flags || opts->numa_node || opts->map_ifindex)) return -EINVAL_;
    if (ks == 0 || vs == 0 || max == 0) return -EINVAL_;
    if (type != 1 && type != 2) {
        /* A custom type: only the sample provider's 15, with 4-byte keys and values. */
        if (type != 15 || provider_away() || ks != 4 || vs != 4) return -EINVAL_;
    }
    pthread_mutex_lock(&table);
    struct map *m = new_map((uint32_t)type, name, ks, vs, max);
    int fd = add_fd(MAP, m);
    pthread_mutex_unlock(&table);
    return fd;
}

static int find_slot(struct map *m, const void *key) {
    for (uint32_t i = 0; i < m->max_entries; i++)
        if (m->used[i] && memcmp(m->keys + (size_t)i * m->key_size, key, m->key_size) == 0) return (int)i;
    return -1;
}

int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags) {
    ENTER();
    __atomic_add_fetch(&calls_update, 1, __ATOMIC_RELAXED);
    int every = env_int("EBPF_STUB_FAIL_UPDATE_EVERY");
    long n = __atomic_add_fetch(&updates_seen, 1, __ATOMIC_RELAXED);
    if (every > 0 && n % every == 0) return -EOTHER_;
    if (flags > 2) return -EINVAL_;
    struct map *m = get_map(fd);
    if (!m) return -EBADF_;
    int rc = 0;
    pthread_mutex_lock(&m->lock);
    int i = find_slot(m, key);
    if (i < 0) {
        for (uint32_t j = 0; j < m->max_entries && i < 0; j++) if (!m->used[j]) i = (int)j;
        if (i < 0) rc = -E2BIG_;
        else { m->used[i] = 1; m->count++; memcpy(m->keys + (size_t)i * m->key_size, key, m->key_size); }
    }
    if (rc == 0) memcpy(m->values + (size_t)i * m->value_size, value, m->value_size);
    pthread_mutex_unlock(&m->lock);
    put_map(m);
    return rc;
}

int bpf_map_lookup_elem(int fd, const void *key, void *value) {
    ENTER();
    __atomic_add_fetch(&calls_lookup, 1, __ATOMIC_RELAXED);
    struct map *m = get_map(fd);
    if (!m) return -EBADF_;
    pthread_mutex_lock(&m->lock);
    int i = find_slot(m, key);
    if (i >= 0) memcpy(value, m->values + (size_t)i * m->value_size, m->value_size);
    pthread_mutex_unlock(&m->lock);
    put_map(m);
    return i >= 0 ? 0 : -ENOENT_;
}

int bpf_map_delete_elem(int fd, const void *key) {
    ENTER();
    __atomic_add_fetch(&calls_delete, 1, __ATOMIC_RELAXED);
    struct map *m = get_map(fd);
    if (!m) return -EBADF_;
    pthread_mutex_lock(&m->lock);
    int i = find_slot(m, key);
    if (i >= 0) { m->used[i] = 0; m->count--; }
    pthread_mutex_unlock(&m->lock);
    put_map(m);
    return i >= 0 ? 0 : -ENOENT_;
}

int bpf_map_get_next_key(int fd, const void *key, void *next_key) {
    ENTER();
    struct map *m = get_map(fd);
    if (!m) return -EBADF_;
    int rc = -ENOENT_;
    pthread_mutex_lock(&m->lock);
    int start = key ? find_slot(m, key) + 1 : 0;
    for (uint32_t i = (uint32_t)start; i < m->max_entries; i++)
        if (m->used[i]) { memcpy(next_key, m->keys + (size_t)i * m->key_size, m->key_size); rc = 0; break; }
    pthread_mutex_unlock(&m->lock);
    put_map(m);
    return rc;
}

static int next_id(enum kind k, uint32_t start, uint32_t *next) {
    ENTER();
    int rc = -ENOENT_;
    pthread_mutex_lock(&table);
    for (uint32_t fd = start + 1; fd < MAX_FDS; fd++) if (fds[fd].kind == k) { *next = fd; rc = 0; break; }
    pthread_mutex_unlock(&table);
    return rc;
}
int bpf_map_get_next_id(uint32_t start, uint32_t *next) { return next_id(MAP, start, next); }
int bpf_prog_get_next_id(uint32_t start, uint32_t *next) { return next_id(PROG, start, next); }

int bpf_obj_pin(int fd, const char *path) {
    ENTER();
    int rc = -EBADF_;
    pthread_mutex_lock(&table);
    if (fd >= 0 && fd < MAX_FDS && fds[fd].kind == MAP) {
        rc = -ENOSPC_;
        for (int i = 0; i < 64; i++)
            if (!pins[i].map) { snprintf(pins[i].path, sizeof pins[i].path, "%s", path); pins[i].map = fds[fd].map; pins[i].map->refs++; rc = 0; break; }
    }
    pthread_mutex_unlock(&table);
    return rc;
}
int bpf_obj_get(const char *path) {
    ENTER();
    int rc = -1; /* upstream: -1 when not found */
    pthread_mutex_lock(&table);
    for (int i = 0; i < 64; i++) if (pins[i].map && strcmp(pins[i].path, path) == 0) { rc = add_fd(MAP, pins[i].map); break; }
    pthread_mutex_unlock(&table);
    return rc;
}
int ebpf_object_unpin(const char *path) {
    ENTER();
    int rc = -ENOENT_;
    pthread_mutex_lock(&table);
    for (int i = 0; i < 64; i++)
        if (pins[i].map && strcmp(pins[i].path, path) == 0) { unref(pins[i].map); pins[i].map = NULL; rc = 0; break; }
    pthread_mutex_unlock(&table);
    return rc;
}

int ebpf_close_fd(int fd) {
    note_thread();
    __atomic_add_fetch(&calls_close, 1, __ATOMIC_RELAXED);
    int rc = -EBADF_;
    pthread_mutex_lock(&table);
    if (fd >= 0 && fd < MAX_FDS && fds[fd].kind != FREE) {
        if (fds[fd].map) unref(fds[fd].map);
        fds[fd].kind = FREE; fds[fd].map = NULL; fds[fd].obj = NULL; rc = 0;
    }
    pthread_mutex_unlock(&table);
    return rc;
}

void *bpf_object__open(const char *path) {
    note_thread();
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fclose(f);
    struct object *o = calloc(1, sizeof *o);
    o->prog_fd = o->sample_fd = o->config_fd = -1;
    return o;
}
int bpf_object__load(void *obj) {
    ENTER();
    struct object *o = obj;
    if (provider_away()) return -EINVAL_;
    pthread_mutex_lock(&table);
    o->sample = new_map(15, "sample_hash_map", 4, 4, 1);
    o->config = new_map(2, "config_map", 4, 4, 1);
    o->sample_fd = add_fd(MAP, o->sample);
    o->config_fd = add_fd(MAP, o->config);
    o->prog_fd = add_fd(PROG, NULL);
    if (o->prog_fd >= 0) fds[o->prog_fd].obj = o;
    pthread_mutex_unlock(&table);
    return 0;
}
void bpf_object__close(void *obj) {
    struct object *o = obj;
    if (!o) return;
    if (o->prog_fd >= 0) { ebpf_close_fd(o->prog_fd); ebpf_close_fd(o->sample_fd); ebpf_close_fd(o->config_fd); }
    free(o);
}
void *bpf_object__find_program_by_name(void *obj, const char *name) {
    struct object *o = obj;
    return o && o->prog_fd >= 0 && strcmp(name, "test_map_read_helper_value") == 0 ? o : NULL;
}
int bpf_program__fd(void *prog) { return prog ? ((struct object *)prog)->prog_fd : -EINVAL_; }
/* A map handle is the object plus which map, encoded in the low bit (objects are aligned). */
void *bpf_object__find_map_by_name(void *obj, const char *name) {
    if (!obj) return NULL;
    if (strcmp(name, "sample_hash_map") == 0) return obj;
    if (strcmp(name, "config_map") == 0) return (char *)obj + 1;
    return NULL;
}
int bpf_map__fd(void *map) {
    uintptr_t p = (uintptr_t)map;
    struct object *o = (struct object *)(p & ~(uintptr_t)1);
    return (p & 1) ? o->config_fd : o->sample_fd;
}

int bpf_prog_test_run_opts(int prog_fd, struct bpf_test_run_opts_stub *opts) {
    ENTER();
    __atomic_add_fetch(&calls_test_run, 1, __ATOMIC_RELAXED);
    if (!opts || opts->sz != sizeof *opts || opts->repeat < 1) return -EINVAL_;
    if (opts->ctx_in && opts->ctx_size_in != 32) return -EINVAL_;
    if (provider_away()) return -EINVAL_;
    /* The program reads config_map[0] and, when it is 2, sample_hash_map[0] via the helper. */
    int cfg_fd = -1, sample_fd = -1;
    pthread_mutex_lock(&table);
    if (prog_fd >= 0 && prog_fd < MAX_FDS && fds[prog_fd].kind == PROG) {
        struct object *o = fds[prog_fd].obj;
        cfg_fd = o->config_fd;
        sample_fd = o->sample_fd;
    }
    pthread_mutex_unlock(&table);
    if (cfg_fd < 0) return -EBADF_;
    uint32_t key = 0, config = 0, value = 0;
    if (bpf_map_lookup_elem(cfg_fd, &key, &config) != 0 || config != 2) { opts->retval = 0; return 0; }
    opts->retval = bpf_map_lookup_elem(sample_fd, &key, &value) == 0 ? 1 : 0;
    return 0;
}

__attribute__((destructor)) static void report(void) {
    const char *path = getenv("EBPF_STUB_REPORT");
    if (!path) return;
    FILE *f = fopen(path, "w");
    if (!f) return;
    int open_fds = 0;
    for (int fd = 0; fd < MAX_FDS; fd++) if (fds[fd].kind != FREE) open_fds++;
    fprintf(f, "{\"create\":%ld,\"update\":%ld,\"lookup\":%ld,\"delete\":%ld,\"test_run\":%ld,\"close\":%ld,"
               "\"threads\":%d,\"live_maps\":%ld,\"max_live_maps\":%ld,\"open_fds\":%d}\n",
            calls_create, calls_update, calls_lookup, calls_delete, calls_test_run, calls_close,
            thread_count, live_maps, max_live_maps, open_fds);
    fclose(f);
}
