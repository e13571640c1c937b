/* Engine-independent helpers of the store interface (store.h). */
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

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
