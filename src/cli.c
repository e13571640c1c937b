/*
 * cli — `sqlfs token` and `sqlfs migrate`. They run before any server state exists and talk to
 * an operator's terminal, so they print their own messages; the secret and the database URL
 * (which may hold a password) are never printed.
 */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jwt.h"
#include "auth/secret.h"
#include "config.h"
#include "store/store.h"
#include "util/datadir.h"
#include "util/err.h"
#include "util/timeutil.h"

const char *cli_main_help(void)
{
    return "Usage: sqlfs COMMAND [OPTIONS]\n"
           "\n"
           "sqlfs gives AI agents persistent bash sandboxes whose file systems live in SQL,\n"
           "over an HTTP API.\n"
           "\n"
           "Commands:\n"
           "  serve      run the HTTP server (sqlfs serve --help lists every option)\n"
           "  token      mint a bearer token offline:\n"
           "             sqlfs token --sub NAME [--tenant T] [--expires 30d] [--data DIR]\n"
           "  migrate    bring the database schema to this version, then exit:\n"
           "             sqlfs migrate [--database URL] [--data DIR]\n"
           "  version    print the version\n"
           "\n"
           "Client commands, against a running server (SQLFS_URL, default\n"
           "http://127.0.0.1:8080, and SQLFS_TOKEN, or --url and --token; --json prints the\n"
           "API's JSON answer; each has --help):\n"
           "  sandbox create [--name N] [--python] [--javascript]   print the new id\n"
           "  sandbox ls     list your sandboxes\n"
           "  sandbox rm ID  delete a sandbox\n"
           "  exec ID [--cwd DIR] [--timeout MS] [--env K=V]... -- SCRIPT...\n"
           "             run a script (- reads it from stdin), its output streamed as it\n"
           "             comes; exits with the script's exit code\n"
           "  cp [-r] SRC DST   copy a file (-r: a directory) into or out of a sandbox, the\n"
           "             sandbox's side written ID:/path\n"
           "  shell ID   run lines one by one (the sandbox keeps its cwd); exit or EOF ends\n"
           "  log ID     the sandbox's commits: version, time, kind, summary\n"
           "  undo ID    restore the parent of the latest commit; print the new version\n"
           "\n"
           "Options:\n"
           "  -h, --help  this text\n"
           "\n"
           "Environment (the main variables; sqlfs serve --help lists all of them):\n"
           "  SQLFS_LISTEN   HOST or HOST:PORT to listen on (default 127.0.0.1)\n"
           "  PORT           TCP port (default 8080)\n"
           "  SQLFS_DATA     data directory (default ./data)\n"
           "  SQLFS_DATABASE sqlite: (default, in the data directory) or a PostgreSQL URL\n"
           "  AUTH_SECRET    token signing secret; unset: generated once into DATA/auth_secret\n"
           "  ADMIN_SECRET   enables POST /v1/auth/admin\n"
           "  TRUST_PROXY    take client IPs from X-Forwarded-For (behind your own proxy)\n"
           "  SQLFS_ROOTFS   root file system for execs (default: the host's /usr)\n";
}

const char *cli_token_help(void)
{
    return "Usage: sqlfs token --sub NAME [--tenant T] [--expires DURATION] [--data DIR]\n"
           "\n"
           "Mints an HS256 bearer token and prints it on stdout.\n"
           "\n"
           "  --sub NAME          owner of the sandboxes the token reaches (required,\n"
           "                      1 to 256 characters)\n"
           "  --tenant T          tenant, matching ^[A-Za-z0-9_.-]{1,64}$ (default \"default\")\n"
           "  --expires DURATION  lifetime: N followed by s, m, h, d or y (e.g. 3600s, 24h,\n"
           "                      30d, 1y), or never; at most TOKEN_MAX_EXPIRES (default\n"
           "                      365d; never only when that is never); default\n"
           "                      TOKEN_DEFAULT_EXPIRES, else 30d\n"
           "  --data DIR          data directory holding auth_secret (default: SQLFS_DATA,\n"
           "                      else ./data)\n"
           "  -h, --help          this text\n"
           "\n"
           "The signing secret is AUTH_SECRET when it is set (at least 32 bytes), otherwise\n"
           "DIR/auth_secret as created by sqlfs serve. Exit status: 0 success, 1 no usable\n"
           "secret, 2 bad usage.\n";
}

const char *cli_migrate_help(void)
{
    return "Usage: sqlfs migrate [--database URL] [--data DIR]\n"
           "\n"
           "Applies the database schema migrations of this sqlfs version, then exits. sqlfs\n"
           "serve migrates at start too (servers sharing one database migrate once); run this\n"
           "before starting upgraded servers to see the migration succeed on its own.\n"
           "\n"
           "  --database URL  a postgres:// or postgresql:// URL (default: SQLFS_DATABASE;\n"
           "                  unset or sqlite: means the SQLite database of the data\n"
           "                  directory). A URL with a password belongs in SQLFS_DATABASE\n"
           "                  or ~/.pgpass, not on the command line.\n"
           "  --data DIR      the data directory of a SQLite database (default: SQLFS_DATA,\n"
           "                  else ./data); refused while a server uses it\n"
           "  -h, --help      this text\n"
           "\n"
           "Exit status: 0 success, 1 the database could not be migrated, 2 bad usage.\n";
}

struct token_opts {
    const char *sub;     /* --sub */
    const char *tenant;  /* --tenant, NULL = default */
    const char *expires; /* --expires */
    const char *data;    /* --data, NULL = SQLFS_DATA or ./data */
    bool help;           /* -h / --help */
};

/* Prints "sqlfs CMD: message" and the way to the command's help. CLI_EXIT_USAGE. */
__attribute__((format(printf, 2, 3))) static int usage(const char *cmd, const char *fmt, ...)
{
    fprintf(stderr, "sqlfs %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun sqlfs %s --help for usage.\n", cmd);
    return CLI_EXIT_USAGE;
}

/* Parses the value-taking flags names[i] (--name VALUE or --name=VALUE) of command cmd into
 * *slots[i]; -h/--help sets *ret_help and stops. CLI_EXIT_OK or CLI_EXIT_USAGE (message
 * printed). */
static int parse_flags(const char *cmd, int argc, char **argv, const char *const *names,
                       const char **const *slots, size_t n, bool *ret_help)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            *ret_help = true;
            return CLI_EXIT_OK;
        }
        size_t k = 0;
        const char *value = NULL;
        for (; k < n; k++) {
            size_t len = strlen(names[k]);
            if (strncmp(arg, names[k], len) == 0 && (arg[len] == '\0' || arg[len] == '=')) {
                value = arg[len] == '=' ? arg + len + 1 : NULL;
                break;
            }
        }
        if (k == n)
            return arg[0] == '-' ? usage(cmd, "unknown option %s", arg)
                                 : usage(cmd, "unexpected argument %s", arg);
        if (!value) {
            if (i + 1 >= argc)
                return usage(cmd, "%s needs a value", names[k]);
            value = argv[++i];
        }
        *slots[k] = value;
    }
    return CLI_EXIT_OK;
}

/* Parses flags into *o. CLI_EXIT_OK or CLI_EXIT_USAGE (message printed). */
static int parse_token_args(int argc, char **argv, struct token_opts *o)
{
    static const char *const names[] = {"--sub", "--tenant", "--expires", "--data"};
    const char **const slots[] = {&o->sub, &o->tenant, &o->expires, &o->data};
    return parse_flags("token", argc, argv, names, slots, 4, &o->help);
}

/* The secret: AUTH_SECRET, else the data directory's file. Message printed on failure. */
static int token_secret(const struct token_opts *o, char **ret)
{
    const char *env = getenv("AUTH_SECRET");
    if (env && *env) {
        err_clear();
        if (secret_check_length("AUTH_SECRET", strlen(env)) < 0) {
            fprintf(stderr, "sqlfs token: %s\n", err_message());
            return CLI_EXIT_FAILURE;
        }
        *ret = strdup(env);
        return *ret ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
    }
    const char *dir = o->data;
    if (!dir) {
        dir = getenv("SQLFS_DATA");
        if (!dir || !*dir)
            dir = "./data";
    }
    err_clear();
    int r = secret_load(dir, ret);
    if (r == -ENOENT) {
        fprintf(stderr,
                "sqlfs token: AUTH_SECRET is not set and %s/auth_secret does not exist; set "
                "AUTH_SECRET, pass the server's --data directory, or start sqlfs serve once to "
                "create it\n",
                dir);
        return CLI_EXIT_FAILURE;
    }
    if (r < 0) {
        fprintf(stderr, "sqlfs token: cannot use the secret in %s: %s\n", dir,
                err_message() ? err_message() : strerror(-r));
        return CLI_EXIT_FAILURE;
    }
    return CLI_EXIT_OK;
}

/* A duration from the environment (as sqlfs serve reads it), else `def`. Message printed. */
static int env_duration(const char *name, const char *def, int64_t *ret)
{
    const char *v = getenv(name);
    if (!v || !*v)
        v = def;
    if (jwt_parse_expires(v, ret) < 0) {
        fprintf(stderr,
                "sqlfs token: %s: expected a duration such as 24h, 30d or 1y, or never, got "
                "\"%.40s\"\n",
                name, v);
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

/* The token's lifetime: --expires, else TOKEN_DEFAULT_EXPIRES, within TOKEN_MAX_EXPIRES, the
 * rule of the server's mint routes. Message printed. */
static int token_lifetime(const struct token_opts *o, int64_t *ret)
{
    int64_t def, max;
    int rc = env_duration("TOKEN_DEFAULT_EXPIRES", CONFIG_TOKEN_DEFAULT_EXPIRES, &def);
    if (rc == CLI_EXIT_OK)
        rc = env_duration("TOKEN_MAX_EXPIRES", CONFIG_TOKEN_MAX_EXPIRES, &max);
    if (rc != CLI_EXIT_OK)
        return rc;
    err_clear();
    if (jwt_lifetime("--expires", o->expires, def, max, ret) < 0) {
        if (!o->expires)
            return usage("token", "TOKEN_DEFAULT_EXPIRES is longer than TOKEN_MAX_EXPIRES");
        return usage("token", "%s", err_message());
    }
    return CLI_EXIT_OK;
}

int cli_token(int argc, char **argv)
{
    struct token_opts o = {0};
    int rc = parse_token_args(argc, argv, &o);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (o.help) {
        fputs(cli_token_help(), stdout);
        return CLI_EXIT_OK;
    }
    if (!o.sub)
        return usage("token", "%s is required", "--sub");
    if (!jwt_sub_valid(o.sub, strlen(o.sub)))
        return usage("token", "%s must be 1 to 256 characters of UTF-8", "--sub");
    if (o.tenant && !jwt_tenant_valid(o.tenant, strlen(o.tenant)))
        return usage("token", "%s must match ^[A-Za-z0-9_.-]{1,64}$", "--tenant");
    int64_t expires;
    rc = token_lifetime(&o, &expires);
    if (rc != CLI_EXIT_OK)
        return rc;

    char *secret = NULL;
    rc = token_secret(&o, &secret);
    if (rc != CLI_EXIT_OK)
        return rc;
    char *token = NULL;
    err_clear();
    int r = jwt_mint(secret, strlen(secret), o.sub, o.tenant, expires, true, time_now_ms() / 1000,
                     &token, NULL);
    free(secret);
    if (r < 0) {
        fprintf(stderr, "sqlfs token: cannot mint the token: %s\n",
                err_message() ? err_message() : strerror(-r));
        return CLI_EXIT_FAILURE;
    }
    rc = CLI_EXIT_OK;
    if (printf("%s\n", token) < 0 || fflush(stdout) != 0) {
        fprintf(stderr, "sqlfs token: cannot write the token: %s\n", strerror(errno));
        rc = CLI_EXIT_FAILURE;
    }
    free(token);
    return rc;
}

/* The data directory of a command: --data, else SQLFS_DATA, else ./data. */
static const char *data_dir_of(const char *flag)
{
    if (flag)
        return flag;
    const char *dir = getenv("SQLFS_DATA");
    return dir && *dir ? dir : "./data";
}

int cli_migrate(int argc, char **argv)
{
    const char *database = NULL, *data = NULL;
    bool help = false;
    static const char *const names[] = {"--database", "--data"};
    const char **const slots[] = {&database, &data};
    int rc = parse_flags("migrate", argc, argv, names, slots, 2, &help);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (help) {
        fputs(cli_migrate_help(), stdout);
        return CLI_EXIT_OK;
    }
    if (!database)
        database = getenv("SQLFS_DATABASE");
    err_clear();
    if (store_database_check(database) < 0)
        return usage("migrate", "%s", err_message());
    const char *engine = store_database_engine(database);
    struct datadir dd = DATADIR_INIT;
    struct store_config sc = {.database = database};
    int r = 0;
    if (strcmp(engine, "sqlite") == 0) {
        /* one process per data directory: a running server has migrated it already */
        pid_t owner = 0;
        r = datadir_open(data_dir_of(data), &dd, &owner);
        if (r == -EBUSY)
            err_set(r,
                    "the data directory %s is in use by a running sqlfs (pid %ld), which "
                    "migrated it at start",
                    dd.path ? dd.path : data_dir_of(data), (long)owner);
        sc.data_dir = dd.path;
    }
    if (r >= 0)
        r = store_migrate(&sc);
    datadir_close(&dd);
    if (r < 0) {
        fprintf(stderr, "sqlfs migrate: %s\n", err_message() ? err_message() : strerror(-r));
        return CLI_EXIT_FAILURE;
    }
    printf("sqlfs migrate: the %s database schema is up to date\n", engine);
    return CLI_EXIT_OK;
}
