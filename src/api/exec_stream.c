/*
 * POST /v1/sandboxes/{id}/exec — live Server-Sent Events (API.md §5).
 *
 * The exec runs in a worker thread (it owns the jail from spawn to wait); its output becomes
 * SSE frames in a bounded queue that libmicrohttpd's content callback drains on the connection
 * thread. Backpressure, not truncation: when the queue holds STREAM_QUEUE_MAX bytes the worker
 * stops reading the script's pipes, so a slow client slows the script down instead of growing
 * server memory (the exec's own timeout still applies). Chunks never split a UTF-8 character:
 * an incomplete tail is held back until the next chunk (or the end) completes it.
 *
 * The connection thread watches the client socket while it waits for frames: a hang-up cancels
 * the exec (what it wrote so far commits, like a timeout). A silent script gets a
 * ": keep-alive" comment every KEEPALIVE_MS. The last frame is always `exit`.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/exec.h"
#include "api/routes.h"
#include "sandbox/sandbox.h"
#include "util/err.h"
#include "util/timeutil.h"
#include "util/utf8.h"

#define STREAM_QUEUE_MAX (1024 * 1024)
#define KEEPALIVE_MS 15000
#define WAIT_SLICE_MS 100

struct stream {
    struct app *app;
    struct exec_request x;      /* parsed request (params borrow from it) */
    struct sandbox_rec rec;     /* read under the lock held by the request */
    pthread_t worker;
    bool worker_started;
    int cancel_pipe[2];         /* closing [1] cancels the exec (runner sees POLLHUP on [0]) */
    int client_fd;              /* the connection's socket, watched for hang-up */
    int64_t started_ms;         /* monotonic start, for "t" */
    pthread_mutex_t mu;
    pthread_cond_t cond;        /* signalled when frames are queued or consumed */
    struct buf queue;           /* SSE bytes not yet sent */
    bool done;                  /* the exit frame is queued */
    bool gone;                  /* the client went away: drop output, do not wait */
    struct buf tail[3];         /* per stream: incomplete UTF-8 held back */
    int64_t deadline_ms;        /* monotonic: the exec's own timeout */
};

static int64_t since_start(struct stream *s)
{
    return time_mono_ms() - s->started_ms;
}

/* Appends one frame; waits while the queue is full (backpressure) unless the client is gone
 * or the exec is past its deadline. */
static void push_frame(struct stream *s, const char *event, json_t *data)
{
    char *txt = json_dumps(data, JSON_COMPACT);
    json_decref(data);
    if (!txt)
        return;
    pthread_mutex_lock(&s->mu);
    while (!s->gone && s->queue.len >= STREAM_QUEUE_MAX && time_mono_ms() < s->deadline_ms) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += WAIT_SLICE_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cond, &s->mu, &ts);
    }
    if (!s->gone && buf_addf(&s->queue, "event: %s\ndata: %s\n\n", event, txt) < 0)
        s->gone = true; /* out of memory: treat like a lost client */
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    free(txt);
}

static void push_output(struct stream *s, int stream, const char *data, size_t len, bool flush)
{
    struct buf *tail = &s->tail[stream];
    struct buf chunk = BUF_INIT(0);
    if (buf_add(&chunk, buf_cstr(tail), tail->len) < 0 || buf_add(&chunk, data, len) < 0) {
        buf_release(&chunk);
        return;
    }
    buf_reset(tail);
    size_t keep = flush ? 0 : utf8_incomplete_tail(buf_cstr(&chunk), chunk.len);
    if (keep && buf_add(tail, chunk.data + chunk.len - keep, keep) < 0)
        keep = 0;
    size_t n = chunk.len - keep;
    if (n > 0) {
        struct buf clean = BUF_INIT(0);
        if (utf8_sanitize_into(&clean, buf_cstr(&chunk), n) == 0) {
            json_t *d = json_object();
            json_object_set_new(d, "t", json_integer(since_start(s)));
            json_object_set_new(d, "data", json_stringn(buf_cstr(&clean), clean.len));
            push_frame(s, stream == 1 ? "stdout" : "stderr", d);
        }
        buf_release(&clean);
    }
    buf_release(&chunk);
}

static void on_output(void *userdata, int stream, const char *data, size_t len)
{
    push_output(userdata, stream == 1 ? 1 : 2, data, len, false);
}

static void *worker_main(void *arg)
{
    struct stream *s = arg;
    struct exec_outcome out;
    err_clear();
    int r = exec_engine_run(s->app->exec, &s->rec, &s->x.params, &out);
    push_output(s, 1, "", 0, true);
    push_output(s, 2, "", 0, true);
    if (r < 0) {
        const struct err_info *info = err_info(r);
        const char *msg = err_message();
        json_t *e = json_object();
        json_object_set_new(e, "code", json_string(info->code));
        json_object_set_new(e, "error", json_string(msg && *msg ? msg : info->message));
        json_object_set_new(e, "retryable", json_boolean(info->retryable));
        push_frame(s, "error", e);
    }
    json_t *x = json_object();
    json_object_set_new(x, "t", json_integer(since_start(s)));
    json_object_set_new(x, "exitCode", json_integer(r < 0 || out.timed_out ? -1 : out.exit_code));
    json_object_set_new(x, "durationMs", json_integer(out.duration_ms));
    json_object_set_new(x, "timedOut", json_boolean(out.timed_out));
    if (out.timed_out)
        json_object_set_new(x, "error", json_string("timeout"));
    const char *sig = exec_signal_name(out.exit_signal);
    json_object_set_new(x, "exitSignal", sig && r == 0 ? json_string(sig) : json_null());
    push_frame(s, "exit", x);
    exec_outcome_release(&out);
    pthread_mutex_lock(&s->mu);
    s->done = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void cancel_exec(struct stream *s)
{
    if (s->cancel_pipe[1] >= 0) {
        close(s->cancel_pipe[1]);
        s->cancel_pipe[1] = -1;
    }
}

static bool client_gone(int fd)
{
    if (fd < 0)
        return false;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    struct stream *s = cls;
    int64_t last_activity = time_mono_ms();
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (s->queue.len > 0) {
            size_t n = s->queue.len < max ? s->queue.len : max;
            memcpy(out, s->queue.data, n);
            buf_consume(&s->queue, n);
            pthread_cond_broadcast(&s->cond);
            pthread_mutex_unlock(&s->mu);
            return (ssize_t)n;
        }
        if (s->done) {
            pthread_mutex_unlock(&s->mu);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        if (time_mono_ms() - last_activity >= KEEPALIVE_MS) {
            pthread_mutex_unlock(&s->mu);
            static const char ka[] = ": keep-alive\n\n";
            size_t n = sizeof(ka) - 1 < max ? sizeof(ka) - 1 : max;
            memcpy(out, ka, n);
            return (ssize_t)n;
        }
        pthread_mutex_unlock(&s->mu);
        if (client_gone(s->client_fd)) {
            pthread_mutex_lock(&s->mu);
            s->gone = true;
            pthread_cond_broadcast(&s->cond);
            pthread_mutex_unlock(&s->mu);
            cancel_exec(s);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        pthread_mutex_lock(&s->mu);
        if (s->queue.len == 0 && !s->done) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += WAIT_SLICE_MS * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&s->cond, &s->mu, &ts);
        }
    }
}

static void stream_free(struct stream *s)
{
    if (!s)
        return;
    if (s->worker_started) {
        pthread_mutex_lock(&s->mu);
        s->gone = true; /* the worker must not wait for a reader that is gone */
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->mu);
        if (!s->done)
            cancel_exec(s);
        pthread_join(s->worker, NULL);
    }
    cancel_exec(s);
    if (s->cancel_pipe[0] >= 0)
        close(s->cancel_pipe[0]);
    buf_release(&s->queue);
    for (int i = 0; i < 3; i++)
        buf_release(&s->tail[i]);
    sandbox_rec_release(&s->rec);
    exec_request_release(&s->x);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void route_exec_stream_done(struct request *req, bool completed)
{
    stream_free(req->route_state);
    req->route_state = NULL;
}

static void response_free(void *cls)
{
    /* the stream lives until the request completes (route_exec_stream_done) */
}

int route_exec_stream(struct request *req)
{
    if (!req->app->exec)
        return err_set(-ERR_JAIL_UNAVAILABLE, "exec is unavailable on this server; see /readyz");
    struct stream *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->app = req->app;
    s->cancel_pipe[0] = s->cancel_pipe[1] = -1;
    s->queue = (struct buf)BUF_INIT(0);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    req->route_state = s;
    int r = exec_request_parse(req, &s->x);
    if (r < 0)
        return r;
    r = exec_open_sandbox(req, s->x.params.read_only, &s->rec);
    if (r < 0)
        return r;
    if (pipe2(s->cancel_pipe, O_CLOEXEC) < 0)
        return -errno;
    s->client_fd = http_client_fd(req);
    s->x.params.cancel_fd = s->cancel_pipe[0];
    s->x.params.on_output = on_output;
    s->x.params.userdata = s;
    s->started_ms = time_mono_ms();
    s->deadline_ms = s->started_ms + s->x.params.timeout_ms + 1000;
    if (pthread_create(&s->worker, NULL, worker_main, s) != 0)
        return err_set(-ERR_INTERNAL, "cannot start the exec");
    s->worker_started = true;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, stream_read, s,
                                          response_free);
    r = http_reply_response(req, 200, resp);
    if (r < 0)
        return r;
    http_add_header(req, "Content-Type", "text/event-stream");
    http_add_header(req, "Cache-Control", "no-cache");
    http_add_header(req, "X-Accel-Buffering", "no");
    return 0;
}
