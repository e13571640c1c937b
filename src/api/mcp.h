/*
 * mcp — the Model Context Protocol endpoint, POST /mcp (docs/API.md "MCP"): JSON-RPC 2.0 over
 * the Streamable HTTP transport, stateless (no Mcp-Session-Id), one JSON answer per request.
 * mcp.c speaks the protocol (initialize, ping, tools/list, tools/call, notifications);
 * mcp_tools.c holds the tools, each run as an inner request of the /v1 route it stands for
 * (api/inner.h), under the caller's bearer token.
 */
#ifndef SQLFS_API_MCP_H
#define SQLFS_API_MCP_H

#include <jansson.h>

#include "api/http.h"

/* POST /mcp */
int route_mcp(struct request *req);

/* The tools' definitions: a new array of {name, description, inputSchema, outputSchema},
 * or NULL when out of memory. */
json_t *mcp_tools_list(void);
/* Runs tool `name` with `args` (an object, borrowed) for req's owner. 0 and *ret the
 * CallToolResult ({content, structuredContent} or {content, isError: true}); -ENOENT when
 * there is no such tool; -ENOMEM. */
__attribute__((warn_unused_result)) int mcp_tools_call(struct request *req, const char *name,
                                                       json_t *args, json_t **ret);

#endif
