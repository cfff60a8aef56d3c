/* sentinel — where the Redis master is, by asking Redis Sentinels
 * (private to the store; hiredis 0.14 has no Sentinel support).
 *
 * sentinel_ask asks the Sentinels in turn `SENTINEL
 * get-master-addr-by-name NAME`, each on its own short-lived connection
 * with its own deadline, and reports the first valid answer (an IP
 * address and a port) or that none came. One subscription connection
 * follows `+switch-master` on one Sentinel at a time, moving to the next
 * when it drops. Every reply is checked before it is believed: a broken or
 * hostile Sentinel's garbage is refused and the next one asked.
 * Main-thread only. */
#ifndef CARDLINE_STORE_SENTINEL_H
#define CARDLINE_STORE_SENTINEL_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct event_base;

typedef struct sentinel sentinel;

#define SENTINEL_MAX CONF_IP_PORT_LIST_MAX /* Sentinels in one list */
#define SENTINEL_HOST_MAX 64     /* an IP address as text, with the NUL */

/* `host` is NULL when no Sentinel named a master (found) — never for
 * switched. Borrowed during the call. */
typedef void sentinel_master_cb(const char *host, int port, void *arg);

typedef struct {
    const char *addresses;       /* "host:port,host:port,..." */
    const char *master_name;     /* the monitored master's name */
    const char *password;        /* AUTH for the Sentinels, or NULL */
    int timeout_ms;              /* each Sentinel's connect + answer */
    int retry_ms;                /* pause before subscribing again after a drop */
    sentinel_master_cb *found;   /* the answer of one sentinel_ask round */
    sentinel_master_cb *switched; /* a +switch-master for our name: the new master */
    void *arg;                   /* passed to both */
} sentinel_options;

/* True when `text` is a valid list of at most SENTINEL_MAX host:port
 * items (IPv4 or [IPv6], port 1..65535); else false with `why` set. */
bool sentinel_list_valid(const char *text, const char **why);

/* Subscribes at once; asks nothing until sentinel_ask. NULL when the
 * list is invalid or memory runs out. */
sentinel *sentinel_new(struct event_base *base, const sentinel_options *opt);

/* Starts a round of asking unless one is running; `found` reports it,
 * never inside this call. */
void sentinel_ask(sentinel *sn);

/* Closes every connection; no callback runs after or during it. */
void sentinel_free(sentinel *sn);

#endif
