/*
 * sqlfs — persistent bash sandboxes for AI agents, served over HTTP.
 *
 * main parses the command line, locks the data directory, has app_open (app.c) build the
 * modules into one struct app, serves until SIGTERM or SIGINT, then shuts down in order: stop
 * accepting, let in-flight requests finish (bounded), stop the HTTP server, close the modules.
 * Only this file may exit the process.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/http.h"
#include "api/jsonv.h"
#include "app.h"
#include "cli.h"
#include "client/commands.h"
#include "config.h"
#include "exec/engine.h"
#include "util/datadir.h"
#include "util/err.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "version.h"

#define SHUTDOWN_GRACE_MS 5000

static int die(const char *what, int r)
{
    const char *m = err_message();
    fprintf(stderr, "sqlfs: %s: %s\n", what, m ? m : strerror(r < 0 ? -r : r));
    return 1;
}

/* Descriptors the server may hold at once with this configuration: one per connection, two per
 * warm sandbox (its network namespace and idle overlay), a handful per running exec (pipes,
 * pidfd, overlay, cgroup files), six per egress connection (its two sockets and two pipes), and
 * a reserve for the store, the listener and start-up. */
static rlim_t descriptors_needed(const struct config *c)
{
    return (rlim_t)c->max_connections + 2 * (rlim_t)c->exec_warm_sandboxes +
           16 * (rlim_t)c->exec_concurrency + 6 * (rlim_t)c->egress_max_open + 256;
}

/* A login shell's soft limit on open files is often 1024, below what MAX_CONNECTIONS alone
 * asks for: raise it to the hard limit (the kernel's per-process cap when that is unlimited).
 * Every descriptor is polled with poll(), never select(), so high numbers are fine, and a
 * jail sets its own RLIMIT_NOFILE. A limit still too low is only warned about. */
static void raise_open_file_limit(const struct config *c)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rlim_t want = rl.rlim_max;
    if (want == RLIM_INFINITY || want > (rlim_t)1 << 20)
        want = (rlim_t)1 << 20; /* fs.nr_open's default: a soft limit above it is refused */
    if (want > rl.rlim_cur) {
        struct rlimit raised = {want, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
            rl.rlim_cur = want;
    }
    rlim_t need = descriptors_needed(c);
    if (rl.rlim_cur < need)
        log_msg("warn",
                "the open-file limit (%llu) is below the ~%llu descriptors MAX_CONNECTIONS=%lld "
                "can need: raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower "
                "MAX_CONNECTIONS",
                (unsigned long long)rl.rlim_cur, (unsigned long long)need,
                (long long)c->max_connections);
}

/* `self`: the program as the user started it ("./build/sqlfs"), so the hint can be pasted. */
static void print_banner(const struct app *app, bool secret_created, const char *self)
{
    const struct config *c = app->cfg;
    char url[300];
    snprintf(url, sizeof(url), "http://%s:%d", c->listen_host, c->port);
    json_t *f = json_object();
    json_object_set_new(f, "listen", json_string(url));
    json_object_set_new(f, "version", json_string(SQLFS_VERSION));
    json_object_set_new(f, "store", json_string(app->store->ops->name));
    log_json("info", "sqlfs serving", f);
    if (secret_created || !c->auth_secret) {
        /* the secret itself is never printed: it stays in its 0600 file */
        fprintf(
            stderr,
            "\nsqlfs is listening on %s\n"
            "AUTH_SECRET was not set: using the secret stored in %s/auth_secret%s.\n"
            "Get a token:\n"
            "  curl -s -X POST %s/v1/auth/bootstrap -H \"X-Auth-Secret: $(cat %s/auth_secret)\" "
            "-H 'Content-Type: application/json' -d '{\"sub\":\"me\"}'\n"
            "or offline: %s token --sub me --data %s\n\n",
            url, c->data_dir, secret_created ? " (generated now)" : "", url, c->data_dir, self,
            c->data_dir);
    }
}

/* Blocks until SIGTERM/SIGINT (the signals are blocked in every thread so only sigwait sees
 * them). */
static int wait_for_signal(const sigset_t *set)
{
    int sig = 0;
    while (sigwait(set, &sig) != 0)
        ;
    return sig;
}

static void shutdown_server(struct app *app, struct MHD_Daemon *d)
{
    atomic_store(&app->shutting_down, true);
    http_quiesce(d);
    int64_t deadline = time_mono_ms() + SHUTDOWN_GRACE_MS;
    while (atomic_load(&app->active_requests) > 0 && time_mono_ms() < deadline)
        usleep(20 * 1000);
    /* what is still running after the grace period is cancelled: execs are killed (their
     * writes commit like a timeout's), then the remaining requests end */
    exec_engine_shutdown(app->exec);
    deadline = time_mono_ms() + SHUTDOWN_GRACE_MS;
    while (atomic_load(&app->active_requests) > 0 && time_mono_ms() < deadline)
        usleep(20 * 1000);
    http_stop(d);
}

static int serve(const char *self, int argc, char **argv)
{
    /* Whatever umask the server was started with, what it creates is its own: the database
     * and its journals, checkouts and uppers. What the jail must read (the generated jail
     * tree, the sandbox trees) gets its modes explicitly, and the jail sets the script's
     * umask itself. */
    umask(077);
    struct config cfg;
    int r = config_init(&cfg);
    if (r < 0)
        return die("configuration", r);
    r = config_from_env(&cfg);
    if (r == 0)
        r = config_from_args(&cfg, argc, argv);
    if (r == 0)
        config_finish(&cfg);
    if (r == 1) { /* --help */
        fputs(config_serve_help(), stdout);
        config_release(&cfg);
        return 0;
    }
    if (r == 0)
        r = config_check(&cfg, time_now_ms() / 1000);
    if (r < 0) {
        die("configuration", r);
        config_release(&cfg);
        return 2;
    }
    log_set_quiet(cfg.quiet);
    jsonv_init(); /* before any thread: jansson's allocator charges request parses */
    raise_open_file_limit(&cfg);
    if (cfg.trust_proxy && cfg.max_connections_per_ip > 0)
        log_msg("warn",
                "TRUST_PROXY is set: every connection comes from the proxy's address, so "
                "MAX_CONNECTIONS_PER_IP=%lld caps the proxy's connections (0 lifts it)",
                (long long)cfg.max_connections_per_ip);
    struct app app = {.cfg = &cfg};
    int status = 1;
    bool secret_created = false;
    struct MHD_Daemon *daemon = NULL;
    struct datadir data = DATADIR_INIT;

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Before anything in the data dir or on the host is touched: one server per data dir, and
     * every path derived from it absolute (the jail and the cgroups' names need that). */
    pid_t owner = 0;
    if ((r = datadir_open(cfg.data_dir, &data, &owner)) == -EBUSY) {
        if (owner > 0)
            fprintf(stderr, "sqlfs: data dir %s is in use by another sqlfs (pid %ld)\n", data.path,
                    (long)owner);
        else
            fprintf(stderr, "sqlfs: data dir %s is in use by another sqlfs\n", data.path);
        goto out;
    }
    if (r < 0) {
        die("data directory", r);
        goto out;
    }
    if (data.loose_mode)
        log_msg("warn",
                "the data directory %s was accessible to group or others (mode %04o): made it "
                "0700",
                data.path, (unsigned)data.loose_mode);
    free(cfg.data_dir);
    if (!(cfg.data_dir = strdup(data.path)))
        goto out;
    const char *what = NULL;
    if ((r = app_open(&app, &cfg, &secret_created, &what)) < 0) {
        if (what)
            die(what, r);
        goto out;
    }
    if ((r = http_start(&app, &daemon)) < 0) {
        die("listen", r);
        goto out;
    }
    print_banner(&app, secret_created, self);
    int sig = wait_for_signal(&set);
    log_msg("info", "received %s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    shutdown_server(&app, daemon);
    daemon = NULL;
    status = 0;
out:
    http_stop(daemon);
    app_close(&app);
    datadir_close(&data);
    config_release(&cfg);
    if (status == 0)
        log_msg("info", "stopped cleanly");
    return status;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(cli_main_help(), argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("sqlfs %s\n", SQLFS_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "serve") == 0)
        return serve(argv[0], argc - 1, argv + 1);
    if (strcmp(argv[1], "token") == 0)
        return cli_token(argc - 1, argv + 1);
    if (strcmp(argv[1], "migrate") == 0)
        return cli_migrate(argc - 1, argv + 1);
    if (client_is_command(argv[1]))
        return client_main(argc - 1, argv + 1);
    fprintf(stderr, "sqlfs: unknown command '%s'\n\n%s", argv[1], cli_main_help());
    return 2;
}
