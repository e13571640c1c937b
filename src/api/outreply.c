#include "api/outreply.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "api/idem.h"
#include "api/sse.h"
#include "util/array.h"
#include "util/err.h"
#include "util/utf8.h"

/* Asked of libmicrohttpd for each block it fills from the reader. */
#define OUTREPLY_BLOCK (32 * 1024)

struct piece {
    struct buf b; /* JSON text, or raw output */
    size_t end;   /* bytes of b to send (output: without an incomplete last character) */
    bool output;  /* b is raw output, counted in the budget, sent escaped */
};

struct outreply {
    struct budget *mem;
    struct piece *pieces;
    size_t n, cap;
    size_t cur;       /* piece being sent */
    size_t off;       /* bytes of it consumed */
    struct buf stage; /* escaped output not handed out yet */
    size_t stage_off; /* bytes of stage handed out */
};

struct outreply *outreply_new(struct budget *mem)
{
    struct outreply *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->mem = mem;
    o->stage = (struct buf)BUF_INIT(0);
    return o;
}

/* Frees a piece, giving its output's bytes back. */
static void piece_release(struct outreply *o, struct piece *p)
{
    if (p->output)
        budget_give(o->mem, p->b.len);
    buf_release(&p->b);
    p->end = 0;
}

void outreply_free(struct outreply *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->n; i++)
        piece_release(o, &o->pieces[i]);
    free(o->pieces);
    buf_release(&o->stage);
    free(o);
}

/* A new piece at the end. NULL when out of memory. */
static struct piece *piece_add(struct outreply *o)
{
    if (ARRAY_GROW(o->pieces, o->n + 1, o->cap) < 0)
        return NULL;
    struct piece *p = &o->pieces[o->n++];
    *p = (struct piece){.b = BUF_INIT(0)};
    return p;
}

int outreply_text(struct outreply *o, const char *s, size_t n)
{
    struct piece *p = o->n && !o->pieces[o->n - 1].output ? &o->pieces[o->n - 1] : piece_add(o);
    if (!p || buf_add(&p->b, s, n) < 0)
        return -ENOMEM;
    p->end = p->b.len;
    return 0;
}

int outreply_members(struct outreply *o, const json_t *obj)
{
    char *txt = json_dumps(obj, JSON_COMPACT);
    if (!txt)
        return -ENOMEM;
    size_t len = strlen(txt); /* "{...}" */
    int r = len > 2 ? outreply_text(o, txt + 1, len - 2) : 0;
    free(txt);
    return r;
}

int outreply_output(struct outreply *o, struct buf *b, bool cut)
{
    struct piece *p = NULL;
    int r = outreply_text(o, "\"", 1);
    if (r == 0 && !(p = piece_add(o)))
        r = -ENOMEM;
    if (r < 0) {
        budget_give(o->mem, b->len);
        buf_release(b);
        return r;
    }
    p->b = *b;
    *b = (struct buf)BUF_INIT(0);
    p->output = true;
    /* a cut at the cap may split a character: drop the incomplete tail instead of a U+FFFD */
    p->end = p->b.len - (cut ? utf8_incomplete_tail(buf_cstr(&p->b), p->b.len) : 0);
    return outreply_text(o, "\"", 1);
}

/* Escapes the next slice of an output piece into the staging buffer. A slice ends on a
 * character boundary unless it is the piece's last, so escaping slice by slice gives what
 * escaping the whole would. */
static int stage_slice(struct outreply *o, struct piece *p)
{
    size_t k = p->end - o->off;
    if (k > OUTREPLY_SLICE) {
        k = OUTREPLY_SLICE;
        k -= utf8_incomplete_tail(p->b.data + o->off, k);
    }
    buf_reset(&o->stage);
    o->stage_off = 0;
    int r = sse_json_escape(&o->stage, p->b.data + o->off, k);
    if (r == 0)
        o->off += k;
    return r;
}

/* libmicrohttpd's content reader: fills dst with the next bytes of the body. */
static ssize_t outreply_read(void *cls, uint64_t pos, char *dst, size_t max)
{
    (void)pos;
    struct outreply *o = cls;
    size_t n = 0;
    while (n < max) {
        if (o->stage_off < o->stage.len) {
            size_t k = o->stage.len - o->stage_off;
            k = k < max - n ? k : max - n;
            memcpy(dst + n, o->stage.data + o->stage_off, k);
            o->stage_off += k;
            n += k;
            continue;
        }
        if (o->cur >= o->n)
            break;
        struct piece *p = &o->pieces[o->cur];
        if (o->off >= p->end) { /* sent: its memory goes at once */
            piece_release(o, p);
            o->cur++;
            o->off = 0;
            continue;
        }
        if (p->output) {
            if (stage_slice(o, p) < 0)
                return n ? (ssize_t)n : MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        size_t k = p->end - o->off;
        k = k < max - n ? k : max - n;
        memcpy(dst + n, p->b.data + o->off, k);
        o->off += k;
        n += k;
    }
    if (o->cur >= o->n && o->stage_off >= o->stage.len)
        buf_release(&o->stage);
    return n ? (ssize_t)n : MHD_CONTENT_READER_END_OF_STREAM;
}

int outreply_render(const struct outreply *o, struct buf *dst)
{
    buf_reset(dst);
    int r = 0;
    for (size_t i = 0; i < o->n && r == 0; i++) {
        const struct piece *p = &o->pieces[i];
        if (!p->output) {
            r = buf_add(dst, p->b.data, p->end);
            continue;
        }
        /* slice by slice, as it is sent (stage_slice), so that a piece too large for dst is
         * refused before all of it is escaped */
        for (size_t off = 0; off < p->end && r == 0;) {
            size_t k = p->end - off;
            if (k > OUTREPLY_SLICE) {
                k = OUTREPLY_SLICE;
                k -= utf8_incomplete_tail(p->b.data + off, k);
            }
            r = sse_json_escape(dst, p->b.data + off, k);
            off += k;
        }
    }
    return r;
}

static void outreply_done(void *cls)
{
    outreply_free(cls);
}

int outreply_send(struct request *req, unsigned status, struct outreply *o)
{
    if (req->inner) { /* a request the server made to itself: the body is rendered for it */
        int r = outreply_render(o, &req->inner->body);
        outreply_free(o);
        if (r < 0)
            return http_inner_full(req, r);
        req->inner->status = status;
        req->inner->opaque = false;
        return 0;
    }
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, OUTREPLY_BLOCK,
                                                                  outreply_read, o, outreply_done);
    if (!resp) {
        outreply_free(o);
        return err_set(-ENOMEM, "out of memory");
    }
    int r = http_reply_response(req, status, resp);
    if (r == 0) {
        http_add_header(req, "Content-Type", "application/json");
        idem_answer_reply(req, status, o);
    }
    return r;
}
