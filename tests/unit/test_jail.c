/* The jail against real scripts (needs root, user namespaces and overlayfs). Each test runs a
 * real sandbox and checks what the script could or could not do. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "jail/ids.h"
#include "jail/jail.h"
#include "jail/rootfs.h"
#include "exec/capture.h"
#include "exec/runner.h"
#include "jail/sysprobe.h"
#include "util/err.h"
#include "util/timeutil.h"

static struct jail_runtime *rt;
static char base[] = "/tmp/sqlfs-test-jail-XXXXXX";
static char data_dir[64], lower[64], upper[256], work[256];
static int seq;

struct run {
    struct capture_allowance cap;
    struct capture buf;
    struct runner_result res;
    int spawn_rc;
};

struct run_opts {
    bool python, javascript;
    int64_t timeout_ms;
    int64_t memory_bytes, pids_max;
    size_t cap;
    int cancel_fd;
    const char *cwd;
    char *const *envp;
    int stdin_fd; /* 0 = none */
    bool debug;
};

/* Starts a script in a fresh upper; jail_spawn's result. */
static int spawn_script(const char *script, const struct run_opts *o, struct jail_proc **ret)
{
    char cmd[1024], dir[128];
    snprintf(dir, sizeof(dir), "%s/uppers/%d", data_dir, ++seq);
    snprintf(upper, sizeof(upper), "%s/upper", dir);
    snprintf(work, sizeof(work), "%s/work", dir);
    snprintf(cmd, sizeof(cmd), "mkdir -p %s %s", upper, work);
    assert_int_equal(system(cmd), 0);
    char id[32];
    snprintf(id, sizeof(id), "test-%d", seq);
    struct jail_plan plan = {
        .exec_id = id,
        .lower = lower,
        .upper = upper,
        .work = work,
        .cwd = o && o->cwd ? o->cwd : NULL,
        .envp = o ? o->envp : NULL,
        .script = script,
        .script_len = strlen(script),
        .debug = o && o->debug,
        .stdin_fd = o && o->stdin_fd ? o->stdin_fd : -1,
        .python = o && o->python,
        .javascript = o && o->javascript,
        .limits = {.memory_bytes = o && o->memory_bytes ? o->memory_bytes : 512 << 20,
                   .pids_max = o && o->pids_max ? o->pids_max : 128,
                   .cpu_percent = 100,
                   .fsize_bytes = 1 << 30},
    };
    return jail_spawn(rt, &plan, ret);
}

static void run_script(const char *script, const struct run_opts *o, struct run *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->cap = (struct capture_allowance)CAPTURE_ALLOWANCE_INIT(o && o->cap ? o->cap : 1 << 20);
    capture_init(&ret->buf, &ret->cap, NULL);
    struct jail_proc *p = NULL;
    ret->spawn_rc = spawn_script(script, o, &p);
    if (ret->spawn_rc < 0) {
        fprintf(stderr, "jail_spawn: %d %s\n", ret->spawn_rc, err_message());
        return;
    }
    struct runner_opts ro = {
        .timeout_ms = o && o->timeout_ms ? o->timeout_ms : 20000,
        .cancel_fd = o && o->cancel_fd ? o->cancel_fd : -1,
        .on_output = capture_on_output,
        .ud = &ret->buf,
    };
    assert_int_equal(runner_run(p, &ro, &ret->res), 0);
    jail_proc_free(p);
}

static void run_release(struct run *r)
{
    capture_release(&r->buf);
}

/* Runs a script expected to succeed and returns its stdout (static copy). */
static const char *run_ok(const char *script, const struct run_opts *o)
{
    static char out[8192];
    struct run r;
    run_script(script, o, &r);
    assert_int_equal(r.spawn_rc, 0);
    if (r.res.exit_code != 0)
        fprintf(stderr, "script failed (%d): %s\nstderr: %s\n", r.res.exit_code, script,
                buf_cstr(&r.buf.err.data));
    assert_int_equal(r.res.exit_code, 0);
    snprintf(out, sizeof(out), "%s", buf_cstr(&r.buf.out.data));
    run_release(&r);
    return out;
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(base))
        return -1;
    snprintf(data_dir, sizeof(data_dir), "%s/data", base);
    snprintf(lower, sizeof(lower), "%s/lower", base);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "mkdir -p %s/uppers/stale/upper %s/home/user/d %s/tmp && echo old > "
             "%s/home/user/old.txt && touch %s/home/user/gone.txt %s/home/user/d/x && chown -R "
             "%d:%d %s && chmod 1777 %s/tmp",
             data_dir, lower, lower, lower, lower, lower, SANDBOX_HOST_UID, SANDBOX_HOST_UID, lower,
             lower);
    if (system(cmd) != 0)
        return -1;
    setenv("AUTH_SECRET", "s3cret-server-token", 1);
    int r = jail_runtime_init(data_dir, NULL, &rt);
    if (r < 0)
        fprintf(stderr, "jail_runtime_init: %d %s\n", r, err_message());
    return r < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    jail_runtime_free(rt);
    return rootfs_rm_rf(base) < 0 ? -1 : 0;
}

static void test_identity(void **state)
{
    (void)state;
    const char *out = run_ok("echo hi; id -u; id -g; echo $HOME; echo $PWD; pwd; hostname; "
                             "echo $PATH",
                             NULL);
    assert_string_equal(out, "hi\n1000\n1000\n/home/user\n/home/user\n/home/user\nsandbox\n"
                             "/opt/sqlfs/bin:/usr/local/bin:/usr/bin:/bin\n");
    /* Stale uppers of a previous run were removed at init. */
    char path[256];
    snprintf(path, sizeof(path), "%s/uppers/stale", data_dir);
    assert_int_equal(access(path, F_OK), -1);
}

static void test_cwd_and_env(void **state)
{
    (void)state;
    char *env[] = {"FOO=bar", "HOME=/tmp", "PWD=/nope", NULL};
    struct run_opts o = {.cwd = "/tmp", .envp = env};
    assert_string_equal(run_ok("echo $FOO $HOME $PWD; pwd", &o), "bar /tmp /tmp\n/tmp\n");
    int in[2];
    assert_int_equal(pipe(in), 0);
    assert_int_equal(write(in[1], "from stdin\n", 11), 11);
    close(in[1]);
    struct run_opts oi = {.stdin_fd = in[0]};
    assert_string_equal(run_ok("cat; cat </dev/null", &oi), "from stdin\n");
    close(in[0]);
    assert_string_equal(run_ok("cat; echo end", NULL), "end\n"); /* default: /dev/null */
    struct run r;
    o.cwd = "/does/not/exist";
    run_script("true", &o, &r);
    assert_int_equal(r.spawn_rc, -ERR_CWD_MISSING);
    assert_non_null(strstr(err_message(), "cwd does not exist"));
    run_release(&r);
}

static void test_shadowed_system_dir(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof(path), "%s/proc", lower);
    assert_int_equal(symlink("/etc", path), 0);
    struct run r;
    run_script("true", NULL, &r);
    assert_int_equal(r.spawn_rc, -ERR_JAIL_UNAVAILABLE);
    assert_non_null(strstr(err_message(), "shadowed"));
    run_release(&r);
    assert_int_equal(unlink(path), 0);
}

static void test_writes_land_in_upper(void **state)
{
    (void)state;
    run_ok("echo new > /home/user/new.txt; echo more >> /home/user/old.txt; "
           "rm /home/user/gone.txt; rm -r /home/user/d; mkdir /home/user/d",
           NULL);
    char path[512], text[64] = "";
    snprintf(path, sizeof(path), "%s/home/user/new.txt", upper);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(text, sizeof(text), f));
    fclose(f);
    assert_string_equal(text, "new\n");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_uid, SANDBOX_HOST_UID);
    snprintf(path, sizeof(path), "%s/home/user/new.txt", lower);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/home/user/old.txt", lower);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 4); /* the lower layer is untouched */
    /* Deletion = a 0/0 character device whiteout; a replaced directory is opaque through a
     * trusted.overlay.* xattr (the overlay was mounted by host root). */
    snprintf(path, sizeof(path), "%s/home/user/gone.txt", upper);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISCHR(st.st_mode));
    assert_int_equal(st.st_rdev, 0);
    snprintf(path, sizeof(path), "%s/home/user/d", upper);
    char val[8] = "";
    assert_int_equal(lgetxattr(path, "trusted.overlay.opaque", val, sizeof(val)), 1);
    assert_int_equal(val[0], 'y');
    /* No mount point leaked into the upper layer. */
    snprintf(path, sizeof(path), "%s/usr", upper);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/dev", upper);
    assert_int_equal(access(path, F_OK), -1);
}

/* The engine may run several execs on one upper/work pair (a session, a retry). */
static void test_reused_upper(void **state)
{
    (void)state;
    char dir[128], cmd[1024];
    snprintf(dir, sizeof(dir), "%s/uppers/reuse", data_dir);
    snprintf(upper, sizeof(upper), "%s/upper", dir);
    snprintf(work, sizeof(work), "%s/work", dir);
    snprintf(cmd, sizeof(cmd), "mkdir -p %s %s", upper, work);
    assert_int_equal(system(cmd), 0);
    for (int i = 0; i < 3; i++) {
        const char *script = "echo x >> /tmp/reuse; wc -l < /tmp/reuse";
        struct jail_plan plan = {.exec_id = "reuse",
                                 .lower = lower,
                                 .upper = upper,
                                 .work = work,
                                 .script = script,
                                 .script_len = strlen(script),
                                 .stdin_fd = -1};
        struct jail_proc *p = NULL;
        assert_int_equal(jail_spawn(rt, &plan, &p), 0);
        struct capture_allowance cap = CAPTURE_ALLOWANCE_INIT(64);
        struct capture b;
        capture_init(&b, &cap, NULL);
        struct runner_opts o = {
            .timeout_ms = 10000, .cancel_fd = -1, .on_output = capture_on_output, .ud = &b};
        struct runner_result res;
        assert_int_equal(runner_run(p, &o, &res), 0);
        jail_proc_free(p);
        char want[16];
        snprintf(want, sizeof(want), "%d\n", i + 1);
        assert_string_equal(buf_cstr(&b.out.data), want);
        capture_release(&b);
    }
}

static void test_readonly_system(void **state)
{
    (void)state;
    const char *out =
        run_ok("touch /usr/x 2>/dev/null && echo usr-writable; touch /etc/x 2>/dev/null && echo "
               "etc-writable; echo x > /opt/sqlfs/bin/x 2>/dev/null && echo bin-writable; "
               "test -e /etc/shadow && echo shadow; test -e /etc/gshadow && echo gshadow; "
               "test -e /etc/ssh && echo ssh; test -e /etc/machine-id && echo machine-id; "
               "test -e /sys/kernel && echo sys; echo x > /proc/sys/kernel/hostname 2>/dev/null && "
               "echo procsys; grep -q '^user:x:1000:1000::*.*/home/user:/bin/bash' /etc/passwd || "
               "echo no-user; echo done",
               NULL);
    assert_string_equal(out, "done\n");
}

static void test_processes_hidden(void **state)
{
    (void)state;
    const char *out = run_ok("cat /proc/1/environ >/dev/null 2>&1 && echo environ; "
                             "cat /proc/1/mem >/dev/null 2>&1 && echo mem; "
                             "ls /proc | grep -c '^[0-9]'",
                             NULL);
    /* init, bash, ls, grep and maybe the pipeline subshell: a handful, never the host's. */
    assert_false(strstr(out, "environ"));
    assert_false(strstr(out, "mem"));
    int n = atoi(out);
    assert_true(n >= 2 && n <= 6);
    out = run_ok("ps -e -o pid= | wc -l", NULL);
    assert_true(atoi(out) >= 2 && atoi(out) <= 5);
}

static void test_env_not_leaked(void **state)
{
    (void)state;
    const char *out = run_ok("env; cat /proc/self/environ | tr '\\0' '\\n'", NULL);
    assert_null(strstr(out, "s3cret"));
    assert_null(strstr(out, "AUTH_SECRET"));
    assert_non_null(strstr(out, "USER=user"));
}

static void test_network(void **state)
{
    (void)state;
    struct run_opts o = {.python = true};
    const char *out =
        run_ok("ls /sys/class/net 2>/dev/null; ip -o link | awk '{print $2}'; "
               "(echo > /dev/tcp/1.1.1.1/53) 2>/dev/null && echo internet; "
               "(echo > /dev/tcp/10.0.2.2/80) 2>/dev/null && echo host; "
               "python3 -c 'import socket\n"
               "s=socket.socket(); s.bind((\"127.0.0.1\",0)); s.listen(1)\n"
               "c=socket.create_connection(s.getsockname()); a,_=s.accept(); c.send(b\"lo-ok\")\n"
               "print(a.recv(10).decode())'",
               &o);
    assert_string_equal(out, "lo:\nlo-ok\n");
}

static void test_privileged_ops_fail(void **state)
{
    (void)state;
    struct run_opts o = {.python = true};
    const char *out =
        run_ok("mount -t tmpfs none /tmp 2>/dev/null && echo mount; "
               "unshare -U true 2>/dev/null && echo unshare; unshare -r true 2>/dev/null && echo "
               "unshare-r; strace -f true >/dev/null 2>&1 && echo strace; "
               "setarch x86_64 -X true 2>/dev/null && echo read-implies-exec; "
               "setarch x86_64 -R true || echo no-addr-no-randomize; "
               "python3 -c 'import ctypes,os\n"
               "libc=ctypes.CDLL(None, use_errno=True)\n"
               "print(\"ptrace\", libc.ptrace(0,0,0,0), ctypes.get_errno())\n"
               "print(\"setuid\", libc.setuid(0))'",
               &o);
    assert_string_equal(out, "ptrace -1 1\nsetuid -1\n");
}

/* Host information under /proc is masked and kernel knobs are read-only, as container
 * runtimes do: for every such entry this kernel has, a file reads empty, a directory is empty,
 * read-only and root's, a read-only entry is a read-only mount. */
static void test_proc_masked(void **state)
{
    (void)state;
    static const char *const files[] = {"kcore",   "keys",          "timer_list",  "sched_debug",
                                        "cmdline", "latency_stats", "timer_stats", "interrupts"};
    static const char *const dirs[] = {"acpi", "scsi", "asound"};
    static const char *const ro[] = {"sys", "sysrq-trigger", "irq", "bus", "fs"};
    char want[1024] = "", line[128], path[64];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "/proc/%s", files[i]);
        if (access(path, F_OK) == 0) {
            snprintf(line, sizeof(line), "%s 0\n", files[i]);
            strcat(want, line);
        }
    }
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(path, sizeof(path), "/proc/%s", dirs[i]);
        if (access(path, F_OK) == 0) {
            snprintf(line, sizeof(line), "%s 0 nobody:555 ro\n", dirs[i]);
            strcat(want, line);
        }
    }
    for (size_t i = 0; i < sizeof(ro) / sizeof(ro[0]); i++) {
        snprintf(path, sizeof(path), "/proc/%s", ro[i]);
        if (access(path, F_OK) == 0) {
            snprintf(line, sizeof(line), "%s ro\n", ro[i]);
            strcat(want, line);
        }
    }
    /* /proc/cmdline is never empty on the host: the mask is what empties it here */
    assert_non_null(strstr(want, "cmdline 0\n"));
    assert_non_null(strstr(want, "sys ro\n"));
    const char *out = run_ok(
        "cd /proc; mnt() { awk -v p=/proc/$1 '$5 == p {print substr($6, 1, 2)}' "
        "/proc/self/mountinfo; }\n"
        "for f in kcore keys timer_list sched_debug cmdline latency_stats timer_stats interrupts; "
        "do [ -e $f ] && echo \"$f $(cat $f | wc -c)\"; done\n"
        "for d in acpi scsi asound; do [ -e $d ] && echo \"$d $(ls -A $d | wc -l) "
        "$(stat -c %U:%a $d) $(mnt $d)\"; done\n"
        "for p in sys sysrq-trigger irq bus fs; do [ -e $p ] && echo \"$p $(mnt $p)\"; done\n"
        "ls /proc/self/fd >/dev/null && echo 5 > /proc/self/oom_score_adj && cat /proc/uptime "
        ">/dev/null || echo proc-broken; ls -A /sys; ls /dev/core 2>/dev/null; true",
        NULL);
    assert_string_equal(out, want);
}

/* /dev: the read-only template with the host's nodes bound on, its own devpts, a /dev/shm. */
static void test_dev(void **state)
{
    (void)state;
    const char *out = run_ok(
        "ls -A /dev | tr '\\n' ' '; echo; stat -c %U:%a /dev; touch /dev/x 2>&1 | grep -c "
        "Read-only; echo hi > /dev/null && head -c 4 /dev/zero | wc -c; readlink /dev/stdout "
        "/dev/ptmx; touch /dev/shm/x && ls /dev/shm; test -c /dev/pts/ptmx && echo ptmx; "
        "echo x >/dev/full 2>/dev/null || echo full",
        NULL);
    assert_string_equal(out, "fd full null ptmx pts random shm stderr stdin stdout tty urandom "
                             "zero \nnobody:755\n1\n4\n/proc/self/fd/1\npts/ptmx\nx\nptmx\nfull\n");
}

/* The filter is an allowlist: a syscall it does not list gets EPERM, one this libseccomp does
 * not know ENOSYS (as from a kernel without it, so libc falls back); vsock, which no network
 * namespace confines, is refused however the family is spelled. */
static void test_seccomp_allowlist(void **state)
{
    (void)state;
    struct run_opts o = {.python = true};
    const char *out = run_ok(
        "python3 -c 'import ctypes, socket\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "L = ctypes.c_long\n"
        "def call(*a):\n"
        "    r = libc.syscall(*[L(x) for x in a]); e = ctypes.get_errno(); ctypes.set_errno(0)\n"
        "    return \"ok\" if r >= 0 else e\n"
        "print(\"vsock\", call(41, 40, 1, 0), call(41, (1 << 32) | 40, 1, 0))\n"
        "print(\"unix\", call(41, socket.AF_UNIX, socket.SOCK_STREAM, 0))\n"
        "print(\"process_madvise\", libc.process_madvise(-1, None, 0, 0, 0), ctypes.get_errno())\n"
        "print(\"mseal\", call(462, 0, 0, 0))\n"
        "print(\"unassigned\", call(500))'",
        &o);
    assert_string_equal(out, "vsock 1 1\nunix ok\nprocess_madvise -1 1\nmseal 38\nunassigned 38\n");
}

/* The jail is a session of its own: no controlling terminal of the server's. */
static void test_own_session(void **state)
{
    (void)state;
    assert_string_equal(run_ok("ps -o sid= -p $$ | tr -d ' '; cat /dev/tty 2>/dev/null || "
                               "echo no-tty",
                               NULL),
                        "1\nno-tty\n");
}

static void test_background_killed(void **state)
{
    (void)state;
    int64_t t0 = time_mono_ms();
    run_ok("sleep 107.25 & sleep 107.25 > /dev/null 2>&1 & disown; echo started", NULL);
    assert_true(time_mono_ms() - t0 < 5000);
    usleep(100000);
    FILE *ps = popen("ps -eo args= | grep -c '^sleep 107.25'", "r");
    assert_non_null(ps);
    char line[32] = "";
    assert_non_null(fgets(line, sizeof(line), ps));
    pclose(ps);
    assert_int_equal(atoi(line), 0);
}

/* Reads the jail's stdout until `want` has arrived (or 10 s passed). */
static bool wait_output(struct jail_proc *p, const char *want)
{
    char got[256] = "";
    size_t len = 0;
    int64_t end = time_mono_ms() + 10000;
    while (!strstr(got, want) && time_mono_ms() < end && len + 1 < sizeof(got)) {
        struct pollfd pfd = {.fd = jail_proc_stdout_fd(p), .events = POLLIN};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        ssize_t n = read(pfd.fd, got + len, sizeof(got) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        got[len] = '\0';
    }
    return strstr(got, want) != NULL;
}

static void test_signal_shell(void **state)
{
    (void)state;
    struct jail_proc *p = NULL;
    assert_int_equal(spawn_script("trap 'echo got; exit 7' USR1; echo ready; "
                                  "while :; do sleep 0.05; done",
                                  NULL, &p),
                     0);
    /* nothing pinned yet: no signal goes anywhere */
    assert_int_equal(jail_signal_shell(p, SIGUSR1), -EBADF);
    assert_int_equal(jail_pin_shell(p), 0);
    assert_true(wait_output(p, "ready"));
    assert_int_equal(jail_signal_shell(p, SIGUSR1), 0);
    assert_true(wait_output(p, "got"));
    struct jail_status st;
    assert_int_equal(jail_wait(p, &st), 0);
    assert_int_equal(st.exit_code, 7);
    /* the shell is gone (and its pid may be anyone's): signalling it fails */
    assert_int_equal(jail_signal_shell(p, SIGUSR1), -ESRCH);
    jail_proc_free(p);

    /* a second child of the init (an orphan) makes the shell ambiguous: nothing is pinned */
    assert_int_equal(spawn_script("(sleep 30 &); echo ready; sleep 30", NULL, &p), 0);
    assert_true(wait_output(p, "ready"));
    assert_int_equal(jail_pin_shell(p), -ECHILD);
    assert_int_equal(jail_signal_shell(p, SIGUSR1), -EBADF);
    jail_proc_free(p);
}

static void test_exit_status(void **state)
{
    (void)state;
    struct run r;
    run_script("echo out; echo err >&2; exit 3", NULL, &r);
    assert_int_equal(r.spawn_rc, 0);
    assert_int_equal(r.res.exit_code, 3);
    assert_int_equal(r.res.exit_signal, 0);
    assert_string_equal(buf_cstr(&r.buf.out.data), "out\n");
    assert_string_equal(buf_cstr(&r.buf.err.data), "err\n");
    run_release(&r);
    struct run_opts dbg = {.debug = true};
    run_script("echo traced", &dbg, &r);
    assert_string_equal(buf_cstr(&r.buf.out.data), "traced\n");
    assert_string_equal(buf_cstr(&r.buf.err.data), "+ echo traced\n");
    run_release(&r);
    run_script("kill -9 $$", NULL, &r);
    assert_int_equal(r.res.exit_signal, SIGKILL);
    assert_int_equal(r.res.exit_code, 137);
    run_release(&r);
    struct run_opts o = {.timeout_ms = 300};
    int64_t t0 = time_mono_ms();
    run_script("echo before; sleep 60", &o, &r);
    assert_true(r.res.timed_out);
    assert_true(time_mono_ms() - t0 < 2000);
    assert_int_equal(r.res.exit_signal, SIGKILL);
    assert_string_equal(buf_cstr(&r.buf.out.data), "before\n");
    run_release(&r);
}

static void *hang_up(void *arg)
{
    usleep(300000);
    close(*(int *)arg);
    return NULL;
}

static void test_cancel(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, hang_up, &sv[1]), 0);
    struct run_opts o = {.cancel_fd = sv[0]};
    struct run r;
    int64_t t0 = time_mono_ms();
    run_script("sleep 60", &o, &r);
    pthread_join(t, NULL);
    assert_true(r.res.cancelled);
    assert_false(r.res.timed_out);
    assert_true(time_mono_ms() - t0 < 3000);
    run_release(&r);
    close(sv[0]);
}

static void test_big_script_and_output(void **state)
{
    (void)state;
    /* A script larger than fits in one argument. */
    size_t n = 300000;
    char *script = malloc(n + 64);
    assert_non_null(script);
    memset(script, ' ', n);
    memcpy(script, "echo start", 10);
    strcpy(script + n, "\necho end\n");
    assert_string_equal(run_ok(script, NULL), "start\nend\n");
    free(script);
    /* 64 MiB of stdout with a 1 MiB cap: drained, capped, flagged. */
    struct run_opts o = {.cap = 1 << 20};
    struct run r;
    run_script("head -c 67108864 /dev/zero; echo done >&2", &o, &r);
    assert_int_equal(r.res.exit_code, 0);
    assert_int_equal(r.buf.out.data.len, 1 << 20);
    assert_true(r.buf.out.truncated);
    assert_false(r.buf.err.truncated);
    assert_string_equal(buf_cstr(&r.buf.err.data), "done\n");
    run_release(&r);
}

static void test_pids_limit(void **state)
{
    (void)state;
    struct jail_info info;
    jail_runtime_info(rt, &info);
    if (!info.pids_limit)
        skip();
    struct run_opts o = {.python = true, .pids_max = 32};
    const char *out = run_ok("python3 -c 'import os,time\n"
                             "n=0\n"
                             "try:\n"
                             "  for i in range(200):\n"
                             "    if os.fork()==0:\n"
                             "      time.sleep(5); os._exit(0)\n"
                             "    n+=1\n"
                             "except OSError: pass\n"
                             "print(n)'",
                             &o);
    int forks = atoi(out);
    assert_true(forks > 0 && forks < 32);
    /* The next exec reuses that exec cgroup (the pool hands out the last one returned): its
     * own, higher limit is in place, not the previous exec's. */
    struct run_opts more = {.python = true, .pids_max = 128};
    out = run_ok("python3 -c 'import os,time\n"
                 "n=0\n"
                 "for i in range(60):\n"
                 "  if os.fork()==0:\n"
                 "    time.sleep(2); os._exit(0)\n"
                 "  n+=1\n"
                 "print(n)'",
                 &more);
    assert_int_equal(atoi(out), 60);
}

static void test_memory_limit(void **state)
{
    (void)state;
    struct jail_info info;
    jail_runtime_info(rt, &info);
    if (!info.memory_limit)
        skip();
    struct run_opts o = {.python = true, .memory_bytes = 64 << 20};
    struct run r;
    run_script("python3 -c 'x = b\"a\" * (400 << 20); print(len(x))'", &o, &r);
    assert_int_equal(r.spawn_rc, 0);
    assert_int_not_equal(r.res.exit_code, 0);
    assert_true(r.res.oom);
    assert_null(strstr(buf_cstr(&r.buf.out.data), "419430400"));
    run_release(&r);
    /* The same (pooled) exec cgroup serves the next exec: the kill above is not reported again,
     * and the new, higher limit replaced the old one. */
    struct run_opts big = {.python = true, .memory_bytes = 384 << 20};
    run_script("python3 -c 'x = b\"a\" * (150 << 20); print(len(x))'", &big, &r);
    assert_int_equal(r.spawn_rc, 0);
    assert_int_equal(r.res.exit_code, 0);
    assert_false(r.res.oom);
    assert_string_equal(buf_cstr(&r.buf.out.data), "157286400\n");
    run_release(&r);
}

static void test_runtimes(void **state)
{
    (void)state;
    struct run r;
    const char *cmds[] = {"python3 -c 1", "python -c 1", "py-exec -c 1", "/usr/bin/python3 -c 1"};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        run_script(cmds[i], NULL, &r);
        assert_int_equal(r.res.exit_code, 127);
        assert_non_null(strstr(buf_cstr(&r.buf.err.data),
                               "python is not enabled for this sandbox; create it "
                               "with python=true"));
        run_release(&r);
    }
    run_script("js-exec -c 1", NULL, &r);
    assert_int_equal(r.res.exit_code, 127);
    assert_non_null(strstr(buf_cstr(&r.buf.err.data), "javascript is not enabled"));
    run_release(&r);
    struct run_opts o = {.python = true, .javascript = true};
    assert_string_equal(run_ok("python3 -c 'print(6*7)'; py-exec -c 'print(1)'", &o), "42\n1\n");
    assert_string_equal(run_ok("echo 'console.log(2+2)' > /tmp/a.js; js-exec -c "
                               "'console.log(\"js\")'; js-exec /tmp/a.js",
                               &o),
                        "js\n4\n");
}

struct conc {
    int idx;
    int ok;
};

/* One thread: three execs of its own, each checking it sees its own output. */
static void *conc_thread(void *arg)
{
    struct conc *c = arg;
    for (int i = 0; i < 3; i++) {
        char dir[128], up[160], wk[160], cmd[400], id[32], script[64], want[32];
        snprintf(dir, sizeof(dir), "%s/uppers/c%d-%d", data_dir, c->idx, i);
        snprintf(up, sizeof(up), "%s/upper", dir);
        snprintf(wk, sizeof(wk), "%s/work", dir);
        snprintf(cmd, sizeof(cmd), "mkdir -p %s %s", up, wk);
        if (system(cmd) != 0)
            return NULL;
        snprintf(id, sizeof(id), "c%d-%d", c->idx, i);
        snprintf(script, sizeof(script), "echo %d-%d > /tmp/f; cat /tmp/f", c->idx, i);
        snprintf(want, sizeof(want), "%d-%d\n", c->idx, i);
        struct jail_plan plan = {.exec_id = id,
                                 .lower = lower,
                                 .upper = up,
                                 .work = wk,
                                 .script = script,
                                 .script_len = strlen(script),
                                 .stdin_fd = -1};
        struct jail_proc *p = NULL;
        if (jail_spawn(rt, &plan, &p) < 0)
            return NULL;
        struct capture_allowance cap = CAPTURE_ALLOWANCE_INIT(1024);
        struct capture b;
        capture_init(&b, &cap, NULL);
        struct runner_opts o = {
            .timeout_ms = 20000, .cancel_fd = -1, .on_output = capture_on_output, .ud = &b};
        struct runner_result res;
        if (runner_run(p, &o, &res) == 0 && res.exit_code == 0 &&
            strcmp(buf_cstr(&b.out.data), want) == 0)
            c->ok++;
        capture_release(&b);
        jail_proc_free(p);
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    pthread_t t[4];
    struct conc c[4];
    for (int i = 0; i < 4; i++) {
        c[i] = (struct conc){i, 0};
        assert_int_equal(pthread_create(&t[i], NULL, conc_thread, &c[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(c[i].ok, 3);
    }
}

static void test_sysprobe(void **state)
{
    (void)state;
    struct sysprobe pr;
    sysprobe_run(rt, &pr);
    assert_true(pr.userns.ok);
    assert_true(pr.overlay.ok);
    assert_true(pr.seccomp.ok);
    assert_true(pr.rootfs.ok);
    assert_true(sysprobe_ok(&pr));
}

int main(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "test_jail: needs root, skipped\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_cwd_and_env),
        cmocka_unit_test(test_writes_land_in_upper),
        cmocka_unit_test(test_shadowed_system_dir),
        cmocka_unit_test(test_reused_upper),
        cmocka_unit_test(test_readonly_system),
        cmocka_unit_test(test_processes_hidden),
        cmocka_unit_test(test_env_not_leaked),
        cmocka_unit_test(test_network),
        cmocka_unit_test(test_privileged_ops_fail),
        cmocka_unit_test(test_proc_masked),
        cmocka_unit_test(test_dev),
        cmocka_unit_test(test_seccomp_allowlist),
        cmocka_unit_test(test_own_session),
        cmocka_unit_test(test_background_killed),
        cmocka_unit_test(test_signal_shell),
        cmocka_unit_test(test_exit_status),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_big_script_and_output),
        cmocka_unit_test(test_pids_limit),
        cmocka_unit_test(test_memory_limit),
        cmocka_unit_test(test_runtimes),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_sysprobe),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
