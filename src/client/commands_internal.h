/*
 * commands_internal — what the client's command files (commands.c, exec.c, transfer.c) share:
 * the options every command takes and their parser.
 */
#ifndef SQLFS_CLIENT_COMMANDS_INTERNAL_H
#define SQLFS_CLIENT_COMMANDS_INTERNAL_H

#include <getopt.h>
#include <stdbool.h>

#include "client/client.h"

/* Long-option values of the common options (above any short option's character). */
enum {
    OPT_URL = 1000,
    OPT_TOKEN,
    OPT_JSON,
    OPT_HELP,
    OPT_FIRST_OWN, /* a command's own options start here */
};

#define COMMON_OPTIONS                                                                             \
    {"url", required_argument, NULL, OPT_URL}, {"token", required_argument, NULL, OPT_TOKEN},      \
        {"json", no_argument, NULL, OPT_JSON},                                                     \
    {                                                                                              \
        "help", no_argument, NULL, 'h'                                                             \
    }

/* The common options' values. */
struct common_opts {
    const char *url;   /* --url, else SQLFS_URL */
    const char *token; /* --token, else SQLFS_TOKEN */
    bool json;         /* --json */
};

/* A command's own option: called with getopt_long's value and optarg. CLIENT_EXIT_OK or a
 * failure status (message printed). */
typedef int (*cmd_option_fn)(void *ctx, int opt, const char *arg);

/* Parses argv with getopt_long (`shortopts` must start with ':' and include 'h'); the common
 * options go into *co, the others to `fn`. On success *ret_first is the index of the first
 * positional argument (they are moved to the end, in order; "--" ends the options).
 * CLIENT_EXIT_OK; CLIENT_EXIT_USAGE with a message; -1 after printing `usage` for --help. */
int cmd_parse(const char *cmd, const char *usage, int argc, char **argv, const char *shortopts,
              const struct option *longopts, cmd_option_fn fn, void *ctx, struct common_opts *co,
              int *ret_first);

/* Opens a client for the parsed common options. */
int cmd_client(struct client *c, const struct common_opts *co);

/* A usage error: "sqlfs CMD: message" and the way to its help; returns CLIENT_EXIT_USAGE. */
__attribute__((format(printf, 2, 3))) int cmd_usage(const char *cmd, const char *fmt, ...);

/* "/v1/sandboxes/<id><suffix>" with id escaped; NULL on allocation failure. */
char *cmd_sandbox_path(const char *id, const char *suffix);

int cmd_exec(int argc, char **argv);
int cmd_shell(int argc, char **argv);
int cmd_cp(int argc, char **argv);

#endif
