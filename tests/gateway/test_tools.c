/* The terminal tools against the real thing: cardline-phone's command line
 * (help is not an error, a usage error is) and a piped USSD session
 * against a running cardline daemon, whose output must show the answers;
 * and cardline-sim, which must not warn about a per-process digest key it
 * cannot help having. Real redis-server and registry simulator on free
 * loopback ports; every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "world.h"

#define WAIT_MS 15000
#define OUT_MAX 16384
#define CALLER "+8613800000001"

/* Runs a shell command line; its stdout (and stderr when `merge`) in out. */
static int run(const char *cmd, bool merge, char *out, size_t cap)
{
    char full[2048];
    snprintf(full, sizeof full, "%s %s", cmd, merge ? "2>&1" : "2>/dev/null");
    return th_run(full, out, cap);
}

static int start_world(void **state)
{
    tw_world *w = calloc(1, sizeof *w);
    *state = w;
    tw_init(w, "cl-tools");
    if (!tw_start_servers(w, false, NULL, NULL))
        return -1;
    th_write_filef(w->conf,
                   "[log]\nlevel = info\n"
                   "[http]\nlisten = 127.0.0.1:%d\n"
                   "[redis]\nport = %d\n"
                   "[registry]\nurl = http://127.0.0.1:%d\nread_retries = 0\n"
                   "[dialplans]\ndir = %s/dialplans\n"
                   "[ussd]\n" TH_USSD_SECRET_LINE "[sms]\n" TH_SMS_KEY_LINE,
                   w->http_port, w->redis.port, w->sim.port, CL_SOURCE_DIR);
    return tw_start_gateway(w, false, WAIT_MS) ? 0 : -1;
}

static int stop_world(void **state)
{
    tw_stop(*state, 0);
    free(*state);
    return 0;
}

/* cardline-phone ----------------------------------------------------------------*/

static void test_phone_help_is_not_an_error(void **state)
{
    (void)state;
    char out[OUT_MAX];
    assert_int_equal(run(CL_PHONE_BIN " --help", false, out, sizeof out), 0);
    assert_non_null(strstr(out, "usage: cardline-phone"));
    assert_int_equal(run(CL_PHONE_BIN " ussd '*123#' -h", false, out, sizeof out), 0);
    assert_non_null(strstr(out, "usage: cardline-phone"));
}

static void test_phone_usage_error_exits_2_on_stderr(void **state)
{
    (void)state;
    char out[OUT_MAX];
    assert_int_equal(run(CL_PHONE_BIN " --frobnicate", false, out, sizeof out), 2);
    assert_string_equal(out, ""); /* nothing on stdout */
    assert_int_equal(run(CL_PHONE_BIN " --frobnicate", true, out, sizeof out), 2);
    assert_non_null(strstr(out, "usage: cardline-phone"));
    assert_int_equal(run(CL_PHONE_BIN " ussd '*123#'", true, out, sizeof out), 2); /* no --from */
}

/* Piped answers: 2 picks English at the language menu; the output shows
 * each answer after its prompt, as a terminal would have. */
static void test_phone_echoes_piped_answers(void **state)
{
    tw_world *w = *state;
    char cmd[1024], out[OUT_MAX];
    snprintf(cmd, sizeof cmd,
             "printf '2\\n' | " CL_PHONE_BIN " ussd '*123#' --from '" CALLER "'"
             " --url http://127.0.0.1:%d --secret \"" TH_USSD_SECRET "\"",
             w->http_port);
    run(cmd, true, out, sizeof out);
    if (strstr(out, "ussd> 2\n") == NULL)
        fail_msg("no echoed answer in:\n%s", out);
    char *after = strstr(out, "ussd> 2\n") + strlen("ussd> 2\n");
    if (strstr(after, "ussd> ") == NULL)
        fail_msg("no page after the answer in:\n%s", out);
}

/* cardline-sim ------------------------------------------------------------------*/

/* The config names no digest_secret: a simulator session is one process,
 * so a per-process key is what it wants, and it does not warn. */
static void test_sim_does_not_warn_of_its_digest_key(void **state)
{
    tw_world *w = *state;
    char cmd[1024], out[OUT_MAX];
    snprintf(cmd, sizeof cmd,
             CL_CARDLINE_SIM_BIN " --config %s --channel ussd --from '" CALLER "' --entry '*123#'"
             " </dev/null",
             w->conf);
    assert_int_equal(run(cmd, true, out, sizeof out), 0);
    assert_non_null(strstr(out, "[reply:")); /* the session ran */
    if (strstr(out, "digest_secret") != NULL)
        fail_msg("cardline-sim warned:\n%s", out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_phone_help_is_not_an_error),
        cmocka_unit_test(test_phone_usage_error_exits_2_on_stderr),
        cmocka_unit_test(test_phone_echoes_piped_answers),
        cmocka_unit_test(test_sim_does_not_warn_of_its_digest_key),
    };
    return cmocka_run_group_tests(tests, start_world, stop_world);
}
