/*
 * commands — dispatch, the options every command shares, and the small commands: sandbox
 * create/ls/rm, log, undo (see commands.h). exec and shell live in exec.c, cp in transfer.c.
 */
#include "client/commands.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/commands_internal.h"
#include "util/buf.h"

static const char *const commands[] = {"sandbox", "exec", "cp", "shell", "log", "undo"};

bool client_is_command(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(name, commands[i]) == 0)
            return true;
    return false;
}

int cmd_usage(const char *cmd, const char *fmt, ...)
{
    fprintf(stderr, "sqlfs %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun sqlfs %s --help for usage.\n", cmd);
    return CLIENT_EXIT_USAGE;
}

int cmd_parse(const char *cmd, const char *usage, int argc, char **argv, const char *shortopts,
              const struct option *longopts, cmd_option_fn fn, void *ctx, struct common_opts *co,
              int *ret_first)
{
    co->url = getenv("SQLFS_URL");
    co->token = getenv("SQLFS_TOKEN");
    co->json = false;
    optind = 0; /* glibc: a full re-initialisation */
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            fputs(usage, stdout);
            return -1;
        case OPT_URL:
            co->url = optarg;
            break;
        case OPT_TOKEN:
            co->token = optarg;
            break;
        case OPT_JSON:
            co->json = true;
            break;
        case ':':
            return cmd_usage(cmd, "%s needs a value", argv[optind - 1]);
        case '?':
            if (optopt)
                return cmd_usage(cmd, "unknown option -%c", optopt);
            return cmd_usage(cmd, "unknown option %s", argv[optind - 1]);
        default: {
            if (!fn)
                return cmd_usage(cmd, "%s does not apply here", argv[optind - 1]);
            int rc = fn(ctx, opt, optarg);
            if (rc != CLIENT_EXIT_OK)
                return rc;
        }
        }
    }
    *ret_first = optind;
    return CLIENT_EXIT_OK;
}

int cmd_client(struct client *c, const struct common_opts *co)
{
    int rc = client_open(c, co->url, co->token);
    c->json = co->json;
    return rc;
}

char *cmd_sandbox_path(const char *id, const char *suffix)
{
    struct buf b = BUF_INIT(0);
    if (buf_addstr(&b, "/v1/sandboxes/") < 0 || client_escape(&b, id, false) < 0 ||
        buf_addstr(&b, suffix) < 0) {
        buf_release(&b);
        return NULL;
    }
    return buf_detach(&b, NULL);
}

/* --- sandbox create / ls / rm ------------------------------------------------------------- */

static const char sandbox_usage[] =
    "Usage: sqlfs sandbox create [--name N] [--python] [--javascript]\n"
    "       sqlfs sandbox ls\n"
    "       sqlfs sandbox rm ID\n"
    "\n"
    "create prints the new sandbox's id, ls a table of your sandboxes, rm deletes one.\n"
    "  --url URL     the server (default: SQLFS_URL, else " CLIENT_DEFAULT_URL ")\n"
    "  --token T     bearer token (default: SQLFS_TOKEN)\n"
    "  --json        print the API's JSON answer (create: the record; ls: the array)\n";

enum { OPT_NAME = OPT_FIRST_OWN, OPT_PYTHON, OPT_JAVASCRIPT };

/* The body of POST /v1/sandboxes, filled by the options of `sandbox create`. */
struct create_opts {
    json_t *body;
};

static int create_option(void *ctx, int opt, const char *arg)
{
    struct create_opts *o = ctx;
    int r = -1;
    if (opt == OPT_NAME)
        r = json_object_set_new(o->body, "name", json_string(arg));
    else if (opt == OPT_PYTHON)
        r = json_object_set_new(o->body, "python", json_true());
    else if (opt == OPT_JAVASCRIPT)
        r = json_object_set_new(o->body, "javascript", json_true());
    return r == 0 ? CLIENT_EXIT_OK : cmd_usage("sandbox", "bad option value");
}

static const struct option sandbox_options[] = {
    COMMON_OPTIONS,
    {"name", required_argument, NULL, OPT_NAME},
    {"python", no_argument, NULL, OPT_PYTHON},
    {"javascript", no_argument, NULL, OPT_JAVASCRIPT},
    {NULL, 0, NULL, 0},
};

/* "12.3K": a size for a table. */
static void human_size(char *out, size_t cap, json_int_t n)
{
    static const char units[] = "BKMGTP";
    double v = (double)n;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof(units) - 1) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, cap, "%lldB", (long long)n);
    else
        snprintf(out, cap, "%.1f%c", v, units[u]);
}

static int sandbox_ls(struct client *c)
{
    json_t *ans = NULL;
    int rc = client_json(c, "GET", "/v1/sandboxes", NULL, &ans);
    if (rc != CLIENT_EXIT_OK)
        return rc;
    json_t *list = json_object_get(ans, "sandboxes");
    if (!json_is_array(list)) {
        json_decref(ans);
        return client_say(CLIENT_EXIT_FAILURE, "the server's answer has no sandboxes array");
    }
    if (c->json) {
        rc = client_print_json(list);
        json_decref(ans);
        return rc;
    }
    printf("%-36s  %-20s  %7s  %7s  %8s  %s\n", "ID", "NAME", "VERSION", "FILES", "SIZE",
           "LAST USED");
    size_t i;
    json_t *s;
    json_array_foreach(list, i, s)
    {
        const char *name = json_string_value(json_object_get(s, "name"));
        const char *used = json_string_value(json_object_get(s, "lastUsedAt"));
        char size[32];
        human_size(size, sizeof(size), json_integer_value(json_object_get(s, "sizeBytes")));
        printf("%-36s  %-20s  %7lld  %7lld  %8s  %s\n",
               json_string_value(json_object_get(s, "id")) ?: "?", name ? name : "",
               (long long)json_integer_value(json_object_get(s, "version")),
               (long long)json_integer_value(json_object_get(s, "fileCount")), size,
               used ? used : "-");
    }
    json_decref(ans);
    return fflush(stdout) == 0 ? CLIENT_EXIT_OK
                               : client_say(CLIENT_EXIT_FAILURE, "cannot write the list");
}

static int sandbox_create(struct client *c, json_t *body)
{
    json_t *rec = NULL;
    int rc = client_json(c, "POST", "/v1/sandboxes", body, &rec);
    if (rc != CLIENT_EXIT_OK)
        return rc;
    const char *id = json_string_value(json_object_get(rec, "id"));
    if (c->json)
        rc = client_print_json(rec);
    else if (id)
        rc = printf("%s\n", id) < 0 || fflush(stdout) != 0 ? CLIENT_EXIT_FAILURE : CLIENT_EXIT_OK;
    else
        rc = client_say(CLIENT_EXIT_FAILURE, "the server's answer has no id");
    json_decref(rec);
    return rc;
}

static int sandbox_rm(struct client *c, const char *id)
{
    char *path = cmd_sandbox_path(id, "");
    if (!path)
        return client_say(CLIENT_EXIT_FAILURE, "out of memory");
    json_t *ans = NULL;
    int rc = client_json(c, "DELETE", path, NULL, &ans);
    free(path);
    json_decref(ans);
    return rc;
}

static int cmd_sandbox(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
            fputs(sandbox_usage, stdout);
            return CLIENT_EXIT_OK;
        }
        return cmd_usage("sandbox", "expected create, ls or rm");
    }
    const char *sub = argv[1];
    struct create_opts o = {.body = json_object()};
    if (!o.body)
        return client_say(CLIENT_EXIT_FAILURE, "out of memory");
    struct common_opts co;
    int first = 0;
    bool create = strcmp(sub, "create") == 0;
    int rc = cmd_parse("sandbox", sandbox_usage, argc - 1, argv + 1, ":h", sandbox_options,
                       create ? create_option : NULL, &o, &co, &first);
    int npos = argc - 1 - first;
    char **pos = argv + 1 + first;
    if (rc == CLIENT_EXIT_OK) {
        if (create && npos != 0)
            rc = cmd_usage("sandbox", "create takes no argument");
        else if (strcmp(sub, "ls") == 0 && npos != 0)
            rc = cmd_usage("sandbox", "ls takes no argument");
        else if (strcmp(sub, "rm") == 0 && npos != 1)
            rc = cmd_usage("sandbox", "rm takes one sandbox id");
        else if (!create && strcmp(sub, "ls") != 0 && strcmp(sub, "rm") != 0)
            rc = cmd_usage("sandbox", "unknown subcommand %s (expected create, ls or rm)", sub);
    }
    struct client c = {0};
    if (rc == CLIENT_EXIT_OK)
        rc = cmd_client(&c, &co);
    if (rc == CLIENT_EXIT_OK) {
        if (create)
            rc = sandbox_create(&c, o.body);
        else if (strcmp(sub, "ls") == 0)
            rc = sandbox_ls(&c);
        else
            rc = sandbox_rm(&c, pos[0]);
    }
    client_close(&c);
    json_decref(o.body);
    return rc < 0 ? CLIENT_EXIT_OK : rc;
}

/* --- log / undo ---------------------------------------------------------------------------- */

static const char log_usage[] =
    "Usage: sqlfs log ID [--limit N]\n"
    "       sqlfs undo ID\n"
    "\n"
    "log prints the sandbox's commits, newest first: version, time, kind, summary (at most N,\n"
    "default 100). undo restores the parent of the latest commit (itself a new commit, so it\n"
    "can be undone in turn) and prints the new version.\n"
    "  --url URL, --token T, --json   as for every command (sqlfs --help)\n";

enum { OPT_LIMIT = OPT_FIRST_OWN };

static int limit_option(void *ctx, int opt, const char *arg)
{
    (void)opt;
    char *end;
    long v = strtol(arg, &end, 10);
    if (*arg == '\0' || *end != '\0' || v < 1 || v > 1000)
        return cmd_usage("log", "--limit takes a number from 1 to 1000");
    *(long *)ctx = v;
    return CLIENT_EXIT_OK;
}

static const struct option log_options[] = {
    COMMON_OPTIONS,
    {"limit", required_argument, NULL, OPT_LIMIT},
    {NULL, 0, NULL, 0},
};

/* GET commits?limit=N into *ret (the answer). */
static int get_commits(struct client *c, const char *id, long limit, json_t **ret)
{
    char suffix[48];
    snprintf(suffix, sizeof(suffix), "/commits?limit=%ld", limit);
    char *path = cmd_sandbox_path(id, suffix);
    if (!path)
        return client_say(CLIENT_EXIT_FAILURE, "out of memory");
    int rc = client_json(c, "GET", path, NULL, ret);
    free(path);
    if (rc == CLIENT_EXIT_OK && !json_is_array(json_object_get(*ret, "commits"))) {
        json_decref(*ret);
        *ret = NULL;
        rc = client_say(CLIENT_EXIT_FAILURE, "the server's answer has no commits array");
    }
    return rc;
}

static int do_log(struct client *c, const char *id, long limit)
{
    json_t *ans = NULL;
    int rc = get_commits(c, id, limit, &ans);
    if (rc != CLIENT_EXIT_OK)
        return rc;
    if (c->json) {
        rc = client_print_json(ans);
        json_decref(ans);
        return rc;
    }
    size_t i;
    json_t *cm;
    json_array_foreach(json_object_get(ans, "commits"), i, cm)
    {
        const char *at = json_string_value(json_object_get(cm, "at"));
        const char *kind = json_string_value(json_object_get(cm, "kind"));
        const char *summary = json_string_value(json_object_get(cm, "summary"));
        printf("%lld\t%s\t%s\t%s\n", (long long)json_integer_value(json_object_get(cm, "version")),
               at ? at : "-", kind ? kind : "-", summary ? summary : "");
    }
    json_decref(ans);
    return fflush(stdout) == 0 ? CLIENT_EXIT_OK
                               : client_say(CLIENT_EXIT_FAILURE, "cannot write the log");
}

static int do_undo(struct client *c, const char *id)
{
    json_t *ans = NULL;
    int rc = get_commits(c, id, 1, &ans);
    if (rc != CLIENT_EXIT_OK)
        return rc;
    json_t *parent = json_object_get(json_array_get(json_object_get(ans, "commits"), 0), "parent");
    if (!json_is_integer(parent)) {
        json_decref(ans);
        return client_say(CLIENT_EXIT_FAILURE,
                          "nothing to undo: the latest commit of %s has no parent", id);
    }
    json_t *body = json_pack("{sI}", "version", json_integer_value(parent));
    json_decref(ans);
    char *path = cmd_sandbox_path(id, "/restore");
    json_t *res = NULL;
    if (!body || !path)
        rc = client_say(CLIENT_EXIT_FAILURE, "out of memory");
    else
        rc = client_json(c, "POST", path, body, &res);
    free(path);
    json_decref(body);
    if (rc == CLIENT_EXIT_OK) {
        if (c->json)
            rc = client_print_json(res);
        else if (printf("%lld\n", (long long)json_integer_value(json_object_get(res, "version"))) <
                     0 ||
                 fflush(stdout) != 0)
            rc = CLIENT_EXIT_FAILURE;
    }
    json_decref(res);
    return rc;
}

/* `sqlfs log ID` and `sqlfs undo ID`. */
static int cmd_history(int argc, char **argv)
{
    const char *cmd = argv[0];
    bool undo = strcmp(cmd, "undo") == 0;
    long limit = 100;
    struct common_opts co;
    int first = 0;
    int rc = cmd_parse(cmd, log_usage, argc, argv, ":h", log_options, undo ? NULL : limit_option,
                       &limit, &co, &first);
    if (rc < 0)
        return CLIENT_EXIT_OK;
    if (rc != CLIENT_EXIT_OK)
        return rc;
    if (argc - first != 1)
        return cmd_usage(cmd, "expected one sandbox id");
    struct client c;
    rc = cmd_client(&c, &co);
    if (rc == CLIENT_EXIT_OK)
        rc = undo ? do_undo(&c, argv[first]) : do_log(&c, argv[first], limit);
    client_close(&c);
    return rc;
}

int client_main(int argc, char **argv)
{
    const char *cmd = argv[0];
    if (strcmp(cmd, "sandbox") == 0)
        return cmd_sandbox(argc, argv);
    if (strcmp(cmd, "exec") == 0)
        return cmd_exec(argc, argv);
    if (strcmp(cmd, "shell") == 0)
        return cmd_shell(argc, argv);
    if (strcmp(cmd, "cp") == 0)
        return cmd_cp(argc, argv);
    return cmd_history(argc, argv);
}
