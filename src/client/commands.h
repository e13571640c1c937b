/*
 * commands — the command-line client's commands, run against a sqlfs server over its HTTP API
 * (docs/API.md):
 *
 *   sqlfs sandbox create [--name N] [--python] [--javascript]   prints the new id
 *   sqlfs sandbox ls | sandbox rm ID
 *   sqlfs exec ID [--cwd DIR] [--timeout MS] [--env K=V]... -- SCRIPT...   (or - : stdin)
 *   sqlfs cp [-r] SRC DST        one side local, the other ID:/path
 *   sqlfs shell ID               a line-by-line REPL over exec
 *   sqlfs log ID | undo ID
 *
 * Every command takes --url (default SQLFS_URL, else CLIENT_DEFAULT_URL), --token (default
 * SQLFS_TOKEN) and --json (print the API's JSON answers). Exit statuses: CLIENT_EXIT_* (client.h);
 * exec and shell's scripts: the script's exit code, 128+N when killed by signal N.
 * Thread-safety: meant for main() only.
 */
#ifndef SQLFS_CLIENT_COMMANDS_H
#define SQLFS_CLIENT_COMMANDS_H

#include <stdbool.h>

/* Whether `name` is one of the client's commands. */
bool client_is_command(const char *name);

/* Runs the command argv[0] ("sandbox", "exec", ...) and returns the process exit status. */
int client_main(int argc, char **argv);

#endif
