/* fronts — Kamailio and HAProxy for the cluster tests; see fronts.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fronts.h"

#define TF_WAIT_MS 20000            /* bound of every start-up wait */

bool tf_cert(const char *dir, char pem[300], char ca[300])
{
    char cmd[1400], out[256];
    snprintf(pem, 300, "%s/front.pem", dir);
    snprintf(ca, 300, "%s/front-ca.pem", dir);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
             "-addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout front.key -out front-ca.pem "
             ">openssl.log 2>&1 && cat front-ca.pem front.key >front.pem && rm front.key",
             dir);
    return th_run(cmd, out, sizeof out) == 0;
}

bool tf_kamailio_start(th_proc *p, int port, const int *sip_ports, int n, int probe_s)
{
    char list[300], text[1024] = "";
    size_t len = 0;
    snprintf(list, sizeof list, "%s/dispatcher.list", p->dir);
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(text + len, sizeof text - len, "1 sip:127.0.0.1:%d\n", sip_ports[i]);
    th_write_file(list, text);

    char cfg[300], pid[300], udp[80], tcp[80], dlist[340], probe[64];
    snprintf(cfg, sizeof cfg, "%s/configs/cluster/kamailio.cfg", CL_SOURCE_DIR);
    snprintf(pid, sizeof pid, "%s/kamailio.pid", p->dir);
    snprintf(udp, sizeof udp, "CL_LISTEN=udp:127.0.0.1:%d", port);
    snprintf(tcp, sizeof tcp, "CL_LISTEN_TCP=tcp:127.0.0.1:%d", port);
    snprintf(dlist, sizeof dlist, "CL_DISPATCHER_LIST=\"%s\"", list);
    snprintf(probe, sizeof probe, "CL_PROBE_INTERVAL=%d", probe_s);
    const char *argv[] = {"kamailio", "-DD", "-E", "-f", cfg, "-Y", p->dir, "-w", p->dir, "-P", pid,
                          "-A", udp, "-A", tcp, "-A", dlist, "-A", probe, NULL};
    p->port = port;
    return th_spawn(p, "kamailio", argv) && th_wait_port(port, TF_WAIT_MS);
}

void tf_kamailio_stop(th_proc *p)
{
    th_stop(p, TF_WAIT_MS);
}

static void setenv_int(const char *name, int value)
{
    char text[16];
    snprintf(text, sizeof text, "%d", value);
    setenv(name, text, 1);
}

bool tf_haproxy_start(th_proc *p, int agents_port, int stats_port, const char *pem, const tf_nodes *nodes)
{
    char cfg[300], name[32];
    snprintf(cfg, sizeof cfg, "%s/configs/cluster/haproxy.cfg", CL_SOURCE_DIR);
    /* The child inherits them: HAProxy reads its ports from the environment. */
    setenv("CL_BIND", "127.0.0.1", 1);
    setenv("CL_CERT", pem, 1);
    setenv_int("CL_CITIZENS_PORT", p->port);
    setenv_int("CL_AGENTS_PORT", agents_port);
    setenv_int("CL_STATS_PORT", stats_port);
    for (int i = 0; i < TF_NODES_MAX; i++) {
        snprintf(name, sizeof name, "CL_NODE%d_HTTP", i + 1);
        setenv_int(name, nodes->http[i]);
        snprintf(name, sizeof name, "CL_NODE%d_AGENTS", i + 1);
        setenv_int(name, nodes->agents[i]);
    }
    const char *argv[] = {"haproxy", "-db", "-f", cfg, NULL};
    if (!th_spawn(p, "haproxy", argv) || !th_wait_port(stats_port, TF_WAIT_MS))
        return false;
    long deadline = th_now_ms() + TF_WAIT_MS;
    while (tf_haproxy_up(stats_port, "gateways") < TF_NODES_MAX) {
        if (th_now_ms() > deadline)
            return false;
        th_poll_pause();
    }
    return true;
}

int tf_haproxy_up(int stats_port, const char *backend)
{
    char *csv = NULL, prefix[64];
    if (th_http_get(stats_port, "/;csv", &csv) != 200) {
        free(csv);
        return -1;
    }
    /* One line per server: "backend,server,...,status,..."; status is the 18th field. */
    int up = 0;
    snprintf(prefix, sizeof prefix, "%s,", backend);
    for (char *line = strtok(csv, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, prefix, strlen(prefix)) != 0 || strstr(line, ",BACKEND,"))
            continue;
        char *field = line;
        for (int i = 0; i < 17 && field; i++) {
            field = strchr(field, ',');
            if (field)
                field++;
        }
        if (field && strncmp(field, "UP", 2) == 0)
            up++;
    }
    free(csv);
    return up;
}
