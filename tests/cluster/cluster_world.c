/* cluster_world — three gateways behind Kamailio and HAProxy; see
 * cluster_world.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

#include "cluster_world.h"

#define CW_RTP_PORTS 200            /* RTP ports per gateway */
#define CW_REQUEST_MS 10000         /* bound of one request through HAProxy */

/* An even base in 30000..(60000 - nodes' ranges) that differs between
 * runs, so tests run in parallel rarely meet on an RTP port. */
static int pick_rtp_base(void)
{
    return 30000 + 2 * (int)(((unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL)) % 14000);
}

/* What makes the gateways one cluster: the same Redis, replay-key and
 * digest secrets, and a consumer name of their own. */
static void write_node_conf(const cw_world *w, const cw_node *n, int rtp_min, const char *prompts)
{
    th_write_filef(n->conf,
                   "[log]\nlevel = info\nflush_ms = 0\n"
                   "[http]\nlisten = 127.0.0.1:%d\n"
                   "[redis]\nport = %d\nreconnect_min_ms = 20\nreconnect_max_ms = 200\n"
                   "[registry]\nurl = http://127.0.0.1:%d\nhealth_interval_ms = 200\n"
                   "[dialplans]\ndir = %s/dialplans\n"
                   "[ussd]\nhop_key_secret = the cluster tests' shared hop key\n" TH_USSD_SECRET_LINE
                   "[sms]\n" TH_SMS_KEY_LINE
                   "[workflows]\ndigest_secret = the cluster tests' shared digest key\n"
                   "[outbox]\nconsumer = %s\n"
                   "[agents]\nenabled = 1\nlisten = 127.0.0.1:%d\ntokens_file = %s/configs/agents.yaml\n"
                   "[gateway]\nshutdown_grace_ms = 3000\nnodes = 3\n"
                   "[voice]\nenabled = 1\nlisten = 127.0.0.1:%d\ntrunks = 127.0.0.1\n"
                   "rtp_address = 127.0.0.1\nrtp_port_min = %d\nrtp_port_max = %d\nprompts_dir = %s\n",
                   n->http_port, w->redis.port, w->sim.port, CL_SOURCE_DIR, n->name, n->agents_port, CL_SOURCE_DIR,
                   n->sip_port, rtp_min,
                   rtp_min + CW_RTP_PORTS - 1, prompts);
}

static bool start_node(cw_node *n)
{
    const char *argv[] = {CL_GATEWAY_BIN, "--config", n->conf, NULL};
    return th_spawn(&n->proc, "cardline", argv) && th_wait_port(n->http_port, CW_WAIT_MS) &&
           th_wait_healthz(n->http_port, "\"status\":\"ok\"", CW_WAIT_MS);
}

static bool start_nodes(cw_world *w)
{
    char prompts[256];
    th_subdir(w->dir, "prompts", prompts); /* empty: every prompt plays as nothing */
    int rtp = pick_rtp_base();
    for (int i = 0; i < CW_NODES; i++) {
        cw_node *n = &w->node[i];
        snprintf(n->name, sizeof n->name, "node%d", i + 1);
        char dir[256];
        th_subdir(w->dir, n->name, dir);
        snprintf(n->proc.dir, sizeof n->proc.dir, "%s", dir);
        snprintf(n->conf, sizeof n->conf, "%s/cardline.conf", dir);
        n->http_port = th_free_port();
        n->agents_port = th_free_port();
        n->sip_port = th_free_port();
        write_node_conf(w, n, rtp + i * CW_RTP_PORTS, prompts);
    }
    for (int i = 0; i < CW_NODES; i++)
        if (!start_node(&w->node[i]))
            return false;
    return true;
}

static bool start_fronts(cw_world *w)
{
    char pem[300];
    int sip[CW_NODES];
    tf_nodes nodes;
    for (int i = 0; i < CW_NODES; i++) {
        sip[i] = w->node[i].sip_port;
        nodes.http[i] = w->node[i].http_port;
        nodes.agents[i] = w->node[i].agents_port;
    }
    th_subdir(w->dir, "kamailio", w->kamailio.dir);
    th_subdir(w->dir, "haproxy", w->haproxy.dir);
    w->haproxy.port = th_free_port();
    w->haproxy_agents = th_free_port();
    w->haproxy_stats = th_free_port();
    return tf_cert(w->haproxy.dir, pem, w->ca) &&
           tf_kamailio_start(&w->kamailio, th_free_port(), sip, CW_NODES, CW_PROBE_S) &&
           tf_haproxy_start(&w->haproxy, w->haproxy_agents, w->haproxy_stats, pem, &nodes);
}

int cw_setup(void **state)
{
    cw_world *w = calloc(1, sizeof *w);
    char sub[256];
    *state = w;
    th_mkdtemp(w->dir, "cl-cluster");
    th_subdir(w->dir, "redis", sub);
    th_subdir(w->dir, "sim", w->sim.dir);
    if (!th_redis_start(&w->redis, sub, false) || !th_sim_start(&w->sim, w->sim.dir, NULL, NULL) ||
        !start_nodes(w) || !start_fronts(w)) {
        print_error("the cluster did not come up\n");
        setenv("CL_KEEP_TMP", "1", 1);
        cw_teardown(state); /* cmocka runs no teardown after a failed setup */
        return -1;
    }
    return 0;
}

int cw_teardown(void **state)
{
    cw_world *w = *state;
    bool clean = true;
    for (int i = 0; i < CW_NODES; i++) {
        cw_node *n = &w->node[i];
        if (n->killed || n->proc.pid <= 0)
            continue;
        int status = th_stop(&n->proc, CW_WAIT_MS);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            print_error("%s exit status %d; its log: %s\n", n->name, status, n->proc.log);
            clean = false;
        }
    }
    th_kill(&w->haproxy);
    tf_kamailio_stop(&w->kamailio);
    th_kill(&w->sim);
    th_kill(&w->redis);
    if (!clean || getenv("CL_KEEP_TMP"))
        fprintf(stderr, "kept %s\n", w->dir);
    else
        th_rmdir(w->dir);
    free(w);
    return clean ? 0 : -1;
}

void cw_kill_node(cw_world *w, int i)
{
    th_kill(&w->node[i].proc);
    w->node[i].killed = true;
}

int cw_node_index(const char *name)
{
    for (int i = 0; i < CW_NODES; i++) {
        char want[8];
        snprintf(want, sizeof want, "node%d", i + 1);
        if (strcmp(name, want) == 0)
            return i;
    }
    return -1;
}

static size_t take_body(char *data, size_t size, size_t n, void *arg)
{
    cw_answer *a = arg;
    char *grown = realloc(a->body, a->len + size * n + 1);
    assert_non_null(grown);
    memcpy(grown + a->len, data, size * n);
    a->len += size * n;
    grown[a->len] = '\0';
    a->body = grown;
    return size * n;
}

static size_t take_node(char *data, size_t size, size_t n, void *arg)
{
    cw_answer *a = arg;
    const char name[] = "X-Cardline-Node:";
    if (size * n > sizeof name && strncasecmp(data, name, sizeof name - 1) == 0)
        sscanf(data + sizeof name - 1, " %15[a-z0-9]", a->node);
    return size * n;
}

cw_answer cw_https(const cw_world *w, int port, const char *path, const char *form, const char *bearer)
{
    cw_answer a = {.body = calloc(1, 1)};
    char url[512], auth[128];
    assert_non_null(a.body);
    snprintf(url, sizeof url, "https://127.0.0.1:%d%s", port, path);
    struct curl_slist *h = form ? th_ussd_sign(NULL, form) : NULL;
    if (bearer) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", bearer);
        h = curl_slist_append(h, auth);
    }
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, w->ca);
    if (form)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, take_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, take_node);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &a);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)CW_REQUEST_MS);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a.status);
    else
        print_message("%s: %s\n", url, curl_easy_strerror(rc));
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return a;
}

double cw_metric(const cw_world *w, int i, const char *metric)
{
    char *body = NULL;
    double sum = -1;
    if (th_http_get(w->node[i].http_port, "/metrics", &body) == 200) {
        size_t len = strlen(metric);
        for (char *line = strtok(body, "\n"); line; line = strtok(NULL, "\n")) {
            if (strncmp(line, metric, len) != 0 || (line[len] != ' ' && line[len] != '{'))
                continue;
            char *value = strrchr(line, ' ');
            sum = (sum < 0 ? 0 : sum) + strtod(value + 1, NULL);
        }
    }
    free(body);
    return sum;
}
