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
#define SENTINEL_HOST_MAX CONF_IP_TEXT_MAX /* an IP address as text, with the NUL */

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

/* Subscribes at once; asks nothing until sentinel_ask. NULL when the
 * list is invalid or memory runs out. */
sentinel *sentinel_new(struct event_base *base, const sentinel_options *opt);

/* Starts a round of asking unless one is running; `found` reports it,
 * never inside this call. */
void sentinel_ask(sentinel *sn);

/* Closes every connection; no callback runs after or during it. */
void sentinel_free(sentinel *sn);

/* Reading a Sentinel's word (pure; tests/fuzz/fuzz_sentinel_switch) -----------*/

#define SENTINEL_MESSAGE_MAX 512 /* bytes of a +switch-master payload */

typedef enum {
    SENTINEL_SWITCH_BAD,   /* not "<name> <old-ip> <old-port> <new-ip> <new-port>" */
    SENTINEL_SWITCH_OTHER, /* well formed, another master's */
    SENTINEL_SWITCH_OURS   /* our master moved: host and port are set */
} sentinel_switch;

/* Reads the `len` bytes of a +switch-master payload (IP addresses and
 * ports 1..65535 only, at most SENTINEL_MESSAGE_MAX bytes) for the master
 * `master_name`. */
sentinel_switch sentinel_read_switch(const char *msg, size_t len, const char *master_name,
                                     char host[SENTINEL_HOST_MAX], int *port);

#endif
