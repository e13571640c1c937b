/* textdiff: hand cases checked against GNU diff -u's output, then randomized pairs whose patch
 * must apply (with a strict applier here and with GNU patch when installed), with as many changed
 * lines as GNU diff --minimal finds, and byte for byte GNU diff's output where the alignment is
 * unique; the work cap's coarse answer must apply too. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/fs.h"
#include "util/textdiff.h"

struct hand_case {
    const char *name;
    const char *a, *b;
    int context;
    const char *expect; /* GNU diff -U<context> --label a --label b */
};

/* Made with GNU diff 3.8. */
static const struct hand_case hand_cases[] = {
    {"identical", "a\nb\n", "a\nb\n", 3, ""},
    {"both_empty", "", "", 3, ""},
    {"identical_no_eol", "a\nb", "a\nb", 3, ""},
    {"add_file", "", "a\nb\n", 3,
     "--- a\n"
     "+++ b\n"
     "@@ -0,0 +1,2 @@\n"
     "+a\n"
     "+b\n"},
    {"delete_all", "a\nb\n", "", 3,
     "--- a\n"
     "+++ b\n"
     "@@ -1,2 +0,0 @@\n"
     "-a\n"
     "-b\n"},
    {"insert_start", "b\nc\nd\ne\n", "a\nb\nc\nd\ne\n", 3,
     "--- a\n"
     "+++ b\n"
     "@@ -1,3 +1,4 @@\n"
     "+a\n"
     " b\n"
     " c\n"
     " d\n"},
    {"insert_end", "a\nb\nc\nd\n", "a\nb\nc\nd\ne\n", 3,
     "--- a\n"
     "+++ b\n"
     "@@ -2,3 +2,4 @@\n"
     " b\n"
     " c\n"
     " d\n"
     "+e\n"},
    {"eol_added", "a\nb", "a\nb\n", 3,
     "--- a\n"
     "+++ b\n"
     "@@ -1,2 +1,2 @@\n"
     " a\n"
     "-b\n"
     "\\ No newline at end of file\n"
     "+b\n"},
    {"eol_removed", "a\nb\n", "a\nb", 3,
     "--- a\n"
     "+++ b\n"
     "@@ -1,2 +1,2 @@\n"
     " a\n"
     "-b\n"
     "+b\n"
     "\\ No newline at end of file\n"},
    {"no_eol_context", "a\nb\nc", "a\nB\nc", 3,
     "--- a\n"
     "+++ b\n"
     "@@ -1,3 +1,3 @@\n"
     " a\n"
     "-b\n"
     "+B\n"
     " c\n"
     "\\ No newline at end of file\n"},
    {"one_line", "x", "y", 3,
     "--- a\n"
     "+++ b\n"
     "@@ -1 +1 @@\n"
     "-x\n"
     "\\ No newline at end of file\n"
     "+y\n"
     "\\ No newline at end of file\n"},
    {"crlf", "a\r\nb\r\nc\r\n", "a\r\nb\nc\r\n", 3,
     "--- a\n"
     "+++ b\n"
     "@@ -1,3 +1,3 @@\n"
     " a\r\n"
     "-b\r\n"
     "+b\n"
     " c\r\n"},
    {"ctx0", "a\nb\nc\n", "a\nc\n", 0,
     "--- a\n"
     "+++ b\n"
     "@@ -2 +1,0 @@\n"
     "-b\n"},
    {"ctx0_insert", "a\nc\n", "a\nb\nc\n", 0,
     "--- a\n"
     "+++ b\n"
     "@@ -1,0 +2 @@\n"
     "+b\n"},
    {"merge", "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n16\n17\n18\n19\n20\n",
     "1\n2\n3\n4\nx5\n6\n7\n8\n9\n10\n11\nx12\n13\n14\n15\n16\n17\n18\n19\n20\n", 3,
     "--- a\n"
     "+++ b\n"
     "@@ -2,14 +2,14 @@\n"
     " 2\n"
     " 3\n"
     " 4\n"
     "-5\n"
     "+x5\n"
     " 6\n"
     " 7\n"
     " 8\n"
     " 9\n"
     " 10\n"
     " 11\n"
     "-12\n"
     "+x12\n"
     " 13\n"
     " 14\n"
     " 15\n"},
    {"split", "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n16\n17\n18\n19\n20\n",
     "1\n2\n3\n4\nx5\n6\n7\n8\n9\n10\n11\n12\nx13\n14\n15\n16\n17\n18\n19\n20\n", 3,
     "--- a\n"
     "+++ b\n"
     "@@ -2,7 +2,7 @@\n"
     " 2\n"
     " 3\n"
     " 4\n"
     "-5\n"
     "+x5\n"
     " 6\n"
     " 7\n"
     " 8\n"
     "@@ -10,7 +10,7 @@\n"
     " 10\n"
     " 11\n"
     " 12\n"
     "-13\n"
     "+x13\n"
     " 14\n"
     " 15\n"
     " 16\n"},
    {"boundaries", "1\n2\n3\n4\n5\n6\n7\n8\n", "x1\n2\n3\n4\n5\n6\n7\nx8\n", 2,
     "--- a\n"
     "+++ b\n"
     "@@ -1,3 +1,3 @@\n"
     "-1\n"
     "+x1\n"
     " 2\n"
     " 3\n"
     "@@ -6,3 +6,3 @@\n"
     " 6\n"
     " 7\n"
     "-8\n"
     "+x8\n"},
};

static void test_hand_cases(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof(hand_cases) / sizeof(hand_cases[0]); k++) {
        const struct hand_case *c = &hand_cases[k];
        struct buf out = BUF_INIT(0);
        int r =
            textdiff_unified(c->a, strlen(c->a), c->b, strlen(c->b), "a", "b", c->context, &out);
        if (r != 0 || strcmp(buf_cstr(&out), c->expect) != 0)
            fail_msg("case %s: %d\n%s", c->name, r, buf_cstr(&out));
        buf_release(&out);
    }
}

/* A line of a patch or a text: bytes p[0..len). */
struct span {
    const char *p;
    size_t len;
};

/* Splits p[0..n) into lines that keep their '\n'. Caller frees *ret. */
static size_t split_lines(const char *p, size_t n, struct span **ret)
{
    struct span *v = malloc((n + 1) * sizeof(*v));
    assert_non_null(v);
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(p + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - p) + 1 : n;
        v[k++] = (struct span){p + i, e - i};
        i = e;
    }
    *ret = v;
    return k;
}

/* Reads "l" or "l,s" at *pp. */
static void parse_range(const char **pp, unsigned long *l, unsigned long *s)
{
    char *end;
    *l = strtoul(*pp, &end, 10);
    *s = 1;
    if (*end == ',')
        *s = strtoul(end + 1, &end, 10);
    *pp = end;
}

/*
 * Applies the unified diff patch[0..plen) to a[0..alen) the strict way (no fuzz, no offset): every
 * hunk's context and deleted lines must be a's lines at the stated place, its counts must match
 * its body, hunks must come in order without overlap, the new side's line numbers must be those
 * of the result, and changes must be at most ctx lines from the hunk's edges. Returns the result.
 */
static void apply_strict(const char *a, size_t alen, const char *patch, size_t plen, int ctx,
                         struct buf *res)
{
    struct span *al, *pl;
    size_t na = split_lines(a, alen, &al);
    size_t np = split_lines(patch, plen, &pl);
    struct span *oldv = malloc((np + 1) * sizeof(*oldv));
    struct span *newv = malloc((np + 1) * sizeof(*newv));
    assert_non_null(oldv);
    assert_non_null(newv);
    size_t cur = 0; /* next line of a to copy */
    size_t k = 0;
    if (np > 0) {
        assert_true(np >= 3);
        assert_memory_equal(pl[0].p, "--- ", 4);
        assert_memory_equal(pl[1].p, "+++ ", 4);
        k = 2;
    }
    while (k < np) {
        const char *h = pl[k].p;
        assert_memory_equal(h, "@@ -", 4);
        h += 4;
        unsigned long ol, os, nl, ns;
        parse_range(&h, &ol, &os);
        assert_memory_equal(h, " +", 2);
        h += 2;
        parse_range(&h, &nl, &ns);
        assert_memory_equal(h, " @@\n", 4);
        k++;
        size_t no = 0, nn = 0, lead = 0, trail = 0;
        bool seen_change = false;
        char last = 0;
        for (; k < np && pl[k].p[0] != '@'; k++) {
            char t = pl[k].p[0];
            struct span body = {pl[k].p + 1, pl[k].len - 1};
            if (t == '\\') {
                assert_int_equal(pl[k].len, strlen("\\ No newline at end of file\n"));
                assert_memory_equal(pl[k].p, "\\ No newline at end of file\n", pl[k].len);
                assert_true(last != 0 && last != '\\');
                if (last != '+')
                    oldv[no - 1].len--;
                if (last != '-')
                    newv[nn - 1].len--;
                last = t;
                continue;
            }
            assert_true(t == ' ' || t == '-' || t == '+');
            assert_true(body.len > 0 && body.p[body.len - 1] == '\n');
            if (t != '+')
                oldv[no++] = body;
            if (t != '-')
                newv[nn++] = body;
            if (t == ' ' && !seen_change)
                lead++;
            else if (t == ' ')
                trail++;
            else if (trail > 2 * (size_t)ctx)
                fail_msg("%zu lines of context inside a hunk", trail);
            if (t != ' ') {
                seen_change = true;
                trail = 0;
            }
            last = t;
        }
        assert_true(seen_change);
        assert_int_equal(no, os);
        assert_int_equal(nn, ns);
        assert_true(lead <= (size_t)ctx && trail <= (size_t)ctx);
        size_t at = os ? ol - 1 : ol; /* 0-based first old line */
        assert_true(at >= cur && at + os <= na);
        if (at > 0)
            assert_true(lead == (size_t)ctx); /* context not cut short without a reason */
        if (cur > 0)
            assert_true(at > cur); /* hunks with no line between them are one hunk */
        size_t new_at = ns ? nl - 1 : nl;
        size_t res_lines = 0;
        for (size_t i = 0; i < res->len; i++)
            res_lines += res->data[i] == '\n';
        assert_int_equal(new_at, res_lines + (at - cur));
        for (; cur < at; cur++)
            assert_int_equal(buf_add(res, al[cur].p, al[cur].len), 0);
        for (size_t i = 0; i < no; i++) {
            assert_int_equal(oldv[i].len, al[at + i].len);
            assert_memory_equal(oldv[i].p, al[at + i].p, oldv[i].len);
        }
        for (size_t i = 0; i < nn; i++)
            assert_int_equal(buf_add(res, newv[i].p, newv[i].len), 0);
        cur = at + no;
        if (cur < na)
            assert_true(trail == (size_t)ctx);
    }
    for (; cur < na; cur++)
        assert_int_equal(buf_add(res, al[cur].p, al[cur].len), 0);
    free(al);
    free(pl);
    free(oldv);
    free(newv);
}

/* xorshift64*: reproducible pseudo-random numbers for the generated texts. */
static uint64_t rng_state;

static uint64_t rnd(uint64_t n)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (rng_state * 0x2545f4914f6cdd1dULL >> 11) % n;
}

/* Appends one generated line: drawn from `pool` distinct texts (or unique when pool is 0),
 * ending in CRLF one time in `crlf` (never when 0). */
static void gen_line(struct buf *t, unsigned pool, unsigned crlf, unsigned *uniq)
{
    if (pool)
        assert_int_equal(buf_addf(t, "line %u", (unsigned)rnd(pool)), 0);
    else
        assert_int_equal(buf_addf(t, "u%u", (*uniq)++), 0);
    assert_int_equal(buf_addstr(t, crlf && rnd(crlf) == 0 ? "\r\n" : "\n"), 0);
}

/* Drops the final newline one time in four. */
static void maybe_cut_eol(struct buf *t)
{
    if (t->len && rnd(4) == 0)
        t->data[--t->len] = '\0';
}

/* A text of n lines, and a version of it with random deletions, insertions and replacements. */
static void gen_pair(struct buf *a, struct buf *b, unsigned n, unsigned pool, unsigned crlf,
                     unsigned rate)
{
    unsigned uniq = 0;
    for (unsigned i = 0; i < n; i++)
        gen_line(a, pool, crlf, &uniq);
    struct span *al;
    size_t na = split_lines(a->data ? a->data : "", a->len, &al);
    for (size_t i = 0; i <= na; i++) {
        while (rnd(rate) == 0)
            gen_line(b, pool, crlf, &uniq); /* inserted */
        if (i == na)
            break;
        unsigned op = (unsigned)rnd(rate);
        if (op == 0)
            continue; /* deleted */
        if (op == 1)
            gen_line(b, pool, crlf, &uniq); /* replaced */
        else
            assert_int_equal(buf_add(b, al[i].p, al[i].len), 0);
    }
    free(al);
    maybe_cut_eol(a);
    maybe_cut_eol(b);
}

/* Runs a shell command; its exit status. */
static int run_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run_status(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof(cmd));
    int st = system(cmd);
    assert_true(st != -1 && WIFEXITED(st));
    return WEXITSTATUS(st);
}

/* Counts a diff's deleted and inserted lines. */
static void count_changes(const struct buf *d, size_t *ret_del, size_t *ret_ins)
{
    struct span *l;
    size_t n = split_lines(buf_cstr(d), d->len, &l);
    *ret_del = *ret_ins = 0;
    for (size_t i = 2; i < n; i++) {
        *ret_del += l[i].p[0] == '-';
        *ret_ins += l[i].p[0] == '+';
    }
    free(l);
}

enum {
    CHECK_MINIMAL = 1 << 0, /* as many changed lines as GNU diff --minimal */
    CHECK_EXACT = 1 << 1,   /* GNU diff's output byte for byte */
};

/* Cases kept for GNU patch and diff, run all at once by one shell script (tools_run). */
struct tools {
    bool diff, patch; /* GNU diff, GNU patch on PATH */
    char dir[64];     /* temp dir: <i>.a, <i>.b, <i>.p (our diff), <i>.out, <i>.g (theirs) */
    struct buf script;
    int n;         /* cases */
    int ctx[512];  /* each case's context */
    int mode[512]; /* each case's CHECK_* */
};

static void tools_init(struct tools *t)
{
    memset(t, 0, sizeof(*t));
    t->diff = run_status("diff --version 2>/dev/null | grep -q GNU") == 0;
    t->patch = run_status("patch --version 2>/dev/null | grep -q GNU") == 0;
    snprintf(t->dir, sizeof(t->dir), "/tmp/sqlfs-textdiff-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
}

static void write_file(const char *dir, int i, const char *ext, const struct buf *b)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%d.%s", dir, i, ext);
    FILE *f = fopen(path, "wbe");
    assert_non_null(f);
    assert_int_equal(fwrite(buf_cstr(b), 1, b->len, f), b->len);
    assert_int_equal(fclose(f), 0);
}

/* The contents of dir/<i>.<ext>, or nothing when the file is absent. */
static void read_file(const char *dir, int i, const char *ext, struct buf *b)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%d.%s", dir, i, ext);
    FILE *f = fopen(path, "rbe");
    if (!f) {
        assert_int_equal(errno, ENOENT);
        return;
    }
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        assert_int_equal(buf_add(b, chunk, n), 0);
    assert_int_equal(fclose(f), 0);
}

/* Keeps a case (a, b, our diff d made with ctx) for the tools. */
static void tools_add(struct tools *t, const struct buf *a, const struct buf *b,
                      const struct buf *d, int ctx, int mode)
{
    if (t->n == (int)(sizeof(t->ctx) / sizeof(t->ctx[0])))
        return;
    int i = t->n++;
    t->ctx[i] = ctx;
    t->mode[i] = mode;
    write_file(t->dir, i, "a", a);
    write_file(t->dir, i, "b", b);
    write_file(t->dir, i, "p", d);
    /* An empty diff is no patch: the strict check covered it. */
    if (t->patch && d->len)
        assert_int_equal(
            buf_addf(&t->script, "patch -s -f --binary -o %d.out %d.a < %d.p\n", i, i, i), 0);
    if (t->diff && mode)
        assert_int_equal(buf_addf(&t->script,
                                  "diff %s -U%d --label a --label b %d.a %d.b > %d.g || "
                                  "[ $? -le 1 ]\n",
                                  mode & CHECK_EXACT ? "" : "--minimal", ctx, i, i, i),
                         0);
}

/* Runs the tools on every case kept, checks their answers, removes the files. */
static void tools_run(struct tools *t)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/script", t->dir);
    FILE *f = fopen(path, "we");
    assert_non_null(f);
    fprintf(f, "set -e\ncd '%s'\n%s", t->dir, buf_cstr(&t->script));
    assert_int_equal(fclose(f), 0);
    assert_int_equal(run_status("sh '%s'", path), 0);
    for (int i = 0; i < t->n; i++) {
        struct buf a = BUF_INIT(0), b = BUF_INIT(0), d = BUF_INIT(0), res = BUF_INIT(0),
                   g = BUF_INIT(0);
        read_file(t->dir, i, "a", &a);
        read_file(t->dir, i, "b", &b);
        read_file(t->dir, i, "p", &d);
        if (t->patch && d.len) {
            read_file(t->dir, i, "out", &res);
            if (res.len != b.len || memcmp(buf_cstr(&res), buf_cstr(&b), b.len) != 0)
                fail_msg("case %d: GNU patch did not make b", i);
        }
        if (t->diff && t->mode[i]) {
            read_file(t->dir, i, "g", &g);
            if (t->mode[i] & CHECK_EXACT) {
                if (g.len != d.len || memcmp(buf_cstr(&g), buf_cstr(&d), d.len) != 0)
                    fail_msg("case %d differs from GNU diff:\n%s\n---- GNU:\n%s", i, buf_cstr(&d),
                             buf_cstr(&g));
            } else {
                size_t gd, gi, od, oi;
                count_changes(&g, &gd, &gi);
                count_changes(&d, &od, &oi);
                assert_int_equal(od, gd);
                assert_int_equal(oi, gi);
            }
        }
        buf_release(&a);
        buf_release(&b);
        buf_release(&d);
        buf_release(&res);
        buf_release(&g);
    }
    buf_release(&t->script);
    assert_int_equal(run_status("rm -rf '%s'", t->dir), 0);
}

/*
 * Checks the diff d of a and b (made with ctx lines of context): it applies strictly here, and
 * the case goes to the tools (GNU patch; GNU diff as `mode` says) when t is not NULL.
 */
static void check_diff(struct tools *t, const struct buf *a, const struct buf *b,
                       const struct buf *d, int ctx, int mode)
{
    struct buf res = BUF_INIT(0);
    apply_strict(buf_cstr(a), a->len, buf_cstr(d), d->len, ctx, &res);
    assert_int_equal(res.len, b->len);
    assert_memory_equal(buf_cstr(&res), buf_cstr(b), b->len);
    buf_release(&res);
    bool same = a->len == b->len && memcmp(buf_cstr(a), buf_cstr(b), a->len) == 0;
    assert_true((d->len == 0) == same);
    if (t)
        tools_add(t, a, b, d, ctx, mode);
}

/* Related pairs from a few repeated lines (many equally short scripts), some with CRLF lines. */
static void test_random_pairs(void **state)
{
    (void)state;
    struct tools t;
    tools_init(&t);
    rng_state = 0x5eed1234abcdULL;
    for (int iter = 0; iter < 3000; iter++) {
        struct buf a = BUF_INIT(0), b = BUF_INIT(0), d = BUF_INIT(0);
        unsigned n = (unsigned)rnd(60), pool = 1 + (unsigned)rnd(12);
        gen_pair(&a, &b, n, pool, (unsigned)rnd(4), 2 + (unsigned)rnd(8));
        int ctx = (int)rnd(6);
        assert_int_equal(textdiff_unified(a.data, a.len, b.data, b.len, "a", "b", ctx, &d), 0);
        check_diff(iter % 20 == 0 ? &t : NULL, &a, &b, &d, ctx, CHECK_MINIMAL);
        buf_release(&a);
        buf_release(&b);
        buf_release(&d);
    }
    tools_run(&t);
}

/* Pairs of distinct lines edited without moves: one alignment only, so GNU diff's exact output. */
static void test_random_unique_lines(void **state)
{
    (void)state;
    struct tools t;
    tools_init(&t);
    rng_state = 0xfeedbeef42ULL;
    for (int iter = 0; iter < 100; iter++) {
        struct buf a = BUF_INIT(0), b = BUF_INIT(0), d = BUF_INIT(0);
        unsigned n = (unsigned)rnd(80);
        gen_pair(&a, &b, n, 0, (unsigned)rnd(3), 3 + (unsigned)rnd(20));
        int ctx = (int)rnd(5);
        assert_int_equal(textdiff_unified(a.data, a.len, b.data, b.len, "a", "b", ctx, &d), 0);
        check_diff(&t, &a, &b, &d, ctx, CHECK_EXACT);
        buf_release(&a);
        buf_release(&b);
        buf_release(&d);
    }
    tools_run(&t);
}

/* A cap forcing the coarse answer still gives a patch, and says so. */
static void test_coarse_fallback(void **state)
{
    (void)state;
    struct tools t;
    tools_init(&t);
    rng_state = 0xc0a25eULL;
    int coarse = 0;
    for (int iter = 0; iter < 1000; iter++) {
        struct buf a = BUF_INIT(0), b = BUF_INIT(0), d = BUF_INIT(0);
        gen_pair(&a, &b, (unsigned)rnd(60), 1 + (unsigned)rnd(8), (unsigned)rnd(4),
                 2 + (unsigned)rnd(6));
        int ctx = (int)rnd(4);
        uint64_t cap = rnd(3) == 0 ? 0 : rnd(40);
        int r = textdiff_unified_capped(a.data, a.len, b.data, b.len, "a", "b", ctx, cap, &d);
        assert_true(r == 0 || r == TEXTDIFF_COARSE);
        coarse += r == TEXTDIFF_COARSE;
        check_diff(iter % 20 == 0 ? &t : NULL, &a, &b, &d, ctx, 0);
        buf_release(&a);
        buf_release(&b);
        buf_release(&d);
    }
    assert_true(coarse > 300);
    tools_run(&t);

    /* Coarse at once: the common first and last lines stay, the middle is replaced whole. */
    const char *a = "k1\nk2\nx\ny\nx\nk3\n", *b = "k1\nk2\ny\nx\ny\nk3\n";
    struct buf d = BUF_INIT(0);
    assert_int_equal(textdiff_unified_capped(a, strlen(a), b, strlen(b), "a", "b", 1, 0, &d),
                     TEXTDIFF_COARSE);
    assert_string_equal(buf_cstr(&d), "--- a\n+++ b\n@@ -2,5 +2,5 @@\n k2\n-x\n-y\n-x\n+y\n+x\n+y\n"
                                      " k3\n");
    buf_reset(&d);
    assert_int_equal(
        textdiff_unified_capped(a, strlen(a), b, strlen(b), "a", "b", 1, TEXTDIFF_MAX_WORK, &d), 0);
    assert_string_equal(buf_cstr(&d), "--- a\n+++ b\n@@ -2,5 +2,5 @@\n k2\n-x\n y\n x\n+y\n k3\n");
    buf_release(&d);
}

/* Large inputs: few scattered edits stay minimal under the default cap; two long unrelated
 * texts over a four-line alphabet (a quadratic search) come back coarse, and still apply. */
static void test_large(void **state)
{
    (void)state;
    struct buf a = BUF_INIT(0), b = BUF_INIT(0), d = BUF_INIT(0);
    rng_state = 0x1a26eULL;
    gen_pair(&a, &b, 100000, 0, 0, 2000);
    assert_int_equal(textdiff_unified(a.data, a.len, b.data, b.len, "a", "b", 3, &d), 0);
    check_diff(NULL, &a, &b, &d, 3, 0);
    buf_reset(&a);
    buf_reset(&b);
    buf_reset(&d);
    unsigned uniq = 0;
    for (int i = 0; i < 60000; i++) {
        gen_line(&a, 4, 0, &uniq);
        gen_line(&b, 4, 0, &uniq);
    }
    assert_int_equal(textdiff_unified(a.data, a.len, b.data, b.len, "a", "b", 3, &d),
                     TEXTDIFF_COARSE);
    check_diff(NULL, &a, &b, &d, 3, 0);
    buf_release(&a);
    buf_release(&b);
    buf_release(&d);
}

static void test_errors_and_labels(void **state)
{
    (void)state;
    struct buf out = BUF_INIT(0);
    assert_int_equal(buf_addstr(&out, "kept"), 0);
    assert_int_equal(textdiff_unified("a\n", 2, "b\n", 2, "a", "b", -1, &out), -EINVAL);
    assert_int_equal(textdiff_unified("a\n", 2, "b\n", 2, NULL, "b", 3, &out), -EINVAL);
    assert_int_equal(textdiff_unified(NULL, 1, "b\n", 2, "a", "b", 3, &out), -EINVAL);
    assert_int_equal(textdiff_unified("a\n", 2, "b\n", TEXTDIFF_MAX_INPUT + 1, "a", "b", 3, &out),
                     -EFBIG);
    assert_string_equal(buf_cstr(&out), "kept");
    /* Output over the buffer's cap: nothing appended. */
    out.max = 20;
    assert_int_equal(textdiff_unified("a\n", 2, "b\n", 2, "a", "b", 3, &out), -EFBIG);
    assert_int_equal(out.len, 4);
    assert_string_equal(buf_cstr(&out), "kept");
    out.max = 0;
    buf_reset(&out);
    /* NULL inputs of length 0: an added file. */
    assert_int_equal(textdiff_unified(NULL, 0, "x", 1, "/dev/null", "b/new file", 3, &out), 0);
    assert_string_equal(buf_cstr(&out), "--- /dev/null\n+++ b/new file\n@@ -0,0 +1 @@\n+x\n"
                                        "\\ No newline at end of file\n");
    buf_reset(&out);
    assert_int_equal(textdiff_unified(NULL, 0, NULL, 0, "a", "b", 3, &out), 0);
    assert_int_equal(out.len, 0);
    /* A label that would break its line is C-quoted. */
    assert_int_equal(textdiff_unified("x\n", 2, "y\n", 2, "a\nb\t\"c\\\x01", "b", 3, &out), 0);
    assert_string_equal(buf_cstr(&out),
                        "--- \"a\\nb\\t\\\"c\\\\\\001\"\n+++ b\n@@ -1 +1 @@\n-x\n+y\n");
    buf_release(&out);
}

static void test_is_binary(void **state)
{
    (void)state;
    assert_false(textdiff_is_binary(NULL, 0));
    assert_false(textdiff_is_binary("plain\r\ntext\n", 12));
    assert_false(textdiff_is_binary("caf\xc3\xa9 \xe2\x82\xac\n", 10));
    assert_true(textdiff_is_binary("a\0b", 3));
    assert_true(textdiff_is_binary("\xff\xfe", 2));
    assert_true(textdiff_is_binary("caf\xc3", 4));      /* truncated sequence */
    assert_true(textdiff_is_binary("\xed\xa0\x80", 3)); /* a surrogate */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_cases),
        cmocka_unit_test(test_errors_and_labels),
        cmocka_unit_test(test_is_binary),
        cmocka_unit_test(test_random_pairs),
        cmocka_unit_test(test_random_unique_lines),
        cmocka_unit_test(test_coarse_fallback),
        cmocka_unit_test(test_large),
    };
    return cmocka_run_group_tests_name("textdiff", tests, NULL, NULL);
}
