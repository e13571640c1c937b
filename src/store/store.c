/* Engine-independent helpers of the store interface (store.h). */
#include "store/store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

void sandbox_rec_release(struct sandbox_rec *r)
{
    if (!r)
        return;
    free(r->tenant);
    free(r->sub);
    free(r->name);
    free(r->env_json);
    free(r->cwd);
    r->tenant = r->sub = r->name = r->env_json = r->cwd = NULL;
}

int store_ops_check(const struct store_ops *ops)
{
    const char *name = ops->name ? ops->name : "(unnamed)";
    if (ops->version != STORE_OPS_VERSION)
        return err_set(-EINVAL,
                       "store engine %s implements store interface version %d, this server "
                       "needs version %d",
                       name, ops->version, STORE_OPS_VERSION);
    bool required = ops->name && ops->close && ops->check && ops->sandbox_create &&
                    ops->sandbox_get && ops->sandbox_list && ops->sandbox_delete &&
                    ops->sandbox_touch && ops->stat && ops->list && ops->has_children &&
                    ops->content_begin && ops->content_write && ops->content_finish &&
                    ops->content_abort && ops->content_open && ops->content_read &&
                    ops->content_seek && ops->content_close && ops->commit && ops->gc;
    int batch = !!ops->content_batch_new + !!ops->content_finish_in + !!ops->content_batch_flush +
                !!ops->content_batch_free;
    if (!required || (batch != 0 && batch != 4))
        return err_set(-EINVAL, "store engine %s lacks a member of the store interface", name);
    return 0;
}
