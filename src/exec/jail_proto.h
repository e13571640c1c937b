/*
 * jail_proto — what the server's jail code (jail.c) and the jail's init program
 * (init/jail_init.c) agree on: the descriptor slots of a jail process and the fixed-size records
 * both write to the report pipe.
 *
 * The init is a separate, statically linked program (embedded in the server, executed from a
 * sealed memfd) so that pid 1 of a jail never holds a copy of the server's memory; the two sides
 * are built from this one header, never from two copies of these numbers.
 */
#ifndef SQLFS_EXEC_JAIL_PROTO_H
#define SQLFS_EXEC_JAIL_PROTO_H

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

enum jail_report_kind {
    JAIL_REPORT_READY = 1, /* init: bash is forked, the jail is running */
    JAIL_REPORT_SETUP_ERR, /* jail setup or init failed at `step` with errno `err` */
    JAIL_REPORT_CWD_ERR,   /* the start directory could not be entered (errno `err`) */
    JAIL_REPORT_EXEC_ERR,  /* bash could not be executed (errno `err`) */
    JAIL_REPORT_STATUS     /* init: bash ended with wait status `status` */
};

/* One record on the report pipe; smaller than PIPE_BUF, so every write is atomic. */
struct jail_report {
    int32_t kind;
    int32_t err;    /* errno of the failed step */
    int32_t status; /* JAIL_REPORT_STATUS: bash's wait status */
    char step[52];  /* which step failed (static text) */
};

/* Descriptor slots of the jail process. 0..2 are bash's stdio; fd 3 of bash is the caller's
 * report pipe (the script's final cwd, batch markers); fd 4 holds a big script. The slots from
 * JAIL_SLOT_REPORT on belong to the jail itself and never reach bash: the init keeps
 * JAIL_SLOT_REPORT (close-on-exec for bash); JAIL_SLOT_OVL and JAIL_SLOT_INIT are close-on-exec
 * and gone once the init runs. */
enum {
    JAIL_SLOT_STDIN = 0,
    JAIL_SLOT_STDOUT,
    JAIL_SLOT_STDERR,
    JAIL_SLOT_USER,
    JAIL_SLOT_SCRIPT,
    JAIL_SLOT_REPORT,
    JAIL_SLOT_OVL,
    JAIL_SLOT_INIT,
    JAIL_SLOT_COUNT
};

/* Writes one record on the report pipe (async-signal-safe: used before and after the init). */
static inline void jail_report_write(int kind, int err, int status, const char *step)
{
    struct jail_report rec;
    memset(&rec, 0, sizeof(rec));
    rec.kind = kind;
    rec.err = err;
    rec.status = status;
    if (step) {
        size_t n = strlen(step);
        memcpy(rec.step, step, n < sizeof(rec.step) - 1 ? n : sizeof(rec.step) - 1);
    }
    ssize_t w;
    do
        w = write(JAIL_SLOT_REPORT, &rec, sizeof(rec));
    while (w < 0 && errno == EINTR);
}

/* The init's command line: argv[0] = this name, argv[1] = the program to run as the script's
 * shell, argv[2..] = that program's own argv (argv[2] is its argv[0]). Its environment is the
 * script's. */
#define JAIL_INIT_NAME "sqlfs-init"

#endif
