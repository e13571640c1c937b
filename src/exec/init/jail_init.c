/*
 * jail_init — pid 1 of every jail. A tiny static program, run by the jail's setup process right
 * after the jail is assembled (see exec/jail.h): it starts the script's shell, reaps every
 * process of the pid namespace, and when the shell ends reports its wait status on the report
 * pipe and exits, which makes the kernel kill whatever the script left behind.
 *
 * Why a program of its own: the setup process shares the server's memory (it is created like
 * posix_spawn's child, without copying the server's address space); executing this program
 * gives pid 1 a fresh, tiny address space that holds nothing of the server and forks cheaply.
 *
 * Why no C library: it runs once per exec, and a statically linked C library's start-up alone
 * (TLS, IRELATIVE relocations, tunables, RELRO) cost ~1.3 ms of CPU per run on the development
 * machine against ~0.3 ms for this program. It needs only seven system calls, made directly.
 *
 * Contract (exec/jail_proto.h): argv[1] = path of the shell, argv[2..] = its argv, envp = its
 * environment; descriptors 0..4 are for the shell, JAIL_SLOT_REPORT is the report pipe.
 * Runs as the sandbox user, with no capabilities, no_new_privs and the jail's seccomp filter.
 * Built with -ffreestanding -nostdlib -static, never with sanitizers.
 */
#include <asm/unistd.h>
#include <linux/prctl.h>
#include <linux/sched.h>
#include <linux/wait.h>
#include <stddef.h>

#include "exec/jail_proto.h"

#define EINTR_ 4
#define EINVAL_ 22
#define F_SETFD_ 2
#define FD_CLOEXEC_ 1
#define SIGCHLD_ 17

/* ---- system calls ---------------------------------------------------------------------- */

#if defined(__x86_64__)
static long sys6(long n, long a, long b, long c, long d, long e, long f)
{
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
/* The kernel enters with argc at the stack pointer; hand that address to init_main. */
__asm__(".text\n.global _start\n_start:\n"
        "  xor %rbp, %rbp\n  mov %rsp, %rdi\n  and $-16, %rsp\n  call init_main\n  hlt\n");
#elif defined(__aarch64__)
static long sys6(long n, long a, long b, long c, long d, long e, long f)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory");
    return x0;
}
__asm__(".text\n.global _start\n_start:\n"
        "  mov x29, #0\n  mov x30, #0\n  mov x0, sp\n  bl init_main\n  brk #0\n");
#else
#error "the jail init supports x86_64 and aarch64"
#endif

#define sys(n, a, b, c) sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)

/* The compiler may turn loops into calls of these even in a freestanding program. */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n)
{
    unsigned char *p = d;
    while (n--)
        *p++ = (unsigned char)c;
    return d;
}
void *memcpy(void *d, const void *s, size_t n)
{
    unsigned char *p = d;
    const unsigned char *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

/* ---- the init ---------------------------------------------------------------------------- */

static void report(int kind, long err, int status, const char *step)
{
    struct jail_report rec;
    jail_report_fill(&rec, kind, (int)-err, status, step);
    long w;
    do
        w = sys(__NR_write, JAIL_SLOT_REPORT, &rec, sizeof(rec));
    while (w == -EINTR_);
}

__attribute__((noreturn)) static void quit(int code)
{
    for (;;)
        sys(__NR_exit_group, code, 0, 0);
}

__attribute__((noreturn, used)) void init_main(long *sp);
__attribute__((noreturn, used)) void init_main(long *sp)
{
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    long r;
    /* The script runs as the same uid: it must not ptrace or read the memory of its init. */
    if ((r = sys6(__NR_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0, 0)) < 0 ||
        (r = sys(__NR_fcntl, JAIL_SLOT_REPORT, F_SETFD_, FD_CLOEXEC_)) < 0) {
        report(JAIL_REPORT_SETUP_ERR, r, 0, "init");
        quit(126);
    }
    if (argc < 3) {
        report(JAIL_REPORT_SETUP_ERR, -EINVAL_, 0, "init arguments");
        quit(126);
    }
    long shell = sys6(__NR_clone, SIGCHLD_, 0, 0, 0, 0, 0);
    if (shell < 0) {
        report(JAIL_REPORT_SETUP_ERR, shell, 0, "fork bash");
        quit(126);
    }
    if (shell == 0) {
        r = sys(__NR_execve, argv[1], argv + 2, envp);
        report(JAIL_REPORT_EXEC_ERR, r, 0, "execve bash");
        quit(127);
    }
    report(JAIL_REPORT_READY, 0, 0, 0);
    for (int fd = JAIL_SLOT_STDIN; fd < JAIL_SLOT_REPORT; fd++)
        sys(__NR_close, fd, 0, 0);
    int status = 127 << 8;
    for (;;) {
        int st = 0;
        long pid = sys6(__NR_wait4, -1, (long)&st, __WALL, 0, 0, 0);
        if (pid == shell) {
            status = st;
            break;
        }
        if (pid < 0 && pid != -EINTR_)
            break;
    }
    report(JAIL_REPORT_STATUS, 0, status, 0);
    /* The same code a shell would give: exit status, or 128 + signal. */
    quit((status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f));
}
