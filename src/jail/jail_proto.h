/*
 * jail_proto — what the server's jail code (jail.c, jail_child.c) and the jail's init program
 * (init/jail_init.c) agree on: the descriptor slots of a jail process and the fixed-size records
 * both write to the report pipe.
 *
 * The init is a separate, statically linked program (embedded in the server, executed from a
 * sealed memfd) so that pid 1 of a jail never holds a copy of the server's memory; the two sides
 * are built from this one header, never from two copies of these numbers.
 */
#ifndef SQLFS_JAIL_JAIL_PROTO_H
#define SQLFS_JAIL_JAIL_PROTO_H

#include <stdint.h>

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

/* Fills one report record. Plain loops, no library call: the init is built without a C library
 * and the setup child may only make async-signal-safe calls. */
static inline void jail_report_fill(struct jail_report *rec, int kind, int err, int status,
                                    const char *step)
{
    unsigned char *raw = (unsigned char *)rec;
    for (unsigned long i = 0; i < sizeof(*rec); i++)
        raw[i] = 0;
    rec->kind = kind;
    rec->err = err;
    rec->status = status;
    for (unsigned long i = 0; step && step[i] && i < sizeof(rec->step) - 1; i++)
        rec->step[i] = step[i];
}

/* The init's command line: argv[0] = this name, argv[1] = the program to run as the script's
 * shell, argv[2..] = that program's own argv (argv[2] is its argv[0]). Its environment is the
 * script's. */
#define JAIL_INIT_NAME "sqlfs-init"

#endif
