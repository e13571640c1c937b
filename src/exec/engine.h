/*
 * engine — the exec engine as the rest of the server sees it: checkout → jail → run → diff →
 * commit (DESIGN.md "Exec"). Owns the checkout cache and the jail runtime.
 */
#ifndef SQLFS_EXEC_ENGINE_H
#define SQLFS_EXEC_ENGINE_H

#include <jansson.h>

struct exec_engine;

/* Readiness of the engine for /readyz: {"ok": bool, ...}; NULL engine → not available. */
json_t *exec_engine_status_json(struct exec_engine *e);

#endif
