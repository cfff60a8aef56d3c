/* reply — constructors for handler replies (see reply.h). */
#include "reply.h"

sim_reply reply_json(int status, json_t *body)
{
    sim_reply r = {status, body};
    return r;
}

sim_reply reply_error(int status, const char *code, const char *message)
{
    json_t *error = json_pack("{s:s, s:s}", "code", code, "message", message);
    return reply_json(status, json_pack("{s:o}", "error", error));
}

void reply_error_field(sim_reply *r, const char *key, json_t *value)
{
    json_object_set_new(json_object_get(r->body, "error"), key, value);
}
