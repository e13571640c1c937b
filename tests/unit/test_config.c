#include "unit.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "config.h"
#include "util/err.h"

/* Every variable config_from_env reads; cleared before each test so the host cannot leak in. */
static const char *const vars[] = {
    "PORT",
    "SQLFS_LISTEN",
    "SQLFS_DATA",
    "SQLFS_DATABASE",
    "SQLFS_ROOTFS",
    "AUTH_SECRET",
    "AUTH_SECRET_PREVIOUS",
    "ADMIN_SECRET",
    "METRICS_TOKEN",
    "TOKEN_DEFAULT_EXPIRES",
    "TOKEN_MAX_EXPIRES",
    "TOKENS_NOT_BEFORE",
    "TRUST_PROXY",
    "SQLFS_QUIET",
    "MAX_REQUEST_BODY_BYTES",
    "MAX_FILE_WRITE_BYTES",
    "MAX_BULK_WRITE_FILES",
    "MAX_INGEST_FILES",
    "MAX_INGEST_BYTES",
    "MAX_INGEST_PATH_BYTES",
    "MAX_TREE_ENTRIES",
    "MAX_EXEC_OUTPUT_BYTES",
    "REPLY_MEMORY_BYTES",
    "SANDBOX_QUOTA_BYTES",
    "EXEC_MEMORY_BYTES",
    "EXEC_PIDS_MAX",
    "EXEC_CPU_PERCENT",
    "EXEC_FILE_SIZE_BYTES",
    "EXEC_CONCURRENCY",
    "EXEC_QUEUE",
    "EXEC_OWNER_CONCURRENCY",
    "EXEC_OWNER_QUEUE",
    "MAX_SANDBOXES_PER_OWNER",
    "EXEC_WARM_SANDBOXES",
    "BATCH_WORKERS",
    "AUTH_RATE_LIMIT_MAX",
    "AUTH_RATE_LIMIT_WINDOW_MS",
    "AUTH_SUCCESS_RATE_LIMIT_MAX",
    "AUTH_SUCCESS_RATE_LIMIT_WINDOW_MS",
    "LOCK_TIMEOUT_MS",
    "CHECKOUT_BUDGET_BYTES",
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_IP",
    "CONNECTION_TIMEOUT_S",
    "DATABASE_POOL_SIZE",
    "DATABASE_POOL_WAIT_MS",
};

static int clear_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
    err_clear();
    return 0;
}

static void test_defaults(void **state)
{
    (void)state;
    struct config c;
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(config_from_env(&c), 0);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.port, 8080);
    assert_string_equal(c.data_dir, "./data");
    assert_null(c.auth_secret);
    assert_null(c.auth_secret_previous);
    assert_null(c.admin_secret);
    assert_null(c.metrics_token);
    assert_int_equal(c.token_default_expires_s, 30 * 86400);
    assert_int_equal(c.token_max_expires_s, 365 * 86400);
    assert_int_equal(c.tokens_not_before_s, 0);
    assert_int_equal(config_check(&c, 1800000000), 0);
    assert_null(c.rootfs);
    assert_false(c.trust_proxy);
    assert_false(c.quiet);
    assert_int_equal(c.max_request_body_bytes, 268435456);
    assert_int_equal(c.max_file_write_bytes, 1073741824);
    assert_int_equal(c.max_bulk_write_files, 1000);
    assert_int_equal(c.max_ingest_files, 100000);
    assert_int_equal(c.max_ingest_bytes, 4294967296LL);
    assert_int_equal(c.max_ingest_path_bytes, 32LL << 20);
    assert_int_equal(c.max_tree_entries, 50000);
    assert_int_equal(c.max_exec_output_bytes, 16777216);
    assert_int_equal(c.reply_memory_bytes, 268435456);
    assert_int_equal(c.sandbox_quota_bytes, 10737418240LL);
    assert_int_equal(c.exec_memory_bytes, 1073741824);
    assert_int_equal(c.exec_pids_max, 512);
    assert_int_equal(c.exec_cpu_percent, 100);
    assert_int_equal(c.exec_file_size_bytes, 4294967296LL);
    assert_int_equal(c.exec_concurrency, 2 * cpus + 2);
    assert_int_equal(c.exec_queue, 256);
    assert_int_equal(c.exec_owner_concurrency, -1); /* derived by config_finish */
    assert_int_equal(c.exec_owner_queue, -1);
    config_finish(&c);
    assert_int_equal(c.exec_owner_concurrency, cpus + 1); /* half of 2 x CPUs + 2 */
    assert_int_equal(c.exec_owner_queue, 64);
    assert_int_equal(c.max_sandboxes_per_owner, 1000);
    assert_int_equal(c.exec_warm_sandboxes, 64);
    assert_int_equal(c.batch_workers, 2 * cpus);
    assert_int_equal(c.auth_rate_limit_max, 5);
    assert_int_equal(c.auth_rate_limit_window_ms, 60000);
    assert_int_equal(c.auth_success_rate_limit_max, 600);
    assert_int_equal(c.auth_success_rate_limit_window_ms, 60000);
    assert_int_equal(c.lock_timeout_ms, 60000);
    assert_int_equal(c.checkout_budget_bytes, 10737418240LL);
    assert_int_equal(c.max_connections, 2000);
    assert_int_equal(c.max_connections_per_ip, 64);
    assert_int_equal(c.request_timeout_s, 30);
    assert_int_equal(c.connection_timeout_s, 600);
    config_release(&c);
    assert_null(c.listen_host);
    config_release(&c); /* twice is harmless */
}

static void test_env(void **state)
{
    (void)state;
    setenv("PORT", "9000", 1);
    setenv("SQLFS_DATA", "/var/lib/sqlfs", 1);
    setenv("SQLFS_ROOTFS", "/srv/rootfs", 1);
    setenv("AUTH_SECRET", "s3cret-0123456789abcdef0123456789", 1);
    setenv("AUTH_SECRET_PREVIOUS", "old-s3cret-0123456789abcdef012345", 1);
    setenv("ADMIN_SECRET", "adm", 1);
    setenv("METRICS_TOKEN", "scrape-0123456789abcdef", 1);
    setenv("TOKEN_DEFAULT_EXPIRES", "12h", 1);
    setenv("TOKEN_MAX_EXPIRES", "never", 1);
    setenv("TOKENS_NOT_BEFORE", "1700000000", 1);
    setenv("TRUST_PROXY", "TRUE", 1);
    setenv("SQLFS_QUIET", "1", 1);
    setenv("MAX_FILE_WRITE_BYTES", "512M", 1);
    setenv("MAX_INGEST_BYTES", "2GiB", 1);
    setenv("EXEC_CONCURRENCY", "7", 1);
    setenv("EXEC_WARM_SANDBOXES", "3", 1);
    setenv("AUTH_RATE_LIMIT_MAX", "0", 1);
    setenv("AUTH_SUCCESS_RATE_LIMIT_MAX", "0", 1);
    setenv("AUTH_SUCCESS_RATE_LIMIT_WINDOW_MS", "1000", 1);
    setenv("MAX_TREE_ENTRIES", "", 1); /* empty = unset */
    struct config c;
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(config_from_env(&c), 0);
    assert_int_equal(c.port, 9000);
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_string_equal(c.data_dir, "/var/lib/sqlfs");
    assert_string_equal(c.rootfs, "/srv/rootfs");
    assert_string_equal(c.auth_secret, "s3cret-0123456789abcdef0123456789");
    assert_string_equal(c.auth_secret_previous, "old-s3cret-0123456789abcdef012345");
    assert_string_equal(c.admin_secret, "adm");
    assert_string_equal(c.metrics_token, "scrape-0123456789abcdef");
    assert_int_equal(c.token_default_expires_s, 12 * 3600);
    assert_int_equal(c.token_max_expires_s, -1);
    assert_int_equal(c.tokens_not_before_s, 1700000000);
    assert_int_equal(config_check(&c, 1800000000), 0);
    assert_true(c.trust_proxy);
    assert_true(c.quiet);
    assert_int_equal(c.max_file_write_bytes, 512LL << 20);
    assert_int_equal(c.max_ingest_bytes, 2LL << 30);
    assert_int_equal(c.exec_concurrency, 7);
    assert_int_equal(c.exec_warm_sandboxes, 3);
    assert_int_equal(c.auth_rate_limit_max, 0);
    assert_int_equal(c.auth_success_rate_limit_max, 0);
    assert_int_equal(c.auth_success_rate_limit_window_ms, 1000);
    assert_int_equal(c.max_tree_entries, 50000);
    config_release(&c);
}

/* The per-owner exec limits follow EXEC_CONCURRENCY and EXEC_QUEUE however those are set,
 * unless set themselves. */
static void test_derived_defaults(void **state)
{
    (void)state;
    static const struct {
        const char *concurrency, *queue, *owner_concurrency, *owner_queue;
        const char *flag; /* one more flag, or NULL */
        int64_t want_concurrency, want_queue;
    } rows[] = {
        {"7", "10", NULL, NULL, NULL, 4, 3},
        {"1", "0", NULL, NULL, NULL, 1, 0},
        {"2", "1", NULL, NULL, NULL, 1, 1},
        {"8", "256", "8", "0", NULL, 8, 0},
        {"8", "256", NULL, NULL, "--exec-concurrency=3", 2, 64},
        {"8", "256", NULL, NULL, "--exec-owner-queue=5", 4, 5},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        setenv("EXEC_CONCURRENCY", rows[i].concurrency, 1);
        setenv("EXEC_QUEUE", rows[i].queue, 1);
        if (rows[i].owner_concurrency)
            setenv("EXEC_OWNER_CONCURRENCY", rows[i].owner_concurrency, 1);
        else
            unsetenv("EXEC_OWNER_CONCURRENCY");
        if (rows[i].owner_queue)
            setenv("EXEC_OWNER_QUEUE", rows[i].owner_queue, 1);
        else
            unsetenv("EXEC_OWNER_QUEUE");
        struct config c;
        assert_int_equal(config_init(&c), 0);
        assert_int_equal(config_from_env(&c), 0);
        char *argv[] = {"serve", (char *)rows[i].flag, NULL};
        assert_int_equal(config_from_args(&c, rows[i].flag ? 2 : 1, argv), 0);
        config_finish(&c);
        assert_int_equal(c.exec_owner_concurrency, rows[i].want_concurrency);
        assert_int_equal(c.exec_owner_queue, rows[i].want_queue);
        config_release(&c);
    }
    setenv("MAX_SANDBOXES_PER_OWNER", "0", 1); /* no limit */
    struct config c;
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(config_from_env(&c), 0);
    assert_int_equal(c.max_sandboxes_per_owner, 0);
    config_release(&c);
    /* the PostgreSQL pool: EXEC_CONCURRENCY + 4 unless set */
    setenv("EXEC_CONCURRENCY", "6", 1);
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(config_from_env(&c), 0);
    config_finish(&c);
    assert_int_equal(c.database_pool_size, 10);
    assert_int_equal(c.database_pool_wait_ms, 5000);
    config_release(&c);
    setenv("DATABASE_POOL_SIZE", "3", 1);
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(config_from_env(&c), 0);
    config_finish(&c);
    assert_int_equal(c.database_pool_size, 3);
    config_release(&c);
}

static void expect_listen(const char *value, const char *host, int port)
{
    setenv("PORT", "1111", 1);
    setenv("SQLFS_LISTEN", value, 1);
    struct config c;
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(config_from_env(&c), 0);
    assert_string_equal(c.listen_host, host);
    assert_int_equal(c.port, port);
    config_release(&c);
}

static void test_listen(void **state)
{
    (void)state;
    expect_listen("0.0.0.0:9090", "0.0.0.0", 9090); /* SQLFS_LISTEN's port wins over PORT */
    expect_listen("0.0.0.0", "0.0.0.0", 1111);
    expect_listen("localhost:80", "localhost", 80);
    expect_listen("[::1]:8081", "::1", 8081);
    expect_listen("[::]", "::", 1111);
    expect_listen("::1", "::1", 1111);
    expect_listen("example.org:0", "example.org", 0);

    const char *bad[] = {
        ":8080", "[::1", "[::1]x", "host:", "host:65536", "host:-1", "a b:1", "[]:80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("SQLFS_LISTEN", bad[i], 1);
        struct config c;
        assert_int_equal(config_init(&c), 0);
        err_clear();
        if (config_from_env(&c) != -EINVAL)
            fail_msg("accepted SQLFS_LISTEN=%s", bad[i]);
        assert_non_null(strstr(err_message(), "SQLFS_LISTEN"));
        config_release(&c);
    }
}

/* Sets var=value and expects config_from_env to fail naming var. */
static void expect_env_rejected(const char *var, const char *value)
{
    clear_env(NULL);
    setenv(var, value, 1);
    struct config c;
    assert_int_equal(config_init(&c), 0);
    if (config_from_env(&c) != -EINVAL)
        fail_msg("accepted %s=%s", var, value);
    const char *msg = err_message();
    assert_non_null(msg);
    if (strncmp(msg, var, strlen(var)) != 0 || msg[strlen(var)] != ':')
        fail_msg("message \"%s\" does not name %s", msg, var);
    config_release(&c);
}

static void test_env_rejected(void **state)
{
    (void)state;
    expect_env_rejected("PORT", "80a");
    expect_env_rejected("PORT", "65536");
    expect_env_rejected("PORT", "-1");
    expect_env_rejected("PORT", " 80");
    expect_env_rejected("MAX_FILE_WRITE_BYTES", "abc");
    expect_env_rejected("MAX_FILE_WRITE_BYTES", "0");
    expect_env_rejected("MAX_FILE_WRITE_BYTES", "-5");
    expect_env_rejected("MAX_FILE_WRITE_BYTES", "+5");
    expect_env_rejected("MAX_FILE_WRITE_BYTES", "1.5G");
    expect_env_rejected("MAX_FILE_WRITE_BYTES", "10X");
    expect_env_rejected("MAX_FILE_WRITE_BYTES", "0x10");
    expect_env_rejected("MAX_FILE_WRITE_BYTES", "99999999999999999999");
    expect_env_rejected("MAX_FILE_WRITE_BYTES", "9000000000000T"); /* overflows int64 */
    expect_env_rejected("EXEC_PIDS_MAX", "5K"); /* not a byte count: no suffixes */
    expect_env_rejected("EXEC_PIDS_MAX", "0");
    expect_env_rejected("EXEC_WARM_SANDBOXES", "0");
    expect_env_rejected("EXEC_WARM_SANDBOXES", "4097");
    expect_env_rejected("EXEC_MEMORY_BYTES", "1000"); /* below 1 MiB */
    expect_env_rejected("BATCH_WORKERS", "0");
    expect_env_rejected("AUTH_RATE_LIMIT_WINDOW_MS", "0");
    expect_env_rejected("AUTH_SUCCESS_RATE_LIMIT_MAX", "-1");
    expect_env_rejected("AUTH_SUCCESS_RATE_LIMIT_MAX", "lots");
    expect_env_rejected("AUTH_SUCCESS_RATE_LIMIT_MAX", "2147483648");
    expect_env_rejected("AUTH_SUCCESS_RATE_LIMIT_WINDOW_MS", "0");
    expect_env_rejected("AUTH_SUCCESS_RATE_LIMIT_WINDOW_MS", "604800001"); /* over a week */
    expect_env_rejected("CONNECTION_TIMEOUT_S", "1e3");
    expect_env_rejected("TRUST_PROXY", "maybe");
    expect_env_rejected("SQLFS_QUIET", "2");
    expect_env_rejected("TOKEN_DEFAULT_EXPIRES", "30");
    expect_env_rejected("TOKEN_MAX_EXPIRES", "forever");
    assert_non_null(strstr(err_message(), "expected a duration"));
    expect_env_rejected("TOKENS_NOT_BEFORE", "2026-01-01");
    assert_non_null(strstr(err_message(), "date +%s"));
    expect_env_rejected("TOKENS_NOT_BEFORE", "-1");
    /* The message states what is expected. */
    expect_env_rejected("MAX_INGEST_FILES", "many");
    assert_non_null(strstr(err_message(), "expected an integer from 1 to"));
    assert_non_null(strstr(err_message(), "\"many\""));
    expect_env_rejected("MAX_INGEST_BYTES", "lots");
    assert_non_null(strstr(err_message(), "GiB"));
}

static int run_args(struct config *c, const char *const *args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"serve";
    for (; *args; args++)
        argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    err_clear();
    return config_from_args(c, argc, argv);
}

static void test_args_override_env(void **state)
{
    (void)state;
    setenv("PORT", "9000", 1);
    setenv("SQLFS_DATA", "/env/data", 1);
    setenv("MAX_FILE_WRITE_BYTES", "1G", 1);
    setenv("EXEC_CONCURRENCY", "3", 1);
    struct config c;
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(config_from_env(&c), 0);
    const char *args[] = {"--listen",
                          "0.0.0.0:7000",
                          "--data",
                          "/flag/data",
                          "--rootfs=/r",
                          "--quiet",
                          "--trust-proxy",
                          "--max-file-write-bytes",
                          "64KiB",
                          "--exec-memory-bytes=256M",
                          "--exec-concurrency",
                          "9",
                          "--auth-rate-limit-window-ms",
                          "1000",
                          "--auth-success-rate-limit-max=42",
                          "--max-connections-per-ip=16",
                          "--token-default-expires",
                          "1h",
                          "--token-max-expires=2d",
                          "--tokens-not-before",
                          "1700000000",
                          NULL};
    assert_int_equal(run_args(&c, args), 0);
    assert_string_equal(c.listen_host, "0.0.0.0");
    assert_int_equal(c.port, 7000);
    assert_string_equal(c.data_dir, "/flag/data");
    assert_string_equal(c.rootfs, "/r");
    assert_true(c.quiet);
    assert_true(c.trust_proxy);
    assert_int_equal(c.max_file_write_bytes, 65536);
    assert_int_equal(c.exec_memory_bytes, 256LL << 20);
    assert_int_equal(c.exec_concurrency, 9);
    assert_int_equal(c.auth_rate_limit_window_ms, 1000);
    assert_int_equal(c.auth_success_rate_limit_max, 42);
    assert_int_equal(c.max_connections_per_ip, 16);
    assert_int_equal(c.token_default_expires_s, 3600);
    assert_int_equal(c.token_max_expires_s, 2 * 86400);
    assert_int_equal(c.tokens_not_before_s, 1700000000);
    /* Later flags win; --port after --listen replaces its port. */
    const char *more[] = {"--port", "7001", "--listen=[::1]", NULL};
    assert_int_equal(run_args(&c, more), 0);
    assert_int_equal(c.port, 7001);
    assert_string_equal(c.listen_host, "::1");
    config_release(&c);

    /* A flag exists for every limit: walk the help text and try each one. */
    assert_int_equal(config_init(&c), 0);
    const char *help = config_serve_help();
    int seen = 0;
    for (const char *p = strstr(help, "\n  --"); p; p = strstr(p + 1, "\n  --")) {
        char flag[64];
        if (sscanf(p + 3, "%63s", flag) != 1)
            continue;
        const char *kind = p + 3 + strlen(flag) + 1;
        if (strncmp(kind, "BYTES", 5) != 0 && strncmp(kind, "N\n", 2) != 0)
            continue;
        bool bytes = strncmp(kind, "BYTES", 5) == 0;
        const char *a[] = {flag, bytes ? "2M" : "2048", NULL};
        if (run_args(&c, a) != 0)
            fail_msg("%s %s rejected: %s", flag, a[1], err_message());
        seen++;
    }
    assert_int_equal(seen, 52);
    assert_int_equal(c.max_tree_entries, 2048);
    assert_int_equal(c.exec_memory_bytes, 2LL << 20);
    assert_int_equal(c.request_timeout_s, 2048);
    assert_int_equal(c.connection_timeout_s, 2048);
    config_release(&c);
}

/* Expects the flags to be refused with a message starting with or containing `want`. */
static void expect_args_rejected(const char *const *args, const char *want)
{
    struct config c;
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(run_args(&c, args), -EINVAL);
    const char *msg = err_message();
    assert_non_null(msg);
    if (!strstr(msg, want))
        fail_msg("message \"%s\" lacks \"%s\"", msg, want);
    config_release(&c);
}

static void test_args_rejected(void **state)
{
    (void)state;
    expect_args_rejected((const char *[]){"--port", "http", NULL}, "--port:");
    expect_args_rejected((const char *[]){"--port", NULL}, "--port needs a value");
    expect_args_rejected((const char *[]){"--max-file-write-bytes", "1Q", NULL},
                         "--max-file-write-bytes: expected a byte count");
    expect_args_rejected((const char *[]){"--exec-concurrency=0", NULL},
                         "--exec-concurrency: expected an integer from 1");
    expect_args_rejected((const char *[]){"--exec-pids-max", "1M", NULL}, "--exec-pids-max:");
    expect_args_rejected((const char *[]){"--auth-success-rate-limit-window-ms=0", NULL},
                         "--auth-success-rate-limit-window-ms: expected an integer from 1");
    expect_args_rejected((const char *[]){"--listen", ":80", NULL}, "--listen:");
    expect_args_rejected((const char *[]){"--bogus", "1", NULL}, "unknown option --bogus");
    expect_args_rejected((const char *[]){"--auth-secret", "x", NULL}, "unknown option");
    expect_args_rejected((const char *[]){"extra", NULL}, "unexpected argument \"extra\"");
    expect_args_rejected((const char *[]){"--quiet=yes", NULL}, "--quiet takes no value");
    expect_args_rejected((const char *[]){"--data=", NULL}, "--data:");
    expect_args_rejected((const char *[]){"--", NULL}, "unexpected argument");
    expect_args_rejected((const char *[]){"--token-max-expires", "1w", NULL},
                         "--token-max-expires: expected a duration");
    expect_args_rejected((const char *[]){"--tokens-not-before=now", NULL},
                         "--tokens-not-before: expected a time in seconds");
    expect_args_rejected((const char *[]){"--auth-secret-previous", "x", NULL}, "unknown option");

    struct config c;
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(run_args(&c, (const char *[]){"--help", NULL}), 1);
    assert_int_equal(run_args(&c, (const char *[]){"--port", "1", "-h", NULL}), 1);
    config_release(&c);
}

static void test_help(void **state)
{
    (void)state;
    const char *help = config_serve_help();
    assert_ptr_equal(help, config_serve_help());
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        if (!strstr(help, vars[i]))
            fail_msg("help does not mention %s", vars[i]);
    const char *flags[] = {"--listen",
                           "--port",
                           "--data",
                           "--rootfs",
                           "--quiet",
                           "--trust-proxy",
                           "--max-file-write-bytes",
                           "--exec-memory-bytes",
                           "--exec-concurrency",
                           "--connection-timeout-s",
                           "--token-default-expires",
                           "--token-max-expires",
                           "--tokens-not-before",
                           "--help"};
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        if (!strstr(help, flags[i]))
            fail_msg("help does not mention %s", flags[i]);
    assert_non_null(strstr(help, "default 1073741824 (1GiB)"));
    assert_non_null(strstr(help, "2 x CPUs + 2"));
    assert_non_null(strstr(help, "half of EXEC_CONCURRENCY, rounded up"));
    assert_non_null(strstr(help, "a quarter of EXEC_QUEUE, rounded up"));
    assert_non_null(strstr(help, "KiB"));
}

/* SQLFS_DATABASE / --database: unset, "sqlite:" or a PostgreSQL URL (the flag wins). */
static void test_database(void **state)
{
    (void)state;
    struct config c;
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(config_from_env(&c), 0);
    assert_null(c.database);
    assert_int_equal(config_check(&c, 1800000000), 0);
    config_release(&c);
    static const char *const good[] = {"sqlite:", "postgres://u@db:5432/sqlfs",
                                       "postgresql:///sqlfs?host=/run/postgresql"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        setenv("SQLFS_DATABASE", good[i], 1);
        assert_int_equal(config_init(&c), 0);
        assert_int_equal(config_from_env(&c), 0);
        assert_string_equal(c.database, good[i]);
        assert_int_equal(config_check(&c, 1800000000), 0);
        config_release(&c);
    }
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(config_from_env(&c), 0);
    assert_int_equal(run_args(&c, (const char *[]){"--database", "sqlite:", NULL}), 0);
    assert_string_equal(c.database, "sqlite:");
    config_release(&c);
}

/* config_check: what only the whole configuration shows. */
static void expect_check_rejected(const char *var, const char *value, const char *want)
{
    clear_env(NULL);
    setenv(var, value, 1);
    struct config c;
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(config_from_env(&c), 0);
    err_clear();
    if (config_check(&c, 1800000000) != -EINVAL)
        fail_msg("config_check accepted %s=%s", var, value);
    if (!strstr(err_message(), want))
        fail_msg("message \"%s\" lacks \"%s\"", err_message(), want);
    if (strstr(var, "SECRET") || strstr(var, "DATABASE") || strcmp(var, "METRICS_TOKEN") == 0)
        assert_null(strstr(err_message(), value)); /* a secret is never repeated */
    config_release(&c);
}

static void test_check(void **state)
{
    (void)state;
    expect_check_rejected("AUTH_SECRET", "0123456789abcdef0123456789abcde",
                          "AUTH_SECRET is 31 bytes: a signing secret must be at least 32 bytes "
                          "(make one with: openssl rand -hex 32)");
    expect_check_rejected("AUTH_SECRET_PREVIOUS", "short", "AUTH_SECRET_PREVIOUS is 5 bytes");
    expect_check_rejected("TOKEN_DEFAULT_EXPIRES", "366d",
                          "TOKEN_DEFAULT_EXPIRES (366d) is longer than TOKEN_MAX_EXPIRES (1y)");
    expect_check_rejected("TOKEN_DEFAULT_EXPIRES", "never", "TOKEN_DEFAULT_EXPIRES (never)");
    expect_check_rejected("TOKENS_NOT_BEFORE", "1800000001",
                          "TOKENS_NOT_BEFORE (1800000001) is "
                          "in the future");
    expect_check_rejected("SQLFS_DATABASE", "mysql://u:hunter2@db/x",
                          "SQLFS_DATABASE (--database): unknown database");
    expect_check_rejected("SQLFS_DATABASE", "postgresql://u:hunter2@db/x?bogus_option=1",
                          "SQLFS_DATABASE (--database): the PostgreSQL URL is malformed");
    expect_check_rejected("METRICS_TOKEN", "scrape-0123", "METRICS_TOKEN is 11 characters");
    expect_check_rejected("METRICS_TOKEN", "scrape 0123456789abcdef",
                          "METRICS_TOKEN must be printable ASCII without spaces");

    struct config c;
    clear_env(NULL);
    setenv("AUTH_SECRET", "0123456789abcdef0123456789abcdef", 1);
    setenv("TOKEN_DEFAULT_EXPIRES", "never", 1);
    setenv("TOKEN_MAX_EXPIRES", "never", 1);
    setenv("TOKENS_NOT_BEFORE", "1800000000", 1); /* now is not the future */
    assert_int_equal(config_init(&c), 0);
    assert_int_equal(config_from_env(&c), 0);
    assert_int_equal(config_check(&c, 1800000000), 0);
    /* A flag can fix what the environment got wrong: the check runs on the result. */
    setenv("TOKEN_MAX_EXPIRES", "1d", 1);
    assert_int_equal(config_from_env(&c), 0);
    assert_int_equal(config_check(&c, 1800000000), -EINVAL);
    assert_int_equal(run_args(&c, (const char *[]){"--token-default-expires", "1d", NULL}), 0);
    assert_int_equal(config_check(&c, 1800000000), 0);
    config_release(&c);
}

#define T(f) cmocka_unit_test_setup(f, clear_env)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_defaults),          T(test_env),           T(test_listen), T(test_env_rejected),
        T(test_args_override_env), T(test_args_rejected), T(test_help),   T(test_check),
        T(test_derived_defaults),  T(test_database),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
