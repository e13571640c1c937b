#include "util/textdiff.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/array.h"
#include "util/utf8.h"

/* One input split into lines, and what the search makes of them. */
struct side {
    const char *p;    /* the input's bytes */
    uint32_t n;       /* lines */
    uint32_t *off;    /* n + 1 offsets: line i is p[off[i] .. off[i + 1]) */
    uint32_t *cls;    /* n classes: two lines are equal exactly when their classes are */
    uint8_t *changed; /* n flags: the line is deleted (a) or inserted (b) */
    uint32_t nseq;    /* lines kept for the search: those whose class the other side has */
    uint32_t *map;    /* nseq: line number of each kept line */
    uint32_t *seq;    /* nseq: class of each kept line */
};

static void side_release(struct side *s)
{
    free(s->off);
    free(s->cls);
    free(s->changed);
    free(s->map);
    free(s->seq);
}

/* Fills s->n and s->off for p[0..len) (len <= TEXTDIFF_MAX_INPUT). 0 or -ENOMEM. */
static int side_split(struct side *s, const char *p, size_t len)
{
    s->p = p;
    size_t n = 0;
    for (size_t i = 0; i < len; n++) {
        const char *nl = memchr(p + i, '\n', len - i);
        i = nl ? (size_t)(nl - p) + 1 : len;
    }
    s->n = (uint32_t)n;
    s->off = malloc((n + 1) * sizeof(*s->off));
    s->cls = malloc((n ? n : 1) * sizeof(*s->cls));
    s->changed = calloc(n ? n : 1, 1);
    s->map = malloc((n ? n : 1) * sizeof(*s->map));
    s->seq = malloc((n ? n : 1) * sizeof(*s->seq));
    if (!s->off || !s->cls || !s->changed || !s->map || !s->seq)
        return -ENOMEM;
    size_t i = 0;
    for (size_t k = 0; k < n; k++) {
        s->off[k] = (uint32_t)i;
        const char *nl = memchr(p + i, '\n', len - i);
        i = nl ? (size_t)(nl - p) + 1 : len;
    }
    s->off[n] = (uint32_t)len;
    return 0;
}

/* A class of equal lines: its first line's bytes and how many lines of each side hold it. */
struct lineclass {
    const char *p;     /* bytes of the first line seen */
    uint32_t len;      /* its length, newline included */
    uint32_t hash;     /* line_hash of those bytes */
    uint32_t count[2]; /* lines of a, of b in the class */
};

/* Interning of lines into classes: an open-addressing table over `v`. */
struct classes {
    struct lineclass *v; /* the classes, numbered by position */
    size_t n;            /* classes */
    size_t cap;          /* allocated entries of v */
    uint32_t *slots;     /* class number + 1 per slot, 0 = empty; a power of two of them */
    size_t mask;         /* slots - 1 */
};

static uint32_t line_hash(const char *p, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 29;
    return (uint32_t)(h ^ (h >> 32));
}

/* Doubles the table (or makes the first one) and puts every class back. 0 or -ENOMEM. */
static int classes_rehash(struct classes *c)
{
    size_t size = c->slots ? (c->mask + 1) * 2 : 1024;
    uint32_t *slots = calloc(size, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    for (size_t k = 0; k < c->n; k++) {
        size_t at = c->v[k].hash & (size - 1);
        while (slots[at])
            at = (at + 1) & (size - 1);
        slots[at] = (uint32_t)k + 1;
    }
    free(c->slots);
    c->slots = slots;
    c->mask = size - 1;
    return 0;
}

/* The class of line p[0..len) seen on `side` (0 = a, 1 = b), made when new. 0 or -ENOMEM. */
static int classes_intern(struct classes *c, const char *p, uint32_t len, int side,
                          uint32_t *ret_cls)
{
    if (!c->slots || (c->n + 1) * 2 > c->mask + 1) {
        int r = classes_rehash(c);
        if (r < 0)
            return r;
    }
    uint32_t h = line_hash(p, len);
    size_t at = h & c->mask;
    for (; c->slots[at]; at = (at + 1) & c->mask) {
        struct lineclass *lc = &c->v[c->slots[at] - 1];
        if (lc->hash == h && lc->len == len && memcmp(lc->p, p, len) == 0) {
            lc->count[side]++;
            *ret_cls = c->slots[at] - 1;
            return 0;
        }
    }
    if (ARRAY_GROW(c->v, c->n + 1, c->cap) < 0)
        return -ENOMEM;
    c->v[c->n] = (struct lineclass){.p = p, .len = len, .hash = h};
    c->v[c->n].count[side] = 1;
    c->slots[at] = (uint32_t)c->n + 1;
    *ret_cls = (uint32_t)c->n++;
    return 0;
}

/*
 * Gives every line of both sides its class, then keeps for the search only the lines whose class
 * the other side also holds: a line found on one side only is in no common subsequence, so it is
 * marked changed at once and the search, shorter, stays minimal. 0 or -ENOMEM.
 */
static int classify(struct side *s)
{
    struct classes c = {0};
    int r = 0;
    for (int k = 0; k < 2 && r == 0; k++)
        for (uint32_t i = 0; i < s[k].n && r == 0; i++)
            r = classes_intern(&c, s[k].p + s[k].off[i], s[k].off[i + 1] - s[k].off[i], k,
                               &s[k].cls[i]);
    for (int k = 0; k < 2 && r == 0; k++) {
        s[k].nseq = 0;
        for (uint32_t i = 0; i < s[k].n; i++) {
            uint32_t cl = s[k].cls[i];
            if (c.v[cl].count[!k] == 0) {
                s[k].changed[i] = 1;
                continue;
            }
            s[k].map[s[k].nseq] = i;
            s[k].seq[s[k].nseq++] = cl;
        }
    }
    free(c.v);
    free(c.slots);
    return r;
}

/* The search over the kept lines: x = a's classes, y = b's. */
struct search {
    const uint32_t *x, *y; /* class sequences */
    int32_t *fd;           /* furthest x reached forward on each diagonal k = x - y */
    int32_t *bd;           /* least x reached backward on each diagonal */
    int64_t work;          /* steps left before the search gives up */
};

/* A part of the problem: x[xoff..xlim) against y[yoff..ylim). */
struct range {
    int32_t xoff, xlim, yoff, ylim;
};

/*
 * Myers' middle snake: a point (ret_x, ret_y) on a shortest edit path from (xoff, yoff) to
 * (xlim, ylim), about halfway along it in edits, found by searching forward from the start and
 * backward from the end until the two meet. Both halves need strictly fewer edits than the whole,
 * since the caller strips common first and last lines before asking. False when the work cap is
 * reached first.
 */
static bool middle_snake(struct search *s, const struct range *r, int32_t *ret_x, int32_t *ret_y)
{
    const uint32_t *x = s->x, *y = s->y;
    int32_t *fd = s->fd, *bd = s->bd;
    long xoff = r->xoff, xlim = r->xlim, yoff = r->yoff, ylim = r->ylim;
    long dmin = xoff - ylim, dmax = xlim - yoff;
    long fmid = xoff - yoff, bmid = xlim - ylim;
    long fmin = fmid, fmax = fmid, bmin = bmid, bmax = bmid;
    bool odd = (fmid - bmid) & 1;

    fd[fmid] = (int32_t)xoff;
    bd[bmid] = (int32_t)xlim;
    for (;;) {
        /* One more edit forward on every diagonal in reach, each followed by its snake. */
        if (fmin > dmin)
            fd[--fmin - 1] = -1;
        else
            ++fmin;
        if (fmax < dmax)
            fd[++fmax + 1] = -1;
        else
            --fmax;
        for (long d = fmax; d >= fmin; d -= 2) {
            long tlo = fd[d - 1], thi = fd[d + 1];
            long x0 = tlo < thi ? thi : tlo + 1;
            long xi = x0, yi = x0 - d;
            while (xi < xlim && yi < ylim && x[xi] == y[yi])
                xi++, yi++;
            fd[d] = (int32_t)xi;
            s->work -= 1 + (xi - x0);
            if (odd && bmin <= d && d <= bmax && bd[d] <= xi) {
                *ret_x = (int32_t)xi;
                *ret_y = (int32_t)yi;
                return true;
            }
            if (s->work < 0)
                return false;
        }

        /* The same backward from the end. */
        if (bmin > dmin)
            bd[--bmin - 1] = INT32_MAX;
        else
            ++bmin;
        if (bmax < dmax)
            bd[++bmax + 1] = INT32_MAX;
        else
            --bmax;
        for (long d = bmax; d >= bmin; d -= 2) {
            long tlo = bd[d - 1], thi = bd[d + 1];
            long x0 = tlo < thi ? tlo : thi - 1;
            long xi = x0, yi = x0 - d;
            while (xoff < xi && yoff < yi && x[xi - 1] == y[yi - 1])
                xi--, yi--;
            bd[d] = (int32_t)xi;
            s->work -= 1 + (x0 - xi);
            if (!odd && fmin <= d && d <= fmax && xi <= fd[d]) {
                *ret_x = (int32_t)xi;
                *ret_y = (int32_t)yi;
                return true;
            }
            if (s->work < 0)
                return false;
        }
    }
}

/* Marks x[xoff..xlim) deleted and y[yoff..ylim) inserted. */
static void mark_range(struct side *s, const struct range *r)
{
    for (int32_t i = r->xoff; i < r->xlim; i++)
        s[0].changed[s[0].map[i]] = 1;
    for (int32_t j = r->yoff; j < r->ylim; j++)
        s[1].changed[s[1].map[j]] = 1;
}

/*
 * Marks the changed lines of a shortest edit script between the kept lines of both sides,
 * dividing the problem at middle snakes with a stack of parts in place of recursion (the stack
 * stays as deep as the recursion would, O(log D)). Once the work cap is reached, each remaining
 * part loses only its common first and last lines. 0 (minimal), TEXTDIFF_COARSE, -ENOMEM.
 */
static int search_run(struct side *s, uint64_t max_work)
{
    struct search se = {.x = s[0].seq, .y = s[1].seq};
    se.work = max_work > INT64_MAX ? INT64_MAX : (int64_t)max_work;
    /* Diagonals run from -ny - 1 to nx + 1. */
    size_t ndiag = (size_t)s[0].nseq + s[1].nseq + 3;
    int32_t *fdv = malloc(ndiag * sizeof(*fdv));
    int32_t *bdv = malloc(ndiag * sizeof(*bdv));
    struct range *stack = NULL;
    size_t depth = 0, cap = 0;
    bool coarse = false;
    int r = -ENOMEM;
    if (!fdv || !bdv || ARRAY_GROW(stack, 1, cap) < 0)
        goto out;
    se.fd = fdv + s[1].nseq + 1;
    se.bd = bdv + s[1].nseq + 1;
    stack[depth++] = (struct range){0, (int32_t)s[0].nseq, 0, (int32_t)s[1].nseq};
    while (depth > 0) {
        struct range g = stack[--depth];
        while (g.xoff < g.xlim && g.yoff < g.ylim && se.x[g.xoff] == se.y[g.yoff])
            g.xoff++, g.yoff++;
        while (g.xoff < g.xlim && g.yoff < g.ylim && se.x[g.xlim - 1] == se.y[g.ylim - 1])
            g.xlim--, g.ylim--;
        int32_t xmid, ymid;
        if (g.xoff == g.xlim || g.yoff == g.ylim || coarse) {
            mark_range(s, &g);
        } else if (!middle_snake(&se, &g, &xmid, &ymid)) {
            coarse = true;
            mark_range(s, &g);
        } else {
            if (ARRAY_GROW(stack, depth + 2, cap) < 0)
                goto out;
            stack[depth++] = (struct range){xmid, g.xlim, ymid, g.ylim};
            stack[depth++] = (struct range){g.xoff, xmid, g.yoff, ymid};
        }
    }
    r = coarse ? TEXTDIFF_COARSE : 0;
out:
    free(fdv);
    free(bdv);
    free(stack);
    return r;
}

/* A run of changed lines: a's lines i..i+del replaced by b's lines j..j+ins. */
struct change {
    uint32_t i, j, del, ins;
};

/* Lists the runs of changed lines in order, walking both sides' flags together. 0 or -ENOMEM. */
static int list_changes(const struct side *s, struct change **ret_v, size_t *ret_n)
{
    struct change *v = NULL;
    size_t n = 0, cap = 0;
    uint32_t i = 0, j = 0;
    while (i < s[0].n || j < s[1].n) {
        if ((i < s[0].n && s[0].changed[i]) || (j < s[1].n && s[1].changed[j])) {
            struct change c = {.i = i, .j = j};
            while (i < s[0].n && s[0].changed[i])
                i++;
            while (j < s[1].n && s[1].changed[j])
                j++;
            c.del = i - c.i;
            c.ins = j - c.j;
            if (ARRAY_GROW(v, n + 1, cap) < 0) {
                free(v);
                return -ENOMEM;
            }
            v[n++] = c;
        } else {
            /* Unchanged lines pair up one to one, in order. */
            assert(i < s[0].n && j < s[1].n);
            i++, j++;
        }
    }
    *ret_v = v;
    *ret_n = n;
    return 0;
}

/* Appends one line of s tagged ' ', '-' or '+', with the marker when it has no newline. */
static int emit_line(struct buf *out, char tag, const struct side *s, uint32_t i)
{
    const char *p = s->p + s->off[i];
    size_t len = s->off[i + 1] - s->off[i];
    int r = buf_add(out, &tag, 1);
    if (r == 0)
        r = buf_add(out, p, len);
    if (r == 0 && p[len - 1] != '\n')
        r = buf_addstr(out, "\n\\ No newline at end of file\n");
    return r;
}

/* Appends lines [from, to) of s, each tagged. */
static int emit_lines(struct buf *out, char tag, const struct side *s, uint32_t from, uint32_t to)
{
    for (uint32_t i = from; i < to; i++) {
        int r = emit_line(out, tag, s, i);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Appends a hunk header's range of lines [from, to) as GNU diff writes it. */
static int emit_range(struct buf *out, char tag, uint32_t from, uint32_t to)
{
    if (to == from)
        return buf_addf(out, "%c%u,0", tag, from);
    if (to - from == 1)
        return buf_addf(out, "%c%u", tag, from + 1);
    return buf_addf(out, "%c%u,%u", tag, from + 1, to - from);
}

/* Appends the hunk made of changes c[0..n), with up to ctx lines of context around them. */
static int emit_hunk(struct buf *out, const struct side *s, const struct change *c, size_t n,
                     uint32_t ctx)
{
    uint32_t lead = c[0].i < ctx ? c[0].i : ctx;
    uint32_t end = c[n - 1].i + c[n - 1].del;
    uint32_t tail = s[0].n - end < ctx ? s[0].n - end : ctx;
    int r = buf_addstr(out, "@@ ");
    if (r == 0)
        r = emit_range(out, '-', c[0].i - lead, end + tail);
    if (r == 0)
        r = buf_addstr(out, " ");
    if (r == 0)
        r = emit_range(out, '+', c[0].j - lead, c[n - 1].j + c[n - 1].ins + tail);
    if (r == 0)
        r = buf_addstr(out, " @@\n");
    uint32_t pos = c[0].i - lead;
    for (size_t k = 0; k < n && r == 0; k++) {
        r = emit_lines(out, ' ', &s[0], pos, c[k].i);
        if (r == 0)
            r = emit_lines(out, '-', &s[0], c[k].i, c[k].i + c[k].del);
        if (r == 0)
            r = emit_lines(out, '+', &s[1], c[k].j, c[k].j + c[k].ins);
        pos = c[k].i + c[k].del;
    }
    if (r == 0)
        r = emit_lines(out, ' ', &s[0], pos, end + tail);
    return r;
}

static bool label_needs_quotes(const char *l)
{
    for (const unsigned char *p = (const unsigned char *)l; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == '"' || *p == '\\')
            return true;
    return false;
}

/* Appends "<prefix> <label>\n", the label C-quoted when it needs to be (see the header). */
static int emit_label(struct buf *out, const char *prefix, const char *label)
{
    int r = buf_addf(out, "%s ", prefix);
    if (r < 0 || !label_needs_quotes(label))
        return r < 0 ? r : buf_addf(out, "%s\n", label);
    r = buf_addstr(out, "\"");
    for (const unsigned char *p = (const unsigned char *)label; *p && r == 0; p++) {
        if (*p == '"' || *p == '\\')
            r = buf_addf(out, "\\%c", *p);
        else if (*p == '\n')
            r = buf_addstr(out, "\\n");
        else if (*p == '\t')
            r = buf_addstr(out, "\\t");
        else if (*p < 0x20 || *p == 0x7f)
            r = buf_addf(out, "\\%03o", *p);
        else
            r = buf_add(out, p, 1);
    }
    return r < 0 ? r : buf_addstr(out, "\"\n");
}

/* Appends the headers and every hunk of the changes c[0..n) (n > 0). */
static int emit_diff(struct buf *out, const struct side *s, const struct change *c, size_t n,
                     const char *label_a, const char *label_b, uint32_t ctx)
{
    int r = emit_label(out, "---", label_a);
    if (r == 0)
        r = emit_label(out, "+++", label_b);
    for (size_t first = 0; first < n && r == 0;) {
        /* Changes at most 2 * ctx unchanged lines apart share a hunk. */
        size_t last = first;
        while (last + 1 < n &&
               (uint64_t)c[last + 1].i - (c[last].i + c[last].del) <= 2 * (uint64_t)ctx)
            last++;
        r = emit_hunk(out, s, c + first, last - first + 1, ctx);
        first = last + 1;
    }
    return r;
}

int textdiff_unified_capped(const char *a, size_t alen, const char *b, size_t blen,
                            const char *label_a, const char *label_b, int context,
                            uint64_t max_work, struct buf *out)
{
    if (!label_a || !label_b || context < 0 || (!a && alen) || (!b && blen))
        return -EINVAL;
    if (alen > TEXTDIFF_MAX_INPUT || blen > TEXTDIFF_MAX_INPUT)
        return -EFBIG;
    struct side s[2] = {0};
    struct change *chg = NULL;
    size_t nchg = 0;
    size_t out_len = out->len;
    int r = side_split(&s[0], a, alen);
    if (r == 0)
        r = side_split(&s[1], b, blen);
    if (r == 0)
        r = classify(s);
    int found = r;
    if (r == 0)
        found = r = search_run(s, max_work);
    if (r >= 0)
        r = list_changes(s, &chg, &nchg);
    if (r >= 0 && nchg > 0)
        r = emit_diff(out, s, chg, nchg, label_a, label_b, (uint32_t)context);
    if (r < 0 && out->len != out_len) {
        out->len = out_len;
        out->data[out_len] = '\0';
    }
    free(chg);
    side_release(&s[0]);
    side_release(&s[1]);
    return r < 0 ? r : found;
}

int textdiff_unified(const char *a, size_t alen, const char *b, size_t blen, const char *label_a,
                     const char *label_b, int context, struct buf *out)
{
    return textdiff_unified_capped(a, alen, b, blen, label_a, label_b, context, TEXTDIFF_MAX_WORK,
                                   out);
}

bool textdiff_is_binary(const char *p, size_t n)
{
    return n > 0 && (memchr(p, '\0', n) != NULL || !utf8_valid(p, n));
}
