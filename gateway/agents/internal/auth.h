/* auth — the agents of the tokens file and the check of a bearer token.
 *
 * The file (YAML, libyaml) lists each agent's name, role, the SHA-256 of
 * its token, its SIP address and an optional expiry; every problem is
 * reported as "FILE:LINE: message". A loaded table is immutable. A token is
 * checked by hashing it and comparing the digest with every agent's in
 * constant time (CRYPTO_memcmp, no early exit), so neither the token nor
 * the position of a match leaks through timing. Nothing here logs. */
#ifndef CARDLINE_AGENTS_AUTH_H
#define CARDLINE_AGENTS_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "agents.h"

#define AUTH_MAX_AGENTS 1024     /* agents in one file */
#define AUTH_MAX_NAME 32         /* [a-z0-9_.-] */
#define AUTH_MAX_SIP_URI 256     /* bytes */
#define AUTH_MAX_TOKEN 512       /* bytes of a bearer token */

typedef enum {
    AGENT_OBSERVER = 0,          /* list and context, masked; no actions */
    AGENT_AGENT,                 /* as observer, plus every action */
    AGENT_SUPERVISOR             /* as agent, unmasked identifiers, the audit log */
} agent_role;

typedef struct {
    char name[AUTH_MAX_NAME + 1];        /* unique in the file */
    agent_role role;                     /* what it may see and do */
    unsigned char digest[32];            /* SHA-256 of its bearer token */
    char sip_uri[AUTH_MAX_SIP_URI + 1];  /* where a resumed caller returns, "" if none */
    time_t expires;                      /* the token is refused from then on; 0 = never */
} auth_agent;

typedef struct auth_table auth_table;

/* NULL with `errs` filled when the file is not clean. */
auth_table *agents_auth_load(const char *path, agents_errors *errs);
void agents_auth_free(auth_table *t);
size_t agents_auth_count(const auth_table *t);

typedef enum {
    AUTH_OK = 0,                 /* `who` is the agent */
    AUTH_MISSING,                /* no Authorization header */
    AUTH_MALFORMED,              /* not "Bearer <token68>" */
    AUTH_UNKNOWN,                /* no agent has this token */
    AUTH_EXPIRED                 /* the agent's token expired (`who` is set) */
} auth_result;

/* Checks an Authorization header value (NULL when absent) at `now`. */
auth_result agents_auth_check(const auth_table *t, const char *header, time_t now, const auth_agent **who);

const char *agents_auth_result_name(auth_result r);
const char *agents_auth_role_name(agent_role r);

#endif
