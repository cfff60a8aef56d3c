/* The registry client against the real registry simulator: typed results,
 * faults injected through /_sim/fault, deadlines, retries, idempotent
 * writes, concurrency, keep-alive, shutdown with requests in flight, PINs
 * kept out of the log, and the health probe's quiet log line. The event
 * loop is driven until the callbacks under test have run, with a bounded
 * deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "loop.h"
#include "modules.h"
#include "log.h"
#include "metrics.h"
#include "registry.h"

/* People and cards of tests/registry/seed.json, one per test that changes
 * state, so the tests do not depend on each other's order. */
#define SSN_READER "110101199003074514"      /* plain person with a normal card */
#define SSN_UNKNOWN "110101199001010015"     /* valid checksum, not in the seed */
#define CARD_LOSS "A10000101"                /* normal card: report, cancel */
#define CARD_REPLAY "A10000201"              /* normal card that must stay unreported */
#define CARD_FAULTED "A10000301"             /* normal card: write under a fault */
#define SSN_LOCK "11010119800101111X"        /* PIN 246801; locked by the test */
#define LOCK_RIGHT_PIN "246801"
#define SSN_ACTIVATE "110101198502023338"    /* holder of a sealed, collected card */
#define CARD_SEALED "A10000401"
#define SSN_PINLOG "110101197505054442"      /* PIN 582039, for the log test */
#define PINLOG_RIGHT_PIN "582039"
#define PINLOG_WRONG_PIN "917364"
#define PINLOG_NEW_PIN "730518"

#define WAIT_MS 15000  /* bound on every wait for callbacks */

static th_proc sim;

/* What a callback saw. */
typedef struct {
    int calls;               /* times the callback ran */
    registry_status status;  /* last result */
    long http;               /* last HTTP status */
    char error_code[64];     /* last error code, "" if none */
    json_t *body;            /* last body (own reference) or NULL */
} outcome;

static void on_result(const registry_result *res, void *arg)
{
    outcome *o = arg;
    o->calls++;
    o->status = res->status;
    o->http = res->http_status;
    snprintf(o->error_code, sizeof o->error_code, "%s", res->error_code ? res->error_code : "");
    json_decref(o->body);
    o->body = json_incref(res->body);
}

static void outcome_clear(outcome *o)
{
    json_decref(o->body);
    memset(o, 0, sizeof *o);
}

static void wait_for(struct event_base *base, outcome *o)
{
    assert_true(tl_run_until_count(base, &o->calls, 1, WAIT_MS));
    assert_int_equal(o->calls, 1);
}

/* One client per test, on its own loop. */
typedef struct {
    struct event_base *base;
    registry *reg;
} client;

static void client_open(client *c, int port, const registry_options *tweak)
{
    registry_options opt;
    char url[64];
    if (tweak)
        opt = *tweak;
    else
        registry_options_default(&opt);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    opt.base_url = url;
    c->base = event_base_new();
    assert_non_null(c->base);
    c->reg = registry_new(c->base, &opt);
    assert_non_null(c->reg);
}

static void client_close(client *c)
{
    registry_free(c->reg);
    event_base_free(c->base);
}

static registry_options options_with(int timeout_ms, int read_retries)
{
    registry_options opt;
    registry_options_default(&opt);
    opt.timeout_ms = timeout_ms;
    opt.connect_timeout_ms = timeout_ms < 500 ? timeout_ms : 500;
    opt.read_retries = read_retries;
    return opt;
}

/* The simulator's controls -------------------------------------------------*/

static void sim_fault(const char *fault_json)
{
    long st = th_http(sim.port, "PUT", "/_sim/fault", fault_json, NULL, NULL);
    assert_true(st >= 200 && st < 300);
}

static void sim_fault_clear(void)
{
    long st = th_http(sim.port, "DELETE", "/_sim/fault", NULL, NULL, NULL);
    assert_true(st >= 200 && st < 300);
}

static long long stat_requests(void)
{
    return th_sim_stat(&sim, "requests");
}

static long long stat_replays(void)
{
    return th_sim_stat(&sim, "replays");
}

static long long stat_applied(const char *what)
{
    return th_sim_applied(&sim, what);
}

/* Fixtures -------------------------------------------------------------------*/

static int group_setup(void **state)
{
    (void)state;
    th_mkdtemp(sim.dir, "cl-registry");
    if (!th_sim_start(&sim, sim.dir, CL_SOURCE_DIR "/tests/registry/seed.json", NULL))
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    th_stop(&sim, 2000);
    th_rmdir(sim.dir);
    metrics_reset();
    return 0;
}

static int test_teardown(void **state)
{
    (void)state;
    sim_fault_clear();
    return 0;
}

/* Typed results --------------------------------------------------------------*/

static void test_get_person_ok(void **state)
{
    (void)state;
    client c;
    outcome o = {0};
    client_open(&c, sim.port, NULL);
    metrics_series *ok = metrics_counter("cardline_registry_requests_total", "",
                                         "result=\"ok\"");
    double ok_before = metrics_value(ok);

    registry_get_person(c.reg, SSN_READER, on_result, &o);
    assert_int_equal(o.calls, 0); /* never from inside the call */
    wait_for(c.base, &o);

    assert_int_equal(o.status, REGISTRY_OK);
    assert_int_equal(o.http, 200);
    assert_string_equal(o.error_code, "");
    assert_string_equal(json_string_value(json_object_get(o.body, "ssn")), SSN_READER);
    assert_non_null(json_string_value(json_object_get(o.body, "name")));
    assert_true(metrics_value(ok) == ok_before + 1);
    outcome_clear(&o);
    client_close(&c);
}

/* The registry's own settings, which the gateway words answers with. */
static void test_get_settings(void **state)
{
    (void)state;
    client c;
    outcome o = {0};
    client_open(&c, sim.port, NULL);
    registry_get_settings(c.reg, on_result, &o);
    assert_int_equal(o.calls, 0);
    wait_for(c.base, &o);
    assert_int_equal(o.status, REGISTRY_OK);
    assert_int_equal(json_integer_value(json_object_get(o.body, "temporary_loss_days")), 7);
    assert_int_equal(json_integer_value(json_object_get(o.body, "collection_days")), 365);
    outcome_clear(&o);
    client_close(&c);
}

static void test_unknown_person_not_found(void **state)
{
    (void)state;
    client c;
    outcome o = {0};
    client_open(&c, sim.port, NULL);
    registry_get_person(c.reg, SSN_UNKNOWN, on_result, &o);
    wait_for(c.base, &o);
    assert_int_equal(o.status, REGISTRY_NOT_FOUND);
    assert_int_equal(o.http, 404);
    assert_string_equal(o.error_code, "not_found");
    outcome_clear(&o);
    client_close(&c);
}

static void test_cancel_twice_conflict(void **state)
{
    (void)state;
    client c;
    outcome o = {0};
    client_open(&c, sim.port, NULL);

    registry_report_loss(c.reg, CARD_LOSS, "voice", NULL, "t-loss-1", on_result, &o);
    wait_for(c.base, &o);
    assert_int_equal(o.status, REGISTRY_OK);
    assert_int_equal(o.http, 201);
    char report[64];
    snprintf(report, sizeof report, "%s", json_string_value(json_object_get(o.body, "id")));
    assert_true(strlen(report) > 0);
    outcome_clear(&o);

    registry_cancel_loss(c.reg, CARD_LOSS, report, "voice", "t-cancel-1", on_result, &o);
    wait_for(c.base, &o);
    assert_int_equal(o.status, REGISTRY_OK);
    assert_string_equal(json_string_value(json_object_get(o.body, "state")), "cancelled");
    outcome_clear(&o);

    registry_cancel_loss(c.reg, CARD_LOSS, report, "voice", "t-cancel-2", on_result, &o);
    wait_for(c.base, &o);
    assert_int_equal(o.status, REGISTRY_CONFLICT);
    assert_int_equal(o.http, 409);
    assert_string_equal(o.error_code, "not_active");
    outcome_clear(&o);
    client_close(&c);
}

static void test_weak_pin_rejected_with_reason(void **state)
{
    (void)state;
    client c;
    outcome o = {0};
    client_open(&c, sim.port, NULL);
    registry_activate_card(c.reg, CARD_SEALED, SSN_ACTIVATE, "111111", "t-act-weak", on_result, &o);
    wait_for(c.base, &o);
    assert_int_equal(o.status, REGISTRY_REJECTED);
    assert_int_equal(o.http, 422);
    assert_string_equal(o.error_code, "pin_too_weak");
    json_t *err = json_object_get(o.body, "error");
    assert_string_equal(json_string_value(json_object_get(err, "reason")), "repeated");
    outcome_clear(&o);
    client_close(&c);
}

static void test_key_field_update_rejected(void **state)
{
    (void)state;
    client c;
    outcome o = {0};
    client_open(&c, sim.port, NULL);
    json_t *body = json_pack("{s:s}", "name", "Someone Else");
    registry_request(c.reg, "PATCH", "/v1/persons/" SSN_READER, body, "t-keyfield", on_result, &o);
    json_decref(body);
    wait_for(c.base, &o);
    assert_int_equal(o.status, REGISTRY_REJECTED);
    assert_int_equal(o.http, 422);
    assert_string_equal(o.error_code, "field_not_updatable");
    json_t *err = json_object_get(o.body, "error");
    assert_string_equal(json_string_value(json_object_get(err, "field")), "name");
    outcome_clear(&o);
    client_close(&c);
}

static void test_wrong_pins_lock(void **state)
{
    (void)state;
    client c;
    outcome o = {0};
    char key[32];
    client_open(&c, sim.port, NULL);
    for (int i = 1; i < 6; i++) {
        snprintf(key, sizeof key, "t-lock-%d", i);
        registry_verify_pin(c.reg, SSN_LOCK, "000001", key, on_result, &o);
        wait_for(c.base, &o);
        assert_int_equal(o.status, REGISTRY_OK);
        assert_false(json_is_true(json_object_get(o.body, "verified")));
        assert_int_equal(json_integer_value(json_object_get(o.body, "remaining_attempts")), 6 - i);
        assert_int_equal(registry_pin_remaining(o.body), 6 - i);
        outcome_clear(&o);
    }
    registry_verify_pin(c.reg, SSN_LOCK, "000001", "t-lock-6", on_result, &o);
    wait_for(c.base, &o);
    assert_int_equal(o.status, REGISTRY_LOCKED);
    assert_int_equal(o.http, 423);
    assert_string_equal(o.error_code, "pin_locked");
    json_t *err = json_object_get(o.body, "error");
    assert_int_equal(json_integer_value(json_object_get(err, "remaining_attempts")), 0);
    assert_int_equal(registry_pin_remaining(o.body), 0);
    outcome_clear(&o);

    /* Locked means locked: the right PIN no longer helps. */
    registry_verify_pin(c.reg, SSN_LOCK, LOCK_RIGHT_PIN, "t-lock-7", on_result, &o);
    wait_for(c.base, &o);
    assert_int_equal(o.status, REGISTRY_LOCKED);
    outcome_clear(&o);
    client_close(&c);
}

/* Faults -----------------------------------------------------------------------*/

static void test_503_is_unavailable(void **state)
{
    (void)state;
    client c;
    outcome o = {0};
    registry_options opt = options_with(2000, 0);
    client_open(&c, sim.port, &opt);
    sim_fault("{\"status\":503,\"count\":5,\"path_prefix\":\"/v1/persons/\"}");
    registry_get_person(c.reg, SSN_READER, on_result, &o);
    wait_for(c.base, &o);
    assert_int_equal(o.status, REGISTRY_UNAVAILABLE);
    assert_int_equal(o.http, 503);
    assert_string_equal(o.error_code, "unavailable");
    outcome_clear(&o);
    client_close(&c);
}

static void test_malformed_body_is_bad_response(void **state)
{
    (void)state;
    client c;
    outcome o = {0};
    client_open(&c, sim.port, NULL);
    sim_fault("{\"malformed\":true,\"count\":5,\"path_prefix\":\"/v1/persons/\"}");
    registry_get_person(c.reg, SSN_READER, on_result, &o);
    wait_for(c.base, &o);
    assert_int_equal(o.status, REGISTRY_BAD_RESPONSE);
    assert_int_equal(o.http, 200);
    assert_null(o.body);
    outcome_clear(&o);
    client_close(&c);
}

static void test_deadline_is_unavailable_without_retry(void **state)
{
    (void)state;
    client c;
    outcome o = {0};
    tm_capture cap;
    registry_options opt = options_with(300, 1);
    client_open(&c, sim.port, &opt);
    sim_fault("{\"delay_ms\":20000,\"count\":5,\"path_prefix\":\"/v1/persons/\"}");
    tm_capture_begin(&cap, LOG_DEBUG);
    registry_get_person(c.reg, SSN_READER, on_result, &o);
    wait_for(c.base, &o);
    tm_capture_end(&cap);
    assert_int_equal(o.status, REGISTRY_UNAVAILABLE);
    assert_int_equal(o.http, 0);
    /* The deadline used the whole budget: no second attempt. */
    assert_non_null(strstr(cap.text, "attempts=1 "));
    assert_null(strstr(cap.text, "registry.retry"));
    free(cap.text);
    outcome_clear(&o);
    client_close(&c);
}

static void test_connection_refused_is_unavailable(void **state)
{
    (void)state;
    client c;
    outcome o = {0};
    tm_capture cap;
    client_open(&c, th_free_port(), NULL);
    tm_capture_begin(&cap, LOG_DEBUG);
    registry_health(c.reg, on_result, &o);
    wait_for(c.base, &o);
    tm_capture_end(&cap);
    assert_int_equal(o.status, REGISTRY_UNAVAILABLE);
    assert_int_equal(o.http, 0);
    assert_null(o.body);
    /* A refused read is tried once more (read_retries 1), then reported. */
    assert_non_null(strstr(cap.text, "attempts=2 "));
    free(cap.text);
    outcome_clear(&o);
    client_close(&c);
}

static void test_dropped_connection_is_unavailable(void **state)
{
    (void)state;
    client c;
    outcome o = {0};
    registry_options opt = options_with(2000, 0);
    client_open(&c, sim.port, &opt);
    sim_fault("{\"drop\":true,\"count\":5,\"path_prefix\":\"/v1/persons/\"}");
    registry_get_person(c.reg, SSN_READER, on_result, &o);
    wait_for(c.base, &o);
    assert_int_equal(o.status, REGISTRY_UNAVAILABLE);
    assert_int_equal(o.http, 0);
    outcome_clear(&o);
    client_close(&c);
}

static void test_read_retried_after_one_503(void **state)
{
    (void)state;
    client c;
    outcome o = {0};
    tm_capture cap;
    registry_options opt = options_with(2000, 1);
    client_open(&c, sim.port, &opt);
    sim_fault("{\"status\":503,\"count\":1,\"path_prefix\":\"/v1/persons/\"}");
    long long before = stat_requests();
    tm_capture_begin(&cap, LOG_DEBUG);
    registry_get_person(c.reg, SSN_READER, on_result, &o);
    wait_for(c.base, &o);
    tm_capture_end(&cap);
    assert_int_equal(o.status, REGISTRY_OK);
    assert_int_equal(o.http, 200);
    assert_int_equal(stat_requests() - before, 2);
    assert_non_null(strstr(cap.text, "attempts=2 "));
    free(cap.text);
    outcome_clear(&o);
    client_close(&c);
}

static void test_write_sent_once_and_replay_applied_once(void **state)
{
    (void)state;
    client c;
    outcome o = {0};
    client_open(&c, sim.port, NULL);
    long long applied = stat_applied("loss_reports");

    /* Refused by a 503: the client reports it and does not send it again. */
    sim_fault("{\"status\":503,\"count\":1,\"path_prefix\":\"/v1/cards/\"}");
    long long before = stat_requests();
    registry_report_loss(c.reg, CARD_FAULTED, "sms", "ref-1", "t-write-once", on_result, &o);
    wait_for(c.base, &o);
    assert_int_equal(o.status, REGISTRY_UNAVAILABLE);
    assert_int_equal(o.http, 503);
    assert_int_equal(stat_requests() - before, 1);
    assert_int_equal(stat_applied("loss_reports"), applied);
    outcome_clear(&o);

    /* The outbox's later attempts with the same key: applied once. */
    registry_report_loss(c.reg, CARD_FAULTED, "sms", "ref-1", "t-write-once", on_result, &o);
    wait_for(c.base, &o);
    assert_int_equal(o.status, REGISTRY_OK);
    assert_int_equal(o.http, 201);
    char first_id[64];
    snprintf(first_id, sizeof first_id, "%s", json_string_value(json_object_get(o.body, "id")));
    outcome_clear(&o);

    long long replays = stat_replays();
    registry_report_loss(c.reg, CARD_FAULTED, "sms", "ref-1", "t-write-once", on_result, &o);
    wait_for(c.base, &o);
    assert_int_equal(o.status, REGISTRY_OK);
    assert_string_equal(json_string_value(json_object_get(o.body, "id")), first_id);
    assert_int_equal(stat_replays() - replays, 1);
    assert_int_equal(stat_applied("loss_reports") - applied, 1);
    outcome_clear(&o);

    /* The same key with a different request is refused, not applied. */
    registry_report_loss(c.reg, CARD_REPLAY, "sms", "ref-1", "t-write-once", on_result, &o);
    wait_for(c.base, &o);
    assert_int_equal(o.status, REGISTRY_REJECTED);
    assert_string_equal(o.error_code, "idempotency_key_reused");
    assert_int_equal(stat_applied("loss_reports") - applied, 1);
    outcome_clear(&o);
    client_close(&c);
}

/* Load, connections, shutdown ---------------------------------------------------*/

#define MANY 200

typedef struct {
    int calls[MANY];         /* callbacks per request */
    int ok;                  /* requests that ended REGISTRY_OK */
    int done;                /* callbacks in all */
} tally;

typedef struct {
    tally *t;                /* shared tally */
    int index;               /* which request this is */
    registry_status want;    /* the status every request should end with */
} slot;

static void on_tallied(const registry_result *res, void *arg)
{
    slot *s = arg;
    s->t->calls[s->index]++;
    s->t->done++;
    if (res->status == s->want)
        s->t->ok++;
}

static void test_many_concurrent_complete_once(void **state)
{
    (void)state;
    client c;
    static tally t;
    static slot slots[MANY];
    memset(&t, 0, sizeof t);
    registry_options opt = options_with(10000, 1);
    opt.max_connections = 8;
    client_open(&c, sim.port, &opt);
    for (int i = 0; i < MANY; i++) {
        slots[i] = (slot){&t, i, REGISTRY_OK};
        registry_get_person(c.reg, SSN_READER, on_tallied, &slots[i]);
    }
    assert_int_equal(t.done, 0);
    assert_true(tl_run_until_count(c.base, &t.done, MANY, WAIT_MS));
    for (int i = 0; i < MANY; i++)
        assert_int_equal(t.calls[i], 1);
    assert_int_equal(t.ok, MANY);
    client_close(&c);
}

static double connections_opened(void)
{
    return metrics_value(metrics_counter("cardline_registry_connections_total", "", NULL));
}

static void test_keep_alive_reuses_one_connection(void **state)
{
    (void)state;
    client c;
    outcome o = {0};
    client_open(&c, sim.port, NULL);
    double before = connections_opened();
    for (int i = 0; i < 20; i++) {
        registry_get_card(c.reg, CARD_SEALED, on_result, &o);
        wait_for(c.base, &o);
        assert_int_equal(o.status, REGISTRY_OK);
        outcome_clear(&o);
    }
    assert_true(connections_opened() - before == 1);
    client_close(&c);
}

typedef struct {
    long long base;  /* the simulator's request count before */
    int want;        /* requests that must have arrived */
} arrivals;

static bool arrived(const void *arg)
{
    const arrivals *a = arg;
    return stat_requests() - a->base >= a->want;
}

#define IN_FLIGHT 10

/* A caller whose callback makes another request, as a handler might. */
typedef struct {
    registry *reg;    /* the client */
    outcome first;    /* the request in flight */
    outcome late;     /* the request made from its callback */
} chain;

static void on_result_then_request(const registry_result *res, void *arg)
{
    chain *ch = arg;
    on_result(res, &ch->first);
    registry_health(ch->reg, on_result, &ch->late);
}

static void test_free_completes_in_flight_unavailable(void **state)
{
    (void)state;
    client c;
    static tally t;
    static slot slots[IN_FLIGHT];
    memset(&t, 0, sizeof t);
    registry_options opt = options_with(30000, 1);
    client_open(&c, sim.port, &opt);
    sim_fault("{\"delay_ms\":30000,\"count\":100,\"path_prefix\":\"/v1/persons/\"}");
    arrivals a = {stat_requests(), IN_FLIGHT + 1};
    chain ch = {.reg = c.reg};
    for (int i = 0; i < IN_FLIGHT; i++) {
        slots[i] = (slot){&t, i, REGISTRY_UNAVAILABLE};
        registry_get_person(c.reg, SSN_READER, on_tallied, &slots[i]);
    }
    registry_get_person(c.reg, SSN_READER, on_result_then_request, &ch);
    assert_true(tl_run_until(c.base, arrived, &a, WAIT_MS));
    assert_int_equal(t.done + ch.first.calls, 0);

    registry_free(c.reg);
    for (int i = 0; i < IN_FLIGHT; i++)
        assert_int_equal(t.calls[i], 1);
    assert_int_equal(t.ok, IN_FLIGHT);
    assert_int_equal(ch.first.calls, 1);
    assert_int_equal(ch.first.status, REGISTRY_UNAVAILABLE);
    assert_int_equal(ch.first.http, 0);
    /* Made while the client closes: still answered, once, not sent. */
    assert_int_equal(ch.late.calls, 1);
    assert_int_equal(ch.late.status, REGISTRY_UNAVAILABLE);
    assert_int_equal(ch.late.http, 0);
    outcome_clear(&ch.first);
    outcome_clear(&ch.late);
    event_base_free(c.base);
}

/* Refusals before sending ---------------------------------------------------------*/

static void test_bad_requests_refused_without_sending(void **state)
{
    (void)state;
    client c;
    outcome no_key = {0}, empty_ssn = {0}, dot_path = {0}, bad_key = {0}, long_card = {0};
    client_open(&c, sim.port, NULL);
    long long before = stat_requests();

    registry_report_loss(c.reg, CARD_REPLAY, "voice", NULL, NULL, on_result, &no_key);
    registry_get_person(c.reg, "", on_result, &empty_ssn);
    registry_request(c.reg, "GET", "/v1/persons/../../_sim/stats", NULL, NULL, on_result, &dot_path);
    registry_report_loss(c.reg, CARD_REPLAY, "voice", NULL, "bad key\r\nX: y", on_result, &bad_key);
    registry_get_card(c.reg, "A1000000100000000000000000000000000", on_result, &long_card);
    assert_int_equal(no_key.calls + empty_ssn.calls + dot_path.calls + bad_key.calls +
                         long_card.calls, 0);

    wait_for(c.base, &long_card);
    outcome *all[] = {&no_key, &empty_ssn, &dot_path, &bad_key, &long_card};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        assert_int_equal(all[i]->calls, 1);
        assert_int_equal(all[i]->status, REGISTRY_REJECTED);
        assert_int_equal(all[i]->http, 0);
        outcome_clear(all[i]);
    }
    assert_int_equal(stat_requests(), before);
    client_close(&c);
}

static void test_identifiers_escaped_into_one_segment(void **state)
{
    (void)state;
    client c;
    outcome o = {0};
    client_open(&c, sim.port, NULL);
    /* Unescaped, this would walk to /_sim/stats and answer 200. */
    registry_get_person(c.reg, "../../_sim/stats", on_result, &o);
    wait_for(c.base, &o);
    assert_int_equal(o.status, REGISTRY_REJECTED);
    assert_int_equal(o.http, 400);
    assert_string_equal(o.error_code, "invalid_request");
    outcome_clear(&o);
    client_close(&c);
}

static void test_max_pending_bound(void **state)
{
    (void)state;
    client c;
    outcome first = {0}, second = {0}, third = {0};
    registry_options opt = options_with(2000, 1);
    opt.max_pending = 2;
    client_open(&c, sim.port, &opt);
    registry_get_person(c.reg, SSN_READER, on_result, &first);
    registry_get_person(c.reg, SSN_READER, on_result, &second);
    registry_get_person(c.reg, SSN_READER, on_result, &third);
    assert_int_equal(third.calls, 0);
    wait_for(c.base, &first);
    wait_for(c.base, &second);
    wait_for(c.base, &third);
    assert_int_equal(first.status, REGISTRY_OK);
    assert_int_equal(second.status, REGISTRY_OK);
    assert_int_equal(third.status, REGISTRY_UNAVAILABLE);
    assert_int_equal(third.http, 0);
    outcome_clear(&first);
    outcome_clear(&second);
    outcome_clear(&third);
    client_close(&c);
}

static void test_bad_options_refused(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    registry_options opt;
    registry_options_default(&opt);
    opt.base_url = "ftp://127.0.0.1:21";
    assert_null(registry_new(base, &opt));
    registry_options_default(&opt);
    opt.max_pending = 0;
    assert_null(registry_new(base, &opt));
    event_base_free(base);
}

static void test_list_cards_pages_with_token(void **state)
{
    (void)state;
    client c;
    outcome o = {0};
    client_open(&c, sim.port, NULL);
    registry_list_cards(c.reg, SSN_ACTIVATE, 1, NULL, on_result, &o);
    wait_for(c.base, &o);
    assert_int_equal(o.status, REGISTRY_OK);
    const char *token = json_string_value(json_object_get(o.body, "next_page_token"));
    assert_non_null(token);
    char next[300];
    snprintf(next, sizeof next, "%s", token);
    outcome_clear(&o);

    registry_list_cards(c.reg, SSN_ACTIVATE, 1, next, on_result, &o);
    wait_for(c.base, &o);
    assert_int_equal(o.status, REGISTRY_OK);
    assert_true(json_is_array(json_object_get(o.body, "cards")));
    outcome_clear(&o);

    registry_list_cards(c.reg, SSN_ACTIVATE, 0, "not-a-token", on_result, &o);
    wait_for(c.base, &o);
    assert_int_equal(o.status, REGISTRY_REJECTED);
    assert_int_equal(o.http, 400);
    outcome_clear(&o);
    client_close(&c);
}

static void test_bearer_token_sent(void **state)
{
    (void)state;
    th_proc guarded = {0};
    const char *args[] = {"--token", "t0ken-for-tests", NULL};
    th_mkdtemp(guarded.dir, "cl-registry-token");
    assert_true(th_sim_start(&guarded, guarded.dir, CL_SOURCE_DIR "/tests/registry/seed.json", args));

    client anonymous, trusted;
    outcome refused = {0}, served = {0};
    registry_options opt;
    registry_options_default(&opt);
    client_open(&anonymous, guarded.port, &opt);
    opt.token = "t0ken-for-tests";
    client_open(&trusted, guarded.port, &opt);
    registry_get_person(anonymous.reg, SSN_READER, on_result, &refused);
    registry_get_person(trusted.reg, SSN_READER, on_result, &served);
    wait_for(anonymous.base, &refused);
    wait_for(trusted.base, &served);
    th_stop(&guarded, 2000);
    th_rmdir(guarded.dir);

    assert_int_equal(refused.status, REGISTRY_REJECTED);
    assert_int_equal(refused.http, 401);
    assert_string_equal(refused.error_code, "unauthorized");
    assert_int_equal(served.status, REGISTRY_OK);
    outcome_clear(&refused);
    outcome_clear(&served);
    client_close(&anonymous);
    client_close(&trusted);
}

/* Privacy ----------------------------------------------------------------------------*/

/* The level of the registry.request line in `text` whose path is `path`,
 * "" if there is none. */
static void request_level(const char *text, const char *path, char *out, size_t size)
{
    char want[96];
    snprintf(want, sizeof want, "path=%s ", path);
    out[0] = '\0';
    for (const char *line = text; line && *line; line = strchr(line, '\n'), line += line != NULL) {
        size_t len = strcspn(line, "\n");
        char copy[512];
        snprintf(copy, sizeof copy, "%.*s", (int)len, line);
        const char *level = strstr(copy, "level=");
        if (strstr(copy, "event=registry.request") && strstr(copy, want) && level)
            snprintf(out, size, "%.*s", (int)strcspn(level + 6, " "), level + 6);
    }
}

/* /healthz probes every few seconds: a healthy answer is a debug line, a
 * failed one still a warning, and other reads stay at info. */
static void test_health_probe_quiet_when_healthy(void **state)
{
    (void)state;
    client c;
    outcome ok = {0}, down = {0}, read = {0};
    tm_capture cap;
    char level[16];
    client_open(&c, sim.port, NULL);
    tm_capture_begin(&cap, LOG_DEBUG);
    registry_health(c.reg, on_result, &ok);
    wait_for(c.base, &ok);
    tm_capture_end(&cap);
    assert_int_equal(ok.status, REGISTRY_OK);
    request_level(cap.text, "/v1/health", level, sizeof level);
    assert_string_equal(level, "debug");
    free(cap.text);

    sim_fault("{\"status\":503,\"path_prefix\":\"/v1/health\"}");
    tm_capture_begin(&cap, LOG_DEBUG);
    registry_health(c.reg, on_result, &down);
    wait_for(c.base, &down);
    registry_get_person(c.reg, SSN_READER, on_result, &read);
    wait_for(c.base, &read);
    tm_capture_end(&cap);
    assert_int_equal(down.status, REGISTRY_UNAVAILABLE);
    request_level(cap.text, "/v1/health", level, sizeof level);
    assert_string_equal(level, "warn");
    assert_int_equal(read.status, REGISTRY_OK);
    request_level(cap.text, "/v1/persons/110101********4514", level, sizeof level);
    assert_string_equal(level, "info");
    free(cap.text);
    outcome_clear(&ok);
    outcome_clear(&down);
    outcome_clear(&read);
    client_close(&c);
}

static void test_pins_never_logged(void **state)
{
    (void)state;
    client c;
    outcome wrong = {0}, right = {0}, refused = {0}, weak = {0};
    tm_capture cap;
    client_open(&c, sim.port, NULL);
    tm_capture_begin(&cap, LOG_DEBUG);
    registry_verify_pin(c.reg, SSN_PINLOG, PINLOG_WRONG_PIN, "t-pinlog-1", on_result, &wrong);
    wait_for(c.base, &wrong);
    registry_verify_pin(c.reg, SSN_PINLOG, PINLOG_RIGHT_PIN, "t-pinlog-2", on_result, &right);
    wait_for(c.base, &right);
    registry_verify_pin(c.reg, SSN_PINLOG, PINLOG_WRONG_PIN, NULL, on_result, &refused);
    wait_for(c.base, &refused);
    registry_activate_card(c.reg, CARD_SEALED, SSN_PINLOG, PINLOG_NEW_PIN, "t-pinlog-3",
                           on_result, &weak);
    wait_for(c.base, &weak);
    tm_capture_end(&cap);

    assert_int_equal(wrong.status, REGISTRY_OK);
    assert_false(json_is_true(json_object_get(wrong.body, "verified")));
    assert_int_equal(right.status, REGISTRY_OK);
    assert_true(json_is_true(json_object_get(right.body, "verified")));
    assert_int_equal(refused.status, REGISTRY_REJECTED);
    assert_int_equal(weak.status, REGISTRY_NOT_FOUND); /* not this holder's card */

    /* The capture saw the four outcomes, masked; no PIN, no full ID. */
    size_t lines = 0;
    for (const char *p = cap.text; (p = strstr(p, "event=registry.request")); p++)
        lines++;
    assert_int_equal(lines, 4);
    assert_non_null(strstr(cap.text, "110101********4442"));
    assert_null(strstr(cap.text, SSN_PINLOG));
    assert_null(strstr(cap.text, PINLOG_WRONG_PIN));
    assert_null(strstr(cap.text, PINLOG_RIGHT_PIN));
    assert_null(strstr(cap.text, PINLOG_NEW_PIN));
    assert_null(strstr(cap.text, CARD_SEALED));
    free(cap.text);
    outcome_clear(&wrong);
    outcome_clear(&right);
    outcome_clear(&refused);
    outcome_clear(&weak);
    client_close(&c);
}

/* The count wherever the contract puts it; absent and garbage told apart. */
static void test_pin_remaining_read(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        int expected;
    } cases[] = {
        {"{\"verified\": false, \"remaining_attempts\": 4}", 4},
        {"{\"ssn\": \"x\", \"pin\": {\"locked\": false, \"remaining_attempts\": 6}}", 6},
        {"{\"error\": {\"code\": \"pin_locked\", \"remaining_attempts\": 0}}", 0},
        {"{\"verified\": false}", REGISTRY_COUNT_ABSENT},
        {"{\"ssn\": \"x\", \"pin\": null}", REGISTRY_COUNT_ABSENT},
        {"{\"ssn\": \"x\", \"pin\": {\"locked\": false}}", REGISTRY_COUNT_ABSENT},
        {"{\"remaining_attempts\": -1}", REGISTRY_COUNT_BAD},
        {"{\"remaining_attempts\": \"3\"}", REGISTRY_COUNT_BAD},
        {"{\"remaining_attempts\": 1.5}", REGISTRY_COUNT_BAD},
        {"{\"remaining_attempts\": 100000}", REGISTRY_COUNT_BAD},
        {"{\"pin\": 3}", REGISTRY_COUNT_BAD},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *body = json_loads(cases[i].json, 0, NULL);
        assert_non_null(body);
        assert_int_equal(registry_pin_remaining(body), cases[i].expected);
        json_decref(body);
    }
    assert_int_equal(registry_pin_remaining(NULL), REGISTRY_COUNT_ABSENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_get_person_ok, test_teardown),
        cmocka_unit_test_teardown(test_get_settings, test_teardown),
        cmocka_unit_test_teardown(test_unknown_person_not_found, test_teardown),
        cmocka_unit_test_teardown(test_cancel_twice_conflict, test_teardown),
        cmocka_unit_test_teardown(test_weak_pin_rejected_with_reason, test_teardown),
        cmocka_unit_test_teardown(test_key_field_update_rejected, test_teardown),
        cmocka_unit_test_teardown(test_wrong_pins_lock, test_teardown),
        cmocka_unit_test_teardown(test_503_is_unavailable, test_teardown),
        cmocka_unit_test_teardown(test_malformed_body_is_bad_response, test_teardown),
        cmocka_unit_test_teardown(test_deadline_is_unavailable_without_retry, test_teardown),
        cmocka_unit_test_teardown(test_connection_refused_is_unavailable, test_teardown),
        cmocka_unit_test_teardown(test_dropped_connection_is_unavailable, test_teardown),
        cmocka_unit_test_teardown(test_read_retried_after_one_503, test_teardown),
        cmocka_unit_test_teardown(test_write_sent_once_and_replay_applied_once, test_teardown),
        cmocka_unit_test_teardown(test_many_concurrent_complete_once, test_teardown),
        cmocka_unit_test_teardown(test_keep_alive_reuses_one_connection, test_teardown),
        cmocka_unit_test_teardown(test_free_completes_in_flight_unavailable, test_teardown),
        cmocka_unit_test_teardown(test_bad_requests_refused_without_sending, test_teardown),
        cmocka_unit_test_teardown(test_identifiers_escaped_into_one_segment, test_teardown),
        cmocka_unit_test_teardown(test_max_pending_bound, test_teardown),
        cmocka_unit_test(test_bad_options_refused),
        cmocka_unit_test(test_pin_remaining_read),
        cmocka_unit_test_teardown(test_list_cards_pages_with_token, test_teardown),
        cmocka_unit_test(test_bearer_token_sent),
        cmocka_unit_test_teardown(test_pins_never_logged, test_teardown),
        cmocka_unit_test_teardown(test_health_probe_quiet_when_healthy, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
