/*
 * transfer — `sqlfs cp`: a file through PUT/GET files/{path}, a directory as a tar through
 * POST ingest and GET export (docs/API.md "Files", "Ingest and export").
 *
 * What comes from the server is not trusted to stay inside the local target: a downloaded file
 * goes to a temporary file beside the target and is renamed over it only once complete, and an
 * export is extracted by libarchive with ARCHIVE_EXTRACT_SECURE_NODOTDOT, _NOABSOLUTEPATHS and
 * _SYMLINKS (no entry can name a path outside the target directory, or write through a symlink
 * that an earlier entry or the disk put there).
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/commands_internal.h"
#include "util/buf.h"

/* One side of a copy: a local path, or a sandbox's path. */
struct place {
    char *id;         /* the sandbox, NULL for a local path */
    const char *path; /* the path (for a sandbox: absolute) */
};

/* "ID:/path" names a sandbox's path: a non-empty part without '/' before the first ':'. */
static int parse_place(const char *arg, struct place *ret)
{
    const char *colon = strchr(arg, ':');
    *ret = (struct place){.path = arg};
    if (!colon || colon == arg || memchr(arg, '/', (size_t)(colon - arg)))
        return 0;
    if (colon[1] != '/')
        return cmd_usage("cp", "%s: the sandbox path must be absolute (ID:/path)", arg);
    ret->id = strndup(arg, (size_t)(colon - arg));
    ret->path = colon + 1;
    return ret->id ? 0 : client_say(CLIENT_EXIT_FAILURE, "out of memory");
}

/* "/v1/sandboxes/ID/files/PATH" */
static char *files_path(const struct place *p)
{
    struct buf b = BUF_INIT(0);
    char *base = cmd_sandbox_path(p->id, "/files");
    int r = base ? buf_addstr(&b, base) : -ENOMEM;
    if (r == 0)
        r = client_escape(&b, p->path, true);
    free(base);
    if (r < 0) {
        buf_release(&b);
        return NULL;
    }
    return buf_detach(&b, NULL);
}

/* "/v1/sandboxes/ID/WHAT?basePath=PATH[extra]" */
static char *base_path_query(const struct place *p, const char *what, const char *extra)
{
    struct buf b = BUF_INIT(0);
    char *base = cmd_sandbox_path(p->id, what);
    int r = base ? buf_addf(&b, "%s?basePath=", base) : -ENOMEM;
    if (r == 0)
        r = client_escape(&b, p->path, false);
    if (r == 0)
        r = buf_addstr(&b, extra);
    free(base);
    if (r < 0) {
        buf_release(&b);
        return NULL;
    }
    return buf_detach(&b, NULL);
}

/* Sends `f` (len bytes, from its start) as the body of method `path`; a JSON answer is printed
 * with --json. */
static int send_file(struct client *c, const char *method, const char *path, const char *ctype,
                     FILE *f, long long len)
{
    struct client_request req = {
        .method = method, .path = path, .content_type = ctype, .upload = f, .upload_len = len};
    struct client_reply rep = CLIENT_REPLY_INIT;
    int rc = client_send(c, &req, &rep);
    if (rc == CLIENT_EXIT_OK && rep.status / 100 != 2)
        rc = client_fail(&rep);
    if (rc == CLIENT_EXIT_OK && c->json && rep.body.len) {
        json_t *ans = json_loadb(rep.body.data, rep.body.len, 0, NULL);
        if (ans)
            rc = client_print_json(ans);
        json_decref(ans);
    }
    buf_release(&rep.body);
    return rc;
}

/* cp LOCAL ID:/path */
static int put_file(struct client *c, const char *local, const struct place *dst)
{
    FILE *f = fopen(local, "rbe");
    struct stat st;
    if (!f || fstat(fileno(f), &st) < 0) {
        int e = errno;
        if (f)
            fclose(f);
        return client_say(CLIENT_EXIT_FAILURE, "%s: %s", local, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        fclose(f);
        return client_say(CLIENT_EXIT_FAILURE,
                          "%s is not a regular file (cp -r copies a directory)", local);
    }
    char *path = files_path(dst);
    int rc = path ? send_file(c, "PUT", path, "application/octet-stream", f, (long long)st.st_size)
                  : client_say(CLIENT_EXIT_FAILURE, "out of memory");
    free(path);
    fclose(f);
    return rc;
}

/* The process's umask (read by setting it back). */
static mode_t current_umask(void)
{
    mode_t m = umask(0);
    umask(m);
    return m;
}

/* Writes a 2xx body to a FILE. */
static int sink_file(void *ctx, const char *p, size_t n)
{
    if (fwrite(p, 1, n, ctx) != n)
        return client_say(-EIO, "cannot write: %s", strerror(errno));
    return 0;
}

/* GETs `path` into `f`; CLIENT_EXIT_OK when the answer was 2xx and all of it was written. */
static int get_into(struct client *c, const char *path, FILE *f)
{
    struct client_request req = {.method = "GET", .path = path, .sink = sink_file, .sink_ctx = f};
    struct client_reply rep = CLIENT_REPLY_INIT;
    int rc = client_send(c, &req, &rep);
    if (rc == CLIENT_EXIT_OK && rep.status / 100 != 2)
        rc = client_fail(&rep);
    if (rc == CLIENT_EXIT_OK && fflush(f) != 0)
        rc = client_say(CLIENT_EXIT_FAILURE, "cannot write: %s", strerror(errno));
    buf_release(&rep.body);
    return rc;
}

/* cp ID:/path LOCAL (LOCAL a directory: the file keeps its name in it). */
static int get_file(struct client *c, const struct place *src, const char *local)
{
    struct stat st;
    char *target = NULL;
    if (stat(local, &st) == 0 && S_ISDIR(st.st_mode)) {
        const char *name = strrchr(src->path, '/');
        name = name ? name + 1 : src->path;
        if (!*name)
            return client_say(CLIENT_EXIT_FAILURE, "%s:%s names a directory: use cp -r", src->id,
                              src->path);
        if (asprintf(&target, "%s/%s", local, name) < 0)
            return client_say(CLIENT_EXIT_FAILURE, "out of memory");
    } else if (!(target = strdup(local))) {
        return client_say(CLIENT_EXIT_FAILURE, "out of memory");
    }
    char *tmp = NULL, *path = files_path(src);
    int fd = -1, rc = CLIENT_EXIT_FAILURE;
    FILE *f = NULL;
    if (!path || asprintf(&tmp, "%s.sqlfs-XXXXXX", target) < 0) {
        tmp = NULL;
        client_say(rc, "out of memory");
        goto out;
    }
    if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0 || !(f = fdopen(fd, "wb"))) {
        client_say(rc, "cannot create a file beside %s: %s", target, strerror(errno));
        goto out;
    }
    fd = -1;
    rc = get_into(c, path, f);
    if (rc == CLIENT_EXIT_OK && fchmod(fileno(f), 0644 & ~current_umask()) < 0)
        rc = client_say(CLIENT_EXIT_FAILURE, "%s: %s", target, strerror(errno));
    if (fclose(f) != 0 && rc == CLIENT_EXIT_OK)
        rc = client_say(CLIENT_EXIT_FAILURE, "cannot write %s: %s", target, strerror(errno));
    f = NULL;
    if (rc == CLIENT_EXIT_OK && rename(tmp, target) < 0)
        rc = client_say(CLIENT_EXIT_FAILURE, "cannot write %s: %s", target, strerror(errno));
    if (rc != CLIENT_EXIT_OK)
        (void)unlink(tmp);
out:
    if (fd >= 0)
        close(fd);
    if (f)
        fclose(f);
    free(tmp);
    free(path);
    free(target);
    return rc;
}

/* Copies the data of the current entry of `disk` into `w`. */
static int copy_entry_data(struct archive *disk, struct archive *w)
{
    char chunk[65536];
    la_ssize_t got;
    while ((got = archive_read_data(disk, chunk, sizeof(chunk))) > 0)
        if (archive_write_data(w, chunk, (size_t)got) != got)
            return client_say(CLIENT_EXIT_FAILURE, "tar: %s", archive_error_string(w));
    if (got < 0)
        return client_say(CLIENT_EXIT_FAILURE, "%s", archive_error_string(disk));
    return CLIENT_EXIT_OK;
}

/* Writes the tree under `dir` into `w`, entries named relative to it (dir itself left out);
 * symlinks are stored as links, never followed. */
static int tar_tree(const char *dir, struct archive *w)
{
    struct archive *disk = archive_read_disk_new();
    if (!disk)
        return client_say(CLIENT_EXIT_FAILURE, "out of memory");
    int rc = CLIENT_EXIT_OK;
    struct archive_entry *e = archive_entry_new();
    if (!e || archive_read_disk_set_symlink_physical(disk) != ARCHIVE_OK ||
        archive_read_disk_open(disk, dir) != ARCHIVE_OK) {
        rc = client_say(CLIENT_EXIT_FAILURE, "%s: %s", dir,
                        e ? archive_error_string(disk) : "out of memory");
        goto out;
    }
    size_t prefix = strlen(dir);
    for (;;) {
        archive_entry_clear(e);
        int r = archive_read_next_header2(disk, e);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN) {
            rc = client_say(CLIENT_EXIT_FAILURE, "%s", archive_error_string(disk));
            break;
        }
        (void)archive_read_disk_descend(disk);
        const char *name = archive_entry_pathname(e);
        if (!name || strncmp(name, dir, prefix) != 0)
            continue;
        name += prefix;
        name += strspn(name, "/");
        if (!*name)
            continue; /* the directory itself */
        mode_t type = archive_entry_filetype(e);
        if (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK) {
            fprintf(stderr, "sqlfs: skipping %s/%s: not a file, directory or symlink\n", dir, name);
            continue;
        }
        char *rel = strdup(name);
        if (!rel) {
            rc = client_say(CLIENT_EXIT_FAILURE, "out of memory");
            break;
        }
        archive_entry_set_pathname(e, rel);
        free(rel);
        if (archive_write_header(w, e) < ARCHIVE_WARN) {
            rc = client_say(CLIENT_EXIT_FAILURE, "tar: %s", archive_error_string(w));
            break;
        }
        if (type == AE_IFREG && (rc = copy_entry_data(disk, w)) != CLIENT_EXIT_OK)
            break;
    }
out:
    archive_entry_free(e);
    archive_read_free(disk);
    return rc;
}

/* cp -r DIR ID:/path: DIR's contents ingested under /path. */
static int put_tree(struct client *c, const char *dir, const struct place *dst)
{
    struct stat st;
    if (stat(dir, &st) < 0)
        return client_say(CLIENT_EXIT_FAILURE, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return client_say(CLIENT_EXIT_FAILURE, "%s is not a directory", dir);
    /* the directory without trailing slashes, so that entries are named after it plainly */
    char *root = strdup(dir);
    if (!root)
        return client_say(CLIENT_EXIT_FAILURE, "out of memory");
    for (size_t n = strlen(root); n > 1 && root[n - 1] == '/'; n--)
        root[n - 1] = '\0';
    FILE *tmp = tmpfile();
    struct archive *w = archive_write_new();
    char *path = NULL;
    int rc = CLIENT_EXIT_FAILURE;
    if (!tmp || !w) {
        client_say(rc, "cannot create a temporary file: %s", strerror(errno));
        goto out;
    }
    if (archive_write_set_format_pax_restricted(w) != ARCHIVE_OK ||
        archive_write_open_FILE(w, tmp) != ARCHIVE_OK) {
        client_say(rc, "tar: %s", archive_error_string(w));
        goto out;
    }
    rc = tar_tree(root, w);
    if (archive_write_close(w) != ARCHIVE_OK && rc == CLIENT_EXIT_OK)
        rc = client_say(CLIENT_EXIT_FAILURE, "tar: %s", archive_error_string(w));
    long long len = ftello(tmp);
    if (rc == CLIENT_EXIT_OK && (fflush(tmp) != 0 || len < 0 || fseeko(tmp, 0, SEEK_SET) < 0))
        rc = client_say(CLIENT_EXIT_FAILURE, "cannot write a temporary file: %s", strerror(errno));
    if (rc != CLIENT_EXIT_OK)
        goto out;
    if (!(path = base_path_query(dst, "/ingest", ""))) {
        rc = client_say(CLIENT_EXIT_FAILURE, "out of memory");
        goto out;
    }
    rc = send_file(c, "POST", path, "application/x-tar", tmp, len);
out:
    if (w)
        archive_write_free(w);
    if (tmp)
        fclose(tmp);
    free(path);
    free(root);
    return rc;
}

/* Extracts the tar `in` into the current directory, refusing what would leave it. */
static int extract(struct archive *in, const char *dir)
{
    struct archive *out = archive_write_disk_new();
    if (!out)
        return client_say(CLIENT_EXIT_FAILURE, "out of memory");
    int flags = ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS;
    int rc = CLIENT_EXIT_OK;
    if (archive_write_disk_set_options(out, flags) != ARCHIVE_OK) {
        rc = client_say(CLIENT_EXIT_FAILURE, "%s", archive_error_string(out));
        goto out;
    }
    struct archive_entry *e;
    int r;
    while ((r = archive_read_next_header(in, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
        if (archive_write_header(out, e) < ARCHIVE_WARN) {
            rc = client_say(CLIENT_EXIT_FAILURE, "%s/%s: %s", dir, archive_entry_pathname(e),
                            archive_error_string(out));
            goto out;
        }
        const void *block;
        size_t size;
        la_int64_t offset;
        while ((r = archive_read_data_block(in, &block, &size, &offset)) == ARCHIVE_OK)
            if (archive_write_data_block(out, block, size, offset) < ARCHIVE_WARN)
                break;
        if (r != ARCHIVE_EOF || archive_write_finish_entry(out) < ARCHIVE_WARN) {
            rc = client_say(CLIENT_EXIT_FAILURE, "%s/%s: %s", dir, archive_entry_pathname(e),
                            archive_error_string(r != ARCHIVE_EOF ? in : out));
            goto out;
        }
    }
    if (r != ARCHIVE_EOF)
        rc = client_say(CLIENT_EXIT_FAILURE, "the export is not a readable tar: %s",
                        archive_error_string(in));
    else if (archive_write_close(out) != ARCHIVE_OK)
        rc = client_say(CLIENT_EXIT_FAILURE, "%s: %s", dir, archive_error_string(out));
out:
    archive_write_free(out);
    return rc;
}

/* Extracts the tar in `f` into `dir` (created when missing), working from inside it so that
 * entry names stay relative to it whatever `dir` itself is. */
static int extract_into(FILE *f, const char *dir)
{
    if (mkdir(dir, 0777) < 0 && errno != EEXIST)
        return client_say(CLIENT_EXIT_FAILURE, "%s: %s", dir, strerror(errno));
    int here = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (here < 0)
        return client_say(CLIENT_EXIT_FAILURE, "cannot open the current directory: %s",
                          strerror(errno));
    if (chdir(dir) < 0) {
        int e = errno;
        close(here);
        return client_say(CLIENT_EXIT_FAILURE, "%s: %s", dir, strerror(e));
    }
    struct archive *in = archive_read_new();
    int rc = CLIENT_EXIT_FAILURE;
    if (!in)
        client_say(rc, "out of memory");
    else if (archive_read_support_format_tar(in) != ARCHIVE_OK ||
             archive_read_support_filter_all(in) != ARCHIVE_OK ||
             archive_read_open_FILE(in, f) != ARCHIVE_OK)
        client_say(rc, "the export is not a readable tar: %s", archive_error_string(in));
    else
        rc = extract(in, dir);
    if (in)
        archive_read_free(in);
    if (fchdir(here) < 0 && rc == CLIENT_EXIT_OK)
        rc = client_say(CLIENT_EXIT_FAILURE, "cannot return to the current directory: %s",
                        strerror(errno));
    close(here);
    return rc;
}

/* cp -r ID:/path DIR: the subtree exported as a tar, extracted into DIR. */
static int get_tree(struct client *c, const struct place *src, const char *dir)
{
    char *path = base_path_query(src, "/export", "&format=tar");
    FILE *tmp = tmpfile();
    int rc = CLIENT_EXIT_FAILURE;
    if (!path || !tmp)
        client_say(rc, "%s", !path ? "out of memory" : "cannot create a temporary file");
    else if ((rc = get_into(c, path, tmp)) == CLIENT_EXIT_OK) {
        if (fseeko(tmp, 0, SEEK_SET) < 0)
            rc = client_say(CLIENT_EXIT_FAILURE, "cannot read a temporary file");
        else
            rc = extract_into(tmp, dir);
    }
    if (tmp)
        fclose(tmp);
    free(path);
    return rc;
}

static const char cp_usage[] =
    "Usage: sqlfs cp LOCAL ID:/path        a file into a sandbox (parents created)\n"
    "       sqlfs cp ID:/path LOCAL        a file out of a sandbox (LOCAL may be a directory)\n"
    "       sqlfs cp -r DIR ID:/path       DIR's contents into /path (a tar, ingested at once)\n"
    "       sqlfs cp -r ID:/path DIR       /path's contents into DIR (created when missing)\n"
    "\n"
    "Files are copied byte for byte; -r keeps modes, mtimes and symlinks (never followed).\n"
    "  --url URL, --token T, --json   as for every command (sqlfs --help)\n";

static const struct option cp_options[] = {
    COMMON_OPTIONS,
    {"recursive", no_argument, NULL, 'r'},
    {NULL, 0, NULL, 0},
};

static int cp_option(void *ctx, int opt, const char *arg)
{
    (void)arg;
    if (opt == 'r')
        *(bool *)ctx = true;
    return CLIENT_EXIT_OK;
}

int cmd_cp(int argc, char **argv)
{
    bool recursive = false;
    struct common_opts co;
    int first = 0;
    int rc = cmd_parse("cp", cp_usage, argc, argv, ":hr", cp_options, cp_option, &recursive, &co,
                       &first);
    if (rc < 0)
        return CLIENT_EXIT_OK;
    if (rc != CLIENT_EXIT_OK)
        return rc;
    if (argc - first != 2)
        return cmd_usage("cp", "expected a source and a destination");
    struct place src, dst;
    rc = parse_place(argv[first], &src);
    if (rc == CLIENT_EXIT_OK && (rc = parse_place(argv[first + 1], &dst)) != CLIENT_EXIT_OK)
        free(src.id);
    if (rc != CLIENT_EXIT_OK)
        return rc;
    if (!src.id == !dst.id) {
        free(src.id);
        free(dst.id);
        return cmd_usage("cp", "exactly one side must be a sandbox path, ID:/path");
    }
    struct client c;
    rc = cmd_client(&c, &co);
    if (rc == CLIENT_EXIT_OK) {
        if (dst.id)
            rc = recursive ? put_tree(&c, src.path, &dst) : put_file(&c, src.path, &dst);
        else
            rc = recursive ? get_tree(&c, &src, dst.path) : get_file(&c, &src, dst.path);
    }
    client_close(&c);
    free(src.id);
    free(dst.id);
    return rc;
}
