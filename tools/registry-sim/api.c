/* api — HTTP routing and the request life cycle (see api.h). Each request
 * becomes an `exchange`, which lives until its reply is sent; a request held
 * by an injected delay sits on the pending list with its timer. */
#include "api.h"

#include <ctype.h>
#include <event2/event.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "domain.h"
#include "idem.h"
#include "log.h"
#include "mask.h"
#include "monotime.h"

/* evhttp's own hard cap sits above the contract's, so a body between the two
 * still gets the contract's JSON 413 rather than evhttp's HTML page. */
#define TRANSPORT_BODY_MAX (4 * API_BODY_MAX)
#define CONNECTION_TIMEOUT_S 30
#define PARAM_MAX 64
#define REQUEST_ID_MAX 64
#define PAGE_SIZE_DEFAULT 20
#define PAGE_SIZE_MAX 100
#define PAGE_OFFSET_MAX 1000000
#define SEGMENTS_MAX 8

typedef enum {
    RT_HEALTH, RT_SETTINGS, RT_PERSON, RT_PIN, RT_PERSON_CARDS, RT_PERSON_APPS, RT_CARD,
    RT_LOSS, RT_CANCEL, RT_ACTIVATE, RT_SIM_FAULT, RT_SIM_CLOCK, RT_SIM_STATS
} route_id;

typedef struct {
    route_id id;          /* what the handler switches on */
    const char *pattern;  /* path with {ssn}, {card} and {id} placeholders */
    int methods;          /* allowed EVHTTP_REQ_* bits */
    bool control;         /* a /_sim endpoint */
} route;

#define GET EVHTTP_REQ_GET
#define POST EVHTTP_REQ_POST
static const route routes[] = {
    {RT_HEALTH, "/v1/health", GET, false},
    {RT_SETTINGS, "/v1/settings", GET, false},
    {RT_PERSON, "/v1/persons/{ssn}", GET | EVHTTP_REQ_PATCH, false},
    {RT_PIN, "/v1/persons/{ssn}/pin-verifications", POST, false},
    {RT_PERSON_CARDS, "/v1/persons/{ssn}/cards", GET, false},
    {RT_PERSON_APPS, "/v1/persons/{ssn}/applications", GET, false},
    {RT_CARD, "/v1/cards/{card}", GET, false},
    {RT_LOSS, "/v1/cards/{card}/loss-reports", POST, false},
    {RT_CANCEL, "/v1/cards/{card}/loss-reports/{id}/cancellation", POST, false},
    {RT_ACTIVATE, "/v1/cards/{card}/activation", POST, false},
    {RT_SIM_FAULT, "/_sim/fault", GET | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE, true},
    {RT_SIM_CLOCK, "/_sim/clock", GET | POST, true},
    {RT_SIM_STATS, "/_sim/stats", GET, true},
};
#undef GET
#undef POST

typedef struct exchange exchange;

struct api {
    struct event_base *base;   /* the loop everything runs on */
    struct evhttp *http;       /* the listener */
    sqlite3 *h;                /* database, for transactions */
    records *rec;              /* the registry's rules */
    control *ctl;              /* faults and statistics */
    char *token;               /* required bearer token, or NULL */
    bool control;              /* /_sim endpoints served */
    exchange *pending;         /* requests held by an injected delay */
};

struct exchange {
    api *api;                          /* owner */
    struct evhttp_request *req;        /* the request being answered */
    struct event *timer;               /* injected delay, or NULL */
    exchange *prev, *next;             /* on api->pending while delayed */
    control_fault_hit fault;           /* what the delay leads to */
    const route *route;                /* matched route, or NULL */
    char ssn[PARAM_MAX + 1];           /* {ssn}, raw then normalized */
    char card[PARAM_MAX + 1];          /* {card} */
    char report_id[PARAM_MAX + 1];     /* {id} */
    char request_id[REQUEST_ID_MAX + 1];
    monotime started;                  /* for the log line's ms */
};

/* Small helpers -------------------------------------------------------------*/

static const char *method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_PATCH: return "PATCH";
    default: return "OTHER";
    }
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Content";
    case 423: return "Locked";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    }
    return "Error";
}

static bool token_chars_valid(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("_.:-", s[i]))
            return false;
    return true;
}

static bool is_write(enum evhttp_cmd_type cmd)
{
    return cmd == EVHTTP_REQ_POST || cmd == EVHTTP_REQ_PATCH || cmd == EVHTTP_REQ_DELETE;
}

/* Logging -------------------------------------------------------------------*/

/* The path as it may appear in a log: route captures masked, and for an
 * unknown route every digit starred (it may hold any personal number). */
static void loggable_path(const exchange *x, char *out, size_t size)
{
    if (x->route == NULL) {
        const char *raw = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(x->req));
        log_quoted q = log_quote(raw ? raw : "");
        for (char *p = q.s; *p; p++)
            if (isdigit((unsigned char)*p))
                *p = '*';
        snprintf(out, size, "%s", q.s);
        return;
    }
    size_t o = 0;
    for (const char *p = x->route->pattern; *p && o + 1 < size;) {
        const char *value = NULL;
        masked m;
        if (strncmp(p, "{ssn}", 5) == 0)
            m = mask_id(x->ssn), value = m.s, p += 5;
        else if (strncmp(p, "{card}", 6) == 0)
            m = mask_card(x->card), value = m.s, p += 6;
        else if (strncmp(p, "{id}", 4) == 0)
            value = x->report_id, p += 4;
        if (value == NULL) {
            out[o++] = *p++;
            continue;
        }
        o += (size_t)snprintf(out + o, size - o, "%s", value);
        if (o >= size)
            o = size - 1;
    }
    out[o] = '\0';
}

static void log_exchange(const exchange *x, int status, const char *note)
{
    char path[sizeof(log_quoted)];
    loggable_path(x, path, sizeof path);
    log_info("request", "method=%s path=%s status=%d ms=%.1f request_id=%s%s%s",
             method_name(evhttp_request_get_command(x->req)), path, status,
             monotime_ms_since(x->started), x->request_id, note ? " " : "", note ? note : "");
}

/* Exchanges -----------------------------------------------------------------*/

static void new_request_id(char out[REQUEST_ID_MAX + 1])
{
    unsigned char r[6];
    evutil_secure_rng_get_bytes(r, sizeof r);
    snprintf(out, REQUEST_ID_MAX + 1, "r-%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4], r[5]);
}

static exchange *exchange_new(api *a, struct evhttp_request *req)
{
    exchange *x = calloc(1, sizeof *x);
    if (x == NULL)
        return NULL;
    x->api = a;
    x->req = req;
    x->started = monotime_now();
    const char *given = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Request-Id");
    if (token_chars_valid(given, REQUEST_ID_MAX))
        snprintf(x->request_id, sizeof x->request_id, "%s", given);
    else
        new_request_id(x->request_id);
    return x;
}

static void exchange_free(exchange *x)
{
    if (x->timer)
        event_free(x->timer);
    free(x);
}

static void pending_remove(exchange *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else if (x->api->pending == x)
        x->api->pending = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
}

/* Sends `text` with `status`, logs, and frees the exchange. */
static void send_text(exchange *x, int status, const char *text, const char *note)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(x->req);
    evhttp_add_header(out, "Content-Type", "application/json; charset=utf-8");
    evhttp_add_header(out, "X-Request-Id", x->request_id);
    if (status == 429 || status == 503)
        evhttp_add_header(out, "Retry-After", "1");
    struct evbuffer *buf = evbuffer_new();
    evbuffer_add(buf, text, strlen(text));
    evhttp_send_reply(x->req, status, reason_phrase(status), buf);
    evbuffer_free(buf);
    log_exchange(x, status, note);
    exchange_free(x);
}

/* Sends a reply (adding the request id to an error body) and frees both. */
static void send_reply(exchange *x, sim_reply rep, const char *note)
{
    json_t *error = json_object_get(rep.body, "error");
    if (error)
        json_object_set_new(error, "request_id", json_string(x->request_id));
    char *text = rep.body ? json_dumps(rep.body, JSON_COMPACT) : NULL;
    json_decref(rep.body);
    if (text == NULL) {
        send_text(x, 500, "{\"error\":{\"code\":\"internal\",\"message\":\"reply lost\"}}", note);
        return;
    }
    send_text(x, rep.status, text, note);
    free(text);
}

static void send_error(exchange *x, int status, const char *code, const char *message)
{
    send_reply(x, reply_error(status, code, message), NULL);
}

/* Routing -------------------------------------------------------------------*/

/* Splits `path` on '/' into at most SEGMENTS_MAX segments of PARAM_MAX
 * characters; returns the count, or -1 if the path does not fit. */
static int split_path(const char *path, char seg[SEGMENTS_MAX][PARAM_MAX + 1])
{
    int n = 0;
    if (path[0] != '/')
        return -1;
    for (const char *p = path + 1;; n++) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (n == SEGMENTS_MAX || len > PARAM_MAX)
            return -1;
        memcpy(seg[n], p, len);
        seg[n][len] = '\0';
        if (end == NULL)
            return n + 1;
        p = end + 1;
    }
}

/* True if the segments match `pattern`; captures go into the exchange. */
static bool pattern_matches(const char *pattern, char seg[SEGMENTS_MAX][PARAM_MAX + 1], int n, exchange *x)
{
    char pat[SEGMENTS_MAX][PARAM_MAX + 1];
    if (split_path(pattern, pat) != n)
        return false;
    for (int i = 0; i < n; i++) {
        if (strcmp(pat[i], "{ssn}") == 0)
            memcpy(x->ssn, seg[i], sizeof x->ssn);
        else if (strcmp(pat[i], "{card}") == 0)
            memcpy(x->card, seg[i], sizeof x->card);
        else if (strcmp(pat[i], "{id}") == 0)
            memcpy(x->report_id, seg[i], sizeof x->report_id);
        else if (strcmp(pat[i], seg[i]) != 0)
            return false;
        if (seg[i][0] == '\0')
            return false;
    }
    return true;
}

static const route *route_find(const api *a, const char *path, exchange *x)
{
    char seg[SEGMENTS_MAX][PARAM_MAX + 1];
    int n = path ? split_path(path, seg) : -1;
    for (size_t i = 0; n > 0 && i < sizeof routes / sizeof routes[0]; i++)
        if ((!routes[i].control || a->control) && pattern_matches(routes[i].pattern, seg, n, x))
            return &routes[i];
    return NULL;
}

static void allow_header(exchange *x)
{
    static const enum evhttp_cmd_type all[] = {EVHTTP_REQ_GET, EVHTTP_REQ_POST, EVHTTP_REQ_PUT,
                                               EVHTTP_REQ_PATCH, EVHTTP_REQ_DELETE};
    char allow[64] = "";
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (x->route->methods & (int)all[i])
            snprintf(allow + strlen(allow), sizeof allow - strlen(allow), "%s%s",
                     allow[0] ? ", " : "", method_name(all[i]));
    evhttp_add_header(evhttp_request_get_output_headers(x->req), "Allow", allow);
}

/* Normalizes and checks the captured identifiers; false after answering 400. */
static bool params_valid(exchange *x)
{
    char id[DOMAIN_ID_LEN + 1];
    if (x->ssn[0]) {
        if (!domain_id_normalize(x->ssn, id) || !domain_id_valid(id)) {
            send_error(x, 400, "invalid_request", "Malformed social security number in the path.");
            return false;
        }
        memcpy(x->ssn, id, sizeof id);
    }
    if (x->card[0] && !domain_card_number_valid(x->card)) {
        send_error(x, 400, "invalid_request", "Malformed card number in the path.");
        return false;
    }
    if (x->report_id[0] && !token_chars_valid(x->report_id, 32)) {
        send_error(x, 400, "invalid_request", "Malformed loss report id in the path.");
        return false;
    }
    return true;
}

/* Request bodies ------------------------------------------------------------*/

/* Parses the body as a JSON object. On failure answers 400 and returns NULL.
 * jansson's error text may quote the input (a PIN), so it is not passed on. */
static json_t *body_object(exchange *x, const char *text, size_t len)
{
    json_error_t err;
    json_t *body = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (json_is_object(body))
        return body;
    json_decref(body);
    char message[128];
    snprintf(message, sizeof message, "The body must be a JSON object (problem at line %d, column %d).",
             err.line, err.column);
    send_error(x, 400, "invalid_request", message);
    return NULL;
}

static bool authorized(const api *a, struct evhttp_request *req)
{
    const char *given = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (given == NULL || strncmp(given, "Bearer ", 7) != 0)
        return false;
    given += 7;
    size_t n = strlen(a->token);
    if (strlen(given) != n)
        return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(given[i] ^ a->token[i]);
    return diff == 0;
}

/* Pagination ----------------------------------------------------------------*/

/* The check in a page token: ties it to one list of one person. */
static unsigned page_check(route_id list, const char *ssn)
{
    unsigned h = 2166136261u ^ (unsigned)list;
    for (const char *p = ssn; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h;
}

static void page_token(route_id list, const char *ssn, int offset, char out[40])
{
    unsigned check = page_check(list, ssn);
    snprintf(out, 40, "%08x%08x", (unsigned)offset ^ check, check);
}

static bool page_offset(route_id list, const char *ssn, const char *token, int *offset)
{
    unsigned a, b;
    if (strlen(token) != 16)
        return false;
    for (int i = 0; i < 16; i++)
        if (!isxdigit((unsigned char)token[i]))
            return false;
    if (sscanf(token, "%8x%8x", &a, &b) != 2 ||
        b != page_check(list, ssn) || (a ^ b) > PAGE_OFFSET_MAX)
        return false;
    *offset = (int)(a ^ b);
    return *offset > 0;
}

/* Reads page_size and page_token; false after answering 400. */
static bool page_params(exchange *x, int *offset, int *limit)
{
    struct evkeyvalq q;
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(x->req));
    *offset = 0;
    *limit = PAGE_SIZE_DEFAULT;
    if (query == NULL)
        return true;
    if (evhttp_parse_query_str(query, &q) != 0) {
        send_error(x, 400, "invalid_request", "Malformed query string.");
        return false;
    }
    const char *size = evhttp_find_header(&q, "page_size");
    const char *token = evhttp_find_header(&q, "page_token");
    char *end = NULL;
    long n = size ? strtol(size, &end, 10) : PAGE_SIZE_DEFAULT;
    bool size_ok = size == NULL || (*size && *end == '\0' && n >= 1 && n <= PAGE_SIZE_MAX);
    bool token_ok = token == NULL || page_offset(x->route->id, x->ssn, token, offset);
    evhttp_clear_headers(&q);
    if (!size_ok || !token_ok) {
        send_error(x, 400, "invalid_request", size_ok ? "Unknown or malformed page_token."
                                                      : "page_size must be an integer from 1 to 100.");
        return false;
    }
    *limit = (int)n;
    return true;
}

/* Handlers ------------------------------------------------------------------*/

static sim_reply dispatch_read(exchange *x, int offset, int limit)
{
    records *r = x->api->rec;
    bool more = false;
    sim_reply rep;
    switch (x->route->id) {
    case RT_SETTINGS: return records_get_settings(r);
    case RT_PERSON: return records_get_person(r, x->ssn);
    case RT_CARD: return records_get_card(r, x->card);
    case RT_PERSON_CARDS: rep = records_list_cards(r, x->ssn, offset, limit, &more); break;
    default: rep = records_list_applications(r, x->ssn, offset, limit, &more); break;
    }
    if (rep.status == 200) {
        char token[40];
        page_token(x->route->id, x->ssn, offset + limit, token);
        json_object_set_new(rep.body, "next_page_token", more ? json_string(token) : json_null());
    }
    return rep;
}

static sim_reply dispatch_write(exchange *x, json_t *body)
{
    records *r = x->api->rec;
    switch (x->route->id) {
    case RT_PERSON: return records_update_contact(r, x->ssn, body);
    case RT_PIN: return records_verify_pin(r, x->ssn, body);
    case RT_LOSS: return records_report_loss(r, x->card, body);
    case RT_CANCEL: return records_cancel_loss(r, x->card, x->report_id, body);
    default: return records_activate(r, x->card, body);
    }
}

/* Commits unless the reply is a server error; a failed commit becomes one. */
static sim_reply finish_transaction(api *a, sim_reply rep)
{
    if (rep.status >= 500) {
        db_rollback(a->h);
        return rep;
    }
    if (db_commit(a->h))
        return rep;
    db_rollback(a->h);
    json_decref(rep.body);
    return reply_error(500, "internal", "The registry could not save the change.");
}

static void handle_read(exchange *x)
{
    api *a = x->api;
    int offset = 0, limit = 0;
    bool list = x->route->id == RT_PERSON_CARDS || x->route->id == RT_PERSON_APPS;
    if (list && !page_params(x, &offset, &limit))
        return;
    if (!db_begin(a->h)) {
        send_error(x, 500, "internal", "The registry database is busy.");
        return;
    }
    sim_reply rep = records_apply_due(a->rec) ? dispatch_read(x, offset, limit)
                                              : reply_error(500, "internal", "The registry failed.");
    send_reply(x, finish_transaction(a, rep), NULL);
}

/* Applies a new write and keeps its key with the reply it got. */
static sim_reply apply_write(exchange *x, const char *key, json_t *body, const char *text, size_t len)
{
    const char *method = method_name(evhttp_request_get_command(x->req));
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(x->req));
    sim_reply rep = dispatch_write(x, body);
    if (rep.status < 500 && !idem_store(x->api->h, key, method, path, text, len, &rep)) {
        json_decref(rep.body);
        rep = reply_error(500, "internal", "The registry could not keep the idempotency key.");
    }
    return rep;
}

static void handle_write(exchange *x, const char *text, size_t len)
{
    api *a = x->api;
    const char *key = evhttp_find_header(evhttp_request_get_input_headers(x->req), "Idempotency-Key");
    if (key == NULL) {
        send_error(x, 400, "idempotency_key_required", "Writes need an Idempotency-Key header.");
        return;
    }
    if (!idem_key_valid(key)) {
        send_error(x, 400, "invalid_request", "Idempotency-Key must be 1-64 characters of A-Z a-z 0-9 _ . : -");
        return;
    }
    json_t *body = body_object(x, text, len);
    if (body == NULL)
        return;
    const char *method = method_name(evhttp_request_get_command(x->req));
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(x->req));
    sim_reply rep = {0, NULL};
    idem_verdict v = IDEM_ERROR;
    if (db_begin(a->h)) {
        if (idem_purge(a->h) && records_apply_due(a->rec))
            v = idem_lookup(a->h, key, method, path, text, len, &rep);
        if (v == IDEM_NEW)
            rep = apply_write(x, key, body, text, len);
        else if (v == IDEM_MISMATCH)
            rep = reply_error(422, "idempotency_key_reused",
                              "This Idempotency-Key was used for a different request.");
        else if (v == IDEM_ERROR)
            rep = reply_error(500, "internal", "The registry could not check the idempotency key.");
        rep = finish_transaction(a, rep);
    } else {
        rep = reply_error(500, "internal", "The registry database is busy.");
    }
    json_decref(body);
    if (v == IDEM_REPLAY && rep.status < 500) {
        control_count_replay(a->ctl);
        evhttp_add_header(evhttp_request_get_output_headers(x->req), "Idempotent-Replayed", "true");
        send_reply(x, rep, "replayed=true");
        return;
    }
    send_reply(x, rep, NULL);
}

static void handle_control(exchange *x, const char *text, size_t len)
{
    control *c = x->api->ctl;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(x->req);
    json_t *body = NULL;
    if ((cmd == EVHTTP_REQ_PUT || cmd == EVHTTP_REQ_POST) && (body = body_object(x, text, len)) == NULL)
        return;
    sim_reply rep;
    if (x->route->id == RT_SIM_STATS)
        rep = control_stats(c);
    else if (x->route->id == RT_SIM_CLOCK)
        rep = body ? control_clock_set(body) : control_clock_show();
    else if (cmd == EVHTTP_REQ_PUT)
        rep = control_fault_set(c, body);
    else
        rep = cmd == EVHTTP_REQ_DELETE ? control_fault_clear(c) : control_fault_show(c);
    json_decref(body);
    send_reply(x, rep, NULL);
}

/* Everything after routing and faults: auth, limits, then the handler. */
static void handle(exchange *x)
{
    api *a = x->api;
    struct evbuffer *in = evhttp_request_get_input_buffer(x->req);
    size_t len = evbuffer_get_length(in);
    if (x->route->id == RT_HEALTH) {
        send_reply(x, reply_json(200, json_pack("{s:s}", "status", "ok")), NULL);
        return;
    }
    if (!x->route->control && a->token && !authorized(a, x->req)) {
        evhttp_add_header(evhttp_request_get_output_headers(x->req), "WWW-Authenticate", "Bearer");
        send_error(x, 401, "unauthorized", "Missing or wrong client token.");
        return;
    }
    if (len > API_BODY_MAX) {
        send_error(x, 413, "payload_too_large", "Request bodies are at most 16 KiB.");
        return;
    }
    const char *text = len ? (const char *)evbuffer_pullup(in, -1) : "";
    enum evhttp_cmd_type cmd = evhttp_request_get_command(x->req);
    if (x->route->control) {
        handle_control(x, text, len);
        return;
    }
    if (!params_valid(x))
        return;
    if (is_write(cmd))
        handle_write(x, text, len);
    else
        handle_read(x);
}

/* Faults --------------------------------------------------------------------*/

static const char *fault_code(int status)
{
    switch (status) {
    case 429: return "rate_limited";
    case 500: return "internal";
    case 503: return "unavailable";
    }
    return "injected_fault";
}

static void drop_connection(exchange *x)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(x->req);
    log_exchange(x, 0, "fault=drop");
    if (evcon)
        evhttp_connection_free(evcon);
    else
        evhttp_request_free(x->req);
    exchange_free(x);
}

static void act_on_fault(exchange *x)
{
    switch (x->fault.action) {
    case FAULT_PASS:
        handle(x);
        break;
    case FAULT_STATUS:
        send_reply(x, reply_error(x->fault.status, fault_code(x->fault.status),
                                  "Injected fault: the registry is not answering normally."), "fault=status");
        break;
    case FAULT_MALFORMED:
        send_text(x, 200, "{\"status\": \"ok\", \"card_number\": \"A1", "fault=malformed");
        break;
    case FAULT_DROP:
        drop_connection(x);
        break;
    }
}

static void on_fault_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    exchange *x = arg;
    pending_remove(x);
    act_on_fault(x);
}

/* Holds the exchange for the fault's delay (zero included: the action then
 * runs outside evhttp's callback, where closing the connection is safe). */
static void hold_for_fault(exchange *x)
{
    api *a = x->api;
    struct timeval tv = {x->fault.delay_ms / 1000, (x->fault.delay_ms % 1000) * 1000};
    x->timer = evtimer_new(a->base, on_fault_timer, x);
    if (x->timer == NULL) {
        send_error(x, 500, "internal", "The registry could not schedule the fault.");
        return;
    }
    x->next = a->pending;
    if (a->pending)
        a->pending->prev = x;
    a->pending = x;
    evtimer_add(x->timer, &tv);
}

/* Entry ---------------------------------------------------------------------*/

static void on_request(struct evhttp_request *req, void *arg)
{
    api *a = arg;
    exchange *x = exchange_new(a, req);
    if (x == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    x->route = route_find(a, path, x);
    if (x->route == NULL || !x->route->control)
        control_count_request(a->ctl);
    if (x->route == NULL) {
        send_error(x, 404, "not_found", "No such route.");
    } else if (!(x->route->methods & (int)evhttp_request_get_command(req))) {
        allow_header(x);
        send_error(x, 405, "method_not_allowed", "This path does not support this method.");
    } else if (!x->route->control && control_fault_take(a->ctl, path, &x->fault)) {
        hold_for_fault(x);
    } else {
        handle(x);
    }
}

api *api_new(struct event_base *base, sqlite3 *h, records *rec, control *ctl, const api_options *opt)
{
    api *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    a->base = base;
    a->h = h;
    a->rec = rec;
    a->ctl = ctl;
    a->control = opt->control;
    a->token = opt->token ? strdup(opt->token) : NULL;
    a->http = evhttp_new(base);
    if (a->http == NULL || (opt->token && a->token == NULL)) {
        api_free(a);
        return NULL;
    }
    evhttp_set_max_body_size(a->http, TRANSPORT_BODY_MAX);
    evhttp_set_max_headers_size(a->http, API_HEADERS_MAX);
    evhttp_set_timeout(a->http, CONNECTION_TIMEOUT_S);
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(a->http, on_request, a);
    return a;
}

bool api_listen(api *a, const char *host, int port)
{
    return evhttp_bind_socket(a->http, host, (ev_uint16_t)port) == 0;
}

int api_drain(api *a)
{
    int n = 0;
    for (; a->pending; n++) {
        exchange *x = a->pending;
        pending_remove(x);
        if (x->fault.action == FAULT_DROP)
            drop_connection(x);
        else
            send_error(x, 503, "unavailable", "The registry is shutting down.");
    }
    return n;
}

void api_free(api *a)
{
    if (a == NULL)
        return;
    api_drain(a);
    if (a->http)
        evhttp_free(a->http);
    if (a->token)
        explicit_bzero(a->token, strlen(a->token));
    free(a->token);
    free(a);
}
