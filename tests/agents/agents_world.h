/* agents_world — the world of the agent API's tests: the real cardline
 * daemon with [agents] on (its own listener, a tokens file of the test's
 * agents), the citizens' channels on its main listener, against a real
 * redis-server and registry simulator (demo seed). One world for the whole
 * run of a test program; the helpers reach it through aw_world_get(). */
#ifndef CARDLINE_AGENTS_WORLD_H
#define CARDLINE_AGENTS_WORLD_H

#include <stdbool.h>
#include <stddef.h>

#include "world.h"

#define AW_WAIT_MS 20000

/* One entry of the tokens file. */
typedef struct {
    const char *name;       /* agent name */
    const char *role;       /* agent, supervisor or observer */
    const char *token;      /* the bearer token; the file holds its SHA-256 */
    const char *extra;      /* further YAML lines of the entry ("    key: value\n"), "" for none */
} aw_agent;

typedef struct {
    tw_world tw;            /* the daemon, its servers and directory */
    char tokens[300];       /* the tokens file */
    int api_port;           /* the agent API's listener */
    char ussd_text[512];    /* the USSD history of the current session */
} aw_world;

/* Starts the world: Redis (AOF on when `aof`), the simulator, the tokens
 * file of `n` agents, and the daemon with the common config plus `extra`
 * (more sections, or ""); waits until the API answers and /healthz is ok.
 * `name` names the scratch directory and the hop key secret. */
int aw_setup(void **state, const char *name, bool aof, const aw_agent *agents, size_t n, const char *extra);
/* SIGTERM; fails (-1) unless the daemon exits cleanly. */
int aw_teardown(void **state);

/* The world of the running test program. */
aw_world *aw_world_get(void);

/* One USSD hop of session `sid` from `phone`: `input` joins the history
 * with `*` (NULL: the dial, which starts a new history). The reply must
 * be 200 and contain `needle` ("" = anything), or the test fails. */
void aw_ussd(const char *sid, const char *phone, const char *input, const char *needle);

/* One SMS from `from` to 12333; the reply as for aw_ussd. */
void aw_sms(const char *from, const char *text, const char *needle);

/* SHA-256 of `text` as 64 hex digits. */
void aw_sha256_hex(const char *text, char out[65]);

#endif
