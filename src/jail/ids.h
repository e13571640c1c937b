/*
 * ids — the identities a sandbox runs as, shared by the jail (uid maps), the checkout (file
 * owners) and the diff (what the sandbox user can have made).
 *
 * Inside the jail the script runs as `user` (uid/gid 1000). That uid maps to one unprivileged
 * host uid/gid (SANDBOX_HOST_UID) that owns every file of every checkout (not the tree root,
 * which is host root's), so the sandbox user can modify its own tree through the overlay, and
 * nothing else on the host.
 */
#ifndef SQLFS_JAIL_IDS_H
#define SQLFS_JAIL_IDS_H

#define SANDBOX_UID 1000        /* uid/gid of `user` inside the jail */
#define SANDBOX_HOST_UID 100000 /* host uid/gid mapped to SANDBOX_UID */

#endif
