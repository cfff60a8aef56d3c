/* engine — the hop runner: loads the session, replays a retried hop, steps
 * the dialplan (step.c) with handlers run between steps, saves with
 * compare-and-set and answers exactly once (with what a handler made
 * durable, even when the save then fails). Owns the life of a hop (its
 * dialplan reference, its handler call; both on core/pending) and the
 * hop's log line and metrics; the node semantics belong to step.c, the document to
 * session.c. */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialplan.h"
#include "console.h"
#include "funnel.h"
#include "handler_call.h"
#include "log.h"
#include "mask.h"
#include "mem.h"
#include "metrics.h"
#include "monotime.h"
#include "pending.h"
#include "session.h"
#include "step.h"
#include "store.h"
#include "utf8.h"
#include "walltime.h"

#define ENGINE_ENDED_TTL_S 60        /* an ended session stays for replays of its last hop */
#define ENGINE_MAX_HOP_KEY 128       /* bytes of an event's hop_key */
#define ENGINE_MAX_NAME 256          /* caller, entry, lang, node of an event */
#define ENGINE_STATUS_COUNT (ENGINE_HELD + 1)

_Static_assert(STEP_MAX_HOP_EVENTS <= STORE_MAX_SAVE_EVENTS, "a hop's events fit one save");
_Static_assert(STEP_MAX_EVENT_BYTES <= STORE_MAX_EVENT_BYTES, "an event fits the store");

typedef struct hop hop;

struct engine {
    engine_options opt;            /* limits and TTLs */
    dialplan *dp;                  /* the set new hops start on (one reference) */
    pending_set hops;              /* hops in flight: each is answered once */
    pending_set calls;             /* handler calls in flight: each resumes its hop once */
    metrics_series *hops_total[ENGINE_STATUS_COUNT]; /* hops by status */
    metrics_series *steps_total;   /* nodes entered */
    funnel *funnel;                /* per node of `dp`: entered and how left */
    engine_console *console;       /* what agent consoles watch, in Redis */
};

/* How a handler call completes (its pending_op's status). */
typedef enum {
    CALL_DONE = 0,     /* the handler ended: resume the step with its result */
    CALL_TIMEOUT,      /* the deadline came first: resume with "unavailable" */
    CALL_DROPPED       /* the hop is being freed: abandon the call */
} call_end;

struct hop {
    engine *e;                     /* NULL once engine_free orphaned the hop */
    pending_op op;                 /* in e->hops until answered (status: engine_status) */
    json_t *answer;                /* the output the completion answers (borrowed) */
    dialplan *dp;                  /* the set this hop runs on (one reference) */
    engine_event ev;               /* the event, strings owned below */
    char *strs[7];                 /* owned copies of the event's strings */
    engine_cb *cb;                 /* the answer goes here, once */
    void *cb_arg;
    json_t *doc;                   /* the working copy of the session */
    uint64_t rev;                  /* the revision it was loaded at (0 = new) */
    step st;                       /* the walk; live while `stepping` */
    bool stepping;                 /* `st` holds a walk (and maybe secrets) */
    bool store_busy;               /* a store callback is still to come */
    bool blind;                    /* a START walking before any load (see create) */
    handler_call *call;            /* the running handler, or NULL */
    const char *call_name;         /* its handler's name, for metrics */
    pending_op call_op;            /* in e->calls while `call` runs (status: call_end) */
    char result[64];               /* CALL_DONE: the handler's result */
    json_t *result_vars;           /* CALL_DONE: the variables it set */
    json_t *output;                /* the output being saved */
    bool durable;                  /* a handler's effect is durable and promised
                                    * (handler_finish_durable) */
    json_t *ending;                /* with `durable`: the answer should the store
                                    * fail from then on (engine_step_output_ending) */
    int cas_retries;               /* races lost so far */
    int calls;                     /* handler calls started, for call keys */
    monotime t0;                   /* when the hop began */
    char before[160];              /* "flow.node" before the hop, for the log */
    bool held_before;              /* the stored session was with an agent (state transfer) */
    funnel_marks marks;            /* the walk's funnel marks, counted once saved */
};

static void load(hop *h);
static void reload(hop *h);

/* Options and names ----------------------------------------------------------*/

static const conf_key engine_conf_keys[] = {
    CONF_KEY_INT(engine_options, "ttl_voice_s", session_ttl_s[CHANNEL_VOICE], 1, 86400, "3600"),
    CONF_KEY_INT(engine_options, "ttl_ussd_s", session_ttl_s[CHANNEL_USSD], 1, 86400, "300"),
    CONF_KEY_INT(engine_options, "ttl_sms_s", session_ttl_s[CHANNEL_SMS], 1, 86400, "900"),
    CONF_KEY_INT(engine_options, "max_steps_per_hop", max_steps_per_hop, 1, 10000, "64"),
    CONF_KEY_INT(engine_options, "max_input_bytes", max_input_bytes, 1, 65536, "512"),
    CONF_KEY_INT(engine_options, "events_kept", max_events_kept, 0, STORE_MAX_EVENTS_KEPT, "20"),
    CONF_KEY_INT(engine_options, "handler_timeout_ms", handler_timeout_ms, 1, 600000, "3000"),
    CONF_KEY_INT(engine_options, "max_cas_retries", max_cas_retries, 0, 100, "3"),
};
const conf_section engine_config = CONF_SECTION("session", engine_conf_keys);

void engine_options_default(engine_options *opt)
{
    memset(opt, 0, sizeof *opt);
    conf_section_defaults(&engine_config, opt);
}

const char *engine_status_name(engine_status st)
{
    static const char *const names[ENGINE_STATUS_COUNT] = {
        "ok", "no_route", "no_session", "bad_event", "busy", "unavailable", "held"};
    return (unsigned)st < ENGINE_STATUS_COUNT ? names[st] : "unknown";
}

static const char *event_kind_name(engine_event_kind k)
{
    static const char *const names[] = {"start", "input", "timeout", "no_input", "hangup", "transfer_back"};
    return (unsigned)k <= ENGINE_EV_TRANSFER_BACK ? names[k] : "unknown";
}

/* Lifecycle ------------------------------------------------------------------*/

static void render_funnel(struct evbuffer *out, void *arg)
{
    const engine *e = arg;
    engine_funnel_render(e->funnel, out);
}

engine *engine_new(struct event_base *base, const engine_options *opt, struct dialplan *dp)
{
    char why[96];
    if (conf_section_problem(&engine_config, opt, why, sizeof why)) {
        log_error("engine.option_invalid", "why=%s", log_quote(why).s);
        return NULL;
    }
    engine *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->opt = *opt;
    e->dp = dialplan_ref(dp);
    pending_set_init(&e->hops, base);
    pending_set_init(&e->calls, base);
    for (int st = 0; st < ENGINE_STATUS_COUNT; st++) {
        char labels[64];
        snprintf(labels, sizeof labels, "status=\"%s\"", engine_status_name((engine_status)st));
        e->hops_total[st] = metrics_counter("cardline_engine_hops_total", "Engine hops by status.", labels);
    }
    e->steps_total = metrics_counter("cardline_engine_steps_total", "Dialplan nodes entered by the engine.", NULL);
    e->funnel = engine_funnel_new(dp, NULL);
    metrics_collector_add(render_funnel, e);
    e->console = engine_console_new(base, opt->store, opt->session_ttl_s);
    return e;
}

void engine_set_dialplan(engine *e, struct dialplan *dp)
{
    dialplan *old = e->dp;
    funnel *was = e->funnel;
    e->dp = dialplan_ref(dp);
    e->funnel = engine_funnel_new(dp, was);
    engine_funnel_free(was);
    dialplan_unref(old);
}

json_t *engine_funnel(const engine *e)
{
    return engine_funnel_json(e->funnel);
}

struct dialplan *engine_dialplan(const engine *e)
{
    return e->dp;
}

struct store *engine_store(const engine *e)
{
    return e->opt.store;
}

int engine_session_ttl(const engine *e, channel_kind channel)
{
    return (unsigned)channel < CHANNEL_COUNT ? e->opt.session_ttl_s[channel] : 0;
}

/* Hop life --------------------------------------------------------------------*/

/* Tenths of a millisecond since t0: printed as "%ld.%ld" (printf's
 * floating-point path cost more than the rest of the hop's line). */
static long tenths_since(monotime t0)
{
    return (long)((monotime_now() - t0) / 100000);
}

/* The input may be a PIN: its bytes are wiped before the memory goes. */
static void hop_free(hop *h)
{
    if (h->stepping)
        engine_step_done(&h->st);
    pending_complete(&h->call_op, CALL_DROPPED);
    json_decref(h->doc);
    json_decref(h->output);
    json_decref(h->ending);
    json_decref(h->result_vars);
    dialplan_unref(h->dp);
    for (size_t i = 0; i < sizeof h->strs / sizeof h->strs[0]; i++) {
        if (h->strs[i])
            explicit_bzero(h->strs[i], strlen(h->strs[i]));
        free(h->strs[i]);
    }
    free(h);
}

static void log_hop(const hop *h, engine_status st)
{
    if (!log_enabled(LOG_INFO))
        return;
    char after[160] = "";
    if (h->doc)
        snprintf(after, sizeof after, "%s.%s", engine_session_str(h->doc, "flow"), engine_session_str(h->doc, "node"));
    const char *caller = h->ev.caller ? h->ev.caller : h->doc ? engine_session_str(h->doc, "caller") : "";
    long tenths = tenths_since(h->t0);
    log_info("engine.hop",
             "session=%s channel=%s caller=%s event=%s input_len=%zu from=%s to=%s status=%s ms=%ld.%ld",
             log_quote(mask_session(h->ev.session_id).s).s, channel_name(h->ev.channel),
             mask_phone(caller).s, event_kind_name(h->ev.kind), h->ev.input ? strlen(h->ev.input) : 0,
             log_quote(h->before).s, log_quote(after).s, engine_status_name(st), tenths / 10, tenths % 10);
}

/* The hop's completion: answers it once and frees it, or, when engine_free
 * answers it while a store callback is still to come, leaves it orphaned
 * for that callback to free. */
static void on_hop_done(pending_op *op, int status)
{
    hop *h = pending_owner(op, hop, op);
    engine_status st = (engine_status)status;
    if (h->stepping) {
        engine_step_done(&h->st);
        h->stepping = false;
    }
    log_hop(h, st);
    metrics_inc(h->e->hops_total[st]);
    engine_result r = {st, st == ENGINE_OK || st == ENGINE_HELD ? h->answer : NULL};
    h->answer = NULL;
    h->cb(&r, h->cb_arg);
    if (h->store_busy)
        h->e = NULL;
    else
        hop_free(h);
}

/* Answers the hop and frees it. `output` is borrowed. */
static void finish(hop *h, engine_status st, json_t *output)
{
    h->answer = output;
    pending_complete(&h->op, (int)st);
}

/* Saving -----------------------------------------------------------------------*/

static int ttl_of(const hop *h)
{
    channel_kind ch;
    int ttl = engine_session_channel(h->doc, &ch) ? h->e->opt.session_ttl_s[ch]
                                                  : h->e->opt.session_ttl_s[CHANNEL_VOICE];
    if (strcmp(engine_session_str(h->doc, "state"), "end") == 0 && ttl > ENGINE_ENDED_TTL_S)
        ttl = ENGINE_ENDED_TTL_S;
    return ttl;
}

/* The session cannot be saved (the store failed, or races were lost too
 * often) after a handler's effect became durable (a loss report in the
 * outbox): the caller hears that effect, not "unavailable", and the
 * answer ends the session, since no next hop would find where it stands.
 * The stored session stays as it was: a retried request walks again from
 * there with the same call key, so the handler finds its effect done
 * (the outbox's dedupe key) and no second one is made. */
static void answer_ending(hop *h)
{
    log_warn("engine.unsaved_answer", "session=%s why=%s", log_quote(mask_session(h->ev.session_id).s).s,
             log_quote("session not saved after a durable handler result").s);
    finish(h, ENGINE_OK, h->ending);
}

/* What consoles watch --------------------------------------------------------------*/

void engine_note_change(engine *e, const char *session_id)
{
    engine_console_change(e->console, "session", session_id);
}

void engine_note_callback(engine *e, const char *ref)
{
    engine_console_change(e->console, "callbacks", ref);
}

/* After a save: the queue of sessions with agents (entered or left, and
 * the change log consoles poll) and the sessions live per channel (a new
 * one, an ended one). */
static void announce(hop *h)
{
    engine_console *c = h->e->console;
    const char *id = h->ev.session_id, *state = engine_session_str(h->doc, "state");
    bool held = strcmp(state, "transfer") == 0, ended = strcmp(state, "end") == 0;
    channel_kind ch = CHANNEL_VOICE;
    engine_session_channel(h->doc, &ch);
    if (h->ev.kind == ENGINE_EV_START && !ended)
        engine_console_live(c, ch, id, true);
    else if (ended)
        engine_console_live(c, ch, id, false);
    if (held != h->held_before) {
        engine_console_queue(c, id, held);
        engine_console_change(c, "queue", id);
    } else if (held) {
        engine_console_change(c, "session", id);
    }
}

static void on_saved(store_status st, uint64_t revision, void *arg)
{
    (void)revision;
    hop *h = arg;
    h->store_busy = false;
    if (!h->e) {
        hop_free(h);
        return;
    }
    if (st == STORE_OK) {
        engine_funnel_add(h->e->funnel, &h->marks);
        announce(h);
        finish(h, ENGINE_OK, h->output);
        return;
    }
    if (st != STORE_CONFLICT && h->ending) {
        answer_ending(h);
        return;
    }
    if (st != STORE_CONFLICT) {
        finish(h, ENGINE_UNAVAILABLE, NULL);
        return;
    }
    /* A blind START found the session there: not a lost race, the usual
     * hop begins (load, replay or replace). */
    if (!h->blind && ++h->cas_retries > h->e->opt.max_cas_retries) {
        if (h->ending)
            answer_ending(h);
        else
            finish(h, ENGINE_BUSY, NULL);
        return;
    }
    reload(h);
}

/* The walk stopped for good: drop the secrets and save the result with
 * this walk's events. They travel with the save, so a save that loses its
 * race appends nothing, and the re-run collects its own. */
static void save(hop *h)
{
    metrics_add(h->e->steps_total, h->st.steps);
    h->output = engine_step_output(&h->st);
    if (h->durable) {
        json_decref(h->ending);
        h->ending = engine_step_output_ending(&h->st);
    }
    json_t *events = engine_step_take_events(&h->st);
    engine_step_done(&h->st);
    h->stepping = false;
    engine_session_set_last_hop(h->doc, h->ev.hop_key, h->output);
    json_object_set_new(h->doc, "updated_at", json_integer(walltime_ms()));
    const char *items[STEP_MAX_HOP_EVENTS];
    size_t n = 0;
    for (; n < json_array_size(events) && n < STEP_MAX_HOP_EVENTS; n++)
        items[n] = json_string_value(json_array_get(events, n));
    store_events ev = {items, n, h->e->opt.max_events_kept};
    h->store_busy = true;
    store_save(h->e->opt.store, h->ev.session_id, h->doc, h->rev, ttl_of(h), &ev, on_saved, h);
    json_decref(events);
}

/* Handlers ------------------------------------------------------------------------*/

static void count_call(const hop *h, const char *result)
{
    char labels[128];
    snprintf(labels, sizeof labels, "handler=\"%s\",result=\"%s\"", h->call_name, result);
    metrics_inc(metrics_counter("cardline_engine_handler_calls_total", "Handler calls by handler and result.", labels));
}

static void on_handler_done(const char *result, json_t *vars, void *arg)
{
    hop *h = arg;
    h->call = NULL;
    snprintf(h->result, sizeof h->result, "%s", result);
    json_decref(h->result_vars);
    h->result_vars = json_incref(vars);
    /* handler_finish may run inside handler_call_start: resume from the loop. */
    pending_complete_soon(&h->call_op, CALL_DONE);
}

static void advance(hop *h, step_stop stop);

static void resume(hop *h)
{
    count_call(h, h->result);
    json_t *vars = h->result_vars;
    h->result_vars = NULL;
    step_stop stop = engine_step_resume(&h->st, h->result, vars);
    json_decref(vars);
    advance(h, stop);
}

static void on_call_done(pending_op *op, int status)
{
    hop *h = pending_owner(op, hop, call_op);
    if (status == CALL_DONE) {
        resume(h);
        return;
    }
    if (h->call)
        handler_call_abandon(h->call);
    h->call = NULL;
    if (status == CALL_DROPPED)
        return;
    log_warn("engine.handler_timeout", "handler=%s session=%s", h->call_name,
             log_quote(mask_session(h->ev.session_id).s).s);
    count_call(h, "timeout");
    advance(h, engine_step_resume(&h->st, "unavailable", NULL));
}

/* Two 64-bit FNV-1a hashes of the session id and its creation time: a key
 * of allowed characters whatever the id holds. The creation time tells
 * apart two sessions that reuse one id (an aggregator recycling its
 * sessionIds), whose writes must not be taken for replays of each other. */
static void make_call_key(const hop *h, char *out, size_t size)
{
    uint64_t a = 0xcbf29ce484222325ULL, b = 0x84222325cbf29ce4ULL;
    char created[24];
    snprintf(created, sizeof created, "@%lld",
             (long long)json_integer_value(json_object_get(h->doc, "created_at")));
    const char *parts[] = {h->ev.session_id, created};
    for (size_t i = 0; i < 2; i++) {
        for (const unsigned char *p = (const unsigned char *)parts[i]; *p; p++) {
            a = (a ^ *p) * 0x100000001b3ULL;
            b = (b ^ *p) * 0x100000001b3ULL;
        }
    }
    snprintf(out, size, "%016llx%016llx.%llu.%d", (unsigned long long)a, (unsigned long long)b,
             (unsigned long long)h->rev, h->calls);
}

static void start_call(hop *h)
{
    char key[HANDLER_CALL_KEY_MAX + 1];
    h->calls++;
    make_call_key(h, key, sizeof key);
    channel_kind ch = CHANNEL_VOICE;
    engine_session_channel(h->doc, &ch);
    handler_call_spec spec = {
        .def = h->st.call_def,
        .env = h->e->opt.handlers,
        .channel = ch,
        .caller = engine_session_str(h->doc, "caller"),
        .session_id = h->ev.session_id,
        .call_key = key,
        .args = engine_step_take_args(&h->st),
        .durable = &h->durable,
    };
    h->call_name = spec.def->name;
    pending_start(&h->e->calls, &h->call_op, on_call_done);
    pending_deadline(&h->call_op, h->e->opt.handler_timeout_ms, CALL_TIMEOUT);
    h->call = handler_call_start(&spec, on_handler_done, h);
}

static void advance(hop *h, step_stop stop)
{
    /* A blind walk only ever saves: a handler must not run, nor an answer
     * come, before the load tells whether the START is a retry to replay. */
    if (h->blind && (stop == STEP_CALL || stop == STEP_BAD)) {
        reload(h);
        return;
    }
    switch (stop) {
    case STEP_CALL:
        start_call(h);
        return;
    case STEP_BAD:
        finish(h, ENGINE_BAD_EVENT, NULL);
        return;
    default:
        save(h);
        return;
    }
}

/* Loading ------------------------------------------------------------------------*/

static void begin_step(hop *h)
{
    engine_step_init(&h->st, h->dp, h->doc, h->e->opt.max_steps_per_hop, h->e->opt.max_events_kept);
    h->marks.n = 0;
    h->st.marks = &h->marks;
    h->stepping = true;
}

/* The entry a session keeps, for routing it again after a reload: its
 * shortest prefix (at a character boundary) that routes to `flow`. An SMS
 * entry is whatever the citizen texted, a PIN sent when no conversation
 * waits included; the catch-all keeps "", a keyword only itself. */
static void routed_entry(const hop *h, const dp_flow *flow, char out[ENGINE_MAX_NAME + 1])
{
    const char *entry = h->ev.entry;
    size_t len = strlen(entry);
    for (size_t n = 0; n < len; n += utf8_char_len(entry + n)) {  /* checked UTF-8: never 0 */
        memcpy(out, entry, n);
        out[n] = '\0';
        if (dialplan_route(h->dp, h->ev.channel, out) == flow)
            return;
    }
    memcpy(out, entry, len + 1);
}

static void start_session(hop *h, uint64_t stored_rev)
{
    const dp_flow *flow = dialplan_route(h->dp, h->ev.channel, h->ev.entry);
    if (!flow && h->blind) {
        reload(h);   /* a stored hop may still answer a retry */
        return;
    }
    if (!flow) {
        finish(h, ENGINE_NO_ROUTE, NULL);
        return;
    }
    h->rev = stored_rev;
    char entry[ENGINE_MAX_NAME + 1];
    routed_entry(h, flow, entry);
    /* A route's language (an English keyword) wins over the channel's preference. */
    const char *lang = dialplan_route_lang(h->dp, h->ev.channel, h->ev.entry);
    h->doc = engine_session_new(h->dp, h->ev.session_id, h->ev.channel, h->ev.caller, entry, lang ? lang : h->ev.lang);
    begin_step(h);
    advance(h, engine_step_start(&h->st, flow));
}

static bool text_ok(const char *s, size_t max);

/* Replaces the event's input by what the channel derives from the loaded
 * session; the previous input (a re-run's) is wiped first. */
static engine_derived derive_input(hop *h, json_t *doc, const char *note)
{
    json_t *last = json_object_get(doc, "last_hop");
    json_t *key = json_object_get(last, "key");
    engine_consumed c = {.last_key = json_is_string(key) ? json_string_value(key) : "",
                         .last_output = json_object_get(last, "output"),
                         .note = note};
    size_t size = (size_t)h->e->opt.max_input_bytes + 1;
    char *input = mem_malloc(size);
    input[0] = '\0';
    engine_derived how = h->ev.derive_input(&c, input, size, h->ev.derive_arg);
    if (how != ENGINE_DERIVED || !text_ok(input, size - 1)) {
        explicit_bzero(input, size);
        free(input);
        return how == ENGINE_DERIVED ? ENGINE_DERIVE_REFUSED : how;
    }
    if (h->strs[4]) {
        explicit_bzero(h->strs[4], strlen(h->strs[4]));
        free(h->strs[4]);
    }
    h->strs[4] = input;
    h->ev.input = input;
    return how;
}

/* With an agent, only the agent's hand-back and the caller leaving move the
 * session: a caller's input (or a START that must not replace it) waits
 * for the agent, and a dialplan reload does not take the session away. */
static bool held_back(const engine_event *ev, json_t *doc)
{
    if (strcmp(engine_session_str(doc, "state"), "transfer") != 0)
        return false;
    switch (ev->kind) {
    case ENGINE_EV_START:
        return ev->keep_held;
    case ENGINE_EV_INPUT:
    case ENGINE_EV_TIMEOUT:
    case ENGINE_EV_NO_INPUT:
        return true;
    default:
        return false;
    }
}

/* Answers ENGINE_HELD with the session as it stands, changing nothing. */
static void hold(hop *h, json_t *doc)
{
    json_t *out = json_pack("{s:s, s:s, s:s, s:[], s:O}", "session", engine_session_str(doc, "id"), "lang",
                            engine_session_lang(doc), "state", "transfer", "prompts", "transfer",
                            json_object_get(doc, "transfer") ? json_object_get(doc, "transfer") : json_null());
    finish(h, ENGINE_HELD, out);
    json_decref(out);
}

static void on_loaded(store_status st, json_t *doc, uint64_t revision, const char *note, void *arg)
{
    hop *h = arg;
    h->store_busy = false;
    if (!h->e) {
        hop_free(h);
        return;
    }
    if (st != STORE_OK && st != STORE_NOT_FOUND && h->ending) {
        answer_ending(h); /* a re-run after a lost race */
        return;
    }
    if (st != STORE_OK && st != STORE_NOT_FOUND) {
        finish(h, ENGINE_UNAVAILABLE, NULL);
        return;
    }
    /* A channel that derives its input decides about replays itself. */
    engine_derived how = doc && h->ev.derive_input ? derive_input(h, doc, note) : ENGINE_DERIVED;
    json_t *replayed = doc && !h->ev.derive_input ? engine_session_replay(doc, h->ev.hop_key) : NULL;
    if (how == ENGINE_DERIVE_ANSWERED)
        replayed = json_object_get(json_object_get(doc, "last_hop"), "output");
    if (how == ENGINE_DERIVE_ANSWERED && !json_is_object(replayed)) {
        finish(h, ENGINE_BAD_EVENT, NULL);
        return;
    }
    if (replayed) {
        finish(h, ENGINE_OK, replayed);
        return;
    }
    h->held_before = doc && strcmp(engine_session_str(doc, "state"), "transfer") == 0;
    if (doc && !h->before[0])
        snprintf(h->before, sizeof h->before, "%s.%s", engine_session_str(doc, "flow"),
                 engine_session_str(doc, "node"));
    if (h->ev.kind == ENGINE_EV_START && !(doc && held_back(&h->ev, doc))) {
        start_session(h, revision);
        return;
    }
    if (!doc || strcmp(engine_session_str(doc, "state"), "end") == 0) {
        finish(h, ENGINE_NO_SESSION, NULL);
        return;
    }
    if (held_back(&h->ev, doc)) {
        hold(h, doc);
        return;
    }
    if (how == ENGINE_DERIVE_REFUSED) {
        finish(h, ENGINE_BAD_EVENT, NULL);
        return;
    }
    h->rev = revision;
    /* The store parsed this document for us alone: keeping a reference and
     * changing it in place spares a copy (a bad event drops it unsaved). */
    h->doc = json_incref(doc);
    begin_step(h);
    advance(h, engine_step_event(&h->st, &h->ev));
}

/* A channel deriving its input may keep a note beside the session: it
 * comes in the same HMGET (the others have none). */
static void load(hop *h)
{
    h->store_busy = true;
    store_load_noted(h->e->opt.store, h->ev.session_id, on_loaded, h);
}

/* Drops what a walk or a refused save left and loads afresh; an ending
 * a durable handler result left stays (see answer_ending). */
static void reload(hop *h)
{
    if (h->stepping) {
        engine_step_done(&h->st);
        h->stepping = false;
    }
    json_decref(h->doc);
    json_decref(h->output);
    h->doc = h->output = NULL;
    h->blind = false;
    load(h);
}

/* Most STARTs name a session that does not exist yet, so the hop walks
 * before loading anything and saves expecting revision 0: the session is
 * created in one round trip. If the session exists (a retried START to
 * replay, or one replacing it) that save conflicts and changes nothing,
 * and the hop runs the usual way from a load. Nothing with an effect
 * happens first: a walk reaching a handler call, or finding no route,
 * loads before going on. */
static void create(hop *h)
{
    h->blind = true;
    start_session(h, 0);
}

/* Starting a hop ------------------------------------------------------------------*/

static bool text_ok(const char *s, size_t max)
{
    return s && strnlen(s, max + 1) <= max && utf8_valid(s);
}

static bool id_ok(const char *id)
{
    size_t n = id ? strnlen(id, STORE_MAX_ID_LEN + 1) : 0;
    if (n == 0 || n > STORE_MAX_ID_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (id[i] <= ' ' || id[i] == 0x7f)
            return false;
    return true;
}

static bool event_ok(const engine *e, const engine_event *ev)
{
    if ((unsigned)ev->kind > ENGINE_EV_TRANSFER_BACK || (unsigned)ev->channel >= CHANNEL_COUNT)
        return false;
    if (!id_ok(ev->session_id) || (ev->hop_key && !text_ok(ev->hop_key, ENGINE_MAX_HOP_KEY)))
        return false;
    switch (ev->kind) {
    case ENGINE_EV_START:
        return text_ok(ev->entry, ENGINE_MAX_NAME) && (!ev->caller || text_ok(ev->caller, ENGINE_MAX_NAME)) &&
               (!ev->lang || text_ok(ev->lang, ENGINE_MAX_NAME));
    case ENGINE_EV_INPUT:
        return ev->derive_input || text_ok(ev->input, (size_t)e->opt.max_input_bytes);
    case ENGINE_EV_TRANSFER_BACK:
        return !ev->node || text_ok(ev->node, ENGINE_MAX_NAME);
    default:
        return true;
    }
}

static const char *keep(hop *h, size_t i, const char *s)
{
    if (!s)
        return NULL;
    h->strs[i] = mem_strdup(s);
    return h->strs[i];
}

static hop *hop_new(engine *e, const engine_event *ev, engine_cb *cb, void *arg, bool copy)
{
    hop *h = mem_calloc(1, sizeof *h);
    h->t0 = monotime_now();
    h->e = e;
    h->dp = dialplan_ref(e->dp);
    h->cb = cb;
    h->cb_arg = arg;
    h->ev.kind = ev->kind;
    h->ev.channel = ev->channel;
    h->ev.derive_input = ev->kind == ENGINE_EV_INPUT ? ev->derive_input : NULL;
    h->ev.derive_arg = ev->derive_arg;
    h->ev.keep_held = ev->kind == ENGINE_EV_START && ev->keep_held;
    if (copy) {
        h->ev.session_id = keep(h, 0, ev->session_id);
        h->ev.caller = keep(h, 1, ev->caller);
        h->ev.entry = keep(h, 2, ev->entry);
        h->ev.lang = keep(h, 3, ev->lang);
        h->ev.input = keep(h, 4, ev->input);
        h->ev.node = keep(h, 5, ev->node);
        h->ev.hop_key = keep(h, 6, ev->hop_key);
    }
    pending_start(&e->hops, &h->op, on_hop_done);
    return h;
}

void engine_hop(engine *e, const engine_event *ev, engine_cb *cb, void *arg)
{
    bool ok = event_ok(e, ev);
    /* A malformed event's strings are not copied: they may be oversize or
     * not text, and nothing but the status is answered. */
    hop *h = hop_new(e, ev, cb, arg, ok);
    if (!ok) {
        log_warn("engine.bad_event", "event=%s channel=%d", event_kind_name(ev->kind), (int)ev->channel);
        h->ev.channel = CHANNEL_VOICE;
        pending_complete_soon(&h->op, ENGINE_BAD_EVENT);
        return;
    }
    if (h->ev.kind == ENGINE_EV_START)
        create(h);
    else
        load(h);
}

/* Teardown -------------------------------------------------------------------------*/

/* A hop whose store callback is still to come stays allocated (orphaned)
 * until that callback, which every store operation eventually gets (see
 * on_hop_done). A hop's handler call ends with its hop. */
void engine_free(engine *e)
{
    if (!e)
        return;
    pending_complete_all(&e->hops, ENGINE_UNAVAILABLE);
    pending_complete_all(&e->calls, CALL_DROPPED);
    metrics_collector_remove(render_funnel, e);
    engine_funnel_free(e->funnel);
    engine_console_free(e->console);
    dialplan_unref(e->dp);
    free(e);
}
