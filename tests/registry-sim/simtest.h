/* simtest — small helpers shared by the registry-sim integration tests:
 * requests to a running simulator (th_http underneath) with the reply parsed
 * as JSON, a variant that also returns response headers, and shortcuts for
 * /_sim/stats. Each test owns a fresh simulator started by simtest_start. */
#ifndef SIMTEST_H
#define SIMTEST_H

#include <jansson.h>
#include <stdbool.h>

#include "harness.h"

typedef struct {
    long status;        /* HTTP status, 0 when no answer came */
    json_t *body;       /* parsed body, or NULL if it was not JSON */
    char *raw;          /* body as received */
    char *headers;      /* response header block (simtest_call_h only) */
} st_resp;

/* A simulator with the demo seed in a fresh directory; asserts it started. */
void simtest_start(th_proc *p, const char *const *extra_args);
/* Stops it (asserting a clean exit 0) and removes its directory. */
void simtest_stop(th_proc *p);

/* cmocka fixtures: a fresh simulator per test in *state (a th_proc *). */
int simtest_setup(void **state);
int simtest_teardown(void **state);

/* `key`: Idempotency-Key header value, or NULL for none. */
st_resp st_call(const th_proc *p, const char *method, const char *path, const char *body,
                const char *key);
/* Same with extra request headers, capturing the response headers too. */
st_resp st_call_h(const th_proc *p, const char *method, const char *path, const char *body,
                  const char *const *headers);
void st_free(st_resp *r);

/* The error body's code, or "" for a body without one. */
const char *st_code(const st_resp *r);
/* A member of the body by dotted path ("pin.remaining_attempts"). */
json_t *st_get(const st_resp *r, const char *dotted);
/* The value of response header `name` (case-insensitive), or "" (static buffer). */
const char *st_header(const st_resp *r, const char *name);

/* /_sim/stats: applied.<counter>, or the top-level "requests"/"replays". */
long long st_applied(const th_proc *p, const char *counter);
long long st_stat(const th_proc *p, const char *name);

/* A unique idempotency key for this process. */
const char *st_key(void);

#endif
