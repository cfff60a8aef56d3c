/* test_typeahead — an ID and a PIN typed ahead never reach Redis or an
 * agent. The real cardline daemon against a real redis-server (AOF on,
 * fsync always, so the file on disk holds every write) and the registry
 * simulator (demo seed). Citizens who know the menus type ahead: on USSD
 * the whole history `1*3*ID*PIN` arrives at a menu (the channel derives
 * the newest input from it, gateway/ussd), by SMS the ID and PIN are texted
 * at the wrong moment — at every kind of waiting node (two menus, an ask
 * with a validator, a secret ask, an ask without a validator; SMS has no
 * secret ask, since it never asks for the PIN) and, by SMS, when no
 * conversation waits. The identification itself is done with
 * another citizen's ID and PIN (刘 … 2922, the sender's registered mobile),
 * whose PIN must not be stored either.
 *
 * Checked: no key, no value of any key and no byte of the AOF holds the
 * typed-ahead ID or PIN or the identifying PIN (as a number of its own: a
 * digit run, not part of a longer one such as a timestamp); the context a
 * supervisor (who sees numbers unmasked) reads holds none of them; and each
 * node did record an input event, so the inputs did reach them. Every wait
 * is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents_world.h"

#define ID "110101199003074514"           /* 王伟's citizen ID: typed ahead */
#define PIN "246810"                      /* his service PIN: typed ahead */
#define TYPED_AHEAD "1*3*" ID "*" PIN     /* at the language menu, knowing the menus */
#define TEXTED ID " " PIN                 /* an SMS with both */
#define OWN_ID "370102196807202922"       /* the citizen who identifies (normal card L58304167) */
#define OWN_PIN "620418"
#define PHONE "+8613800000009"            /* his registered mobile: sends the SMS, dials USSD */
#define USSD_SID "typeahead-1"
#define USSD_PATH "/v1/sessions/ussd:" USSD_SID
#define SMS_PATH "/v1/sessions/sms:%2B8613800000009"
#define SUPERVISOR "Authorization: Bearer tok-wang"

/* Small helpers -------------------------------------------------------------------*/

/* Fails naming `where` when `text` holds any of the three numbers. */
static void assert_clean(const char *where, const char *text, size_t len)
{
    const char *const numbers[] = {ID, PIN, OWN_PIN};
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++)
        if (th_has_number(text, len, numbers[i]))
            fail_msg("%s holds %s: %.*s", where, numbers[i], (int)(len > 4000 ? 4000 : len), text);
}

/* Channels: USSD and SMS as the aggregator and Kannel send them ---------------------------*/

/* One USSD request: `input` joins the history with `*` (NULL: the dial);
 * the reply must be 200 and contain `needle`. */
static void ussd(const char *input, const char *needle)
{
    aw_ussd(USSD_SID, PHONE, input, needle);
}

/* One SMS from PHONE; the reply must be 200 and contain `needle`. */
static void sms(const char *text, const char *needle)
{
    aw_sms(PHONE, text, needle);
}

/* Where it could be kept ------------------------------------------------------------*/

/* The context a supervisor reads: clean of the numbers; the nodes of its
 * input events, joined by spaces, into `nodes`. */
static void check_context(const char *path, char *nodes, size_t size)
{
    const char *headers[] = {SUPERVISOR, NULL};
    th_response r = th_request(aw_world_get()->api_port, "GET", path, NULL, headers);
    if (r.status != 200)
        fail_msg("GET %s: %ld %s", path, r.status, r.body);
    assert_clean(path, r.body, strlen(r.body));
    json_t *ctx = json_loads(r.body, 0, NULL);
    assert_non_null(ctx);
    nodes[0] = '\0';
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(ctx, "events"), i, e) {
        if (strcmp(json_string_value(json_object_get(e, "kind")), "input") != 0)
            continue;
        size_t used = strlen(nodes);
        snprintf(nodes + used, size - used, "%s ", json_string_value(json_object_get(e, "node")));
    }
    json_decref(ctx);
    th_response_free(&r);
}

/* Every key with every member and value, whatever its type. */
static void check_redis_keys(void)
{
    char *all = th_redis_dump(&aw_world_get()->tw.redis);
    assert_non_null(all);
    assert_non_null(strstr(all, "cl:e:ussd:" USSD_SID));   /* the search saw the event lists */
    assert_clean("Redis", all, strlen(all));
    free(all);
}

/* Every file of the AOF directory, byte for byte. */
static void check_aof(void)
{
    size_t len = 0;
    char *bytes = th_redis_aof(&aw_world_get()->tw.redis, &len);
    assert_non_null(bytes);
    assert_clean("the AOF", bytes, len);
    free(bytes);
}

/* The world ---------------------------------------------------------------------------*/

static int setup(void **state)
{
    static const aw_agent supervisor[] = {{"wang", "supervisor", "tok-wang", ""}};
    return aw_setup(state, "typeahead", true, supervisor, 1, "");
}

/* The test ------------------------------------------------------------------------------*/

/* USSD, one session through every kind of waiting node: at each the ID and
 * PIN typed ahead (refused; the node asks again), then the right answer. */
static void ussd_journey(void)
{
    ussd(NULL, "CON ");
    ussd(TYPED_AHEAD, "CON ");                  /* main.choose_lang (menu) */
    ussd("1", "CON ");
    ussd("2*" ID "*" PIN, "CON ");              /* main.main_menu (menu) */
    ussd("2", "CON ");
    ussd(ID "*" PIN, "CON ");                   /* identify.ask_id (validator) */
    ussd(OWN_ID, "CON ");
    ussd(ID "*" PIN, "CON ");                   /* identify.ask_pin (secret) */
    ussd(PIN, "CON ");                          /* a wrong PIN: asked again */
    ussd(OWN_PIN, "CON ");
    ussd(ID "*" PIN, "CON ");                   /* loss.ask_last4 (no validator) */
    ussd("4167", "CON ");
    ussd(ID "*" PIN, "CON ");                   /* loss.confirm (menu) */
}

/* SMS, one conversation through the same nodes, then texts with no
 * conversation waiting (each starts the catch-all's help). */
static void sms_journey(void)
{
    sms("CX", "身份证");
    sms(TEXTED, "身份证");                      /* identify.ask_id */
    sms(PIN, "身份证");
    sms(OWN_ID, "状态");                        /* SMS asks no PIN: the sender and the ID */
    sms(TEXTED, "");                            /* main.after_task: asked again twice, */
    sms(PIN, "");
    sms(ID, "");                                /* then the conversation ends */
}

static void test_typed_ahead_is_kept_nowhere(void **state)
{
    (void)state;
    char nodes[2048];
    ussd_journey();
    check_context(USSD_PATH, nodes, sizeof nodes);
    assert_string_equal(nodes, "main.choose_lang main.choose_lang main.main_menu main.main_menu "
                               "identify.ask_id identify.ask_id identify.ask_pin identify.ask_pin "
                               "identify.ask_pin loss.ask_last4 loss.ask_last4 loss.confirm ");

    sms_journey();
    check_context(SMS_PATH, nodes, sizeof nodes);
    assert_string_equal(nodes, "identify.ask_id identify.ask_id identify.ask_id main.after_task "
                               "main.after_task main.after_task ");
    sms(PIN, "");                               /* none waits: each starts anew */
    sms(TEXTED, "");
    check_context(SMS_PATH, nodes, sizeof nodes);

    check_redis_keys();
    check_aof();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_typed_ahead_is_kept_nowhere),
    };
    return cmocka_run_group_tests(tests, setup, aw_teardown);
}
