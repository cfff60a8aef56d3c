/* The self-service workflow handlers (reissue_progress, card_history,
 * cancel_loss, find_activatable, check_new_pin, activate_card) against the
 * real registry simulator with the demo seed, called the way the engine
 * calls them (handler_call_start) and driven on a libevent loop until they
 * finish. One simulator serves the tests that change nothing; a test that
 * changes the registry (a cancellation, an activation) gets its own. Faults
 * come from /_sim/fault. The people are those of
 * tools/registry-sim/README.md ("Who to be"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "handler_call.h"
#include "harness.h"
#include "loop.h"
#include "modules.h"
#include "log.h"
#include "registry.h"

#define SIM_TODAY "2026-11-22"
#define WAIT_MS 15000   /* bound on every wait for a handler to finish */

/* The demo people. */
#define WANG_WEI "110101199003074514"     /* normal card replacing B19346728; application activated */
#define LI_NA "310104198506123025"        /* one normal card, no application */
#define ZHANG_MIN "440106199211234816"    /* temporary loss that can be cancelled */
#define LIU_YANG "330106197809301556"     /* temporary loss; reissue requested (in_production) */
#define YANG_LEI "420106197505053719"     /* formal loss; sealed H70461592 collected */
#define ZHAO_LI "320102199508184642"      /* sealed K90273658, application at_outlet */
#define HUANG_QIANG "120101200101013536"  /* no card; new application received */
#define ZHOU_JIE "370102196807202922"     /* warranty replacement production_failed */
#define WU_FANG "610103198303105120"      /* sealed N62948531, application at_city_bank */
#define NOBODY "110101199001010015"       /* valid checksum, not in the seed */

#define STRONG_PIN "620481"
#define SESSION "voice:test-session"

static const unsigned char digest_key[32] = "0123456789abcdef0123456789abcdef";

/* A simulator with a registry client on its own loop, and the env handlers
 * get. */
typedef struct {
    th_proc sim;
    struct event_base *base;
    registry *reg;
    handler_env env;
} world;

static world shared;

/* The dialplan set's wording, as the runtime gives it: "LANG/PROMPT", so a
 * test sees which prompt a handler picked in which language. */
static bool fake_render(void *ctx, const char *lang, const char *id, json_t *vars, char *out, size_t size)
{
    (void)ctx;
    (void)vars;
    snprintf(out, size, "%s/%s", lang, id);
    return true;
}

static bool world_open(world *w, const char *seed, const char *const *more_args)
{
    const char *args[8] = {"--today", SIM_TODAY};
    size_t n = 2;
    for (size_t i = 0; more_args && more_args[i] && n < 7; i++)
        args[n++] = more_args[i];
    th_mkdtemp(w->sim.dir, "cl-handlers");
    if (!th_sim_start(&w->sim, w->sim.dir, seed, args))
        return false;
    registry_options opt;
    char url[64];
    registry_options_default(&opt);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", w->sim.port);
    opt.base_url = url;
    w->base = event_base_new();
    w->reg = w->base ? registry_new(w->base, &opt) : NULL;
    w->env = (handler_env){
        .base = w->base,
        .registry = w->reg,
        .render = fake_render,
        .digest_key = digest_key,
        .digest_key_len = sizeof digest_key,
    };
    return w->reg != NULL;
}

static void world_close(world *w)
{
    if (w->reg)
        registry_free(w->reg);
    if (w->base)
        event_base_free(w->base);
    th_stop(&w->sim, 2000);
    th_rmdir(w->sim.dir);
    memset(w, 0, sizeof *w);
}

/* A world of its own for a test that changes the registry. */
static world *private_world(const char *seed, const char *const *more_args)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    assert_true(world_open(w, seed, more_args));
    return w;
}

static void private_world_close(world *w)
{
    world_close(w);
    free(w);
}

/* The simulator's controls ------------------------------------------------------*/

static void sim_fault(const world *w, const char *fault_json)
{
    long st = th_http(w->sim.port, "PUT", "/_sim/fault", fault_json, NULL, NULL);
    assert_true(st >= 200 && st < 300);
}

static void sim_fault_clear(const world *w)
{
    long st = th_http(w->sim.port, "DELETE", "/_sim/fault", NULL, NULL, NULL);
    assert_true(st >= 200 && st < 300);
}

static long long sim_applied(const world *w, const char *what)
{
    return th_sim_applied(&w->sim, what);
}

/* Calling a handler ----------------------------------------------------------------*/

/* What the owner of a call was told. */
typedef struct {
    int calls;             /* times `done` ran */
    char result[32];       /* the result */
    json_t *vars;          /* the variables (own reference) */
    json_t *args;          /* the call's arguments, watched */
    bool pin_wiped;        /* the "pin" argument was wiped when the call ended */
} outcome;

static void on_done(const char *result, json_t *vars, void *arg)
{
    outcome *o = arg;
    o->calls++;
    snprintf(o->result, sizeof o->result, "%s", result);
    json_decref(o->vars);
    o->vars = json_incref(vars);
    const char *pin = json_string_value(json_object_get(o->args, "pin"));
    o->pin_wiped = pin && pin[0] == '\0';
}

static void outcome_clear(outcome *o)
{
    json_decref(o->vars);
    json_decref(o->args);
    memset(o, 0, sizeof *o);
}

/* Calls `handler` with `args` (stolen) in session `session`, on `channel`,
 * and waits until it ends; asserts it ended exactly once with `expected`. */
static void call_in(world *w, channel_kind channel, const char *session, const char *handler,
                    json_t *args, const char *expected, outcome *o)
{
    static int serial;
    char key[HANDLER_CALL_KEY_MAX + 1];
    snprintf(key, sizeof key, "test.%d", ++serial);
    memset(o, 0, sizeof *o);
    o->args = json_incref(args);
    handler_call_spec spec = {
        .def = handlers_find(handler),
        .env = &w->env,
        .channel = channel,
        .caller = "+8613800000099",
        .session_id = session,
        .call_key = key,
        .args = args,
    };
    assert_non_null(spec.def);
    handler_call_start(&spec, on_done, o);
    assert_true(tl_run_until_count(w->base, &o->calls, 1, WAIT_MS));
    assert_int_equal(o->calls, 1);
    assert_string_equal(o->result, expected);
    assert_true(handler_has_result(spec.def, o->result));
}

static void call(world *w, const char *handler, json_t *args, const char *expected, outcome *o)
{
    call_in(w, CHANNEL_VOICE, SESSION, handler, args, expected, o);
}

/* Calls a handler that takes only the person's ID and sets nothing. */
static void expect_by_id(world *w, const char *handler, const char *id, const char *expected)
{
    outcome o;
    call(w, handler, json_pack("{s:s}", "id", id), expected, &o);
    assert_int_equal(json_object_size(o.vars), 0);
    outcome_clear(&o);
}

static void assert_var(const outcome *o, const char *name, const char *value)
{
    const char *v = json_string_value(json_object_get(o->vars, name));
    assert_non_null(v);
    assert_string_equal(v, value);
}

/* The digest check_new_pin gives for `pin` in `session`. */
static void digest_of(const char *pin, const char *session, char out[HANDLER_DIGEST_HEX + 1])
{
    assert_true(handler_digest(&shared.env, "new_pin", session, pin, out));
}

/* reissue_progress ---------------------------------------------------------------*/

static void expect_progress(const char *id, const char *type, const char *stage, const char *date,
                            const char *card, const char *outlet_name, const char *outlet_phone)
{
    outcome o;
    char type_words[64];
    snprintf(type_words, sizeof type_words, "zh/application_%s", type);
    call(&shared, "reissue_progress", json_pack("{s:s, s:s}", "id", id, "lang", "zh"), stage, &o);
    assert_int_equal(json_object_size(o.vars), 8);
    assert_var(&o, "app_type", type_words);
    assert_var(&o, "collect_by", strcmp(stage, "at_outlet") == 0 ? "2027-11-18" : "");
    assert_var(&o, "stage_date", date);
    assert_var(&o, "new_card", card);
    assert_var(&o, "outlet_name", outlet_name);
    assert_var(&o, "outlet_phone", outlet_phone);
    const char *address = json_string_value(json_object_get(o.vars, "outlet_address"));
    const char *hours = json_string_value(json_object_get(o.vars, "outlet_hours"));
    assert_non_null(address);
    assert_non_null(hours);
    assert_int_equal(address[0] == '\0', outlet_name[0] == '\0');
    assert_int_equal(hours[0] == '\0', outlet_name[0] == '\0');
    outcome_clear(&o);
}

static void test_progress_every_stage(void **state)
{
    (void)state;
    expect_progress(HUANG_QIANG, "new", "received", "2026-11-19", "", "", "");
    expect_progress(LIU_YANG, "reissue_after_loss", "in_production", "2026-11-21", "", "", "");
    expect_progress(WU_FANG, "replacement", "at_city_bank", "2026-11-16", "N62948531", "", "");
    expect_progress(ZHAO_LI, "replacement", "at_outlet", "2026-11-18", "K90273658", "玄武区社保服务中心",
                    "025-12333");
    expect_progress(YANG_LEI, "reissue_after_loss", "collected", "2026-11-15", "H70461592", "武昌区社保服务中心",
                    "027-12333");
    expect_progress(WANG_WEI, "replacement", "activated", "2024-05-01", "A52870316", "东城区社保服务中心",
                    "010-12333");
    expect_progress(ZHOU_JIE, "warranty_replacement", "production_failed", "2026-10-29", "", "", "");
}

/* Names, address and hours in the session's language; without one, the
 * registry's own (Chinese). */
static void test_progress_outlet_details(void **state)
{
    (void)state;
    outcome o;
    call(&shared, "reissue_progress", json_pack("{s:s}", "id", YANG_LEI), "collected", &o);
    assert_var(&o, "outlet_address", "武汉市武昌区友谊大道303号");
    assert_var(&o, "outlet_hours", "周一至周六8:30-17:30");
    assert_var(&o, "app_type", ""); /* no language: no wording to pick */
    outcome_clear(&o);
    call(&shared, "reissue_progress", json_pack("{s:s, s:s}", "id", YANG_LEI, "lang", "en"), "collected", &o);
    assert_var(&o, "outlet_name", "Wuchang District Social Security Service Centre");
    assert_var(&o, "outlet_address", "303 Youyi Avenue, Wuchang District, Wuhan");
    assert_var(&o, "outlet_hours", "Mon-Sat 08:30-17:30");
    assert_var(&o, "app_type", "en/application_reissue_after_loss");
    outcome_clear(&o);
    call(&shared, "reissue_progress", json_pack("{s:s, s:s}", "id", WANG_WEI, "lang", "zh"), "activated", &o);
    assert_var(&o, "outlet_hours", "周一至周五9:00-17:00，周六9:00-12:00");
    outcome_clear(&o);
    call(&shared, "reissue_progress", json_pack("{s:s, s:s}", "id", WANG_WEI, "lang", "en"), "activated", &o);
    assert_var(&o, "outlet_hours", "Mon-Fri 09:00-17:00; Sat 09:00-12:00");
    outcome_clear(&o);
}

/* card_history ----------------------------------------------------------------------*/

static void test_history_replaced(void **state)
{
    (void)state;
    outcome o;
    call(&shared, "card_history", json_pack("{s:s}", "id", WANG_WEI), "replaced", &o);
    assert_int_equal(json_object_size(o.vars), 2);
    assert_var(&o, "card", "A52870316");
    assert_var(&o, "old_card", "B19346728");
    outcome_clear(&o);
}

static void test_history_single(void **state)
{
    (void)state;
    outcome o;
    call(&shared, "card_history", json_pack("{s:s}", "id", LI_NA), "single", &o);
    assert_int_equal(json_object_size(o.vars), 1);
    assert_var(&o, "card", "C60482915");
    outcome_clear(&o);
    /* The sealed successor names G25738104, but G25738104 is still current. */
    call(&shared, "card_history", json_pack("{s:s}", "id", YANG_LEI), "single", &o);
    assert_var(&o, "card", "G25738104");
    outcome_clear(&o);
}

static void test_history_no_card(void **state)
{
    (void)state;
    expect_by_id(&shared, "card_history", HUANG_QIANG, "no_card");
    expect_by_id(&shared, "card_history", NOBODY, "no_card");
}

static void test_history_unavailable(void **state)
{
    (void)state;
    sim_fault(&shared, "{\"status\": 500}");
    expect_by_id(&shared, "card_history", WANG_WEI, "unavailable");
    sim_fault(&shared, "{\"malformed\": true}");
    expect_by_id(&shared, "card_history", WANG_WEI, "unavailable");
    sim_fault_clear(&shared);
}

/* cancel_loss ------------------------------------------------------------------------*/

static void test_cancel_refusals(void **state)
{
    (void)state;
    long long before = sim_applied(&shared, "cancellations");
    expect_by_id(&shared, "cancel_loss", LIU_YANG, "reissue_requested");
    expect_by_id(&shared, "cancel_loss", YANG_LEI, "not_temporary");
    expect_by_id(&shared, "cancel_loss", WANG_WEI, "not_reported");
    expect_by_id(&shared, "cancel_loss", HUANG_QIANG, "not_reported");
    expect_by_id(&shared, "cancel_loss", NOBODY, "not_reported");
    assert_int_equal(sim_applied(&shared, "cancellations"), before);
}

/* check_cancel: the refusals cancel_loss would meet, found with reads only,
 * including a replacement applied for (which only the applications show). */
static void expect_cancel_check(const char *id, const char *expected, const char *card)
{
    outcome o;
    call(&shared, "check_cancel", json_pack("{s:s}", "id", id), expected, &o);
    if (card)
        assert_var(&o, "card", card);
    else
        assert_int_equal(json_object_size(o.vars), 0);
    outcome_clear(&o);
}

static void test_check_cancel(void **state)
{
    (void)state;
    long long before = sim_applied(&shared, "cancellations");
    expect_cancel_check(ZHANG_MIN, "ok", "D27159384");
    expect_cancel_check(LIU_YANG, "reissue_requested", "E81625073");
    expect_cancel_check(YANG_LEI, "not_temporary", NULL);
    expect_cancel_check(WANG_WEI, "not_reported", NULL);
    expect_cancel_check(ZHOU_JIE, "not_reported", NULL);
    expect_cancel_check(HUANG_QIANG, "not_reported", NULL);
    expect_cancel_check(NOBODY, "not_reported", NULL);
    assert_int_equal(sim_applied(&shared, "cancellations"), before);
    /* The applications cannot be read: nothing is promised. */
    sim_fault(&shared, "{\"status\": 503, \"path_prefix\": \"/v1/persons/" ZHANG_MIN "/applications\"}");
    expect_cancel_check(ZHANG_MIN, "unavailable", NULL);
    sim_fault_clear(&shared);
}

static void test_cancel_unavailable(void **state)
{
    (void)state;
    /* The list fails. */
    sim_fault(&shared, "{\"status\": 503, \"path_prefix\": \"/v1/persons/\"}");
    expect_by_id(&shared, "cancel_loss", ZHANG_MIN, "unavailable");
    /* The list answers, the cancellation fails: nothing is cancelled. */
    sim_fault(&shared, "{\"status\": 503, \"path_prefix\": \"/v1/cards/\"}");
    expect_by_id(&shared, "cancel_loss", ZHANG_MIN, "unavailable");
    sim_fault_clear(&shared);
    assert_int_equal(sim_applied(&shared, "cancellations"), 0);
}

static void test_cancel_ok_then_not_reported(void **state)
{
    (void)state;
    world *w = private_world(NULL, NULL);
    outcome o;
    call_in(w, CHANNEL_USSD, "ussd:cancel", "cancel_loss", json_pack("{s:s}", "id", ZHANG_MIN), "ok",
            &o);
    assert_int_equal(json_object_size(o.vars), 1);
    assert_var(&o, "card", "D27159384");
    outcome_clear(&o);
    assert_int_equal(sim_applied(w, "cancellations"), 1);

    char *text = NULL;
    assert_int_equal(th_http_get(w->sim.port, "/v1/cards/D27159384", &text), 200);
    json_t *card = json_loads(text, 0, NULL);
    free(text);
    assert_int_equal(json_integer_value(json_object_get(card, "status")), 1);
    assert_true(json_is_null(json_object_get(card, "loss_report")));
    json_decref(card);

    expect_by_id(w, "cancel_loss", ZHANG_MIN, "not_reported");
    assert_int_equal(sim_applied(w, "cancellations"), 1);
    private_world_close(w);
}

/* find_activatable ------------------------------------------------------------------*/

static void expect_activatable(world *w, const char *id, const char *result, const char *card)
{
    outcome o;
    call(w, "find_activatable", json_pack("{s:s}", "id", id), result, &o);
    assert_int_equal(json_object_size(o.vars), 1);
    assert_var(&o, "new_card", card);
    outcome_clear(&o);
}

static void test_find_activatable(void **state)
{
    (void)state;
    expect_activatable(&shared, YANG_LEI, "ready", "H70461592");
    expect_activatable(&shared, ZHAO_LI, "not_collected", "K90273658");
    expect_activatable(&shared, WU_FANG, "not_collected", "N62948531");
    expect_by_id(&shared, "find_activatable", WANG_WEI, "nothing");
    expect_by_id(&shared, "find_activatable", HUANG_QIANG, "nothing");
    expect_by_id(&shared, "find_activatable", NOBODY, "nothing");
}

static void test_find_activatable_unavailable(void **state)
{
    (void)state;
    sim_fault(&shared, "{\"status\": 503}");
    expect_by_id(&shared, "find_activatable", YANG_LEI, "unavailable");
    /* The cards answer, the applications do not. */
    sim_fault(&shared, "{\"status\": 503, \"path_prefix\": \"/v1/persons/" YANG_LEI "/applications\"}");
    expect_by_id(&shared, "find_activatable", YANG_LEI, "unavailable");
    sim_fault_clear(&shared);
}

/* A sealed card no application produced (handed out at a counter) is in the
 * holder's hands: ready. Its holder's registry has another initial PIN than
 * the gateway assumes, so only the registry can refuse it (422 initial). */
static const char counter_seed[] =
    "{\"banks\": [{\"code\": \"CCB\", \"name\": \"中国建设银行\", \"hotline\": \"95533\"}],"
    " \"outlets\": [],"
    " \"persons\": [{\"ssn\": \"" LI_NA "\", \"name\": \"李娜\","
    "  \"cards\": [{\"card_number\": \"C60482915\", \"status\": 1, \"current\": true, \"generation\": 1,"
    "              \"issued_date\": \"2025-09-20\", \"bank\": \"CCB\", \"pin\": {\"value\": \"502817\", \"initial\": false}},"
    "             {\"card_number\": \"P83051629\", \"status\": 0, \"current\": false, \"generation\": 2,"
    "              \"replaces\": \"C60482915\", \"bank\": \"CCB\"}]}]}";

static char *write_seed(const char *text)
{
    static char path[300];
    char dir[256];
    th_mkdtemp(dir, "cl-seed");
    snprintf(path, sizeof path, "%s/seed.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* check_new_pin ----------------------------------------------------------------------*/

static void expect_new_pin(const char *id, const char *pin, const char *result)
{
    outcome o;
    call(&shared, "check_new_pin", json_pack("{s:s, s:s}", "id", id, "pin", pin), result, &o);
    assert_true(o.pin_wiped);
    if (strcmp(result, "ok") != 0)
        assert_int_equal(json_object_size(o.vars), 0);
    outcome_clear(&o);
}

static void test_new_pin_weak(void **state)
{
    (void)state;
    expect_new_pin(YANG_LEI, "123456", "initial");
    expect_new_pin(YANG_LEI, "111111", "repeated");
    expect_new_pin(YANG_LEI, "234567", "sequence");
    expect_new_pin(YANG_LEI, "987654", "sequence");
    expect_new_pin(YANG_LEI, "750505", "birth_date");
    expect_new_pin(YANG_LEI, "050575", "birth_date");
    /* Not six digits: no result of its own, the caller chooses again. */
    expect_new_pin(YANG_LEI, "12345", "repeated");
    expect_new_pin(YANG_LEI, "12a456", "repeated");
    /* Another holder's birth date is just a PIN. */
    expect_new_pin(WANG_WEI, "750505", "ok");
}

static void test_new_pin_ok_digest(void **state)
{
    (void)state;
    tm_capture cap;
    outcome o;
    char expected[HANDLER_DIGEST_HEX + 1], other[HANDLER_DIGEST_HEX + 1];
    tm_capture_begin(&cap, LOG_DEBUG);
    call(&shared, "check_new_pin", json_pack("{s:s, s:s}", "id", YANG_LEI, "pin", STRONG_PIN), "ok", &o);
    tm_capture_end(&cap);
    assert_true(o.pin_wiped);
    assert_int_equal(json_object_size(o.vars), 1);
    digest_of(STRONG_PIN, SESSION, expected);
    assert_var(&o, "new_pin_digest", expected);
    /* Bound to the session: the same PIN elsewhere has another digest. */
    digest_of(STRONG_PIN, "voice:another", other);
    assert_string_not_equal(expected, other);
    assert_null(strstr(cap.text, STRONG_PIN));
    free(cap.text);
    outcome_clear(&o);
}

/* Without a key the first entry cannot be kept: the digest is empty, and
 * the second entry ends `unavailable`, never `ok`. */
static void test_new_pin_without_key(void **state)
{
    (void)state;
    handler_env keep = shared.env;
    shared.env.digest_key = NULL;
    shared.env.digest_key_len = 0;
    tm_capture cap;
    outcome o;
    tm_capture_begin(&cap, LOG_DEBUG);
    call(&shared, "check_new_pin", json_pack("{s:s, s:s}", "id", YANG_LEI, "pin", STRONG_PIN), "ok", &o);
    assert_var(&o, "new_pin_digest", "");
    outcome_clear(&o);
    call(&shared, "activate_card",
         json_pack("{s:s, s:s, s:s, s:s}", "id", YANG_LEI, "card", "H70461592", "pin", STRONG_PIN,
                   "digest", ""),
         "unavailable", &o);
    assert_true(o.pin_wiped);
    outcome_clear(&o);
    tm_capture_end(&cap);
    shared.env = keep;
    assert_non_null(strstr(cap.text, "handler.no_digest_key"));
    assert_null(strstr(cap.text, STRONG_PIN));
    free(cap.text);
}

/* activate_card ----------------------------------------------------------------------*/

/* activate_card with the first entry `first` and the second `second`. */
static void activate(world *w, const char *id, const char *card, const char *first, const char *second,
                     const char *expected)
{
    char digest[HANDLER_DIGEST_HEX + 1];
    digest_of(first, SESSION, digest);
    outcome o;
    call(w, "activate_card",
         json_pack("{s:s, s:s, s:s, s:s}", "id", id, "card", card, "pin", second, "digest", digest),
         expected, &o);
    assert_true(o.pin_wiped);
    assert_int_equal(json_object_size(o.vars), 0);
    outcome_clear(&o);
}

static void test_activate_mismatch(void **state)
{
    (void)state;
    activate(&shared, YANG_LEI, "H70461592", STRONG_PIN, "620418", "mismatch");
    /* A digest made in another session does not match either. */
    char digest[HANDLER_DIGEST_HEX + 1];
    digest_of(STRONG_PIN, "voice:another", digest);
    outcome o;
    call(&shared, "activate_card",
         json_pack("{s:s, s:s, s:s, s:s}", "id", YANG_LEI, "card", "H70461592", "pin", STRONG_PIN,
                   "digest", digest),
         "mismatch", &o);
    outcome_clear(&o);
    assert_int_equal(sim_applied(&shared, "activations"), 0);
}

static void test_activate_weak(void **state)
{
    (void)state;
    activate(&shared, YANG_LEI, "H70461592", "123456", "123456", "initial");
    activate(&shared, YANG_LEI, "H70461592", "222222", "222222", "repeated");
    activate(&shared, YANG_LEI, "H70461592", "345678", "345678", "sequence");
    activate(&shared, YANG_LEI, "H70461592", "750505", "750505", "birth_date");
    activate(&shared, YANG_LEI, "H70461592", "050575", "050575", "birth_date");
    assert_int_equal(sim_applied(&shared, "activations"), 0);
}

static void test_activate_not_activatable(void **state)
{
    (void)state;
    /* At the outlet, not collected yet: the registry's 409. */
    activate(&shared, ZHAO_LI, "K90273658", STRONG_PIN, STRONG_PIN, "not_activatable");
    /* Another person's card: the registry's 404. */
    activate(&shared, WANG_WEI, "H70461592", STRONG_PIN, STRONG_PIN, "not_activatable");
    /* A card in use. */
    activate(&shared, WANG_WEI, "A52870316", STRONG_PIN, STRONG_PIN, "not_activatable");
    assert_int_equal(sim_applied(&shared, "activations"), 0);
}

static void test_activate_unavailable(void **state)
{
    (void)state;
    sim_fault(&shared, "{\"status\": 503, \"path_prefix\": \"/v1/cards/\"}");
    activate(&shared, YANG_LEI, "H70461592", STRONG_PIN, STRONG_PIN, "unavailable");
    sim_fault(&shared, "{\"drop\": true, \"path_prefix\": \"/v1/cards/\"}");
    activate(&shared, YANG_LEI, "H70461592", STRONG_PIN, STRONG_PIN, "unavailable");
    sim_fault_clear(&shared);
    assert_int_equal(sim_applied(&shared, "activations"), 0);
}

/* The card as registry_get_card sees it. */
typedef struct {
    int calls;
    registry_status status;
    json_t *card;
} card_read;

static void on_card(const registry_result *r, void *arg)
{
    card_read *got = arg;
    got->calls++;
    got->status = r->status;
    got->card = json_incref(r->body);
}

static json_int_t card_status_code(world *w, const char *card)
{
    card_read got = {0};
    registry_get_card(w->reg, card, on_card, &got);
    tl_run_until_count(w->base, &got.calls, 1, WAIT_MS);
    assert_int_equal(got.calls, 1);
    assert_int_equal(got.status, REGISTRY_OK);
    json_int_t status = json_integer_value(json_object_get(got.card, "status"));
    json_decref(got.card);
    return status;
}

/* The whole workflow on a collected card, as a dialplan runs it. */
static void test_activate_collected_card(void **state)
{
    (void)state;
    world *w = private_world(NULL, NULL);
    tm_capture cap;
    outcome o;
    tm_capture_begin(&cap, LOG_DEBUG);
    expect_activatable(w, YANG_LEI, "ready", "H70461592");
    call(w, "check_new_pin", json_pack("{s:s, s:s}", "id", YANG_LEI, "pin", STRONG_PIN), "ok", &o);
    char digest[HANDLER_DIGEST_HEX + 1];
    snprintf(digest, sizeof digest, "%s", json_string_value(json_object_get(o.vars, "new_pin_digest")));
    outcome_clear(&o);
    call(w, "activate_card",
         json_pack("{s:s, s:s, s:s, s:s}", "id", YANG_LEI, "card", "H70461592", "pin", STRONG_PIN,
                   "digest", digest),
         "ok", &o);
    assert_true(o.pin_wiped);
    outcome_clear(&o);
    tm_capture_end(&cap);
    assert_null(strstr(cap.text, STRONG_PIN));
    free(cap.text);

    assert_int_equal(card_status_code(w, "H70461592"), 1);
    assert_int_equal(sim_applied(w, "activations"), 1);
    /* The new card is current and the application done; nothing waits. */
    call(w, "card_history", json_pack("{s:s}", "id", YANG_LEI), "replaced", &o);
    assert_var(&o, "card", "H70461592");
    assert_var(&o, "old_card", "G25738104");
    outcome_clear(&o);
    call(w, "reissue_progress", json_pack("{s:s}", "id", YANG_LEI), "activated", &o);
    assert_var(&o, "stage_date", SIM_TODAY);
    outcome_clear(&o);
    expect_by_id(w, "find_activatable", YANG_LEI, "nothing");
    /* The PIN now opens the card. */
    assert_true(th_http(w->sim.port, "POST", "/v1/persons/" YANG_LEI "/pin-verifications",
                        "{\"pin\": \"" STRONG_PIN "\"}",
                        (const char *const[]){"Idempotency-Key: t-verify", NULL}, NULL) == 200);
    private_world_close(w);
}

/* A counter-issued sealed card is ready at once; a PIN only the registry
 * knows to be its initial one is refused by the registry (422 initial);
 * then a good one activates it. */
static void test_activate_counter_card(void **state)
{
    (void)state;
    static const char *const args[] = {"--initial-pin", "135246", NULL};
    char *seed = write_seed(counter_seed);
    world *w = private_world(seed, args);
    expect_activatable(w, LI_NA, "ready", "P83051629");
    activate(w, LI_NA, "P83051629", "135246", "135246", "initial");
    assert_int_equal(card_status_code(w, "P83051629"), 0);
    activate(w, LI_NA, "P83051629", STRONG_PIN, STRONG_PIN, "ok");
    assert_int_equal(card_status_code(w, "P83051629"), 1);
    /* Once active, it waits no more. */
    expect_by_id(w, "find_activatable", LI_NA, "nothing");
    activate(w, LI_NA, "P83051629", "864120", "864120", "not_activatable");
    private_world_close(w);
    char dir[300];
    snprintf(dir, sizeof dir, "%s", seed);
    *strrchr(dir, '/') = '\0';
    th_rmdir(dir);
}

/* reissue_progress, later stages ---------------------------------------------------*/

/* A year after the card reached the outlet it is sealed: the stage says so
 * from the day after `collect_by`, and the card still waits for collection. */
static void test_progress_uncollected(void **state)
{
    (void)state;
    world *w = private_world(NULL, (const char *const[]){"--control", NULL});
    outcome o;
    assert_int_equal(th_http(w->sim.port, "POST", "/_sim/clock", "{\"today\": \"2027-11-18\"}", NULL, NULL), 200);
    call(w, "reissue_progress", json_pack("{s:s, s:s}", "id", ZHAO_LI, "lang", "zh"), "at_outlet", &o);
    assert_var(&o, "collect_by", "2027-11-18");
    outcome_clear(&o);
    assert_int_equal(th_http(w->sim.port, "POST", "/_sim/clock", "{\"advance_days\": 1}", NULL, NULL), 200);
    call(w, "reissue_progress", json_pack("{s:s, s:s}", "id", ZHAO_LI, "lang", "zh"), "uncollected", &o);
    assert_var(&o, "stage_date", "2027-11-19");
    assert_var(&o, "collect_by", "");
    assert_var(&o, "outlet_name", "玄武区社保服务中心");
    outcome_clear(&o);
    expect_activatable(w, ZHAO_LI, "not_collected", "K90273658");
    private_world_close(w);
}

/* card_status -----------------------------------------------------------------------*/

/* A temporary loss says until when; one that a reissue holds has no end. */
static void test_status_temporary_loss(void **state)
{
    (void)state;
    outcome o;
    call(&shared, "card_status", json_pack("{s:s, s:s}", "id", ZHANG_MIN, "lang", "zh"), "temporary_loss", &o);
    assert_var(&o, "loss_until", "2026-11-27"); /* placed 2 days before today, 7 days' validity */
    assert_var(&o, "bank_name", "中国农业银行");
    outcome_clear(&o);
    call(&shared, "card_status", json_pack("{s:s, s:s}", "id", LIU_YANG, "lang", "en"), "temporary_loss_held", &o);
    assert_null(json_object_get(o.vars, "loss_until"));
    assert_var(&o, "bank_name", "Bank of China");
    outcome_clear(&o);
}

/* English sessions hear the registry's English bank name; others, and an
 * English session when the registry has none, the registry's own. */
static void test_status_bank_names(void **state)
{
    (void)state;
    outcome o;
    call(&shared, "card_status", json_pack("{s:s, s:s}", "id", WANG_WEI, "lang", "en"), "normal", &o);
    assert_var(&o, "bank_name", "Industrial and Commercial Bank of China");
    outcome_clear(&o);
    call(&shared, "card_status", json_pack("{s:s, s:s}", "id", WANG_WEI, "lang", "zh"), "normal", &o);
    assert_var(&o, "bank_name", "中国工商银行");
    outcome_clear(&o);
    char *seed = write_seed(counter_seed); /* its bank has no English name */
    world *w = private_world(seed, NULL);
    call(w, "card_status", json_pack("{s:s, s:s}", "id", LI_NA, "lang", "en"), "normal", &o);
    assert_var(&o, "bank_name", "中国建设银行");
    outcome_clear(&o);
    private_world_close(w);
    char dir[300];
    snprintf(dir, sizeof dir, "%s", seed);
    *strrchr(dir, '/') = '\0';
    th_rmdir(dir);
}

/* registry_settings -----------------------------------------------------------------*/

static void test_settings(void **state)
{
    (void)state;
    outcome o;
    call(&shared, "registry_settings", json_object(), "ok", &o);
    assert_var(&o, "temp_loss_days", "7");
    assert_var(&o, "collection_days", "365");
    outcome_clear(&o);
    world *w = private_world(NULL, (const char *const[]){"--loss-days", "10", "--collect-days", "180", NULL});
    call(w, "registry_settings", json_object(), "ok", &o);
    assert_var(&o, "temp_loss_days", "10");
    assert_var(&o, "collection_days", "180");
    outcome_clear(&o);
    private_world_close(w);
    sim_fault(&shared, "{\"status\": 503}");
    call(&shared, "registry_settings", json_object(), "unavailable", &o);
    outcome_clear(&o);
    sim_fault(&shared, "{\"malformed\": true}");
    call(&shared, "registry_settings", json_object(), "unavailable", &o);
    outcome_clear(&o);
}

static void test_progress_no_application(void **state)
{
    (void)state;
    expect_by_id(&shared, "reissue_progress", LI_NA, "no_application");
    expect_by_id(&shared, "reissue_progress", NOBODY, "no_application");
}

static void test_progress_unavailable(void **state)
{
    (void)state;
    sim_fault(&shared, "{\"status\": 503}");
    expect_by_id(&shared, "reissue_progress", YANG_LEI, "unavailable");
    sim_fault(&shared, "{\"malformed\": true}");
    expect_by_id(&shared, "reissue_progress", YANG_LEI, "unavailable");
    sim_fault_clear(&shared);
    expect_progress(YANG_LEI, "reissue_after_loss", "collected", "2026-11-15", "H70461592", "武昌区社保服务中心",
                    "027-12333");
}

/* Fixtures -------------------------------------------------------------------------*/

static int group_setup(void **state)
{
    (void)state;
    return world_open(&shared, NULL, NULL) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    world_close(&shared);
    return 0;
}

/* A failed test must not leave its fault behind for the next. */
static int test_teardown(void **state)
{
    (void)state;
    th_http(shared.sim.port, "DELETE", "/_sim/fault", NULL, NULL, NULL);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_progress_every_stage, test_teardown),
        cmocka_unit_test_teardown(test_progress_outlet_details, test_teardown),
        cmocka_unit_test_teardown(test_progress_no_application, test_teardown),
        cmocka_unit_test_teardown(test_progress_unavailable, test_teardown),
        cmocka_unit_test_teardown(test_progress_uncollected, test_teardown),
        cmocka_unit_test_teardown(test_status_temporary_loss, test_teardown),
        cmocka_unit_test_teardown(test_status_bank_names, test_teardown),
        cmocka_unit_test_teardown(test_settings, test_teardown),
        cmocka_unit_test_teardown(test_history_replaced, test_teardown),
        cmocka_unit_test_teardown(test_history_single, test_teardown),
        cmocka_unit_test_teardown(test_history_no_card, test_teardown),
        cmocka_unit_test_teardown(test_history_unavailable, test_teardown),
        cmocka_unit_test_teardown(test_check_cancel, test_teardown),
        cmocka_unit_test_teardown(test_cancel_refusals, test_teardown),
        cmocka_unit_test_teardown(test_cancel_unavailable, test_teardown),
        cmocka_unit_test_teardown(test_cancel_ok_then_not_reported, test_teardown),
        cmocka_unit_test_teardown(test_find_activatable, test_teardown),
        cmocka_unit_test_teardown(test_find_activatable_unavailable, test_teardown),
        cmocka_unit_test_teardown(test_new_pin_weak, test_teardown),
        cmocka_unit_test_teardown(test_new_pin_ok_digest, test_teardown),
        cmocka_unit_test_teardown(test_new_pin_without_key, test_teardown),
        cmocka_unit_test_teardown(test_activate_mismatch, test_teardown),
        cmocka_unit_test_teardown(test_activate_weak, test_teardown),
        cmocka_unit_test_teardown(test_activate_not_activatable, test_teardown),
        cmocka_unit_test_teardown(test_activate_unavailable, test_teardown),
        cmocka_unit_test_teardown(test_activate_collected_card, test_teardown),
        cmocka_unit_test_teardown(test_activate_counter_card, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
