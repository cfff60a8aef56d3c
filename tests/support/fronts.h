/* fronts — the cluster's front doors as the tests run them: Kamailio
 * (configs/cluster/kamailio.cfg) and HAProxy (configs/cluster/haproxy.cfg)
 * on free loopback ports, as our user, in the foreground, with the
 * self-signed certificate HAProxy ends TLS with. The committed configs are
 * the ones started: ports and paths reach them as Kamailio defines and
 * HAProxy environment variables, as scripts/cluster passes them.
 * Processes die with the test (th_spawn). */
#ifndef CARDLINE_TEST_FRONTS_H
#define CARDLINE_TEST_FRONTS_H

#include <stdbool.h>

#include "harness.h"

#define TF_NODES_MAX 3              /* the gateways haproxy.cfg names */

/* Writes a self-signed certificate for 127.0.0.1 and localhost into
 * dir: `pem` gets the path of certificate + key (HAProxy's crt), `ca` of
 * the certificate alone (what a client trusts). False when openssl fails. */
bool tf_cert(const char *dir, char pem[300], char ca[300]);

/* Starts Kamailio in p->dir (made by the caller) on UDP and TCP `port`,
 * dispatching over the gateways' SIP ports `sip_ports[0..n)` (written to
 * p->dir/dispatcher.list), probing them every `probe_s` seconds; waits
 * until its TCP port accepts. */
bool tf_kamailio_start(th_proc *p, int port, const int *sip_ports, int n, int probe_s);

/* SIGTERM, which Kamailio passes on to its children, and waits for it:
 * SIGKILL would leave the children running. */
void tf_kamailio_stop(th_proc *p);

/* The gateways' ports HAProxy forwards to. */
typedef struct {
    int http[TF_NODES_MAX];         /* each gateway's [http] listen port */
    int agents[TF_NODES_MAX];       /* its [agents] listen port (any free port when it has none) */
} tf_nodes;

/* Starts HAProxy in p->dir: p->port is the citizens' TLS door (/ussd,
 * /sms/...), `agents_port` the Agent API's, `stats_port` its stats page,
 * `pem` the certificate. Waits until every gateway is up in its checks. */
bool tf_haproxy_start(th_proc *p, int agents_port, int stats_port, const char *pem, const tf_nodes *nodes);

/* Servers of backend `backend` HAProxy's stats page (`stats_port`) shows
 * UP; -1 when the page does not answer. */
int tf_haproxy_up(int stats_port, const char *backend);

#endif
