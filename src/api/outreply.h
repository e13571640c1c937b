/*
 * outreply — the JSON reply of exec-sync and exec-sync-batch, written as it is sent.
 *
 * A reply is a list of pieces: JSON text (the small fields, built with jansson) and the
 * scripts' output buffers, each sent as a JSON string. An output buffer is neither copied nor
 * escaped ahead: libmicrohttpd asks for the body a block at a time (a callback response), and
 * each block is escaped from the raw bytes, OUTREPLY_SLICE bytes of output at a time, into a
 * staging buffer of at most 6 × that (a control byte becomes \u00XX). So a reply holds its raw
 * output (counted in REPLY_MEMORY_BYTES, app->reply_memory) plus a fixed amount, however much
 * escaping grows it on the wire; each output buffer is freed, and its bytes given back, as soon
 * as it has been sent.
 *
 * The string is byte for byte what jansson writes for the same bytes (api/sse.h's escaper):
 * invalid UTF-8 becomes U+FFFD; an incomplete character at the very end of an output cut at its
 * cap is dropped instead (the cut made it incomplete, not the program).
 *
 * Ownership: outreply_output takes the buffer's storage; the reply owns everything it was
 * given, until outreply_free or, once handed over with outreply_send, until libmicrohttpd
 * drops the response (sent, or the connection gone). One thread at a time.
 */
#ifndef SQLFS_API_OUTREPLY_H
#define SQLFS_API_OUTREPLY_H

#include <jansson.h>
#include <stddef.h>

#include "api/http.h"
#include "util/buf.h"
#include "util/budget.h"

/* Bytes of output escaped at a time. */
#define OUTREPLY_SLICE 8192

struct outreply;

/* An empty reply whose output buffers are counted in `mem`. NULL when out of memory. */
struct outreply *outreply_new(struct budget *mem);
/* Appends JSON text. 0 or -ENOMEM. */
__attribute__((warn_unused_result)) int outreply_text(struct outreply *o, const char *s, size_t n);
/* Appends the members of a JSON object as compact text, without its braces (nothing for an
 * empty object). 0 or -ENOMEM. */
__attribute__((warn_unused_result)) int outreply_members(struct outreply *o, const json_t *obj);
/* Appends the bytes of *b (counted in the reply's budget) as a JSON string, quotes included,
 * taking its storage: *b is left empty whatever happens. `cut`: the output was cut at its cap,
 * so an incomplete last character is the cut's and is dropped. 0 or -ENOMEM. */
__attribute__((warn_unused_result)) int outreply_output(struct outreply *o, struct buf *b,
                                                        bool cut);
/* Writes the whole body the reply will send into dst (reset first), without consuming
 * anything: byte for byte what the client receives. dst's max bounds it: -EFBIG when the body
 * is longer (dst then holds a part of it), or -ENOMEM. Not after outreply_send. */
__attribute__((warn_unused_result)) int outreply_render(const struct outreply *o, struct buf *dst);
/* Frees the reply and gives its output's bytes back. NULL-safe. */
void outreply_free(struct outreply *o);
/* Sets the reply as the request's response (application/json, chunked), taking o whatever
 * happens. 0 or a negative error with err_set(). */
__attribute__((warn_unused_result)) int outreply_send(struct request *req, unsigned status,
                                                      struct outreply *o);

#endif
