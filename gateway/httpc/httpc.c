/* httpc — owns the curl multi handle, one libevent event per socket curl
 * watches, one timer for curl's own timeouts, and every request from
 * httpc_send until its callback has run. libcurl is never called from inside
 * its own callbacks: the socket and timer callbacks only arm events, and
 * transfers advance in the event handlers, which then collect finished
 * transfers. Request bodies and header lines are wiped when a transfer ends
 * (they may hold a PIN or a bearer token); nothing here logs them. */
#include "httpc.h"

#include "log.h"
#include "mem.h"
#include "pending.h"
#include "version.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#define HTTPC_MAX_URL 4096
#define HTTPC_MAX_BODY (1024 * 1024)

typedef struct httpc_req httpc_req;

struct httpc_req {
    httpc *owner;                 /* the client */
    pending_op op;                /* in the owner's unfinished requests */
    bool sending;                 /* its easy handle is in the multi handle */
    const char *refusal;          /* refused before sending: why (static text) */
    httpc_response *answer;       /* the transfer's outcome, while completing */
    CURL *easy;                   /* the transfer, NULL when refused early */
    struct curl_slist *headers;   /* header lines, wiped before free */
    char *body;                   /* copy of the request body, wiped before free */
    size_t body_len;              /* its length */
    char *resp;                   /* response body received so far, NUL-terminated */
    size_t resp_len;              /* bytes in `resp` */
    size_t resp_cap;              /* allocated size of `resp` */
    bool resp_too_large;          /* the response passed max_response_bytes */
    httpc_cb *cb;                 /* the caller's callback */
    void *arg;                    /* and its argument */
};

/* A socket curl asked us to watch. */
typedef struct httpc_sock {
    httpc *owner;                     /* the client */
    LIST_ENTRY(httpc_sock) link;      /* the owner's list of watched sockets */
    struct event *ev;                 /* read/write interest curl asked for */
} httpc_sock;

struct httpc {
    struct event_base *base;  /* the main loop */
    CURLM *multi;             /* all transfers */
    struct event *timer;      /* curl's single timeout */
    httpc_options opt;        /* validated options */
    pending_set reqs;         /* unfinished requests, oldest first */
    LIST_HEAD(, httpc_sock) socks; /* sockets being watched */
    int in_flight;            /* requests accepted and not complete */
    bool closing;             /* httpc_free has started */
};

static const char *const status_names[] = {"ok", "failed", "too_large", "refused", "cancelled"};

const char *httpc_status_name(httpc_status st)
{
    if (st < HTTPC_OK || st > HTTPC_CANCELLED)
        return "unknown";
    return status_names[st];
}

void httpc_options_default(httpc_options *opt)
{
    *opt = (httpc_options){
        .max_connections = 32,
        .max_pending = 10000,
        .max_response_bytes = 1024 * 1024,
    };
}

/* Requests and completion ---------------------------------------------------*/

static void wipe_headers(struct curl_slist *list)
{
    for (struct curl_slist *h = list; h; h = h->next)
        explicit_bzero(h->data, strlen(h->data));
    curl_slist_free_all(list);
}

static void req_free(httpc_req *q)
{
    if (q->easy)
        curl_easy_cleanup(q->easy);
    wipe_headers(q->headers);
    if (q->body) {
        explicit_bzero(q->body, q->body_len);
        free(q->body);
    }
    free(q->resp);
    free(q);
}

/* How a request ends, as told to pending. */
enum { REQ_ANSWERED, REQ_REFUSED, REQ_CANCELLED };

/* The only place callbacks are called: pending has unlinked the request,
 * so the callback sees a consistent client and may send new requests. */
static void req_complete(pending_op *op, int how)
{
    httpc_req *q = pending_owner(op, httpc_req, op);
    httpc *c = q->owner;
    if (q->sending) {
        curl_multi_remove_handle(c->multi, q->easy);
        c->in_flight--;
    }
    httpc_response ended = {.status = HTTPC_CANCELLED, .error = "shutdown"};
    if (how == REQ_ANSWERED)
        ended = *q->answer;
    else if (how == REQ_REFUSED || q->refusal)
        ended = (httpc_response){.status = HTTPC_REFUSED, .error = q->refusal};
    q->cb(&ended, q->arg);
    req_free(q);
}

/* Completes on the next loop turn: never inside httpc_send. */
static void req_refuse(httpc_req *q, const char *why)
{
    q->refusal = why;
    pending_complete_soon(&q->op, REQ_REFUSED);
}

/* Transfers -----------------------------------------------------------------*/

static size_t on_curl_data(char *data, size_t size, size_t n, void *arg)
{
    httpc_req *q = arg;
    size_t len = size * n;
    if (len > q->owner->opt.max_response_bytes - q->resp_len) {
        q->resp_too_large = true;
        return 0; /* curl ends the transfer with CURLE_WRITE_ERROR */
    }
    if (q->resp_len + len + 1 > q->resp_cap) {
        size_t cap = q->resp_cap ? q->resp_cap : 1024;
        while (cap < q->resp_len + len + 1)
            cap *= 2;
        char *grown = realloc(q->resp, cap);
        if (grown == NULL)
            return 0;
        q->resp = grown;
        q->resp_cap = cap;
    }
    memcpy(q->resp + q->resp_len, data, len);
    q->resp_len += len;
    q->resp[q->resp_len] = '\0';
    return len;
}

static void transfer_done(httpc_req *q, CURLcode rc)
{
    httpc_response res = {0};
    curl_easy_getinfo(q->easy, CURLINFO_NUM_CONNECTS, &res.connects);
    if (rc == CURLE_OK) {
        res.status = HTTPC_OK;
        curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &res.http_status);
        res.body = q->resp ? q->resp : "";
        res.body_len = q->resp_len;
    } else if (q->resp_too_large) {
        res.status = HTTPC_TOO_LARGE;
        res.error = "response_too_large";
    } else {
        res.status = HTTPC_FAILED;
        res.error = curl_easy_strerror(rc);
    }
    q->answer = &res;
    pending_complete(&q->op, REQ_ANSWERED);
}

/* Collects finished transfers; called after every curl_multi_socket_action. */
static void drain_finished(httpc *c)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURLcode rc = m->data.result;
        char *priv = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        transfer_done((httpc_req *)priv, rc); /* `m` is gone from here on */
    }
}

/* libcurl's socket and timer callbacks: they only arm libevent events ------*/

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
    httpc_sock *sk = arg;
    httpc *c = sk->owner; /* `sk` may be freed inside the socket action */
    int flags = ((what & EV_READ) ? CURL_CSELECT_IN : 0) |
                ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(c->multi, fd, flags, &running);
    drain_finished(c);
}

static void on_timer_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    httpc *c = arg;
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_finished(c);
}

static void sock_free(httpc_sock *sk)
{
    LIST_REMOVE(sk, link);
    event_free(sk->ev);
    free(sk);
}

static httpc_sock *sock_new(httpc *c, curl_socket_t fd)
{
    httpc_sock *sk = mem_calloc(1, sizeof *sk);
    sk->owner = c;
    sk->ev = event_new(c->base, fd, 0, on_socket_event, sk);
    if (sk->ev == NULL) {
        free(sk);
        return NULL;
    }
    LIST_INSERT_HEAD(&c->socks, sk, link);
    return sk;
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    httpc *c = userp;
    httpc_sock *sk = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sk)
            sock_free(sk);
        return 0;
    }
    if (sk == NULL) {
        sk = sock_new(c, fd);
        if (sk == NULL)
            return -1;
        curl_multi_assign(c->multi, fd, sk);
    }
    short events = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
                   ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    event_del(sk->ev);
    event_assign(sk->ev, c->base, fd, events, on_socket_event, sk);
    return event_add(sk->ev, NULL) == 0 ? 0 : -1;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    httpc *c = userp;
    if (timeout_ms < 0)
        return evtimer_del(c->timer);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    return evtimer_add(c->timer, &tv);
}

/* Sending -------------------------------------------------------------------*/

static const char *request_problem(const httpc_request *r)
{
    size_t url_len = r->url ? strnlen(r->url, HTTPC_MAX_URL + 1) : 0;
    if (r->method == NULL || r->method[0] == '\0' || strlen(r->method) > 16 ||
        strspn(r->method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(r->method))
        return "bad_method";
    if (url_len == 0 || url_len > HTTPC_MAX_URL ||
        (strncmp(r->url, "http://", 7) != 0 && strncmp(r->url, "https://", 8) != 0) ||
        strpbrk(r->url, " \r\n\t"))
        return "bad_url";
    if (r->body && (r->body_len > HTTPC_MAX_BODY || strcmp(r->method, "GET") == 0))
        return "bad_body";
    if (r->timeout_ms < 1 || r->timeout_ms > 600000 || r->connect_timeout_ms < 1 ||
        r->connect_timeout_ms > r->timeout_ms)
        return "bad_timeout";
    for (const char *const *h = r->headers; h && *h; h++)
        if (strpbrk(*h, "\r\n") || strchr(*h, ':') == NULL)
            return "bad_header";
    return NULL;
}

static bool copy_headers(httpc_req *q, const char *const *lines)
{
    /* No 100-continue round trip; the caller may override it. */
    struct curl_slist *list = curl_slist_append(NULL, "Expect:");
    for (const char *const *h = lines; list && h && *h; h++) {
        struct curl_slist *grown = curl_slist_append(list, *h);
        if (grown == NULL) {
            wipe_headers(list);
            return false;
        }
        list = grown;
    }
    q->headers = list;
    return list != NULL;
}

static bool setup_easy(httpc_req *q, const httpc_request *r)
{
    q->easy = curl_easy_init();
    if (q->easy == NULL || !copy_headers(q, r->headers))
        return false;
    CURL *e = q->easy;
    CURLcode rc = CURLE_OK;
    rc |= curl_easy_setopt(e, CURLOPT_URL, r->url);
    rc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    rc |= curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)q);
    rc |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    rc |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)r->timeout_ms);
    rc |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)r->connect_timeout_ms);
    rc |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, q->headers);
    rc |= curl_easy_setopt(e, CURLOPT_USERAGENT, "cardline/" CARDLINE_VERSION);
    rc |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_curl_data);
    rc |= curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)q);
    if (strcmp(r->method, "GET") != 0) {
        rc |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
        rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)q->body_len);
        rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->body ? q->body : "");
    }
    if (r->ca_file)
        rc |= curl_easy_setopt(e, CURLOPT_CAINFO, r->ca_file);
    if (r->cert_file)
        rc |= curl_easy_setopt(e, CURLOPT_SSLCERT, r->cert_file);
    if (r->key_file)
        rc |= curl_easy_setopt(e, CURLOPT_SSLKEY, r->key_file);
    return rc == CURLE_OK;
}

void httpc_send(httpc *c, const httpc_request *r, httpc_cb *cb, void *arg)
{
    httpc_req *q = mem_calloc(1, sizeof *q);
    q->owner = c;
    q->cb = cb;
    q->arg = arg;
    pending_start(&c->reqs, &q->op, req_complete);
    const char *problem = request_problem(r);
    if (problem) {
        log_error("httpc.bad_request", "problem=%s", problem);
        req_refuse(q, problem);
        return;
    }
    if (c->closing || c->in_flight >= c->opt.max_pending) {
        req_refuse(q, c->closing ? "closing" : "too_many_pending");
        return;
    }
    if (r->body) {
        q->body = mem_calloc(1, r->body_len + 1);
        memcpy(q->body, r->body, r->body_len);
        q->body_len = r->body_len;
    }
    if (!setup_easy(q, r) || curl_multi_add_handle(c->multi, q->easy) != CURLM_OK) {
        req_refuse(q, "curl_setup_failed");
        return;
    }
    q->sending = true;
    c->in_flight++;
}

int httpc_in_flight(const httpc *c)
{
    return c->in_flight;
}

/* Lifecycle -----------------------------------------------------------------*/

static bool options_valid(const httpc_options *o)
{
    return o->max_connections >= 1 && o->max_connections <= 1024 && o->max_pending >= 1 &&
           o->max_pending <= 1000000 && o->max_response_bytes >= 1 &&
           o->max_response_bytes <= 64 * 1024 * 1024;
}

static bool setup_multi(httpc *c)
{
    c->multi = curl_multi_init();
    c->timer = evtimer_new(c->base, on_timer_event, c);
    if (c->multi == NULL || c->timer == NULL)
        return false;
    CURLMcode rc = CURLM_OK;
    rc |= curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    rc |= curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, (void *)c);
    rc |= curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    rc |= curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, (void *)c);
    rc |= curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)c->opt.max_connections);
    rc |= curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)c->opt.max_connections);
    return rc == CURLM_OK;
}

httpc *httpc_new(struct event_base *base, const httpc_options *opt)
{
    if (!options_valid(opt)) {
        log_error("httpc.config", "problem=\"option out of range\"");
        return NULL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return NULL;
    httpc *c = mem_calloc(1, sizeof *c);
    pending_set_init(&c->reqs, base);
    c->base = base;
    c->opt = *opt;
    if (!setup_multi(c)) {
        log_error("httpc.init", "problem=\"curl multi setup failed\"");
        httpc_free(c);
        return NULL;
    }
    return c;
}

void httpc_free(httpc *c)
{
    if (c == NULL)
        return;
    c->closing = true;
    /* Requests made from these callbacks are refused, join the list and
     * end here too. */
    pending_complete_all(&c->reqs, REQ_CANCELLED);
    if (c->multi)
        curl_multi_cleanup(c->multi);
    while (!LIST_EMPTY(&c->socks))
        sock_free(LIST_FIRST(&c->socks));
    if (c->timer)
        event_free(c->timer);
    free(c);
    curl_global_cleanup();
}
