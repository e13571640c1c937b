/*
 * compiler — attribute shorthands shared by every module.
 *
 * UNUSED marks a parameter that a fixed signature imposes (a libmicrohttpd callback, a hook of a
 * route table) and that this implementation has no use for. The build warns about every other
 * unused parameter.
 */
#ifndef SQLFS_UTIL_COMPILER_H
#define SQLFS_UTIL_COMPILER_H

#define UNUSED __attribute__((unused))

#endif
