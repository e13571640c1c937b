#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/jwt.h"
#include "auth/secret.h"
#include "cli.h"
#include "util/timeutil.h"

static char tmpdir[] = "/tmp/sqlfs-cli-XXXXXX";
/* A signing secret long enough (SECRET_MIN_LEN). */
#define ENV_SECRET "env-secret-0123456789abcdef-0123456789"

static int setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Runs command cmd (named name) with stdout and stderr captured into out/errout (each up to n
 * bytes). */
static int run_cmd(int (*cmd)(int, char **), const char *name, const char *const *args, char *out,
                   char *errout, size_t n)
{
    char *argv[16];
    int argc = 0;
    argv[argc++] = (char *)name;
    for (; *args; args++)
        argv[argc++] = (char *)*args;
    argv[argc] = NULL;

    FILE *fo = tmpfile(), *fe = tmpfile();
    assert_non_null(fo);
    assert_non_null(fe);
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2);
    dup2(fileno(fo), 1);
    dup2(fileno(fe), 2);
    int rc = cmd(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    FILE *files[] = {fo, fe};
    char *bufs[] = {out, errout};
    for (int i = 0; i < 2; i++) {
        rewind(files[i]);
        size_t got = fread(bufs[i], 1, n - 1, files[i]);
        bufs[i][got] = '\0';
        fclose(files[i]);
    }
    return rc;
}

static int run(const char *const *args, char *out, char *errout, size_t n)
{
    return run_cmd(cli_token, "token", args, out, errout, n);
}

static void verify_output(const char *out, const char *secret, const char *sub, const char *tenant,
                          int64_t lifetime)
{
    size_t len = strlen(out);
    assert_true(len > 0 && out[len - 1] == '\n');
    struct jwt_claims c = JWT_CLAIMS_INIT;
    int64_t now = time_now_ms() / 1000;
    assert_int_equal(jwt_verify(secret, strlen(secret), out, len - 1, now, &c), 0);
    assert_string_equal(c.sub, sub);
    assert_string_equal(c.tenant, tenant);
    assert_non_null(c.jti);
    assert_true(c.iat >= now - 5 && c.iat <= now);
    if (lifetime < 0)
        assert_int_equal(c.exp, 0);
    else
        assert_int_equal(c.exp, c.iat + lifetime);
    jwt_claims_release(&c);
}

static void test_env_secret(void **state)
{
    (void)state;
    char out[4096], err[4096];
    setenv("AUTH_SECRET", ENV_SECRET, 1);
    assert_int_equal(run((const char *[]){"--sub", "agent-1", NULL}, out, err, sizeof(out)), 0);
    verify_output(out, ENV_SECRET, "agent-1", "default", 30 * 86400);
    assert_string_equal(err, "");
    /* never: only when TOKEN_MAX_EXPIRES allows it, as on the server. */
    assert_int_equal(
        run((const char *[]){"--sub=a", "--expires", "never", NULL}, out, err, sizeof(out)),
        CLI_EXIT_USAGE);
    assert_string_equal(out, "");
    assert_non_null(strstr(err, "--expires may be at most 1y"));
    setenv("TOKEN_MAX_EXPIRES", "never", 1);
    assert_int_equal(run((const char *[]){"--sub=a", "--tenant=t1", "--expires", "never", NULL},
                         out, err, sizeof(out)),
                     0);
    verify_output(out, ENV_SECRET, "a", "t1", -1);
    unsetenv("TOKEN_MAX_EXPIRES");
    assert_int_equal(
        run((const char *[]){"--sub", "a", "--expires", "24h", NULL}, out, err, sizeof(out)), 0);
    verify_output(out, ENV_SECRET, "a", "default", 86400);
    /* The default and the maximum come from the environment sqlfs serve reads. */
    setenv("TOKEN_DEFAULT_EXPIRES", "2h", 1);
    assert_int_equal(run((const char *[]){"--sub", "a", NULL}, out, err, sizeof(out)), 0);
    verify_output(out, ENV_SECRET, "a", "default", 7200);
    setenv("TOKEN_MAX_EXPIRES", "1h", 1);
    assert_int_equal(run((const char *[]){"--sub", "a", NULL}, out, err, sizeof(out)),
                     CLI_EXIT_USAGE);
    assert_non_null(strstr(err, "TOKEN_DEFAULT_EXPIRES is longer than TOKEN_MAX_EXPIRES"));
    assert_int_equal(
        run((const char *[]){"--sub", "a", "--expires", "61m", NULL}, out, err, sizeof(out)),
        CLI_EXIT_USAGE);
    assert_non_null(strstr(err, "at most 1h"));
    assert_int_equal(
        run((const char *[]){"--sub", "a", "--expires", "1h", NULL}, out, err, sizeof(out)), 0);
    verify_output(out, ENV_SECRET, "a", "default", 3600);
    setenv("TOKEN_MAX_EXPIRES", "soon", 1);
    assert_int_equal(run((const char *[]){"--sub", "a", NULL}, out, err, sizeof(out)),
                     CLI_EXIT_USAGE);
    assert_non_null(strstr(err, "TOKEN_MAX_EXPIRES: expected a duration"));
    unsetenv("TOKEN_MAX_EXPIRES");
    unsetenv("TOKEN_DEFAULT_EXPIRES");
    unsetenv("AUTH_SECRET");
}

static void test_short_secret(void **state)
{
    (void)state;
    char out[4096], err[4096], dir[256];
    /* 31 bytes: refused like sqlfs serve refuses it, and no token printed. */
    setenv("AUTH_SECRET", "0123456789abcdef0123456789abcde", 1);
    assert_int_equal(run((const char *[]){"--sub", "a", NULL}, out, err, sizeof(out)),
                     CLI_EXIT_FAILURE);
    assert_string_equal(out, "");
    assert_non_null(strstr(err, "AUTH_SECRET is 31 bytes"));
    assert_non_null(strstr(err, "openssl rand -hex 32"));
    assert_null(strstr(err, "0123456789abcdef")); /* never the secret itself */
    unsetenv("AUTH_SECRET");
    /* The same from the data directory's file. */
    snprintf(dir, sizeof(dir), "%s/short", tmpdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    char file[300];
    snprintf(file, sizeof(file), "%s/auth_secret", dir);
    int fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "short\n", 6), 6);
    close(fd);
    assert_int_equal(
        run((const char *[]){"--sub", "a", "--data", dir, NULL}, out, err, sizeof(out)),
        CLI_EXIT_FAILURE);
    assert_string_equal(out, "");
    assert_non_null(strstr(err, "at least 32 bytes"));
}

static void test_data_secret(void **state)
{
    (void)state;
    char out[4096], err[4096], dir[256];
    unsetenv("AUTH_SECRET");
    snprintf(dir, sizeof(dir), "%s/data", tmpdir);
    /* No secret anywhere: status 1, and nothing is created. */
    assert_int_equal(
        run((const char *[]){"--sub", "a", "--data", dir, NULL}, out, err, sizeof(out)),
        CLI_EXIT_FAILURE);
    assert_string_equal(out, "");
    assert_non_null(strstr(err, "AUTH_SECRET"));
    assert_int_equal(access(dir, F_OK), -1);

    char *secret = NULL;
    assert_int_equal(secret_load_or_create(dir, &secret, NULL), 0);
    assert_int_equal(run((const char *[]){"--sub", "a", "--data", dir, "--expires", "1y", NULL},
                         out, err, sizeof(out)),
                     0);
    verify_output(out, secret, "a", "default", 365 * 86400);
    /* SQLFS_DATA is the fallback for --data. */
    setenv("SQLFS_DATA", dir, 1);
    assert_int_equal(run((const char *[]){"--sub", "b", NULL}, out, err, sizeof(out)), 0);
    verify_output(out, secret, "b", "default", 30 * 86400);
    unsetenv("SQLFS_DATA");
    assert_null(strstr(err, secret)); /* the secret is never printed */
    free(secret);
}

static void test_usage(void **state)
{
    (void)state;
    char out[4096], err[4096];
    setenv("AUTH_SECRET", ENV_SECRET, 1);
    const char *const *bad[] = {
        (const char *[]){NULL},
        (const char *[]){"--tenant", "t", NULL},
        (const char *[]){"--sub", NULL},
        (const char *[]){"--sub", "", NULL},
        (const char *[]){"--sub", "a", "--tenant", "bad tenant", NULL},
        (const char *[]){"--sub", "a", "--expires", "tomorrow", NULL},
        (const char *[]){"--sub", "a", "--bogus", NULL},
        (const char *[]){"--sub", "a", "stray", NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(run(bad[i], out, err, sizeof(out)), CLI_EXIT_USAGE);
        assert_string_equal(out, "");
        assert_non_null(strstr(err, "sqlfs token: "));
    }
    assert_int_equal(run((const char *[]){"--help", NULL}, out, err, sizeof(out)), 0);
    assert_non_null(strstr(out, "--expires"));
    unsetenv("AUTH_SECRET");
    assert_non_null(strstr(cli_main_help(), "serve"));
    assert_non_null(strstr(cli_main_help(), "token"));
    assert_non_null(strstr(cli_main_help(), "version"));
    assert_non_null(strstr(cli_main_help(), "AUTH_SECRET"));
}

/* sqlfs migrate: the SQLite database of a data directory, a PostgreSQL URL (whose password is
 * never printed), bad usage. */
static void test_migrate(void **state)
{
    (void)state;
    char out[4096], err[4096], dir[128], db[160];
    unsetenv("SQLFS_DATABASE");
    snprintf(dir, sizeof(dir), "%s/migrate-data", tmpdir);
    assert_int_equal(run_cmd(cli_migrate, "migrate", (const char *[]){"--data", dir, NULL}, out,
                             err, sizeof(out)),
                     CLI_EXIT_OK);
    assert_non_null(strstr(out, "sqlite database schema is up to date"));
    snprintf(db, sizeof(db), "%s/sqlfs.db", dir);
    assert_int_equal(access(db, F_OK), 0);
    /* again: nothing to do, still fine */
    assert_int_equal(run_cmd(cli_migrate, "migrate", (const char *[]){"--data", dir, NULL}, out,
                             err, sizeof(out)),
                     CLI_EXIT_OK);

    assert_int_equal(run_cmd(cli_migrate, "migrate",
                             (const char *[]){"--database", "mysql://u:hunter2@db/x", NULL}, out,
                             err, sizeof(out)),
                     CLI_EXIT_USAGE);
    assert_non_null(strstr(err, "sqlfs migrate: unknown database"));
    assert_null(strstr(err, "hunter2"));
    /* a database that cannot be reached: a failure naming why, never the password */
    setenv("SQLFS_DATABASE", "postgresql://u:hunter2@/x?host=/nonexistent-sqlfs-dir", 1);
    assert_int_equal(run_cmd(cli_migrate, "migrate", (const char *[]){NULL}, out, err, sizeof(out)),
                     CLI_EXIT_FAILURE);
    assert_non_null(strstr(err, "sqlfs migrate: cannot connect to the database"));
    assert_null(strstr(err, "hunter2"));
    unsetenv("SQLFS_DATABASE");
    assert_int_equal(
        run_cmd(cli_migrate, "migrate", (const char *[]){"--bogus", NULL}, out, err, sizeof(out)),
        CLI_EXIT_USAGE);
    assert_int_equal(
        run_cmd(cli_migrate, "migrate", (const char *[]){"--help", NULL}, out, err, sizeof(out)),
        CLI_EXIT_OK);
    assert_non_null(strstr(out, "--database"));
    assert_non_null(strstr(cli_main_help(), "migrate"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env_secret),   cmocka_unit_test(test_data_secret),
        cmocka_unit_test(test_short_secret), cmocka_unit_test(test_usage),
        cmocka_unit_test(test_migrate),
    };
    return cmocka_run_group_tests_name("cli", tests, setup, teardown);
}
