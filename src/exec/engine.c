#include "exec/engine.h"

json_t *exec_engine_status_json(struct exec_engine *e)
{
    json_t *o = json_object();
    json_object_set_new(o, "ok", json_boolean(e != NULL));
    if (!e)
        json_object_set_new(o, "error", json_string("the exec engine is not running"));
    return o;
}
