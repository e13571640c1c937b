/*
 * metrics — the counters of GET /metrics and their exposition (see metrics.h), and the route.
 *
 * Requests count into one series per (route, method): two per route of the table (its method,
 * and HEAD for a GET route's HEAD requests; the second is unused for other routes) and one per
 * method of other_methods for requests that matched no route. A series holds its duration
 * histogram and a small table of statuses, each slot claimed once by compare-and-swap and never
 * given back, so that the slots in use are always a prefix and a status has at most one slot.
 *
 * Every label value is a string of the server's own (a route pattern, a method of a fixed
 * list, a wire code of the error table, a phase name): none holds a quote, a backslash or a
 * newline, so none needs escaping.
 */
#include "api/metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/http.h"
#include "api/routes.h"
#include "egress/proxy.h"
#include "exec/engine.h"
#include "store/store.h"
#include "util/err.h"
#include "util/histogram.h"
#include "util/timeutil.h"

#define MS 1000000LL /* nanoseconds */

/* Request durations, seconds: 1 ms to 30 s. */
static const int64_t http_bounds[] = {1 * MS,    5 * MS,     10 * MS,   25 * MS,   50 * MS,
                                      100 * MS,  250 * MS,   500 * MS,  1000 * MS, 2500 * MS,
                                      5000 * MS, 10000 * MS, 30000 * MS};
/* Exec phases: the same, then up to the longest exec there is (timeoutMs at most 300 s). */
static const int64_t phase_bounds[] = {
    1 * MS,    5 * MS,    10 * MS,   25 * MS,    50 * MS,    100 * MS,   250 * MS,    500 * MS,
    1000 * MS, 2500 * MS, 5000 * MS, 10000 * MS, 30000 * MS, 60000 * MS, 120000 * MS, 300000 * MS};
#define NBOUNDS(a) (sizeof(a) / sizeof((a)[0]))

/* The methods of route "other" beside "other" itself (anything else a client sends). */
static const char *const other_methods[] = {"GET",   "HEAD",   "POST",    "PUT",
                                            "PATCH", "DELETE", "OPTIONS", "other"};
#define OTHER_METHODS (sizeof(other_methods) / sizeof(other_methods[0]))

/* Status slots of a series; the last counts every status beyond the others (status "other"). */
#define STATUS_SLOTS 24
#define KEY_FREE 0u
#define KEY_OTHER 0xFFFFu

static const char *const phase_names[] = {"lock", "queue", "prepare", "spawn", "run", "commit"};
#define PHASES (sizeof(phase_names) / sizeof(phase_names[0]))

static const char *const limit_names[METRICS_LIMITS] = {
    [METRICS_LIMIT_AUTH_FAILURES] = "auth_failures",
    [METRICS_LIMIT_AUTH_TOKENS] = "auth_tokens",
};

struct status_slot {
    atomic_uint key;         /* KEY_FREE, status + 1, or KEY_OTHER */
    atomic_uint_least64_t n; /* requests answered with it */
};

struct series {
    const char *route;  /* the route's pattern, or "other" */
    const char *method; /* the method label */
    struct status_slot statuses[STATUS_SLOTS];
    struct histogram duration;
};

struct metrics {
    struct series *series; /* 2 per route of the table, then OTHER_METHODS */
    size_t nseries;
    struct histogram phases[PHASES];
    const char **codes;            /* the distinct wire codes of the error table */
    atomic_uint_least64_t *errors; /* error answers, per entry of codes */
    size_t ncodes;
    atomic_uint_least64_t limited[METRICS_LIMITS];
    pthread_mutex_t sandboxes_mu; /* guards the two below; held during the count query */
    int64_t sandboxes;            /* the last count read; -1 while none */
    int64_t sandboxes_at_ms;      /* when it was read or last tried (monotonic) */
};

/* The distinct wire codes of the error table into m->codes. */
static int collect_codes(struct metrics *m)
{
    size_t n = 0;
    while (err_info_at(n))
        n++;
    m->codes = calloc(n, sizeof(*m->codes));
    m->errors = calloc(n, sizeof(*m->errors));
    if (!m->codes || !m->errors)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *code = err_info_at(i)->code;
        size_t k = 0;
        while (k < m->ncodes && strcmp(m->codes[k], code) != 0)
            k++;
        if (k == m->ncodes) {
            m->codes[m->ncodes] = code;
            atomic_init(&m->errors[m->ncodes], 0);
            m->ncodes++;
        }
    }
    return 0;
}

static void series_init(struct series *s, const char *route, const char *method)
{
    s->route = route;
    s->method = method;
    for (size_t i = 0; i < STATUS_SLOTS; i++) {
        atomic_init(&s->statuses[i].key, KEY_FREE);
        atomic_init(&s->statuses[i].n, 0);
    }
    histogram_init(&s->duration, http_bounds, NBOUNDS(http_bounds));
}

int metrics_new(struct metrics **ret)
{
    struct metrics *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->nseries = 2 * http_routes_count + OTHER_METHODS;
    m->series = calloc(m->nseries, sizeof(*m->series));
    int r = m->series ? collect_codes(m) : -ENOMEM;
    if (r == 0)
        r = -pthread_mutex_init(&m->sandboxes_mu, NULL);
    if (r < 0) {
        free(m->series);
        free(m->codes);
        free(m->errors);
        free(m);
        return r;
    }
    for (size_t i = 0; i < http_routes_count; i++) {
        series_init(&m->series[2 * i], http_routes[i].pattern, http_routes[i].method);
        series_init(&m->series[2 * i + 1], http_routes[i].pattern, "HEAD");
    }
    for (size_t k = 0; k < OTHER_METHODS; k++)
        series_init(&m->series[2 * http_routes_count + k], "other", other_methods[k]);
    for (size_t p = 0; p < PHASES; p++)
        histogram_init(&m->phases[p], phase_bounds, NBOUNDS(phase_bounds));
    for (size_t l = 0; l < METRICS_LIMITS; l++)
        atomic_init(&m->limited[l], 0);
    m->sandboxes = -1;
    *ret = m;
    return 0;
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->sandboxes_mu);
    free(m->series);
    free(m->codes);
    free(m->errors);
    free(m);
}

/* ---- counting ---- */

static struct series *series_of(struct metrics *m, const struct route *route, const char *method)
{
    if (!method)
        method = "";
    if (route) {
        size_t i = (size_t)(route - http_routes);
        bool head = strcmp(method, "HEAD") == 0 && strcmp(route->method, "HEAD") != 0;
        return &m->series[2 * i + (head ? 1 : 0)];
    }
    size_t k = 0;
    while (k < OTHER_METHODS - 1 && strcmp(method, other_methods[k]) != 0)
        k++;
    return &m->series[2 * http_routes_count + k];
}

/* The counter of `status` in s, claiming a free slot for it the first time. */
static atomic_uint_least64_t *status_counter(struct series *s, unsigned status)
{
    unsigned key = status + 1;
    for (size_t i = 0; i < STATUS_SLOTS - 1; i++) {
        unsigned cur = atomic_load_explicit(&s->statuses[i].key, memory_order_acquire);
        if (cur == KEY_FREE) {
            unsigned expected = KEY_FREE;
            if (atomic_compare_exchange_strong(&s->statuses[i].key, &expected, key))
                return &s->statuses[i].n;
            cur = expected; /* another thread claimed it: maybe for this status */
        }
        if (cur == key)
            return &s->statuses[i].n;
    }
    struct status_slot *last = &s->statuses[STATUS_SLOTS - 1];
    atomic_store_explicit(&last->key, KEY_OTHER, memory_order_release);
    return &last->n;
}

void metrics_request(struct metrics *m, const struct route *route, const char *method,
                     unsigned status, int64_t duration_ns, const struct err_info *error)
{
    if (!m)
        return;
    struct series *s = series_of(m, route, method);
    if (status > 999)
        status = 999; /* libmicrohttpd sends three digits at most */
    atomic_fetch_add_explicit(status_counter(s, status), 1, memory_order_relaxed);
    histogram_observe(&s->duration, duration_ns);
    if (!error)
        return;
    for (size_t k = 0; k < m->ncodes; k++)
        if (strcmp(m->codes[k], error->code) == 0) {
            atomic_fetch_add_explicit(&m->errors[k], 1, memory_order_relaxed);
            return;
        }
}

void metrics_exec_timing(struct metrics *m, int64_t lock_ns, const struct exec_timing *t)
{
    if (!m)
        return;
    const int64_t ns[PHASES] = {lock_ns,     t->queue_ns, t->prepare_ns,
                                t->spawn_ns, t->run_ns,   t->commit_ns};
    for (size_t p = 0; p < PHASES; p++)
        if (ns[p] > 0)
            histogram_observe(&m->phases[p], ns[p]);
}

void metrics_rate_limited(struct metrics *m, enum metrics_limit limit)
{
    if (m && limit < METRICS_LIMITS)
        atomic_fetch_add_explicit(&m->limited[limit], 1, memory_order_relaxed);
}

/* ---- exposition ---- */

static uint64_t load(const atomic_uint_least64_t *a)
{
    return atomic_load_explicit(a, memory_order_relaxed);
}

/* A duration in seconds as a sample value or an "le" label. */
static void seconds(char *out, size_t n, int64_t ns)
{
    snprintf(out, n, "%.9g", (double)ns / 1e9);
}

static int family(struct buf *b, const char *name, const char *type, const char *help)
{
    return buf_addf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The samples of one histogram: labels is "" or `a="x",b="y"`. */
static int histogram_samples(struct buf *b, const char *name, const char *labels,
                             const struct histogram *h)
{
    struct histogram_view v;
    histogram_read(h, &v);
    const char *sep = *labels ? "," : "";
    char le[32];
    int r = 0;
    for (size_t i = 0; r == 0 && i <= v.nbounds; i++) {
        if (i < v.nbounds)
            seconds(le, sizeof(le), h->bounds_ns[i]);
        else
            snprintf(le, sizeof(le), "+Inf");
        r = buf_addf(b, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels, sep, le,
                     (unsigned long long)v.cumulative[i]);
    }
    char sum[32];
    seconds(sum, sizeof(sum), v.sum_ns);
    if (r == 0 && *labels)
        r = buf_addf(b, "%s_sum{%s} %s\n%s_count{%s} %llu\n", name, labels, sum, name, labels,
                     (unsigned long long)v.count);
    else if (r == 0)
        r = buf_addf(b, "%s_sum %s\n%s_count %llu\n", name, sum, name, (unsigned long long)v.count);
    return r;
}

/* A series is shown once a request counted into it. */
static bool series_used(const struct series *s)
{
    return atomic_load_explicit(&s->statuses[0].key, memory_order_acquire) != KEY_FREE;
}

static int render_requests(struct metrics *m, struct buf *b)
{
    int r = family(b, "sqlfs_http_requests_total", "counter",
                   "HTTP requests completed, by route pattern, method and status (none: no "
                   "answer was set).");
    for (size_t i = 0; r == 0 && i < m->nseries; i++) {
        struct series *s = &m->series[i];
        for (size_t k = 0; r == 0 && k < STATUS_SLOTS; k++) {
            unsigned key = atomic_load_explicit(&s->statuses[k].key, memory_order_acquire);
            if (key == KEY_FREE)
                continue;
            char status[16];
            if (key == KEY_OTHER)
                snprintf(status, sizeof(status), "other");
            else if (key == 1)
                snprintf(status, sizeof(status), "none");
            else
                snprintf(status, sizeof(status), "%u", key - 1);
            r = buf_addf(b,
                         "sqlfs_http_requests_total{route=\"%s\",method=\"%s\",status=\"%s\"} "
                         "%llu\n",
                         s->route, s->method, status, (unsigned long long)load(&s->statuses[k].n));
        }
    }
    if (r == 0)
        r = family(b, "sqlfs_http_request_duration_seconds", "histogram",
                   "Time from a request's first byte to its completion (its answer sent), by "
                   "route pattern and method.");
    for (size_t i = 0; r == 0 && i < m->nseries; i++) {
        struct series *s = &m->series[i];
        if (!series_used(s))
            continue;
        char labels[256];
        snprintf(labels, sizeof(labels), "route=\"%s\",method=\"%s\"", s->route, s->method);
        r = histogram_samples(b, "sqlfs_http_request_duration_seconds", labels, &s->duration);
    }
    return r;
}

static int render_counters(struct metrics *m, struct buf *b)
{
    int r = family(b, "sqlfs_exec_phase_seconds", "histogram",
                   "Phases of exec-sync and streamed execs (as in Server-Timing): lock (the "
                   "sandbox's), queue (an exec slot), prepare, spawn, run, commit.");
    for (size_t p = 0; r == 0 && p < PHASES; p++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "phase=\"%s\"", phase_names[p]);
        r = histogram_samples(b, "sqlfs_exec_phase_seconds", labels, &m->phases[p]);
    }
    if (r == 0)
        r = family(b, "sqlfs_errors_total", "counter",
                   "Error answers (4xx and 5xx with a JSON error body), by API error code.");
    for (size_t k = 0; r == 0 && k < m->ncodes; k++)
        r = buf_addf(b, "sqlfs_errors_total{code=\"%s\"} %llu\n", m->codes[k],
                     (unsigned long long)load(&m->errors[k]));
    if (r == 0)
        r = family(b, "sqlfs_rate_limited_total", "counter",
                   "Requests refused with 429 by an auth rate limit: auth_failures "
                   "(AUTH_RATE_LIMIT_*), auth_tokens (AUTH_SUCCESS_RATE_LIMIT_*).");
    for (size_t l = 0; r == 0 && l < METRICS_LIMITS; l++)
        r = buf_addf(b, "sqlfs_rate_limited_total{limit=\"%s\"} %llu\n", limit_names[l],
                     (unsigned long long)load(&m->limited[l]));
    return r;
}

/* The sandbox count, read from the store when the last read is older than
 * METRICS_SANDBOXES_MAX_AGE_MS; -1 while no read succeeded. A failed read keeps the last count
 * and is retried after the same delay. */
static int64_t sandboxes(struct metrics *m, struct store *st)
{
    pthread_mutex_lock(&m->sandboxes_mu);
    int64_t now = time_mono_ms();
    if (m->sandboxes < 0 || now - m->sandboxes_at_ms >= METRICS_SANDBOXES_MAX_AGE_MS) {
        int64_t n = 0;
        if (store_sandbox_count(st, &n) == 0)
            m->sandboxes = n;
        else
            err_clear();
        m->sandboxes_at_ms = now;
    }
    int64_t v = m->sandboxes;
    pthread_mutex_unlock(&m->sandboxes_mu);
    return v;
}

/* One gauge; a negative value (unknown) gives no sample. */
static int gauge(struct buf *b, const char *name, const char *help, int64_t v)
{
    int r = family(b, name, "gauge", help);
    if (r == 0 && v >= 0)
        r = buf_addf(b, "%s %lld\n", name, (long long)v);
    return r;
}

static int render_gauges(struct metrics *m, struct app *app, struct buf *b)
{
    int64_t running = 0, queued = 0;
    exec_engine_load(app->exec, &running, &queued);
    struct egress_stats eg = {0};
    if (app->egress)
        egress_stats(app->egress, &eg);
    int r =
        gauge(b, "sqlfs_execs_running", "Execs holding an exec slot (EXEC_CONCURRENCY).", running);
    if (r == 0)
        r = gauge(b, "sqlfs_execs_queued", "Execs waiting for an exec slot (EXEC_QUEUE).", queued);
    if (r == 0)
        r = gauge(b, "sqlfs_sandboxes",
                  "Sandboxes in the store, every owner's (read at most every 5 s).",
                  sandboxes(m, app->store));
    if (r == 0)
        r = gauge(b, "sqlfs_store_memory_bytes",
                  "Memory the store engine holds (SQLite's caches; no sample on PostgreSQL).",
                  store_memory_bytes(app->store));
    if (r == 0)
        r = gauge(b, "sqlfs_egress_connections_open",
                  "Connections of sandboxes open through the egress proxy.", eg.open);
    if (r == 0)
        r = family(b, "sqlfs_egress_connections_total", "counter",
                   "Connections asked of the egress proxy, by its decision.");
    if (r == 0)
        r = buf_addf(b,
                     "sqlfs_egress_connections_total{result=\"allowed\"} %lld\n"
                     "sqlfs_egress_connections_total{result=\"denied\"} %lld\n",
                     (long long)eg.served, (long long)eg.denied);
    return r;
}

int metrics_render(struct metrics *m, struct app *app, struct buf *out)
{
    int r = render_requests(m, out);
    if (r == 0)
        r = render_counters(m, out);
    if (r == 0)
        r = render_gauges(m, app, out);
    return r;
}

/* ---- GET /metrics ---- */

bool route_metrics_available(const struct app *app)
{
    return app->cfg->metrics_token != NULL;
}

int route_metrics(struct request *req)
{
    int r = route_metrics_gate(req);
    if (r != 0)
        return r < 0 ? r : 0;
    struct buf b = BUF_INIT(0);
    r = metrics_render(req->app->metrics, req->app, &b);
    size_t len = 0;
    char *text = r == 0 ? buf_detach(&b, &len) : NULL;
    buf_release(&b);
    if (!text)
        return -ENOMEM;
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return -ENOMEM;
    }
    r = http_reply_response(req, 200, resp);
    if (r < 0)
        return r;
    http_add_header(req, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    http_add_header(req, "Cache-Control", "no-store");
    return 0;
}
