/*
 * jail_init — pid 1 of every jail. A tiny static program, run by the jail's setup process right
 * after the jail is assembled (see jail/jail.h): it starts the script's shell, reaps every
 * process of the pid namespace, and when the shell ends reports its wait status on the report
 * pipe and exits, which makes the kernel kill whatever the script left behind.
 *
 * Why a program of its own: the setup process shares the server's memory (it is created like
 * posix_spawn's child, without copying the server's address space); executing this program
 * gives pid 1 a fresh, tiny address space that holds nothing of the server and forks cheaply.
 *
 * Why no C library: it runs once per exec, and a statically linked C library's start-up alone
 * (TLS, IRELATIVE relocations, tunables, RELRO) costs several times what this whole program does
 * (its page faults: docs/BENCHMARKS.md). It needs nine system calls, made directly, and starts
 * the shell with a vfork-style clone (spawn_shell).
 *
 * Contract (jail/jail_proto.h): argv[1] = path of the shell, argv[2..] = its argv, envp = its
 * environment; descriptors 0..4 are for the shell, JAIL_SLOT_REPORT is the report pipe.
 * Runs as the sandbox user, with no capabilities, no_new_privs and the jail's seccomp filter.
 * Built with -ffreestanding -nostdlib -static, never with sanitizers.
 */
#include <asm/unistd.h>
#include <linux/prctl.h>
#include <linux/sched.h>
#include <linux/wait.h>
#include <stddef.h>

#include "jail/jail_proto.h"

#define EINTR_ 4
#define EINVAL_ 22
#define F_SETFD_ 2
#define FD_CLOEXEC_ 1
#define SIGCHLD_ 17
/* CLONE_VM | CLONE_VFORK | SIGCHLD, spelled for the assembler below. */
#define SPAWN_FLAGS_STR "0x4111"
_Static_assert((CLONE_VM | CLONE_VFORK | SIGCHLD_) == 0x4111, "spawn flags");

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
/* spawn_shell (below), x86_64: path, argv, envp, exec_err in rdi, rsi, rdx, rcx. The syscall
 * instruction keeps every register but rax, rcx and r11, so the child finds its arguments in
 * the callee-saved registers the parent pushed; it never touches the stack. */
__asm__(".text\n.type spawn_shell,@function\nspawn_shell:\n"
        "  push %rbx\n  push %r12\n  push %r13\n  push %r14\n"
        "  mov %rdi, %rbx\n  mov %rsi, %r12\n  mov %rdx, %r13\n  mov %rcx, %r14\n"
        "  mov $" SPAWN_FLAGS_STR ", %edi\n  xor %esi, %esi\n  xor %edx, %edx\n"
        "  xor %r10d, %r10d\n  xor %r8d, %r8d\n  mov $56, %eax\n  syscall\n" /* clone */
        "  test %rax, %rax\n  jnz 1f\n"
        "  mov %rbx, %rdi\n  mov %r12, %rsi\n  mov %r13, %rdx\n  mov $59, %eax\n  syscall\n"
        "  mov %rax, (%r14)\n  mov $127, %edi\n  mov $60, %eax\n  syscall\n  hlt\n" /* exit */
        "1:\n  pop %r14\n  pop %r13\n  pop %r12\n  pop %rbx\n  ret\n");
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
/* spawn_shell (below), aarch64: path, argv, envp, exec_err in x0..x3; svc keeps every register
 * but x0, so the child finds its arguments in x9..x12 and never touches the stack. */
__asm__(".text\n.type spawn_shell,%function\nspawn_shell:\n"
        "  mov x9, x0\n  mov x10, x1\n  mov x11, x2\n  mov x12, x3\n"
        "  mov x0, #" SPAWN_FLAGS_STR "\n  mov x1, #0\n  mov x2, #0\n  mov x3, #0\n  mov x4, #0\n"
        "  mov x8, #220\n  svc 0\n  cbnz x0, 1f\n"                              /* clone */
        "  mov x0, x9\n  mov x1, x10\n  mov x2, x11\n  mov x8, #221\n  svc 0\n" /* execve */
        "  str x0, [x12]\n  mov x0, #127\n  mov x8, #93\n  svc 0\n  brk #0\n"   /* exit */
        "1:\n  ret\n");
#else
#error "the jail init supports x86_64 and aarch64"
#endif

#define sys(n, a, b, c) sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)

/* Starts the shell the way posix_spawn does: a child sharing this address space (no page
 * tables copied, no copy-on-write faults) while this process waits for its execve. Returns the
 * child's pid or -errno of clone; when execve fails the child stores its -errno in *exec_err
 * (memory both share) and exits 127. In assembly because the child runs on the caller's stack:
 * compiled code could not promise to leave the caller's frame intact. */
long spawn_shell(const char *path, char **argv, char **envp, volatile long *exec_err);

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
    volatile long exec_err = 0;
    long shell = spawn_shell(argv[1], argv + 2, envp, &exec_err);
    if (shell < 0) {
        report(JAIL_REPORT_SETUP_ERR, shell, 0, "fork bash");
        quit(126);
    }
    if (exec_err < 0) {
        report(JAIL_REPORT_EXEC_ERR, exec_err, 0, "execve bash");
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
