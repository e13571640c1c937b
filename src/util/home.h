/*
 * home — the sandbox user's home directory, as every layer names it: HOME and the passwd entry
 * in the jail, the start cwd of a new sandbox (and of a record without one), the default base
 * of ingest and export, the directory every sandbox's tree starts with.
 *
 * It lives in util/ because the store, the sandbox layer, the API and the jail all need it and
 * util/ is the one folder every layer may include.
 */
#ifndef SQLFS_UTIL_HOME_H
#define SQLFS_UTIL_HOME_H

#define SANDBOX_HOME "/home/user" /* absolute, normalised */

#endif
