/* sentinel — owns the store's connections to Redis Sentinels: the
 * short-lived one of each question (`SENTINEL get-master-addr-by-name`),
 * asked of one Sentinel after another until one answers sanely, and the
 * one subscription to `+switch-master`. Nothing a Sentinel sends is
 * believed before it is checked: an address must be an IP and a port, a
 * switch message exactly five fields naming our master. The Sentinel
 * password is never logged. */
#include "sentinel.h"

#include "config.h"
#include "log.h"
#include "mem.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENTINEL_SWITCH_CHANNEL "+switch-master"

struct sentinel {
    struct event_base *base;      /* the main loop */
    sentinel_options opt;         /* copy; master_name and password owned */
    conf_ip_port addrs[SENTINEL_MAX]; /* the Sentinels, in list order */
    int count;                    /* entries in addrs */
    /* asking */
    bool asking;                  /* a round is running */
    int ask_index;                /* the Sentinel being asked */
    int ask_tried;                /* Sentinels asked this round */
    int ask_first;                /* where the next round starts: the last that answered */
    redisAsyncContext *ask_ac;    /* the question's connection, NULL between questions */
    struct event *ask_deadline;   /* the current question's deadline */
    struct event *ask_report;     /* reports a round that ended before the loop turned */
    char found_host[SENTINEL_HOST_MAX]; /* the round's answer, "" for none */
    int found_port;
    /* following */
    int sub_index;                /* the Sentinel subscribed to (or to try next) */
    redisAsyncContext *sub_ac;    /* the subscription, NULL while down */
    bool sub_confirmed;           /* the SUBSCRIBE was answered */
    struct event *sub_deadline;   /* connect + SUBSCRIBE must answer by then */
    struct event *sub_retry;      /* subscribes again after a drop */
};

/* Checks ---------------------------------------------------------------------*/

static bool valid_ip(const char *text, size_t len)
{
    char buf[SENTINEL_HOST_MAX];
    unsigned char bin[sizeof(struct in6_addr)];
    if (len == 0 || len >= sizeof buf)
        return false;
    memcpy(buf, text, len);
    buf[len] = '\0';
    return inet_pton(AF_INET, buf, bin) == 1 || inet_pton(AF_INET6, buf, bin) == 1;
}

static bool valid_port(const char *text, size_t len, int *port)
{
    if (len == 0 || len > 5)
        return false;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return false;
        v = v * 10 + (text[i] - '0');
    }
    if (v < 1 || v > 65535)
        return false;
    *port = v;
    return true;
}

/* A Redis error code without its message. */
static log_quoted error_code(const redisReply *r)
{
    char code[32];
    snprintf(code, sizeof code, "%.*s", (int)strcspn(r->str, " "), r->str);
    return log_quote(code);
}

static struct timeval ms_to_tv(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* Connections ----------------------------------------------------------------*/

/* ac->data is the sentinel while we want the connection, NULL once we let
 * go: hiredis may still call back (pending replies, the disconnect), and
 * those calls are ignored. */
static void let_go(redisAsyncContext *ac)
{
    ac->data = NULL;
    redisAsyncFree(ac);
}

/* `authed` (may be NULL) hears AUTH's answer when a password is set. */
static redisAsyncContext *connect_to(sentinel *sn, const conf_ip_port *a,
                                     redisConnectCallback *on_connect,
                                     redisDisconnectCallback *on_disconnect, redisCallbackFn *authed)
{
    redisAsyncContext *ac = redisAsyncConnect(a->host, a->port);
    if (ac == NULL)
        mem_out_of_memory("sentinel: redisAsyncConnect");
    if (ac->err) {
        log_warn("store.sentinel_failed", "sentinel=%s:%d error=%s", a->host, a->port, log_quote(ac->errstr).s);
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = sn;
    redisLibeventAttach(ac, sn->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (sn->opt.password) {
        const char *argv[] = {"AUTH", sn->opt.password};
        redisAsyncCommandArgv(ac, authed, NULL, 2, argv, NULL);
    }
    return ac;
}

/* Asking ------------------------------------------------------------------------*/

static void ask_next(sentinel *sn);

static void round_reported(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    sentinel *sn = arg;
    sn->opt.found(sn->found_host[0] ? sn->found_host : NULL, sn->found_port, sn->opt.arg);
}

/* Ends the round; the answer goes out on the next loop turn, so the store
 * never hears it inside a call of its own or a hiredis callback. */
static void round_end(sentinel *sn, const char *host, int port)
{
    sn->asking = false;
    snprintf(sn->found_host, sizeof sn->found_host, "%s", host ? host : "");
    sn->found_port = port;
    event_active(sn->ask_report, EV_TIMEOUT, 0);
}

static void question_close(sentinel *sn)
{
    evtimer_del(sn->ask_deadline);
    if (sn->ask_ac) {
        let_go(sn->ask_ac);
        sn->ask_ac = NULL;
    }
}

static void question_failed(sentinel *sn, const char *why)
{
    const conf_ip_port *a = &sn->addrs[sn->ask_index];
    log_warn("store.sentinel_failed", "sentinel=%s:%d why=%s", a->host, a->port, why);
    question_close(sn);
    sn->ask_index = (sn->ask_index + 1) % sn->count;
    ask_next(sn);
}

/* The answer is a two-element array: an IP and a port; nil when the
 * Sentinel does not know the master. */
static void ask_replied(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    sentinel *sn = ac->data;
    const redisReply *r = reply;
    if (sn == NULL || r == NULL)
        return;
    int port;
    if (r->type == REDIS_REPLY_ERROR) {
        question_failed(sn, error_code(r).s);
    } else if (r->type == REDIS_REPLY_NIL) {
        question_failed(sn, "unknown_master");
    } else if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
               r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING ||
               !valid_ip(r->element[0]->str, r->element[0]->len) ||
               !valid_port(r->element[1]->str, r->element[1]->len, &port)) {
        question_failed(sn, "bad_answer");
    } else {
        char host[SENTINEL_HOST_MAX];
        snprintf(host, sizeof host, "%.*s", (int)r->element[0]->len, r->element[0]->str);
        question_close(sn);
        sn->ask_first = sn->ask_index;
        round_end(sn, host, port);
    }
}

static void ask_connected(const redisAsyncContext *ac, int status)
{
    sentinel *sn = ac->data;
    if (sn == NULL || status == REDIS_OK)
        return;
    sn->ask_ac = NULL; /* hiredis frees it */
    question_failed(sn, "connect");
}

static void ask_disconnected(const redisAsyncContext *ac, int status)
{
    (void)status;
    sentinel *sn = ac->data;
    if (sn == NULL)
        return;
    sn->ask_ac = NULL;
    question_failed(sn, "disconnected");
}

static void ask_deadline_passed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    question_failed(arg, "timeout");
}

static void ask_next(sentinel *sn)
{
    while (sn->ask_tried < sn->count) {
        sn->ask_tried++;
        const conf_ip_port *a = &sn->addrs[sn->ask_index];
        sn->ask_ac = connect_to(sn, a, ask_connected, ask_disconnected, NULL);
        if (sn->ask_ac == NULL) {
            sn->ask_index = (sn->ask_index + 1) % sn->count;
            continue;
        }
        const char *argv[] = {"SENTINEL", "get-master-addr-by-name", sn->opt.master_name};
        redisAsyncCommandArgv(sn->ask_ac, ask_replied, NULL, 3, argv, NULL);
        struct timeval tv = ms_to_tv(sn->opt.timeout_ms);
        evtimer_add(sn->ask_deadline, &tv);
        return;
    }
    log_warn("store.sentinel_no_master", "sentinels=%d", sn->count);
    round_end(sn, NULL, 0);
}

void sentinel_ask(sentinel *sn)
{
    if (sn->asking)
        return;
    sn->asking = true;
    sn->ask_tried = 0;
    sn->ask_index = sn->ask_first;
    ask_next(sn);
}

/* Following -----------------------------------------------------------------*/

static void follow_lost(sentinel *sn, const char *why)
{
    const conf_ip_port *a = &sn->addrs[sn->sub_index];
    log_warn("store.sentinel_unsubscribed", "sentinel=%s:%d why=%s", a->host, a->port, why);
    evtimer_del(sn->sub_deadline);
    if (sn->sub_ac) {
        let_go(sn->sub_ac);
        sn->sub_ac = NULL;
    }
    sn->sub_index = (sn->sub_index + 1) % sn->count;
    struct timeval tv = ms_to_tv(sn->opt.retry_ms);
    evtimer_add(sn->sub_retry, &tv);
}

/* "<name> <old-ip> <old-port> <new-ip> <new-port>": exactly five fields. */
sentinel_switch sentinel_read_switch(const char *msg, size_t len, const char *master_name,
                                     char host[SENTINEL_HOST_MAX], int *port)
{
    if (len > SENTINEL_MESSAGE_MAX || memchr(msg, '\0', len))
        return SENTINEL_SWITCH_BAD;
    char text[SENTINEL_MESSAGE_MAX + 1];
    memcpy(text, msg, len);
    text[len] = '\0';
    char *field[6], *save = NULL;
    int n = 0;
    for (char *t = strtok_r(text, " ", &save); t && n < 6; t = strtok_r(NULL, " ", &save))
        field[n++] = t;
    int old_port;
    if (n != 5 || !valid_ip(field[1], strlen(field[1])) || !valid_port(field[2], strlen(field[2]), &old_port) ||
        !valid_ip(field[3], strlen(field[3])) || !valid_port(field[4], strlen(field[4]), port))
        return SENTINEL_SWITCH_BAD;
    if (strcmp(field[0], master_name) != 0)
        return SENTINEL_SWITCH_OTHER;
    snprintf(host, SENTINEL_HOST_MAX, "%s", field[3]);
    return SENTINEL_SWITCH_OURS;
}

static void switch_message(sentinel *sn, const redisReply *payload)
{
    char host[SENTINEL_HOST_MAX];
    int port;
    sentinel_switch what = payload->type == REDIS_REPLY_STRING
                               ? sentinel_read_switch(payload->str, payload->len, sn->opt.master_name, host, &port)
                               : SENTINEL_SWITCH_BAD;
    if (what == SENTINEL_SWITCH_BAD)
        log_warn("store.sentinel_bad_message", NULL);
    else if (what == SENTINEL_SWITCH_OURS)
        sn->opt.switched(host, port, sn->opt.arg);
}

/* Subscribe confirmations and messages: ["subscribe"|"message", channel, x]. */
static void sub_replied(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    sentinel *sn = ac->data;
    const redisReply *r = reply;
    if (sn == NULL || r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        follow_lost(sn, error_code(r).s);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || r->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = r->element[0]->str;
    if (strcmp(kind, "subscribe") == 0 && !sn->sub_confirmed) {
        sn->sub_confirmed = true;
        evtimer_del(sn->sub_deadline);
        const conf_ip_port *a = &sn->addrs[sn->sub_index];
        log_info("store.sentinel_subscribed", "sentinel=%s:%d", a->host, a->port);
    } else if (strcmp(kind, "message") == 0) {
        switch_message(sn, r->element[2]);
    }
}

/* AUTH's answer: a wrong password is a reason to try another Sentinel
 * (an error to SUBSCRIBE itself has no callback in hiredis 0.14: the
 * deadline catches it). */
static void sub_authed(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    sentinel *sn = ac->data;
    const redisReply *r = reply;
    if (sn != NULL && r != NULL && r->type == REDIS_REPLY_ERROR)
        follow_lost(sn, error_code(r).s);
}

static void sub_connected(const redisAsyncContext *ac, int status)
{
    sentinel *sn = ac->data;
    if (sn == NULL || status == REDIS_OK)
        return;
    sn->sub_ac = NULL;
    follow_lost(sn, "connect");
}

static void sub_disconnected(const redisAsyncContext *ac, int status)
{
    (void)status;
    sentinel *sn = ac->data;
    if (sn == NULL)
        return;
    sn->sub_ac = NULL;
    follow_lost(sn, "disconnected");
}

static void sub_deadline_passed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    follow_lost(arg, "timeout");
}

static void follow(sentinel *sn)
{
    sn->sub_confirmed = false;
    sn->sub_ac = connect_to(sn, &sn->addrs[sn->sub_index], sub_connected, sub_disconnected, sub_authed);
    if (sn->sub_ac == NULL) {
        follow_lost(sn, "connect");
        return;
    }
    const char *argv[] = {"SUBSCRIBE", SENTINEL_SWITCH_CHANNEL};
    redisAsyncCommandArgv(sn->sub_ac, sub_replied, NULL, 2, argv, NULL);
    struct timeval tv = ms_to_tv(sn->opt.timeout_ms);
    evtimer_add(sn->sub_deadline, &tv);
}

static void sub_retry_due(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    follow(arg);
}

/* Lifecycle -------------------------------------------------------------------*/

sentinel *sentinel_new(struct event_base *base, const sentinel_options *opt)
{
    sentinel *sn = mem_calloc(1, sizeof *sn);
    if (opt->addresses == NULL || conf_ip_port_list_split(opt->addresses, sn->addrs, &sn->count) ||
        opt->master_name == NULL || opt->timeout_ms < 1 || opt->retry_ms < 1) {
        free(sn);
        return NULL;
    }
    sn->base = base;
    sn->opt = *opt;
    sn->opt.addresses = NULL;
    sn->opt.master_name = mem_strdup(opt->master_name);
    sn->opt.password = opt->password && *opt->password ? mem_strdup(opt->password) : NULL;
    sn->ask_deadline = evtimer_new(base, ask_deadline_passed, sn);
    sn->ask_report = evtimer_new(base, round_reported, sn);
    sn->sub_deadline = evtimer_new(base, sub_deadline_passed, sn);
    sn->sub_retry = evtimer_new(base, sub_retry_due, sn);
    if (!sn->ask_deadline || !sn->ask_report || !sn->sub_deadline || !sn->sub_retry)
        mem_out_of_memory("sentinel: evtimer_new");
    follow(sn);
    return sn;
}

void sentinel_free(sentinel *sn)
{
    if (sn == NULL)
        return;
    if (sn->ask_ac)
        let_go(sn->ask_ac);
    if (sn->sub_ac)
        let_go(sn->sub_ac);
    event_free(sn->ask_deadline);
    event_free(sn->ask_report);
    event_free(sn->sub_deadline);
    event_free(sn->sub_retry);
    free((char *)sn->opt.master_name);
    if (sn->opt.password) {
        explicit_bzero((char *)sn->opt.password, strlen(sn->opt.password));
        free((char *)sn->opt.password);
    }
    free(sn);
}
