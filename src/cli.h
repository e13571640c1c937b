/*
 * cli — the `sqlfs token` subcommand (offline token minting for operators), `sqlfs migrate`
 * (bring the database schema to this version and exit) and the top-level help text.
 * Self-contained: it reads its own flags and environment and writes to stdout/stderr, which is
 * why, unlike other modules, it prints.
 *
 *   sqlfs token --sub NAME [--tenant T] [--expires 24h|30d|1y|never] [--data DIR]
 *   sqlfs migrate [--database URL] [--data DIR]
 *
 * The signing secret is AUTH_SECRET when set (non-empty), otherwise the auth_secret file of the
 * data directory (--data, else SQLFS_DATA, else ./data) that `sqlfs serve` created; the command
 * never creates one. Tokens carry sub, tenant, iat, exp (unless --expires never) and a jti.
 * Thread-safety: meant for main() only.
 */
#ifndef SQLFS_CLI_H
#define SQLFS_CLI_H

/* Exit statuses of cli_token. */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAILURE 1 /* no secret, unreadable secret, I/O error */
#define CLI_EXIT_USAGE 2   /* bad or missing flags */

/* Runs `sqlfs token` (argv[0] is "token"). Prints the token and a newline on stdout and returns
 * CLI_EXIT_OK; on error prints a message on stderr and returns CLI_EXIT_USAGE or
 * CLI_EXIT_FAILURE. -h/--help prints cli_token_help() on stdout and returns CLI_EXIT_OK. */
int cli_token(int argc, char **argv);

/* Runs `sqlfs migrate` (argv[0] is "migrate"): applies the schema migrations to the database
 * of --database, else SQLFS_DATABASE (PostgreSQL), or to the SQLite database of the data
 * directory (--data, else SQLFS_DATA, else ./data; refused while a server holds it), prints
 * what it did and returns CLI_EXIT_OK; CLI_EXIT_USAGE or CLI_EXIT_FAILURE with a message on
 * stderr. -h/--help prints cli_migrate_help(). */
int cli_migrate(int argc, char **argv);

/* `sqlfs --help`: commands and the main environment variables. */
const char *cli_main_help(void);
/* `sqlfs token --help`. */
const char *cli_token_help(void);
/* `sqlfs migrate --help`. */
const char *cli_migrate_help(void);

#endif
