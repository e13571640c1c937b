/*
 * cli — `sqlfs token`. Runs before any server state exists and talks to an operator's terminal,
 * so it prints its own messages; the secret is never printed.
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
           "  version    print the version\n"
           "\n"
           "Options:\n"
           "  -h, --help  this text\n"
           "\n"
           "Environment (the main variables; sqlfs serve --help lists all of them):\n"
           "  SQLFS_LISTEN   HOST or HOST:PORT to listen on (default 127.0.0.1)\n"
           "  PORT           TCP port (default 8080)\n"
           "  SQLFS_DATA     data directory (default ./data)\n"
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

struct token_opts {
    const char *sub;     /* --sub */
    const char *tenant;  /* --tenant, NULL = default */
    const char *expires; /* --expires */
    const char *data;    /* --data, NULL = SQLFS_DATA or ./data */
    bool help;           /* -h / --help */
};

__attribute__((format(printf, 1, 2))) static int usage(const char *fmt, ...)
{
    fputs("sqlfs token: ", stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nRun sqlfs token --help for usage.\n", stderr);
    return CLI_EXIT_USAGE;
}

/* Parses flags into *o. CLI_EXIT_OK or CLI_EXIT_USAGE (message printed). */
static int parse_token_args(int argc, char **argv, struct token_opts *o)
{
    static const char *const names[] = {"--sub", "--tenant", "--expires", "--data"};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            o->help = true;
            return CLI_EXIT_OK;
        }
        const char **slot[] = {&o->sub, &o->tenant, &o->expires, &o->data};
        size_t k = 0;
        const char *value = NULL;
        for (; k < 4; k++) {
            size_t n = strlen(names[k]);
            if (strncmp(arg, names[k], n) == 0 && (arg[n] == '\0' || arg[n] == '=')) {
                value = arg[n] == '=' ? arg + n + 1 : NULL;
                break;
            }
        }
        if (k == 4)
            return arg[0] == '-' ? usage("unknown option %s", arg)
                                 : usage("unexpected argument %s", arg);
        if (!value) {
            if (i + 1 >= argc)
                return usage("%s needs a value", names[k]);
            value = argv[++i];
        }
        *slot[k] = value;
    }
    return CLI_EXIT_OK;
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
            return usage("TOKEN_DEFAULT_EXPIRES is longer than TOKEN_MAX_EXPIRES");
        return usage("%s", err_message());
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
        return usage("%s is required", "--sub");
    if (!jwt_sub_valid(o.sub, strlen(o.sub)))
        return usage("%s must be 1 to 256 characters of UTF-8", "--sub");
    if (o.tenant && !jwt_tenant_valid(o.tenant, strlen(o.tenant)))
        return usage("%s must match ^[A-Za-z0-9_.-]{1,64}$", "--tenant");
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
