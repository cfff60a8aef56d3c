/* test_step — the pure step on the fixture set (tests/engine/dialplans/main)
 * loaded by the real loader with the real handler table: menus, failures
 * and their retries, repeat and back, asks with validators, secrets, the
 * language switch, transfers, hang-ups, reloads and the step guard. Handler
 * results are fed by the test (no I/O here). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialplan.h"
#include "handlers.h"
#include "session.h"
#include "step.h"

#define SET_DIR CL_SOURCE_DIR "/tests/engine/dialplans/main"
#define RELOADED_DIR CL_SOURCE_DIR "/tests/engine/dialplans/reloaded"
#define TYPEAHEAD_DIR CL_SOURCE_DIR "/tests/engine/dialplans/typeahead"
#define VALID_ID "110101199003074514"
#define PIN "246810"
#define TYPED_AHEAD "1*3*" VALID_ID "*" PIN  /* a USSD caller who knows the menus */

typedef struct {
    dialplan *dp;        /* the fixture set */
    json_t *doc;         /* the session between hops */
    json_t *out;         /* the last hop's output */
    json_t *events;      /* the last hop's events */
    int max_events;      /* events a hop keeps */
    step st;             /* the current hop's walk */
    step_stop stop;      /* where it stopped */
    funnel_marks marks;  /* the funnel marks of every hop since the start */
} fixture;

static dialplan *load_set(const char *dir)
{
    dp_errors errs = {0};
    dialplan *dp = dialplan_load(dir, handlers_find, &errs);
    for (size_t i = 0; i < errs.count; i++)
        fprintf(stderr, "%s\n", errs.lines[i]);
    dp_errors_free(&errs);
    return dp;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    *state = f;
    f->max_events = 20;
    f->dp = load_set(SET_DIR);
    assert_non_null(f->dp);
    return 0;
}

static int setup_typeahead(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    *state = f;
    f->max_events = 20;
    f->dp = load_set(TYPEAHEAD_DIR);
    assert_non_null(f->dp);
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    json_decref(f->doc);
    json_decref(f->out);
    json_decref(f->events);
    dialplan_unref(f->dp);
    free(f);
    return 0;
}

/* Ends the current hop's walk: keeps its output and events, wipes its
 * secrets. */
static void close_hop(fixture *f)
{
    json_decref(f->out);
    json_decref(f->events);
    f->out = engine_step_output(&f->st);
    f->events = engine_step_take_events(&f->st);
    engine_step_done(&f->st);
}

static step_stop start(fixture *f, channel_kind ch, const char *entry)
{
    json_decref(f->doc);
    f->doc = engine_session_new(f->dp, "s-1", ch, "13800000001", entry, NULL);
    engine_step_init(&f->st, f->dp, f->doc, 64, f->max_events);
    f->marks.n = 0;
    f->st.marks = &f->marks;
    f->stop = engine_step_start(&f->st, dialplan_route(f->dp, ch, entry));
    if (f->stop != STEP_CALL)
        close_hop(f);
    return f->stop;
}

static step_stop send(fixture *f, engine_event_kind kind, const char *input)
{
    engine_event ev = {.kind = kind, .session_id = "s-1", .input = input};
    engine_step_init(&f->st, f->dp, f->doc, 64, f->max_events);
    f->st.marks = &f->marks;
    f->stop = engine_step_event(&f->st, &ev);
    if (f->stop != STEP_CALL)
        close_hop(f);
    return f->stop;
}

static step_stop resume(fixture *f, const char *result, json_t *vars)
{
    f->stop = engine_step_resume(&f->st, result, vars);
    json_decref(vars);
    if (f->stop != STEP_CALL)
        close_hop(f);
    return f->stop;
}

/* The prompt ids of `out` joined by spaces. */
static const char *ids_of(const json_t *out)
{
    static char buf[512];
    buf[0] = '\0';
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(out, "prompts"), i, p) {
        if (i)
            strcat(buf, " ");
        strcat(buf, json_string_value(json_object_get(p, "id")));
    }
    return buf;
}

/* The last hop's prompt ids. */
static const char *prompt_ids(const fixture *f)
{
    return ids_of(f->out);
}

static const char *where(const fixture *f)
{
    static char buf[160];
    snprintf(buf, sizeof buf, "%s.%s", engine_session_str(f->doc, "flow"), engine_session_str(f->doc, "node"));
    return buf;
}

/* The last hop's events without their timestamps, joined by "|". */
static const char *event_list(const fixture *f)
{
    static char buf[2048];
    buf[0] = '\0';
    size_t i;
    json_t *e;
    json_array_foreach(f->events, i, e) {
        const char *text = json_string_value(e);
        const char *ms = strchr(strchr(text, ' ') + 1, ' ') + 1;
        const char *rest = strchr(ms, ' ');
        assert_true(ms[0] >= '1' && ms[0] <= '9');
        if (i)
            strcat(buf, "|");
        strncat(buf, text, (size_t)(ms - 1 - text));
        if (rest)
            strcat(buf, rest);
    }
    return buf;
}

/* The funnel marks since the start, "flow.node:outcome" joined by "|". */
static const char *mark_list(const fixture *f)
{
    static const char *const names[FUNNEL_OUTCOMES] = {"entered", "next", "timeout", "invalid",
                                                       "hangup", "transfer", "end"};
    static char buf[2048];
    buf[0] = '\0';
    for (size_t i = 0; i < f->marks.n; i++) {
        const funnel_mark *m = &f->marks.items[i];
        size_t used = strlen(buf);
        snprintf(buf + used, sizeof buf - used, "%s%s.%s:%s", i ? "|" : "", dp_flow_name(m->node->flow),
                 m->node->name, names[m->what]);
    }
    return buf;
}

static bool dumps_contain(json_t *j, const char *needle)
{
    char *s = json_dumps(j, JSON_COMPACT);
    bool found = strstr(s, needle) != NULL;
    free(s);
    return found;
}

/* Tests ------------------------------------------------------------------------*/

static void test_start_waits_at_menu(void **state)
{
    fixture *f = *state;
    assert_int_equal(start(f, CHANNEL_VOICE, "12333"), STEP_WAIT);
    assert_string_equal(prompt_ids(f), "welcome main_menu");
    assert_string_equal(where(f), "main.main_menu");
    json_t *await = json_object_get(f->out, "await");
    assert_string_equal(json_string_value(json_object_get(await, "kind")), "menu");
    /* the menu's four options, then the settings keys 9 (repeat) and * (back) */
    json_t *options = json_object_get(await, "options");
    assert_int_equal(json_array_size(options), 6);
    assert_string_equal(json_string_value(json_array_get(options, 4)), "9");
    assert_string_equal(json_string_value(json_array_get(options, 5)), "*");
    assert_string_equal(json_string_value(json_object_get(f->out, "state")), "wait");
    assert_string_equal(json_string_value(json_object_get(f->out, "lang")), "zh");
}

static void test_menu_choice_enters_other_flow(void **state)
{
    fixture *f = *state;
    start(f, CHANNEL_VOICE, "12333");
    assert_int_equal(send(f, ENGINE_EV_INPUT, "1"), STEP_WAIT);
    assert_string_equal(where(f), "status.ask_id");
    assert_string_equal(prompt_ids(f), "enter_id");
    json_t *await = json_object_get(f->out, "await");
    assert_string_equal(json_string_value(json_object_get(await, "kind")), "ask");
    assert_int_equal(json_integer_value(json_object_get(await, "max")), 18);
    assert_string_equal(json_string_value(json_object_get(await, "terminator")), "#");
}

static void test_invalid_retries_then(void **state)
{
    fixture *f = *state;
    start(f, CHANNEL_VOICE, "12333");
    assert_int_equal(send(f, ENGINE_EV_INPUT, "7"), STEP_WAIT);
    assert_string_equal(prompt_ids(f), "invalid_choice main_menu");
    assert_int_equal(send(f, ENGINE_EV_INPUT, "8"), STEP_WAIT);
    assert_string_equal(prompt_ids(f), "invalid_choice main_menu");
    assert_int_equal(send(f, ENGINE_EV_INPUT, "7"), STEP_END);
    assert_string_equal(prompt_ids(f), "goodbye");
    assert_string_equal(json_string_value(json_object_get(f->out, "state")), "end");
}

static void test_timeout_and_no_input(void **state)
{
    fixture *f = *state;
    start(f, CHANNEL_VOICE, "12333");
    assert_int_equal(send(f, ENGINE_EV_TIMEOUT, NULL), STEP_WAIT);
    assert_string_equal(prompt_ids(f), "no_input main_menu");
    /* Counters are per kind: a no_input does not use the timeout's retry. */
    assert_int_equal(send(f, ENGINE_EV_NO_INPUT, NULL), STEP_WAIT);
    assert_string_equal(prompt_ids(f), "no_input main_menu");
    assert_int_equal(send(f, ENGINE_EV_TIMEOUT, NULL), STEP_END);
    assert_string_equal(prompt_ids(f), "goodbye");
}

static void test_counters_reset_on_new_entry(void **state)
{
    fixture *f = *state;
    start(f, CHANNEL_VOICE, "12333");
    assert_int_equal(send(f, ENGINE_EV_TIMEOUT, NULL), STEP_WAIT);
    assert_int_equal(send(f, ENGINE_EV_INPUT, "3"), STEP_WAIT);   /* english → main_menu anew */
    assert_string_equal(prompt_ids(f), "lang_set main_menu");
    assert_int_equal(send(f, ENGINE_EV_TIMEOUT, NULL), STEP_WAIT);
    assert_string_equal(prompt_ids(f), "no_input main_menu");
}

static void test_repeat_and_back(void **state)
{
    fixture *f = *state;
    start(f, CHANNEL_VOICE, "12333");
    assert_int_equal(send(f, ENGINE_EV_INPUT, "9"), STEP_WAIT);
    assert_string_equal(prompt_ids(f), "welcome main_menu"); /* what was said on the way, then the menu */
    assert_string_equal(where(f), "main.main_menu");
    send(f, ENGINE_EV_INPUT, "1");
    assert_int_equal(send(f, ENGINE_EV_INPUT, VALID_ID), STEP_CALL);
    assert_int_equal(resume(f, "normal", json_pack("{s:s, s:s, s:s}", "card", "A52870316",
                                                    "bank_name", "ICBC", "bank_hotline", "95588")),
                     STEP_WAIT);
    assert_string_equal(prompt_ids(f), "status_is after_menu");
    assert_string_equal(where(f), "status.after");
    assert_int_equal(send(f, ENGINE_EV_INPUT, "*"), STEP_WAIT);
    assert_string_equal(where(f), "status.ask_id");
    assert_string_equal(prompt_ids(f), "enter_id");
}

/* The card of the first prompt `id` in the last output. */
static const char *card_said_in(const fixture *f, const char *id)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(f->out, "prompts"), i, p)
        if (!strcmp(json_string_value(json_object_get(p, "id")), id))
            return json_string_value(json_object_get(json_object_get(p, "vars"), "card"));
    return NULL;
}

/* 9 says the last information again (here a status answer), as it was
 * said, before the menu; a failure or a repeat keeps it; entering a
 * waiting node anew forgets it. No secret is kept for it. */
static void test_repeat_says_the_information_again(void **state)
{
    fixture *f = *state;
    start(f, CHANNEL_VOICE, "12333");
    send(f, ENGINE_EV_INPUT, "2");
    send(f, ENGINE_EV_INPUT, VALID_ID);
    assert_int_equal(send(f, ENGINE_EV_INPUT, PIN), STEP_CALL);
    assert_int_equal(resume(f, "wrong_pin", json_pack("{s:s}", "attempts_left", "2")), STEP_WAIT);
    assert_string_equal(prompt_ids(f), "wrong_pin enter_pin");
    assert_false(dumps_contain(f->doc, PIN));
    start(f, CHANNEL_VOICE, "12333");
    send(f, ENGINE_EV_INPUT, "1");
    send(f, ENGINE_EV_INPUT, VALID_ID);
    assert_int_equal(resume(f, "normal", json_pack("{s:s, s:s, s:s}", "card", "A10000001", "bank_name", "ICBC",
                                                    "bank_hotline", "95588")),
                     STEP_WAIT);
    assert_string_equal(prompt_ids(f), "status_is after_menu");
    engine_session_set_var(f->doc, "card", "B20000001"); /* the session moved on; the answer was about A... */
    assert_int_equal(send(f, ENGINE_EV_INPUT, "9"), STEP_WAIT);
    assert_string_equal(prompt_ids(f), "status_is after_menu");
    assert_string_equal(card_said_in(f, "status_is"), "A10000001");
    assert_string_equal(where(f), "status.after");
    assert_int_equal(send(f, ENGINE_EV_INPUT, "7"), STEP_WAIT); /* a miss asks the menu again ... */
    assert_string_equal(prompt_ids(f), "after_menu");
    assert_int_equal(send(f, ENGINE_EV_INPUT, "9"), STEP_WAIT); /* ... and keeps the answer */
    assert_string_equal(prompt_ids(f), "status_is after_menu");
    assert_int_equal(send(f, ENGINE_EV_INPUT, "9"), STEP_WAIT);
    assert_string_equal(prompt_ids(f), "status_is after_menu");
    assert_int_equal(send(f, ENGINE_EV_INPUT, "1"), STEP_WAIT);
    assert_int_equal(send(f, ENGINE_EV_INPUT, "9"), STEP_WAIT);
    assert_string_equal(prompt_ids(f), "main_menu");
    assert_null(json_object_get(f->doc, "said"));
}

static void test_back_on_first_menu_repeats(void **state)
{
    fixture *f = *state;
    start(f, CHANNEL_VOICE, "12333");
    assert_int_equal(send(f, ENGINE_EV_INPUT, "*"), STEP_WAIT);
    assert_string_equal(where(f), "main.main_menu");
    assert_string_equal(prompt_ids(f), "main_menu");
}

static void test_ask_validator_and_star(void **state)
{
    fixture *f = *state;
    start(f, CHANNEL_VOICE, "12333");
    send(f, ENGINE_EV_INPUT, "1");
    /* Right shape, wrong check digit: refused, asked again. */
    assert_int_equal(send(f, ENGINE_EV_INPUT, "110101199003074515"), STEP_WAIT);
    assert_string_equal(prompt_ids(f), "enter_id");
    assert_string_equal(where(f), "status.ask_id");
    assert_int_equal(send(f, ENGINE_EV_INPUT, "51010719880214226*"), STEP_CALL);
    json_t *args = engine_step_take_args(&f->st);
    assert_string_equal(json_string_value(json_object_get(args, "id")), "51010719880214226X");
    assert_string_equal(engine_session_var(f->doc, "id"), "51010719880214226X");
    json_decref(args);
    resume(f, "no_card", NULL);
    assert_int_equal(f->stop, STEP_END);
    assert_string_equal(prompt_ids(f), "no_card");
}

static void test_secret_stays_out(void **state)
{
    fixture *f = *state;
    start(f, CHANNEL_VOICE, "12333");
    send(f, ENGINE_EV_INPUT, "2");
    assert_int_equal(send(f, ENGINE_EV_INPUT, VALID_ID), STEP_WAIT);
    assert_true(json_is_true(json_object_get(json_object_get(f->out, "await"), "secret")));
    assert_int_equal(send(f, ENGINE_EV_INPUT, PIN), STEP_CALL);
    json_t *args = engine_step_take_args(&f->st);
    assert_string_equal(json_string_value(json_object_get(args, "pin")), PIN);
    json_decref(args);
    assert_false(dumps_contain(f->doc, PIN));
    resume(f, "wrong_pin", json_pack("{s:s}", "attempts_left", "4"));
    assert_string_equal(event_list(f), "input verify.ask_pin <secret>|result verify.check wrong_pin");
    assert_int_equal(f->stop, STEP_WAIT);
    assert_string_equal(prompt_ids(f), "wrong_pin enter_pin");
    json_t *first = json_array_get(json_object_get(f->out, "prompts"), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(first, "vars"), "attempts_left")), "4");
    assert_false(dumps_contain(f->doc, PIN));
    assert_false(dumps_contain(f->out, PIN));
    assert_false(dumps_contain(f->events, PIN));
}

/* An input that is exactly a key of the ask leaves it for the key's target
 * (here a transfer), recorded as the key; anything else stays an answer. */
static void test_ask_key_leaves_ask(void **state)
{
    fixture *f = *state;
    start(f, CHANNEL_VOICE, "12333");
    send(f, ENGINE_EV_INPUT, "2");
    send(f, ENGINE_EV_INPUT, VALID_ID);
    assert_int_equal(send(f, ENGINE_EV_INPUT, "00"), STEP_WAIT);
    assert_string_equal(event_list(f), "input verify.ask_pin <refused len=2 too_short>");
    assert_int_equal(send(f, ENGINE_EV_INPUT, "0"), STEP_TRANSFER);
    assert_string_equal(event_list(f), "input verify.ask_pin <key 0>");
    assert_string_equal(where(f), "main.agent");
    assert_string_equal(prompt_ids(f), "transferring");
}

static void test_language_switch(void **state)
{
    fixture *f = *state;
    start(f, CHANNEL_VOICE, "12333");
    assert_int_equal(send(f, ENGINE_EV_INPUT, "3"), STEP_WAIT);
    assert_string_equal(json_string_value(json_object_get(f->out, "lang")), "en");
    assert_string_equal(engine_session_lang(f->doc), "en");
    json_t *first = json_array_get(json_object_get(f->out, "prompts"), 0);
    assert_non_null(json_object_get(first, "vars"));
    assert_null(json_object_get(json_object_get(first, "vars"), "lang")); /* its wording has no {lang} */
}

static void test_transfer_and_back(void **state)
{
    fixture *f = *state;
    start(f, CHANNEL_VOICE, "12333");
    assert_int_equal(send(f, ENGINE_EV_INPUT, "0"), STEP_TRANSFER);
    assert_string_equal(prompt_ids(f), "transferring");
    json_t *t = json_object_get(f->out, "transfer");
    assert_string_equal(json_string_value(json_object_get(t, "queue")), "general");
    assert_string_equal(json_string_value(json_object_get(t, "reason")), "caller asked at main.main_menu");
    /* Input while an agent has the session does not fit. */
    assert_int_equal(send(f, ENGINE_EV_INPUT, "1"), STEP_BAD);
    engine_event back = {.kind = ENGINE_EV_TRANSFER_BACK, .session_id = "s-1", .node = "status.start"};
    engine_step_init(&f->st, f->dp, f->doc, 64, 20);
    assert_int_equal(engine_step_event(&f->st, &back), STEP_WAIT);
    close_hop(f);
    assert_string_equal(where(f), "status.ask_id");
}

/* The answer of a hop whose effect is durable but whose session cannot be
 * saved (engine.c): what was said, ended, without the waiting node's own
 * question, its await or a transfer. */
static void test_output_ending(void **state)
{
    fixture *f = *state;
    f->doc = engine_session_new(f->dp, "s-1", CHANNEL_VOICE, "13800000001", "12333", NULL);
    engine_step_init(&f->st, f->dp, f->doc, 64, f->max_events);
    assert_int_equal(engine_step_start(&f->st, dialplan_route(f->dp, CHANNEL_VOICE, "12333")), STEP_WAIT);
    json_t *ending = engine_step_output_ending(&f->st);
    close_hop(f);
    assert_string_equal(prompt_ids(f), "welcome main_menu");
    assert_string_equal(ids_of(ending), "welcome");
    assert_string_equal(json_string_value(json_object_get(ending, "state")), "end");
    assert_null(json_object_get(ending, "await"));
    json_decref(ending);

    engine_event ev = {.kind = ENGINE_EV_INPUT, .session_id = "s-1", .input = "0"};
    engine_step_init(&f->st, f->dp, f->doc, 64, f->max_events);
    assert_int_equal(engine_step_event(&f->st, &ev), STEP_TRANSFER);
    ending = engine_step_output_ending(&f->st);
    close_hop(f);
    assert_string_equal(ids_of(ending), "transferring");
    assert_string_equal(json_string_value(json_object_get(ending, "state")), "end");
    assert_null(json_object_get(ending, "transfer"));
    assert_non_null(json_object_get(f->out, "transfer"));
    json_decref(ending);
}

static void test_transfer_fallback(void **state)
{
    fixture *f = *state;
    start(f, CHANNEL_VOICE, "12333");
    send(f, ENGINE_EV_INPUT, "0");
    assert_int_equal(send(f, ENGINE_EV_TRANSFER_BACK, NULL), STEP_END);
    assert_string_equal(prompt_ids(f), "goodbye");
}

static void test_hangup_ends(void **state)
{
    fixture *f = *state;
    start(f, CHANNEL_VOICE, "12333");
    assert_int_equal(send(f, ENGINE_EV_HANGUP, NULL), STEP_END);
    assert_string_equal(prompt_ids(f), "");
    assert_string_equal(engine_session_str(f->doc, "state"), "end");
    assert_int_equal(send(f, ENGINE_EV_INPUT, "1"), STEP_BAD);
}

/* Each node entered is marked once, and left once with how: on, after its
 * retries by invalid input or timeout, by the caller leaving, to a person,
 * or at the end. A retry is neither. */
static void test_funnel_marks(void **state)
{
    fixture *f = *state;
    start(f, CHANNEL_VOICE, "12333");
    send(f, ENGINE_EV_INPUT, "7");
    send(f, ENGINE_EV_INPUT, "7");
    assert_int_equal(send(f, ENGINE_EV_INPUT, "7"), STEP_END);
    assert_string_equal(mark_list(f), "main.welcome:entered|main.welcome:next|main.main_menu:entered|"
                                      "main.main_menu:invalid|main.goodbye:entered|main.goodbye:end");

    start(f, CHANNEL_VOICE, "12333");
    send(f, ENGINE_EV_TIMEOUT, NULL);
    assert_int_equal(send(f, ENGINE_EV_TIMEOUT, NULL), STEP_END);
    assert_string_equal(mark_list(f), "main.welcome:entered|main.welcome:next|main.main_menu:entered|"
                                      "main.main_menu:timeout|main.goodbye:entered|main.goodbye:end");

    start(f, CHANNEL_VOICE, "12333");
    assert_int_equal(send(f, ENGINE_EV_HANGUP, NULL), STEP_END);
    assert_string_equal(mark_list(f), "main.welcome:entered|main.welcome:next|main.main_menu:entered|"
                                      "main.main_menu:hangup");

    /* To a person; a hang-up while waiting for one is not counted again;
     * the hand-back enters the node the agent chose. */
    start(f, CHANNEL_VOICE, "12333");
    assert_int_equal(send(f, ENGINE_EV_INPUT, "0"), STEP_TRANSFER);
    assert_int_equal(send(f, ENGINE_EV_HANGUP, NULL), STEP_END);
    assert_string_equal(mark_list(f), "main.welcome:entered|main.welcome:next|main.main_menu:entered|"
                                      "main.main_menu:next|main.agent:entered|main.agent:transfer");
    start(f, CHANNEL_VOICE, "12333");
    send(f, ENGINE_EV_INPUT, "0");
    engine_event back = {.kind = ENGINE_EV_TRANSFER_BACK, .session_id = "s-1", .node = "status.start"};
    engine_step_init(&f->st, f->dp, f->doc, 64, 20);
    f->st.marks = &f->marks;
    assert_int_equal(engine_step_event(&f->st, &back), STEP_WAIT);
    close_hop(f);
    assert_string_equal(mark_list(f), "main.welcome:entered|main.welcome:next|main.main_menu:entered|"
                                      "main.main_menu:next|main.agent:entered|main.agent:transfer|"
                                      "status.ask_id:entered");

    /* A wrong key at an ask and then the right answer: entered once, left once. */
    start(f, CHANNEL_VOICE, "12333");
    send(f, ENGINE_EV_INPUT, "1");
    send(f, ENGINE_EV_INPUT, "123");
    assert_int_equal(send(f, ENGINE_EV_INPUT, VALID_ID), STEP_CALL);
    assert_string_equal(mark_list(f), "main.welcome:entered|main.welcome:next|main.main_menu:entered|"
                                      "main.main_menu:next|status.ask_id:entered|status.ask_id:next|"
                                      "status.lookup:entered");
    engine_step_done(&f->st);
}

/* The funnel table adds marks by node and says them per flow in the order
 * the nodes are written; counts survive a rebuild for the same set. */
static void test_funnel_table(void **state)
{
    fixture *f = *state;
    funnel *fn = engine_funnel_new(f->dp, NULL);
    start(f, CHANNEL_VOICE, "12333");
    send(f, ENGINE_EV_HANGUP, NULL);
    engine_funnel_add(fn, &f->marks);
    funnel *again = engine_funnel_new(f->dp, fn);
    engine_funnel_free(fn);
    json_t *j = engine_funnel_json(again);
    json_t *main_flow = json_array_get(json_object_get(j, "flows"), 0);
    assert_string_equal(json_string_value(json_object_get(main_flow, "flow")), "main");
    json_t *welcome = json_array_get(json_object_get(main_flow, "nodes"), 0);
    json_t *menu = json_array_get(json_object_get(main_flow, "nodes"), 1);
    assert_string_equal(json_string_value(json_object_get(welcome, "node")), "welcome");
    assert_string_equal(json_string_value(json_object_get(welcome, "kind")), "say");
    assert_int_equal(json_integer_value(json_object_get(welcome, "entered")), 1);
    assert_string_equal(json_string_value(json_object_get(menu, "kind")), "menu");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(menu, "left"), "hangup")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(menu, "left"), "next")), 0);
    json_decref(j);
    engine_funnel_free(again);
}

static void test_reload_restarts_flow(void **state)
{
    fixture *f = *state;
    start(f, CHANNEL_VOICE, "12333");
    send(f, ENGINE_EV_INPUT, "1");
    assert_string_equal(where(f), "status.ask_id");
    dialplan *reloaded = load_set(RELOADED_DIR);
    assert_non_null(reloaded);
    dialplan_unref(f->dp);
    f->dp = reloaded;
    assert_int_equal(send(f, ENGINE_EV_INPUT, VALID_ID), STEP_WAIT);
    assert_string_equal(prompt_ids(f), "restarted enter_id");
    assert_string_equal(where(f), "status.ask_number");
    assert_string_equal(engine_session_str(f->doc, "dialplan"), dialplan_version(reloaded));
}

/* The checker refuses input-free loops, so the guard is tripped here by a
 * limit smaller than the walk from the start to the first menu. */
static void test_step_guard(void **state)
{
    fixture *f = *state;
    f->doc = engine_session_new(f->dp, "s-1", CHANNEL_VOICE, "13800000001", "12333", NULL);
    engine_step_init(&f->st, f->dp, f->doc, 1, 20);
    f->stop = engine_step_start(&f->st, dialplan_route(f->dp, CHANNEL_VOICE, "12333"));
    assert_true(f->st.guard_tripped);
    close_hop(f);
    assert_int_equal(f->stop, STEP_END);
    assert_string_equal(prompt_ids(f), "welcome unavailable");
    assert_string_equal(json_string_value(json_object_get(f->out, "state")), "end");
}

/* Each hop collects its own events; none are in the document. */
static void test_hop_events(void **state)
{
    fixture *f = *state;
    start(f, CHANNEL_VOICE, "12333");
    assert_string_equal(event_list(f), "start main.welcome");
    send(f, ENGINE_EV_INPUT, "1");
    assert_string_equal(event_list(f), "input main.main_menu 1");
    send(f, ENGINE_EV_INPUT, VALID_ID);
    resume(f, "normal", json_pack("{s:s}", "card", "A52870316"));
    assert_string_equal(event_list(f), "input status.ask_id 110101********4514|result status.lookup normal");
    send(f, ENGINE_EV_TIMEOUT, NULL);
    assert_string_equal(event_list(f), "timeout status.after");
    send(f, ENGINE_EV_HANGUP, NULL);
    assert_string_equal(event_list(f), "hangup status.after");
    assert_null(json_object_get(f->doc, "events"));
    assert_int_equal(json_integer_value(json_object_get(f->doc, "v")), SESSION_FORMAT);
}

/* A hop keeps only its newest max_events (the store would trim the rest),
 * and never more than STEP_MAX_HOP_EVENTS. */
static void test_events_are_bounded(void **state)
{
    fixture *f = *state;
    f->max_events = 1;
    start(f, CHANNEL_VOICE, "12333");
    send(f, ENGINE_EV_INPUT, "1");
    send(f, ENGINE_EV_INPUT, VALID_ID);
    resume(f, "no_card", NULL);
    assert_string_equal(event_list(f), "result status.lookup no_card");

    f->max_events = 0;
    start(f, CHANNEL_VOICE, "12333");
    assert_int_equal(json_array_size(f->events), 0);

    step st;
    engine_step_init(&st, f->dp, f->doc, 64, 5000);
    assert_int_equal(st.max_events, STEP_MAX_HOP_EVENTS);
    engine_step_done(&st);
}

/* A document of format 1 carried the events itself: they are dropped. */
static void test_format_1_events_dropped(void **state)
{
    fixture *f = *state;
    start(f, CHANNEL_VOICE, "12333");
    json_object_set_new(f->doc, "v", json_integer(1));
    json_object_set_new(f->doc, "events", json_pack("[s]", "start main.welcome 1"));
    assert_int_equal(send(f, ENGINE_EV_INPUT, "9"), STEP_WAIT);
    assert_null(json_object_get(f->doc, "events"));
    assert_int_equal(json_integer_value(json_object_get(f->doc, "v")), SESSION_FORMAT);
    assert_string_equal(event_list(f), "input main.main_menu 9");
}

/* One input at the node the session waits at: its hop's events must be
 * `want`, and hold neither the ID nor the PIN. */
static void expect_understood(fixture *f, const char *input, const char *want)
{
    send(f, ENGINE_EV_INPUT, input);
    assert_string_equal(event_list(f), want);
    assert_false(dumps_contain(f->events, VALID_ID));
    assert_false(dumps_contain(f->events, PIN));
}

/* An event records what the node understood, never what was typed: the ID
 * and PIN typed ahead reach every kind of waiting node and are recorded as
 * refused (length and why); answers are masked by their validator. */
static void test_events_record_what_was_understood(void **state)
{
    fixture *f = *state;
    start(f, CHANNEL_VOICE, "1");
    expect_understood(f, TYPED_AHEAD, "input t.pick <refused len=29 no_option>");
    expect_understood(f, "1", "input t.pick 1");
    expect_understood(f, VALID_ID "*" PIN, "input t.id <refused len=25 too_long>");
    expect_understood(f, VALID_ID, "input t.id 110101********4514");
    expect_understood(f, "2", "input t.pick 2");
    expect_understood(f, PIN, "input t.card <refused len=6 too_short>");
    expect_understood(f, "A52870316", "input t.card *****0316");
    expect_understood(f, "3", "input t.pick 3");
    expect_understood(f, "2468101234X", "input t.mobile <refused len=11 not_valid>");
    expect_understood(f, "13800000001", "input t.mobile 138****0001");
    expect_understood(f, "4", "input t.pick 4");
    expect_understood(f, PIN, "input t.note <answer len=6>");
    expect_understood(f, "5", "input t.pick 5");
    expect_understood(f, VALID_ID "*" PIN, "input t.pin <refused len=25 too_long>");
    assert_int_equal(send(f, ENGINE_EV_INPUT, PIN), STEP_CALL);
    json_decref(engine_step_take_args(&f->st));
    resume(f, "ok", NULL);
    assert_string_equal(event_list(f), "input t.pin <secret>|result t.check ok");
    assert_string_equal(where(f), "t.pick");
}

static void test_handler_table(void **state)
{
    (void)state;
    const handler_def *v = handlers_find("verify_identity");
    assert_non_null(v);
    assert_string_equal(v->secret_args[0], "pin");
    assert_true(handler_has_result(v, "wrong_pin"));
    assert_false(handler_has_result(v, "no_card"));
    const handler_def *c = handlers_find("card_status");
    assert_non_null(c);
    assert_true(handler_has_result(c, "no_card"));
    assert_true(handler_has_result(c, "temporary_loss"));
    assert_false(handler_has_result(c, "ok"));
    assert_null(handlers_find("nope"));
    assert_ptr_equal(handlers_at(0), v);
    assert_ptr_equal(handlers_at(1), c);
    size_t n = 0;
    while (handlers_at(n))
        n++;
    assert_int_equal(n, 19);
    const handler_def *code = handlers_find("check_code");
    assert_non_null(code);
    assert_string_equal(code->secret_args[0], "code");
    assert_true(handler_has_result(handlers_find("report_loss"), "accepted"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_start_waits_at_menu, setup, teardown),
        cmocka_unit_test_setup_teardown(test_menu_choice_enters_other_flow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_retries_then, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_and_no_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counters_reset_on_new_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repeat_and_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repeat_says_the_information_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_back_on_first_menu_repeats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ask_validator_and_star, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_stays_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ask_key_leaves_ask, setup, teardown),
        cmocka_unit_test_setup_teardown(test_language_switch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transfer_and_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_ending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transfer_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_funnel_marks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_funnel_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hangup_ends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_restarts_flow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_step_guard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hop_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_are_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_format_1_events_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_record_what_was_understood, setup_typeahead, teardown),
        cmocka_unit_test(test_handler_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
