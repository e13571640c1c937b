/* The jail's syscall filter (jail/seccomp.h): built once, then installed in a forked child that
 * makes raw system calls and reports what each returned, against docs/JAIL.md "What the script
 * cannot do". Each refused call is made with arguments the kernel itself would answer with
 * another error (or success), so only the filter can produce the expected one. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/personality.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jail/seccomp.h"

static struct seccomp_prog prog;

static int setup(void **state)
{
    (void)state;
    assert_int_equal(seccomp_build(&prog), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    seccomp_prog_release(&prog);
    assert_null(prog.filter);
    assert_int_equal(prog.len, 0);
    return 0;
}

/* Installs the filter the way the jail child does (no_new_privs, then the program). */
static void install(void)
{
    struct sock_fprog fp = {.len = prog.len, .filter = prog.filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fp) < 0)
        _exit(100);
}

/* One raw call and what the filter must make of it: `want` 0 = allowed (the kernel's own
 * answer, whatever it is, but never the filter's errno), else that errno. */
struct call {
    const char *what;
    long nr;
    long a[4];
    int want;
};

/* Runs the calls in a child under the filter; returns each call's errno (0 on success) in got. */
static void run_calls(const struct call *calls, size_t n, int *got)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        install();
        for (size_t i = 0; i < n; i++) {
            const long *a = calls[i].a;
            errno = 0;
            long r = syscall(calls[i].nr, a[0], a[1], a[2], a[3]);
            int e = r < 0 ? errno : 0;
            if (calls[i].nr == SYS_socket && r >= 0)
                close((int)r);
            if (write(p[1], &e, sizeof(e)) != sizeof(e))
                _exit(101);
        }
        _exit(0);
    }
    close(p[1]);
    size_t off = 0;
    ssize_t k;
    while (off < n * sizeof(int) && (k = read(p[0], (char *)got + off, n * sizeof(int) - off)) > 0)
        off += (size_t)k;
    close(p[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(off, n * sizeof(int));
}

static void check_calls(const struct call *calls, size_t n)
{
    int got[64];
    assert_true(n <= sizeof(got) / sizeof(got[0]));
    run_calls(calls, n, got);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        bool ok = calls[i].want ? got[i] == calls[i].want : got[i] != EPERM && got[i] != ENOSYS;
        if (!ok) {
            fprintf(stderr, "%s: errno %d, want %s%d\n", calls[i].what, got[i],
                    calls[i].want ? "" : "not EPERM/ENOSYS, not ", calls[i].want);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

static void test_program_shape(void **state)
{
    (void)state;
    assert_non_null(prog.filter);
    assert_true(prog.len > 0 && prog.len <= BPF_MAXINSNS);
    /* the first thing it looks at is the architecture */
    assert_int_equal(prog.filter[0].code, BPF_LD | BPF_W | BPF_ABS);
    assert_int_equal(prog.filter[0].k, 4 /* offsetof(struct seccomp_data, arch) */);
}

/* What a shell, its tools and runtimes need passes; the kernel answers it. */
static void test_allowed(void **state)
{
    (void)state;
    const struct call calls[] = {
        {"getpid", SYS_getpid, {0}, 0},
        {"openat", SYS_openat, {AT_FDCWD, (long)"/", O_RDONLY | O_DIRECTORY}, 0},
        {"uname(NULL)", SYS_uname, {0}, 0}, /* EFAULT from the kernel */
        {"memfd_create", SYS_memfd_create, {(long)"x", MFD_CLOEXEC}, 0},
        {"socket(AF_UNIX)", SYS_socket, {AF_UNIX, SOCK_STREAM, 0}, 0},
        {"socket(AF_INET6)", SYS_socket, {AF_INET6, SOCK_DGRAM, 0}, 0},
        {"clone(CLONE_THREAD)", SYS_clone, {CLONE_THREAD}, 0}, /* EINVAL from the kernel */
        {"personality(query)", SYS_personality, {0xffffffffL}, 0},
        {"personality(ADDR_NO_RANDOMIZE)", SYS_personality, {PER_LINUX | ADDR_NO_RANDOMIZE}, 0},
        {"personality(PER_LINUX32)", SYS_personality, {PER_LINUX32}, 0},
        {"get_mempolicy", SYS_get_mempolicy, {0, 0, 0, 0}, 0},
    };
    check_calls(calls, sizeof(calls) / sizeof(calls[0]));
}

/* Known syscalls off the list get EPERM, so tools fail cleanly. */
static void test_refused(void **state)
{
    (void)state;
    const struct call calls[] = {
        {"mount", SYS_mount, {(long)"none", (long)"/nonexistent-sqlfs", (long)"tmpfs", 0}, EPERM},
        {"umount2", SYS_umount2, {(long)"/nonexistent-sqlfs", 0}, EPERM},
        {"unshare", SYS_unshare, {-1}, EPERM},
        {"setns", SYS_setns, {-1, 0}, EPERM},
        {"ptrace", SYS_ptrace, {PTRACE_PEEKDATA, 0, 0, 0}, EPERM},
        {"process_vm_readv", SYS_process_vm_readv, {0, 0, 0, 0}, EPERM},
        {"bpf", SYS_bpf, {-1, 0, 0}, EPERM},
        {"perf_event_open", SYS_perf_event_open, {0, 0, -1, -1}, EPERM},
        {"keyctl", SYS_keyctl, {-1}, EPERM},
        {"add_key", SYS_add_key, {0, 0, 0, 0}, EPERM},
        {"init_module", SYS_init_module, {0, 0, 0}, EPERM},
        {"kexec_load", SYS_kexec_load, {0, 0, 0, 0}, EPERM},
        {"io_uring_setup", SYS_io_uring_setup, {0, 0}, EPERM},
        {"userfaultfd", SYS_userfaultfd, {-1}, EPERM},
        {"open_by_handle_at", SYS_open_by_handle_at, {-1, 0, 0}, EPERM},
        {"swapon", SYS_swapon, {0, 0}, EPERM},
        {"reboot", SYS_reboot, {0, 0, 0, 0}, EPERM},
        {"settimeofday", SYS_settimeofday, {0, 0}, EPERM},
        {"acct", SYS_acct, {0}, EPERM},
        {"syslog", SYS_syslog, {-1, 0, 0}, EPERM},
        {"kcmp", SYS_kcmp, {0, 0, -1, 0}, EPERM},
        {"pidfd_getfd", SYS_pidfd_getfd, {-1, -1, 0}, EPERM},
        {"process_madvise", SYS_process_madvise, {-1, 0, 0, 0}, EPERM},
    };
    check_calls(calls, sizeof(calls) / sizeof(calls[0]));
}

/* Argument rules: namespace flags on clone, clone3, personality and socket families; the high
 * half of a register does not change a verdict. */
static void test_argument_rules(void **state)
{
    (void)state;
    const struct call calls[] = {
        /* CLONE_THREAD without CLONE_SIGHAND: EINVAL from the kernel once past the filter */
        {"clone(NEWNS)", SYS_clone, {CLONE_THREAD | CLONE_NEWNS}, EPERM},
        {"clone(NEWUSER)", SYS_clone, {CLONE_THREAD | CLONE_NEWUSER}, EPERM},
        {"clone(NEWPID)", SYS_clone, {CLONE_THREAD | CLONE_NEWPID}, EPERM},
        {"clone(NEWNET)", SYS_clone, {CLONE_THREAD | CLONE_NEWNET}, EPERM},
        {"clone(NEWIPC)", SYS_clone, {CLONE_THREAD | CLONE_NEWIPC}, EPERM},
        {"clone(NEWUTS)", SYS_clone, {CLONE_THREAD | CLONE_NEWUTS}, EPERM},
        {"clone(NEWCGROUP)", SYS_clone, {CLONE_THREAD | CLONE_NEWCGROUP}, EPERM},
        {"clone(NEWTIME)", SYS_clone, {CLONE_THREAD | 0x80}, EPERM},
        {"clone(high|NEWNS)", SYS_clone, {(long)(1UL << 32) | CLONE_THREAD | CLONE_NEWNS}, EPERM},
        {"clone3", SYS_clone3, {0, 0}, ENOSYS},
        {"personality(READ_IMPLIES_EXEC)", SYS_personality, {READ_IMPLIES_EXEC}, EPERM},
        {"personality(MMAP_PAGE_ZERO)", SYS_personality, {MMAP_PAGE_ZERO}, EPERM},
        {"personality(PER_SVR4)", SYS_personality, {PER_SVR4}, EPERM},
        {"personality(bit 31)", SYS_personality, {0x80000000L | ADDR_NO_RANDOMIZE}, ENOSYS},
        {"socket(AF_VSOCK)", SYS_socket, {40, SOCK_STREAM, 0}, EPERM},
        {"socket(high|AF_VSOCK)", SYS_socket, {(long)(1UL << 32) | 40, SOCK_STREAM, 0}, EPERM},
        {"socket(64)", SYS_socket, {64, SOCK_STREAM, 0}, ENOSYS},
    };
    check_calls(calls, sizeof(calls) / sizeof(calls[0]));
}

/* A number libseccomp does not know gets ENOSYS, as from a kernel without it. */
static void test_unknown_numbers(void **state)
{
    (void)state;
    const struct call calls[] = {
        {"unassigned 500", 500, {0}, ENOSYS},
        {"unassigned 1000", 1000, {0}, ENOSYS},
    };
    check_calls(calls, sizeof(calls) / sizeof(calls[0]));
}

/* A syscall of another ABI kills the process. */
static void test_foreign_abi_killed(void **state)
{
    (void)state;
#if defined(__x86_64__)
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        install();
        /* the x32 ABI: the syscall number with bit 30 set */
        syscall(0x40000000L | SYS_getpid);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGSYS);
#else
    skip();
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_program_shape),   cmocka_unit_test(test_allowed),
        cmocka_unit_test(test_refused),         cmocka_unit_test(test_argument_rules),
        cmocka_unit_test(test_unknown_numbers), cmocka_unit_test(test_foreign_abi_killed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
