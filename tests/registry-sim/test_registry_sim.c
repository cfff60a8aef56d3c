/* Integration tests of the registry simulator's contract rules
 * (docs/registry-api.md) against the real binary with the demo seed. Each
 * test gets a fresh simulator and database. Who is who: see
 * tools/registry-sim/README.md. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "simtest.h"

#define WANG_WEI "110101199003074514"     /* normal card A52870316, PIN 246810 */
#define LI_NA "310104198506123025"        /* normal card C60482915 on the initial PIN */
#define ZHANG_MIN "440106199211234816"    /* temporary loss, cancellable */
#define LIU_YANG "330106197809301556"     /* temporary loss, reissue requested */
#define CHEN_JING "51010719880214226X"    /* locked PIN */
#define YANG_LEI "420106197505053719"     /* sealed H70461592, application collected */
#define ZHAO_LI "320102199508184642"      /* sealed K90273658, application at_outlet */
#define NOBODY "110101200001011232"       /* valid ID, not in the registry */

static st_resp verify_pin(const th_proc *p, const char *ssn, const char *pin)
{
    char path[128], body[64];
    snprintf(path, sizeof path, "/v1/persons/%s/pin-verifications", ssn);
    snprintf(body, sizeof body, "{\"pin\": \"%s\"}", pin);
    return st_call(p, "POST", path, body, st_key());
}

static long long card_status(const th_proc *p, const char *card)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/cards/%s", card);
    st_resp r = st_call(p, "GET", path, NULL, NULL);
    assert_int_equal(r.status, 200);
    long long status = json_integer_value(st_get(&r, "status"));
    st_free(&r);
    return status;
}

static void expect(const th_proc *p, const char *method, const char *path, const char *body,
                   long status, const char *code)
{
    st_resp r = st_call(p, method, path, body, st_key());
    assert_int_equal(r.status, status);
    assert_string_equal(st_code(&r), code);
    st_free(&r);
}

/* PINs ----------------------------------------------------------------------*/

static void test_pin_locks_after_six_wrong(void **state)
{
    th_proc *p = *state;
    for (int i = 1; i <= 5; i++) {
        st_resp r = verify_pin(p, WANG_WEI, "000000");
        assert_int_equal(r.status, 200);
        assert_false(json_is_true(st_get(&r, "verified")));
        assert_int_equal(json_integer_value(st_get(&r, "remaining_attempts")), 6 - i);
        st_free(&r);
    }
    st_resp r = verify_pin(p, WANG_WEI, "000000");
    assert_int_equal(r.status, 423);
    assert_string_equal(st_code(&r), "pin_locked");
    assert_int_equal(json_integer_value(st_get(&r, "error.remaining_attempts")), 0);
    assert_string_equal(json_string_value(st_get(&r, "error.unlock")), "counter");
    st_free(&r);
    assert_int_equal(card_status(p, "A52870316"), 3);
    r = verify_pin(p, WANG_WEI, "246810");
    assert_int_equal(r.status, 423);
    st_free(&r);
    assert_int_equal(st_applied(p, "pin_verifications"), 6);
}

static void test_right_pin_resets_count(void **state)
{
    th_proc *p = *state;
    st_resp r = verify_pin(p, WANG_WEI, "000000");
    st_free(&r);
    r = verify_pin(p, WANG_WEI, "000001");
    assert_int_equal(json_integer_value(st_get(&r, "remaining_attempts")), 4);
    st_free(&r);
    r = verify_pin(p, WANG_WEI, "246810");
    assert_int_equal(r.status, 200);
    assert_true(json_is_true(st_get(&r, "verified")));
    assert_int_equal(json_integer_value(st_get(&r, "remaining_attempts")), 6);
    assert_string_equal(json_string_value(st_get(&r, "card_number")), "A52870316");
    st_free(&r);
    r = verify_pin(p, WANG_WEI, "000000");
    assert_int_equal(json_integer_value(st_get(&r, "remaining_attempts")), 5);
    st_free(&r);
}

static void test_initial_pin_flag(void **state)
{
    th_proc *p = *state;
    st_resp r = verify_pin(p, LI_NA, "123456");
    assert_int_equal(r.status, 200);
    assert_true(json_is_true(st_get(&r, "verified")));
    assert_true(json_is_true(st_get(&r, "initial_pin")));
    st_free(&r);
    r = verify_pin(p, WANG_WEI, "246810");
    assert_true(json_is_true(st_get(&r, "verified")));
    assert_true(json_is_false(st_get(&r, "initial_pin")));
    st_free(&r);
}

static void test_locked_pin_refused(void **state)
{
    th_proc *p = *state;
    st_resp r = verify_pin(p, CHEN_JING, "314159");
    assert_int_equal(r.status, 423);
    assert_string_equal(st_code(&r), "pin_locked");
    st_free(&r);
    assert_int_equal(st_applied(p, "pin_verifications"), 0);
}

static long long person_pin_count(const th_proc *p, const char *ssn)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/persons/%s", ssn);
    st_resp r = st_call(p, "GET", path, NULL, NULL);
    assert_int_equal(r.status, 200);
    json_t *n = st_get(&r, "pin.remaining_attempts");
    assert_true(json_is_integer(n));
    long long count = json_integer_value(n);
    st_free(&r);
    return count;
}

/* The person carries the count of the current card's PIN, and the count
 * never lapses with time: only a right PIN resets it. */
static void test_person_carries_pin_count(void **state)
{
    th_proc *p = *state;
    assert_int_equal(person_pin_count(p, WANG_WEI), 6);
    st_resp r = verify_pin(p, WANG_WEI, "000000");
    st_free(&r);
    r = verify_pin(p, WANG_WEI, "000001");
    st_free(&r);
    assert_int_equal(person_pin_count(p, WANG_WEI), 4);
    r = st_call(p, "POST", "/_sim/clock", "{\"advance_days\": 400}", NULL);
    assert_int_equal(r.status, 200);
    st_free(&r);
    assert_int_equal(person_pin_count(p, WANG_WEI), 4);

    assert_int_equal(person_pin_count(p, CHEN_JING), 0);
    r = st_call(p, "GET", "/v1/persons/" CHEN_JING, NULL, NULL);
    assert_true(json_is_true(st_get(&r, "pin.locked")));
    st_free(&r);
    r = st_call(p, "GET", "/v1/persons/120101200101013536", NULL, NULL); /* no card yet */
    assert_int_equal(r.status, 200);
    assert_true(json_is_null(st_get(&r, "pin")));
    st_free(&r);
}

/* --no-pin-count plays a registry older than the count: no answer carries
 * it, and the PIN rules are unchanged. */
static void test_no_pin_count(void **state)
{
    th_proc *p = *state;
    simtest_stop(p);
    simtest_start(p, (const char *const[]){"--no-pin-count", NULL});
    for (int i = 0; i < 5; i++) {
        st_resp r = verify_pin(p, WANG_WEI, "000000");
        assert_int_equal(r.status, 200);
        assert_true(json_is_false(st_get(&r, "verified")));
        assert_null(st_get(&r, "remaining_attempts"));
        st_free(&r);
    }
    st_resp r = verify_pin(p, WANG_WEI, "000000");
    assert_int_equal(r.status, 423);
    assert_null(st_get(&r, "error.remaining_attempts"));
    st_free(&r);
    r = st_call(p, "GET", "/v1/persons/" WANG_WEI, NULL, NULL);
    assert_true(json_is_true(st_get(&r, "pin.locked")));
    assert_null(st_get(&r, "pin.remaining_attempts"));
    st_free(&r);
    r = st_call(p, "GET", "/v1/cards/A52870316", NULL, NULL);
    assert_int_equal(json_integer_value(st_get(&r, "status")), 3);
    assert_null(st_get(&r, "pin.remaining_attempts"));
    st_free(&r);
}

static void test_malformed_pin_changes_nothing(void **state)
{
    th_proc *p = *state;
    expect(p, "POST", "/v1/persons/" WANG_WEI "/pin-verifications", "{\"pin\": \"12ab\"}", 400,
           "invalid_request");
    st_resp r = verify_pin(p, WANG_WEI, "000000");
    assert_int_equal(json_integer_value(st_get(&r, "remaining_attempts")), 5);
    st_free(&r);
}

/* Loss reports --------------------------------------------------------------*/

static st_resp report_loss(const th_proc *p, const char *card, const char *key)
{
    char path[96];
    snprintf(path, sizeof path, "/v1/cards/%s/loss-reports", card);
    return st_call(p, "POST", path, "{\"kind\": \"temporary\", \"channel\": \"voice\"}", key);
}

static void advance_days(const th_proc *p, int days)
{
    char body[64];
    snprintf(body, sizeof body, "{\"advance_days\": %d}", days);
    st_resp r = st_call(p, "POST", "/_sim/clock", body, NULL);
    assert_int_equal(r.status, 200);
    st_free(&r);
}

static void test_loss_report_lapses_after_loss_days(void **state)
{
    th_proc *p = *state;
    st_resp clock = st_call(p, "GET", "/_sim/clock", NULL, NULL);
    char expected_expiry[16];
    st_resp r = report_loss(p, "A52870316", st_key());
    assert_int_equal(r.status, 201);
    assert_string_equal(json_string_value(st_get(&r, "state")), "active");
    assert_string_equal(json_string_value(st_get(&r, "kind")), "temporary");
    snprintf(expected_expiry, sizeof expected_expiry, "%s", json_string_value(st_get(&r, "expires_on")));
    char id[32], path[128];
    snprintf(id, sizeof id, "%s", json_string_value(st_get(&r, "id")));
    st_free(&r);
    assert_int_equal(card_status(p, "A52870316"), 4);

    advance_days(p, 7);
    r = st_call(p, "GET", "/_sim/clock", NULL, NULL);
    assert_string_equal(json_string_value(st_get(&r, "today")), expected_expiry);
    assert_string_not_equal(json_string_value(st_get(&clock, "today")), expected_expiry);
    st_free(&r);
    st_free(&clock);
    assert_int_equal(card_status(p, "A52870316"), 4);

    advance_days(p, 1);
    r = st_call(p, "GET", "/v1/cards/A52870316", NULL, NULL);
    assert_int_equal(json_integer_value(st_get(&r, "status")), 1);
    assert_true(json_is_null(st_get(&r, "loss_report")));
    st_free(&r);
    snprintf(path, sizeof path, "/v1/cards/A52870316/loss-reports/%s/cancellation", id);
    expect(p, "POST", path, "{}", 409, "not_active");
}

static st_resp activate(const th_proc *p, const char *card, const char *ssn, const char *pin);

/* 刘洋's report is held by his replacement: it shows no end date, names
 * the application, and stays active long after its validity. */
static void test_reissue_holds_temporary_report(void **state)
{
    th_proc *p = *state;
    st_resp r = st_call(p, "GET", "/v1/cards/E81625073", NULL, NULL);
    assert_true(json_is_null(st_get(&r, "loss_report.expires_on")));
    assert_string_equal(json_string_value(st_get(&r, "loss_report.held_by")), "AP2026112100002");
    st_free(&r);
    advance_days(p, 60);
    r = st_call(p, "GET", "/v1/cards/E81625073", NULL, NULL);
    assert_int_equal(json_integer_value(st_get(&r, "status")), 4);
    assert_string_equal(json_string_value(st_get(&r, "loss_report.state")), "active");
    assert_string_equal(json_string_value(st_get(&r, "loss_report.id")), "LR2026112100007");
    st_free(&r);
    /* 张敏's, held by nothing, has its date and lapsed meanwhile. */
    r = st_call(p, "GET", "/v1/cards/D27159384", NULL, NULL);
    assert_int_equal(json_integer_value(st_get(&r, "status")), 1);
    assert_true(json_is_null(st_get(&r, "loss_report")));
    st_free(&r);
}

/* A new report carries its end date and no hold. */
static void test_report_carries_end_date(void **state)
{
    th_proc *p = *state;
    st_resp clock = st_call(p, "GET", "/_sim/clock", NULL, NULL);
    st_resp r = report_loss(p, "A52870316", st_key());
    assert_int_equal(r.status, 201);
    assert_true(json_is_null(st_get(&r, "held_by")));
    assert_true(json_is_string(st_get(&r, "expires_on")));
    assert_string_not_equal(json_string_value(st_get(&r, "expires_on")),
                            json_string_value(st_get(&clock, "today")));
    st_free(&r);
    st_free(&clock);
}

/* 赵丽's card reached the outlet on 2026-11-18: she collects it by the same
 * day a year later; from the day after, the application is `uncollected`
 * and the card cannot be activated. */
static void test_uncollected_card_sealed_after_a_year(void **state)
{
    th_proc *p = *state;
    st_resp r = st_call(p, "GET", "/v1/persons/" ZHAO_LI "/applications", NULL, NULL);
    json_t *app = json_array_get(st_get(&r, "applications"), 0);
    assert_string_equal(json_string_value(json_object_get(app, "collect_by")), "2027-11-18");
    assert_string_equal(json_string_value(json_object_get(app, "stage")), "at_outlet");
    st_free(&r);
    r = st_call(p, "POST", "/_sim/clock", "{\"today\": \"2027-11-18\"}", NULL);
    assert_int_equal(r.status, 200);
    st_free(&r);
    r = st_call(p, "GET", "/v1/persons/" ZHAO_LI "/applications", NULL, NULL);
    assert_string_equal(json_string_value(json_object_get(json_array_get(st_get(&r, "applications"), 0), "stage")),
                        "at_outlet");
    st_free(&r);
    advance_days(p, 1);
    r = st_call(p, "GET", "/v1/persons/" ZHAO_LI "/applications", NULL, NULL);
    app = json_array_get(st_get(&r, "applications"), 0);
    assert_string_equal(json_string_value(json_object_get(app, "stage")), "uncollected");
    assert_string_equal(json_string_value(json_object_get(app, "stage_date")), "2027-11-19");
    assert_true(json_is_null(json_object_get(app, "collect_by")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(app, "outlet"), "code")), "NJ-XW-01");
    st_free(&r);
    r = activate(p, "K90273658", ZHAO_LI, "482915");
    assert_int_equal(r.status, 409);
    assert_string_equal(json_string_value(st_get(&r, "error.stage")), "uncollected");
    st_free(&r);
    assert_int_equal(card_status(p, "K90273658"), 0);
}

/* Names in Chinese and English; opening hours as data and as text. */
static void test_english_names_and_hours(void **state)
{
    th_proc *p = *state;
    st_resp r = st_call(p, "GET", "/v1/cards/A52870316", NULL, NULL);
    assert_string_equal(json_string_value(st_get(&r, "bank.name")), "中国工商银行");
    assert_string_equal(json_string_value(st_get(&r, "bank.name_en")), "Industrial and Commercial Bank of China");
    st_free(&r);
    r = st_call(p, "GET", "/v1/persons/" WANG_WEI "/applications", NULL, NULL);
    json_t *outlet = json_object_get(json_array_get(st_get(&r, "applications"), 0), "outlet");
    assert_string_equal(json_string_value(json_object_get(outlet, "name_en")),
                        "Dongcheng District Social Security Service Centre");
    assert_string_equal(json_string_value(json_object_get(outlet, "address_en")),
                        "6 Chaoyangmen North Street, Dongcheng District, Beijing");
    assert_string_equal(json_string_value(json_object_get(outlet, "hours")), "Mon-Fri 09:00-17:00; Sat 09:00-12:00");
    json_t *sat = json_array_get(json_object_get(outlet, "opening_hours"), 1);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(sat, "days"), 0)), 6);
    assert_string_equal(json_string_value(json_object_get(sat, "close")), "12:00");
    st_free(&r);
}

static void test_settings(void **state)
{
    st_resp r = st_call(*state, "GET", "/v1/settings", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(st_get(&r, "temporary_loss_days")), 7);
    assert_int_equal(json_integer_value(st_get(&r, "collection_days")), 365);
    st_free(&r);
    th_proc other;
    simtest_start(&other, (const char *const[]){"--loss-days", "15", "--collect-days", "90", NULL});
    r = st_call(&other, "GET", "/v1/settings", NULL, NULL);
    assert_int_equal(json_integer_value(st_get(&r, "temporary_loss_days")), 15);
    assert_int_equal(json_integer_value(st_get(&r, "collection_days")), 90);
    st_free(&r);
    r = report_loss(&other, "A52870316", st_key());
    assert_int_equal(r.status, 201);
    st_free(&r);
    r = st_call(&other, "GET", "/v1/persons/" ZHAO_LI "/applications", NULL, NULL);
    assert_string_equal(json_string_value(json_object_get(json_array_get(st_get(&r, "applications"), 0),
                                                          "collect_by")), "2027-02-16");
    st_free(&r);
    simtest_stop(&other);
}

static void test_loss_report_only_on_normal_card(void **state)
{
    th_proc *p = *state;
    st_resp r = report_loss(p, "F43097216", st_key());
    assert_int_equal(r.status, 409);
    assert_string_equal(st_code(&r), "card_not_normal");
    assert_int_equal(json_integer_value(st_get(&r, "error.status")), 3);
    st_free(&r);
    expect(p, "POST", "/v1/cards/A52870316/loss-reports", "{\"kind\": \"formal\", \"channel\": \"voice\"}",
           422, "invalid_value");
    assert_int_equal(card_status(p, "A52870316"), 1);
    assert_int_equal(st_applied(p, "loss_reports"), 0);
}

static void test_cancel_allowed(void **state)
{
    th_proc *p = *state;
    st_resp r = st_call(p, "POST", "/v1/cards/D27159384/loss-reports/LR2026112000004/cancellation",
                        "{\"channel\": \"sms\"}", st_key());
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(st_get(&r, "state")), "cancelled");
    assert_true(json_is_string(st_get(&r, "cancelled_at")));
    st_free(&r);
    assert_int_equal(card_status(p, "D27159384"), 1);
    assert_int_equal(st_applied(p, "cancellations"), 1);
}

static void test_cancel_refused_not_temporary(void **state)
{
    expect(*state, "POST", "/v1/cards/G25738104/loss-reports/LR2026102300019/cancellation", "{}", 409,
           "not_temporary");
    assert_int_equal(card_status(*state, "G25738104"), 2);
}

static void test_cancel_refused_not_active(void **state)
{
    expect(*state, "POST", "/v1/cards/D27159384/loss-reports/LR2026052000011/cancellation", "{}", 409,
           "not_active");
    assert_int_equal(card_status(*state, "D27159384"), 4);
}

static void test_cancel_refused_reissue_requested(void **state)
{
    expect(*state, "POST", "/v1/cards/E81625073/loss-reports/LR2026112100007/cancellation", "{}", 409,
           "reissue_requested");
    assert_int_equal(card_status(*state, "E81625073"), 4);
    assert_int_equal(st_applied(*state, "cancellations"), 0);
}

static void test_cancel_unknown_report_404(void **state)
{
    expect(*state, "POST", "/v1/cards/A52870316/loss-reports/LR2026112000004/cancellation", "{}", 404,
           "not_found");
}

/* Contact details -----------------------------------------------------------*/

static void test_key_fields_refused(void **state)
{
    th_proc *p = *state;
    const char *fields[] = {"name", "ssn", "birth_date", "photo", "bank"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        char body[96];
        snprintf(body, sizeof body, "{\"mobile\": \"+8613900000009\", \"%s\": \"x\"}", fields[i]);
        st_resp r = st_call(p, "PATCH", "/v1/persons/" WANG_WEI, body, st_key());
        assert_int_equal(r.status, 422);
        assert_string_equal(st_code(&r), "field_not_updatable");
        assert_string_equal(json_string_value(st_get(&r, "error.field")), fields[i]);
        st_free(&r);
    }
    st_resp r = st_call(p, "GET", "/v1/persons/" WANG_WEI, NULL, NULL);
    assert_string_equal(json_string_value(st_get(&r, "name")), "王伟");
    assert_string_equal(json_string_value(st_get(&r, "mobile")), "+8613800000001");
    st_free(&r);
}

static void test_bad_mobile_refused(void **state)
{
    th_proc *p = *state;
    const char *bad[] = {"{\"mobile\": \"13800000001\"}", "{\"mobile\": \"+86138\"}",
                         "{\"mobile\": \"+86138000000011234\"}", "{\"mobile\": 8613800000001}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        st_resp r = st_call(p, "PATCH", "/v1/persons/" WANG_WEI, bad[i], st_key());
        assert_int_equal(r.status, 422);
        assert_string_equal(st_code(&r), "invalid_value");
        assert_string_equal(json_string_value(st_get(&r, "error.field")), "mobile");
        st_free(&r);
    }
    assert_int_equal(st_applied(p, "contact_updates"), 0);
    st_resp r = st_call(p, "PATCH", "/v1/persons/" WANG_WEI,
                        "{\"mobile\": \"+8613900000002\", \"address\": \"北京市东城区新址1号\"}", st_key());
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(st_get(&r, "mobile")), "+8613900000002");
    assert_string_equal(json_string_value(st_get(&r, "address")), "北京市东城区新址1号");
    st_free(&r);
    assert_int_equal(st_applied(p, "contact_updates"), 1);
}

/* Activation ----------------------------------------------------------------*/

static st_resp activate(const th_proc *p, const char *card, const char *ssn, const char *pin)
{
    char path[96], body[128];
    snprintf(path, sizeof path, "/v1/cards/%s/activation", card);
    snprintf(body, sizeof body, "{\"ssn\": \"%s\", \"new_pin\": \"%s\"}", ssn, pin);
    return st_call(p, "POST", path, body, st_key());
}

static void test_activation_refuses_weak_pins(void **state)
{
    th_proc *p = *state;
    static const char *const cases[][2] = {
        {"123456", "initial"}, {"777777", "repeated"}, {"234567", "sequence"}, {"987654", "sequence"},
        {"750505", "birth_date"}, {"050575", "birth_date"}, {"12a456", "malformed"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        st_resp r = activate(p, "H70461592", YANG_LEI, cases[i][0]);
        assert_int_equal(r.status, 422);
        assert_string_equal(st_code(&r), "pin_too_weak");
        assert_string_equal(json_string_value(st_get(&r, "error.reason")), cases[i][1]);
        st_free(&r);
    }
    assert_int_equal(card_status(p, "H70461592"), 0);
    assert_int_equal(st_applied(p, "activations"), 0);
}

static void test_activation_refuses_card_not_sealed(void **state)
{
    st_resp r = activate(*state, "A52870316", WANG_WEI, "482915");
    assert_int_equal(r.status, 409);
    assert_string_equal(st_code(&r), "card_not_activatable");
    assert_int_equal(json_integer_value(st_get(&r, "error.status")), 1);
    st_free(&r);
}

static void test_activation_refuses_uncollected_card(void **state)
{
    st_resp r = activate(*state, "K90273658", ZHAO_LI, "482915");
    assert_int_equal(r.status, 409);
    assert_string_equal(st_code(&r), "card_not_activatable");
    assert_int_equal(json_integer_value(st_get(&r, "error.status")), 0);
    assert_string_equal(json_string_value(st_get(&r, "error.stage")), "at_outlet");
    st_free(&r);
    assert_int_equal(card_status(*state, "K90273658"), 0);
}

static void test_activation_refuses_other_holder(void **state)
{
    st_resp r = activate(*state, "H70461592", WANG_WEI, "482915");
    assert_int_equal(r.status, 404);
    assert_string_equal(st_code(&r), "not_found");
    st_free(&r);
}

static void test_activation_success(void **state)
{
    th_proc *p = *state;
    st_resp r = activate(p, "H70461592", YANG_LEI, "482915");
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(st_get(&r, "status")), 1);
    assert_true(json_is_true(st_get(&r, "current")));
    assert_true(json_is_false(st_get(&r, "pin.initial")));
    assert_string_equal(json_string_value(st_get(&r, "replaces")), "G25738104");
    st_free(&r);
    r = st_call(p, "GET", "/v1/cards/G25738104", NULL, NULL);
    assert_true(json_is_false(st_get(&r, "current")));
    assert_string_equal(json_string_value(st_get(&r, "replaced_by")), "H70461592");
    st_free(&r);
    r = st_call(p, "GET", "/v1/persons/" YANG_LEI "/applications", NULL, NULL);
    assert_string_equal(json_string_value(json_object_get(json_array_get(st_get(&r, "applications"), 0), "stage")),
                        "activated");
    st_free(&r);
    r = verify_pin(p, YANG_LEI, "482915");
    assert_true(json_is_true(st_get(&r, "verified")));
    assert_string_equal(json_string_value(st_get(&r, "card_number")), "H70461592");
    st_free(&r);
    assert_int_equal(st_applied(p, "activations"), 1);
}

/* Idempotency ---------------------------------------------------------------*/

static void test_idempotent_replay(void **state)
{
    th_proc *p = *state;
    char key[48], header[80];
    snprintf(key, sizeof key, "%s", st_key());
    snprintf(header, sizeof header, "Idempotency-Key: %s", key);
    const char *headers[] = {header, NULL};
    const char *body = "{\"kind\": \"temporary\", \"channel\": \"ussd\"}";
    st_resp first = st_call_h(p, "POST", "/v1/cards/A52870316/loss-reports", body, headers);
    st_resp again = st_call_h(p, "POST", "/v1/cards/A52870316/loss-reports", body, headers);
    assert_int_equal(first.status, 201);
    assert_int_equal(again.status, 201);
    assert_string_equal(st_header(&first, "Idempotent-Replayed"), "");
    assert_string_equal(st_header(&again, "Idempotent-Replayed"), "true");
    assert_string_equal(json_string_value(st_get(&first, "id")), json_string_value(st_get(&again, "id")));
    st_free(&first);
    st_free(&again);
    assert_int_equal(st_applied(p, "loss_reports"), 1);
    assert_int_equal(st_stat(p, "replays"), 1);
}

static void test_idempotency_key_reused(void **state)
{
    th_proc *p = *state;
    char key[48];
    snprintf(key, sizeof key, "%s", st_key());
    st_resp r = st_call(p, "PATCH", "/v1/persons/" WANG_WEI, "{\"mobile\": \"+8613900000001\"}", key);
    assert_int_equal(r.status, 200);
    st_free(&r);
    r = st_call(p, "PATCH", "/v1/persons/" WANG_WEI, "{\"mobile\": \"+8613900000003\"}", key);
    assert_int_equal(r.status, 422);
    assert_string_equal(st_code(&r), "idempotency_key_reused");
    st_free(&r);
    r = st_call(p, "PATCH", "/v1/persons/" LI_NA, "{\"mobile\": \"+8613900000001\"}", key);
    assert_int_equal(r.status, 422);
    st_free(&r);
    r = st_call(p, "GET", "/v1/persons/" WANG_WEI, NULL, NULL);
    assert_string_equal(json_string_value(st_get(&r, "mobile")), "+8613900000001");
    st_free(&r);
    assert_int_equal(st_applied(p, "contact_updates"), 1);
}

static void test_missing_key_refused(void **state)
{
    th_proc *p = *state;
    st_resp r = st_call(p, "POST", "/v1/cards/A52870316/loss-reports",
                        "{\"kind\": \"temporary\", \"channel\": \"voice\"}", NULL);
    assert_int_equal(r.status, 400);
    assert_string_equal(st_code(&r), "idempotency_key_required");
    st_free(&r);
    r = st_call(p, "POST", "/v1/cards/A52870316/loss-reports",
                "{\"kind\": \"temporary\", \"channel\": \"voice\"}", "bad key!");
    assert_int_equal(r.status, 400);
    assert_string_equal(st_code(&r), "invalid_request");
    st_free(&r);
    assert_int_equal(card_status(p, "A52870316"), 1);
}

/* Identifiers, lists, limits, routing ---------------------------------------*/

static void test_malformed_identifiers_400(void **state)
{
    th_proc *p = *state;
    expect(p, "GET", "/v1/persons/110101199003074515", NULL, 400, "invalid_request");
    expect(p, "GET", "/v1/persons/11010119900307451", NULL, 400, "invalid_request");
    expect(p, "GET", "/v1/cards/a1000000!", NULL, 400, "invalid_request");
    st_resp r = st_call(p, "GET", "/v1/persons/51010719880214226x", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(st_get(&r, "ssn")), CHEN_JING);
    st_free(&r);
}

static void test_unknown_person_404(void **state)
{
    th_proc *p = *state;
    const char *headers[] = {"X-Request-Id: test-req-42", NULL};
    st_resp r = st_call_h(p, "GET", "/v1/persons/" NOBODY, NULL, headers);
    assert_int_equal(r.status, 404);
    assert_string_equal(st_code(&r), "not_found");
    assert_string_equal(json_string_value(st_get(&r, "error.request_id")), "test-req-42");
    assert_string_equal(st_header(&r, "X-Request-Id"), "test-req-42");
    st_free(&r);
    expect(p, "POST", "/v1/persons/" NOBODY "/pin-verifications", "{\"pin\": \"246810\"}", 404, "not_found");
    expect(p, "GET", "/v1/persons/120101200101013536", NULL, 200, "");
    expect(p, "POST", "/v1/persons/120101200101013536/pin-verifications", "{\"pin\": \"246810\"}", 404,
           "not_found");
}

static void test_pagination_walks_all_cards(void **state)
{
    th_proc *p = *state;
    const char *expected[] = {"G25738104", "H70461592"};
    char path[256] = "/v1/persons/" YANG_LEI "/cards?page_size=1";
    size_t seen = 0;
    for (;;) {
        st_resp r = st_call(p, "GET", path, NULL, NULL);
        assert_int_equal(r.status, 200);
        json_t *cards = st_get(&r, "cards");
        assert_int_equal(json_array_size(cards), 1);
        assert_true(seen < 2);
        assert_string_equal(json_string_value(json_object_get(json_array_get(cards, 0), "card_number")),
                            expected[seen++]);
        json_t *next = st_get(&r, "next_page_token");
        if (json_is_null(next)) {
            st_free(&r);
            break;
        }
        snprintf(path, sizeof path, "/v1/persons/" YANG_LEI "/cards?page_size=1&page_token=%s",
                 json_string_value(next));
        st_free(&r);
    }
    assert_int_equal(seen, 2);
}

static void test_pagination_bad_parameters_400(void **state)
{
    th_proc *p = *state;
    st_resp r = st_call(p, "GET", "/v1/persons/" YANG_LEI "/cards?page_size=1", NULL, NULL);
    char path[256];
    snprintf(path, sizeof path, "/v1/persons/" WANG_WEI "/cards?page_token=%s",
             json_string_value(st_get(&r, "next_page_token")));
    st_free(&r);
    expect(p, "GET", path, NULL, 400, "invalid_request");
    expect(p, "GET", "/v1/persons/" YANG_LEI "/cards?page_token=garbage", NULL, 400, "invalid_request");
    expect(p, "GET", "/v1/persons/" YANG_LEI "/cards?page_size=0", NULL, 400, "invalid_request");
    expect(p, "GET", "/v1/persons/" YANG_LEI "/applications?page_size=101", NULL, 400, "invalid_request");
}

static void test_body_too_large_413(void **state)
{
    th_proc *p = *state;
    size_t n = 20 * 1024;
    char *body = malloc(n + 32);
    int head = snprintf(body, n + 32, "{\"address\": \"");
    memset(body + head, 'a', n);
    strcpy(body + head + n, "\"}");
    st_resp r = st_call(p, "PATCH", "/v1/persons/" WANG_WEI, body, st_key());
    free(body);
    assert_int_equal(r.status, 413);
    assert_string_equal(st_code(&r), "payload_too_large");
    st_free(&r);
    assert_int_equal(st_applied(p, "contact_updates"), 0);
}

static void test_wrong_method_405_unknown_path_404(void **state)
{
    th_proc *p = *state;
    st_resp r = st_call_h(p, "DELETE", "/v1/persons/" WANG_WEI, NULL, NULL);
    assert_int_equal(r.status, 405);
    assert_string_equal(st_code(&r), "method_not_allowed");
    assert_string_equal(st_header(&r, "Allow"), "GET, PATCH");
    st_free(&r);
    expect(p, "POST", "/v1/cards/A52870316", "{}", 405, "method_not_allowed");
    expect(p, "GET", "/v1/nothing/here", NULL, 404, "not_found");
    expect(p, "GET", "/v1/persons/" WANG_WEI "/", NULL, 404, "not_found");
}

static void test_body_not_object_400(void **state)
{
    th_proc *p = *state;
    expect(p, "PATCH", "/v1/persons/" WANG_WEI, "[1, 2]", 400, "invalid_request");
    expect(p, "PATCH", "/v1/persons/" WANG_WEI, "{\"mobile\": ", 400, "invalid_request");
    expect(p, "POST", "/v1/cards/A52870316/loss-reports", "{\"kind\": \"temporary\"}", 400, "invalid_request");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pin_locks_after_six_wrong, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_right_pin_resets_count, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_initial_pin_flag, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_locked_pin_refused, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_person_carries_pin_count, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_no_pin_count, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_malformed_pin_changes_nothing, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_loss_report_lapses_after_loss_days, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_reissue_holds_temporary_report, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_report_carries_end_date, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_uncollected_card_sealed_after_a_year, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_english_names_and_hours, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_settings, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_loss_report_only_on_normal_card, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_allowed, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_refused_not_temporary, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_refused_not_active, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_refused_reissue_requested, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_unknown_report_404, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_key_fields_refused, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_bad_mobile_refused, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_activation_refuses_weak_pins, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_activation_refuses_card_not_sealed, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_activation_refuses_uncollected_card, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_activation_refuses_other_holder, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_activation_success, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_replay, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_idempotency_key_reused, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_missing_key_refused, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_malformed_identifiers_400, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_person_404, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_pagination_walks_all_cards, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_pagination_bad_parameters_400, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_body_too_large_413, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_method_405_unknown_path_404, simtest_setup, simtest_teardown),
        cmocka_unit_test_setup_teardown(test_body_not_object_400, simtest_setup, simtest_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
