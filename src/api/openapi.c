/*
 * GET /openapi.json (docs/API.md "OpenAPI"): the OpenAPI 3.1 document of the API, for anyone.
 * The document is docs/openapi.json, embedded in the binary at build time (openapi_doc.S), and
 * sent as it is: read-only static bytes, never copied or freed.
 */
#include <microhttpd.h>

#include "api/routes.h"

/* The embedded document (openapi_doc.S). */
extern const unsigned char openapi_doc[], openapi_doc_end[];

int route_openapi(struct request *req)
{
    size_t len = (size_t)(openapi_doc_end - openapi_doc);
    /* PERSISTENT: libmicrohttpd neither copies nor frees the buffer (it is not written to) */
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)openapi_doc, MHD_RESPMEM_PERSISTENT);
    int r = http_reply_response(req, 200, resp);
    if (r == 0)
        http_add_header(req, "Content-Type", "application/json");
    return r;
}
