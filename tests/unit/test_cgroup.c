/* Per-exec cgroups (jail/cgroup.h): which control files get which values for v1 and v2, the OOM
 * verdict, and (as root, on the host's real hierarchy) the pool: limits written for a fresh
 * cgroup, rewritten for a reused one, the memory limit lifted on the way back, processes killed
 * and the cgroup removed when not known to be empty, leftovers of an earlier run cleaned.
 * The file-level tests run on a fake hierarchy: plain directories and files in /tmp. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jail/cgroup.h"

/* ---- a fake hierarchy ------------------------------------------------------------------ */

struct fake {
    char dir[64];
    struct cgroup_rt rt;
    struct cgroup_exec cg;
};

static const char *const ctl_dirs[CGROUP_NCTL] = {"memory", "pids", "cpu"};

static void touch_at(int dirfd, const char *path, const char *text)
{
    int fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
}

/* The contents of dirfd/path without the trailing newline ("" when empty, NULL when missing). */
static const char *read_at(int dirfd, const char *path)
{
    static char text[256];
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    assert_true(n >= 0);
    text[n] = '\0';
    text[strcspn(text, "\n")] = '\0';
    return text;
}

/* An exec cgroup "x0" below a base directory per hierarchy (v1: one per controller; v2: one for
 * all), with the control files the kernel would have, empty. */
static void fake_open(struct fake *f, enum cgroup_mode mode)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/sqlfs-cgroup-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->rt.mode = mode;
    for (int i = 0; i < CGROUP_NCTL; i++)
        f->rt.base_fd[i] = f->rt.parent_fd[i] = -1;
    f->cg.rt = &f->rt;
    snprintf(f->cg.name, sizeof(f->cg.name), "x0");
    f->cg.oom_kills_now = -1;
    int top = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(top >= 0);
    for (int i = 0; i < CGROUP_NCTL; i++) {
        if (mode == CGROUP_V2 && i > 0) {
            f->rt.base_fd[i] = fcntl(f->rt.base_fd[0], F_DUPFD_CLOEXEC, 3);
        } else {
            assert_int_equal(mkdirat(top, ctl_dirs[i], 0755), 0);
            f->rt.base_fd[i] = openat(top, ctl_dirs[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            assert_int_equal(mkdirat(f->rt.base_fd[i], "x0", 0755), 0);
            touch_at(f->rt.base_fd[i], "x0/cgroup.procs", "");
            f->cg.created[i] = true;
        }
        assert_true(f->rt.base_fd[i] >= 0);
        f->rt.enforced[i] = true;
    }
    close(top);
    int mem = f->rt.base_fd[CGROUP_MEMORY];
    if (mode == CGROUP_V2) {
        touch_at(mem, "x0/memory.max", "");
        touch_at(mem, "x0/memory.swap.max", "");
        touch_at(mem, "x0/memory.events", "low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\n");
    } else {
        touch_at(mem, "x0/memory.limit_in_bytes", "");
        touch_at(mem, "x0/memory.memsw.limit_in_bytes", "");
        touch_at(mem, "x0/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
    }
}

static void fake_close(struct fake *f)
{
    for (int i = 0; i < CGROUP_NCTL; i++)
        close(f->rt.base_fd[i]);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
}

static void test_memory_limit_v2(void **state)
{
    (void)state;
    struct fake f;
    fake_open(&f, CGROUP_V2);
    int mem = f.rt.base_fd[CGROUP_MEMORY];
    assert_int_equal(cgroup_exec_limit_memory(&f.cg, 64 << 20), 0);
    assert_string_equal(read_at(mem, "x0/memory.max"), "67108864");
    assert_string_equal(read_at(mem, "x0/memory.swap.max"), "0"); /* swap capped with it */
    assert_true(f.cg.memory_limited);
    /* a host without swap accounting has no memory.swap.max: the limit alone */
    assert_int_equal(unlinkat(mem, "x0/memory.swap.max", 0), 0);
    touch_at(mem, "x0/memory.max", "");
    assert_int_equal(cgroup_exec_limit_memory(&f.cg, 32 << 20), 0);
    assert_string_equal(read_at(mem, "x0/memory.max"), "33554432");
    assert_null(read_at(mem, "x0/memory.swap.max"));
    fake_close(&f);
}

static void test_memory_limit_v1(void **state)
{
    (void)state;
    struct fake f;
    fake_open(&f, CGROUP_V1);
    int mem = f.rt.base_fd[CGROUP_MEMORY];
    f.rt.memsw = true;
    assert_int_equal(cgroup_exec_limit_memory(&f.cg, 64 << 20), 0);
    assert_string_equal(read_at(mem, "x0/memory.limit_in_bytes"), "67108864");
    assert_string_equal(read_at(mem, "x0/memory.memsw.limit_in_bytes"), "67108864");
    /* without swap accounting memsw is left alone */
    f.rt.memsw = false;
    touch_at(mem, "x0/memory.limit_in_bytes", "");
    touch_at(mem, "x0/memory.memsw.limit_in_bytes", "");
    assert_int_equal(cgroup_exec_limit_memory(&f.cg, 32 << 20), 0);
    assert_string_equal(read_at(mem, "x0/memory.limit_in_bytes"), "33554432");
    assert_string_equal(read_at(mem, "x0/memory.memsw.limit_in_bytes"), "");
    fake_close(&f);
}

/* No limit asked, or none the host enforces, or no memory cgroup: nothing written. */
static void test_memory_limit_skipped(void **state)
{
    (void)state;
    struct fake f;
    fake_open(&f, CGROUP_V2);
    int mem = f.rt.base_fd[CGROUP_MEMORY];
    assert_int_equal(cgroup_exec_limit_memory(&f.cg, 0), 0);
    f.rt.enforced[CGROUP_MEMORY] = false;
    assert_int_equal(cgroup_exec_limit_memory(&f.cg, 64 << 20), 0);
    f.rt.enforced[CGROUP_MEMORY] = true;
    f.cg.created[CGROUP_MEMORY] = false;
    assert_int_equal(cgroup_exec_limit_memory(&f.cg, 64 << 20), 0);
    assert_string_equal(read_at(mem, "x0/memory.max"), "");
    assert_false(f.cg.memory_limited);
    fake_close(&f);
}

/* The verdict compares the kill counter with its value when the exec began. */
static void test_oom_verdict(void **state)
{
    (void)state;
    static const struct {
        enum cgroup_mode mode;
        const char *file, *before, *after;
    } cases[] = {
        {CGROUP_V2, "x0/memory.events", "low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\n",
         "low 0\nhigh 0\nmax 9\noom 3\noom_kill 3\n"},
        {CGROUP_V1, "x0/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
         "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fake f;
        fake_open(&f, cases[i].mode);
        int mem = f.rt.base_fd[CGROUP_MEMORY];
        f.cg.oom_kills = 2;
        touch_at(mem, cases[i].file, cases[i].before);
        assert_false(cgroup_exec_oom(&f.cg));
        assert_int_equal(f.cg.oom_kills_now, 2);
        touch_at(mem, cases[i].file, cases[i].after);
        assert_true(cgroup_exec_oom(&f.cg));
        assert_int_equal(f.cg.oom_kills_now, 3);
        /* unreadable: no verdict, and the counter is unknown */
        assert_int_equal(unlinkat(mem, cases[i].file, 0), 0);
        assert_false(cgroup_exec_oom(&f.cg));
        assert_int_equal(f.cg.oom_kills_now, -1);
        fake_close(&f);
    }
}

/* The pid goes into cgroup.procs of every hierarchy the exec cgroup has a directory in. */
static void test_attach(void **state)
{
    (void)state;
    for (int mode = CGROUP_V1; mode <= CGROUP_V2; mode++) {
        struct fake f;
        fake_open(&f, mode);
        assert_int_equal(cgroup_exec_attach(&f.cg, 4242), 0);
        for (int i = 0; i < CGROUP_NCTL; i++)
            if (f.cg.created[i])
                assert_string_equal(read_at(f.rt.base_fd[i], "x0/cgroup.procs"), "4242");
        assert_int_equal(unlinkat(f.rt.base_fd[CGROUP_MEMORY], "x0/cgroup.procs", 0), 0);
        assert_int_equal(cgroup_exec_attach(&f.cg, 4242), -ENOENT);
        fake_close(&f);
    }
}

/* A host without usable cgroups: every step succeeds and does nothing. */
static void test_no_cgroups(void **state)
{
    (void)state;
    struct cgroup_rt rt;
    memset(&rt, 0, sizeof(rt));
    rt.mode = CGROUP_NONE;
    for (int i = 0; i < CGROUP_NCTL; i++)
        rt.base_fd[i] = rt.parent_fd[i] = -1;
    struct cgroup_limits lim = {.memory_bytes = 1 << 20, .pids_max = 8, .cpu_percent = 10};
    struct cgroup_exec cg;
    assert_int_equal(cgroup_exec_acquire(&rt, &lim, &cg), 0);
    assert_null(cg.rt);
    assert_int_equal(cgroup_exec_limit_memory(&cg, 1 << 20), 0);
    assert_int_equal(cgroup_exec_attach(&cg, getpid()), 0);
    assert_false(cgroup_exec_oom(&cg));
    cgroup_exec_release(&cg, true);
    cgroup_exec_release(&cg, false);
}

/* ---- the host's hierarchy (root) --------------------------------------------------------- */

static bool real_probe(struct cgroup_rt *rt)
{
    if (geteuid() != 0)
        return false;
    char instance[32];
    snprintf(instance, sizeof(instance), "unit%d", (int)getpid());
    cgroup_probe(instance, rt);
    if (rt->mode == CGROUP_NONE) {
        fprintf(stderr, "test_cgroup: %s\n", rt->message);
        return false;
    }
    return true;
}

static const char *ctl_file(const struct cgroup_exec *cg, int ctl, const char *file)
{
    static char path[64];
    snprintf(path, sizeof(path), "%s/%s", cg->name, file);
    return read_at(cg->rt->base_fd[ctl], path);
}

static void test_pool(void **state)
{
    (void)state;
    struct cgroup_rt rt;
    if (!real_probe(&rt))
        skip();
    bool v2 = rt.mode == CGROUP_V2;
    struct cgroup_limits lim = {.pids_max = 32, .cpu_percent = 50};
    struct cgroup_exec cg;
    assert_int_equal(cgroup_exec_acquire(&rt, &lim, &cg), 0);
    char name[sizeof(cg.name)];
    memcpy(name, cg.name, sizeof(name));
    if (rt.enforced[CGROUP_PIDS])
        assert_string_equal(ctl_file(&cg, CGROUP_PIDS, "pids.max"), "32");
    if (rt.enforced[CGROUP_CPU])
        assert_string_equal(ctl_file(&cg, CGROUP_CPU, v2 ? "cpu.max" : "cpu.cfs_quota_us"),
                            v2 ? "50000 100000" : "50000");
    const char *mem_file = v2 ? "memory.max" : "memory.limit_in_bytes";
    if (rt.enforced[CGROUP_MEMORY]) {
        assert_int_equal(cgroup_exec_limit_memory(&cg, 64 << 20), 0);
        assert_string_equal(ctl_file(&cg, CGROUP_MEMORY, mem_file), "67108864");
        assert_false(cgroup_exec_oom(&cg));
    }

    /* back to the pool (empty): the memory limit goes, the directory stays */
    struct cgroup_exec keep = cg;
    cgroup_exec_release(&cg, true);
    assert_null(cg.rt);
    if (rt.enforced[CGROUP_MEMORY]) {
        const char *lifted = ctl_file(&keep, CGROUP_MEMORY, mem_file);
        assert_non_null(lifted);
        if (v2)
            assert_string_equal(lifted, "max");
        else
            assert_true(strtoll(lifted, NULL, 10) > (1LL << 40));
    }

    /* the next exec gets the same cgroup, with its own limits ("no limit" written over them) */
    struct cgroup_limits none = {0};
    assert_int_equal(cgroup_exec_acquire(&rt, &none, &cg), 0);
    assert_string_equal(cg.name, name);
    if (rt.enforced[CGROUP_PIDS])
        assert_string_equal(ctl_file(&cg, CGROUP_PIDS, "pids.max"), "max");
    if (rt.enforced[CGROUP_CPU])
        assert_string_equal(ctl_file(&cg, CGROUP_CPU, v2 ? "cpu.max" : "cpu.cfs_quota_us"),
                            v2 ? "max 100000" : "-1");

    /* not known to be empty: whatever is inside is killed and the cgroup removed */
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        pause();
        _exit(0);
    }
    assert_int_equal(cgroup_exec_attach(&cg, child), 0);
    char pid_text[16];
    snprintf(pid_text, sizeof(pid_text), "%d", (int)child);
    int ctl = 0;
    while (!cg.created[ctl])
        ctl++;
    assert_string_equal(ctl_file(&cg, ctl, "cgroup.procs"), pid_text);
    int base = fcntl(rt.base_fd[ctl], F_DUPFD_CLOEXEC, 3);
    assert_true(base >= 0);
    cgroup_exec_release(&cg, false);
    int status = 0;
    pid_t w = 0;
    for (int i = 0; i < 2000 && (w = waitpid(child, &status, WNOHANG)) == 0; i++)
        usleep(1000);
    if (w == 0) { /* still running: not killed */
        kill(child, SIGKILL);
        waitpid(child, &status, 0);
        fail_msg("the process in the released cgroup was not killed");
    }
    assert_int_equal(w, child);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    assert_int_not_equal(faccessat(base, name, F_OK, 0), 0);

    /* a fresh one next */
    assert_int_equal(cgroup_exec_acquire(&rt, &lim, &cg), 0);
    assert_string_not_equal(cg.name, name);
    cgroup_exec_release(&cg, true);
    close(base);
    cgroup_rt_release(&rt);
}

/* A cgroup left behind by a crashed run of the same instance is removed by the next probe; the
 * instance's base directory goes with the runtime. */
static void test_leftovers(void **state)
{
    (void)state;
    struct cgroup_rt rt;
    if (!real_probe(&rt))
        skip();
    int ctl = 0;
    while (rt.parent_fd[ctl] < 0)
        ctl++;
    int parent = fcntl(rt.parent_fd[ctl], F_DUPFD_CLOEXEC, 3);
    assert_true(parent >= 0);
    char base_name[sizeof(rt.base_name)];
    memcpy(base_name, rt.base_name, sizeof(base_name));
    assert_int_equal(mkdirat(rt.base_fd[ctl], "x99", 0755), 0);
    cgroup_rt_release(&rt); /* the base stays: it is not empty */
    assert_int_equal(faccessat(parent, base_name, F_OK, 0), 0);

    assert_true(real_probe(&rt));
    assert_int_not_equal(faccessat(rt.base_fd[ctl], "x99", F_OK, 0), 0);
    cgroup_rt_release(&rt);
    assert_int_not_equal(faccessat(parent, base_name, F_OK, 0), 0);
    close(parent);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_limit_v2),
        cmocka_unit_test(test_memory_limit_v1),
        cmocka_unit_test(test_memory_limit_skipped),
        cmocka_unit_test(test_oom_verdict),
        cmocka_unit_test(test_attach),
        cmocka_unit_test(test_no_cgroups),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_leftovers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
