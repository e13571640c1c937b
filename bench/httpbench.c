/*
 * httpbench — a small HTTP load generator for sqlfs benchmarks (libcurl, keep-alive).
 *
 * Sends N requests with C concurrent clients (threads, one keep-alive connection each) and prints
 * one JSON object: {"n","errors","statuses":{...},"p50_ms","p90_ms","p99_ms","mean_ms","max_ms",
 * "wall_s","rps"}. Request paths may name a sandbox id with "{id}": client i uses line
 * (i mod lines) of --ids FILE, so clients can work on distinct sandboxes.
 *
 *   httpbench --url http://127.0.0.1:8080 --token T --method POST --path /v1/sandboxes \
 *             [--body '{}'] [--content-type application/json] [--n 1000] [--concurrency 1]
 *             [--ids FILE] [--expect 201] [--pause-ms 0]
 *
 * --pause-ms: each client waits that long after every response before its next request (not
 * counted in the latency), like an agent that thinks between commands.
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct opts {
    const char *url, *token, *method, *path, *body, *ctype;
    long n, conc, expect, pause_ms;
    char **ids;
    long nids;
};

struct worker {
    const struct opts *o;
    long index;
    long count;     /* requests this worker sends */
    double *lat_ms; /* latencies */
    long errors;
    long statuses[600];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t discard(char *p, size_t s, size_t n, void *u)
{
    (void)p;
    (void)u;
    return s * n;
}

static char *expand(const char *tmpl, const char *id)
{
    const char *at = strstr(tmpl, "{id}");
    if (!at || !id)
        return strdup(tmpl);
    size_t len = strlen(tmpl) - 4 + strlen(id) + 1;
    char *out = malloc(len);
    if (!out)
        return NULL;
    snprintf(out, len, "%.*s%s%s", (int)(at - tmpl), tmpl, id, at + 4);
    return out;
}

static void *run_worker(void *arg)
{
    struct worker *w = arg;
    const struct opts *o = w->o;
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char auth[4096];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", o->token);
    h = curl_slist_append(h, auth);
    if (o->ctype) {
        char ct[256];
        snprintf(ct, sizeof(ct), "Content-Type: %s", o->ctype);
        h = curl_slist_append(h, ct);
    }
    h = curl_slist_append(h, "Expect:");
    const char *id = o->nids ? o->ids[w->index % o->nids] : NULL;
    char *path = expand(o->path, id);
    char full[8192];
    snprintf(full, sizeof(full), "%s%s", o->url, path);
    free(path);
    curl_easy_setopt(c, CURLOPT_URL, full);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, o->method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    if (o->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, o->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(o->body));
    }
    for (long i = 0; i < w->count; i++) {
        double t0 = now_s();
        CURLcode rc = curl_easy_perform(c);
        double dt = (now_s() - t0) * 1000.0;
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        w->lat_ms[i] = dt;
        if (rc != CURLE_OK || status <= 0 || status >= 600) {
            w->errors++;
            continue;
        }
        w->statuses[status]++;
        if (o->expect ? status != o->expect : status >= 400)
            w->errors++;
        if (o->pause_ms > 0) {
            struct timespec ts = {o->pause_ms / 1000, (o->pause_ms % 1000) * 1000000L};
            while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
        }
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, long n, double p)
{
    if (n == 0)
        return 0;
    long i = (long)(p * (double)(n - 1) + 0.5);
    return v[i];
}

static char **read_lines(const char *file, long *n)
{
    FILE *f = fopen(file, "re");
    if (!f)
        return NULL;
    char **v = NULL;
    long cap = 0;
    *n = 0;
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0])
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nv = realloc(v, (size_t)cap * sizeof(*v));
            if (!nv)
                break;
            v = nv;
        }
        v[(*n)++] = strdup(line);
    }
    fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    struct opts o = {.method = "GET", .path = "/healthz", .n = 100, .conc = 1};
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--url"))
            o.url = v;
        else if (!strcmp(k, "--token"))
            o.token = v;
        else if (!strcmp(k, "--method"))
            o.method = v;
        else if (!strcmp(k, "--path"))
            o.path = v;
        else if (!strcmp(k, "--body"))
            o.body = v;
        else if (!strcmp(k, "--content-type"))
            o.ctype = v;
        else if (!strcmp(k, "--n"))
            o.n = strtol(v, NULL, 10);
        else if (!strcmp(k, "--concurrency"))
            o.conc = strtol(v, NULL, 10);
        else if (!strcmp(k, "--expect"))
            o.expect = strtol(v, NULL, 10);
        else if (!strcmp(k, "--pause-ms"))
            o.pause_ms = strtol(v, NULL, 10);
        else if (!strcmp(k, "--ids"))
            o.ids = read_lines(v, &o.nids);
        else {
            fprintf(stderr, "httpbench: unknown option %s\n", k);
            return 2;
        }
    }
    if (!o.url || !o.token || o.n <= 0 || o.conc <= 0) {
        fprintf(stderr, "usage: httpbench --url U --token T [--method M] [--path P] [--body B] "
                        "[--content-type T] [--n N] [--concurrency C] [--ids FILE] "
                        "[--expect STATUS] [--pause-ms MS]\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct worker *ws = calloc((size_t)o.conc, sizeof(*ws));
    pthread_t *th = calloc((size_t)o.conc, sizeof(*th));
    for (long i = 0; i < o.conc; i++) {
        ws[i].o = &o;
        ws[i].index = i;
        ws[i].count = o.n / o.conc + (i < o.n % o.conc ? 1 : 0);
        ws[i].lat_ms = calloc((size_t)ws[i].count + 1, sizeof(double));
    }
    double t0 = now_s();
    for (long i = 0; i < o.conc; i++)
        pthread_create(&th[i], NULL, run_worker, &ws[i]);
    for (long i = 0; i < o.conc; i++)
        pthread_join(th[i], NULL);
    double wall = now_s() - t0;
    double *all = calloc((size_t)o.n, sizeof(double));
    long k = 0, errors = 0;
    long statuses[600] = {0};
    double sum = 0;
    for (long i = 0; i < o.conc; i++) {
        for (long j = 0; j < ws[i].count; j++) {
            all[k++] = ws[i].lat_ms[j];
            sum += ws[i].lat_ms[j];
        }
        errors += ws[i].errors;
        for (int s = 0; s < 600; s++)
            statuses[s] += ws[i].statuses[s];
    }
    qsort(all, (size_t)k, sizeof(double), cmp_double);
    printf("{\"n\":%ld,\"concurrency\":%ld,\"errors\":%ld,\"statuses\":{", k, o.conc, errors);
    int first = 1;
    for (int s = 0; s < 600; s++)
        if (statuses[s]) {
            printf("%s\"%d\":%ld", first ? "" : ",", s, statuses[s]);
            first = 0;
        }
    printf("},\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"mean_ms\":%.3f,\"max_ms\":%.3f,"
           "\"wall_s\":%.3f,\"rps\":%.1f}\n",
           pct(all, k, 0.5), pct(all, k, 0.9), pct(all, k, 0.99), k ? sum / (double)k : 0,
           k ? all[k - 1] : 0, wall, wall > 0 ? (double)k / wall : 0);
    curl_global_cleanup();
    return errors ? 1 : 0;
}
