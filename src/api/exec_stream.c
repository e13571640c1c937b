/*
 * POST /v1/sandboxes/{id}/exec — live Server-Sent Events (docs/API.md "Exec").
 *
 * The exec runs in a worker thread (it owns the jail from spawn to wait); each chunk of its
 * output becomes one SSE frame (api/sse.h), built outside the lock and appended whole to a
 * bounded queue that libmicrohttpd's content callback drains on the connection thread.
 * Backpressure, not truncation: when the queued frames hold STREAM_QUEUE_MAX bytes of memory the
 * worker stops reading the script's pipes until half of it is sent, so a slow client slows the
 * script down instead of growing server memory (the exec's own timeout still applies). Sent
 * frames are kept for reuse up to the same bound. Each side signals the other only when it
 * sleeps. Chunks never split a UTF-8 character: an incomplete tail is held back until the next
 * chunk (or the end) completes it.
 *
 * The connection thread watches the client socket while it waits for frames: a hang-up cancels
 * the exec (what it wrote so far commits, like a timeout). A silent script gets a
 * ": keep-alive" comment every KEEPALIVE_MS. The last frame is always `exit`.
 *
 * The 200 and its stream start only once the script runs: a failure before that (a missing cwd,
 * a full exec queue, the server's own set-up fault) is answered with its own status and JSON
 * error body, like exec-sync's, never as a 200 whose stream carries an error.
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
#include "api/metrics.h"
#include "api/routes.h"
#include "api/sse.h"
#include "sandbox/sandbox.h"
#include "util/compiler.h"
#include "util/err.h"
#include "util/fd.h"
#include "util/timeutil.h"
#include "util/utf8.h"

#define STREAM_QUEUE_MAX (1024 * 1024)
#define KEEPALIVE_MS 15000
#define WAIT_SLICE_MS 100

/* One SSE frame (or several) waiting in the queue. Frames are built by the worker outside the
 * lock and handed over whole, so each byte is copied once more only: into libmicrohttpd's
 * buffer. */
struct frame {
    struct frame *next;
    size_t off;   /* bytes already handed to libmicrohttpd */
    struct buf b; /* SSE text */
};

struct stream {
    struct app *app;
    struct exec_request x;  /* parsed request (params borrow from it) */
    struct sandbox_rec rec; /* read under the lock held by the request */
    int64_t lock_ns;        /* the wait for the sandbox's lock (the metrics' lock phase) */
    pthread_t worker;
    bool worker_started;
    int cancel_pipe[2];        /* closing [1] cancels the exec (runner sees POLLHUP on [0]) */
    int client_fd;             /* the connection's socket, watched for hang-up */
    int64_t started_ms;        /* monotonic start, for "t" */
    pthread_mutex_t mu;        /* guards the fields below, up to tail */
    pthread_cond_t readable;   /* for the reader: a frame was queued, or done / gone was set */
    pthread_cond_t writable;   /* for the worker: the queue drained, or gone was set */
    struct frame *head, *last; /* the queue, oldest first */
    size_t queued;             /* bytes in the queue not yet handed out */
    size_t held;               /* memory (buffer capacity) of the queued frames */
    struct frame *spare;       /* sent frames kept for reuse (their memory is already mapped) */
    size_t spare_bytes;        /* capacity held in `spare`, at most STREAM_QUEUE_MAX */
    bool reader_waiting;       /* the reader sleeps on `readable` */
    bool writer_waiting;       /* the worker sleeps on `writable` */
    bool done;                 /* the exit frame is queued */
    bool started;              /* bash runs the script: the stream can begin */
    int failed;                /* the exec failed before its script started (error code) */
    json_t *failed_body;       /* its error body, built on the worker's thread */
    bool gone;                 /* the client went away: drop output, do not wait */
    struct buf tail[3];        /* worker only, per stream: incomplete UTF-8 held back */
    int64_t deadline_ms;       /* monotonic: the exec's own timeout */
    struct exec_outcome out;   /* worker only, but for out.exec_id: written before on_start,
                                * read by the route once `started` is set */
};

static int64_t since_start(struct stream *s)
{
    return time_mono_ms() - s->started_ms;
}

static void frame_free(struct frame *f)
{
    if (!f)
        return;
    buf_release(&f->b);
    free(f);
}

static void frame_list_free(struct frame *f)
{
    while (f) {
        struct frame *next = f->next;
        frame_free(f);
        f = next;
    }
}

/* An empty frame: a spare one when there is one. Reusing sent frames spares the worker a fresh
 * allocation (and its page faults) for every chunk. NULL when out of memory. */
static struct frame *frame_get(struct stream *s)
{
    pthread_mutex_lock(&s->mu);
    struct frame *f = s->spare;
    if (f) {
        s->spare = f->next;
        s->spare_bytes -= f->b.cap;
    }
    pthread_mutex_unlock(&s->mu);
    if (!f)
        return calloc(1, sizeof(struct frame));
    f->next = NULL;
    f->off = 0;
    buf_reset(&f->b);
    return f;
}

static void timed_wait(pthread_cond_t *cond, pthread_mutex_t *mu)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += WAIT_SLICE_MS * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cond, mu, &ts);
}

/* Queues a frame (taking it); waits while the queue is full (backpressure) unless the client
 * is gone or the exec is past its deadline. Wakes the reader only if it sleeps. */
static void push_frame(struct stream *s, struct frame *f)
{
    pthread_mutex_lock(&s->mu);
    while (!s->gone && s->held >= STREAM_QUEUE_MAX && time_mono_ms() < s->deadline_ms) {
        s->writer_waiting = true;
        timed_wait(&s->writable, &s->mu);
        s->writer_waiting = false;
    }
    if (s->gone) {
        pthread_mutex_unlock(&s->mu);
        frame_free(f);
        return;
    }
    if (s->last)
        s->last->next = f;
    else
        s->head = f;
    s->last = f;
    s->queued += f->b.len;
    s->held += f->b.cap;
    if (s->reader_waiting)
        pthread_cond_signal(&s->readable);
    pthread_mutex_unlock(&s->mu);
}

static void push_json(struct stream *s, const char *event, json_t *data)
{
    struct frame *f = frame_get(s);
    if (f && sse_json_frame(&f->b, event, data) == 0) {
        push_frame(s, f);
        f = NULL;
    }
    frame_free(f);
    json_decref(data);
}

static void push_output(struct stream *s, int stream, const char *data, size_t len, bool flush)
{
    struct buf *tail = &s->tail[stream];
    struct buf joined = BUF_INIT(0);
    if (tail->len > 0) { /* a character split across reads: rejoin it */
        if (buf_add(&joined, tail->data, tail->len) < 0 || buf_add(&joined, data, len) < 0) {
            buf_release(&joined);
            return;
        }
        buf_reset(tail);
        data = joined.data;
        len = joined.len;
    }
    size_t keep = flush ? 0 : utf8_incomplete_tail(data, len);
    if (keep && buf_add(tail, data + len - keep, keep) < 0)
        keep = 0;
    if (len > keep) {
        struct frame *f = frame_get(s);
        if (f && sse_output_frame(&f->b, stream == 1 ? "stdout" : "stderr", since_start(s), data,
                                  len - keep) == 0) {
            push_frame(s, f);
            f = NULL;
        }
        frame_free(f);
    }
    buf_release(&joined);
}

static void on_output(void *userdata, int stream, const char *data, size_t len)
{
    push_output(userdata, stream == 1 ? 1 : 2, data, len, false);
}

static void on_start(void *userdata)
{
    struct stream *s = userdata;
    /* the first event names the exec: {"t", "execId"} */
    json_t *x = json_object();
    if (x) {
        json_object_set_new(x, "t", json_integer(since_start(s)));
        json_object_set_new(x, "execId", json_string(s->out.exec_id));
        push_json(s, "start", x);
    }
    pthread_mutex_lock(&s->mu);
    s->started = true;
    pthread_cond_broadcast(&s->readable);
    pthread_mutex_unlock(&s->mu);
}

static void *worker_main(void *arg)
{
    struct stream *s = arg;
    struct exec_outcome *out = &s->out;
    err_clear();
    /* The exit event goes out first; the checkout apply and the upper's removal follow (in
     * exec_outcome_release below) before the stream ends and its lock is released. */
    s->x.params.rest_after_reply = true;
    s->x.params.journal_kind = "stream";
    int r = exec_engine_run(s->app->exec, &s->rec, &s->x.params, out);
    metrics_exec_timing(s->app->metrics, s->lock_ns, &out->timing);
    pthread_mutex_lock(&s->mu);
    bool started = s->started;
    pthread_mutex_unlock(&s->mu);
    if (r < 0 && !started) { /* answered by the route with this status and body */
        json_t *body = http_error_json(r);
        exec_outcome_release(out);
        pthread_mutex_lock(&s->mu);
        s->failed = r;
        s->failed_body = body;
        s->done = true;
        pthread_cond_broadcast(&s->readable);
        pthread_mutex_unlock(&s->mu);
        return NULL;
    }
    push_output(s, 1, "", 0, true);
    push_output(s, 2, "", 0, true);
    if (r < 0)
        push_json(s, "error", http_error_json(r));
    json_t *x = json_object();
    json_object_set_new(x, "t", json_integer(since_start(s)));
    json_object_set_new(x, "execId", json_string(out->exec_id));
    json_object_set_new(x, "exitCode", json_integer(r < 0 || out->timed_out ? -1 : out->exit_code));
    json_object_set_new(x, "durationMs", json_integer(out->duration_ms));
    json_object_set_new(x, "timedOut", json_boolean(out->timed_out));
    if (out->timed_out)
        json_object_set_new(x, "error", json_string("timeout"));
    const char *sig = exec_signal_name(out->exit_signal);
    json_object_set_new(x, "exitSignal", sig && r == 0 ? json_string(sig) : json_null());
    push_json(s, "exit", x);
    exec_outcome_release(out);
    pthread_mutex_lock(&s->mu);
    s->done = true;
    pthread_cond_signal(&s->readable);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void cancel_exec(struct stream *s)
{
    closep(&s->cancel_pipe[1]);
}

static bool client_gone(int fd)
{
    if (fd < 0)
        return false;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Moves up to `max` queued bytes to `out` (mu held). Fully sent frames become spares, or go to
 * *spent (to be freed outside the lock) when enough memory is held in spares already. */
static size_t take_queued(struct stream *s, char *out, size_t max, struct frame **spent)
{
    size_t n = 0;
    while (s->head && n < max) {
        struct frame *f = s->head;
        size_t k = f->b.len - f->off < max - n ? f->b.len - f->off : max - n;
        memcpy(out + n, f->b.data + f->off, k);
        f->off += k;
        n += k;
        if (f->off < f->b.len)
            break;
        s->head = f->next;
        if (!s->head)
            s->last = NULL;
        s->held -= f->b.cap;
        if (s->spare_bytes + f->b.cap <= STREAM_QUEUE_MAX) {
            f->next = s->spare;
            s->spare = f;
            s->spare_bytes += f->b.cap;
        } else {
            f->next = *spent;
            *spent = f;
        }
    }
    s->queued -= n;
    /* the worker resumes once half the queue drained, so it refills in a burst rather than
     * waking for every block sent */
    if (s->writer_waiting && s->held <= STREAM_QUEUE_MAX / 2)
        pthread_cond_signal(&s->writable);
    return n;
}

static void mark_gone(struct stream *s)
{
    pthread_mutex_lock(&s->mu);
    s->gone = true;
    pthread_cond_broadcast(&s->writable);
    pthread_cond_broadcast(&s->readable);
    pthread_mutex_unlock(&s->mu);
}

static ssize_t stream_read(void *cls, uint64_t pos UNUSED, char *out, size_t max)
{
    struct stream *s = cls;
    int64_t last_activity = time_mono_ms();
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (s->queued > 0) {
            struct frame *spent = NULL;
            size_t n = take_queued(s, out, max, &spent);
            pthread_mutex_unlock(&s->mu);
            frame_list_free(spent);
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
            mark_gone(s);
            cancel_exec(s);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        pthread_mutex_lock(&s->mu);
        if (s->queued == 0 && !s->done) {
            s->reader_waiting = true;
            timed_wait(&s->readable, &s->mu);
            s->reader_waiting = false;
        }
    }
}

static void stream_free(struct stream *s)
{
    if (!s)
        return;
    if (s->worker_started) {
        mark_gone(s); /* the worker must not wait for a reader that is gone */
        if (!s->done)
            cancel_exec(s);
        pthread_join(s->worker, NULL);
    }
    cancel_exec(s);
    closep(&s->cancel_pipe[0]);
    frame_list_free(s->head);
    frame_list_free(s->spare);
    for (int i = 0; i < 3; i++)
        buf_release(&s->tail[i]);
    json_decref(s->failed_body);
    sandbox_rec_release(&s->rec);
    exec_request_release(&s->x);
    pthread_cond_destroy(&s->readable);
    pthread_cond_destroy(&s->writable);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void route_exec_stream_done(struct request *req, bool completed UNUSED)
{
    stream_free(req->route_state);
    req->route_state = NULL;
}

static void response_free(void *cls UNUSED)
{
    /* the stream lives until the request completes (route_exec_stream_done) */
}

int route_exec_stream(struct request *req)
{
    if (!req->app->exec)
        return exec_engine_unavailable();
    struct stream *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->app = req->app;
    s->cancel_pipe[0] = s->cancel_pipe[1] = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->readable, NULL);
    pthread_cond_init(&s->writable, NULL);
    req->route_state = s;
    int r = exec_request_parse(req, &s->x);
    if (r < 0)
        return r;
    s->lock_ns = time_mono_ns();
    r = exec_open_sandbox(req, s->x.params.read_only, &s->rec);
    s->lock_ns = time_mono_ns() - s->lock_ns;
    if (r < 0)
        return r;
    if (pipe2(s->cancel_pipe, O_CLOEXEC) < 0)
        return -errno;
    s->client_fd = http_client_fd(req);
    s->x.params.cancel_fd = s->cancel_pipe[0];
    s->x.params.on_output = on_output;
    s->x.params.on_start = on_start;
    s->x.params.userdata = s;
    s->started_ms = time_mono_ms();
    s->deadline_ms = s->started_ms + s->x.params.timeout_ms + 1000;
    if (pthread_create(&s->worker, NULL, worker_main, s) != 0)
        return err_set(-ERR_INTERNAL, "cannot start the exec");
    s->worker_started = true;
    pthread_mutex_lock(&s->mu);
    while (!s->started && !s->done)
        pthread_cond_wait(&s->readable, &s->mu);
    json_t *failed_body = s->failed ? s->failed_body : NULL;
    s->failed_body = NULL;
    pthread_mutex_unlock(&s->mu);
    if (failed_body)
        return http_reply_error_body(req, s->failed, failed_body);
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024,
                                                                  stream_read, s, response_free);
    r = http_reply_response(req, 200, resp);
    if (r < 0)
        return r;
    http_add_header(req, "Content-Type", "text/event-stream");
    http_add_header(req, "Cache-Control", "no-cache");
    http_add_header(req, "X-Accel-Buffering", "no");
    http_add_header(req, "X-Exec-Id", s->out.exec_id);
    return 0;
}
