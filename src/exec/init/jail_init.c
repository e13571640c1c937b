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
 * Contract (exec/jail_proto.h): argv[1] = path of the shell, argv[2..] = its argv, envp = its
 * environment; descriptors 0..4 are for the shell, JAIL_SLOT_REPORT is the report pipe.
 * Runs as the sandbox user, with no capabilities, no_new_privs and the jail's seccomp filter.
 * Built statically and without sanitizers; it only makes system calls.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exec/jail_proto.h"

int main(int argc, char **argv, char **envp)
{
    /* The script runs as the same uid: it must not ptrace or read the memory of its init. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0 ||
        fcntl(JAIL_SLOT_REPORT, F_SETFD, FD_CLOEXEC) < 0) {
        jail_report_write(JAIL_REPORT_SETUP_ERR, errno, 0, "init");
        return 126;
    }
    if (argc < 3) {
        jail_report_write(JAIL_REPORT_SETUP_ERR, EINVAL, 0, "init arguments");
        return 126;
    }
    pid_t shell = fork();
    if (shell < 0) {
        jail_report_write(JAIL_REPORT_SETUP_ERR, errno, 0, "fork bash");
        return 126;
    }
    if (shell == 0) {
        execve(argv[1], argv + 2, envp);
        jail_report_write(JAIL_REPORT_EXEC_ERR, errno, 0, "execve bash");
        _exit(127);
    }
    jail_report_write(JAIL_REPORT_READY, 0, 0, NULL);
    for (int fd = JAIL_SLOT_STDIN; fd < JAIL_SLOT_REPORT; fd++)
        close(fd);
    int status = 127 << 8;
    for (;;) {
        int st;
        pid_t pid = wait4(-1, &st, __WALL, NULL);
        if (pid == shell) {
            status = st;
            break;
        }
        if (pid < 0 && errno != EINTR)
            break;
    }
    jail_report_write(JAIL_REPORT_STATUS, 0, status, NULL);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
