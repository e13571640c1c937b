/* The version of sqlfs (`sqlfs version`, the start log line, the MCP serverInfo). */
#ifndef SQLFS_VERSION_H
#define SQLFS_VERSION_H

#define SQLFS_VERSION "0.3.0"

#endif
