/*
 * config — defaults, environment, then `serve` flags. Every numeric limit is described once in
 * the `limits` table (variable name, default, range, whether it is a byte count); its flag is the
 * variable name in kebab case, so the environment, the flags and the help text cannot drift apart.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "auth/jwt.h"
#include "auth/secret.h"
#include "egress/proxy.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/err.h"

#define KIB 1024LL
#define MIB (1024LL * KIB)
#define GIB (1024LL * MIB)
#define TIB (1024LL * GIB)
#define PIB (1024LL * TIB)

#define COUNT_MAX 2147483647LL          /* counts fit in an int for every consumer */
#define MS_MAX (7LL * 24 * 3600 * 1000) /* a week */
#define VALUE_SHOWN_MAX 40              /* bad values are quoted in messages up to this length */

/* How a default is derived: from the CPU count (config_init), or from another setting once
 * every setting is known (config_finish; -1 until then). */
enum computed {
    FIXED,
    CPUS_X2_PLUS_2,
    CPUS_X2,
    HALF_EXEC_CONCURRENCY,
    QUARTER_EXEC_QUEUE,
    EXEC_CONCURRENCY_PLUS_4,
    EXEC_CONCURRENCY_X2_PLUS_8
};

struct limit_spec {
    const char *env;        /* environment variable; the flag is its kebab-case form */
    size_t offset;          /* offsetof the int64_t field in struct config */
    int64_t def;            /* default (when computed == FIXED) */
    enum computed computed; /* how a CPU-dependent default is derived */
    int64_t min, max;       /* accepted range, inclusive */
    bool bytes;             /* a byte count: size suffixes allowed */
    const char *help;       /* one line for the help text */
};

#define F(field) offsetof(struct config, field)

static const struct limit_spec limits[] = {
    {"MAX_REQUEST_BODY_BYTES", F(max_request_body_bytes), 268435456, FIXED, 1, PIB, true,
     "largest JSON request body"},
    {"MAX_FILE_WRITE_BYTES", F(max_file_write_bytes), 1073741824, FIXED, 1, PIB, true,
     "largest file upload (PUT, streamed)"},
    {"MAX_BULK_WRITE_FILES", F(max_bulk_write_files), 1000, FIXED, 1, COUNT_MAX, false,
     "files in one bulk write"},
    {"MAX_INGEST_FILES", F(max_ingest_files), 100000, FIXED, 1, COUNT_MAX, false,
     "entries in one ingested archive"},
    {"MAX_INGEST_BYTES", F(max_ingest_bytes), 4294967296, FIXED, 1, PIB, true,
     "unpacked bytes of one ingested archive"},
    {"MAX_INGEST_PATH_BYTES", F(max_ingest_path_bytes), 33554432, FIXED, 1, PIB, true,
     "bytes of the entry paths and symlink targets of one ingested archive (held in memory)"},
    {"MAX_TREE_ENTRIES", F(max_tree_entries), 50000, FIXED, 1, COUNT_MAX, false,
     "entries in one tree listing"},
    {"MAX_EXEC_OUTPUT_BYTES", F(max_exec_output_bytes), 16777216, FIXED, 1, PIB, true,
     "stdout (and as much stderr) kept from one exec-sync or batch, all its scripts together"},
    {"REPLY_MEMORY_BYTES", F(reply_memory_bytes), 268435456, FIXED, 1, PIB, true,
     "exec output held in memory for exec-sync and batch replies, all requests together "
     "(then 503 EBUSY)"},
    {"SANDBOX_QUOTA_BYTES", F(sandbox_quota_bytes), 10737418240, FIXED, 1, PIB, true,
     "storage quota of one sandbox"},
    {"MAX_SANDBOXES_PER_OWNER", F(max_sandboxes_per_owner), 1000, FIXED, 0, COUNT_MAX, false,
     "sandboxes one owner (tenant, sub) may have, then 409 ESANDBOX_LIMIT (0 = no limit)"},
    {"HISTORY_MAX_COMMITS", F(history_max_commits), 1000, FIXED, 0, COUNT_MAX, false,
     "versions of a sandbox kept in its history, the current one included (1 = no history, "
     "0 = no limit)"},
    {"HISTORY_MAX_AGE", F(history_max_age), 2592000, FIXED, 0, 315360000, false,
     "seconds a version stays in a sandbox's history (0 = no limit)"},
    {"MAX_SNAPSHOTS", F(max_snapshots), 100, FIXED, 0, COUNT_MAX, false,
     "snapshots of one sandbox, then 409 (0 = no limit)"},
    {"EXEC_JOURNAL_OUTPUT_BYTES", F(exec_journal_output_bytes), 16384, FIXED, 0, 16 * MIB, true,
     "stdout (and as much stderr) of an exec kept in its journal record (GET execs/{execId})"},
    {"IDEMPOTENCY_MAX_BODY_BYTES", F(idempotency_max_body_bytes), 1048576, FIXED, 0, 64 * MIB, true,
     "largest answer kept for a retry with the same Idempotency-Key"},
    {"IDEMPOTENCY_MAX_STORED_BYTES", F(idempotency_max_stored_bytes), 67108864, FIXED, 0, PIB, true,
     "answers kept for Idempotency-Keys per sandbox, all together; the oldest go first (0 = no "
     "limit)"},
    {"EXEC_MEMORY_BYTES", F(exec_memory_bytes), 1073741824, FIXED, MIB, PIB, true,
     "memory limit of one exec"},
    {"EXEC_PIDS_MAX", F(exec_pids_max), 512, FIXED, 1, COUNT_MAX, false, "processes in one exec"},
    {"EXEC_CPU_PERCENT", F(exec_cpu_percent), 100, FIXED, 0, 100000, false,
     "CPU of one exec, in percent of one core (0 = no cap)"},
    {"EXEC_FILE_SIZE_BYTES", F(exec_file_size_bytes), 4294967296, FIXED, 1, PIB, true,
     "largest file an exec may write (RLIMIT_FSIZE)"},
    {"EXEC_CONCURRENCY", F(exec_concurrency), 0, CPUS_X2_PLUS_2, 1, 100000, false,
     "execs running at once"},
    {"EXEC_QUEUE", F(exec_queue), 256, FIXED, 0, 1000000, false,
     "execs waiting beyond that (then 503 EBUSY)"},
    {"EXEC_OWNER_CONCURRENCY", F(exec_owner_concurrency), 0, HALF_EXEC_CONCURRENCY, 1, 100000,
     false, "execs of one owner (tenant, sub) running at once"},
    {"EXEC_OWNER_QUEUE", F(exec_owner_queue), 0, QUARTER_EXEC_QUEUE, 0, 1000000, false,
     "execs of one owner waiting (then 503 EBUSY for that owner)"},
    {"EXEC_WARM_SANDBOXES", F(exec_warm_sandboxes), 64, FIXED, 1, 4096, false,
     "recently used sandboxes that keep their network namespace and unchanged upper"},
    {"EGRESS_CONNECTIONS_PER_EXEC", F(egress_connections_per_exec), 1024, FIXED, 1, COUNT_MAX,
     false, "connections one exec may ask the egress proxy for, then 429"},
    {"EGRESS_OPEN_PER_EXEC", F(egress_open_per_exec), 64, FIXED, 1, 100000, false,
     "egress connections one exec may have open at once, then 429"},
    {"EGRESS_BYTES_PER_EXEC", F(egress_bytes_per_exec), 4294967296, FIXED, 1, PIB, true,
     "bytes one exec may move through the egress proxy, both directions together"},
    {"EGRESS_IDLE_TIMEOUT_MS", F(egress_idle_timeout_ms), 60000, FIXED, 100, MS_MAX, false,
     "an egress connection with no byte either way for this long is closed, milliseconds"},
    {"EGRESS_CONNECT_TIMEOUT_MS", F(egress_connect_timeout_ms), 10000, FIXED, 100, MS_MAX, false,
     "time for an egress request's head, name and connection, milliseconds (then 504)"},
    {"EGRESS_MAX_OPEN", F(egress_max_open), 512, FIXED, 1, 100000, false,
     "egress connections open on the whole server, then 503"},
    {"EGRESS_LOG_MAX", F(egress_log_max), 1000, FIXED, 1, COUNT_MAX, false,
     "egress log records kept per sandbox (the newest)"},
    {"EGRESS_LOG_MAX_AGE", F(egress_log_max_age), 2592000, FIXED, 0, 315360000, false,
     "seconds an egress log record is kept (0 = no limit)"},
    {"BATCH_WORKERS", F(batch_workers), 0, CPUS_X2, 1, 10000, false,
     "parallelism of read-only batch execs"},
    {"PY_EXEC_PER_EXEC", F(py_exec_per_exec), 16, FIXED, 1, 4096, false,
     "warm py-exec children one exec may run at once (more start python3 cold)"},
    {"PY_EXEC_MAX", F(py_exec_max), 64, FIXED, 1, 4096, false,
     "warm py-exec children of the whole server at once (more start python3 cold)"},
    {"PY_EXEC_RATE", F(py_exec_rate), 100, FIXED, 1, 100000, false,
     "warm py-exec children one exec may start per second (more start python3 cold)"},
    {"PY_EXEC_RECYCLE", F(py_exec_recycle), 1000, FIXED, 1, COUNT_MAX, false,
     "warm py-exec calls after which a fresh interpreter replaces the zygote (also every 10 min)"},
    {"AUTH_RATE_LIMIT_MAX", F(auth_rate_limit_max), 5, FIXED, 0, COUNT_MAX, false,
     "failed auth requests per window per client IP, then 429 even for good ones (0 = no limit)"},
    {"AUTH_RATE_LIMIT_WINDOW_MS", F(auth_rate_limit_window_ms), 60000, FIXED, 1, MS_MAX, false,
     "window of the failed-auth limit, milliseconds"},
    {"AUTH_SUCCESS_RATE_LIMIT_MAX", F(auth_success_rate_limit_max), 600, FIXED, 0, COUNT_MAX, false,
     "tokens minted per window per client IP, then 429 (0 = no limit)"},
    {"AUTH_SUCCESS_RATE_LIMIT_WINDOW_MS", F(auth_success_rate_limit_window_ms), 60000, FIXED, 1,
     MS_MAX, false, "window of the minted-token limit, milliseconds"},
    {"LOCK_TIMEOUT_MS", F(lock_timeout_ms), 60000, FIXED, 0, MS_MAX, false,
     "wait for a busy sandbox before 503 ELOCKTIMEOUT, milliseconds"},
    {"CHECKOUT_BUDGET_BYTES", F(checkout_budget_bytes), 10737418240, FIXED, 1, PIB, true,
     "disk used by sandbox checkouts"},
    {"MAX_CONNECTIONS", F(max_connections), 2000, FIXED, 1, 1000000, false,
     "open HTTP connections"},
    {"MAX_CONNECTIONS_PER_IP", F(max_connections_per_ip), 64, FIXED, 0, 1000000, false,
     "open HTTP connections per client IP, more are closed at once (0 = no limit; behind a "
     "proxy every connection has the proxy's IP)"},
    {"REQUEST_TIMEOUT_S", F(request_timeout_s), 30, FIXED, 1, 86400, false,
     "seconds a client may stay silent while it sends a request (headers, body) or before its "
     "next request on a kept-alive connection, then the connection is closed"},
    {"CONNECTION_TIMEOUT_S", F(connection_timeout_s), 600, FIXED, 1, 86400, false,
     "seconds a client may stop reading while the server sends a response (a streamed exec "
     "sends a keep-alive every 15 s)"},
    {"DATABASE_POOL_SIZE", F(database_pool_size), 0, EXEC_CONCURRENCY_PLUS_4, 1, 10000, false,
     "PostgreSQL connections this server opens at most (each replica: keep the sum below the "
     "database's max_connections)"},
    {"DATABASE_LOCK_CONNECTIONS", F(database_lock_connections), 0, EXEC_CONCURRENCY_X2_PLUS_8, 1,
     10000, false,
     "PostgreSQL sessions this server holds sandbox locks on, at most: one per sandbox it is "
     "writing (or reading) at a time; more wait, then 503 EBUSY"},
    {"DATABASE_POOL_WAIT_MS", F(database_pool_wait_ms), 5000, FIXED, 0, MS_MAX, false,
     "wait for a free PostgreSQL connection before 503 EBUSY, milliseconds"},
};

#define NLIMITS (sizeof(limits) / sizeof(limits[0]))

/* Token settings: a duration (jwt_parse_expires syntax, "never" = -1) or a Unix time. */
static const struct token_spec {
    const char *env; /* the flag is its kebab-case form */
    size_t offset;   /* offsetof the int64_t field in struct config */
    bool duration;   /* else Unix seconds, 0 = none */
} token_settings[] = {
    {"TOKEN_DEFAULT_EXPIRES", F(token_default_expires_s), true},
    {"TOKEN_MAX_EXPIRES", F(token_max_expires_s), true},
    {"TOKENS_NOT_BEFORE", F(tokens_not_before_s), false},
};

#define NTOKEN_SETTINGS (sizeof(token_settings) / sizeof(token_settings[0]))
/* Latest TOKENS_NOT_BEFORE accepted (as jwt.c's upper bound on token times). */
#define UNIX_TIME_MAX 100000000000LL

static int64_t *limit_field(struct config *c, const struct limit_spec *l)
{
    return (int64_t *)((char *)c + l->offset);
}

static int64_t cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n;
}

static int64_t limit_default(const struct limit_spec *l, int64_t cpus)
{
    switch (l->computed) {
    case CPUS_X2_PLUS_2:
        return 2 * cpus + 2;
    case CPUS_X2:
        return 2 * cpus;
    case HALF_EXEC_CONCURRENCY:
    case QUARTER_EXEC_QUEUE:
    case EXEC_CONCURRENCY_PLUS_4:
    case EXEC_CONCURRENCY_X2_PLUS_8:
        return -1;
    case FIXED:
        break;
    }
    return l->def;
}

/* "MAX_FILE_WRITE_BYTES" → "max-file-write-bytes" into out (>= strlen + 1 bytes). */
static void kebab(const char *env, char *out, size_t n)
{
    size_t i = 0;
    for (; env[i] && i + 1 < n; i++)
        out[i] = env[i] == '_' ? '-' : (char)(env[i] | 0x20);
    out[i] = '\0';
}

/* PY_EXEC_PRELOAD: "json,re,os" — module names the zygote imports (it runs them as root, so
 * only names of the rootfs's modules, nothing else). */
#define PRELOAD_MAX 2000
static bool preload_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > PRELOAD_MAX || s[0] == ',' || s[n - 1] == ',' || strstr(s, ",,"))
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != ',')
            return false;
    return true;
}

static int set_str(char **field, const char *value)
{
    char *s = strdup(value);
    if (!s)
        return -ENOMEM;
    free(*field);
    *field = s;
    return 0;
}

/* ---- value parsers: 0 or -EINVAL, no messages (callers name the variable or flag) ---- */

static const struct {
    const char *suffix;
    int64_t mult;
} size_suffixes[] = {
    {"K", KIB}, {"KiB", KIB}, {"M", MIB}, {"MiB", MIB},
    {"G", GIB}, {"GiB", GIB}, {"T", TIB}, {"TiB", TIB},
};

/* A decimal integer in [min, max]; with `bytes`, optionally followed by a binary size suffix.
 * No sign, no spaces, no hex or octal. */
static int parse_number(const char *s, bool bytes, int64_t min, int64_t max, int64_t *ret)
{
    if (s[0] < '0' || s[0] > '9')
        return -EINVAL;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE)
        return -EINVAL;
    int64_t mult = 1;
    if (*end) {
        if (!bytes)
            return -EINVAL;
        size_t i = 0;
        while (i < sizeof(size_suffixes) / sizeof(size_suffixes[0]) &&
               strcmp(end, size_suffixes[i].suffix) != 0)
            i++;
        if (i == sizeof(size_suffixes) / sizeof(size_suffixes[0]))
            return -EINVAL;
        mult = size_suffixes[i].mult;
    }
    if (v > max / mult)
        return -EINVAL;
    v *= mult;
    if (v < min)
        return -EINVAL;
    *ret = v;
    return 0;
}

static int parse_bool(const char *s, bool *ret)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *ret = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *ret = false;
            return 0;
        }
    }
    return -EINVAL;
}

static int parse_port(const char *s, int *ret)
{
    int64_t v;
    int r = parse_number(s, false, 0, 65535, &v);
    if (r >= 0)
        *ret = (int)v;
    return r;
}

/*
 * HOST, HOST:PORT, [IPV6] or [IPV6]:PORT; a bare IPv6 address (two or more colons) is a host
 * without port. On success *ret_host is malloc'd and *ret_port is set, or left alone when the
 * value carries no port. -EINVAL or -ENOMEM.
 */
static int parse_listen(const char *s, char **ret_host, int *ret_port)
{
    const char *host = s, *port = NULL;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close)
            return -EINVAL;
        host = s + 1;
        hlen = (size_t)(close - host);
        if (close[1] == ':')
            port = close + 2;
        else if (close[1] != '\0')
            return -EINVAL;
    } else {
        const char *colon = strchr(s, ':');
        if (colon && !strchr(colon + 1, ':')) {
            hlen = (size_t)(colon - s);
            port = colon + 1;
        } else {
            hlen = strlen(s);
        }
    }
    if (hlen == 0 || hlen > 255)
        return -EINVAL;
    for (size_t i = 0; i < hlen; i++)
        if (host[i] == ' ' || host[i] == '/' || (unsigned char)host[i] < 0x20 ||
            (host[i] == ']' || host[i] == '['))
            return -EINVAL;
    int p = 0;
    if (port && parse_port(port, &p) < 0)
        return -EINVAL;
    char *h = strndup(host, hlen);
    if (!h)
        return -ENOMEM;
    *ret_host = h;
    if (port)
        *ret_port = p;
    return 0;
}

/* Shows a rejected value in a message: quoted, cut short. Values here are limits, ports and
 * paths from the operator's own command line or environment, never secrets. */
#define SHOWN(v)                                                                                   \
    (int)(strlen(v) > VALUE_SHOWN_MAX ? VALUE_SHOWN_MAX : strlen(v)), (v),                         \
        (strlen(v) > VALUE_SHOWN_MAX ? "..." : "")

static int bad_limit(const char *name, const struct limit_spec *l, const char *v)
{
    if (l->bytes)
        return err_set(-EINVAL,
                       "%s: expected a byte count from %lld to %lld (suffixes K, M, G, T or KiB, "
                       "MiB, GiB, TiB allowed), got \"%.*s%s\"",
                       name, (long long)l->min, (long long)l->max, SHOWN(v));
    return err_set(-EINVAL, "%s: expected an integer from %lld to %lld, got \"%.*s%s\"", name,
                   (long long)l->min, (long long)l->max, SHOWN(v));
}

static int set_token_setting(struct config *c, const struct token_spec *t, const char *name,
                             const char *v)
{
    int64_t *field = (int64_t *)((char *)c + t->offset);
    if (t->duration) {
        if (jwt_parse_expires(v, field) < 0)
            return err_set(-EINVAL,
                           "%s: expected a duration such as 3600s, 24h, 30d or 1y, or never, got "
                           "\"%.*s%s\"",
                           name, SHOWN(v));
        return 0;
    }
    if (parse_number(v, false, 0, UNIX_TIME_MAX, field) < 0)
        return err_set(-EINVAL,
                       "%s: expected a time in seconds since 1970 (date +%%s), or 0 for none, got "
                       "\"%.*s%s\"",
                       name, SHOWN(v));
    return 0;
}

/* The setters of the other kinds of option, shared by the environment and the flags: `name` is
 * the variable or the flag ("PORT", "--port") as the message names it. -EINVAL or -ENOMEM. */

static int set_listen(struct config *c, const char *name, const char *v)
{
    char *host = NULL;
    int r = parse_listen(v, &host, &c->port);
    if (r == -ENOMEM)
        return r;
    if (r < 0)
        return err_set(-EINVAL,
                       "%s: expected HOST, HOST:PORT or [IPV6]:PORT with a port from 0 to 65535, "
                       "got \"%.*s%s\"",
                       name, SHOWN(v));
    free(c->listen_host);
    c->listen_host = host;
    return 0;
}

static int set_port(struct config *c, const char *name, const char *v)
{
    if (parse_port(v, &c->port) < 0)
        return err_set(-EINVAL, "%s: expected a port number from 0 to 65535, got \"%.*s%s\"", name,
                       SHOWN(v));
    return 0;
}

static int set_limit(struct config *c, const struct limit_spec *l, const char *name, const char *v)
{
    if (parse_number(v, l->bytes, l->min, l->max, limit_field(c, l)) < 0)
        return bad_limit(name, l, v);
    return 0;
}

/* ---- public ---- */

int config_init(struct config *c)
{
    *c = (struct config){0};
    int64_t cpus = cpu_count();
    for (size_t i = 0; i < NLIMITS; i++)
        *limit_field(c, &limits[i]) = limit_default(&limits[i], cpus);
    c->port = 8080;
    c->py_exec_warm = true;
    if (jwt_parse_expires(CONFIG_TOKEN_DEFAULT_EXPIRES, &c->token_default_expires_s) < 0 ||
        jwt_parse_expires(CONFIG_TOKEN_MAX_EXPIRES, &c->token_max_expires_s) < 0)
        return -EINVAL;
    c->listen_host = strdup("127.0.0.1");
    c->data_dir = strdup("./data");
    if (!c->listen_host || !c->data_dir) {
        config_release(c);
        return -ENOMEM;
    }
    return 0;
}

void config_finish(struct config *c)
{
    if (c->exec_owner_concurrency < 0)
        c->exec_owner_concurrency = (c->exec_concurrency + 1) / 2;
    if (c->exec_owner_queue < 0)
        c->exec_owner_queue = (c->exec_queue + 3) / 4;
    if (c->database_pool_size < 0)
        c->database_pool_size = c->exec_concurrency + 4;
    if (c->database_lock_connections < 0)
        c->database_lock_connections = 2 * c->exec_concurrency + 8;
}

void config_release(struct config *c)
{
    free(c->listen_host);
    free(c->data_dir);
    free(c->database);
    free(c->auth_secret);
    free(c->auth_secret_previous);
    free(c->admin_secret);
    free(c->metrics_token);
    free(c->rootfs);
    free(c->egress_allow);
    free(c->egress_allow_max);
    free(c->egress_resolve);
    free(c->py_exec_preload);
    c->egress_allow = c->egress_allow_max = c->egress_resolve = c->py_exec_preload = NULL;
    c->listen_host = c->data_dir = c->database = c->auth_secret = c->auth_secret_previous =
        c->admin_secret = c->metrics_token = c->rootfs = NULL;
}

/* METRICS_TOKEN travels in an Authorization header and is compared as sent: printable ASCII
 * without spaces, and long enough not to be guessed under the auth failure limit. */
#define METRICS_TOKEN_MIN 16
static int metrics_token_check(const char *t)
{
    size_t n = strlen(t);
    for (size_t i = 0; i < n; i++)
        if (t[i] <= ' ' || t[i] > '~')
            return err_set(-EINVAL, "METRICS_TOKEN must be printable ASCII without spaces (it is "
                                    "sent in an Authorization header)");
    if (n < METRICS_TOKEN_MIN)
        return err_set(-EINVAL,
                       "METRICS_TOKEN is %zu characters, shorter than %d: make one with openssl "
                       "rand -hex 32",
                       n, METRICS_TOKEN_MIN);
    return 0;
}

int config_check(const struct config *c, int64_t now_s)
{
    int r;
    if ((c->auth_secret && (r = secret_check_length("AUTH_SECRET", strlen(c->auth_secret))) < 0) ||
        (c->auth_secret_previous &&
         (r = secret_check_length("AUTH_SECRET_PREVIOUS", strlen(c->auth_secret_previous))) < 0))
        return r;
    if (c->metrics_token && (r = metrics_token_check(c->metrics_token)) < 0)
        return r;
    int64_t def = c->token_default_expires_s, max = c->token_max_expires_s;
    if (max >= 0 && (def < 0 || def > max)) {
        char d[32], m[32];
        jwt_format_expires(def, d, sizeof(d));
        jwt_format_expires(max, m, sizeof(m));
        return err_set(-EINVAL,
                       "TOKEN_DEFAULT_EXPIRES (%s) is longer than TOKEN_MAX_EXPIRES (%s): lower "
                       "the one or raise the other",
                       d, m);
    }
    if (c->tokens_not_before_s > now_s)
        return err_set(-EINVAL,
                       "TOKENS_NOT_BEFORE (%lld) is in the future: every token minted until then "
                       "would be refused; use the current time (date +%%s)",
                       (long long)c->tokens_not_before_s);
    if (c->py_exec_preload && !preload_valid(c->py_exec_preload))
        return err_set(-EINVAL,
                       "PY_EXEC_PRELOAD: expected module names separated by commas (letters, "
                       "digits, _ and .; at most %d characters), got \"%.*s%s\"",
                       PRELOAD_MAX, SHOWN(c->py_exec_preload));
    struct egress_config ec = {
        .allow = c->egress_allow, .allow_max = c->egress_allow_max, .resolve = c->egress_resolve};
    if ((r = egress_config_check(&ec)) < 0)
        return r;
    if (store_database_check(c->database) < 0) {
        char why[256];
        snprintf(why, sizeof(why), "%s", err_message() ? err_message() : "invalid");
        return err_set(-EINVAL, "SQLFS_DATABASE (--database): %s", why);
    }
    return 0;
}

/* An environment variable, with an empty value counted as unset. */
static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static int env_path(const char *name, char **field)
{
    const char *v = env(name);
    return v ? set_str(field, v) : 0;
}

static int env_bool(const char *name, bool *field)
{
    const char *v = env(name);
    if (v && parse_bool(v, field) < 0)
        return err_set(-EINVAL, "%s: expected 1/0, true/false, yes/no or on/off, got \"%.*s%s\"",
                       name, SHOWN(v));
    return 0;
}

int config_from_env(struct config *c)
{
    const char *v;
    int r = 0;
    if (((v = env("PORT")) && (r = set_port(c, "PORT", v)) < 0) ||
        ((v = env("SQLFS_LISTEN")) && (r = set_listen(c, "SQLFS_LISTEN", v)) < 0))
        return r;
    if ((r = env_path("SQLFS_DATA", &c->data_dir)) < 0 ||
        (r = env_path("SQLFS_DATABASE", &c->database)) < 0 ||
        (r = env_path("SQLFS_ROOTFS", &c->rootfs)) < 0 ||
        (r = env_path("AUTH_SECRET", &c->auth_secret)) < 0 ||
        (r = env_path("AUTH_SECRET_PREVIOUS", &c->auth_secret_previous)) < 0 ||
        (r = env_path("ADMIN_SECRET", &c->admin_secret)) < 0 ||
        (r = env_path("METRICS_TOKEN", &c->metrics_token)) < 0 ||
        (r = env_path("EGRESS_ALLOW", &c->egress_allow)) < 0 ||
        (r = env_path("EGRESS_ALLOW_MAX", &c->egress_allow_max)) < 0 ||
        (r = env_path("EGRESS_RESOLVE", &c->egress_resolve)) < 0 ||
        (r = env_path("PY_EXEC_PRELOAD", &c->py_exec_preload)) < 0 ||
        (r = env_bool("TRUST_PROXY", &c->trust_proxy)) < 0 ||
        (r = env_bool("SQLFS_QUIET", &c->quiet)) < 0 ||
        (r = env_bool("PY_EXEC_WARM", &c->py_exec_warm)) < 0)
        return r;
    for (size_t i = 0; i < NTOKEN_SETTINGS; i++) {
        v = env(token_settings[i].env);
        if (v && (r = set_token_setting(c, &token_settings[i], token_settings[i].env, v)) < 0)
            return r;
    }
    for (size_t i = 0; i < NLIMITS; i++) {
        v = env(limits[i].env);
        if (v && (r = set_limit(c, &limits[i], limits[i].env, v)) < 0)
            return r;
    }
    return 0;
}

/* The option named by arg ("--name" or "--name=value"); *ret_value gets the inline value. */
static bool flag_is(const char *arg, const char *name, const char **ret_value)
{
    if (strncmp(arg, "--", 2) != 0)
        return false;
    size_t n = strlen(name);
    if (strncmp(arg + 2, name, n) != 0)
        return false;
    if (arg[2 + n] == '\0') {
        *ret_value = NULL;
        return true;
    }
    if (arg[2 + n] == '=') {
        *ret_value = arg + 3 + n;
        return true;
    }
    return false;
}

enum flag_kind {
    FLAG_NONE,
    FLAG_LISTEN,
    FLAG_PORT,
    FLAG_DATA,
    FLAG_DATABASE,
    FLAG_ROOTFS,
    FLAG_TOKEN,
    FLAG_LIMIT
};

/* What a value-taking flag sets: the kind of option and, for the tables, its entry. */
struct flag_target {
    enum flag_kind kind;
    const struct token_spec *token;
    const struct limit_spec *limit;
};

/* The option of the flag --<name>; FLAG_NONE when there is none that takes a value. */
static struct flag_target flag_target(const char *name)
{
    static const struct {
        const char *name;
        enum flag_kind kind;
    } fixed[] = {{"listen", FLAG_LISTEN},
                 {"port", FLAG_PORT},
                 {"data", FLAG_DATA},
                 {"database", FLAG_DATABASE},
                 {"rootfs", FLAG_ROOTFS}};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (strcmp(name, fixed[i].name) == 0)
            return (struct flag_target){.kind = fixed[i].kind};
    char flag[64];
    for (size_t i = 0; i < NTOKEN_SETTINGS; i++) {
        kebab(token_settings[i].env, flag, sizeof(flag));
        if (strcmp(name, flag) == 0)
            return (struct flag_target){.kind = FLAG_TOKEN, .token = &token_settings[i]};
    }
    for (size_t i = 0; i < NLIMITS; i++) {
        kebab(limits[i].env, flag, sizeof(flag));
        if (strcmp(name, flag) == 0)
            return (struct flag_target){.kind = FLAG_LIMIT, .limit = &limits[i]};
    }
    return (struct flag_target){.kind = FLAG_NONE};
}

/* Applies one value-taking flag; -EINVAL with a message naming it. */
static int apply_flag(struct config *c, const char *name, const char *v)
{
    struct flag_target t = flag_target(name);
    char shown[70];
    snprintf(shown, sizeof(shown), "--%s", name);
    switch (t.kind) {
    case FLAG_LISTEN:
        return set_listen(c, shown, v);
    case FLAG_PORT:
        return set_port(c, shown, v);
    case FLAG_DATA:
    case FLAG_ROOTFS:
        if (!*v)
            return err_set(-EINVAL, "%s: expected a directory, got an empty value", shown);
        return set_str(t.kind == FLAG_DATA ? &c->data_dir : &c->rootfs, v);
    case FLAG_DATABASE:
        return set_str(&c->database, v);
    case FLAG_TOKEN:
        return set_token_setting(c, t.token, shown, v);
    case FLAG_LIMIT:
        return set_limit(c, t.limit, shown, v);
    case FLAG_NONE:
        break;
    }
    return err_set(-EINVAL, "unknown option --%s (see sqlfs serve --help)", name);
}

int config_from_args(struct config *c, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *inline_value = NULL;
        if (strcmp(arg, "-h") == 0 || flag_is(arg, "help", &inline_value))
            return 1;
        if (flag_is(arg, "quiet", &inline_value) || flag_is(arg, "trust-proxy", &inline_value)) {
            if (inline_value)
                return err_set(-EINVAL, "%.*s takes no value", (int)(strchr(arg, '=') - arg), arg);
            if (arg[2] == 'q')
                c->quiet = true;
            else
                c->trust_proxy = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
            return err_set(-EINVAL, "unexpected argument \"%.*s%s\" (see sqlfs serve --help)",
                           SHOWN(arg));
        char name[64];
        const char *eq = strchr(arg + 2, '=');
        size_t nlen = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        if (nlen >= sizeof(name))
            return err_set(-EINVAL, "unknown option \"%.*s%s\" (see sqlfs serve --help)",
                           SHOWN(arg));
        memcpy(name, arg + 2, nlen);
        name[nlen] = '\0';
        if (flag_target(name).kind == FLAG_NONE)
            return err_set(-EINVAL, "unknown option --%s (see sqlfs serve --help)", name);
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (i + 1 >= argc)
                return err_set(-EINVAL, "--%s needs a value (see sqlfs serve --help)", name);
            v = argv[++i];
        }
        int r = apply_flag(c, name, v);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ---- help ---- */

static char *help_text;
static pthread_once_t help_once = PTHREAD_ONCE_INIT;

static void format_default(const struct limit_spec *l, char *out, size_t n)
{
    if (l->computed == CPUS_X2_PLUS_2) {
        snprintf(out, n, "2 x CPUs + 2");
        return;
    }
    if (l->computed == CPUS_X2) {
        snprintf(out, n, "2 x CPUs");
        return;
    }
    if (l->computed == HALF_EXEC_CONCURRENCY) {
        snprintf(out, n, "half of EXEC_CONCURRENCY, rounded up");
        return;
    }
    if (l->computed == QUARTER_EXEC_QUEUE) {
        snprintf(out, n, "a quarter of EXEC_QUEUE, rounded up");
        return;
    }
    if (l->computed == EXEC_CONCURRENCY_PLUS_4) {
        snprintf(out, n, "EXEC_CONCURRENCY + 4");
        return;
    }
    if (l->computed == EXEC_CONCURRENCY_X2_PLUS_8) {
        snprintf(out, n, "2 x EXEC_CONCURRENCY + 8");
        return;
    }
    static const struct {
        int64_t mult;
        const char *unit;
    } units[] = {{TIB, "TiB"}, {GIB, "GiB"}, {MIB, "MiB"}, {KIB, "KiB"}};
    if (l->bytes && l->def > 0)
        for (size_t i = 0; i < 4; i++)
            if (l->def % units[i].mult == 0) {
                snprintf(out, n, "%lld (%lld%s)", (long long)l->def,
                         (long long)(l->def / units[i].mult), units[i].unit);
                return;
            }
    snprintf(out, n, "%lld", (long long)l->def);
}

static void build_help(void)
{
    struct buf b = BUF_INIT(0);
    int r = buf_addstr(
        &b, "Usage: sqlfs serve [OPTIONS]\n"
            "\n"
            "Serves the sqlfs HTTP API. Every option has an environment variable; an "
            "option given\n"
            "on the command line wins over the variable. An empty variable counts as "
            "unset.\n"
            "Options take their value as --name VALUE or --name=VALUE.\n"
            "\n"
            "Server:\n"
            "  --listen HOST[:PORT]     SQLFS_LISTEN   address to listen on; IPv6 as "
            "[::1]:8080\n"
            "                                          (default 127.0.0.1)\n"
            "  --port N                 PORT           TCP port, 0 picks a free one "
            "(default 8080)\n"
            "  --data DIR               SQLFS_DATA     data directory: database and "
            "auth_secret\n"
            "                                          (default ./data)\n"
            "  --database URL           SQLFS_DATABASE where the state lives: sqlite: "
            "(default,\n"
            "                                          SQLite in the data directory) "
            "or a\n"
            "                                          postgres:// or postgresql:// "
            "URL (one\n"
            "                                          database can serve several "
            "servers; keep\n"
            "                                          a password in the variable or "
            "~/.pgpass)\n"
            "  --rootfs DIR             SQLFS_ROOTFS   root file system for execs "
            "(default: the\n"
            "                                          host's own /usr)\n"
            "  --trust-proxy            TRUST_PROXY    take the client IP from "
            "X-Forwarded-For for\n"
            "                                          rate limits (only behind a "
            "proxy you run)\n"
            "  --quiet                  SQLFS_QUIET    no per-request log lines\n"
            "  -h, --help                              this text\n"
            "\n"
            "Secrets (environment only, so they never appear in the process list):\n"
            "  AUTH_SECRET    HS256 signing key of bearer tokens and the "
            "X-Auth-Secret of\n"
            "                 POST /v1/auth/bootstrap; at least 32 bytes (make one "
            "with:\n"
            "                 openssl rand -hex 32). Unset: a random secret is "
            "generated once\n"
            "                 and kept in DATA/auth_secret (mode 0600).\n"
            "  AUTH_SECRET_PREVIOUS\n"
            "                 the signing secret before a rotation: tokens signed "
            "with it are\n"
            "                 still accepted (new ones are signed with AUTH_SECRET); "
            "remove it\n"
            "                 when the grace period ends.\n"
            "  ADMIN_SECRET   X-Admin-Secret of POST /v1/auth/admin and GET "
            "/v1/status. Unset:\n"
            "                 those routes answer 500 ADMIN_NOT_CONFIGURED.\n"
            "  METRICS_TOKEN  bearer token of GET /metrics (Prometheus text format): "
            "at least 16\n"
            "                 printable ASCII characters without spaces (openssl "
            "rand -hex 32).\n"
            "                 Unset: that route does not exist (404).\n"
            "\n"
            "Network egress (environment; rules as in docs/API.md \"Network\", "
            "comma-separated):\n"
            "  EGRESS_ALLOW      what a sandbox with network: true may reach "
            "(default: nothing)\n"
            "  EGRESS_ALLOW_MAX  what any sandbox may ever reach (default *: any "
            "public host);\n"
            "                    an address rule here also opens that private or "
            "loopback range\n"
            "  EGRESS_RESOLVE    host:address,... names the proxy resolves to "
            "these addresses\n"
            "                    (like curl --resolve), exempt from the private and "
            "loopback rule\n"
            "\n"
            "Warm Python (environment; docs/JAIL.md \"Warm Python\"):\n"
            "  PY_EXEC_WARM   on (default): py-exec forks a warm interpreter; off: "
            "it starts\n"
            "                 python3 cold (and says so on stderr)\n"
            "\n"
            "Tokens (a DURATION is N followed by s, m, h, d or y, e.g. 24h, 30d, "
            "1y, or never):\n"
            "  --token-default-expires DURATION\n"
            "      lifetime of a minted token whose request names none\n"
            "      env TOKEN_DEFAULT_EXPIRES, default " CONFIG_TOKEN_DEFAULT_EXPIRES "\n"
            "  --token-max-expires DURATION\n"
            "      longest lifetime a token may be minted with (never: no maximum, "
            "and never\n"
            "      may be asked for)\n"
            "      env TOKEN_MAX_EXPIRES, default " CONFIG_TOKEN_MAX_EXPIRES "\n"
            "  --tokens-not-before SECONDS\n"
            "      refuse every token issued before this time, in seconds since 1970 "
            "(date +%s):\n"
            "      revokes all tokens minted until then\n"
            "      env TOKENS_NOT_BEFORE, default 0 (none)\n"
            "\n"
            "Limits (byte counts accept the suffixes K, M, G, T or KiB, MiB, GiB, TiB, "
            "all powers\n"
            "of 1024, e.g. 512M or 4GiB; TRUST_PROXY, SQLFS_QUIET and PY_EXEC_WARM take 1/0, "
            "true/false,\n"
            "yes/no or on/off):\n");
    char flag[64], def[64];
    for (size_t i = 0; r >= 0 && i < NLIMITS; i++) {
        kebab(limits[i].env, flag, sizeof(flag));
        format_default(&limits[i], def, sizeof(def));
        r = buf_addf(&b, "  --%s %s\n      %s\n      env %s, default %s\n", flag,
                     limits[i].bytes ? "BYTES" : "N", limits[i].help, limits[i].env, def);
    }
    if (r < 0) {
        buf_release(&b);
        return;
    }
    help_text = buf_detach(&b, NULL);
}

const char *config_serve_help(void)
{
    pthread_once(&help_once, build_help);
    return help_text ? help_text
                     : "Usage: sqlfs serve [OPTIONS] (help text unavailable: out of "
                       "memory)\n";
}
