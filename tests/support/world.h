/* world — the cardline daemon as the integration tests run it: a scratch
 * directory with a real redis-server and registry simulator, the daemon on
 * a free loopback port with the config the test writes, and the peers'
 * requests (the aggregator's signed USSD POST, Kannel's SMS GET) to it.
 *
 * Layout of the scratch directory: redis/ (data, AOF, redis.log), sim/
 * (registry.db, registry-sim.log), gw/ (cardline.log) and cardline.conf.
 * A test keeps its own fields next to a tw_world (ports of its own, paths)
 * and writes the config itself: the sections differ from test to test. */
#ifndef CARDLINE_TEST_WORLD_H
#define CARDLINE_TEST_WORLD_H

#include <stdbool.h>
#include <stddef.h>

#include "harness.h"

typedef struct {
    char dir[256];          /* scratch directory of the world */
    char conf[300];         /* the gateway's config, dir/cardline.conf */
    int http_port;          /* the gateway's listener (USSD, SMS, ops), chosen free */
    th_proc redis;          /* real redis-server, files in dir/redis */
    th_proc sim;            /* real registry simulator, database in dir/sim */
    th_proc gw;             /* the cardline daemon, log in dir/gw */
} tw_world;

/* Makes the scratch directory (`prefix`-XXXXXX) with its gw/, picks
 * http_port and names conf. */
void tw_init(tw_world *w, const char *prefix);

/* Starts redis-server (AOF on when `aof`) and the simulator (seed file
 * `seed`, NULL = the demo seed; `sim_args` as for th_sim_start) in their
 * subdirectories. False when one does not come up. */
bool tw_start_servers(tw_world *w, bool aof, const char *seed, const char *const *sim_args);

/* Starts `cardline --config conf` (written by now) and waits up to
 * `wait_ms` until http_port accepts and, when `healthy`, /healthz says ok. */
bool tw_start_gateway(tw_world *w, bool healthy, int wait_ms);

/* Stops the gateway (SIGTERM and up to `grace_ms` for a clean exit; 0 =
 * SIGKILL at once), the simulator and Redis, and removes the directory
 * unless the gateway's exit was not clean or CL_KEEP_TMP is set (then it
 * says where it is kept). True when the gateway exited 0 — under the
 * sanitizers that also means LeakSanitizer found nothing. */
bool tw_stop(tw_world *w, int grace_ms);

/* A person of a registry seed: a citizen with one normal card in use and
 * a PIN that is not the initial one. */
typedef struct {
    const char *ssn;        /* citizen ID */
    const char *card;       /* the card number */
    const char *pin;        /* its service PIN */
    const char *mobile;     /* registered mobile */
} tw_seed_person;

/* Writes the simulator's seed, w->dir/seed.json, with the bank ICBC, no
 * outlets and these `n` people; its path goes to `out`. False when it
 * cannot be written. */
bool tw_write_seed(const tw_world *w, const tw_seed_person *people, int n, char out[300]);

/* Peers' requests -----------------------------------------------------------*/

/* GETs `path` (form NULL) or POSTs the /ussd `form` signed with
 * TH_USSD_SECRET, on the gateway's listener, waiting up to `wait_ms`.
 * Returns the body (malloc'd, never NULL); *status is 0 with no answer. */
char *tw_call(const tw_world *w, const char *path, const char *form, long *status, int wait_ms);

/* The /ussd form of one hop of session `sid` from `phone` with the
 * history `text`, each escaped, service code *123#. */
void tw_ussd_form(char *out, size_t size, const char *sid, const char *phone, const char *text);

/* The /sms/kannel path of a text from `from` to 12333, with Kannel's key. */
void tw_sms_path(char *out, size_t size, const char *from, const char *text);

#endif
