/* driver — runs one session through the runtime on a private event loop
 * and renders each engine output as channel lines (see driver.h). Owns the
 * loop, the runtime and the session's identity. */
#include "driver.h"

#include <event2/event.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mask.h"
#include "handlers.h"
#include "monotime.h"
#include "runtime.h"
#include "store.h"

/* A hop gets the engine's own deadlines (store, handler) plus this margin
 * before the driver gives up on it. */
#define HOP_MARGIN_MS 10000
/* How often the loop wakes while waiting for Redis. */
#define CONNECT_POLL_MS 20
#define PROMPT_MAX 4096        /* one hint or refusal line */
#define OUTPUT_TEXT_MAX 8192   /* every prompt of one output, as text */
#define SMS_LINE_MAX 512       /* the SMS notices of one hop */
#define CODE_DIGITS 6

/* The hop being waited for; filled by the engine's callback. */
typedef struct {
    bool done;               /* the callback ran */
    engine_status status;    /* its status */
    json_t *output;          /* its output (a reference), or NULL */
} hop_wait;

struct driver {
    struct event_base *base;   /* private loop */
    struct event *tick;        /* wakes the loop while waiting for something */
    runtime *rt;               /* store, registry, handlers, engine */
    int hop_deadline_ms;       /* how long one hop may take */
    channel_kind channel;      /* the session's channel */
    char session_id[96];       /* the session's id */
    bool waiting;              /* the session waits for input */
    bool secret;               /* what it waits for is secret */
    hop_wait hop;              /* the hop in flight (outlives a given-up hop) */
    char code[8];              /* digits of the last code the simulated phone got, or "" */
    char sms_to[SMS_LINE_MAX]; /* "[sms to 139****0002]" lines of the hop, "\n"-joined */
};

/* Time and waiting -----------------------------------------------------------*/

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static bool redis_ready(driver *d, int timeout_ms)
{
    int64_t deadline = monotime_ms() + timeout_ms;
    while (!store_connected(runtime_store(d->rt))) {
        if (monotime_ms() >= deadline)
            return false;
        event_base_loop(d->base, EVLOOP_ONCE);
    }
    return true;
}

/* Lifecycle --------------------------------------------------------------------*/

/* The simulated phone: a one-time code's SMS shows as "[sms to NUMBER]"
 * with the number masked and the text withheld, and its digits wait for
 * the DRV_CODE input, so a transcript can type a code it never shows. */
static bool phone_receives(void *ctx, const char *to, const char *text)
{
    driver *d = ctx;
    size_t run = 0;
    d->code[0] = '\0';
    for (const char *p = text; *p && !d->code[0]; p++) {
        run = (*p >= '0' && *p <= '9') ? run + 1 : 0;
        if (run == CODE_DIGITS && !(p[1] >= '0' && p[1] <= '9')) {
            memcpy(d->code, p - CODE_DIGITS + 1, CODE_DIGITS);
            d->code[CODE_DIGITS] = '\0';
        }
    }
    size_t len = strlen(d->sms_to);
    snprintf(d->sms_to + len, sizeof d->sms_to - len, "%s[sms to %s]", len ? "\n" : "", mask_phone(to).s);
    return true;
}

driver *drv_new(const conf *c, int connect_timeout_ms)
{
    dialplan *dp = runtime_load_dialplans_print(c->dialplans.dir, stderr);
    if (dp == NULL)
        return NULL;
    driver *d = calloc(1, sizeof *d);
    d->base = event_base_new();
    d->tick = event_new(d->base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval every = {0, CONNECT_POLL_MS * 1000};
    event_add(d->tick, &every);
    d->rt = runtime_new(d->base, c, dp);
    dialplan_unref(dp);
    if (d->rt)
        runtime_set_send_now(d->rt, phone_receives, d);
    d->hop_deadline_ms = c->session.handler_timeout_ms + 2 * c->redis.op_timeout_ms + HOP_MARGIN_MS;
    if (d->rt == NULL) {
        fprintf(stderr, "cardline-sim: the gateway modules refused the configuration\n");
        drv_free(d);
        return NULL;
    }
    if (!redis_ready(d, connect_timeout_ms)) {
        fprintf(stderr, "cardline-sim: Redis at %s:%d did not answer within %d ms\n",
                c->redis.host, c->redis.port, connect_timeout_ms);
        drv_free(d);
        return NULL;
    }
    return d;
}

void drv_free(driver *d)
{
    if (d == NULL)
        return;
    runtime_free(d->rt);
    if (d->hop.output)
        json_decref(d->hop.output);
    event_free(d->tick);
    event_base_free(d->base);
    explicit_bzero(d->code, sizeof d->code);
    free(d);
}

/* Rendering ----------------------------------------------------------------------*/

static void add_line(drv_reply *r, const char *text, size_t len)
{
    char **grown = realloc(r->lines, (r->count + 1) * sizeof *grown);
    if (grown == NULL)
        return;
    r->lines = grown;
    r->lines[r->count++] = strndup(text, len);
}

static void add_linef(drv_reply *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add_linef(drv_reply *r, const char *fmt, ...)
{
    char buf[PROMPT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    add_line(r, buf, strlen(buf));
}

/* A prompt text may span lines: each becomes a reply line. */
static void add_text(drv_reply *r, const char *text)
{
    const char *nl;
    while ((nl = strchr(text, '\n')) != NULL) {
        add_line(r, text, (size_t)(nl - text));
        text = nl + 1;
    }
    add_line(r, text, strlen(text));
}

static void render_prompts(const driver *d, json_t *out, drv_reply *r)
{
    char text[OUTPUT_TEXT_MAX];
    if (engine_render_text(runtime_engine(d->rt), out, d->channel, text, sizeof text) > 0)
        add_text(r, text);
}

static void render_options(json_t *await, char *out, size_t size)
{
    size_t i, used = 0;
    json_t *o;
    out[0] = '\0';
    json_array_foreach(json_object_get(await, "options"), i, o) {
        int n = snprintf(out + used, size - used, "%s%s", i ? " " : "", json_string_value(o));
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
    }
}

static void render_await(driver *d, json_t *await, drv_reply *r)
{
    bool voice = d->channel == CHANNEL_VOICE;
    r->secret = json_is_true(json_object_get(await, "secret"));
    d->secret = r->secret;
    const char *kind = json_string_value(json_object_get(await, "kind"));
    if (kind != NULL && strcmp(kind, "menu") == 0) {
        char keys[512];
        render_options(await, keys, sizeof keys);
        add_linef(r, voice ? "[press %s]" : "[reply: %s]", keys);
        return;
    }
    long min = (long)json_integer_value(json_object_get(await, "min"));
    long max = (long)json_integer_value(json_object_get(await, "max"));
    const char *term = json_string_value(json_object_get(await, "terminator"));
    char count[64], finish[32] = "";
    if (min == max)
        snprintf(count, sizeof count, "%ld", max);
    else
        snprintf(count, sizeof count, "%ld-%ld", min, max);
    if (voice && term != NULL && *term != '\0')
        snprintf(finish, sizeof finish, ", %s to finish", term);
    add_linef(r, voice ? "[press %s keys%s%s]" : "[enter %s chars%s%s]", count, finish,
              r->secret ? ", secret" : "");
}

static void render_output(driver *d, json_t *out, drv_reply *r)
{
    const char *state = json_string_value(json_object_get(out, "state"));
    render_prompts(d, out, r);
    d->waiting = state != NULL && (strcmp(state, "wait") == 0 || strcmp(state, "transfer") == 0);
    r->waiting = d->waiting;
    if (state != NULL && strcmp(state, "wait") == 0) {
        render_await(d, json_object_get(out, "await"), r);
    } else if (state != NULL && strcmp(state, "transfer") == 0) {
        d->secret = false;
        json_t *t = json_object_get(out, "transfer");
        add_linef(r, "[transfer to %s: %s]", json_string_value(json_object_get(t, "queue")),
                  json_string_value(json_object_get(t, "reason")));
    } else {
        add_line(r, "[end]", 5);
    }
}

/* A refused hop changes nothing: a waiting session still waits, unless the
 * engine says there is no session to wait. */
static void render_refusal(driver *d, engine_status st, drv_reply *r)
{
    add_linef(r, "[engine: %s]", engine_status_name(st));
    if (st == ENGINE_NO_ROUTE || st == ENGINE_NO_SESSION)
        d->waiting = false;
    r->waiting = d->waiting;
}

/* Hops ------------------------------------------------------------------------------*/

static void on_hop(const engine_result *res, void *arg)
{
    hop_wait *w = arg;
    w->done = true;
    w->status = res->status;
    w->output = res->output ? json_incref(res->output) : NULL;
}

static bool run_hop(driver *d, const engine_event *ev, drv_reply *out)
{
    *out = (drv_reply){0};
    if (d->hop.output)
        json_decref(d->hop.output);
    d->hop = (hop_wait){0};
    engine_hop(runtime_engine(d->rt), ev, on_hop, &d->hop);
    int64_t deadline = monotime_ms() + d->hop_deadline_ms;
    while (!d->hop.done && monotime_ms() < deadline)
        event_base_loop(d->base, EVLOOP_ONCE);
    if (!d->hop.done) {
        fprintf(stderr, "cardline-sim: no answer from the engine within %d ms\n", d->hop_deadline_ms);
        return false;
    }
    if (d->sms_to[0])
        add_text(out, d->sms_to);
    d->sms_to[0] = '\0';
    if (d->hop.status == ENGINE_OK && d->hop.output != NULL)
        render_output(d, d->hop.output, out);
    else
        render_refusal(d, d->hop.status, out);
    return true;
}

bool drv_start(driver *d, const drv_session *s, drv_reply *out)
{
    d->channel = s->channel;
    if (s->session_id != NULL)
        snprintf(d->session_id, sizeof d->session_id, "%s", s->session_id);
    else
        snprintf(d->session_id, sizeof d->session_id, "sim-%ld-%ld", (long)getpid(),
                 (long)time(NULL));
    engine_event ev = {
        .kind = ENGINE_EV_START,
        .channel = s->channel,
        .session_id = d->session_id,
        .caller = s->caller,
        .entry = s->entry,
        .lang = s->lang,
    };
    return run_hop(d, &ev, out);
}

static engine_event_kind event_kind(const char *line)
{
    if (strcmp(line, DRV_TIMEOUT) == 0)
        return ENGINE_EV_TIMEOUT;
    if (strcmp(line, DRV_NO_INPUT) == 0)
        return ENGINE_EV_NO_INPUT;
    if (strcmp(line, DRV_HANGUP) == 0)
        return ENGINE_EV_HANGUP;
    return ENGINE_EV_INPUT;
}

/* Time passing ------------------------------------------------------------------------*/

typedef struct {
    bool done;                 /* Redis answered */
    bool ok;                   /* ... without an error */
} expiry_wait;

static void on_deleted(store_status st, void *arg)
{
    expiry_wait *w = arg;
    w->done = true;
    w->ok = st == STORE_OK;
}

static void on_code_deleted(store_status st, const struct redisReply *reply, void *arg)
{
    (void)reply;
    on_deleted(st, arg);
}

/* Deletes what a TTL would have removed: the session's one-time code or its
 * document. Answers "[code expired]" or "[session expired]". */
static bool expire(driver *d, const char *what, drv_reply *out)
{
    *out = (drv_reply){0};
    expiry_wait w = {0};
    store *st = runtime_store(d->rt);
    bool code = strcmp(what, DRV_EXPIRE_CODE) == 0;
    if (code) {
        char key[HANDLER_CODE_KEY_MAX];
        handlers_code_key(d->session_id, key, sizeof key);
        const char *argv[] = {"DEL", key};
        store_command(st, 2, argv, NULL, on_code_deleted, &w);
    } else {
        store_delete(st, d->session_id, on_deleted, &w);
    }
    int64_t deadline = monotime_ms() + d->hop_deadline_ms;
    while (!w.done && monotime_ms() < deadline)
        event_base_loop(d->base, EVLOOP_ONCE);
    if (!w.ok) {
        fprintf(stderr, "cardline-sim: Redis did not expire the %s\n", code ? "code" : "session");
        return false;
    }
    add_linef(out, code ? "[code expired]" : "[session expired]");
    out->waiting = d->waiting;
    out->secret = d->secret;
    return true;
}

bool drv_send(driver *d, const char *line, drv_reply *out)
{
    if (strcmp(line, DRV_EXPIRE_CODE) == 0 || strcmp(line, DRV_EXPIRE_SESSION) == 0)
        return expire(d, line, out);
    if (strncmp(line, DRV_AGENT, strlen(DRV_AGENT)) == 0) {
        engine_event back = {
            .kind = ENGINE_EV_TRANSFER_BACK,
            .channel = d->channel,
            .session_id = d->session_id,
            .node = line + strlen(DRV_AGENT),
        };
        return run_hop(d, &back, out);
    }
    engine_event ev = {
        .kind = event_kind(line),
        .channel = d->channel,
        .session_id = d->session_id,
    };
    if (ev.kind == ENGINE_EV_INPUT)
        ev.input = strcmp(line, DRV_CODE) == 0 ? d->code : line;
    return run_hop(d, &ev, out);
}

void drv_reply_free(drv_reply *r)
{
    for (size_t i = 0; i < r->count; i++)
        free(r->lines[i]);
    free(r->lines);
    *r = (drv_reply){0};
}
