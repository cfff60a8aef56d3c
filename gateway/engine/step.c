/* step — walks the dialplan for one hop. Owns the node semantics of the
 * dialplan language (say, menu, ask, call, goto, transfer, end, retries,
 * repeat and back, the step guard) and the text of the hop's events; knows
 * nothing of Redis, handlers' work or time limits. */
#include "step.h"

#include <stdio.h>
#include <string.h>

#include "log.h"
#include "mask.h"
#include "session.h"
#include "utf8.h"
#include "walltime.h"

#define STEP_MAX_TEXT 1024     /* a rendered `set` value, argument or reason */
#define STEP_MAX_WHERE 160     /* "flow.node" */
#define STEP_MAX_KEY_EVENT 32    /* "<key K>", K at most 16 bytes */

static step_stop walk(step *s, const dp_node *n);

/* Secrets ----------------------------------------------------------------------*/

/* jansson owns the bytes of a string value; wiping them in place is the only
 * way to keep a PIN from lingering in freed heap memory. */
static void wipe_strings(json_t *obj)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
        if (json_is_string(v))
            explicit_bzero((char *)json_string_value(v), json_string_length(v));
}

static void forget_secrets(step *s)
{
    wipe_strings(s->secrets);
    json_object_clear(s->secrets);
}

static void drop_args(step *s)
{
    if (s->call_args) {
        wipe_strings(s->call_args);
        json_decref(s->call_args);
        s->call_args = NULL;
    }
}

/* Lifecycle --------------------------------------------------------------------*/

void engine_step_init(step *s, const dialplan *dp, json_t *doc, int max_steps, int max_events)
{
    memset(s, 0, sizeof *s);
    s->dp = dp;
    s->doc = doc;
    s->secrets = json_object();
    s->prompts = json_array();
    s->events = json_array();
    s->max_steps = max_steps;
    s->leaving = FUNNEL_NEXT;
    s->max_events = max_events < STEP_MAX_HOP_EVENTS ? max_events : STEP_MAX_HOP_EVENTS;
    if (!engine_session_channel(doc, &s->channel))
        s->channel = CHANNEL_VOICE;
    engine_session_upgrade(doc);
    engine_session_set_str(doc, "dialplan", dialplan_version(dp));
}

void engine_step_done(step *s)
{
    forget_secrets(s);
    json_decref(s->secrets);
    json_decref(s->prompts);
    json_decref(s->events);
    drop_args(s);
    memset(s, 0, sizeof *s);
}

json_t *engine_step_take_args(step *s)
{
    json_t *args = s->call_args;
    s->call_args = NULL;
    return args;
}

json_t *engine_step_take_events(step *s)
{
    json_t *events = s->events;
    s->events = json_array();
    return events;
}

/* Places --------------------------------------------------------------------------*/

static void where_of(const dp_node *n, char *out, size_t size)
{
    snprintf(out, size, "%s.%s", dp_flow_name(n->flow), n->name);
}

void engine_step_where(const step *s, char *out, size_t size)
{
    if (s->node)
        where_of(s->node, out, size);
    else
        snprintf(out, size, "%s.%s", engine_session_str(s->doc, "flow"), engine_session_str(s->doc, "node"));
}

/* "flow.node", or "flow.start" for the flow's start unless a node is named so. */
static const dp_node *resolve_where(const dialplan *dp, const char *where)
{
    const char *dot = where ? strchr(where, '.') : NULL;
    if (!dot || (size_t)(dot - where) >= STEP_MAX_WHERE)
        return NULL;
    char flow_name[STEP_MAX_WHERE];
    memcpy(flow_name, where, (size_t)(dot - where));
    flow_name[dot - where] = '\0';
    const dp_flow *f = dialplan_flow(dp, flow_name);
    if (!f)
        return NULL;
    const dp_node *n = dp_flow_node(f, dot + 1);
    if (!n && strcmp(dot + 1, "start") == 0)
        n = dp_flow_start(f);
    return n;
}

static const dp_node *stored_node(const step *s)
{
    const dp_flow *f = dialplan_flow(s->dp, engine_session_str(s->doc, "flow"));
    return f ? dp_flow_node(f, engine_session_str(s->doc, "node")) : NULL;
}

static bool is_waiting(const dp_node *n)
{
    return n->kind == DP_MENU || n->kind == DP_ASK;
}

static void stand_at(step *s, const dp_node *n, const char *state)
{
    s->node = n;
    engine_session_set_str(s->doc, "flow", dp_flow_name(n->flow));
    engine_session_set_str(s->doc, "node", n->name);
    engine_session_set_str(s->doc, "state", state);
}

/* Prompts and variables ----------------------------------------------------------*/

typedef struct {
    json_t *from;            /* the session's variables */
    json_t *to;              /* the prompt's */
} var_pick;

static void pick_var(const char *name, void *arg)
{
    var_pick *p = arg;
    json_t *v = json_object_get(p->from, name);
    if (v && !json_object_get(p->to, name))
        json_object_set(p->to, name, v);
}

/* A prompt carries only the variables its wordings use: the output and
 * the replay copy kept in the session stay small. */
static void say_one(step *s, const char *id)
{
    var_pick pick = {engine_session_vars(s->doc), json_object()};
    dialplan_prompt_vars(s->dp, id, pick_var, &pick);
    json_t *prompt = json_object();
    json_object_set_new_nocheck(prompt, "id", json_string(id));
    json_object_set_new_nocheck(prompt, "vars", pick.to);
    json_array_append_new(s->prompts, prompt);
}

static void say(step *s, const char *const *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        say_one(s, ids[i]);
}

static void set_var(step *s, const char *name, const char *value)
{
    if (strcmp(name, "lang") == 0 && !dialplan_has_language(s->dp, value)) {
        log_warn("engine.bad_lang", "lang=%s", log_quote(value).s);
        return;
    }
    engine_session_set_var(s->doc, name, value);
}

static void apply_set(step *s, const dp_node *n)
{
    char value[STEP_MAX_TEXT];
    for (size_t i = 0; i < n->n_set; i++) {
        dialplan_render_template(n->set[i].value, engine_session_vars(s->doc), value, sizeof value);
        set_var(s, n->set[i].name, value);
    }
}

/* Call arguments may use secrets: render them over the variables plus the
 * hop's secret table, and wipe the scratch text. */
static json_t *render_args(step *s, const dp_node *n)
{
    json_t *scope = json_copy(engine_session_vars(s->doc));
    json_object_update(scope, s->secrets);
    json_t *args = json_object();
    char value[STEP_MAX_TEXT];
    for (size_t i = 0; i < n->n_args; i++) {
        dialplan_render_template(n->args[i].value, scope, value, sizeof value);
        json_object_set_new(args, n->args[i].name, json_string(value));
        explicit_bzero(value, sizeof value);
    }
    json_decref(scope);
    return args;
}

/* The funnel ----------------------------------------------------------------------*/

/* The node the walk stands on is left `how`, once. */
static void leave(step *s, funnel_outcome how)
{
    if (s->node && !s->left)
        engine_funnel_mark(s->marks, s->node, how);
    s->left = true;
}

/* The walk enters `n`, leaving where it stood as `leaving` says. */
static void enter(step *s, const dp_node *n)
{
    leave(s, s->leaving);
    engine_funnel_mark(s->marks, n, FUNNEL_ENTERED);
    s->node = n;
    s->left = false;
    s->leaving = FUNNEL_NEXT;
}

/* Stops -------------------------------------------------------------------------*/

static step_stop stop(step *s, step_stop st)
{
    s->stop = st;
    return st;
}

static step_stop end_silently(step *s)
{
    leave(s, s->leaving != FUNNEL_NEXT ? s->leaving : FUNNEL_END);
    engine_session_set_str(s->doc, "state", "end");
    return stop(s, STEP_END);
}

static step_stop end_unavailable(step *s)
{
    say_one(s, DP_PROMPT_UNAVAILABLE);
    return end_silently(s);
}

static step_stop guard(step *s)
{
    char where[STEP_MAX_WHERE];
    engine_step_where(s, where, sizeof where);
    log_error("engine.step_guard", "session=%s node=%s steps=%d",
              log_quote(mask_session(engine_session_str(s->doc, "id")).s).s, where, s->steps);
    s->guard_tripped = true;
    return end_unavailable(s);
}

/* Asks the waiting node `w` again from its prompts, keeping its counters. */
static step_stop reask(step *s, const dp_node *w)
{
    if (++s->steps > s->max_steps)
        return guard(s);
    if (s->node != w)
        enter(s, w);
    stand_at(s, w, "wait");
    say(s, w->prompts, w->n_prompts);
    return stop(s, STEP_WAIT);
}

/* `repeat`: the information given on the way to the waiting node `w` (a
 * reference number, an outlet's address, a status answer), then `w`
 * asked again. The prompts are said as they were, with the variables they
 * had, since the session may have moved on. */
static step_stop repeat(step *s, const dp_node *w)
{
    json_t *said = engine_session_said(s->doc);
    for (size_t i = 0; i < json_array_size(said); i++)
        json_array_append(s->prompts, json_array_get(said, i));
    return reask(s, w);
}

/* What this walk said before entering a waiting node, kept for `repeat`
 * while the caller stays there. */
static void keep_said(step *s)
{
    json_t *info = json_array();
    for (size_t i = s->info_from; i < json_array_size(s->prompts); i++)
        json_array_append(info, json_array_get(s->prompts, i));
    engine_session_set_said(s->doc, info);
    json_decref(info);
}

/* The waiting node the caller is at: the current node, or after a call the
 * newest one on the back stack. */
static const dp_node *current_waiting(step *s)
{
    if (s->node && is_waiting(s->node))
        return s->node;
    json_t *back = engine_session_back(s->doc);
    size_t n = json_array_size(back);
    return n ? resolve_where(s->dp, json_string_value(json_array_get(back, n - 1))) : NULL;
}

static step_stop go_back(step *s)
{
    const dp_node *here = current_waiting(s);
    json_t *back = engine_session_back(s->doc);
    char where[STEP_MAX_WHERE];
    if (here) {
        where_of(here, where, sizeof where);
        size_t n = json_array_size(back);
        if (n && strcmp(json_string_value(json_array_get(back, n - 1)), where) == 0)
            json_array_remove(back, n - 1);
    }
    size_t n = json_array_size(back);
    const dp_node *prev = n ? resolve_where(s->dp, json_string_value(json_array_get(back, n - 1))) : NULL;
    if (prev)
        return walk(s, prev);
    return here ? reask(s, here) : end_silently(s);
}

static step_stop follow(step *s, dp_target t)
{
    switch (t.kind) {
    case DP_TO_REPEAT: {
        const dp_node *w = current_waiting(s);
        return w ? repeat(s, w) : end_silently(s);
    }
    case DP_TO_BACK:
        return go_back(s);
    case DP_TO_NODE:
    default:
        return t.node ? walk(s, t.node) : end_silently(s);
    }
}

static step_stop enter_waiting(step *s, const dp_node *n)
{
    char where[STEP_MAX_WHERE];
    where_of(n, where, sizeof where);
    forget_secrets(s);
    engine_session_reset_fails(s->doc);
    engine_session_push_back(s->doc, where);
    engine_session_set_var(s->doc, "node", where);
    keep_said(s);
    stand_at(s, n, "wait");
    say(s, n->prompts, n->n_prompts);
    return stop(s, STEP_WAIT);
}

static step_stop enter_transfer(step *s, const dp_node *n)
{
    char reason[STEP_MAX_TEXT] = "";
    if (n->reason)
        dialplan_render_template(n->reason, engine_session_vars(s->doc), reason, sizeof reason);
    stand_at(s, n, "transfer");
    say(s, n->prompts, n->n_prompts);
    json_object_set_new(s->doc, "transfer", json_pack("{s:s, s:s}", "queue", n->queue, "reason", reason));
    leave(s, FUNNEL_TRANSFER);
    return stop(s, STEP_TRANSFER);
}

static dp_target switch_target(step *s, const dp_node *n)
{
    char value[STEP_MAX_TEXT];
    dialplan_render_template(n->subject, engine_session_vars(s->doc), value, sizeof value);
    return dp_switch_target(n, value);
}

/* Enters `n` and walks on until the flow waits, calls, transfers or ends. */
static step_stop walk(step *s, const dp_node *n)
{
    for (;;) {
        if (++s->steps > s->max_steps)
            return guard(s);
        enter(s, n);
        apply_set(s, n);
        switch (n->kind) {
        case DP_SAY:
        case DP_GOTO:
            s->node = n;
            say(s, n->prompts, n->n_prompts);
            if (n->next.kind != DP_TO_NODE)
                return follow(s, n->next);
            if (!n->next.node)
                return end_silently(s);
            n = n->next.node;
            continue;
        case DP_MENU:
        case DP_ASK:
            return enter_waiting(s, n);
        case DP_CALL:
            s->node = n;
            s->call_def = n->handler;
            drop_args(s);
            s->call_args = render_args(s, n);
            return stop(s, STEP_CALL);
        case DP_SWITCH: {
            s->node = n;
            dp_target t = switch_target(s, n);
            if (t.kind != DP_TO_NODE || !t.node)
                return follow(s, t);
            n = t.node;
            continue;
        }
        case DP_TRANSFER:
            return enter_transfer(s, n);
        case DP_END:
        default:
            stand_at(s, n, "end");
            say(s, n->prompts, n->n_prompts);
            leave(s, FUNNEL_END);
            return stop(s, STEP_END);
        }
    }
}

/* Failures at waiting nodes -------------------------------------------------------*/

static const char *fail_kind_name(engine_event_kind k)
{
    return k == ENGINE_EV_TIMEOUT ? "timeout" : k == ENGINE_EV_NO_INPUT ? "no_input" : "invalid";
}

static const dp_failure *failure_of(const dp_node *n, engine_event_kind k)
{
    return k == ENGINE_EV_TIMEOUT ? &n->on_timeout : k == ENGINE_EV_NO_INPUT ? &n->on_no_input : &n->on_invalid;
}

/* A failed attempt: ask again while retries last, then go to `then`. */
static step_stop fail(step *s, engine_event_kind k)
{
    const dp_node *w = s->node;
    const dp_failure *f = failure_of(w, k);
    const char *kind = fail_kind_name(k);
    int count = engine_session_fail_count(s->doc, kind) + 1;
    engine_session_set_fail_count(s->doc, kind, count);
    if (count > f->retries) {
        s->leaving = k == ENGINE_EV_INPUT ? FUNNEL_INVALID : FUNNEL_TIMEOUT;
        return follow(s, f->then);
    }
    if (f->prompt)
        say_one(s, f->prompt);
    return reask(s, w);
}


/* Events --------------------------------------------------------------------------*/

static const char *event_name(engine_event_kind k)
{
    static const char *const names[] = {"start", "input", "timeout", "no_input", "hangup", "transfer_back"};
    return k <= ENGINE_EV_TRANSFER_BACK ? names[k] : "unknown";
}

/* One string, "KIND NODE MS[ INPUT]": INPUT comes last, so it may hold
 * spaces. Only the newest max_events of the hop are kept, as the store
 * would trim the older ones anyway. */
static void note_event(step *s, const char *kind, const char *where, const char *input)
{
    if (s->max_events <= 0)
        return;
    char text[STEP_MAX_EVENT_BYTES + 1];
    int n = snprintf(text, sizeof text, "%s %s %lld%s", kind, where, (long long)walltime_ms(),
                     input ? " " : "");
    if (input && n < (int)sizeof text - 1) {
        /* The input is the caller's text: it is cut whole characters at a time. */
        size_t keep = utf8_cut(input, sizeof text - 1 - (size_t)n);
        memcpy(text + n, input, keep);
        text[(size_t)n + keep] = '\0';
    }
    if (json_array_size(s->events) == (size_t)s->max_events)
        json_array_remove(s->events, 0);
    json_array_append_new(s->events, json_string(text));
}

/* An event at the stored node; `understood` is what an input meant to the
 * node (below), NULL for events without input. */
static void record_event(step *s, const engine_event *ev, const char *understood)
{
    char where[STEP_MAX_WHERE];
    engine_step_where(s, where, sizeof where);
    note_event(s, event_name(ev->kind), where, understood);
}

/* Input at waiting nodes ----------------------------------------------------------*/

/* What the node understood is recorded, never what was typed: a caller who
 * types ahead sends an ID and a PIN to whatever node is waiting, so raw
 * input may hold anything. */

/* An input the node refused: its length in characters and why. */
static void record_refused(step *s, const engine_event *ev, const char *why)
{
    char text[64];
    snprintf(text, sizeof text, "<refused len=%ld %s>", utf8_length(ev->input), why);
    record_event(s, ev, text);
}

static const char *ask_refusal(const dp_node *n, const char *input)
{
    long len = utf8_length(input);
    return len < n->min_len ? "too_short" : len > n->max_len ? "too_long" : "not_valid";
}

/* An accepted answer as recorded: masked by what its validator says it is
 * (gateway/core/mask.h); an answer no validator names is recorded by its
 * length only, as nothing says which masking rule would cover it. */
static void record_answer(step *s, const engine_event *ev, const char *value)
{
    const dp_node *n = s->node;
    char text[STEP_MAX_EVENT_BYTES];
    if (n->secret || n->validator == DP_VALIDATE_PIN)
        snprintf(text, sizeof text, "<secret>");
    else if (n->validator == DP_VALIDATE_CITIZEN_ID)
        snprintf(text, sizeof text, "%s", mask_id(value).s);
    else if (n->validator == DP_VALIDATE_CARD_NUMBER)
        snprintf(text, sizeof text, "%s", mask_card(value).s);
    else if (n->validator == DP_VALIDATE_MOBILE)
        snprintf(text, sizeof text, "%s", mask_phone(value).s);
    else
        snprintf(text, sizeof text, "<answer len=%ld>", utf8_length(value));
    record_event(s, ev, text);
}

static step_stop menu_input(step *s, const engine_event *ev)
{
    const dp_option *opt = dp_menu_option(s->node, ev->input);
    if (!opt) {
        record_refused(s, ev, "no_option");
        return fail(s, ENGINE_EV_INPUT);
    }
    record_event(s, ev, opt->key);
    return follow(s, opt->target);
}

/* An input that is exactly one of the ask's keys leaves it (the checker
 * makes sure no key is also an answer); it is recorded as the key, as a
 * menu's choice is. */
static step_stop ask_key(step *s, const engine_event *ev, const dp_option *key)
{
    char text[STEP_MAX_KEY_EVENT];
    snprintf(text, sizeof text, "<key %s>", key->key);
    record_event(s, ev, text);
    return follow(s, key->target);
}

static step_stop ask_input(step *s, const engine_event *ev)
{
    const dp_node *n = s->node;
    const dp_option *key = dp_ask_key(n, ev->input);
    if (key)
        return ask_key(s, ev, key);
    char value[STEP_MAX_TEXT];
    if (!dp_ask_accepts(n, ev->input, value, sizeof value)) {
        explicit_bzero(value, sizeof value);
        record_refused(s, ev, ask_refusal(n, ev->input));
        return fail(s, ENGINE_EV_INPUT);
    }
    record_answer(s, ev, value);
    if (n->secret)
        json_object_set_new(s->secrets, n->into, json_string(value));
    else
        engine_session_set_var(s->doc, n->into, value);
    explicit_bzero(value, sizeof value);
    return follow(s, n->next);
}

step_stop engine_step_start(step *s, const dp_flow *flow)
{
    char where[STEP_MAX_WHERE];
    const dp_node *start = dp_flow_start(flow);
    where_of(start, where, sizeof where);
    engine_session_set_var(s->doc, "node", where);
    note_event(s, "start", where, NULL);
    return walk(s, start);
}

/* A reload removed the session's node: its flow starts again (or, if the
 * flow is gone too, the flow its entry routes to now). */
static step_stop restart(step *s)
{
    s->restarted = true;
    s->left = true; /* the node it stood on is gone or changed: no outcome to tell */
    const dp_flow *f = dialplan_flow(s->dp, engine_session_str(s->doc, "flow"));
    if (!f)
        f = dialplan_route(s->dp, s->channel, engine_session_str(s->doc, "entry"));
    json_array_clear(engine_session_back(s->doc));
    engine_session_reset_fails(s->doc);
    if (!f)
        return end_unavailable(s);
    say_one(s, DP_PROMPT_RESTARTED);
    s->info_from = json_array_size(s->prompts);
    return walk(s, dp_flow_start(f));
}

static step_stop transfer_back(step *s, const engine_event *ev)
{
    const dp_node *to = ev->node ? resolve_where(s->dp, ev->node) : NULL;
    if (ev->node && !to)
        return stop(s, STEP_BAD);
    return to ? walk(s, to) : follow(s, s->node->fallback);
}

step_stop engine_step_event(step *s, const engine_event *ev)
{
    const char *state = engine_session_str(s->doc, "state");
    const dp_node *n = stored_node(s);
    bool waiting = strcmp(state, "wait") == 0;
    bool transferred = strcmp(state, "transfer") == 0;
    if (!waiting && !transferred)
        return stop(s, STEP_BAD);
    s->node = n;
    s->left = transferred; /* a transfer was counted when it happened */
    if (ev->kind == ENGINE_EV_HANGUP) {
        record_event(s, ev, NULL);
        s->leaving = FUNNEL_HANGUP;
        return end_silently(s);
    }
    if (!n || (waiting && !is_waiting(n)) || (transferred && n->kind != DP_TRANSFER))
        return restart(s);
    if (transferred) {
        if (ev->kind != ENGINE_EV_TRANSFER_BACK)
            return stop(s, STEP_BAD);
        record_event(s, ev, NULL);
        return transfer_back(s, ev);
    }
    switch (ev->kind) {
    case ENGINE_EV_INPUT:
        if (!ev->input)
            return stop(s, STEP_BAD);
        return n->kind == DP_MENU ? menu_input(s, ev) : ask_input(s, ev);
    case ENGINE_EV_TIMEOUT:
    case ENGINE_EV_NO_INPUT:
        record_event(s, ev, NULL);
        return fail(s, ev->kind);
    default:
        return stop(s, STEP_BAD);
    }
}

step_stop engine_step_resume(step *s, const char *result, json_t *vars)
{
    const dp_node *n = s->node;
    const char *key;
    json_t *v;
    json_object_foreach(vars, key, v)
        if (json_is_string(v))
            set_var(s, key, json_string_value(v));
    char where[STEP_MAX_WHERE];
    where_of(n, where, sizeof where);
    note_event(s, "result", where, result);
    const dp_branch *dflt = NULL;
    for (size_t i = 0; i < n->n_branches; i++) {
        if (strcmp(n->branches[i].result, result) == 0)
            return follow(s, n->branches[i].target);
        if (strcmp(n->branches[i].result, "default") == 0)
            dflt = &n->branches[i];
    }
    if (dflt)
        return follow(s, dflt->target);
    log_error("engine.unhandled_result", "node=%s result=%s", where, log_quote(result).s);
    return end_unavailable(s);
}

/* Output --------------------------------------------------------------------------*/

static void append_key(const char *key, void *keys)
{
    json_array_append_new(keys, json_string(key));
}

/* Outputs are built member by member, as engine_session_new builds a session:
 * every hop makes one, and json_pack's format parsing cost more than the
 * members. Keys are literals, hence _nocheck. */
static void put(json_t *obj, const char *key, json_t *value)
{
    json_object_set_new_nocheck(obj, key, value);
}

static json_t *await_of(const dp_node *n)
{
    json_t *a = json_object();
    if (n->kind == DP_MENU) {
        json_t *keys = json_array();
        dp_menu_keys(n, append_key, keys);
        put(a, "kind", json_string("menu"));
        put(a, "options", keys);
        put(a, "timeout_ms", json_integer(n->timeout_ms));
        return a;
    }
    put(a, "kind", json_string("ask"));
    put(a, "min", json_integer(n->min_len));
    put(a, "max", json_integer(n->max_len));
    put(a, "secret", json_boolean(n->secret));
    put(a, "timeout_ms", json_integer(n->timeout_ms));
    if (n->terminator)
        put(a, "terminator", json_stringn(&n->terminator, 1));
    if (n->inter_digit_ms)
        put(a, "inter_digit_ms", json_integer(n->inter_digit_ms));
    return a;
}

json_t *engine_step_output(const step *s)
{
    json_t *out = json_object();
    put(out, "session", json_string(engine_session_str(s->doc, "id")));
    put(out, "lang", json_string(engine_session_lang(s->doc)));
    put(out, "state", json_string(engine_session_str(s->doc, "state")));
    put(out, "prompts", json_incref(s->prompts));
    if (s->stop == STEP_WAIT && s->node)
        put(out, "await", await_of(s->node));
    else if (s->stop == STEP_TRANSFER)
        json_object_set_nocheck(out, "transfer", json_object_get(s->doc, "transfer"));
    return out;
}

json_t *engine_step_output_ending(const step *s)
{
    json_t *out = engine_step_output(s);
    size_t said = json_array_size(s->prompts);
    if (s->stop == STEP_WAIT && s->node)
        said = said > s->node->n_prompts ? said - s->node->n_prompts : 0;
    json_t *prompts = json_array();
    for (size_t i = 0; i < said; i++)
        json_array_append(prompts, json_array_get(s->prompts, i));
    put(out, "prompts", prompts);
    put(out, "state", json_string("end"));
    json_object_del(out, "await");
    json_object_del(out, "transfer");
    return out;
}
