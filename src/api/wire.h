/*
 * wire — the JSON shapes the API answers with that several routes share (docs/API.md): a
 * sandbox record, and times as ISO 8601 UTC strings with milliseconds ("2024-05-01T12:00:00.000Z").
 * Every function returns a new reference, NULL only when out of memory. Thread-safe.
 */
#ifndef SQLFS_API_WIRE_H
#define SQLFS_API_WIRE_H

#include <jansson.h>
#include <stdint.h>

#include "store/store.h"

/* A sandbox as GET /v1/sandboxes/:id answers it. */
json_t *wire_sandbox_json(const struct sandbox_rec *rec);

/* Epoch milliseconds as a time; null when ms <= 0 (never). */
json_t *wire_time_json(int64_t ms);

/* A file's mtime (epoch nanoseconds, kept to milliseconds) as a time. */
json_t *wire_mtime_json(int64_t mtime_ns);

#endif
