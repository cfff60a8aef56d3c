/* desk — what an agent's desk tools ask the Agent API about a transferred
 * call (docs/agents.md): the session's context, and a one-time resume URI
 * that sends the caller into a step the agent must not hear. Blocking
 * libcurl requests with a short timeout: the phone is a demo tool, and the
 * Agent API runs on the same machine. */
#ifndef CARDLINE_AGENTPHONE_DESK_H
#define CARDLINE_AGENTPHONE_DESK_H

#include <stdbool.h>
#include <stddef.h>

#define DESK_TIMEOUT_MS 3000     /* one request, connection included */
#define DESK_URI_MAX 256         /* a resume URI */

typedef struct {
    const char *api;             /* base URL, "http://127.0.0.1:8081" */
    const char *token;           /* the agent's bearer token */
} desk;

/* What the agent's screen shows of a session. */
typedef struct {
    char lang[8];                /* "zh", "en", or "" */
    char summary[512];           /* one line: flow, node, caller, verification, queue, reason */
} desk_context;

/* GET /v1/sessions/{id}. False (and `why` says it) when the API cannot be
 * reached, refuses, or answers something that is not a session. */
bool desk_context_get(const desk *d, const char *session, desk_context *out, char *why, size_t why_size);

/* POST /v1/sessions/{id}/resume {"node": node}: the URI to blind-transfer
 * the caller to. False with `why` otherwise. */
bool desk_resume(const desk *d, const char *session, const char *node, char uri[DESK_URI_MAX], char *why,
                 size_t why_size);

/* The same request as a curl command line an agent can type (for the
 * demo's screen); the token is the demo's, public by design. */
void desk_resume_command(const desk *d, const char *session, const char *node, char *out, size_t size);

#endif
