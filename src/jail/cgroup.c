#include "jail/cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <mntent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/array.h"
#include "util/fd.h"

static const char *const ctl_names[CGROUP_NCTL] = {"memory", "pids", "cpu"};

/* A pooled exec cgroup between two execs: which one, the limits in place, its kill counter. */
struct pooled {
    unsigned slot;
    struct cgroup_limits written;
    int64_t oom_kills;
};

struct cgroup_pool {
    pthread_mutex_t mu;
    struct pooled *free; /* a stack: the most recently used (warmest) first out */
    size_t nfree, cap;
    unsigned next_slot;
};

/* Writes a short string to dirfd/path. */
static int write_at(int dirfd, const char *path, const char *s)
{
    int fd = openat(dirfd, path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = write_all(fd, s, strlen(s));
    close(fd);
    return r;
}

static bool exists_at(int dirfd, const char *path)
{
    return faccessat(dirfd, path, F_OK, 0) == 0;
}

/* The server's own cgroup path in a hierarchy, from /proc/self/cgroup: "0::/x" for v2, or the
 * v1 line whose controller list contains `ctl`. */
static int own_cgroup(const char *ctl, char *out, size_t outlen)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return -errno;
    char line[1024];
    int r = -ENOENT;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        const char *ctls = c1 + 1;
        bool match = false;
        if (!ctl) {
            match = strcmp(line, "0") == 0 && *ctls == '\0';
        } else {
            char tmp[256];
            snprintf(tmp, sizeof(tmp), "%s", ctls);
            char *save = NULL;
            for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save))
                if (strcmp(t, ctl) == 0)
                    match = true;
        }
        if (match) {
            snprintf(out, outlen, "%s", c2 + 1);
            r = 0;
            break;
        }
    }
    fclose(f);
    return r;
}

/* Mount point of the v2 hierarchy (ctl NULL) or of the v1 hierarchy holding `ctl`. */
static int find_mount(const char *ctl, char *out, size_t outlen)
{
    FILE *f = setmntent("/proc/self/mounts", "re");
    if (!f)
        return -errno;
    struct mntent ent;
    char sbuf[4096];
    int r = -ENOENT;
    while (getmntent_r(f, &ent, sbuf, sizeof(sbuf))) {
        bool match = ctl ? strcmp(ent.mnt_type, "cgroup") == 0 && hasmntopt(&ent, ctl)
                         : strcmp(ent.mnt_type, "cgroup2") == 0;
        if (match) {
            snprintf(out, outlen, "%s", ent.mnt_dir);
            r = 0;
            break;
        }
    }
    endmntent(f);
    return r;
}

/* Kills every process listed in dirfd/name/cgroup.procs. */
static void kill_procs(int dirfd, const char *name)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/cgroup.procs", name);
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return;
    }
    long pid;
    while (fscanf(f, "%ld", &pid) == 1)
        if (pid > 1)
            (void)kill((pid_t)pid, SIGKILL);
    fclose(f);
}

/* rmdir with a short retry: a cgroup stays busy for a moment after its last task died. */
static int rmdir_retry(int dirfd, const char *name)
{
    for (int i = 0; i < 200; i++) {
        if (unlinkat(dirfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
            return 0;
        if (errno != EBUSY)
            return -errno;
        if (i == 0)
            kill_procs(dirfd, name);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return -EBUSY;
}

/* Removes every leftover exec cgroup below a base directory. */
static void clean_base(int base_fd)
{
    int fd = openat(base_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_type == DT_DIR && e->d_name[0] != '.')
            (void)rmdir_retry(base_fd, e->d_name);
    closedir(d);
}

/* Opens (creating) "<mount>/<own>/<base_name>"; remembers the parent for the final rmdir. */
static int open_base(struct cgroup_rt *rt, int ctl, const char *mnt, const char *own)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s%s", mnt, strcmp(own, "/") == 0 ? "" : own);
    int parent = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (parent < 0)
        return -errno;
    if (mkdirat(parent, rt->base_name, 0755) < 0 && errno != EEXIST) {
        int r = -errno;
        close(parent);
        return r;
    }
    int fd = openat(parent, rt->base_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int r = -errno;
        close(parent);
        return r;
    }
    rt->parent_fd[ctl] = parent;
    return fd;
}

static bool probe_v2(struct cgroup_rt *rt)
{
    char mnt[1024], own[2048];
    if (find_mount(NULL, mnt, sizeof(mnt)) < 0 || own_cgroup(NULL, own, sizeof(own)) < 0)
        return false;
    char path[4096];
    snprintf(path, sizeof(path), "%s%s", mnt, strcmp(own, "/") == 0 ? "" : own);
    int own_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (own_fd < 0)
        return false;
    char ctrls[512] = "";
    int fd = openat(own_fd, "cgroup.controllers", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, ctrls, sizeof(ctrls) - 1);
        ctrls[n > 0 ? n : 0] = '\0';
        close(fd);
    }
    bool ok = strstr(ctrls, "memory") && strstr(ctrls, "pids") && strstr(ctrls, "cpu");
    /* Enabling controllers for children fails (EBUSY) if our own cgroup holds processes and is
     * not the root: then v2 cannot be used without moving the server, which we do not do. */
    if (ok)
        ok = write_at(own_fd, "cgroup.subtree_control", "+memory +pids +cpu") == 0;
    close(own_fd);
    if (!ok)
        return false;
    int base = open_base(rt, CGROUP_MEMORY, mnt, own);
    if (base < 0)
        return false;
    if (write_at(base, "cgroup.subtree_control", "+memory +pids +cpu") < 0) {
        close(base);
        return false;
    }
    rt->mode = CGROUP_V2;
    for (int i = 0; i < CGROUP_NCTL; i++) {
        rt->base_fd[i] = i == 0 ? base : fcntl(base, F_DUPFD_CLOEXEC, 3);
        rt->enforced[i] = rt->base_fd[i] >= 0;
    }
    return true;
}

static void probe_v1(struct cgroup_rt *rt)
{
    for (int i = 0; i < CGROUP_NCTL; i++) {
        char mnt[1024], own[2048];
        if (find_mount(ctl_names[i], mnt, sizeof(mnt)) < 0 ||
            own_cgroup(ctl_names[i], own, sizeof(own)) < 0)
            continue;
        int base = open_base(rt, i, mnt, own);
        if (base < 0)
            continue;
        rt->base_fd[i] = base;
        rt->enforced[i] = true;
        rt->mode = CGROUP_V1;
    }
    if (rt->base_fd[CGROUP_MEMORY] >= 0)
        rt->memsw = exists_at(rt->base_fd[CGROUP_MEMORY], "memory.memsw.limit_in_bytes");
}

void cgroup_probe(const char *instance, struct cgroup_rt *ret)
{
    memset(ret, 0, sizeof(*ret));
    for (int i = 0; i < CGROUP_NCTL; i++)
        ret->base_fd[i] = ret->parent_fd[i] = -1;
    snprintf(ret->base_name, sizeof(ret->base_name), "sqlfs-%s", instance);
    if (!probe_v2(ret))
        probe_v1(ret);
    if (ret->mode != CGROUP_NONE) {
        ret->pool = calloc(1, sizeof(*ret->pool));
        if (!ret->pool || pthread_mutex_init(&ret->pool->mu, NULL) != 0) {
            free(ret->pool);
            ret->pool = NULL;
            cgroup_rt_release(ret);
            snprintf(ret->message, sizeof(ret->message), "out of memory: no cgroup limits");
            return;
        }
    }
    for (int i = 0; i < CGROUP_NCTL; i++)
        if (ret->base_fd[i] >= 0 && (i == 0 || ret->mode == CGROUP_V1))
            clean_base(ret->base_fd[i]);
    size_t off = 0;
    for (int i = 0; i < CGROUP_NCTL; i++)
        if (!ret->enforced[i])
            off += (size_t)snprintf(ret->message + off, sizeof(ret->message) - off,
                                    "%scgroup controller %s unavailable: no %s limit",
                                    off ? "; " : "", ctl_names[i], ctl_names[i]);
}

void cgroup_rt_release(struct cgroup_rt *rt)
{
    if (rt->pool) {
        for (size_t k = 0; k < rt->pool->nfree; k++) {
            char name[24];
            snprintf(name, sizeof(name), "x%u", rt->pool->free[k].slot);
            for (int i = 0; i < CGROUP_NCTL; i++)
                if (rt->base_fd[i] >= 0 && (i == 0 || rt->mode == CGROUP_V1))
                    (void)rmdir_retry(rt->base_fd[i], name);
        }
        pthread_mutex_destroy(&rt->pool->mu);
        free(rt->pool->free);
        free(rt->pool);
    }
    for (int i = 0; i < CGROUP_NCTL; i++) {
        if (rt->base_fd[i] >= 0)
            close(rt->base_fd[i]);
        if (rt->parent_fd[i] >= 0) {
            (void)unlinkat(rt->parent_fd[i], rt->base_name, AT_REMOVEDIR); /* fails if busy */
            close(rt->parent_fd[i]);
        }
    }
    memset(rt, 0, sizeof(*rt));
    for (int i = 0; i < CGROUP_NCTL; i++)
        rt->base_fd[i] = rt->parent_fd[i] = -1;
}

/* The hierarchies a cgroup has a directory in: v2 has one for all controllers. */
static bool has_dir(const struct cgroup_rt *rt, int ctl)
{
    return rt->base_fd[ctl] >= 0 && (ctl == 0 || rt->mode == CGROUP_V1);
}

static int set_limit(const struct cgroup_rt *rt, int ctl, const char *name,
                     const struct cgroup_limits *lim)
{
    int dfd = rt->base_fd[ctl];
    char path[160], val[64];
    int r = 0;
    if (ctl == CGROUP_MEMORY && lim->memory_bytes > 0) {
        snprintf(val, sizeof(val), "%" PRId64, lim->memory_bytes);
        if (rt->mode == CGROUP_V2) {
            snprintf(path, sizeof(path), "%s/memory.max", name);
            r = write_at(dfd, path, val);
            snprintf(path, sizeof(path), "%s/memory.swap.max", name);
            if (r == 0 && exists_at(dfd, path))
                r = write_at(dfd, path, "0");
        } else {
            snprintf(path, sizeof(path), "%s/memory.limit_in_bytes", name);
            r = write_at(dfd, path, val);
            snprintf(path, sizeof(path), "%s/memory.memsw.limit_in_bytes", name);
            if (r == 0 && rt->memsw)
                r = write_at(dfd, path, val);
        }
    } else if (ctl == CGROUP_PIDS && lim->pids_max != 0) {
        /* < 0: lift a limit an earlier exec of a pooled cgroup had */
        if (lim->pids_max > 0)
            snprintf(val, sizeof(val), "%" PRId64, lim->pids_max);
        else
            snprintf(val, sizeof(val), "max");
        snprintf(path, sizeof(path), "%s/pids.max", name);
        r = write_at(dfd, path, val);
    } else if (ctl == CGROUP_CPU && lim->cpu_percent != 0) {
        int64_t quota = lim->cpu_percent * 1000; /* per 100 ms period */
        if (rt->mode == CGROUP_V2) {
            if (quota > 0)
                snprintf(val, sizeof(val), "%" PRId64 " 100000", quota);
            else
                snprintf(val, sizeof(val), "max 100000");
            snprintf(path, sizeof(path), "%s/cpu.max", name);
            r = write_at(dfd, path, val);
        } else {
            snprintf(val, sizeof(val), "%" PRId64, quota > 0 ? quota : -1);
            snprintf(path, sizeof(path), "%s/cpu.cfs_quota_us", name);
            r = write_at(dfd, path, val);
        }
    }
    return r;
}

static bool limit_differs(const struct cgroup_limits *a, const struct cgroup_limits *b, int ctl)
{
    return ctl == CGROUP_PIDS ? a->pids_max != b->pids_max
                              : ctl == CGROUP_CPU && a->cpu_percent != b->cpu_percent;
}

/* Makes "x<slot>" in every hierarchy; an existing one is a leftover whose removal failed
 * earlier and must be empty now. */
static int make_dirs(struct cgroup_exec *cg)
{
    const struct cgroup_rt *rt = cg->rt;
    for (int i = 0; i < CGROUP_NCTL; i++) {
        if (!has_dir(rt, i))
            continue;
        int dfd = rt->base_fd[i];
        if (mkdirat(dfd, cg->name, 0755) < 0 &&
            (errno != EEXIST || unlinkat(dfd, cg->name, AT_REMOVEDIR) < 0 ||
             mkdirat(dfd, cg->name, 0755) < 0))
            return -errno;
        cg->created[i] = true;
    }
    return 0;
}

/* The number in the exec cgroup's memory controller file `file` (after `key` when not NULL),
 * or -1 when it cannot be read. */
static int64_t read_memory_number(const struct cgroup_exec *cg, const char *file, const char *key)
{
    char path[64], text[512];
    snprintf(path, sizeof(path), "%s/%s", cg->name, file);
    int fd = openat(cg->rt->base_fd[CGROUP_MEMORY], path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    text[n] = '\0';
    const char *p = key ? strstr(text, key) : text;
    if (!p)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(p + (key ? strlen(key) : 0), &end, 10);
    return errno || end == p || v < 0 ? -1 : v;
}

/* Both v2 memory.events and v1 memory.oom_control have an "oom_kill N" line. */
static int64_t read_oom_kills(const struct cgroup_exec *cg)
{
    return read_memory_number(
        cg, cg->rt->mode == CGROUP_V2 ? "memory.events" : "memory.oom_control", "oom_kill ");
}

/* Memory still charged to a cgroup going back to the pool: above this (a script's page cache
 * or tmpfs files, not reclaimed yet) it is removed instead, so that one exec's leftovers never
 * crowd the next exec's limit. */
#define POOL_MAX_CHARGED_BYTES (32LL << 20)

static bool poolable_charge(const struct cgroup_exec *cg)
{
    int64_t used = read_memory_number(
        cg, cg->rt->mode == CGROUP_V2 ? "memory.current" : "memory.usage_in_bytes", NULL);
    return used >= 0 && used <= POOL_MAX_CHARGED_BYTES;
}

int cgroup_exec_acquire(const struct cgroup_rt *rt, const struct cgroup_limits *lim,
                        struct cgroup_exec *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->oom_kills_now = -1;
    if (rt->mode == CGROUP_NONE || !rt->pool)
        return 0;
    ret->rt = rt;
    struct cgroup_pool *pool = rt->pool;
    bool fresh = false;
    pthread_mutex_lock(&pool->mu);
    if (pool->nfree > 0) {
        struct pooled *e = &pool->free[--pool->nfree];
        ret->slot = e->slot;
        ret->written = e->written;
        ret->oom_kills = e->oom_kills;
    } else {
        ret->slot = pool->next_slot++;
        fresh = true;
    }
    pthread_mutex_unlock(&pool->mu);
    snprintf(ret->name, sizeof(ret->name), "x%u", ret->slot);
    int r = 0;
    if (fresh)
        r = make_dirs(ret);
    else
        for (int i = 0; i < CGROUP_NCTL; i++)
            ret->created[i] = has_dir(rt, i);
    for (int i = CGROUP_PIDS; r == 0 && i < CGROUP_NCTL; i++) {
        bool limited = i == CGROUP_PIDS ? lim->pids_max > 0 : lim->cpu_percent > 0;
        if (!rt->enforced[i] || (fresh ? !limited : !limit_differs(&ret->written, lim, i)))
            continue;
        /* 0 means no limit: a reused cgroup gets the "no limit" value written. */
        struct cgroup_limits want = *lim;
        if (i == CGROUP_PIDS && want.pids_max <= 0)
            want.pids_max = -1;
        if (i == CGROUP_CPU && want.cpu_percent <= 0)
            want.cpu_percent = -1;
        r = set_limit(rt, i, ret->name, &want);
    }
    if (r < 0) {
        cgroup_exec_release(ret, false);
        return r;
    }
    ret->written = *lim;
    ret->written.memory_bytes = 0;
    return 0;
}

int cgroup_exec_limit_memory(struct cgroup_exec *cg, int64_t memory_bytes)
{
    const struct cgroup_rt *rt = cg->rt;
    if (!rt || !rt->enforced[CGROUP_MEMORY] || !cg->created[CGROUP_MEMORY] || memory_bytes <= 0)
        return 0;
    struct cgroup_limits lim = {.memory_bytes = memory_bytes};
    cg->memory_limited = true; /* even if the write fails half way: release lifts both */
    return set_limit(rt, CGROUP_MEMORY, cg->name, &lim);
}

/* Back to no memory limit, for the next exec's setup (see cgroup_exec_limit_memory). v1 wants
 * memory.limit_in_bytes <= memory.memsw.limit_in_bytes at every step: memsw goes first. */
static int lift_memory_limit(const struct cgroup_exec *cg)
{
    const struct cgroup_rt *rt = cg->rt;
    int dfd = rt->base_fd[CGROUP_MEMORY];
    char path[64];
    if (rt->mode == CGROUP_V2) {
        /* swap too: set_limit capped it at 0 with the memory limit */
        snprintf(path, sizeof(path), "%s/memory.swap.max", cg->name);
        int r = exists_at(dfd, path) ? write_at(dfd, path, "max") : 0;
        snprintf(path, sizeof(path), "%s/memory.max", cg->name);
        return r < 0 ? r : write_at(dfd, path, "max");
    }
    int r = 0;
    if (rt->memsw) {
        snprintf(path, sizeof(path), "%s/memory.memsw.limit_in_bytes", cg->name);
        r = write_at(dfd, path, "-1");
    }
    snprintf(path, sizeof(path), "%s/memory.limit_in_bytes", cg->name);
    return r < 0 ? r : write_at(dfd, path, "-1");
}

int cgroup_exec_attach(const struct cgroup_exec *cg, pid_t pid)
{
    char path[128], val[32];
    snprintf(path, sizeof(path), "%s/cgroup.procs", cg->name);
    snprintf(val, sizeof(val), "%d", (int)pid);
    for (int i = 0; i < CGROUP_NCTL; i++) {
        if (!cg->created[i])
            continue;
        int r = write_at(cg->rt->base_fd[i], path, val);
        if (r < 0)
            return r;
    }
    return 0;
}

int cgroup_exec_open_procs(const struct cgroup_exec *cg, int fds[CGROUP_NCTL])
{
    char path[128];
    snprintf(path, sizeof(path), "%s/cgroup.procs", cg->name);
    int n = 0;
    for (int i = 0; cg->rt && i < CGROUP_NCTL; i++) {
        if (!cg->created[i])
            continue;
        int fd = openat(cg->rt->base_fd[i], path, O_WRONLY | O_CLOEXEC);
        if (fd < 0) {
            int e = -errno;
            while (n > 0)
                close(fds[--n]);
            return e;
        }
        fds[n++] = fd;
    }
    return n;
}

bool cgroup_exec_oom(struct cgroup_exec *cg)
{
    if (!cg->rt || !cg->created[CGROUP_MEMORY])
        return false;
    cg->oom_kills_now = read_oom_kills(cg); /* -1: unknown, and then the cgroup is not pooled */
    return cg->oom_kills_now > cg->oom_kills;
}

void cgroup_exec_release(struct cgroup_exec *cg, bool empty)
{
    const struct cgroup_rt *rt = cg->rt;
    if (!rt)
        return;
    bool complete = true;
    for (int i = 0; i < CGROUP_NCTL; i++)
        complete = complete && cg->created[i] == has_dir(rt, i);
    bool memory = cg->created[CGROUP_MEMORY];
    int64_t kills = !memory ? 0 : cg->oom_kills_now >= 0 ? cg->oom_kills_now : read_oom_kills(cg);
    if (empty && complete && kills >= 0 && (!memory || poolable_charge(cg)) &&
        (!cg->memory_limited || lift_memory_limit(cg) == 0)) {
        struct pooled e = {cg->slot, cg->written, kills};
        struct cgroup_pool *pool = rt->pool;
        pthread_mutex_lock(&pool->mu);
        bool kept = ARRAY_GROW(pool->free, pool->nfree + 1, pool->cap) == 0;
        if (kept)
            pool->free[pool->nfree++] = e;
        pthread_mutex_unlock(&pool->mu);
        if (kept) {
            cg->rt = NULL;
            return;
        }
    }
    for (int i = 0; i < CGROUP_NCTL; i++) {
        if (!cg->created[i])
            continue;
        (void)rmdir_retry(rt->base_fd[i], cg->name);
        cg->created[i] = false;
    }
    cg->rt = NULL;
}
