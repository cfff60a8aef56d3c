/* test_ussd_walk — every USSD flow walked in zh and en with every demo
 * person, each output paged exactly as the channel pages it
 * (ussd_output_pages), and every page checked: within one USSD string in
 * the coding it needs (measured on its own with gsm.h), ending in the "98"
 * line when more follow, cut at a line, sentence or word boundary, and a
 * waiting node's question whole on the last page.
 *
 * The walk drives the gateway's own runtime (real redis-server, a registry
 * simulator seeded with the demo seed, the shipped dialplans) and explores
 * rather than follows a script, so new prompts and nodes are walked
 * without editing this file: from the service code it tries every option
 * of every menu and answers every ask as the person would (ID, PIN, the
 * card's last four, a new PIN, a one-time code the simulated phone got),
 * choosing among candidates by the ask node's own check (dp_ask_accepts).
 * The people come from the seed file itself. A state is the output's
 * language and prompt ids, the node it waits at and the session's
 * word-valued variables (what switches steer by, such as intent=loss;
 * numbers, names and references are left out, so a state repeats when only
 * they change). Each new state is reached again from a fresh session (a
 * USSD session cannot branch), and the walk is bounded by depth, states per
 * person and hops in all. WALK_DEBUG=1 in the environment lists the states
 * walked, to see what a new node added. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "settings.h"
#include "engine.h"
#include "gsm.h"
#include "harness.h"
#include "loop.h"
#include "log.h"
#include "rtworld.h"
#include "runtime.h"
#include "store.h"
#include "ussd.h"

#define SHIPPED_DIR CL_SOURCE_DIR "/dialplans"
#define SEED_FILE CL_SOURCE_DIR "/tools/registry-sim/seed-demo.json"
#define SERVICE_CODE "*123#"
#define WAIT_MS 20000
#define MAX_DEPTH 16          /* inputs on one path */
#define MAX_STATES 400        /* distinct states walked per person */
#define MAX_HOPS 8000         /* hops per person (about 2600 walk the shipped set) */
#define INPUT_MAX 80
#define NEW_PIN "274951"      /* no sequence, no repeat, no birth date */
#define NEW_MOBILE "13912345678"
#define NEW_ADDRESS "北京市朝阳区建国路1号"
#define UNKNOWN_PIN "000000"  /* for a person without a card */

typedef struct {
    char ssn[32];             /* ID number */
    char mobile[32];          /* the registered mobile: the USSD caller */
    char card[32];            /* the current card, or "" */
    char last4[8];            /* its last four characters */
    char pin[16];             /* its service PIN */
} person;

typedef struct {
    tr_world core;            /* real Redis and simulator, the runtime */
    char code[8];             /* the last one-time code the phone got */
    person people[64];
    size_t n_people;
    char **seen;              /* state keys walked for the current person */
    size_t n_seen;
    long hops, outputs, pages, multi_page, max_octets; /* in all */
    long person_hops;         /* hops for the current person */
    long states[2];           /* zh, en states walked for the current person */
    long all_states;          /* states walked in all */
    unsigned session_seq;
} walker;

typedef struct {
    char inputs[MAX_DEPTH][INPUT_MAX];
    size_t depth;
} path;

/* The loop ----------------------------------------------------------------------*/

typedef struct {
    bool done;
    engine_status status;
    json_t *output;
} hop_wait;

static void on_hop(const engine_result *r, void *arg)
{
    hop_wait *w = arg;
    w->done = true;
    w->status = r->status;
    w->output = r->output ? json_incref(r->output) : NULL;
}

static json_t *hop(walker *w, const engine_event *ev)
{
    hop_wait h = {0};
    w->hops++;
    w->person_hops++;
    engine_hop(runtime_engine(w->core.rt), ev, on_hop, &h);
    assert_true(tl_run_until_true(w->core.base, &h.done, WAIT_MS));
    if (h.status != ENGINE_OK) {
        json_decref(h.output);
        return NULL;
    }
    return h.output;
}

typedef struct {
    bool done;
    char flow[72], node[72];
    char words[512];          /* "intent=loss,lang=zh,": the word-valued variables */
} doc_wait;

/* A value a switch could steer by: a lower-case word. */
static bool is_word(const char *v)
{
    if (!v || !(*v >= 'a' && *v <= 'z'))
        return false;
    for (; *v; v++)
        if (!((*v >= 'a' && *v <= 'z') || *v == '_'))
            return false;
    return true;
}

static void on_doc(store_status st, json_t *doc, uint64_t revision, void *arg)
{
    (void)revision;
    doc_wait *d = arg;
    d->done = true;
    if (st != STORE_OK || !doc)
        return;
    snprintf(d->flow, sizeof d->flow, "%s", json_string_value(json_object_get(doc, "flow")));
    snprintf(d->node, sizeof d->node, "%s", json_string_value(json_object_get(doc, "node")));
    const char *name;
    json_t *v;
    size_t used = 0;
    json_object_foreach(json_object_get(doc, "vars"), name, v) {
        if (!is_word(json_string_value(v)) || !strcmp(name, "node"))
            continue;
        int n = snprintf(d->words + used, sizeof d->words - used, "%s=%s,", name, json_string_value(v));
        if (n < 0 || (size_t)n >= sizeof d->words - used)
            break;
        used += (size_t)n;
    }
}

/* Where a session waits, from its document. */
static void load_doc(walker *w, const char *sid, doc_wait *d)
{
    *d = (doc_wait){0};
    store_load(runtime_store(w->core.rt), sid, on_doc, d);
    assert_true(tl_run_until_true(w->core.base, &d->done, WAIT_MS));
}

static const dp_node *waiting_node(walker *w, const doc_wait *d)
{
    const dp_flow *f = dialplan_flow(engine_dialplan(runtime_engine(w->core.rt)), d->flow);
    return f ? dp_flow_node(f, d->node) : NULL;
}

/* The simulated phone keeps the digits of the last one-time code. */
static bool phone_receives(void *ctx, const char *to, const char *text)
{
    (void)to;
    walker *w = ctx;
    size_t run = 0;
    for (const char *p = text; *p; p++) {
        run = (*p >= '0' && *p <= '9') ? run + 1 : 0;
        if (run == 6 && !(p[1] >= '0' && p[1] <= '9'))
            snprintf(w->code, sizeof w->code, "%.6s", p - 5);
    }
    return true;
}

/* The people ----------------------------------------------------------------------*/

static void load_people(walker *w)
{
    json_error_t e;
    json_t *seed = json_load_file(SEED_FILE, 0, &e);
    assert_non_null(seed);
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(seed, "persons"), i, p) {
        assert_true(w->n_people < sizeof w->people / sizeof *w->people);
        person *o = &w->people[w->n_people++];
        snprintf(o->ssn, sizeof o->ssn, "%s", json_string_value(json_object_get(p, "ssn")));
        snprintf(o->mobile, sizeof o->mobile, "%s", json_string_value(json_object_get(p, "mobile")));
        snprintf(o->pin, sizeof o->pin, "%s", UNKNOWN_PIN);
        size_t k;
        json_t *c;
        json_array_foreach(json_object_get(p, "cards"), k, c) {
            const char *pin = json_string_value(json_object_get(json_object_get(c, "pin"), "value"));
            if (!json_is_true(json_object_get(c, "current")))
                continue;
            snprintf(o->card, sizeof o->card, "%s", json_string_value(json_object_get(c, "card_number")));
            size_t n = strlen(o->card);
            snprintf(o->last4, sizeof o->last4, "%.4s", n >= 4 ? o->card + n - 4 : o->card);
            if (pin)
                snprintf(o->pin, sizeof o->pin, "%s", pin);
        }
    }
    json_decref(seed);
    assert_true(w->n_people > 0);
}

/* What the person types at an ask: the first candidate the node accepts,
 * the likeliest first by what the node collects. */
static const char *answer(walker *w, const person *p, const dp_node *ask)
{
    const char *into = ask->into ? ask->into : "";
    const char *c[16];
    size_t n = 0;
    if (strstr(into, "code"))
        c[n++] = w->code[0] ? w->code : UNKNOWN_PIN;
    if (strstr(into, "new") || strstr(into, "again"))
        c[n++] = NEW_PIN;
    if (strstr(into, "address"))
        c[n++] = NEW_ADDRESS;
    if (strstr(into, "mobile"))
        c[n++] = NEW_MOBILE;
    c[n++] = p->ssn;
    c[n++] = p->pin;
    c[n++] = p->last4;
    c[n++] = p->card;
    c[n++] = NEW_MOBILE;
    c[n++] = NEW_PIN;
    c[n++] = NEW_ADDRESS;
    c[n++] = "1";
    char normal[INPUT_MAX];
    for (size_t i = 0; i < n; i++)
        if (c[i][0] && dp_ask_accepts(ask, c[i], normal, sizeof normal))
            return c[i];
    return NULL;
}

/* Checking pages ----------------------------------------------------------------------*/

static bool ends_with(const char *s, size_t len, const char *tail)
{
    size_t n = strlen(tail);
    return len >= n && memcmp(s + len - n, tail, n) == 0;
}

/* A cut at text[at] is at a boundary: before a blank, or after Chinese
 * punctuation. */
static bool at_boundary(const char *text, size_t at)
{
    static const char *const after[] = {"。", "！", "？", "，", "；", "：", "、", NULL};
    if (text[at] == ' ' || text[at] == '\n')
        return true;
    for (size_t i = 0; after[i]; i++)
        if (ends_with(text, at, after[i]))
            return true;
    return false;
}

static void check_output(walker *w, json_t *out, const char *trail)
{
    engine *e = runtime_engine(w->core.rt);
    char text[8192], question[8192];
    engine_render_text(e, out, CHANNEL_USSD, text, sizeof text);
    const char *lang = json_string_value(json_object_get(out, "lang"));
    const char *state = json_string_value(json_object_get(out, "state"));
    json_t *prompts = json_object_get(out, "prompts");
    size_t np = json_array_size(prompts);
    question[0] = '\0';
    if (state && !strcmp(state, "wait") && np > 0) {
        json_t *last = json_pack("{s:s?, s:[O]}", "lang", lang, "prompts", json_array_get(prompts, np - 1));
        engine_render_text(e, last, CHANNEL_USSD, question, sizeof question);
        json_decref(last);
    }
    ussd_pages pages;
    ussd_output_pages(e, out, USSD_MAX_PAGE_OCTETS, &pages);
    const char *more = ussd_more_line(lang);
    size_t at = 0;
    w->outputs++;
    w->pages += (long)pages.count;
    w->multi_page += pages.count > 1;
    for (size_t i = 0; i < pages.count; i++) {
        const char *pg = pages.text[i];
        size_t len = strlen(pg), octets = gsm_octets(pg, len);
        if (octets > GSM_USSD_OCTETS || (i + 1 < pages.count) != ends_with(pg, len, more))
            fail_msg("%s: page %zu of %zu takes %zu octets (%s):\n%s", trail, i + 1, pages.count, octets,
                     gsm_is_gsm7(pg, len) ? "GSM-7" : "UCS-2", pg);
        if ((long)octets > w->max_octets)
            w->max_octets = (long)octets;
        size_t body = i + 1 < pages.count ? len - strlen(more) : len;
        /* The page's text comes next in the output, after the blanks dropped at the cut. */
        while (text[at] == ' ' || text[at] == '\n')
            at++;
        if (strncmp(text + at, pg, body) != 0)
            fail_msg("%s: page %zu is not the output's next text:\n%s", trail, i + 1, pg);
        at += body;
        if (i + 1 < pages.count && !at_boundary(text, at))
            fail_msg("%s: page %zu is cut inside a word:\n%s", trail, i + 1, pg);
    }
    if (question[0] && !ends_with(pages.text[pages.count - 1], strlen(pages.text[pages.count - 1]), question))
        fail_msg("%s: the question is not whole on the last page:\n%s", trail, pages.text[pages.count - 1]);
    ussd_pages_free(&pages);
}

/* Walking -------------------------------------------------------------------------------*/

/* "zh|main.choose_lang|lang=zh,|welcome,choose_language" */
static void state_key(json_t *out, const doc_wait *d, char *key, size_t size)
{
    size_t i;
    json_t *p;
    int n = snprintf(key, size, "%s|%s.%s|%s|", json_string_value(json_object_get(out, "lang")), d->flow, d->node,
                     d->words);
    json_array_foreach(json_object_get(out, "prompts"), i, p) {
        if (n < 0 || (size_t)n >= size)
            break;
        n += snprintf(key + n, size - (size_t)n, "%s%s", i ? "," : "",
                      json_string_value(json_object_get(p, "id")));
    }
}

static bool seen_before(walker *w, const char *key)
{
    for (size_t i = 0; i < w->n_seen; i++)
        if (!strcmp(w->seen[i], key))
            return true;
    w->seen = realloc(w->seen, (w->n_seen + 1) * sizeof *w->seen);
    w->seen[w->n_seen++] = strdup(key);
    return false;
}

static void forget_seen(walker *w)
{
    for (size_t i = 0; i < w->n_seen; i++) {
        if (getenv("WALK_DEBUG"))
            fprintf(stderr, "%s\n", w->seen[i]);
        free(w->seen[i]);
    }
    free(w->seen);
    w->seen = NULL;
    w->n_seen = 0;
}

/* Runs `pa` from a fresh session, checking every output on the way;
 * returns the last output (a reference) and the session it ran in. */
static json_t *run_path(walker *w, const person *pe, const path *pa, char *sid, size_t sid_size, char *trail,
                        size_t trail_size)
{
    snprintf(sid, sid_size, "ussd:walk-%u", ++w->session_seq);
    snprintf(trail, trail_size, "%s %s", pe->mobile, SERVICE_CODE);
    engine_event ev = {.kind = ENGINE_EV_START, .channel = CHANNEL_USSD, .session_id = sid,
                       .caller = pe->mobile, .entry = SERVICE_CODE};
    json_t *out = hop(w, &ev);
    for (size_t i = 0; out && i < pa->depth; i++) {
        check_output(w, out, trail);
        json_decref(out);
        size_t n = strlen(trail);
        snprintf(trail + n, trail_size - n, " > %s", pa->inputs[i]);
        engine_event in = {.kind = ENGINE_EV_INPUT, .channel = CHANNEL_USSD, .session_id = sid,
                           .input = pa->inputs[i]};
        out = hop(w, &in);
    }
    if (out)
        check_output(w, out, trail);
    return out;
}

static void explore(walker *w, const person *pe, const path *pa);

static void try_input(walker *w, const person *pe, const path *pa, const char *input)
{
    if (pa->depth >= MAX_DEPTH || !input)
        return;
    path next = *pa;
    snprintf(next.inputs[next.depth++], INPUT_MAX, "%s", input);
    explore(w, pe, &next);
}

/* Walks the state `pa` leads to and, if it is new, every way on from it. */
static void explore(walker *w, const person *pe, const path *pa)
{
    if (w->person_hops >= MAX_HOPS || w->n_seen >= MAX_STATES)
        return;
    char sid[64], trail[2048], key[1024];
    json_t *out = run_path(w, pe, pa, sid, sizeof sid, trail, sizeof trail);
    if (!out)
        return;
    const char *state = json_string_value(json_object_get(out, "state"));
    if (strcmp(state, "wait") != 0) {
        json_decref(out);
        return;
    }
    doc_wait d;
    load_doc(w, sid, &d);
    state_key(out, &d, key, sizeof key);
    if (seen_before(w, key)) {
        json_decref(out);
        return;
    }
    w->states[strcmp(json_string_value(json_object_get(out, "lang")), "zh") != 0]++;
    w->all_states++;
    json_t *await = json_object_get(out, "await");
    const char *kind = json_string_value(json_object_get(await, "kind"));
    if (kind && !strcmp(kind, "menu")) {
        json_t *options = json_deep_copy(json_object_get(await, "options"));
        json_decref(out);
        size_t i;
        json_t *o;
        json_array_foreach(options, i, o) try_input(w, pe, pa, json_string_value(o));
        json_decref(options);
        return;
    }
    json_decref(out);
    const dp_node *ask = waiting_node(w, &d);
    assert_non_null(ask);
    try_input(w, pe, pa, answer(w, pe, ask));
}

/* Setup and the test ----------------------------------------------------------------------*/

static int setup(void **state)
{
    walker *w = calloc(1, sizeof *w);
    assert_true(tr_start_servers(&w->core, "ussdwalk", NULL));
    log_set_level(LOG_ERROR);
    w->core.conf.registry.timeout_ms = 8000;
    w->core.conf.session.handler_timeout_ms = 10000;
    /* The walk identifies each person again on every path. */
    w->core.conf.workflows.identify_max_per_caller = 1000;
    w->core.conf.workflows.identify_max_per_id = 1000;
    w->core.conf.workflows.sessions_per_number = 1000000;
    w->core.conf.workflows.codes_per_number = 1000;
    w->core.conf.workflows.code_sends = 10;
    w->core.conf.workflows.callbacks_per_number = 1000;
    assert_true(tr_start_runtime(&w->core, SHIPPED_DIR, phone_receives, w, WAIT_MS));
    load_people(w);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    walker *w = *state;
    forget_seen(w);
    tr_stop(&w->core);
    free(w);
    return 0;
}

static void test_every_page_fits_a_handset(void **state)
{
    walker *w = *state;
    for (size_t i = 0; i < w->n_people; i++) {
        const person *pe = &w->people[i];
        path root = {.depth = 0};
        w->code[0] = '\0';
        w->person_hops = w->states[0] = w->states[1] = 0;
        explore(w, pe, &root);
        forget_seen(w);
        /* Both languages walked: a bound that cut the walk short says so here. */
        if (w->states[0] < 10 || w->states[1] < 10)
            fail_msg("%s: only %ld zh and %ld en states walked (%ld hops, bounds %d hops, %d states)", pe->mobile,
                     w->states[0], w->states[1], w->person_hops, MAX_HOPS, MAX_STATES);
    }
    print_message("walked %zu people: %ld states, %ld hops, %ld outputs in %ld pages "
                  "(%ld of more than one page), fullest page %ld octets\n",
                  w->n_people, w->all_states, w->hops, w->outputs, w->pages, w->multi_page, w->max_octets);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_page_fits_a_handset, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
