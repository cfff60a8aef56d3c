/* agents — the agent API: JSON over HTTP on a listener of its own, for the
 * call-centre agents who take over sessions the self-service could not
 * finish (gateway/agents/README.md has the wire).
 *
 * It lists live sessions and shows one session's context as the agent's
 * role allows (masked identifiers below supervisor; never a PIN, a code or
 * a digest, for anyone), hands sessions back into a dialplan node through
 * the engine, answers SMS conversations through the outbox, issues
 * one-time voice resume tokens, releases sessions and works the USSD
 * callback queue; it serves the agent console's page (console/) and keeps
 * its live stream. Every API request, refused ones too, is written to the audit
 * stream in Redis. Bearer tokens are checked against the SHA-256 digests of
 * the tokens file; tokens themselves are never stored or logged.
 *
 * It owns no session state: sessions are the engine's, Redis is reached
 * only through the store (never a blocking command). Main-thread only. */
#ifndef CARDLINE_AGENTS_H
#define CARDLINE_AGENTS_H

#include <stddef.h>

#include "config.h"

struct httpd;
struct engine;
struct store;
struct outbox;

typedef struct agents agents;

/* Fixed limits of the listener main opens for the API (httpd_options). */
#define AGENTS_MAX_BODY_BYTES 4096
#define AGENTS_MAX_HEADER_BYTES 8192
#define AGENTS_MAX_CONNECTIONS 512 /* room for [agents] max_streams consoles and their requests */

typedef struct {
    bool enabled;            /* main serves the agent API only when set */
    const char *listen_host; /* the agent API's own HTTP listener */
    int listen_port;
    struct engine *engine;   /* runs transfers and releases */
    struct store *store;     /* sessions, events, tokens, audit, callbacks */
    struct outbox *outbox;   /* SMS to callers ("sms" entries) */
    const char *tokens_file; /* the agents, their roles and token digests (YAML) */
    int resume_ttl_s;        /* life of a voice resume token (10..600) */
    int audit_max;           /* approximate length cap of the audit stream */
    const char *resume_host; /* [voice] listen host, for resume URIs */
    int resume_port;         /* [voice] listen port */
    const char *console_dir; /* the console's static files (index.html, console.css, console.js) */
    int max_streams;         /* GET /v1/stream open at most (503 beyond) */
    int stream_heartbeat_ms; /* a heartbeat comment on every stream this often */
    int stream_poll_ms;      /* how often the one poller reads Redis's change log */
    const char *node_name;   /* this gateway's name in GET /v1/overview ([outbox] consumer) */
} agents_options;

/* [agents]: enabled, listen, tokens_file, resume_ttl_s, audit_max,
 * console_dir, max_streams, stream_heartbeat_ms, stream_poll_ms. */
extern const conf_section agents_config;

/* The problems of a tokens file, each "FILE:LINE: message". */
typedef struct {
    char **lines;            /* malloc'd messages, in file order */
    size_t count;            /* entries in lines */
} agents_errors;

void agents_errors_free(agents_errors *errs);

/* Reads and checks the tokens file. Returns the number of agents, or -1
 * with `errs` filled (empty on success). */
int agents_check(const char *tokens_file, agents_errors *errs);

/* Loads the tokens file and serves the API on `http` (routes /v1/… and a
 * catch-all, so every request on it is authenticated and audited). NULL,
 * each problem logged, when the file or an option is invalid. */
agents *agents_new(struct httpd *http, const agents_options *opt);

/* Answers requests still waiting for Redis or the engine with 503; their
 * operations finish into nothing. Free it before the engine and the store,
 * and before its listener. */
void agents_free(agents *a);

#endif
