/*
 * spawnbench — times N sequential runs of a command (posix_spawn + wait), the local reference
 * for the sandbox benchmarks (native bash, bubblewrap). Prints a JSON array of milliseconds.
 *
 *   spawnbench N [-C DIR] -- argv...
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: spawnbench N [-C DIR] -- argv...\n");
        return 2;
    }
    long n = strtol(argv[1], NULL, 10);
    int i = 2;
    if (strcmp(argv[i], "-C") == 0) {
        if (chdir(argv[i + 1]) != 0) {
            perror("chdir");
            return 2;
        }
        i += 2;
    }
    if (strcmp(argv[i], "--") != 0) {
        fprintf(stderr, "spawnbench: expected --\n");
        return 2;
    }
    char **cmd = argv + i + 1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    printf("[");
    for (long k = 0; k < n; k++) {
        double t0 = now_ms();
        pid_t pid;
        int rc = posix_spawnp(&pid, cmd[0], &fa, NULL, cmd, environ);
        if (rc != 0) {
            fprintf(stderr, "spawnbench: %s: %s\n", cmd[0], strerror(rc));
            return 1;
        }
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "spawnbench: command failed (status %d)\n", st);
            return 1;
        }
        printf("%s%.4f", k ? "," : "", now_ms() - t0);
    }
    printf("]\n");
    posix_spawn_file_actions_destroy(&fa);
    return 0;
}
