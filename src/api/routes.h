/* routes — the handlers of every route, one file per resource; the table is in routes.c. */
#ifndef SQLFS_API_ROUTES_H
#define SQLFS_API_ROUTES_H

#include "api/http.h"
#include "sandbox/lock.h"

/* health.c */
int route_healthz(struct request *req);
int route_readyz(struct request *req);
int route_status(struct request *req);

/* openapi.c */
int route_openapi(struct request *req);

/* auth_routes.c */
int route_auth_bootstrap(struct request *req);
int route_auth_admin(struct request *req);
/* The X-Admin-Secret check of an operator route, under the failed-attempt limit of the auth
 * routes (a wrong secret counts there, so no route is an oracle for guessing it). 0 when it
 * passed; 1 when the request has been answered (429); negative: the error to answer (403,
 * 500 ADMIN_NOT_CONFIGURED). */
__attribute__((warn_unused_result)) int route_admin_gate(struct request *req);
/* The same for the `Authorization: Bearer <METRICS_TOKEN>` of GET /metrics: 0 when it passed;
 * 1 when answered (429); negative: the error to answer (401 AUTH_REQUIRED when missing or
 * malformed, 401 AUTH_INVALID when wrong). */
__attribute__((warn_unused_result)) int route_metrics_gate(struct request *req);

/* metrics.c: GET /metrics (api/metrics.h), a route only while METRICS_TOKEN is set */
int route_metrics(struct request *req);
bool route_metrics_available(const struct app *app);

/* sandboxes.c */
int route_sandbox_create(struct request *req);
int route_sandbox_list(struct request *req);
int route_sandbox_get(struct request *req);
int route_sandbox_delete(struct request *req);
int route_sandbox_patch(struct request *req);
/* egress.c */
int route_egress(struct request *req);

/* files.c */
int route_file_get(struct request *req);
int route_file_put_begin(struct request *req);
int route_file_put_data(struct request *req, const char *data, size_t len);
int route_file_put(struct request *req);
void route_file_put_done(struct request *req, bool completed);
int route_file_patch(struct request *req);
int route_file_delete(struct request *req);
int route_mkdir(struct request *req);
int route_write_files(struct request *req);
int route_tree(struct request *req);

/* The longest sandbox name (create, fork). */
#define SANDBOX_NAME_MAX 255

/* history.c */
int route_commits(struct request *req);
int route_commit(struct request *req);
int route_diff(struct request *req);
int route_restore(struct request *req);
int route_fork(struct request *req);
int route_snapshot_create(struct request *req);
int route_snapshot_list(struct request *req);
int route_snapshot_delete(struct request *req);

/* execs.c: the exec journal */
int route_execs(struct request *req);
int route_exec_get(struct request *req);

/* exec.c */
int route_exec_sync(struct request *req);
/* on_done of exec-sync and exec-sync-batch: the exec's work left after the reply (api/exec.h) */
void route_exec_rest_done(struct request *req, bool completed);
/* exec_stream.c */
int route_exec_stream(struct request *req);
void route_exec_stream_done(struct request *req, bool completed);
/* exec_batch.c */
int route_exec_batch(struct request *req);

/* archive.c */
int route_ingest_begin(struct request *req);
int route_ingest_data(struct request *req, const char *data, size_t len);
int route_ingest(struct request *req);
void route_ingest_done(struct request *req, bool completed);
int route_ingest_files(struct request *req);
int route_export(struct request *req);

/* ---- route_util.c: shared by the routes of several resources ---- */

/* The sandbox path named by the "*" capture (normalised, malloc'd). */
__attribute__((warn_unused_result)) int route_capture_path(struct request *req, char **ret);
/* Takes the lock of the request's sandbox in `mode` (held until the request
 * completes) and reads its record for the caller (see sandbox_open); rec NULL: a route that
 * needs no record (the ownership check and the lock are all it wants). */
__attribute__((warn_unused_result)) int route_open_sandbox(struct request *req, enum lock_mode mode,
                                                           struct sandbox_rec *rec);
/* 413 naming MAX_BULK_WRITE_FILES when a request carries more than it. */
__attribute__((warn_unused_result)) int route_check_bulk_count(struct request *req, size_t n);
/* Normalises a path given in a JSON field or query parameter. */
__attribute__((warn_unused_result)) int route_path_arg(const char *field, const char *value,
                                                       size_t len, char **ret);
/* route_path_arg for a path the request will write at or below (a directory when is_dir): also
 * 400 when it is reserved (store/reserved.h). */
__attribute__((warn_unused_result)) int route_write_path_arg(const char *field, const char *value,
                                                             size_t len, bool is_dir, char **ret);

/* Query parameter `name` as an integer in [min, max] into *ret: 0 (absent: *ret untouched), or
 * 400 naming the parameter and the range. */
__attribute__((warn_unused_result)) int route_query_int(struct request *req, const char *name,
                                                        int64_t min, int64_t max, int64_t *ret);

/* Sets the commit-log record of a change to one path (its history summary): {"path": path}. */
__attribute__((warn_unused_result)) int route_commit_info_path(struct changeset *cs,
                                                               const char *path);

#endif
