/*
 * exec — `sqlfs exec` and `sqlfs shell`: a script run through POST exec, its SSE stream
 * (docs/API.md "Exec": start, stdout, stderr, error, exit; comments as keep-alives) turned back
 * into output on this process's stdout and stderr as it arrives, and its exit code into ours.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/commands_internal.h"
#include "client/sse_reader.h"
#include "util/buf.h"

/* The exit status of a script that timed out (that of timeout(1)). */
#define EXIT_TIMED_OUT 124
/* The largest SSE event accepted (the server's frames are far smaller). */
#define MAX_EVENT_BYTES ((size_t)64 << 20)
/* The largest script read from stdin. */
#define MAX_SCRIPT_BYTES ((size_t)64 << 20)

/* What an exec is asked (beyond its script). */
struct exec_opts {
    const char *cwd; /* --cwd, NULL: the sandbox's stored cwd */
    long timeout_ms; /* --timeout, 0: the server's default */
    json_t *env;     /* --env K=V pairs, an object */
    const char *cmd; /* the command, for messages */
};

/* The state of one streamed exec. */
struct stream {
    struct sse_reader rd; /* the SSE parser */
    bool exited;          /* the exit event came */
    bool failed;          /* an error event came, or an event could not be read */
    int status;           /* the exit status the exit event gives */
};

/* The exit status of an exit event (or exec-sync answer): the script's exit code, 128+N when
 * killed by signal N, EXIT_TIMED_OUT on timeout. */
static int exit_status_of(const json_t *x)
{
    if (json_is_true(json_object_get(x, "timedOut"))) {
        client_say(EXIT_TIMED_OUT, "the script timed out");
        return EXIT_TIMED_OUT;
    }
    const char *sig = json_string_value(json_object_get(x, "exitSignal"));
    if (sig) {
        const char *abbrev = strncmp(sig, "SIG", 3) == 0 ? sig + 3 : sig;
        for (int i = 1; i < NSIG; i++) {
            const char *a = sigabbrev_np(i);
            if (a && strcmp(a, abbrev) == 0)
                return 128 + i;
        }
    }
    json_int_t code = json_integer_value(json_object_get(x, "exitCode"));
    return code >= 0 && code <= 255 ? (int)code : 1;
}

/* Writes the "data" string of an output event to `out` at once. */
static int write_output(const json_t *ev, FILE *out)
{
    const json_t *d = json_object_get(ev, "data");
    size_t n = json_string_length(d);
    if (n && (fwrite(json_string_value(d), 1, n, out) != n || fflush(out) != 0))
        return client_say(-EIO, "cannot write the output: %s", strerror(errno));
    return 0;
}

static int on_event(void *ctx, const char *event, const char *data, size_t len)
{
    struct stream *s = ctx;
    json_t *ev = json_loadb(data, len, 0, NULL);
    if (!ev) {
        s->failed = true;
        return client_say(-EPROTO, "the server sent an event that is not JSON: %.80s", data);
    }
    int r = 0;
    if (strcmp(event, "stdout") == 0) {
        r = write_output(ev, stdout);
    } else if (strcmp(event, "stderr") == 0) {
        r = write_output(ev, stderr);
    } else if (strcmp(event, "error") == 0) {
        const char *msg = json_string_value(json_object_get(ev, "error"));
        client_say(0, "%s", msg ? msg : "the exec failed");
        s->failed = true;
    } else if (strcmp(event, "exit") == 0) {
        s->exited = true;
        s->status = exit_status_of(ev);
    }
    json_decref(ev);
    return r;
}

static int on_body(void *ctx, const char *p, size_t n)
{
    struct stream *s = ctx;
    int r = sse_reader_feed(&s->rd, p, n);
    if (r == -EFBIG || r == -ENOMEM)
        client_say(0, "an event of the exec stream is too large");
    return r;
}

/* The request body of an exec. NULL on allocation failure. */
static json_t *exec_body(const char *script, const struct exec_opts *o)
{
    json_t *b = json_pack("{ss}", "script", script);
    if (!b)
        return NULL;
    int r = 0;
    if (o->cwd)
        r |= json_object_set_new(b, "cwd", json_string(o->cwd));
    if (o->timeout_ms)
        r |= json_object_set_new(b, "timeoutMs", json_integer(o->timeout_ms));
    if (o->env && json_object_size(o->env))
        r |= json_object_set(b, "env", o->env);
    if (r) {
        json_decref(b);
        return NULL;
    }
    return b;
}

/* --json: exec-sync, its answer printed as is. */
static int exec_sync(struct client *c, const char *id, json_t *body)
{
    char *path = cmd_sandbox_path(id, "/exec-sync");
    char *text = json_dumps(body, JSON_COMPACT);
    int rc = CLIENT_EXIT_FAILURE;
    struct client_reply rep = CLIENT_REPLY_INIT;
    if (!path || !text) {
        client_say(rc, "out of memory");
        goto out;
    }
    struct client_request req = {.method = "POST",
                                 .path = path,
                                 .content_type = "application/json",
                                 .body = text,
                                 .body_len = strlen(text)};
    rc = client_send(c, &req, &rep);
    if (rc != CLIENT_EXIT_OK)
        goto out;
    json_t *ans = NULL;
    if (rep.status == 200 || rep.status == 408)
        ans = json_loadb(buf_cstr(&rep.body), rep.body.len, 0, NULL);
    if (!ans) {
        rc = client_fail(&rep);
        goto out;
    }
    rc = client_print_json(ans);
    if (rc == CLIENT_EXIT_OK)
        rc = exit_status_of(ans);
    json_decref(ans);
out:
    buf_release(&rep.body);
    free(text);
    free(path);
    return rc;
}

/* Runs `script` in sandbox `id`, its output streamed; returns the exit status. */
static int exec_run(struct client *c, const char *id, const char *script, const struct exec_opts *o)
{
    json_t *body = exec_body(script, o);
    if (!body)
        return client_say(CLIENT_EXIT_FAILURE, "out of memory");
    if (c->json) {
        int rc = exec_sync(c, id, body);
        json_decref(body);
        return rc;
    }
    char *path = cmd_sandbox_path(id, "/exec");
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    struct stream s = {.status = CLIENT_EXIT_FAILURE};
    sse_reader_init(&s.rd, MAX_EVENT_BYTES, on_event, &s);
    struct client_reply rep = CLIENT_REPLY_INIT;
    int rc = CLIENT_EXIT_FAILURE;
    if (!path || !text) {
        client_say(rc, "out of memory");
        goto out;
    }
    struct client_request req = {.method = "POST",
                                 .path = path,
                                 .content_type = "application/json",
                                 .body = text,
                                 .body_len = strlen(text),
                                 .sink = on_body,
                                 .sink_ctx = &s};
    rc = client_send(c, &req, &rep);
    if (rc != CLIENT_EXIT_OK)
        goto out;
    if (rep.status / 100 != 2)
        rc = client_fail(&rep);
    else if (s.failed)
        rc = CLIENT_EXIT_FAILURE;
    else if (!s.exited)
        rc = client_say(CLIENT_EXIT_FAILURE, "the exec's stream ended before its exit event");
    else
        rc = s.status;
out:
    sse_reader_release(&s.rd);
    buf_release(&rep.body);
    free(text);
    free(path);
    return rc;
}

/* --- options --------------------------------------------------------------------------------- */

enum { OPT_CWD = OPT_FIRST_OWN, OPT_TIMEOUT, OPT_ENV };

static const struct option exec_options[] = {
    COMMON_OPTIONS,
    {"cwd", required_argument, NULL, OPT_CWD},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"env", required_argument, NULL, OPT_ENV},
    {NULL, 0, NULL, 0},
};

static int exec_option(void *ctx, int opt, const char *arg)
{
    struct exec_opts *o = ctx;
    if (opt == OPT_CWD) {
        o->cwd = arg;
    } else if (opt == OPT_TIMEOUT) {
        char *end;
        errno = 0;
        long v = strtol(arg, &end, 10);
        if (*arg == '\0' || *end != '\0' || errno || v < 1 || v > 300000)
            return cmd_usage(o->cmd, "--timeout takes milliseconds from 1 to 300000");
        o->timeout_ms = v;
    } else if (opt == OPT_ENV) {
        const char *eq = strchr(arg, '=');
        if (!eq || eq == arg)
            return cmd_usage(o->cmd, "--env takes NAME=VALUE, got %s", arg);
        char *name = strndup(arg, (size_t)(eq - arg));
        int r = name ? json_object_set_new(o->env, name, json_string(eq + 1)) : -1;
        free(name);
        if (r)
            return cmd_usage(o->cmd, "--env %s: the value must be UTF-8", arg);
    }
    return CLIENT_EXIT_OK;
}

/* The script of `sqlfs exec`: the words joined by spaces, or stdin for "-". NULL after a message
 * (*rc set). */
static char *script_of(int n, char **words, int *rc)
{
    struct buf b = BUF_INIT(MAX_SCRIPT_BYTES);
    int r = 0;
    if (n == 1 && strcmp(words[0], "-") == 0) {
        char chunk[65536];
        size_t got;
        while (r == 0 && (got = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
            r = buf_add(&b, chunk, got);
        if (r == 0 && ferror(stdin))
            r = -EIO;
    } else {
        for (int i = 0; i < n && r == 0; i++)
            r = buf_addf(&b, "%s%s", i ? " " : "", words[i]);
    }
    if (r < 0 || !b.data) {
        buf_release(&b);
        *rc = r < 0 ? client_say(CLIENT_EXIT_FAILURE, "cannot read the script: %s", strerror(-r))
                    : cmd_usage("exec", "the script is empty");
        return NULL;
    }
    return buf_detach(&b, NULL);
}

static const char exec_usage[] =
    "Usage: sqlfs exec ID [--cwd DIR] [--timeout MS] [--env NAME=VALUE]... -- SCRIPT...\n"
    "\n"
    "Runs SCRIPT (the words after --, joined by spaces; - reads it from stdin) in bash in the\n"
    "sandbox. Its stdout and stderr are written here as they are produced; the exit status is\n"
    "the script's (128+N when killed by signal N, 124 on timeout, 1 when the API fails).\n"
    "  --cwd DIR          where the script starts (default: the sandbox's cwd, which the\n"
    "                     last exec left)\n"
    "  --timeout MS       the script's time limit (default: the server's, 30 s)\n"
    "  --env NAME=VALUE   an environment variable (repeatable)\n"
    "  --url URL, --token T   as for every command (sqlfs --help)\n"
    "  --json             run through exec-sync and print its JSON answer\n";

int cmd_exec(int argc, char **argv)
{
    struct exec_opts o = {.env = json_object(), .cmd = "exec"};
    if (!o.env)
        return client_say(CLIENT_EXIT_FAILURE, "out of memory");
    struct common_opts co;
    int first = 0;
    int rc =
        cmd_parse("exec", exec_usage, argc, argv, ":h", exec_options, exec_option, &o, &co, &first);
    char *script = NULL;
    if (rc == CLIENT_EXIT_OK && argc - first < 2)
        rc = cmd_usage("exec", "expected a sandbox id and a script");
    if (rc == CLIENT_EXIT_OK)
        script = script_of(argc - first - 1, argv + first + 1, &rc);
    struct client c = {0};
    if (rc == CLIENT_EXIT_OK && script)
        rc = cmd_client(&c, &co);
    if (rc == CLIENT_EXIT_OK && script)
        rc = exec_run(&c, argv[first], script, &o);
    client_close(&c);
    free(script);
    json_decref(o.env);
    return rc < 0 ? CLIENT_EXIT_OK : rc;
}

/* --- shell ----------------------------------------------------------------------------------- */

static const char shell_usage[] =
    "Usage: sqlfs shell ID\n"
    "\n"
    "Reads lines from stdin and runs each as one exec in the sandbox, its output streamed. The\n"
    "sandbox keeps its cwd between execs (cd persists); variables do not. A non-zero exit\n"
    "status is shown as [exit N]. exit or end of input ends the shell. On a terminal the\n"
    "prompt shows the sandbox's cwd.\n"
    "  --url URL, --token T   as for every command (sqlfs --help)\n";

/* The prompt "sqlfs:CWD$ " on stderr, CWD read from the sandbox's record. */
static void prompt(struct client *c, const char *id)
{
    char *path = cmd_sandbox_path(id, "");
    json_t *rec = NULL;
    bool json = c->json;
    c->json = false;
    const char *cwd = NULL;
    if (path) {
        /* an error here is printed; the prompt goes on without a cwd */
        (void)client_json(c, "GET", path, NULL, &rec);
        cwd = json_string_value(json_object_get(rec, "cwd"));
    }
    c->json = json;
    fprintf(stderr, "sqlfs:%s$ ", cwd ? cwd : "?");
    fflush(stderr);
    json_decref(rec);
    free(path);
}

/* Whether the line holds only blanks, and whether it is the word exit. */
static bool is_blank(const char *s)
{
    return s[strspn(s, " \t\r\n")] == '\0';
}

static bool is_exit(const char *s)
{
    s += strspn(s, " \t");
    return strncmp(s, "exit", 4) == 0 && is_blank(s + 4);
}

int cmd_shell(int argc, char **argv)
{
    struct common_opts co;
    int first = 0;
    int rc =
        cmd_parse("shell", shell_usage, argc, argv, ":h", exec_options, NULL, NULL, &co, &first);
    if (rc < 0)
        return CLIENT_EXIT_OK;
    if (rc != CLIENT_EXIT_OK)
        return rc;
    if (argc - first != 1)
        return cmd_usage("shell", "expected one sandbox id");
    const char *id = argv[first];
    struct client c;
    rc = cmd_client(&c, &co);
    if (rc != CLIENT_EXIT_OK) {
        client_close(&c);
        return rc;
    }
    c.json = false; /* the shell's output is the scripts' */
    bool tty = isatty(STDIN_FILENO);
    struct exec_opts o = {.cmd = "shell"};
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
        if (tty)
            prompt(&c, id);
        if (getline(&line, &cap, stdin) < 0)
            break;
        if (is_exit(line))
            break;
        if (is_blank(line))
            continue;
        int st = exec_run(&c, id, line, &o);
        if (st != 0)
            fprintf(stderr, "[exit %d]\n", st);
    }
    if (tty)
        fputc('\n', stderr);
    free(line);
    client_close(&c);
    return CLIENT_EXIT_OK;
}
