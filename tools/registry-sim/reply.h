/* reply — what a handler of the simulator answers: an HTTP status and a JSON
 * body. Errors use the contract's shape {"error": {"code", "message", ...}};
 * the request id is added by api.c when the reply is sent, so a stored reply
 * (idempotency replay) never carries another request's id. Owns no I/O. */
#ifndef SIM_REPLY_H
#define SIM_REPLY_H

#include <jansson.h>

typedef struct {
    int status;       /* HTTP status code */
    json_t *body;     /* JSON object, owned by the reply */
} sim_reply;

/* A success reply; steals `body`. */
sim_reply reply_json(int status, json_t *body);

/* An error reply with the contract's stable `code` and a human `message`. */
sim_reply reply_error(int status, const char *code, const char *message);

/* Adds a field next to `code` in an error reply (e.g. "field", "status");
 * steals `value`. */
void reply_error_field(sim_reply *r, const char *key, json_t *value);

#endif
