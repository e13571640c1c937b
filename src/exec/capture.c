#include "exec/capture.h"

void capture_init(struct capture *c, struct capture_allowance *a, struct budget *memory)
{
    *c = (struct capture){
        .out = {.data = BUF_INIT(0)},
        .err = {.data = BUF_INIT(0)},
        .allowance = a,
        .memory = memory,
    };
}

void capture_add(struct capture *c, int stream, const char *data, size_t len)
{
    struct capture_stream *s = stream == CAPTURE_STDOUT ? &c->out : &c->err;
    if (s->truncated || len == 0) /* a stream stays a prefix of what the script wrote */
        return;
    struct budget *mine = &c->allowance->stream[stream == CAPTURE_STDOUT ? 0 : 1];
    size_t n = budget_take(mine, len);
    size_t kept = c->memory ? budget_take(c->memory, n) : n;
    if (kept && buf_add(&s->data, data, kept) < 0) {
        if (c->memory)
            budget_give(c->memory, kept);
        kept = 0;
    }
    budget_give(mine, n - kept);
    if (kept < len)
        s->truncated = true;
}

void capture_on_output(void *c, int stream, const char *data, size_t len)
{
    capture_add(c, stream, data, len);
}

void capture_release(struct capture *c)
{
    if (c->memory) {
        budget_give(c->memory, c->out.data.len);
        budget_give(c->memory, c->err.data.len);
    }
    buf_release(&c->out.data);
    buf_release(&c->err.data);
}
