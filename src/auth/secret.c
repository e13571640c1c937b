/*
 * secret — <data>/auth_secret. Every file operation is relative to a descriptor of the data
 * directory and refuses to follow a symlink for the secret itself, so the file checked is the file
 * read.
 */
#include "auth/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "util/cleanup.h"
#include "util/datadir.h"
#include "util/err.h"
#include "util/fd.h"
#include "util/rand.h"

#define SECRET_RANDOM_BYTES 32

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Reads the secret from an open descriptor after checking type, owner and mode. */
static int read_secret_fd(int fd, char **ret)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return err_set(-EINVAL, SECRET_FILE_NAME " in the data directory is not a regular file");
    if (st.st_uid != geteuid() || (st.st_mode & 077) != 0)
        return err_set(
            -EACCES,
            SECRET_FILE_NAME " in the data directory must be owned by the server user "
                             "and not accessible to group or others (found mode %04o%s); "
                             "fix it with chmod 600",
            (unsigned)(st.st_mode & 07777), st.st_uid != geteuid() ? ", different owner" : "");
    _cleanup_free_ char *data = malloc(SECRET_MAX_LEN + 2);
    if (!data)
        return -ENOMEM;
    ssize_t n = read_all(fd, data, SECRET_MAX_LEN + 1); /* one more: too long is an error */
    if (n < 0)
        return (int)n;
    size_t len = (size_t)n, start = 0;
    while (start < len && is_space(data[start]))
        start++;
    while (len > start && is_space(data[len - 1]))
        len--;
    int r = 0;
    if (len - start > SECRET_MAX_LEN)
        r = err_set(-EINVAL, SECRET_FILE_NAME " is longer than %d bytes", SECRET_MAX_LEN);
    else if (len == start)
        r = err_set(-EINVAL, SECRET_FILE_NAME " in the data directory is empty");
    else if (memchr(data + start, '\0', len - start))
        r = err_set(-EINVAL, SECRET_FILE_NAME " contains a NUL byte");
    else
        r = secret_check_length(SECRET_FILE_NAME " in the data directory", len - start);
    if (r < 0)
        return r;
    memmove(data, data + start, len - start);
    data[len - start] = '\0';
    *ret = TAKE_PTR(data);
    return 0;
}

static int load_at(int dfd, char **ret)
{
    _cleanup_close_ int fd =
        openat(dfd, SECRET_FILE_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT) /* not an error for secret_load_or_create: no message */
            return -ENOENT;
        if (e == ELOOP)
            return err_set(-EINVAL, SECRET_FILE_NAME " in the data directory is a symlink");
        return err_set(-e, "cannot open " SECRET_FILE_NAME ": %s", strerror(e));
    }
    return read_secret_fd(fd, ret);
}

static int open_dir(const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        int e = errno;
        return err_set(-e, "cannot open the data directory: %s", strerror(e));
    }
    return dfd;
}

int secret_load(const char *data_dir, char **ret_secret)
{
    if (!data_dir || !*data_dir)
        return err_set(-EINVAL, "the data directory is not set");
    _cleanup_close_ int dfd = open_dir(data_dir);
    if (dfd < 0)
        return dfd;
    int r = load_at(dfd, ret_secret);
    if (r == -ENOENT)
        return err_set(r, "no " SECRET_FILE_NAME " file in the data directory");
    return r;
}

/* Moves tmp to SECRET_FILE_NAME unless that already exists (-EEXIST). renameat2 is atomic; the
 * link fallback serves file systems without RENAME_NOREPLACE. */
static int install_noreplace(int dfd, const char *tmp)
{
    if (renameat2(dfd, tmp, dfd, SECRET_FILE_NAME, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
        return -errno;
    if (linkat(dfd, tmp, dfd, SECRET_FILE_NAME, 0) < 0)
        return -errno;
    (void)unlinkat(dfd, tmp, 0);
    return 0;
}

/* Writes a fresh secret into a temporary file and installs it. 0 with *ret set, -EEXIST when
 * another process installed one first, or -errno. */
static int create_at(int dfd, char **ret)
{
    uint8_t raw[SECRET_RANDOM_BYTES], tag[4];
    char hex[2 * SECRET_RANDOM_BYTES + 2], tagx[2 * sizeof(tag) + 1], tmp[64];
    int r = rand_bytes(raw, sizeof(raw));
    if (r >= 0)
        r = rand_bytes(tag, sizeof(tag));
    if (r < 0)
        return err_set(r, "cannot gather random bytes for the auth secret");
    hex_encode(raw, sizeof(raw), hex);
    hex_encode(tag, sizeof(tag), tagx);
    snprintf(tmp, sizeof(tmp), "." SECRET_FILE_NAME ".%s.tmp", tagx);

    int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        int e = errno;
        return err_set(-e, "cannot create " SECRET_FILE_NAME ": %s", strerror(e));
    }
    size_t len = strlen(hex);
    hex[len] = '\n';
    if (fchmod(fd, 0600) < 0 || (r = write_all(fd, hex, len + 1)) < 0 || fsync(fd) < 0)
        r = r < 0 ? r : -errno;
    hex[len] = '\0';
    if (close(fd) < 0 && r >= 0)
        r = -errno;
    if (r >= 0)
        r = install_noreplace(dfd, tmp);
    if (r < 0) {
        (void)unlinkat(dfd, tmp, 0);
        if (r == -EEXIST)
            return r;
        return err_set(r, "cannot write " SECRET_FILE_NAME ": %s", strerror(-r));
    }
    (void)fsync(dfd);
    char *s = strdup(hex);
    if (!s)
        return -ENOMEM;
    *ret = s;
    return 0;
}

int secret_load_or_create(const char *data_dir, char **ret_secret, bool *ret_created)
{
    if (!data_dir || !*data_dir)
        return err_set(-EINVAL, "the data directory is not set");
    int r = datadir_make(data_dir);
    if (r < 0)
        return r;
    _cleanup_close_ int dfd = open_dir(data_dir);
    if (dfd < 0)
        return dfd;
    bool created = false;
    r = load_at(dfd, ret_secret);
    if (r == -ENOENT) {
        r = create_at(dfd, ret_secret);
        created = r >= 0;
        if (r == -EEXIST) /* lost a race with another starting server: use its secret */
            r = load_at(dfd, ret_secret);
    }
    if (r >= 0 && ret_created)
        *ret_created = created;
    return r;
}

int secret_check_length(const char *name, size_t len)
{
    if (len >= SECRET_MIN_LEN)
        return 0;
    return err_set(-EINVAL, "%s is %zu bytes: a signing secret must be at least %d bytes (%s)",
                   name, len, SECRET_MIN_LEN, SECRET_HOWTO);
}

bool secret_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    unsigned char da[EVP_MAX_MD_SIZE], db[EVP_MAX_MD_SIZE];
    unsigned int la = 0, lb = 0;
    if (!EVP_Digest(a, alen, da, &la, EVP_sha256(), NULL) ||
        !EVP_Digest(b, blen, db, &lb, EVP_sha256(), NULL) || la != lb || la == 0)
        return false;
    return CRYPTO_memcmp(da, db, la) == 0;
}
