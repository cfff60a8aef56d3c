/* test_identity_codes — verify_identity (its enumeration limit in Redis,
 * the SMS sender rule, every result) and the contact handlers (one-time
 * codes by SMS, the contact update) against a real redis-server and the
 * registry simulator (demo seed), each call started the way the engine
 * starts it (handler_call_start). The "phone" is a send_now that keeps the
 * text it was given, so a test types back the code it received. Whether the
 * registry was asked is read from the simulator's /_sim/stats. After every
 * test, every key and value in Redis and every log line is searched for the
 * PINs and codes used. The loop runs until the awaited callback has come,
 * under a bounded deadline; nothing depends on timing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "domain.h"
#include "handler_call.h"
#include "handlers.h"
#include "harness.h"
#include "loop.h"
#include "modules.h"
#include "log.h"
#include "registry.h"
#include "store.h"

#define CODES_PER_NUMBER 4
#define WAIT_MS 15000
#define WANG_ID "110101199003074514"     /* PIN 246810, mobile +8613800000001 */
#define WANG_PIN "246810"
#define LI_ID "310104198506123025"       /* initial PIN 123456, mobile +8613800000002 */
#define LI_PIN "123456"
#define CHEN_ID "51010719880214226X"     /* PIN locked */
#define HUANG_ID "120101200101013536"    /* no card yet */
#define WRONG_PIN "111111"
#define MAX_SECRETS 64
#define SMS_MAX 512

typedef struct {
    tm_world m;               /* Redis, the simulator, their clients, the loop */
    tm_capture log;           /* the log lines of each test, debug up */
    handler_env env;          /* what the handlers use */
    unsigned char key[32];    /* digest key */
    int seq;                  /* call keys */
    bool route_up;            /* send_now succeeds */
    int sms_sent;             /* texts the phone received */
    char sms_to[32];          /* the last one's number */
    char sms_text[SMS_MAX];   /* and its text */
    char secrets[MAX_SECRETS][16]; /* PINs and codes that must stay out of Redis and logs, whole */
    int n_secrets;
} fixture;

static void remember_secret(fixture *f, const char *s)
{
    assert_true(f->n_secrets < MAX_SECRETS);
    snprintf(f->secrets[f->n_secrets++], sizeof f->secrets[0], "%s", s);
}

/* The dialplan side and the phone ------------------------------------------------*/

static bool test_render(void *ctx, const char *lang, const char *id, json_t *vars, char *out, size_t size)
{
    (void)ctx;
    if (strcmp(id, "sms_code") != 0)
        return false;
    snprintf(out, size, "[%s] Your code is %s. It is valid for %s minutes.", lang,
             json_string_value(json_object_get(vars, "code")),
             json_string_value(json_object_get(vars, "minutes")));
    return true;
}

static bool test_send_now(void *ctx, const char *to, const char *text)
{
    fixture *f = ctx;
    if (!f->route_up)
        return false;
    f->sms_sent++;
    snprintf(f->sms_to, sizeof f->sms_to, "%s", to);
    snprintf(f->sms_text, sizeof f->sms_text, "%s", text);
    return true;
}

/* The code in the last text received. */
static const char *received_code(fixture *f)
{
    static char code[8];
    const char *p = strstr(f->sms_text, "code is ");
    assert_non_null(p);
    assert_int_equal(sscanf(p, "code is %6[0-9].", code), 1);
    assert_int_equal(strlen(code), 6);
    remember_secret(f, code);
    return code;
}

/* A six-digit code other than `code`. */
static const char *other_code(const char *code)
{
    static char other[8];
    snprintf(other, sizeof other, "%06ld", (strtol(code, NULL, 10) + 1) % 1000000);
    return other;
}

/* Setup -------------------------------------------------------------------------*/

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    tm_capture_begin(&f->log, LOG_DEBUG);
    tm_start(&f->m, "identity", TM_REGISTRY);
    for (size_t i = 0; i < sizeof f->key; i++)
        f->key[i] = (unsigned char)(i * 7 + 1);
    f->route_up = true;
    f->env = (handler_env){
        .base = f->m.base, .registry = f->m.registry, .store = f->m.store,
        .render = test_render, .send_now = test_send_now, .ctx = f,
        .digest_key = f->key, .digest_key_len = sizeof f->key,
        .limits = {.identify_window_s = 600, .identify_max_per_caller = 3, .identify_max_per_id = 3,
                   .code_ttl_s = 300, .code_tries = 3, .code_sends = 2, .loss_confirm_wait_ms = 1000,
                   .number_window_s = 600, .codes_per_number = CODES_PER_NUMBER},
    };
    *state = f;
    return 0;
}

static void assert_no_secret_in(fixture *f, const char *s, size_t len)
{
    for (int i = 0; i < f->n_secrets; i++)
        assert_null(memmem(s, len, f->secrets[i], strlen(f->secrets[i])));
}

/* No PIN, no code in Redis or in the log. */
static void assert_no_secrets(fixture *f)
{
    assert_true(f->n_secrets > 0);
    if (f->m.redis.pid) {
        char *all = th_redis_dump(&f->m.redis);
        assert_non_null(all);   /* a key this search cannot read would hide its contents */
        assert_no_secret_in(f, all, strlen(all));
        free(all);
    }
    fflush(f->log.stream);
    assert_no_secret_in(f, f->log.text, f->log.len);
}

static int teardown(void **state)
{
    fixture *f = *state;
    tm_stop(&f->m);
    tm_capture_end(&f->log);
    free(f->log.text);
    free(f);
    return 0;
}

/* Calls -------------------------------------------------------------------------*/

typedef struct {
    int calls;            /* done callbacks */
    char result[32];      /* the result */
    json_t *vars;         /* its variables (kept) */
} outcome;

static void on_done(const char *result, json_t *vars, void *arg)
{
    outcome *o = arg;
    o->calls++;
    snprintf(o->result, sizeof o->result, "%s", result);
    json_decref(o->vars);
    o->vars = json_incref(vars);
}

typedef struct {
    const outcome *o;     /* first of n outcomes */
    int n;                /* how many */
} outcome_set;

static bool all_done(const void *arg)
{
    const outcome_set *set = arg;
    for (int i = 0; i < set->n; i++)
        if (set->o[i].calls == 0)
            return false;
    return true;
}

/* Runs `handler` with `args` (stolen) and waits for its single result. */
static outcome call_as(fixture *f, const char *handler, channel_kind ch, const char *caller,
                       const char *session, json_t *args)
{
    char key[32];
    snprintf(key, sizeof key, "ck%d", ++f->seq);
    handler_call_spec spec = {.def = handlers_find(handler), .env = &f->env, .channel = ch,
                              .caller = caller, .session_id = session, .call_key = key, .args = args};
    assert_non_null(spec.def);
    outcome o = {0};
    handler_call_start(&spec, on_done, &o);
    outcome_set one = {&o, 1};
    tl_run_until(f->m.base, all_done, &one, WAIT_MS);
    assert_int_equal(o.calls, 1);
    assert_true(handler_has_result(spec.def, o.result) || !strcmp(o.result, "unavailable"));
    return o;
}

static void outcome_free(outcome *o)
{
    json_decref(o->vars);
    o->vars = NULL;
}

static const char *var(const outcome *o, const char *name)
{
    return json_string_value(json_object_get(o->vars, name));
}

/* verify_identity from `caller` on `ch`; checks that the PIN argument's
 * bytes were wiped by the time the call ended, whatever its result. */
static outcome verify(fixture *f, channel_kind ch, const char *caller, const char *id, const char *pin)
{
    remember_secret(f, pin);
    json_t *args = json_pack("{s:s, s:s}", "id", id, "pin", pin);
    json_t *pin_value = json_incref(json_object_get(args, "pin"));
    outcome o = call_as(f, "verify_identity", ch, caller, "voice:call-1", args);
    const char *bytes = json_string_value(pin_value);
    for (size_t i = 0; i < strlen(pin); i++)
        assert_int_equal(bytes[i], 0);
    json_decref(pin_value);
    return o;
}

static void expect_verify(fixture *f, channel_kind ch, const char *caller, const char *id, const char *pin,
                          const char *result)
{
    outcome o = verify(f, ch, caller, id, pin);
    assert_string_equal(o.result, result);
    outcome_free(&o);
}

static outcome send_code(fixture *f, const char *session, const char *mobile)
{
    return call_as(f, "send_code", CHANNEL_USSD, "13800000001", session,
                   json_pack("{s:s, s:s}", "mobile", mobile, "lang", "en"));
}

static void expect_send(fixture *f, const char *session, const char *mobile, const char *result)
{
    outcome o = send_code(f, session, mobile);
    assert_string_equal(o.result, result);
    outcome_free(&o);
}

/* check_code; the code argument is wiped by the time the call ends. */
static outcome check_code(fixture *f, const char *session, const char *code)
{
    json_t *args = json_pack("{s:s}", "code", code);
    json_t *code_value = json_incref(json_object_get(args, "code"));
    outcome o = call_as(f, "check_code", CHANNEL_USSD, "13800000001", session, args);
    const char *bytes = json_string_value(code_value);
    for (size_t i = 0; i < strlen(code); i++)
        assert_int_equal(bytes[i], 0);
    json_decref(code_value);
    return o;
}

/* Servers -----------------------------------------------------------------------*/

static char *redis(fixture *f, const char *cmd, const char *key)
{
    const char *argv[] = {cmd, key};
    char *out = th_redis_cmd(&f->m.redis, 2, argv);
    assert_non_null(out);
    return out;
}

static long redis_long(fixture *f, const char *cmd, const char *key)
{
    char *s = redis(f, cmd, key);
    long n = s[0] ? strtol(s, NULL, 10) : 0;
    free(s);
    return n;
}

/* A number from the simulator's /_sim/stats: "requests" or "applied.X". */
static long sim_stat(fixture *f, const char *name)
{
    return (long)th_sim_stat(&f->m.sim, name);
}

static void sim_fault(fixture *f, const char *fault)
{
    char *body = NULL;
    assert_int_equal(th_http(f->m.sim.port, "PUT", "/_sim/fault", fault, NULL, &body), 200);
    free(body);
}

/* A well-formed citizen ID nobody in the seed has. */
static const char *unknown_id(void)
{
    static char id[DOMAIN_ID_LEN + 1];
    snprintf(id, sizeof id, "11010119900307123%c", domain_id_check_char("11010119900307123"));
    assert_true(domain_id_valid(id));
    return id;
}

/* verify_identity -----------------------------------------------------------------*/

static void test_verify_every_result(void **state)
{
    fixture *f = *state;
    f->env.limits.identify_max_per_caller = 10;
    f->env.limits.identify_max_per_id = 10;

    outcome o = verify(f, CHANNEL_VOICE, "13800000001", WANG_ID, WANG_PIN);
    assert_string_equal(o.result, "ok");
    assert_string_equal(var(&o, "verified_id"), WANG_ID);
    assert_string_equal(var(&o, "card"), "A52870316");
    assert_string_equal(var(&o, "pin_initial"), "no");
    assert_string_equal(var(&o, "mobile"), "+8613800000001");
    outcome_free(&o);

    o = verify(f, CHANNEL_USSD, "13800000002", LI_ID, LI_PIN);
    assert_string_equal(o.result, "ok");
    assert_string_equal(var(&o, "pin_initial"), "yes");
    assert_string_equal(var(&o, "mobile"), "+8613800000002");
    outcome_free(&o);

    o = verify(f, CHANNEL_VOICE, "13800000001", WANG_ID, WRONG_PIN);
    assert_string_equal(o.result, "wrong_pin");
    /* The registry's 5 less the one the gateway never spends. */
    assert_string_equal(var(&o, "attempts_left"), "4");
    outcome_free(&o);

    expect_verify(f, CHANNEL_VOICE, "13800000005", CHEN_ID, "314159", "locked");
    expect_verify(f, CHANNEL_VOICE, "13800000007", unknown_id(), WANG_PIN, "not_found");
    expect_verify(f, CHANNEL_VOICE, "13800000008", HUANG_ID, WANG_PIN, "not_found"); /* no card */

    /* Failures are counted per caller (in E.164) and per ID, living the window. */
    assert_int_equal(redis_long(f, "GET", "cl:rl:c:+8613800000001"), 1);
    assert_int_equal(redis_long(f, "GET", "cl:rl:i:" WANG_ID), 1);
    assert_int_equal(redis_long(f, "GET", "cl:rl:c:+8613800000005"), 1);
    assert_int_equal(redis_long(f, "GET", "cl:rl:i:" CHEN_ID), 1);
    assert_int_equal(redis_long(f, "GET", "cl:rl:i:" HUANG_ID), 1);
    long ttl = redis_long(f, "TTL", "cl:rl:c:+8613800000001");
    assert_true(ttl > 0 && ttl <= 600);
    /* Successes are not counted and reset nothing. */
    assert_int_equal(redis_long(f, "EXISTS", "cl:rl:i:" LI_ID), 0);
    expect_verify(f, CHANNEL_VOICE, "+8613800000001", WANG_ID, WANG_PIN, "ok");
    assert_int_equal(redis_long(f, "GET", "cl:rl:c:+8613800000001"), 1);
    assert_int_equal(redis_long(f, "GET", "cl:rl:i:" WANG_ID), 1);
    assert_no_secrets(f);
}

static void test_rate_limited_by_caller(void **state)
{
    fixture *f = *state;
    f->env.limits.identify_max_per_id = 100;
    const char *caller = "13900000009";
    expect_verify(f, CHANNEL_VOICE, caller, unknown_id(), WANG_PIN, "not_found");
    expect_verify(f, CHANNEL_VOICE, caller, WANG_ID, WRONG_PIN, "wrong_pin");
    expect_verify(f, CHANNEL_VOICE, caller, HUANG_ID, WANG_PIN, "not_found");
    assert_int_equal(redis_long(f, "GET", "cl:rl:c:+8613900000009"), 3);

    /* At the limit even the right PIN is refused, and the registry is not asked. */
    long requests = sim_stat(f, "requests");
    expect_verify(f, CHANNEL_VOICE, caller, WANG_ID, WANG_PIN, "rate_limited");
    expect_verify(f, CHANNEL_SMS, "+86 139-0000-0009", LI_ID, LI_PIN, "rate_limited");
    assert_int_equal(sim_stat(f, "requests"), requests);
    /* A refused attempt stays taken (it was taken before it was judged);
     * the IDs it named were not charged. */
    assert_int_equal(redis_long(f, "GET", "cl:rl:c:+8613900000009"), 5);
    assert_int_equal(redis_long(f, "EXISTS", "cl:rl:i:" LI_ID), 0);

    /* Another number is not limited. */
    expect_verify(f, CHANNEL_VOICE, "13900000010", WANG_ID, WANG_PIN, "ok");
    assert_no_secrets(f);
}

static void test_rate_limited_by_id(void **state)
{
    fixture *f = *state;
    f->env.limits.identify_max_per_caller = 100;
    expect_verify(f, CHANNEL_VOICE, "13900000001", WANG_ID, WRONG_PIN, "wrong_pin");
    expect_verify(f, CHANNEL_USSD, "13900000002", WANG_ID, "222222", "wrong_pin");
    /* The wrong PIN that uses the last try ends the identification. */
    expect_verify(f, CHANNEL_VOICE, "sip-user-3", WANG_ID, "333333", "rate_limited");
    assert_int_equal(redis_long(f, "GET", "cl:rl:i:" WANG_ID), 3);
    assert_int_equal(redis_long(f, "GET", "cl:rl:c:sip-user-3"), 1);

    long requests = sim_stat(f, "requests");
    long checks = sim_stat(f, "applied.pin_verifications");
    expect_verify(f, CHANNEL_VOICE, "13900000004", WANG_ID, WANG_PIN, "rate_limited");
    assert_int_equal(sim_stat(f, "requests"), requests);
    assert_int_equal(sim_stat(f, "applied.pin_verifications"), checks);
    assert_int_equal(redis_long(f, "GET", "cl:rl:i:" WANG_ID), 4);

    /* The same caller may identify as someone else. */
    expect_verify(f, CHANNEL_VOICE, "13900000004", LI_ID, LI_PIN, "ok");
    assert_no_secrets(f);
}

static void test_wrong_sender_on_sms(void **state)
{
    fixture *f = *state;
    long checks = sim_stat(f, "applied.pin_verifications");
    /* Li Na's phone texting Wang Wei's ID and PIN: refused before the PIN. */
    expect_verify(f, CHANNEL_SMS, "+8613800000002", WANG_ID, WANG_PIN, "wrong_sender");
    assert_int_equal(sim_stat(f, "applied.pin_verifications"), checks);
    assert_int_equal(redis_long(f, "GET", "cl:rl:c:+8613800000002"), 1);
    assert_int_equal(redis_long(f, "GET", "cl:rl:i:" WANG_ID), 1);

    /* His own phone, however the number is written. */
    expect_verify(f, CHANNEL_SMS, "8613800000001", WANG_ID, WANG_PIN, "ok");
    expect_verify(f, CHANNEL_SMS, "13800000001", WANG_ID, WANG_PIN, "ok");
    assert_int_equal(sim_stat(f, "applied.pin_verifications"), checks + 2);
    /* Voice and USSD do not compare: a call may come from any phone. */
    expect_verify(f, CHANNEL_VOICE, "+8613800000002", WANG_ID, WANG_PIN, "ok");
    assert_no_secrets(f);
}

static void test_verify_unavailable(void **state)
{
    fixture *f = *state;
    /* A registry outage is not a failed identification. */
    sim_fault(f, "{\"status\": 503, \"count\": 1}");
    expect_verify(f, CHANNEL_VOICE, "13800000001", WANG_ID, WANG_PIN, "unavailable");
    assert_int_equal(redis_long(f, "EXISTS", "cl:rl:c:+8613800000001"), 0);
    assert_int_equal(redis_long(f, "EXISTS", "cl:rl:i:" WANG_ID), 0);
    assert_int_equal(redis_long(f, "EXISTS", "cl:rl:h:" WANG_ID), 0);

    /* A PIN whose answer never came may have been counted by the registry:
     * its attempt stays taken and stays in flight until its hold ends. */
    sim_fault(f, "{\"status\": 503, \"count\": 1, \"path_prefix\": \"/v1/persons/" WANG_ID "/pin-verifications\"}");
    expect_verify(f, CHANNEL_VOICE, "13800000001", WANG_ID, WANG_PIN, "unavailable");
    assert_int_equal(redis_long(f, "GET", "cl:rl:i:" WANG_ID), 1);
    assert_int_equal(redis_long(f, "ZCARD", "cl:rl:h:" WANG_ID), 1);
    long hold = redis_long(f, "PTTL", "cl:rl:h:" WANG_ID);
    assert_true(hold > 0 && hold <= 600 * 1000);

    /* Limits not configured: refused rather than unlimited. */
    handler_limits kept = f->env.limits;
    f->env.limits.identify_max_per_caller = 0;
    long requests = sim_stat(f, "requests");
    expect_verify(f, CHANNEL_VOICE, "13800000001", WANG_ID, WANG_PIN, "unavailable");
    f->env.limits = kept;

    /* Without Redis the limit cannot be read: nobody is identified. */
    th_stop(&f->m.redis, 2000);
    expect_verify(f, CHANNEL_VOICE, "13800000001", WANG_ID, WANG_PIN, "unavailable");
    expect_verify(f, CHANNEL_VOICE, "13800000001", WANG_ID, WANG_PIN, "unavailable");
    assert_int_equal(sim_stat(f, "requests"), requests);
    fflush(f->log.stream);
    assert_non_null(memmem(f->log.text, f->log.len, "identify.limit_unavailable", 26));
    assert_no_secrets(f);
}

/* The lock-proof limit ---------------------------------------------------------------*/

#define RACE_MAX 40
#define WANG_CARD "A52870316"

typedef struct {
    int wrong_pin;      /* guesses answered "wrong, try again" */
    int stopped;        /* guesses that ended in a limit, sent or not */
    int other;          /* anything else (locked would be one) */
} tally;

/* `n` identifications of `id`, each from its own number with its own wrong
 * PIN, all started before the loop runs once: they race for the limit. */
static tally race(fixture *f, const char *id, int n)
{
    assert_true(n <= RACE_MAX);
    outcome o[RACE_MAX] = {0};
    for (int i = 0; i < n; i++) {
        char caller[24], pin[16], key[32];
        snprintf(caller, sizeof caller, "1390001%04d", i);
        snprintf(pin, sizeof pin, "%06d", 100000 + i);
        remember_secret(f, pin);
        snprintf(key, sizeof key, "race%d", ++f->seq);
        handler_call_spec spec = {.def = handlers_find("verify_identity"), .env = &f->env,
                                  .channel = CHANNEL_USSD, .caller = caller, .session_id = key,
                                  .call_key = key, .args = json_pack("{s:s, s:s}", "id", id, "pin", pin)};
        handler_call_start(&spec, on_done, &o[i]);
    }
    outcome_set all = {o, n};
    tl_run_until(f->m.base, all_done, &all, WAIT_MS);
    int done = 0;
    for (int i = 0; i < n; i++)
        done += o[i].calls;
    assert_int_equal(done, n);
    tally t = {0};
    for (int i = 0; i < n; i++) {
        assert_int_equal(o[i].calls, 1);
        if (!strcmp(o[i].result, "wrong_pin"))
            t.wrong_pin++;
        else if (!strcmp(o[i].result, "rate_limited") || !strcmp(o[i].result, "last_attempt"))
            t.stopped++;
        else
            t.other++;
        outcome_free(&o[i]);
    }
    return t;
}

/* The card's status as the registry keeps it (3 is locked). */
static long card_status(fixture *f, const char *card)
{
    char path[64], *body = NULL;
    snprintf(path, sizeof path, "/v1/cards/%s", card);
    assert_int_equal(th_http_get(f->m.sim.port, path, &body), 200);
    json_t *c = json_loads(body, 0, NULL);
    free(body);
    assert_non_null(c);
    long status = (long)json_integer_value(json_object_get(c, "status"));
    json_decref(c);
    return status;
}

/* A wrong PIN sent straight to the registry, as another of its clients
 * (a counter, a web portal) would: the gateway's counters never see it. */
static void wrong_pin_elsewhere(fixture *f, const char *id, int n)
{
    char path[96], key[48];
    snprintf(path, sizeof path, "/v1/persons/%s/pin-verifications", id);
    snprintf(key, sizeof key, "Idempotency-Key: elsewhere-%d", n);
    const char *headers[] = {key, "Content-Type: application/json", NULL};
    char *body = NULL;
    assert_int_equal(th_http(f->m.sim.port, "POST", path, "{\"pin\": \"999999\"}", headers, &body), 200);
    free(body);
}

/* Polls Redis (bounded) until `key` has expired. */
static void wait_expired(fixture *f, const char *key)
{
    long deadline = th_now_ms() + WAIT_MS;
    while (redis_long(f, "EXISTS", key) != 0 && th_now_ms() < deadline)
        th_poll_pause();
    assert_int_equal(redis_long(f, "EXISTS", key), 0);
}

static bool logged(fixture *f, const char *text)
{
    fflush(f->log.stream);
    return memmem(f->log.text, f->log.len, text, strlen(text)) != NULL;
}

/* 40 guesses at once for one ID: the attempts are taken before the
 * registry is asked, so only the limit's worth reach it, and the card the
 * stranger aimed at stays usable. */
static void test_race_stops_at_the_limit(void **state)
{
    fixture *f = *state;
    f->env.limits.identify_max_per_caller = 100;
    f->env.limits.identify_max_per_id = 5;
    long checks = sim_stat(f, "applied.pin_verifications");
    tally t = race(f, WANG_ID, RACE_MAX);
    assert_int_equal(t.other, 0);
    assert_true(t.wrong_pin <= 5);
    assert_int_equal(t.wrong_pin + t.stopped, RACE_MAX);
    assert_true(sim_stat(f, "applied.pin_verifications") - checks <= 5);
    assert_int_equal(card_status(f, WANG_CARD), 1);
    assert_int_equal(redis_long(f, "EXISTS", "cl:rl:h:" WANG_ID), 0); /* nothing left in flight */
    assert_no_secrets(f);
}

/* The same race with a window too generous to stop it (as after a lapse):
 * the registry's count, with every attempt in flight counted against it,
 * still keeps the sixth guess from being sent. */
static void test_race_stops_at_the_registry_count(void **state)
{
    fixture *f = *state;
    f->env.limits.identify_max_per_caller = 100;
    f->env.limits.identify_max_per_id = 100;
    long checks = sim_stat(f, "applied.pin_verifications");
    tally t = race(f, WANG_ID, RACE_MAX);
    assert_int_equal(t.other, 0);
    assert_true(t.wrong_pin <= 5);
    assert_true(sim_stat(f, "applied.pin_verifications") - checks <= 5);
    assert_int_equal(card_status(f, WANG_CARD), 1);
    /* A second wave finds the count as the first one left it. */
    t = race(f, WANG_ID, 20);
    assert_int_equal(t.other, 0);
    assert_true(sim_stat(f, "applied.pin_verifications") - checks <= 5);
    assert_int_equal(card_status(f, WANG_CARD), 1);
    assert_true(logged(f, "by=registry"));
    assert_no_secrets(f);
}

/* Five wrong guesses, the gateway's window lapses, one more: the registry
 * still counts the five, says one attempt is left, and the gateway stops. */
static void test_lapsed_window_keeps_the_card(void **state)
{
    fixture *f = *state;
    f->env.limits.identify_window_s = 1;
    f->env.limits.identify_max_per_caller = 100;
    f->env.limits.identify_max_per_id = 5;
    const char *wrong[] = {"111111", "222222", "333333", "444444", "555555"};
    for (int i = 0; i < 4; i++)
        expect_verify(f, CHANNEL_USSD, "13900000001", WANG_ID, wrong[i], "wrong_pin");
    expect_verify(f, CHANNEL_USSD, "13900000001", WANG_ID, wrong[4], "last_attempt");
    expect_verify(f, CHANNEL_USSD, "13900000001", WANG_ID, "666666", "rate_limited");
    wait_expired(f, "cl:rl:i:" WANG_ID);
    wait_expired(f, "cl:rl:c:+8613900000001");

    long checks = sim_stat(f, "applied.pin_verifications");
    expect_verify(f, CHANNEL_USSD, "13900000001", WANG_ID, "777777", "last_attempt");
    assert_int_equal(sim_stat(f, "applied.pin_verifications"), checks);
    assert_int_equal(card_status(f, WANG_CARD), 1);
    /* With one attempt left only a counter can reset the count: the gateway
     * does not risk even the right PIN. */
    expect_verify(f, CHANNEL_USSD, "13900000001", WANG_ID, WANG_PIN, "last_attempt");
    assert_int_equal(sim_stat(f, "applied.pin_verifications"), checks);
    assert_true(logged(f, "by=registry"));
    assert_no_secrets(f);
}

/* Attempts used elsewhere count too: the registry's count, read before
 * each PIN, is followed below the gateway's own limit. */
static void test_registry_count_is_followed(void **state)
{
    fixture *f = *state;
    f->env.limits.identify_max_per_caller = 100;
    f->env.limits.identify_max_per_id = 5;
    for (int i = 0; i < 4; i++)
        wrong_pin_elsewhere(f, WANG_ID, i);

    /* Two left: this wrong one leaves the one the gateway never spends. */
    expect_verify(f, CHANNEL_VOICE, "13900000001", WANG_ID, WRONG_PIN, "last_attempt");
    long checks = sim_stat(f, "applied.pin_verifications");
    expect_verify(f, CHANNEL_VOICE, "13900000001", WANG_ID, "222222", "last_attempt");
    assert_int_equal(sim_stat(f, "applied.pin_verifications"), checks);
    assert_int_equal(card_status(f, WANG_CARD), 1);
    assert_int_equal(redis_long(f, "GET", "cl:rl:i:" WANG_ID), 2);

    /* A locked card is told as locked, without a PIN sent. */
    expect_verify(f, CHANNEL_VOICE, "13900000005", CHEN_ID, "314159", "locked");
    assert_int_equal(sim_stat(f, "applied.pin_verifications"), checks);
    assert_no_secrets(f);
}

/* A registry without the count (--no-pin-count): the gateway's own take
 * stops the race, and a wrong PIN tells the tries its own limit leaves. */
static void test_registry_without_count(void **state)
{
    fixture *f = *state;
    th_stop(&f->m.sim, 2000);
    assert_true(th_sim_start(&f->m.sim, f->m.dir, NULL, (const char *const[]){"--no-pin-count", NULL}));
    f->env.limits.identify_max_per_caller = 100;
    f->env.limits.identify_max_per_id = 5;

    outcome o = verify(f, CHANNEL_VOICE, "13900000001", WANG_ID, WRONG_PIN);
    assert_string_equal(o.result, "wrong_pin");
    assert_string_equal(var(&o, "attempts_left"), "4");
    outcome_free(&o);
    expect_verify(f, CHANNEL_VOICE, "13900000001", LI_ID, LI_PIN, "ok");

    long checks = sim_stat(f, "applied.pin_verifications");
    tally t = race(f, WANG_ID, RACE_MAX);
    assert_int_equal(t.other, 0);
    assert_true(t.wrong_pin <= 4);
    assert_true(sim_stat(f, "applied.pin_verifications") - checks <= 4);
    assert_int_equal(card_status(f, WANG_CARD), 1);
    assert_no_secrets(f);
}

/* Without a PIN ----------------------------------------------------------------------*/

static outcome without_pin(fixture *f, const char *handler, channel_kind ch, const char *caller,
                           const char *id)
{
    return call_as(f, handler, ch, caller, "sms:x", json_pack("{s:s}", "id", id));
}

/* identify_sender: the ID and the SMS sender as the person's registered
 * mobile; no PIN is ever sent, and only failures stay counted. */
static void test_identify_sender_every_result(void **state)
{
    fixture *f = *state;
    f->env.limits.identify_max_per_caller = 10;
    f->env.limits.identify_max_per_id = 10;
    remember_secret(f, WANG_PIN);
    long checks = sim_stat(f, "applied.pin_verifications");

    outcome o = without_pin(f, "identify_sender", CHANNEL_SMS, "+8613800000001", WANG_ID);
    assert_string_equal(o.result, "ok");
    assert_string_equal(var(&o, "verified_id"), WANG_ID);
    assert_string_equal(var(&o, "card"), "A52870316");
    assert_string_equal(var(&o, "mobile"), "+8613800000001");
    outcome_free(&o);

    /* An applicant: known, no card yet. */
    o = without_pin(f, "identify_sender", CHANNEL_SMS, "13800000008", HUANG_ID);
    assert_string_equal(o.result, "no_card");
    assert_string_equal(var(&o, "verified_id"), HUANG_ID);
    assert_string_equal(var(&o, "mobile"), "+8613800000008");
    assert_null(var(&o, "card"));
    outcome_free(&o);

    o = without_pin(f, "identify_sender", CHANNEL_SMS, "+8613800000002", WANG_ID);
    assert_string_equal(o.result, "wrong_sender");
    assert_null(o.vars ? json_object_get(o.vars, "verified_id") : NULL);
    outcome_free(&o);
    o = without_pin(f, "identify_sender", CHANNEL_SMS, "+8613800000003", unknown_id());
    assert_string_equal(o.result, "not_found");
    outcome_free(&o);

    /* Off SMS the caller's number proves nothing: refused unasked. */
    long requests = sim_stat(f, "requests");
    o = without_pin(f, "identify_sender", CHANNEL_VOICE, "+8613800000001", WANG_ID);
    assert_string_equal(o.result, "unavailable");
    outcome_free(&o);
    assert_int_equal(sim_stat(f, "requests"), requests);

    assert_int_equal(sim_stat(f, "applied.pin_verifications"), checks);
    /* Failures stay counted, the owner's own texts do not. */
    assert_int_equal(redis_long(f, "GET", "cl:rl:c:+8613800000002"), 1);
    assert_int_equal(redis_long(f, "GET", "cl:rl:i:" WANG_ID), 1);
    assert_int_equal(redis_long(f, "GET", "cl:rl:c:+8613800000003"), 1);
    assert_int_equal(redis_long(f, "EXISTS", "cl:rl:c:+8613800000001"), 0);
    assert_int_equal(redis_long(f, "EXISTS", "cl:rl:c:+8613800000008"), 0);
    assert_int_equal(redis_long(f, "EXISTS", "cl:rl:i:" HUANG_ID), 0);
    assert_no_secrets(f);
}

/* find_person: is there a card (ask the PIN) or not (an applicant)? A hit
 * keeps the caller's unit and gives back the ID's, so a number can only
 * ask so often; past the limit the registry is not asked. */
static void test_find_person(void **state)
{
    fixture *f = *state;
    f->env.limits.identify_max_per_id = 10;
    const char *caller = "13900000001";
    outcome o = without_pin(f, "find_person", CHANNEL_VOICE, caller, WANG_ID);
    assert_string_equal(o.result, "card");
    assert_int_equal(json_object_size(o.vars), 0);
    outcome_free(&o);
    o = without_pin(f, "find_person", CHANNEL_USSD, caller, HUANG_ID);
    assert_string_equal(o.result, "no_card");
    assert_int_equal(json_object_size(o.vars), 0);
    outcome_free(&o);
    o = without_pin(f, "find_person", CHANNEL_VOICE, caller, unknown_id());
    assert_string_equal(o.result, "not_found");
    outcome_free(&o);

    assert_int_equal(redis_long(f, "GET", "cl:rl:c:+8613900000001"), 3);
    assert_int_equal(redis_long(f, "EXISTS", "cl:rl:i:" WANG_ID), 0);
    assert_int_equal(redis_long(f, "EXISTS", "cl:rl:i:" HUANG_ID), 0);
    char unknown_key[64];
    snprintf(unknown_key, sizeof unknown_key, "cl:rl:i:%s", unknown_id());
    assert_int_equal(redis_long(f, "GET", unknown_key), 1);

    long requests = sim_stat(f, "requests");
    o = without_pin(f, "find_person", CHANNEL_VOICE, caller, HUANG_ID);
    assert_string_equal(o.result, "rate_limited");
    outcome_free(&o);
    assert_int_equal(sim_stat(f, "requests"), requests);
}

/* One-time codes -------------------------------------------------------------------*/

static outcome send_code_to_id(fixture *f, const char *session, const char *id)
{
    return call_as(f, "send_code", CHANNEL_USSD, "13900000077", session,
                   json_pack("{s:s, s:s}", "id", id, "lang", "zh"));
}

/* verify_code; the code argument is wiped by the time the call ends. */
static outcome verify_code(fixture *f, const char *session, const char *code)
{
    json_t *args = json_pack("{s:s}", "code", code);
    json_t *code_value = json_incref(json_object_get(args, "code"));
    outcome o = call_as(f, "verify_code", CHANNEL_USSD, "13900000077", session, args);
    const char *bytes = json_string_value(code_value);
    for (size_t i = 0; i < strlen(code); i++)
        assert_int_equal(bytes[i], 0);
    json_decref(code_value);
    return o;
}

/* A code to the mobile the registry has for an ID (whoever calls) proves
 * the ID: verify_code sets verified_id and mobile. */
static void test_code_to_registered_mobile(void **state)
{
    fixture *f = *state;
    outcome o = send_code_to_id(f, "ussd:r1", HUANG_ID);
    assert_string_equal(o.result, "sent");
    outcome_free(&o);
    assert_string_equal(f->sms_to, "+8613800000008");
    assert_non_null(strstr(f->sms_text, "[zh] "));
    const char *code = received_code(f);
    char *id = th_redis_cmd(&f->m.redis, 3, (const char *[]){"HGET", "cl:otp:ussd:r1", "id"});
    assert_string_equal(id, HUANG_ID);
    free(id);

    o = verify_code(f, "ussd:r1", other_code(code));
    assert_string_equal(o.result, "wrong");
    assert_string_equal(var(&o, "tries_left"), "2");
    outcome_free(&o);
    o = verify_code(f, "ussd:r1", code);
    assert_string_equal(o.result, "ok");
    assert_string_equal(var(&o, "verified_id"), HUANG_ID);
    assert_string_equal(var(&o, "mobile"), "+8613800000008");
    outcome_free(&o);
    assert_int_equal(redis_long(f, "EXISTS", "cl:otp:ussd:r1"), 0);

    /* An ID the registry does not know gets no code. */
    int sent = f->sms_sent;
    o = send_code_to_id(f, "ussd:r2", unknown_id());
    assert_string_equal(o.result, "unavailable");
    outcome_free(&o);
    assert_int_equal(f->sms_sent, sent);
    assert_no_secrets(f);
}

/* A code sent to a number the caller typed never identifies anyone, and a
 * code for an ID never confirms a new number; the call says where to send. */
static void test_codes_do_not_cross(void **state)
{
    fixture *f = *state;
    expect_send(f, "ussd:x1", "13900000005", "sent");
    const char *typed = received_code(f);
    outcome o = verify_code(f, "ussd:x1", typed);
    assert_string_equal(o.result, "wrong");
    outcome_free(&o);

    o = send_code_to_id(f, "ussd:x2", WANG_ID);
    assert_string_equal(o.result, "sent");
    outcome_free(&o);
    const char *registered = received_code(f);
    o = check_code(f, "ussd:x2", registered);
    assert_string_equal(o.result, "wrong");
    outcome_free(&o);

    int sent = f->sms_sent;
    o = call_as(f, "send_code", CHANNEL_USSD, "13900000077", "ussd:x3",
                json_pack("{s:s, s:s, s:s}", "id", WANG_ID, "mobile", "13900000005", "lang", "zh"));
    assert_string_equal(o.result, "unavailable");
    outcome_free(&o);
    o = call_as(f, "send_code", CHANNEL_USSD, "13900000077", "ussd:x3", json_pack("{s:s}", "lang", "zh"));
    assert_string_equal(o.result, "unavailable");
    outcome_free(&o);
    assert_int_equal(f->sms_sent, sent);
    assert_no_secrets(f);
}

static void test_code_wrong_then_ok(void **state)
{
    fixture *f = *state;
    expect_send(f, "ussd:s1", "13900000002", "sent");
    assert_int_equal(f->sms_sent, 1);
    assert_string_equal(f->sms_to, "+8613900000002");
    assert_non_null(strstr(f->sms_text, "[en] "));
    assert_non_null(strstr(f->sms_text, "valid for 5 minutes"));
    const char *code = received_code(f);

    /* Redis holds the digest, the number and the tries, with the code's life. */
    char *number = th_redis_cmd(&f->m.redis, 3, (const char *[]){"HGET", "cl:otp:ussd:s1", "mobile"});
    assert_string_equal(number, "+8613900000002");
    free(number);
    char *digest = th_redis_cmd(&f->m.redis, 3, (const char *[]){"HGET", "cl:otp:ussd:s1", "digest"});
    assert_int_equal(strlen(digest), 32);
    free(digest);
    long ttl = redis_long(f, "TTL", "cl:otp:ussd:s1");
    assert_true(ttl > 0 && ttl <= 300);
    assert_int_equal(redis_long(f, "GET", "cl:otp:n:ussd:s1"), 1);

    outcome o = check_code(f, "ussd:s1", other_code(code));
    assert_string_equal(o.result, "wrong");
    assert_string_equal(var(&o, "tries_left"), "2");
    outcome_free(&o);

    /* Another session's code is not this one. */
    o = check_code(f, "ussd:s2", code);
    assert_string_equal(o.result, "expired");
    outcome_free(&o);

    o = check_code(f, "ussd:s1", code);
    assert_string_equal(o.result, "ok");
    assert_string_equal(var(&o, "new_mobile"), "+8613900000002");
    outcome_free(&o);
    assert_int_equal(redis_long(f, "EXISTS", "cl:otp:ussd:s1"), 0);

    /* Used once, gone. */
    o = check_code(f, "ussd:s1", code);
    assert_string_equal(o.result, "expired");
    outcome_free(&o);
    assert_no_secrets(f);
}

static void test_code_too_many_tries(void **state)
{
    fixture *f = *state;
    expect_send(f, "sms:+8613800000001", "+8613900000003", "sent");
    const char *code = received_code(f);
    const char *wrong = other_code(code);
    const char *left[] = {"2", "1"};
    for (int i = 0; i < 2; i++) {
        outcome o = check_code(f, "sms:+8613800000001", wrong);
        assert_string_equal(o.result, "wrong");
        assert_string_equal(var(&o, "tries_left"), left[i]);
        outcome_free(&o);
    }
    outcome o = check_code(f, "sms:+8613800000001", wrong);
    assert_string_equal(o.result, "too_many");
    outcome_free(&o);
    assert_int_equal(redis_long(f, "EXISTS", "cl:otp:sms:+8613800000001"), 0);
    o = check_code(f, "sms:+8613800000001", code);
    assert_string_equal(o.result, "expired");
    outcome_free(&o);

    /* A code left with no tries (its delete lost) stays void, even typed right. */
    expect_send(f, "sms:+8613800000001", "+8613900000003", "sent");
    code = received_code(f);
    char *r = th_redis_cmd(&f->m.redis, 4, (const char *[]){"HSET", "cl:otp:sms:+8613800000001", "tries", "0"});
    free(r);
    o = check_code(f, "sms:+8613800000001", code);
    assert_string_equal(o.result, "too_many");
    outcome_free(&o);
    assert_no_secrets(f);
}

static void test_code_expired(void **state)
{
    fixture *f = *state;
    f->env.limits.code_ttl_s = 1;
    expect_send(f, "ussd:s3", "13900000004", "sent");
    assert_non_null(strstr(f->sms_text, "valid for 1 minutes"));
    const char *code = received_code(f);
    wait_expired(f, "cl:otp:ussd:s3");
    outcome o = check_code(f, "ussd:s3", code);
    assert_string_equal(o.result, "expired");
    outcome_free(&o);
    assert_no_secrets(f);
}

/* Codes flooding one number from many sessions (each within its own
 * allowance) stop at the number's allowance; other numbers still get
 * theirs. */
static void test_codes_limited_per_number(void **state)
{
    fixture *f = *state;
    char session[32];
    for (int i = 0; i < CODES_PER_NUMBER; i++) {
        snprintf(session, sizeof session, "ussd:flood%d", i);
        expect_send(f, session, "13900000007", "sent");
        received_code(f);
    }
    expect_send(f, "ussd:flood-last", "13900000007", "too_many");
    assert_int_equal(f->sms_sent, CODES_PER_NUMBER);
    assert_int_equal(redis_long(f, "EXISTS", "cl:otp:ussd:flood-last"), 0);
    long ttl = redis_long(f, "TTL", "cl:rl:code:+8613900000007");
    assert_true(ttl > 0 && ttl <= 600);
    expect_send(f, "ussd:flood-last", "13900000008", "sent");
    assert_int_equal(f->sms_sent, CODES_PER_NUMBER + 1);
    assert_no_secrets(f);
}

static void test_code_too_many_sends(void **state)
{
    fixture *f = *state;
    expect_send(f, "ussd:s4", "13900000005", "sent");
    received_code(f);
    expect_send(f, "ussd:s4", "13900000005", "sent");
    const char *second = received_code(f);
    char code[8];
    snprintf(code, sizeof code, "%s", second);
    expect_send(f, "ussd:s4", "13900000005", "too_many");
    assert_int_equal(f->sms_sent, 2);
    assert_int_equal(redis_long(f, "GET", "cl:otp:n:ussd:s4"), 3);
    long ttl = redis_long(f, "TTL", "cl:otp:n:ussd:s4");
    assert_true(ttl > 0 && ttl <= 300);

    /* Another session has its own allowance. */
    expect_send(f, "ussd:s5", "13900000005", "sent");
    received_code(f);
    assert_int_equal(f->sms_sent, 3);

    /* The refused send left the last code valid. */
    outcome o = check_code(f, "ussd:s4", code);
    assert_string_equal(o.result, "ok");
    outcome_free(&o);
    assert_no_secrets(f);
}

static void test_code_no_route(void **state)
{
    fixture *f = *state;
    f->route_up = false;
    expect_send(f, "ussd:s6", "13900000006", "unavailable");
    assert_int_equal(f->sms_sent, 0);
    fflush(f->log.stream);
    assert_non_null(memmem(f->log.text, f->log.len, "contact.code_not_sent", 21));
    f->env.send_now = NULL;
    expect_send(f, "ussd:s6", "13900000006", "unavailable");
    f->env.send_now = test_send_now;
    f->route_up = true;
    expect_send(f, "ussd:s6", "13900000006", "sent");
    received_code(f);
    assert_no_secrets(f);
}

/* update_contact --------------------------------------------------------------------*/

static json_t *person(fixture *f, const char *id)
{
    char path[64], *body = NULL;
    snprintf(path, sizeof path, "/v1/persons/%s", id);
    assert_int_equal(th_http_get(f->m.sim.port, path, &body), 200);
    json_t *p = json_loads(body, 0, NULL);
    free(body);
    assert_non_null(p);
    return p;
}

static void expect_update(fixture *f, json_t *args, const char *result)
{
    outcome o = call_as(f, "update_contact", CHANNEL_VOICE, "13800000001", "voice:call-2", args);
    assert_string_equal(o.result, result);
    outcome_free(&o);
}

static void test_update_contact(void **state)
{
    fixture *f = *state;
    long updates = sim_stat(f, "applied.contact_updates");
    expect_update(f, json_pack("{s:s, s:s}", "id", WANG_ID, "mobile", "13900000002"), "ok");
    json_t *p = person(f, WANG_ID);
    assert_string_equal(json_string_value(json_object_get(p, "mobile")), "+8613900000002");
    json_decref(p);

    expect_update(f, json_pack("{s:s, s:s, s:s}", "id", LI_ID, "mobile", "", "address", "上海市徐汇区1号"), "ok");
    p = person(f, LI_ID);
    assert_string_equal(json_string_value(json_object_get(p, "address")), "上海市徐汇区1号");
    assert_string_equal(json_string_value(json_object_get(p, "mobile")), "+8613800000002");
    json_decref(p);
    assert_int_equal(sim_stat(f, "applied.contact_updates"), updates + 2);

    /* Refused by the registry's rules, or nothing to change. */
    expect_update(f, json_pack("{s:s, s:s}", "id", WANG_ID, "mobile", "+12"), "invalid");
    expect_update(f, json_pack("{s:s, s:s, s:s}", "id", WANG_ID, "mobile", "", "address", ""), "invalid");
    expect_update(f, json_pack("{s:s}", "id", WANG_ID), "invalid");
    assert_int_equal(sim_stat(f, "applied.contact_updates"), updates + 2);
    p = person(f, WANG_ID);
    assert_string_equal(json_string_value(json_object_get(p, "mobile")), "+8613900000002");
    json_decref(p);

    sim_fault(f, "{\"status\": 503, \"count\": 1}");
    expect_update(f, json_pack("{s:s, s:s}", "id", WANG_ID, "address", "北京"), "unavailable");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_verify_every_result, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limited_by_caller, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limited_by_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_sender_on_sms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_race_stops_at_the_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_race_stops_at_the_registry_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lapsed_window_keeps_the_card, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry_count_is_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry_without_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identify_sender_every_result, setup, teardown),
        cmocka_unit_test_setup_teardown(test_find_person, setup, teardown),
        cmocka_unit_test_setup_teardown(test_code_to_registered_mobile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_codes_do_not_cross, setup, teardown),
        cmocka_unit_test_setup_teardown(test_code_wrong_then_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_code_too_many_tries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_code_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_code_too_many_sends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_codes_limited_per_number, setup, teardown),
        cmocka_unit_test_setup_teardown(test_code_no_route, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_contact, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
