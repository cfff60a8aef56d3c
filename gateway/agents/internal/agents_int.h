/* agents_int — what the files of the agent API share: the module, one
 * request in flight and the endpoint functions. Not for other modules.
 *
 * A request (a pending_op of the module's set, core/pending) lives from
 * dispatch until its answer and, should agents_free answer it early (503),
 * until its last Redis or engine operation has called back: each operation
 * is counted as it starts (agents_req_wait, or agents_req_command for a
 * Redis command) and every callback first calls agents_req_back() (or
 * agents_req_back_ok(), which calls it), which says whether the request is
 * still ours to answer. Each request is answered exactly once,
 * by agents_req_reply or agents_req_fail, which also write its audit entry. */
#ifndef CARDLINE_AGENTS_INT_H
#define CARDLINE_AGENTS_INT_H

#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <time.h>

#include "agents.h"
#include "auth.h"
#include "engine.h"
#include "metrics.h"
#include "httpd.h"
#include "monotime.h"
#include "outbox.h"
#include "pending.h"
#include "store.h"

#define AGENTS_LIST_DEFAULT 50    /* sessions or callbacks listed without ?limit */
#define AGENTS_LIST_MAX 200       /* ?limit ceiling */
#define AGENTS_QUEUE_MAX_OFFSET 1000000 /* ?offset ceiling of GET /v1/queue */
#define AGENTS_AUDIT_DEFAULT 100  /* audit entries without ?limit */
#define AGENTS_AUDIT_MAX 1000     /* audit ?limit ceiling */
#define AGENTS_MAX_REF 16         /* callback reference "CB" + 10 */
#define AGENTS_MAX_NODE 128       /* "flow.node" */
#define AGENTS_REPLY_MAX 480      /* bytes of an agent's SMS reply */
#define AGENTS_AUDIT_STREAM "cl:audit" /* written by every request, read by GET /v1/audit */
#define AGENTS_CALLBACK_STREAM "cl:callbacks" /* the callbacks booked, newest last */
#define AGENTS_CALLBACK_KEY "cl:cb:"   /* + ref: a callback's state hash */
#define AGENTS_CALLBACK_WINDOW "1000"  /* newest callback entries a listing (and the open count) looks at */
#define AGENTS_CONSOLE_MAX_FILE (1024 * 1024) /* bytes of one console file */
#define AGENTS_STREAM_MAX_BACKLOG (64 * 1024) /* unsent bytes of a stream before it is dropped */

typedef struct agent_stream agent_stream;
typedef struct stream_tick stream_tick;

struct agents {
    engine *engine;           /* transfers and releases */
    store *store;             /* every Redis operation */
    outbox *outbox;           /* SMS to callers */
    auth_table *auth;         /* the agents of the tokens file */
    int resume_ttl_s;         /* life of a resume token */
    char audit_max[16];       /* MAXLEN of the audit stream, as text */
    char resume_at[300];      /* "host:port" of the voice listener, for resume URIs */
    pending_set pending;      /* requests not yet answered (status: the HTTP status) */
    const char *console_dir;  /* the console's static files (a copy) */
    const char *node_name;    /* this gateway's name in the overview (a copy) */
    int max_streams;          /* GET /v1/stream open at most */
    int heartbeat_ms;         /* a comment on every stream this often */
    int poll_ms;              /* the change poller's period */
    LIST_HEAD(, agent_stream) streams; /* open streams */
    size_t stream_count;      /* entries in streams */
    metrics_series *streams_gauge; /* cardline_agents_streams */
    struct event *heartbeat;  /* heartbeat timer */
    struct event *poll;       /* poller timer */
    stream_tick *tick;        /* the poll in flight, or NULL */
    bool seed_failed;         /* the first poll's reads failed: seed again */
    char seen_changes[48];    /* id of the last change-log entry read, "" before the first poll */
    char seen_callbacks[48];  /* id of the last callback entry read */
    long overview_sent_ms;    /* monotonic ms of the last overview event */
};

typedef struct agent_req agent_req;

/* The work of GET /v1/sessions. */
typedef struct {
    const char *channel;      /* filter or NULL (points into the query) */
    const char *state;        /* filter or NULL */
    const char *queue;        /* filter or NULL */
    int limit;                /* sessions answered at most */
    char cursor[32];          /* SCAN cursor, "0" at the start and at the end */
    int rounds;               /* SCAN calls made */
    json_t *seen;             /* id -> summary of the matching sessions */
    json_t *items;            /* callbacks: [entry id, fields] read from the stream, newest first;
                                 queue: [id, score] of the page, in order */
    long offset;              /* queue: the page's first position */
    long long total;          /* queue: ZCARD of the index */
    json_t *page;             /* queue: the entries answered, in order */
} list_work;

struct agent_req {
    agents *owner;            /* NULL once agents_free answered the request */
    httpd_request *http;      /* the request, until answered */
    const auth_agent *who;    /* the authenticated agent, or NULL */
    const char *action;       /* audit action ("list", "transfer", "denied", …) */
    char target[STORE_MAX_ID_LEN + 1]; /* session id of the path, or "" */
    char ref[24];             /* callback reference of the path, or "" */
    char detail[160];         /* audit detail: short, masked, never a secret */
    struct evkeyvalq query;   /* the query string's parameters */
    monotime started;         /* for the log line */
    int waiting;              /* operations started, not yet called back */
    store_status failed;      /* a failure among parallel operations, STORE_OK if none */
    json_t *body;             /* the POST body, or NULL */
    json_t *doc;              /* the session document (a reference), or NULL */
    json_t *events;           /* the session's events (a reference), or NULL */
    json_t *held;             /* the held SMS (array of strings), or NULL */
    json_t *result;           /* an engine hop's output (a reference), or NULL */
    void (*then)(agent_req *r);     /* what runs once the session is loaded */
    char node[AGENTS_MAX_NODE + 1]; /* transfer/resume: "flow.node" asked for */
    char token[33];           /* resume: the new token (hex), wiped after the answer */
    bool sms_queued;          /* transfer of an SMS session: its text went to the outbox */
    list_work list;           /* GET /v1/sessions and /v1/callbacks */
    pending_op op;            /* in owner->pending until answered */
    json_t *reply;            /* the answer's body, handed from req_end to the completion */
};

/* Requests (agents.c) ---------------------------------------------------------*/

/* Counts an operation about to start. */
void agents_req_wait(agent_req *r);

/* The first call of every callback: counts the operation done and returns
 * true when the request is still to be answered (else it may be freed). */
bool agents_req_back(agent_req *r);

/* The first call of a store callback that can do nothing with a failure
 * but pass it on: the request (`arg`) when it is still to be answered and
 * `st` is STORE_OK; NULL otherwise, a failure answered by agents_req_fail_store. */
agent_req *agents_req_back_ok(void *arg, store_status st);

/* Sends a Redis command for the request (counted by agents_req_wait); `done` is
 * called back with the request as its argument. */
void agents_req_command(agent_req *r, int argc, const char **argv, const size_t *argvlen, store_reply_cb *done);

/* Takes the HTTP request out of `r` (a stream answers it): `r` is then
 * completed with agents_req_reply (audit and log; no answer is sent). */
httpd_request *agents_req_detach(agent_req *r);

/* Answers `status` with `body` (stolen; NULL = {}), writes the audit entry
 * and frees the request unless operations are still out. */
void agents_req_reply(agent_req *r, int status, json_t *body);

/* Answers {"error": {"code", "message"}}. */
void agents_req_fail(agent_req *r, int status, const char *code, const char *message);

/* Answers 503 (or 504 on a timeout) for a failed store operation. */
void agents_req_fail_store(agent_req *r, store_status st);

/* True for the supervisor: identifiers unmasked. */
bool agents_req_unmasked(const agent_req *r);

/* The JSON object body with only `allowed` keys (NULL-ended), or NULL
 * after answering 400. */
json_t *agents_req_json_body(agent_req *r, const char *const *allowed);

/* What agents_req_json_body checks, on bytes (an empty body is {}): the object,
 * or NULL with `unknown_field` telling a stray key from bad JSON. */
json_t *agents_body_parse(const char *text, size_t len, const char *const *allowed, bool *unknown_field);

/* The query parameter `name`, or NULL. */
const char *agents_req_param(agent_req *r, const char *name);

/* Parses ?limit: `dflt` when absent; false (after answering 400) when bad. */
bool agents_req_limit(agent_req *r, int dflt, int max, int *out);

/* Appends to the audit detail (printf style; keep it short). */
void agents_req_detail(agent_req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True when `s` is one of `names` (NULL-ended). */
bool agents_one_of(const char *s, const char *const *names);

/* Endpoints (sessions.c, callbacks.c, stream.c, overview.c) ---------------------*/

void agents_ep_list(agent_req *r);
void agents_ep_queue(agent_req *r);
void agents_ep_context(agent_req *r);
void agents_ep_transfer(agent_req *r);
void agents_ep_resume(agent_req *r);
void agents_ep_reply(agent_req *r);
void agents_ep_release(agent_req *r);
void agents_ep_callbacks(agent_req *r);
void agents_ep_claim(agent_req *r);
void agents_ep_done(agent_req *r);
void agents_ep_audit(agent_req *r);
void agents_ep_me(agent_req *r);
void agents_ep_stream(agent_req *r);
void agents_ep_overview(agent_req *r);
void agents_ep_funnel(agent_req *r);

/* The console (console.c) -------------------------------------------------------*/

/* Content-Security-Policy and friends, on every answer of the listener. */
void agents_security_headers(struct evhttp_request *ev);

/* `/` or `/console/…`: served without a token. */
bool agents_console_path(const char *path);
void agents_console_serve(agents *a, httpd_request *http, const char *path);

/* Streams (stream.c) -------------------------------------------------------------*/

bool agents_streams_start(agents *a, struct event_base *base);
/* Ends every stream and the timers; a poll in flight finishes into nothing. */
void agents_streams_stop(agents *a);

/* Writes one audit entry (fire and forget; a failure is logged). */
void agents_audit_write(agents *a, const char *agent, const char *role, const char *action, const char *session,
                 int status, const char *detail);

#endif
