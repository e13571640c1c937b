/*
 * proxy — the egress proxy (proxy.h): one event-loop thread over every session's listener and
 * connection (epoll, level-triggered, nothing blocks), a few resolver threads (getaddrinfo
 * blocks), and the sessions' log records, written by the thread that closes the session.
 *
 * A connection goes HEAD (reading the request head) → RESOLVING (a name not pinned) →
 * CONNECTING (one address after another) → RELAY, or to ANSWER (a refusal or an error being
 * written to the client, then closed). Only the loop thread touches sessions' connections;
 * other threads talk to it through `mu` and the wake eventfd.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "egress/proxy.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"
#include "util/timeutil.h"

/* Names are resolved by RESOLVER_THREADS threads (getaddrinfo blocks, for as long as a name
 * server takes, and cannot be cancelled). Fairness between sandboxes: a thread takes the oldest
 * name of a sandbox none of the threads is resolving for, so one sandbox holds at most one
 * thread whatever its name servers do; a sandbox has at most RESOLVE_QUEUE_PER_SANDBOX names
 * waiting, and all sandboxes RESOLVE_QUEUE_MAX (then 502). */
#define RESOLVER_THREADS 8
#define RESOLVE_QUEUE_MAX 256
#define RESOLVE_QUEUE_PER_SANDBOX 16
#define ADDRS_MAX 16
#define OWN_ADDRS_MAX 64
#define OWN_REFRESH_NS (30LL * 1000000000LL)
#define LOOP_TICK_MS 250
#define ACCEPT_BURST 64

enum tag_kind { TAG_WAKE, TAG_LISTEN, TAG_CLIENT, TAG_UPSTREAM };

struct tag {
    enum tag_kind kind;
    void *p;
};

enum conn_state { C_HEAD, C_RESOLVING, C_CONNECTING, C_RELAY, C_ANSWER };

/* One direction of a relayed connection: bytes read from one side, not yet written to the
 * other. What the proxy itself put there (an answer, the request head it sends on, bytes that
 * came with the head) is in `data`; what is relayed afterwards moves through a pipe with
 * splice(2), from socket to socket without being copied to the server's memory, and is written
 * only once `data` is. */
struct relay {
    char *data;
    size_t off, len;
    int pipe[2];  /* -1 until relaying starts */
    size_t piped; /* bytes in the pipe */
    bool full;    /* the pipe took no more though bytes were waiting: the source is not read
                   * until some of the pipe is written on (a pipe of small socket buffers fills
                   * its slots before its bytes) */
    bool eof;     /* its source ended */
    bool shut;    /* its destination was told (shutdown SHUT_WR) */
};

/* Bytes a relay's pipe holds at most (its capacity is asked to be this much). */
#define RELAY_PIPE_BYTES (1024 * 1024)

struct conn {
    struct egress_session *s; /* NULL once its session is gone (dead, the resolver holds it) */
    struct conn *prev, *next; /* in its session's list */
    struct conn *done_next;   /* in the resolver's done list */
    int cfd, ufd;
    struct tag ctag, utag;
    uint32_t cmask, umask; /* the events each descriptor is registered for (0: none) */
    enum conn_state state;
    bool resolving, dead; /* dead: closed while the resolver held it */
    bool closed;          /* closed: events of this batch still naming it are skipped */
    struct conn *grave;   /* in the loop's list of connections to free after the batch */
    char *head;           /* the request head as read (EGRESS_HEAD_MAX) */
    size_t head_len;
    size_t head_end; /* bytes of head_len that are the head; the rest came after it */
    bool is_connect;
    char host[EGRESS_HOST_MAX + 1];
    int port;
    bool literal, pinned;
    char *request; /* plain HTTP: the head to send on */
    size_t request_len;
    struct sockaddr_storage addrs[ADDRS_MAX];
    size_t naddrs, next_addr;
    int resolve_error;     /* getaddrinfo's error, 0 */
    struct relay up, down; /* client → host, host → client */
    int64_t started_ms, started_ns, deadline_ns, last_ns;
    /* the log record */
    bool allowed, recorded_denial;
    char rule[EGRESS_RULE_MAX_LEN + 64];
    char address[INET6_ADDRSTRLEN];
    char error[160];
    int64_t bytes_up, bytes_down;
};

struct egress_session {
    struct egress *eg;
    int listen_fd;
    struct tag ltag;
    struct egress_policy policy;
    char *sandbox_id, *exec_id;
    struct conn *conns;
    int64_t open, asked, bytes;
    bool limit_logged; /* a refusal for a limit is recorded once */
    struct egress_rec *recs;
    size_t nrecs, caprecs;
    bool closed;                /* the loop has closed everything of it (guarded by eg->mu) */
    struct egress_session *cmd; /* in the open, close or acknowledge queue */
};

struct resolve_job {
    struct conn *c;
    char sandbox[64]; /* whose name it is (the fairness key) */
    struct resolve_job *next;
};

struct egress {
    struct egress_limits lim;
    struct egress_rules allow, ceiling;
    struct egress_pins pins;
    struct store *store;
    int epfd, wakefd;
    struct tag waketag;
    pthread_t loop;
    bool loop_started;
    pthread_mutex_t mu;
    pthread_cond_t closed_cond;
    struct egress_session *open_queue;  /* sessions to add to `sessions` (mu) */
    struct egress_session *close_queue; /* sessions to close (mu) */
    bool stopping;                      /* mu */
    /* resolver */
    pthread_mutex_t rmu;
    pthread_cond_t rcond;
    struct resolve_job *jobs, *jobs_tail;
    size_t njobs;
    struct conn *done; /* resolved, for the loop (rmu) */
    bool rstop;
    pthread_t resolvers[RESOLVER_THREADS];
    size_t nresolvers;
    char resolving_for[RESOLVER_THREADS][64]; /* each thread's sandbox now, "" idle (rmu) */
    /* loop-thread state */
    struct conn *graveyard;            /* closed in this batch of events, freed after it */
    struct egress_session *closed_ack; /* torn down in this batch, acknowledged after it */
    struct egress_session **sessions;
    size_t nsessions, capsessions;
    struct sockaddr_storage own[OWN_ADDRS_MAX];
    size_t nown;
    int64_t own_ns;
    /* figures (mu) */
    int64_t live_sessions, open, served, denied;
};

/* ---- small helpers ---- */

static void wake(struct egress *eg);

/* Why the connection failed or ended early (the first reason given is kept). */
static void set_err(struct conn *c, const char *why)
{
    if (!c->error[0])
        snprintf(c->error, sizeof(c->error), "%s", why);
}

static void epoll_set(struct egress *eg, int fd, struct tag *t, uint32_t *cur, uint32_t want)
{
    if (fd < 0 || *cur == want)
        return;
    /* Nothing wanted: not registered at all, so that a hang-up (always reported) cannot wake
     * the loop again and again for a descriptor nothing can be done with now. */
    struct epoll_event ev = {.events = want, .data.ptr = t};
    int op = *cur == 0 ? EPOLL_CTL_ADD : want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (epoll_ctl(eg->epfd, op, fd, &ev) < 0 && op != EPOLL_CTL_DEL)
        log_msg("error", "egress: epoll_ctl: %s", strerror(errno));
    *cur = want;
}

static void refresh_own(struct egress *eg)
{
    int64_t now = time_mono_ns();
    if (eg->own_ns && now - eg->own_ns < OWN_REFRESH_NS)
        return;
    eg->own_ns = now;
    struct ifaddrs *ifs;
    if (getifaddrs(&ifs) < 0)
        return;
    eg->nown = 0;
    for (struct ifaddrs *i = ifs; i && eg->nown < OWN_ADDRS_MAX; i = i->ifa_next) {
        if (!i->ifa_addr)
            continue;
        int f = i->ifa_addr->sa_family;
        if (f == AF_INET)
            memcpy(&eg->own[eg->nown++], i->ifa_addr, sizeof(struct sockaddr_in));
        else if (f == AF_INET6)
            memcpy(&eg->own[eg->nown++], i->ifa_addr, sizeof(struct sockaddr_in6));
    }
    freeifaddrs(ifs);
}

static bool is_own(struct egress *eg, const struct sockaddr *a)
{
    for (size_t i = 0; i < eg->nown; i++)
        if (egress_address_equal(a, (struct sockaddr *)&eg->own[i]))
            return true;
    return false;
}

static void address_text(const struct sockaddr_storage *ss, char *out, size_t n)
{
    const void *p = ss->ss_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
    if (!inet_ntop(ss->ss_family, p, out, (socklen_t)n))
        snprintf(out, n, "?");
}

/* ---- the log ---- */

static void record_add(struct egress_session *s, const struct egress_rec *r)
{
    if (s->nrecs == s->caprecs) {
        size_t cap = s->caprecs ? 2 * s->caprecs : 16;
        struct egress_rec *nv = realloc(s->recs, cap * sizeof(*nv));
        if (!nv)
            return;
        s->recs = nv;
        s->caprecs = cap;
    }
    struct egress_rec *d = &s->recs[s->nrecs];
    *d = *r;
    d->exec_id = NULL;
    d->host = strdup(r->host ? r->host : "");
    d->address = r->address && r->address[0] ? strdup(r->address) : NULL;
    d->rule = strdup(r->rule ? r->rule : "");
    d->error = r->error && r->error[0] ? strdup(r->error) : NULL;
    if (!d->host || !d->rule) {
        egress_rec_release(d);
        return;
    }
    s->nrecs++;
}

static void conn_record(struct conn *c)
{
    if (!c->s || !c->host[0])
        return; /* nothing was asked for */
    struct egress_rec r = {
        .at_ms = c->started_ms,
        .host = c->host,
        .port = c->port,
        .address = c->address,
        .allowed = c->allowed,
        .rule = c->rule,
        .error = c->error,
        .bytes_up = c->bytes_up,
        .bytes_down = c->bytes_down,
        .duration_ms = (time_mono_ns() - c->started_ns) / 1000000,
    };
    record_add(c->s, &r);
    pthread_mutex_lock(&c->s->eg->mu);
    if (c->allowed)
        c->s->eg->served++;
    else
        c->s->eg->denied++;
    pthread_mutex_unlock(&c->s->eg->mu);
}

/* ---- connections ---- */

static void relay_release(struct relay *r)
{
    for (int i = 0; i < 2; i++)
        if (r->pipe[i] >= 0)
            close(r->pipe[i]);
    r->pipe[0] = r->pipe[1] = -1;
    free(r->data);
    r->data = NULL;
}

static void conn_free(struct egress *eg, struct conn *c)
{
    relay_release(&c->up);
    relay_release(&c->down);
    free(c->head);
    free(c->request);
    free(c);
    pthread_mutex_lock(&eg->mu);
    eg->open--;
    pthread_mutex_unlock(&eg->mu);
}

static void conn_bury(struct egress *eg, struct conn *c)
{
    c->grave = eg->graveyard;
    eg->graveyard = c;
}

/* Takes job j (after prev, NULL: the first) out of the resolver's queue (rmu held). */
static void job_unlink(struct egress *eg, struct resolve_job *prev, struct resolve_job *j)
{
    if (prev)
        prev->next = j->next;
    else
        eg->jobs = j->next;
    if (eg->jobs_tail == j)
        eg->jobs_tail = prev;
    eg->njobs--;
}

/* Takes c's name out of the resolver's queue when no resolver thread has taken it yet, so
 * that no thread is spent on a connection that no longer waits for its answer (loop thread). A
 * name a thread already resolves stays with it: c comes back through conn_resolved. */
static void resolve_cancel(struct egress *eg, struct conn *c)
{
    if (!c->resolving)
        return;
    pthread_mutex_lock(&eg->rmu);
    struct resolve_job *prev = NULL;
    for (struct resolve_job *j = eg->jobs; j; prev = j, j = j->next) {
        if (j->c != c)
            continue;
        job_unlink(eg, prev, j);
        free(j);
        c->resolving = false;
        break;
    }
    pthread_mutex_unlock(&eg->rmu);
}

/* Closes everything of c and records it; c is freed after this batch of events, or when the
 * resolver gives it back. */
static void conn_close(struct egress *eg, struct conn *c)
{
    if (c->closed)
        return;
    c->closed = true;
    resolve_cancel(eg, c);
    epoll_set(eg, c->cfd, &c->ctag, &c->cmask, 0);
    epoll_set(eg, c->ufd, &c->utag, &c->umask, 0);
    if (c->cfd >= 0)
        close(c->cfd);
    if (c->ufd >= 0)
        close(c->ufd);
    c->cfd = c->ufd = -1;
    struct egress_session *s = c->s;
    if (s) {
        conn_record(c);
        if (c->prev)
            c->prev->next = c->next;
        else
            s->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        s->open--;
        c->s = NULL;
    }
    if (c->resolving)
        c->dead = true;
    else
        conn_bury(eg, c);
}

/* The relay holds bytes not yet written on. */
static bool relay_pending(const struct relay *r)
{
    return r->len > r->off || r->piped > 0;
}

/* The relay can take more from its source. */
static bool relay_room(const struct relay *r)
{
    return !r->eof && r->pipe[0] >= 0 && !r->full && r->piped < RELAY_PIPE_BYTES;
}

/* The registrations a connection's state and buffers call for. */
static void conn_arm(struct egress *eg, struct conn *c)
{
    uint32_t cw = 0, uw = 0;
    switch (c->state) {
    case C_HEAD:
        cw = EPOLLIN;
        break;
    case C_RESOLVING:
        cw = 0;
        break;
    case C_CONNECTING:
        uw = EPOLLOUT;
        break;
    case C_ANSWER: /* the answer goes out; what the client still sends is read and dropped */
        cw = (c->down.len > c->down.off ? EPOLLOUT : 0) | (c->up.eof ? 0 : EPOLLIN);
        break;
    case C_RELAY:
        if (relay_room(&c->up))
            cw |= EPOLLIN;
        if (relay_pending(&c->down))
            cw |= EPOLLOUT;
        if (relay_room(&c->down))
            uw |= EPOLLIN;
        if (relay_pending(&c->up))
            uw |= EPOLLOUT;
        break;
    }
    epoll_set(eg, c->cfd, &c->ctag, &c->cmask, cw);
    epoll_set(eg, c->ufd, &c->utag, &c->umask, uw);
}

/* Sends the client an answer of ours and closes once it is written. */
static void conn_answer(struct egress *eg, struct conn *c, int status, const char *reason,
                        const char *body)
{
    resolve_cancel(eg, c);
    if (c->ufd >= 0) {
        epoll_set(eg, c->ufd, &c->utag, &c->umask, 0);
        close(c->ufd);
        c->ufd = -1;
    }
    if (!c->down.data && !(c->down.data = malloc(EGRESS_RELAY_BUFFER))) {
        conn_close(eg, c);
        return;
    }
    int n = snprintf(c->down.data, EGRESS_RELAY_BUFFER,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     status, reason, strlen(body), body);
    c->down.off = 0;
    c->down.len = n < 0                              ? 0
                  : (size_t)n >= EGRESS_RELAY_BUFFER ? EGRESS_RELAY_BUFFER - 1
                                                     : (size_t)n;
    c->state = C_ANSWER;
    c->deadline_ns = time_mono_ns() + eg->lim.idle_timeout_ms * 1000000LL;
    conn_arm(eg, c);
}

static void conn_deny(struct egress *eg, struct conn *c, const struct egress_verdict *v)
{
    char body[EGRESS_HOST_MAX + sizeof(v->rule) + 128];
    c->allowed = false;
    snprintf(c->rule, sizeof(c->rule), "%s", v->rule);
    snprintf(body, sizeof(body),
             "sqlfs egress: %s is not allowed by this sandbox's network policy (%s)\n", c->host,
             v->rule);
    conn_answer(eg, c, 403, "Forbidden", body);
}

/* An allowed connection that cannot be made: 502 or 504, with why. */
static void conn_fail(struct egress *eg, struct conn *c, int status, const char *why)
{
    char body[EGRESS_HOST_MAX + 256];
    set_err(c, why);
    snprintf(body, sizeof(body), "sqlfs egress: cannot reach %s port %d: %s\n", c->host, c->port,
             why);
    conn_answer(eg, c, status, status == 504 ? "Gateway Timeout" : "Bad Gateway", body);
}

static void conn_bad_request(struct egress *eg, struct conn *c, int status, const char *why)
{
    char body[256];
    snprintf(body, sizeof(body), "sqlfs egress: %s\n", why);
    conn_answer(eg, c, status, status == 431 ? "Request Header Fields Too Large" : "Bad Request",
                body);
}

/* ---- the request head ---- */

struct head_parse {
    struct conn *c;
    const char *url;
    size_t url_len;
    bool complete;
    /* header lines, as offsets into the head */
    struct {
        const char *field, *value;
        size_t field_len, value_len;
    } h[100];
    size_t nh;
    bool in_value;
    bool too_many;
};

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct head_parse *hp = p->data;
    if (!hp->url)
        hp->url = at;
    hp->url_len = (size_t)(at + len - hp->url);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct head_parse *hp = p->data;
    if (hp->in_value || hp->nh == 0) {
        if (hp->nh == sizeof(hp->h) / sizeof(hp->h[0])) {
            hp->too_many = true;
            return 1;
        }
        hp->h[hp->nh].field = at;
        hp->h[hp->nh].field_len = 0;
        hp->h[hp->nh].value = NULL;
        hp->h[hp->nh].value_len = 0;
        hp->nh++;
        hp->in_value = false;
    }
    hp->h[hp->nh - 1].field_len = (size_t)(at + len - hp->h[hp->nh - 1].field);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct head_parse *hp = p->data;
    if (hp->nh == 0)
        return 1;
    if (!hp->in_value) {
        hp->h[hp->nh - 1].value = at;
        hp->in_value = true;
    }
    hp->h[hp->nh - 1].value_len = (size_t)(at + len - hp->h[hp->nh - 1].value);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct head_parse *hp = p->data;
    hp->complete = true;
    return 1; /* no body is parsed: what follows the head is relayed as it comes */
}

static bool header_is(const char *f, size_t n, const char *name)
{
    return strlen(name) == n && strncasecmp(f, name, n) == 0;
}

/* Headers meant for this proxy, or for one hop only: not sent on. */
static bool hop_header(const char *f, size_t n)
{
    return header_is(f, n, "proxy-connection") || header_is(f, n, "proxy-authorization") ||
           header_is(f, n, "connection") || header_is(f, n, "keep-alive") ||
           header_is(f, n, "te") || header_is(f, n, "upgrade");
}

/* The head to send on for a plain HTTP request: origin-form, Connection: close. */
static int build_request(struct conn *c, struct head_parse *hp, const http_parser *p,
                         const struct http_parser_url *u)
{
    struct buf b = BUF_INIT(0);
    const char *path = "/";
    size_t path_len = 1;
    if (u->field_set & (1 << UF_PATH)) {
        path = hp->url + u->field_data[UF_PATH].off;
        path_len = u->field_data[UF_PATH].len;
        if (u->field_set & (1 << UF_QUERY))
            path_len = (size_t)(u->field_data[UF_QUERY].off + u->field_data[UF_QUERY].len -
                                u->field_data[UF_PATH].off);
    } else if (u->field_set & (1 << UF_QUERY)) {
        path = hp->url + u->field_data[UF_QUERY].off - 1;
        path_len = (size_t)u->field_data[UF_QUERY].len + 1;
    }
    int r = buf_addf(&b, "%s %.*s HTTP/%d.%d\r\n", http_method_str(p->method), (int)path_len, path,
                     p->http_major, p->http_minor);
    /* The host is the one the URL names, whatever the client's Host header said (RFC 9112
     * 3.2.2): the header a host sees names what the policy allowed. */
    for (size_t i = 0; r == 0 && i < hp->nh; i++) {
        if (hop_header(hp->h[i].field, hp->h[i].field_len) ||
            header_is(hp->h[i].field, hp->h[i].field_len, "host"))
            continue;
        r = buf_addf(&b, "%.*s: %.*s\r\n", (int)hp->h[i].field_len, hp->h[i].field,
                     (int)hp->h[i].value_len, hp->h[i].value ? hp->h[i].value : "");
    }
    if (r == 0) {
        bool v6 = strchr(c->host, ':') != NULL;
        r = c->port == 80 ? buf_addf(&b, "Host: %s%s%s\r\n", v6 ? "[" : "", c->host, v6 ? "]" : "")
                          : buf_addf(&b, "Host: %s%s%s:%d\r\n", v6 ? "[" : "", c->host,
                                     v6 ? "]" : "", c->port);
    }
    if (r == 0)
        r = buf_addstr(&b, "Connection: close\r\n\r\n");
    if (r < 0) {
        buf_release(&b);
        return r;
    }
    c->request = buf_detach(&b, &c->request_len);
    return 0;
}

static void conn_decide(struct egress *eg, struct conn *c);

/* The head is complete (head_end bytes): what is asked for, then the decision. */
static void conn_parse_head(struct egress *eg, struct conn *c)
{
    http_parser_settings settings;
    http_parser_settings_init(&settings);
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_headers_complete = on_headers_complete;
    http_parser p;
    http_parser_init(&p, HTTP_REQUEST);
    struct head_parse *hp = calloc(1, sizeof(*hp));
    if (!hp) {
        conn_close(eg, c);
        return;
    }
    hp->c = c;
    p.data = hp;
    http_parser_execute(&p, &settings, c->head, c->head_end);
    enum http_errno he = HTTP_PARSER_ERRNO(&p);
    if (hp->too_many || !hp->complete || !hp->url ||
        (he != HPE_OK && he != HPE_CB_headers_complete)) {
        free(hp);
        conn_bad_request(eg, c, 400, "not an HTTP request this proxy understands");
        return;
    }
    c->is_connect = p.method == HTTP_CONNECT;
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(hp->url, hp->url_len, c->is_connect, &u) != 0) {
        free(hp);
        conn_bad_request(eg, c, 400, "the request's target is not a URL");
        return;
    }
    if (!c->is_connect) {
        const char *schema = hp->url + u.field_data[UF_SCHEMA].off;
        if (!(u.field_set & (1 << UF_SCHEMA)) || !(u.field_set & (1 << UF_HOST))) {
            free(hp);
            conn_bad_request(eg, c, 400,
                             "this is sqlfs's egress proxy: ask for absolute URLs "
                             "(http://host/path) or CONNECT host:port");
            return;
        }
        if (u.field_data[UF_SCHEMA].len != 4 || strncasecmp(schema, "http", 4) != 0) {
            free(hp);
            conn_bad_request(eg, c, 400,
                             "only http:// is proxied as a request; other schemes go through "
                             "CONNECT host:port");
            return;
        }
    }
    size_t hl = u.field_data[UF_HOST].len;
    if (!(u.field_set & (1 << UF_HOST)) || hl == 0 || hl > EGRESS_HOST_MAX) {
        free(hp);
        conn_bad_request(eg, c, 400, "the request names no host");
        return;
    }
    memcpy(c->host, hp->url + u.field_data[UF_HOST].off, hl);
    c->host[hl] = '\0';
    c->port = (u.field_set & (1 << UF_PORT)) ? u.port : 80;
    if (c->port <= 0) {
        free(hp);
        conn_bad_request(eg, c, 400, "the port must be a number from 1 to 65535");
        return;
    }
    struct sockaddr_storage lit;
    if (egress_parse_address(c->host, &lit) == 0) {
        c->literal = true;
        c->addrs[0] = lit;
        c->naddrs = 1;
    } else if (egress_host_normalise(c->host) < 0) {
        free(hp);
        conn_bad_request(eg, c, 400, "the host is not a valid host name");
        return;
    }
    int r = c->is_connect ? 0 : build_request(c, hp, &p, &u);
    free(hp);
    if (r < 0) {
        conn_close(eg, c);
        return;
    }
    conn_decide(eg, c);
}

/* ---- resolving and connecting ---- */

static void conn_connect_next(struct egress *eg, struct conn *c);

/* Every address of the request is known: each must be allowed, then connect. */
static void conn_check_addresses(struct egress *eg, struct conn *c)
{
    refresh_own(eg);
    struct egress_verdict v = {0}, first = {0};
    for (size_t i = 0; i < c->naddrs; i++) {
        const struct sockaddr *a = (struct sockaddr *)&c->addrs[i];
        if (!egress_decide_address(&c->s->policy, c->literal ? NULL : c->host, c->port, a,
                                   c->pinned, is_own(eg, a), &v)) {
            address_text(&c->addrs[i], c->address, sizeof(c->address));
            conn_deny(eg, c, &v);
            return;
        }
        if (i == 0)
            first = v;
    }
    c->allowed = true;
    snprintf(c->rule, sizeof(c->rule), "%s", first.rule);
    c->next_addr = 0;
    c->state = C_CONNECTING;
    conn_connect_next(eg, c);
}

static void conn_decide(struct egress *eg, struct conn *c)
{
    struct egress_session *s = c->s;
    struct egress_verdict v = {0};
    if (c->literal) {
        conn_check_addresses(eg, c);
        return;
    }
    if (!egress_decide_name(&s->policy, c->host, c->port, &v)) {
        conn_deny(eg, c, &v);
        return;
    }
    for (size_t i = 0; i < eg->pins.n && c->naddrs < ADDRS_MAX; i++)
        if (strcmp(eg->pins.v[i].host, c->host) == 0)
            c->addrs[c->naddrs++] = eg->pins.v[i].addr;
    if (c->naddrs > 0) {
        c->pinned = true;
        conn_check_addresses(eg, c);
        return;
    }
    struct resolve_job *j = malloc(sizeof(*j));
    if (j)
        snprintf(j->sandbox, sizeof(j->sandbox), "%s", s->sandbox_id);
    pthread_mutex_lock(&eg->rmu);
    size_t mine = 0;
    for (struct resolve_job *q = eg->jobs; j && q; q = q->next)
        mine += strcmp(q->sandbox, j->sandbox) == 0;
    bool full = eg->njobs >= RESOLVE_QUEUE_MAX || mine >= RESOLVE_QUEUE_PER_SANDBOX;
    if (j && !full) {
        j->c = c;
        j->next = NULL;
        if (eg->jobs_tail)
            eg->jobs_tail->next = j;
        else
            eg->jobs = j;
        eg->jobs_tail = j;
        eg->njobs++;
        c->resolving = true;
        pthread_cond_signal(&eg->rcond);
    }
    pthread_mutex_unlock(&eg->rmu);
    if (!c->resolving) {
        free(j);
        conn_fail(eg, c, 502,
                  mine >= RESOLVE_QUEUE_PER_SANDBOX
                      ? "this sandbox has 16 names waiting to be resolved; try again"
                      : "the server's resolver is busy; try again");
        return;
    }
    c->state = C_RESOLVING;
    conn_arm(eg, c);
}

/* The resolver's answer for c (loop thread). */
static void conn_resolved(struct egress *eg, struct conn *c)
{
    c->resolving = false;
    if (c->dead) {
        conn_bury(eg, c);
        return;
    }
    if (c->state != C_RESOLVING) /* answered meanwhile (it timed out) */
        return;
    if (c->naddrs == 0) {
        conn_fail(eg, c, 502,
                  c->resolve_error ? gai_strerror(c->resolve_error) : "the name has no address");
        return;
    }
    conn_check_addresses(eg, c);
}

static void conn_connect_next(struct egress *eg, struct conn *c)
{
    while (c->next_addr < c->naddrs) {
        struct sockaddr_storage ss = c->addrs[c->next_addr++];
        address_text(&ss, c->address, sizeof(c->address));
        socklen_t len;
        if (ss.ss_family == AF_INET) {
            ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)c->port);
            len = sizeof(struct sockaddr_in);
        } else {
            ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)c->port);
            len = sizeof(struct sockaddr_in6);
        }
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            set_err(c, strerror(errno));
            continue;
        }
        if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS) {
            c->error[0] = '\0';
            set_err(c, strerror(errno));
            close(fd);
            continue;
        }
        c->ufd = fd;
        c->umask = 0;
        conn_arm(eg, c);
        return;
    }
    char why[160];
    snprintf(why, sizeof(why), "%s", c->error[0] ? c->error : "no address could be connected to");
    c->error[0] = '\0';
    conn_fail(eg, c, 502, why);
}

/* The oldest job of a sandbox no thread resolves for now, taken out of the queue; NULL when
 * every waiting name's sandbox has a thread (rmu held). */
static struct resolve_job *take_fair_job(struct egress *eg)
{
    struct resolve_job *prev = NULL;
    for (struct resolve_job *j = eg->jobs; j; prev = j, j = j->next) {
        bool busy = false;
        for (size_t t = 0; t < RESOLVER_THREADS && !busy; t++)
            busy = strcmp(eg->resolving_for[t], j->sandbox) == 0;
        if (busy)
            continue;
        job_unlink(eg, prev, j);
        return j;
    }
    return NULL;
}

struct resolver_arg {
    struct egress *eg;
    size_t index;
};

static void *resolver_main(void *arg)
{
    struct egress *eg = ((struct resolver_arg *)arg)->eg;
    size_t me = ((struct resolver_arg *)arg)->index;
    free(arg);
    pthread_mutex_lock(&eg->rmu);
    for (;;) {
        struct resolve_job *j = NULL;
        while (!eg->rstop && !(j = take_fair_job(eg)))
            pthread_cond_wait(&eg->rcond, &eg->rmu);
        if (eg->rstop) {
            if (j) { /* back in the queue, for egress_free */
                j->next = eg->jobs;
                eg->jobs = j;
                if (!eg->jobs_tail)
                    eg->jobs_tail = j;
                eg->njobs++;
            }
            break;
        }
        snprintf(eg->resolving_for[me], sizeof(eg->resolving_for[me]), "%s", j->sandbox);
        struct conn *c = j->c;
        free(j);
        pthread_mutex_unlock(&eg->rmu);
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        struct addrinfo *res = NULL;
        /* c->host is not written by the loop while c is resolving */
        int e = getaddrinfo(c->host, NULL, &hints, &res);
        c->resolve_error = e;
        c->naddrs = 0;
        for (struct addrinfo *ai = e == 0 ? res : NULL; ai && c->naddrs < ADDRS_MAX;
             ai = ai->ai_next) {
            if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
                continue;
            bool seen = false;
            for (size_t i = 0; i < c->naddrs && !seen; i++)
                seen = egress_address_equal((struct sockaddr *)&c->addrs[i], ai->ai_addr);
            if (!seen) {
                memset(&c->addrs[c->naddrs], 0, sizeof(c->addrs[0]));
                memcpy(&c->addrs[c->naddrs++], ai->ai_addr, ai->ai_addrlen);
            }
        }
        if (res)
            freeaddrinfo(res);
        pthread_mutex_lock(&eg->rmu);
        eg->resolving_for[me][0] = '\0';
        /* a name of this sandbox may have waited for this thread */
        pthread_cond_broadcast(&eg->rcond);
        c->done_next = eg->done;
        eg->done = c;
        uint64_t one = 1;
        if (write(eg->wakefd, &one, sizeof(one)) < 0) {
            /* the counter is full: the loop wakes anyway */
        }
    }
    pthread_mutex_unlock(&eg->rmu);
    return NULL;
}

/* ---- relaying ---- */

static bool session_over_bytes(struct egress_session *s)
{
    return s->eg->lim.bytes_per_exec > 0 && s->bytes >= s->eg->lim.bytes_per_exec;
}

/* Moves what fd has into r's pipe; false when the connection is to close. */
static bool relay_read(struct conn *c, int fd, struct relay *r, int64_t *count)
{
    if (!relay_room(r))
        return true;
    ssize_t n = splice(fd, NULL, r->pipe[1], NULL, RELAY_PIPE_BYTES - r->piped,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
        r->piped += (size_t)n;
        *count += n;
        c->s->bytes += n;
        c->last_ns = time_mono_ns();
        if (session_over_bytes(c->s)) {
            set_err(c, "the exec reached EGRESS_BYTES_PER_EXEC");
            return false;
        }
        return true;
    }
    if (n == 0) {
        r->eof = true;
        return true;
    }
    if (errno == EAGAIN && r->piped > 0)
        r->full = true;
    if (errno == EAGAIN || errno == EINTR)
        return true;
    set_err(c, strerror(errno));
    return false;
}

/* Writes what r holds to fd, its own bytes first, then its pipe's; once its source has ended
 * and all is written, shuts fd's sending side. False when the connection is to close. */
static bool relay_write(struct conn *c, int fd, struct relay *r)
{
    if (r->len > r->off) {
        ssize_t n = send(fd, r->data + r->off, r->len - r->off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return true;
            set_err(c, strerror(errno));
            return false;
        }
        r->off += (size_t)n;
        c->last_ns = time_mono_ns();
        if (r->off < r->len)
            return true;
        r->off = r->len = 0;
    }
    if (r->piped > 0) {
        ssize_t n = splice(r->pipe[0], NULL, fd, NULL, r->piped, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return true;
            set_err(c, strerror(errno));
            return false;
        }
        r->piped -= (size_t)n;
        if (n > 0)
            r->full = false;
        c->last_ns = time_mono_ns();
    }
    if (r->eof && !relay_pending(r) && !r->shut) {
        shutdown(fd, SHUT_WR);
        r->shut = true;
    }
    return true;
}

/* Moves bytes from src to dst through r while both keep up: a few rounds per event, so that a
 * fast transfer does not go back to epoll_wait for every pipeful. */
#define PUMP_ROUNDS 8

static bool relay_pump(struct conn *c, int src, int dst, struct relay *r, int64_t *count,
                       bool readable)
{
    for (int i = 0; i < PUMP_ROUNDS; i++) {
        int64_t before = *count;
        if (readable && !relay_read(c, src, r, count))
            return false;
        if (!relay_write(c, dst, r))
            return false;
        if (*count == before || relay_pending(r))
            break;
    }
    return true;
}

static void conn_relay(struct egress *eg, struct conn *c, bool client, uint32_t events)
{
    bool readable = events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP | EPOLLERR);
    bool ok;
    if (client) {
        ok = relay_pump(c, c->cfd, c->ufd, &c->up, &c->bytes_up, readable);
        if (ok && (events & EPOLLOUT))
            ok = relay_write(c, c->cfd, &c->down);
    } else {
        ok = relay_pump(c, c->ufd, c->cfd, &c->down, &c->bytes_down, readable);
        if (ok && (events & EPOLLOUT))
            ok = relay_write(c, c->ufd, &c->up);
    }
    /* An error, or a hang-up with nothing left to read: a write to that side fails or a read
     * returns its end, and either closes or moves the connection on. */
    if (!ok || (c->up.shut && c->down.shut)) {
        conn_close(eg, c);
        return;
    }
    conn_arm(eg, c);
}

/* The upstream connect finished (or failed). */
static void conn_connected(struct egress *eg, struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err == EINPROGRESS)
        return;
    if (err) {
        epoll_set(eg, c->ufd, &c->utag, &c->umask, 0);
        close(c->ufd);
        c->ufd = -1;
        c->error[0] = '\0';
        set_err(c, strerror(err));
        conn_connect_next(eg, c);
        return;
    }
    c->error[0] = '\0';
    int one = 1;
    setsockopt(c->ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(c->cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (!(c->up.data = malloc(EGRESS_RELAY_BUFFER)) ||
        (!c->down.data && !(c->down.data = malloc(EGRESS_RELAY_BUFFER)))) {
        set_err(c, "out of memory");
        conn_close(eg, c);
        return;
    }
    if (pipe2(c->up.pipe, O_NONBLOCK | O_CLOEXEC) < 0 ||
        pipe2(c->down.pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
        conn_fail(eg, c, 502, "the server is out of descriptors");
        return;
    }
    /* a larger pipe moves more per call; the default capacity serves if it is refused */
    (void)fcntl(c->up.pipe[1], F_SETPIPE_SZ, RELAY_PIPE_BYTES);
    (void)fcntl(c->down.pipe[1], F_SETPIPE_SZ, RELAY_PIPE_BYTES);
    size_t rest = c->head_len - c->head_end;
    if (c->is_connect) {
        static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
        memcpy(c->down.data, ok, sizeof(ok) - 1);
        c->down.len = sizeof(ok) - 1;
    } else {
        memcpy(c->up.data, c->request, c->request_len);
        c->up.len = c->request_len;
        c->bytes_up += (int64_t)c->request_len;
        free(c->request);
        c->request = NULL;
    }
    memcpy(c->up.data + c->up.len, c->head + c->head_end, rest);
    c->up.len += rest;
    c->bytes_up += (int64_t)rest;
    free(c->head);
    c->head = NULL;
    c->state = C_RELAY;
    c->last_ns = time_mono_ns();
    conn_arm(eg, c);
}

/* ---- reading the head ---- */

static void conn_read_head(struct egress *eg, struct conn *c)
{
    ssize_t n = read(c->cfd, c->head + c->head_len, EGRESS_HEAD_MAX - c->head_len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(eg, c);
        return;
    }
    size_t from = c->head_len > 3 ? c->head_len - 3 : 0;
    c->head_len += (size_t)n;
    for (size_t i = from; i + 4 <= c->head_len; i++)
        if (memcmp(c->head + i, "\r\n\r\n", 4) == 0) {
            c->head_end = i + 4;
            conn_parse_head(eg, c);
            return;
        }
    if (c->head_len == EGRESS_HEAD_MAX)
        conn_bad_request(eg, c, 431, "the request head is larger than 16 KiB");
}

/* ---- sessions ---- */

/* A connection the session may not have: answered at once, recorded once per session. */
static void refuse_now(struct egress_session *s, int fd, int status, const char *why)
{
    char body[300], msg[512];
    snprintf(body, sizeof(body), "sqlfs egress: %s\n", why);
    int n = snprintf(msg, sizeof(msg),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     status, status == 429 ? "Too Many Requests" : "Service Unavailable",
                     strlen(body), body);
    if (n > 0 && send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        /* the client will see the connection closed */
    }
    close(fd);
    pthread_mutex_lock(&s->eg->mu);
    s->eg->denied++;
    pthread_mutex_unlock(&s->eg->mu);
    if (s->limit_logged)
        return;
    s->limit_logged = true;
    char rule[300];
    snprintf(rule, sizeof(rule), "deny: %s", why);
    struct egress_rec r = {.at_ms = time_now_ms(), .host = "", .rule = rule};
    record_add(s, &r);
}

static void session_accept(struct egress *eg, struct egress_session *s)
{
    for (int i = 0; i < ACCEPT_BURST; i++) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        s->asked++;
        char why[200];
        if (s->asked > eg->lim.connections_per_exec) {
            snprintf(why, sizeof(why),
                     "this exec has asked for %lld connections, its limit "
                     "(EGRESS_CONNECTIONS_PER_EXEC)",
                     (long long)eg->lim.connections_per_exec);
            refuse_now(s, fd, 429, why);
            continue;
        }
        if (s->open >= eg->lim.open_per_exec) {
            snprintf(why, sizeof(why),
                     "this exec has %lld connections open, its limit (EGRESS_OPEN_PER_EXEC)",
                     (long long)s->open);
            refuse_now(s, fd, 429, why);
            continue;
        }
        if (session_over_bytes(s)) {
            refuse_now(s, fd, 429, "this exec has relayed its EGRESS_BYTES_PER_EXEC");
            continue;
        }
        pthread_mutex_lock(&eg->mu);
        bool full = eg->open >= eg->lim.max_open;
        if (!full)
            eg->open++;
        pthread_mutex_unlock(&eg->mu);
        if (full) {
            refuse_now(s, fd, 503, "the server has EGRESS_MAX_OPEN connections open; try again");
            continue;
        }
        struct conn *c = calloc(1, sizeof(*c));
        if (!c || !(c->head = malloc(EGRESS_HEAD_MAX))) {
            free(c);
            close(fd);
            pthread_mutex_lock(&eg->mu);
            eg->open--;
            pthread_mutex_unlock(&eg->mu);
            continue;
        }
        c->s = s;
        c->cfd = fd;
        c->ufd = -1;
        c->up.pipe[0] = c->up.pipe[1] = c->down.pipe[0] = c->down.pipe[1] = -1;
        c->ctag = (struct tag){TAG_CLIENT, c};
        c->utag = (struct tag){TAG_UPSTREAM, c};
        c->state = C_HEAD;
        c->started_ms = time_now_ms();
        c->started_ns = c->last_ns = time_mono_ns();
        c->deadline_ns = c->started_ns + eg->lim.connect_timeout_ms * 1000000LL;
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        s->open++;
        conn_arm(eg, c);
    }
}

static void session_teardown(struct egress *eg, struct egress_session *s)
{
    if (s->listen_fd >= 0) {
        epoll_ctl(eg->epfd, EPOLL_CTL_DEL, s->listen_fd, NULL);
        close(s->listen_fd);
        s->listen_fd = -1;
    }
    while (s->conns) {
        set_err(s->conns, "closed: the exec ended");
        conn_close(eg, s->conns);
    }
    for (size_t i = 0; i < eg->nsessions; i++)
        if (eg->sessions[i] == s) {
            eg->sessions[i] = eg->sessions[--eg->nsessions];
            break;
        }
}

/* Timeouts of every connection (loop thread). */
static void sweep(struct egress *eg)
{
    int64_t now = time_mono_ns();
    for (size_t i = 0; i < eg->nsessions; i++) {
        struct conn *c = eg->sessions[i]->conns;
        while (c) {
            struct conn *next = c->next;
            if (c->state == C_RELAY) {
                if (now - c->last_ns > eg->lim.idle_timeout_ms * 1000000LL) {
                    set_err(c, "idle timeout (EGRESS_IDLE_TIMEOUT_MS)");
                    conn_close(eg, c);
                }
            } else if (now > c->deadline_ns) {
                if (c->state == C_HEAD)
                    conn_bad_request(eg, c, 400, "the request head did not arrive in time");
                else if (c->state == C_ANSWER)
                    conn_close(eg, c);
                else
                    conn_fail(eg, c, 504, "timed out (EGRESS_CONNECT_TIMEOUT_MS)");
            }
            c = next;
        }
    }
}

/* Sessions opened and closed, and resolver answers (loop thread, after a wake). Both session
 * queues are taken at once, so that an open is always seen no later than its close. */
static void take_wake(struct egress *eg)
{
    uint64_t v;
    if (read(eg->wakefd, &v, sizeof(v)) < 0) {
        /* nothing was counted */
    }
    pthread_mutex_lock(&eg->mu);
    struct egress_session *opened = eg->open_queue, *closing = eg->close_queue;
    eg->open_queue = eg->close_queue = NULL;
    pthread_mutex_unlock(&eg->mu);
    while (opened) {
        struct egress_session *next = opened->cmd;
        struct egress_session **nv = eg->sessions;
        if (eg->nsessions == eg->capsessions) {
            size_t cap = eg->capsessions ? 2 * eg->capsessions : 16;
            if ((nv = realloc(eg->sessions, cap * sizeof(*nv)))) {
                eg->sessions = nv;
                eg->capsessions = cap;
            }
        }
        if (nv) /* without memory the session runs unswept: its timeouts wait for its close */
            eg->sessions[eg->nsessions++] = opened;
        opened = next;
    }
    pthread_mutex_lock(&eg->rmu);
    struct conn *done = eg->done;
    eg->done = NULL;
    pthread_mutex_unlock(&eg->rmu);
    while (done) {
        struct conn *next = done->done_next;
        conn_resolved(eg, done);
        done = next;
    }
    while (closing) {
        struct egress_session *next = closing->cmd;
        session_teardown(eg, closing);
        closing->cmd = eg->closed_ack;
        eg->closed_ack = closing;
        closing = next;
    }
}

/* After a batch of events: frees the connections closed in it and tells the closers of the
 * sessions torn down in it (which free them) that nothing refers to them any more. */
static void end_batch(struct egress *eg)
{
    while (eg->graveyard) {
        struct conn *c = eg->graveyard;
        eg->graveyard = c->grave;
        conn_free(eg, c);
    }
    if (!eg->closed_ack)
        return;
    pthread_mutex_lock(&eg->mu);
    while (eg->closed_ack) {
        struct egress_session *s = eg->closed_ack;
        eg->closed_ack = s->cmd;
        s->closed = true;
    }
    pthread_cond_broadcast(&eg->closed_cond);
    pthread_mutex_unlock(&eg->mu);
}

/* The answer of ours being written (C_ANSWER): once it is out, the write side is shut and the
 * client's own end awaited, so that a close cannot reset the answer away. */
static void conn_answering(struct egress *eg, struct conn *c, uint32_t events)
{
    char sink[4096];
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        ssize_t n = read(c->cfd, sink, sizeof(sink));
        if (n == 0)
            c->up.eof = true;
        else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            conn_close(eg, c);
            return;
        }
    }
    if (!relay_write(c, c->cfd, &c->down)) {
        conn_close(eg, c);
        return;
    }
    if (c->down.len == c->down.off && !c->down.shut) {
        shutdown(c->cfd, SHUT_WR);
        c->down.shut = true;
    }
    if (c->down.shut && c->up.eof) {
        conn_close(eg, c);
        return;
    }
    conn_arm(eg, c);
}

static void dispatch(struct egress *eg, struct tag *t, uint32_t e)
{
    if (t->kind == TAG_WAKE) {
        take_wake(eg);
        return;
    }
    if (t->kind == TAG_LISTEN) {
        struct egress_session *s = t->p;
        if (s->listen_fd >= 0)
            session_accept(eg, s);
        return;
    }
    struct conn *c = t->p;
    if (c->closed)
        return;
    bool client = t->kind == TAG_CLIENT;
    switch (c->state) {
    case C_HEAD:
        if (client)
            conn_read_head(eg, c);
        break;
    case C_CONNECTING:
        if (!client)
            conn_connected(eg, c);
        break;
    case C_RELAY:
        conn_relay(eg, c, client, e);
        break;
    case C_ANSWER:
        if (client)
            conn_answering(eg, c, e);
        break;
    case C_RESOLVING:
        break;
    }
}

static void *loop_main(void *arg)
{
    struct egress *eg = arg;
    struct epoll_event evs[64];
    int64_t swept = time_mono_ns();
    for (;;) {
        pthread_mutex_lock(&eg->mu);
        bool stop = eg->stopping && !eg->close_queue;
        pthread_mutex_unlock(&eg->mu);
        if (stop)
            break;
        int n = epoll_wait(eg->epfd, evs, 64, LOOP_TICK_MS);
        for (int i = 0; i < n; i++)
            dispatch(eg, evs[i].data.ptr, evs[i].events);
        int64_t now = time_mono_ns();
        if (now - swept >= LOOP_TICK_MS * 1000000LL) {
            swept = now;
            sweep(eg);
        }
        end_batch(eg);
    }
    return NULL;
}

/* ---- the service ---- */

int egress_config_check(const struct egress_config *cfg)
{
    struct egress_rules a = {0}, m = {0};
    struct egress_pins p = {0};
    int r = egress_rules_parse_list(cfg->allow, "EGRESS_ALLOW", &a);
    if (r == 0)
        r = egress_rules_parse_list(cfg->allow_max ? cfg->allow_max : "*", "EGRESS_ALLOW_MAX", &m);
    if (r == 0)
        r = egress_pins_parse(cfg->resolve, "EGRESS_RESOLVE", &p);
    egress_rules_release(&a);
    egress_rules_release(&m);
    egress_pins_release(&p);
    return r;
}

int egress_new(const struct egress_config *cfg, struct store *st, struct egress **ret)
{
    struct egress *eg = calloc(1, sizeof(*eg));
    if (!eg)
        return -ENOMEM;
    eg->lim = cfg->limits;
    eg->store = st;
    eg->epfd = eg->wakefd = -1;
    pthread_mutex_init(&eg->mu, NULL);
    pthread_mutex_init(&eg->rmu, NULL);
    pthread_cond_init(&eg->closed_cond, NULL);
    pthread_cond_init(&eg->rcond, NULL);
    int r = egress_rules_parse_list(cfg->allow, "EGRESS_ALLOW", &eg->allow);
    if (r == 0)
        r = egress_rules_parse_list(cfg->allow_max ? cfg->allow_max : "*", "EGRESS_ALLOW_MAX",
                                    &eg->ceiling);
    if (r == 0)
        r = egress_pins_parse(cfg->resolve, "EGRESS_RESOLVE", &eg->pins);
    if (r == 0 && ((eg->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
                   (eg->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0))
        r = err_set(-errno, "cannot start the egress proxy");
    if (r == 0) {
        eg->waketag = (struct tag){TAG_WAKE, NULL};
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &eg->waketag};
        if (epoll_ctl(eg->epfd, EPOLL_CTL_ADD, eg->wakefd, &ev) < 0)
            r = err_set(-errno, "cannot start the egress proxy");
    }
    for (size_t i = 0; r == 0 && i < RESOLVER_THREADS; i++) {
        struct resolver_arg *a = malloc(sizeof(*a));
        int e = a ? 0 : ENOMEM;
        if (a) {
            *a = (struct resolver_arg){eg, i};
            e = pthread_create(&eg->resolvers[i], NULL, resolver_main, a);
        }
        if (e != 0) {
            free(a);
            r = err_set(-e, "cannot start the egress proxy's resolver");
        } else {
            eg->nresolvers++;
        }
    }
    if (r == 0) {
        int e = pthread_create(&eg->loop, NULL, loop_main, eg);
        if (e != 0)
            r = err_set(-e, "cannot start the egress proxy");
        else
            eg->loop_started = true;
    }
    if (r < 0) {
        egress_free(eg);
        return r;
    }
    *ret = eg;
    return 0;
}

static void wake(struct egress *eg)
{
    uint64_t one = 1;
    if (write(eg->wakefd, &one, sizeof(one)) < 0) {
        /* the counter is full: the loop wakes anyway */
    }
}

void egress_free(struct egress *eg)
{
    if (!eg)
        return;
    if (eg->loop_started) {
        pthread_mutex_lock(&eg->mu);
        eg->stopping = true;
        pthread_mutex_unlock(&eg->mu);
        wake(eg);
        pthread_join(eg->loop, NULL);
    }
    pthread_mutex_lock(&eg->rmu);
    eg->rstop = true;
    pthread_cond_broadcast(&eg->rcond);
    pthread_mutex_unlock(&eg->rmu);
    for (size_t i = 0; i < eg->nresolvers; i++)
        pthread_join(eg->resolvers[i], NULL);
    /* jobs never taken, and answers never read, belong to dead connections only (every
     * session was closed before) */
    while (eg->jobs) {
        struct resolve_job *j = eg->jobs;
        eg->jobs = j->next;
        conn_free(eg, j->c);
        free(j);
    }
    while (eg->done) {
        struct conn *c = eg->done;
        eg->done = c->done_next;
        conn_free(eg, c);
    }
    while (eg->nsessions > 0) /* none, when every session was closed as it must be */
        session_teardown(eg, eg->sessions[0]);
    end_batch(eg);
    free(eg->sessions);
    if (eg->epfd >= 0)
        close(eg->epfd);
    if (eg->wakefd >= 0)
        close(eg->wakefd);
    egress_rules_release(&eg->allow);
    egress_rules_release(&eg->ceiling);
    egress_pins_release(&eg->pins);
    pthread_mutex_destroy(&eg->mu);
    pthread_mutex_destroy(&eg->rmu);
    pthread_cond_destroy(&eg->closed_cond);
    pthread_cond_destroy(&eg->rcond);
    free(eg);
}

int egress_policy_for(struct egress *eg, const char *policy_json, struct egress_policy *ret)
{
    return egress_policy_build(policy_json, &eg->allow, &eg->ceiling, ret);
}

int egress_session_open(struct egress *eg, int listen_fd, struct egress_policy *policy,
                        const char *sandbox_id, const char *exec_id, struct egress_session **ret)
{
    struct egress_session *s = calloc(1, sizeof(*s));
    if (!s || !(s->sandbox_id = strdup(sandbox_id)) ||
        (exec_id && !(s->exec_id = strdup(exec_id)))) {
        if (s)
            free(s->sandbox_id);
        free(s);
        close(listen_fd);
        egress_policy_release(policy);
        return -ENOMEM;
    }
    s->eg = eg;
    s->listen_fd = listen_fd;
    s->policy = *policy;
    memset(policy, 0, sizeof(*policy));
    s->ltag = (struct tag){TAG_LISTEN, s};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s->ltag};
    pthread_mutex_lock(&eg->mu);
    int r = eg->stopping ? -ESHUTDOWN : 0;
    if (r == 0 && epoll_ctl(eg->epfd, EPOLL_CTL_ADD, listen_fd, &ev) < 0)
        r = -errno;
    if (r == 0) { /* the loop adds it to the sessions it sweeps */
        s->cmd = eg->open_queue;
        eg->open_queue = s;
        eg->live_sessions++;
    }
    pthread_mutex_unlock(&eg->mu);
    if (r < 0) {
        close(listen_fd);
        egress_policy_release(&s->policy);
        free(s->sandbox_id);
        free(s->exec_id);
        free(s);
        return err_set(r, "cannot start the exec's egress proxy");
    }
    wake(eg);
    *ret = s;
    return 0;
}

void egress_session_close(struct egress_session *s)
{
    if (!s)
        return;
    struct egress *eg = s->eg;
    pthread_mutex_lock(&eg->mu);
    s->cmd = eg->close_queue;
    eg->close_queue = s;
    pthread_mutex_unlock(&eg->mu);
    wake(eg);
    pthread_mutex_lock(&eg->mu);
    while (!s->closed)
        pthread_cond_wait(&eg->closed_cond, &eg->mu);
    eg->live_sessions--;
    pthread_mutex_unlock(&eg->mu);
    if (s->nrecs > 0) {
        for (size_t i = 0; i < s->nrecs; i++)
            s->recs[i].exec_id = s->exec_id;
        struct egress_opts o = {.max_records = eg->lim.log_max,
                                .max_age_ms = eg->lim.log_max_age_ms,
                                .now_ms = time_now_ms()};
        int r = store_egress_add(eg->store, s->sandbox_id, s->recs, s->nrecs, &o);
        if (r < 0)
            log_msg("warn", "egress: cannot record %zu connections of sandbox %s: %s", s->nrecs,
                    s->sandbox_id, err_message() ? err_message() : strerror(-r));
        for (size_t i = 0; i < s->nrecs; i++) {
            s->recs[i].exec_id = NULL;
            egress_rec_release(&s->recs[i]);
        }
    }
    free(s->recs);
    egress_policy_release(&s->policy);
    free(s->sandbox_id);
    free(s->exec_id);
    free(s);
}

void egress_stats(struct egress *eg, struct egress_stats *ret)
{
    pthread_mutex_lock(&eg->mu);
    ret->sessions = eg->live_sessions;
    ret->open = eg->open;
    ret->served = eg->served;
    ret->denied = eg->denied;
    pthread_mutex_unlock(&eg->mu);
}
