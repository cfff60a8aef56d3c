/* cluster_world — what the cluster tests run in: one redis-server, the
 * registry simulator, three cardline gateways sharing them (the settings a
 * cluster needs: one hop key and digest secret, a consumer name each, a
 * SIP and RTP range each), Kamailio in front of their SIP ports and
 * HAProxy in front of their HTTP listeners, all on free loopback ports in
 * one scratch directory. Every wait is bounded; the helpers assert with
 * cmocka. */
#ifndef CARDLINE_TEST_CLUSTER_WORLD_H
#define CARDLINE_TEST_CLUSTER_WORLD_H

#include <stdbool.h>

#include "fronts.h"
#include "harness.h"

#define CW_NODES 3
#define CW_WAIT_MS 20000            /* bound of every wait on a process */
#define CW_PROBE_S 1                /* Kamailio's OPTIONS probe interval */

typedef struct {
    th_proc proc;                   /* the cardline daemon; log in its dir */
    char name[8];                   /* node1..node3: HAProxy's server name too */
    char conf[300];                 /* its cardline.conf */
    int http_port;                  /* [http] listen */
    int agents_port;                /* [agents] listen */
    int sip_port;                   /* [voice] listen */
    bool killed;                    /* SIGKILLed by the test: no clean exit to check */
} cw_node;

typedef struct {
    char dir[256];                  /* scratch directory */
    th_proc redis;                  /* redis-server, dir/redis */
    th_proc sim;                    /* registry simulator, dir/sim */
    cw_node node[CW_NODES];         /* the gateways, dir/nodeN */
    th_proc kamailio;               /* SIP front door (p.port), dir/kamailio */
    th_proc haproxy;                /* HTTP front door: citizens' TLS port (p.port), dir/haproxy */
    int haproxy_agents;             /* HAProxy's TLS door of the Agent API */
    int haproxy_stats;              /* HAProxy's stats page (plain HTTP) */
    char ca[300];                   /* the front doors' certificate, for clients */
} cw_world;

/* cmocka setup: everything started, every gateway healthy and up behind
 * HAProxy, Kamailio started (-1 otherwise). */
int cw_setup(void **state);
/* cmocka teardown: the surviving gateways stopped with SIGTERM (a clean
 * exit asserted: LeakSanitizer found nothing), the rest killed, the
 * directory removed (kept and named when CL_KEEP_TMP is set). */
int cw_teardown(void **state);

/* SIGKILLs gateway `i`, as a machine lost mid-work. */
void cw_kill_node(cw_world *w, int i);

/* The index of the gateway named `name` (node1..), -1 when none is. */
int cw_node_index(const char *name);

/* An answer through one of HAProxy's TLS doors. */
typedef struct {
    long status;                    /* HTTP status, 0 when none came */
    char *body;                     /* the body, NUL-terminated, never NULL; free it */
    size_t len;
    char node[16];                  /* X-Cardline-Node: the gateway HAProxy chose ("" when none) */
} cw_answer;

/* A request to https://127.0.0.1:`port``path` trusting only the test's
 * certificate: a POST of `form` signed as the aggregator signs when `form`
 * is not NULL, else a GET; `bearer` (may be NULL) as the Authorization. */
cw_answer cw_https(const cw_world *w, int port, const char *path, const char *form, const char *bearer);

/* The value of `metric` on gateway i's /metrics, summed over its labelled
 * series (-1 when absent). */
double cw_metric(const cw_world *w, int i, const char *metric);

#endif
