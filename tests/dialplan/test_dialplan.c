/* The dialplan language: every check with its file:line, the shipped
 * dialplans, routing, input acceptance, menus, rendering and lifetime.
 *
 * Each check case is a fixture directory under cases/; most are loaded
 * together with cases/_base (a clean minimal set) so that the case's file
 * holds only the problem under test and the error count is exact. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dialplan.h"
#include "handlers.h"
#include "harness.h"

/* A fixture handler table for the checker cases, frozen so the cases do not
 * move with the product's handlers (the shipped set uses those); run is
 * never called here. */
static void never_run(handler_call *c)
{
    (void)c;
    fail();
}

static const char *const vi_args[] = {"id", "pin", NULL};
static const char *const vi_secret[] = {"pin", NULL};
static const char *const vi_ok[] = {"verified_id", "card", "pin_initial", NULL};
static const char *const vi_wrong[] = {"attempts_left", NULL};
static const handler_result vi_results[] = {{"ok", vi_ok},          {"wrong_pin", vi_wrong}, {"locked", NULL},
                                            {"not_found", NULL},    {"unavailable", NULL},   {NULL, NULL}};
static const char *const cs_args[] = {"id", NULL};
static const char *const cs_ok[] = {"card", "card_status", "bank_name", "bank_hotline", NULL};
static const handler_result cs_results[] = {{"ok", cs_ok}, {"no_card", NULL}, {"unavailable", NULL}, {NULL, NULL}};
static const handler_def table[] = {
    {"verify_identity", vi_args, NULL, vi_secret, vi_results, never_run},
    {"card_status", cs_args, NULL, NULL, cs_results, never_run},
};

static const handler_def *lookup(const char *name)
{
    for (size_t i = 0; i < sizeof table / sizeof *table; i++)
        if (!strcmp(table[i].name, name))
            return &table[i];
    return NULL;
}

/* Fixture directories ------------------------------------------------------*/

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
}

static void copy_dir(const char *from, const char *to)
{
    DIR *d = opendir(from);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char a[512], b[512];
        snprintf(a, sizeof a, "%s/%s", from, e->d_name);
        snprintf(b, sizeof b, "%s/%s", to, e->d_name);
        copy_file(a, b);
    }
    closedir(d);
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* A fresh directory holding cases/_base (if `base`) and cases/<kind>. */
static void stage(char dir[256], const char *kind, bool base)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, 256, "%s/cl-dp-XXXXXX", tmp);
    assert_non_null(mkdtemp(dir));
    if (base)
        copy_dir(CL_CASES_DIR "/_base", dir);
    if (kind) {
        char src[512];
        snprintf(src, sizeof src, "%s/%s", CL_CASES_DIR, kind);
        copy_dir(src, dir);
    }
}

static void print_errors(const dp_errors *e)
{
    for (size_t i = 0; i < e->count; i++)
        print_message("  %s\n", e->lines[i]);
}

/* Loads `dir`, expecting it to be refused with exactly `count` problems. */
static void load_broken(const char *dir, size_t count, dp_errors *errs)
{
    dialplan *dp = dialplan_load(dir, lookup, errs);
    if (dp || errs->count != count) {
        print_message("expected %zu problems, got %zu:\n", count, errs->count);
        print_errors(errs);
    }
    assert_null(dp);
    assert_int_equal(errs->count, count);
}

/* Some line is "…/WHERE: …FRAGMENT…", WHERE being "file.yaml:LINE". */
static void expect_problem(const dp_errors *e, const char *where, const char *fragment)
{
    char prefix[128];
    snprintf(prefix, sizeof prefix, "/%s: ", where);
    for (size_t i = 0; i < e->count; i++)
        if (strstr(e->lines[i], prefix) && strstr(strstr(e->lines[i], prefix), fragment))
            return;
    print_message("no problem '%s' at %s among:\n", fragment, where);
    print_errors(e);
    fail();
}

typedef struct {
    const char *where;
    const char *fragment;
} expected;

static void check_case(const char *kind, bool base, const expected *exp, size_t n)
{
    char dir[256];
    stage(dir, kind, base);
    dp_errors errs;
    load_broken(dir, n, &errs);
    for (size_t i = 0; i < n; i++)
        expect_problem(&errs, exp[i].where, exp[i].fragment);
    dp_errors_free(&errs);
    remove_dir(dir);
}

#define CASE(kind, ...)                                                                                      \
    do {                                                                                                     \
        const expected exp_[] = {__VA_ARGS__};                                                               \
        check_case(kind, true, exp_, sizeof exp_ / sizeof *exp_);                                            \
    } while (0)

/* One test per check --------------------------------------------------------*/

static void test_base_fixture_is_clean(void **state)
{
    (void)state;
    char dir[256];
    stage(dir, NULL, true);
    dp_errors errs;
    dialplan *dp = dialplan_load(dir, lookup, &errs);
    print_errors(&errs);
    assert_non_null(dp);
    assert_int_equal(errs.count, 0);
    dialplan_unref(dp);
    remove_dir(dir);
}

static void test_yaml_syntax_error(void **state)
{
    (void)state;
    CASE("yaml_syntax", {"case.yaml:4", "YAML syntax error"});
}

static void test_unknown_key(void **state)
{
    (void)state;
    CASE("unknown_key", {"case.yaml:1", "unknown key 'flwos'"});
}

static void test_wrong_types(void **state)
{
    (void)state;
    CASE("wrong_type", {"case.yaml:8", "timeout_ms must be a whole number"},
         {"case.yaml:9", "options must be a mapping"});
}

static void test_missing_required_key(void **state)
{
    (void)state;
    CASE("missing_key", {"case.yaml:7", "ask 'a' needs 'into'"});
}

static void test_duplicate_names(void **state)
{
    (void)state;
    CASE("duplicate_names", {"a.yaml:5", "duplicate key 'x'"}, {"b.yaml:2", "duplicate flow 'twice'"},
         {"a.yaml:2", "unreachable flow 'twice'"});
}

/* Reported at each later definition, naming the first one, and the later
 * one dropped: 'only_zh' is missing in 'en' once, not twice. The message
 * holds the staged directory, hence no CASE. */
static void test_duplicate_prompts(void **state)
{
    (void)state;
    char dir[256];
    stage(dir, "duplicate_prompt", true);
    dp_errors errs;
    load_broken(dir, 5, &errs);
    char bye_zh[400], bye_en[400], only_zh[400];
    snprintf(bye_zh, sizeof bye_zh, "prompt 'bye' (zh) already defined at %s/00-base.yaml:12", dir);
    snprintf(bye_en, sizeof bye_en, "prompt 'bye' (en) already defined at %s/00-base.yaml:13", dir);
    snprintf(only_zh, sizeof only_zh, "prompt 'only_zh' (zh) already defined at %s/a.yaml:4", dir);
    expect_problem(&errs, "a.yaml:3", bye_zh);
    expect_problem(&errs, "a.yaml:4", "prompt 'only_zh' missing in language 'en'");
    expect_problem(&errs, "b.yaml:3", bye_zh);
    expect_problem(&errs, "b.yaml:4", only_zh);
    expect_problem(&errs, "b.yaml:6", bye_en);
    dp_errors_free(&errs);
    remove_dir(dir);
}

static void test_unknown_targets(void **state)
{
    (void)state;
    CASE("unknown_target", {"case.yaml:9", "unknown target 'nowhere' in flow 't'"},
         {"case.yaml:10", "flow 'base' has no node 'nowhere'"}, {"case.yaml:11", "unknown flow 'ghost'"});
}

static void test_unreachable_nodes_and_flows(void **state)
{
    (void)state;
    CASE("unreachable", {"case.yaml:7", "unreachable node 'orphan' in flow 't'"},
         {"case.yaml:8", "unreachable flow 'lonely'"});
}

static void test_undefined_handler(void **state)
{
    (void)state;
    CASE("undefined_handler", {"case.yaml:7", "unknown handler 'make_coffee'"});
}

static void test_call_arguments(void **state)
{
    (void)state;
    CASE("call_args", {"case.yaml:8", "takes no argument 'idd'"}, {"case.yaml:7", "missing argument 'id'"});
}

static void test_branch_on_undeclared_result(void **state)
{
    (void)state;
    CASE("unknown_result", {"case.yaml:11", "handler 'card_status' has no result 'maybe'"});
}

static void test_declared_result_not_handled(void **state)
{
    (void)state;
    CASE("unhandled_result", {"case.yaml:10", "result 'unavailable' of handler 'card_status' is not handled"});
}

static void test_variable_used_before_set(void **state)
{
    (void)state;
    CASE("var_before_set", {"case.yaml:15", "variable 'id' may be used before it is set"},
         {"case.yaml:15", "variable 'nothing' is never set"});
}

static void test_secret_used_outside_secret_argument(void **state)
{
    (void)state;
    CASE("secret_misuse", {"case.yaml:11", "secret variable 'pin' may only be passed"},
         {"case.yaml:14", "secret variable 'pin' may only be passed"});
}

static void test_secret_used_after_waiting_node(void **state)
{
    (void)state;
    CASE("secret_after_wait", {"case.yaml:18", "secret variable 'pin' is not available here"});
}

static void test_prompts_missing(void **state)
{
    (void)state;
    CASE("missing_prompt", {"case.yaml:11", "prompt 'only_zh' missing in language 'en'"},
         {"case.yaml:6", "unknown prompt 'nowhere'"});
}

static void test_bad_placeholders(void **state)
{
    (void)state;
    CASE("bad_render", {"case.yaml:3", "unknown rendering"}, {"case.yaml:4", "unmatched '}'"});
}

static void test_option_keys(void **state)
{
    (void)state;
    CASE("option_keys", {"case.yaml:10", "duplicate key '1'"}, {"case.yaml:11", "option key must be 1..16"});
}

static void test_ussd_question_fits_one_page(void **state)
{
    (void)state;
    CASE("ussd_page",
         {"case.yaml:20", "prompt 'long_menu' (zh) of menu 'a' does not fit one USSD page: 81 UCS-2 units, at most 80"},
         {"case.yaml:26", "prompt 'code' (en) of ask 'b' does not fit one USSD page: 86 UCS-2 units, at most 80"});
    /* Without USSD wording there is nothing to measure: reported once, as such. */
    CASE("ussd_page_no_wording", {"case.yaml:9", "prompt 'q' has no wording for ussd"},
         {"case.yaml:10", "prompt 'q' has no wording for ussd"});
}

static void test_input_free_loop(void **state)
{
    (void)state;
    CASE("loop", {"case.yaml:6", "input-free loop: a -> b -> a"});
}

static void test_bad_patterns_with_offset(void **state)
{
    (void)state;
    CASE("bad_pattern", {"case.yaml:2", "route pattern error at offset 4: missing closing parenthesis"},
         {"case.yaml:9", "ask pattern error at offset 4: missing terminating ]"});
}

static void test_min_greater_than_max(void **state)
{
    (void)state;
    CASE("min_max", {"case.yaml:7", "min 9 is greater than max 4"});
}

/* A key of an ask is an input that leaves it: one the ask would take as an
 * answer is refused; keys lead somewhere (only_by_key is reachable). */
static void test_ask_keys(void **state)
{
    (void)state;
    CASE("ask_keys", {"case.yaml:6", "ask 'a': key '0' is also a valid answer"},
         {"case.yaml:17", "unknown target 'nowhere' in flow 't'"}, {"case.yaml:22", "ask 'c' has no keys"});
}

static void test_unknown_validator(void **state)
{
    (void)state;
    CASE("validator", {"case.yaml:9", "unknown validator 'iban'"});
}

static void test_unknown_channel(void **state)
{
    (void)state;
    CASE("channel", {"case.yaml:2", "unknown channel 'fax'"});
}

static void test_route_to_unknown_flow(void **state)
{
    (void)state;
    CASE("route_flow", {"case.yaml:2", "route to unknown flow 'nothere'"});
}

/* A route may set the language a session starts in, one the set has. */
static void test_route_lang(void **state)
{
    (void)state;
    CASE("route_lang", {"case.yaml:2", "route lang 'fr', which settings.languages does not list"},
         {"case.yaml:3", "route lang must be a string"});
}

static void test_lang_set_to_unknown_language(void **state)
{
    (void)state;
    CASE("lang_set", {"case.yaml:9", "lang set to 'fr'"});
}

static void test_switch_checks(void **state)
{
    (void)state;
    CASE("switch", {"case.yaml:6", "variable 'nothing' is never set"},
         {"case.yaml:8", "unknown target 'nowhere' in flow 't'"}, {"case.yaml:11", "switch 'nodefault' needs 'default'"},
         {"case.yaml:10", "unreachable node 'nodefault'"}, {"case.yaml:14", "switch 'nocases' needs 'cases'"},
         {"case.yaml:13", "unreachable node 'nocases'"});
}

static void test_settings_values_checks(void **state)
{
    (void)state;
    char dir[256];
    stage(dir, "values", false);
    dp_errors errs;
    load_broken(dir, 2, &errs);
    expect_problem(&errs, "00-settings.yaml:5", "'node' is built in and cannot be a settings value");
    expect_problem(&errs, "00-settings.yaml:12", "'loss_days' is a settings value and cannot be set");
    dp_errors_free(&errs);
    remove_dir(dir);
}

static void test_retries_and_timeout_ranges(void **state)
{
    (void)state;
    CASE("ranges", {"case.yaml:9", "timeout_ms 500 out of range (1000..120000)"},
         {"case.yaml:10", "retries 12 out of range (0..9)"},
         {"case.yaml:14", "inter_digit_ms 100 out of range (500..30000)"});
}

static void test_required_prompts(void **state)
{
    (void)state;
    const expected exp[] = {{"case.yaml:1", "required prompt 'restarted' is missing"}};
    check_case("required_prompts", false, exp, 1);
}

static void test_name_length_limit(void **state)
{
    (void)state;
    CASE("limits", {"case.yaml:7", "is not a valid name"});
}

static void test_size_and_count_limits(void **state)
{
    (void)state;
    char dir[256];
    stage(dir, NULL, true);
    /* A prompt over 1000 bytes, a flow over 1000 nodes, a file over 1 MiB. */
    char *text = malloc(2 * 1024 * 1024);
    assert_non_null(text);
    snprintf(text, 4096, "prompts:\n  zh:\n    long: \"%01100d\"\n  en:\n    long: short\n", 0);
    th_write_file_in(dir, "p.yaml", text);
    size_t len = (size_t)sprintf(text, "flows:\n  big:\n    nodes:\n");
    for (int i = 0; i < 1001; i++)
        len += (size_t)sprintf(text + len, "      n%d: { end: ~ }\n", i);
    th_write_file_in(dir, "q.yaml", text);
    len = (size_t)sprintf(text, "# padding\n");
    while (len < 1024 * 1024 + 10)
        len += (size_t)sprintf(text + len, "# .................................................\n");
    th_write_file_in(dir, "r.yaml", text);
    free(text);
    dp_errors errs;
    load_broken(dir, 4, &errs);
    expect_problem(&errs, "p.yaml:3", "prompt text longer than 1000 bytes");
    expect_problem(&errs, "q.yaml:2", "unreachable flow 'big'");
    expect_problem(&errs, "q.yaml:4", "flow 'big' has 1001 nodes (at most 1000)");
    bool size_seen = false;
    for (size_t i = 0; i < errs.count; i++)
        size_seen = size_seen || (strstr(errs.lines[i], "/r.yaml: file larger than 1048576 bytes") != NULL);
    assert_true(size_seen);
    dp_errors_free(&errs);
    remove_dir(dir);
}

static void test_all_errors_collected(void **state)
{
    (void)state;
    CASE("broken", {"case.yaml:2", "unknown channel 'pager'"}, {"case.yaml:8", "min 5 is greater than max 2"},
         {"case.yaml:12", "unknown key 'colour' in ask node"}, {"case.yaml:13", "unknown target 'nowhere'"},
         {"case.yaml:15", "unknown handler 'teleport'"}, {"case.yaml:14", "unreachable node 'b'"});
}

static void test_error_list_is_capped(void **state)
{
    (void)state;
    char dir[256];
    stage(dir, NULL, true);
    char text[16384];
    size_t len = (size_t)sprintf(text, "flows:\n  base2:\n    nodes:\n");
    for (int i = 0; i < 150; i++)
        len += (size_t)sprintf(text + len, "      n%d: { goto: missing%d }\n", i, i);
    th_write_file_in(dir, "many.yaml", text);
    dp_errors errs;
    dialplan *dp = dialplan_load(dir, lookup, &errs);
    assert_null(dp);
    assert_int_equal(errs.count, 101);
    assert_non_null(strstr(errs.lines[100], "more problems"));
    assert_non_null(strstr(errs.lines[0], "many.yaml:2: unreachable flow 'base2'"));
    dp_errors_free(&errs);
    remove_dir(dir);
}

static void test_missing_directory_and_null_lookup(void **state)
{
    (void)state;
    dp_errors errs;
    assert_null(dialplan_load("/nonexistent/cardline-dialplans", lookup, &errs));
    assert_int_equal(errs.count, 1);
    assert_non_null(strstr(errs.lines[0], "cannot open dialplan directory"));
    dp_errors_free(&errs);
    /* Without a handler table every call node's handler is unknown. */
    assert_null(dialplan_load(CL_DIALPLANS_DIR, NULL, &errs));
    assert_true(errs.count >= 2);
    assert_non_null(strstr(errs.lines[0], "unknown handler"));
    dp_errors_free(&errs);
}

/* The shipped dialplans ----------------------------------------------------*/

static dialplan *load_clean_with(const char *dir, dp_handler_lookup *handlers)
{
    dp_errors errs;
    dialplan *dp = dialplan_load(dir, handlers, &errs);
    print_errors(&errs);
    assert_int_equal(errs.count, 0);
    assert_non_null(dp);
    return dp;
}

static dialplan *load_clean(const char *dir)
{
    return load_clean_with(dir, lookup);
}

/* The shipped set calls the product's handlers, not the fixture table. */
static dialplan *load_shipped(void)
{
    return load_clean_with(CL_DIALPLANS_DIR, handlers_find);
}

static void append_name(const char *name, void *arg)
{
    char *names = arg;
    size_t n = strlen(names);
    snprintf(names + n, 256 - n, " %s", name);
}

static void test_shipped_dialplans_load_clean(void **state)
{
    (void)state;
    dialplan *dp = load_shipped();
    assert_int_equal(dialplan_language_count(dp), 2);
    assert_string_equal(dialplan_language(dp, 0), "zh");
    const dp_flow *f = dialplan_route(dp, CHANNEL_VOICE, "12333");
    assert_non_null(f);
    assert_string_equal(dp_flow_name(f), "main");
    assert_string_equal(dp_flow_name(dialplan_route(dp, CHANNEL_USSD, "*123#")), "main");
    assert_string_equal(dp_flow_name(dialplan_route(dp, CHANNEL_SMS, "cx 110101199003074514")), "status");
    assert_string_equal(dp_flow_name(dialplan_route(dp, CHANNEL_SMS, "gs")), "loss");
    assert_string_equal(dp_flow_name(dialplan_route(dp, CHANNEL_SMS, "hello")), "help");
    assert_null(dialplan_route_lang(dp, CHANNEL_SMS, "hello"));
    /* English keywords reach the same tasks in English */
    static const char *const english[][2] = {{"STATUS", "status"}, {"lost", "loss"}, {"Cancel", "cancel"},
                                             {"ACTIVATE", "activate"}, {"UPDATE", "contact"},
                                             {"CARD", "history"}, {"AGENT", "agent"}, {"HELP", "help"}};
    for (size_t i = 0; i < sizeof english / sizeof english[0]; i++) {
        assert_string_equal(dp_flow_name(dialplan_route(dp, CHANNEL_SMS, english[i][0])), english[i][1]);
        assert_string_equal(dialplan_route_lang(dp, CHANNEL_SMS, english[i][0]), "en");
    }
    const dp_node *pin = dp_flow_node(dialplan_flow(dp, "identify"), "ask_pin");
    assert_non_null(pin);
    assert_true(pin->secret);
    assert_int_equal(pin->timeout_ms, 8000);
    assert_int_equal(pin->on_timeout.retries, 2);
    assert_int_equal(pin->inter_digit_ms, 0); /* the channel's default */
    assert_int_equal(dp_flow_node(dialplan_flow(dp, "identify"), "ask_id")->inter_digit_ms, 5000);
    char names[256] = "";
    dialplan_prompt_vars(dp, "loss_done", append_name, names); /* zh and en, every channel */
    assert_non_null(strstr(names, " reference"));
    assert_non_null(strstr(names, " expires_on"));
    assert_null(strstr(names, " card"));
    const dp_flow *assist = dialplan_flow(dp, "assist"); /* reached by agents only */
    assert_true(dp_flow_node(assist, "verify_pin")->agent_entry);
    assert_false(dp_flow_node(assist, "check_id")->agent_entry);
    const dp_node *verify = pin->next.node;
    assert_int_equal(verify->kind, DP_CALL);
    assert_string_equal(verify->handler->name, "verify_identity");
    char out[256];
    assert_true(dialplan_render_text(dp, "en", CHANNEL_SMS, "main_menu", NULL, out, sizeof out));
    assert_non_null(strstr(out, "2 Report lost card\n"));
    json_t *terms = json_pack("{s:s}", "temp_loss_days", "10"); /* the registry's, by registry_settings */
    assert_true(dialplan_render_text(dp, "zh", CHANNEL_SMS, "rules_loss", terms, out, sizeof out));
    assert_non_null(strstr(out, "有效期10天"));
    json_decref(terms);
    dialplan_unref(dp);
}

/* Routing ------------------------------------------------------------------*/

static void test_routing(void **state)
{
    (void)state;
    dialplan *dp = load_clean(CL_CASES_DIR "/_render");
    assert_string_equal(dp_flow_name(dialplan_route(dp, CHANNEL_VOICE, "12333")), "f");
    /* channels are separate: the voice number means nothing to USSD */
    assert_null(dialplan_route(dp, CHANNEL_USSD, "12333"));
    assert_string_equal(dp_flow_name(dialplan_route(dp, CHANNEL_USSD, "*123#")), "g");
    /* first match wins: "CX" matches both SMS routes */
    assert_string_equal(dp_flow_name(dialplan_route(dp, CHANNEL_SMS, "cx now")), "f");
    assert_string_equal(dp_flow_name(dialplan_route(dp, CHANNEL_SMS, "CALL")), "g");
    assert_null(dialplan_route(dp, CHANNEL_SMS, "hello"));
    assert_null(dialplan_route(dp, CHANNEL_VOICE, "123330"));
    assert_null(dialplan_route(dp, CHANNEL_SMS, "\xff\xfe"));
    /* a route's language, if it sets one */
    assert_string_equal(dp_flow_name(dialplan_route(dp, CHANNEL_SMS, "en 1")), "f");
    assert_string_equal(dialplan_route_lang(dp, CHANNEL_SMS, "en 1"), "en");
    assert_null(dialplan_route_lang(dp, CHANNEL_SMS, "cx"));
    assert_null(dialplan_route_lang(dp, CHANNEL_SMS, "hello"));
    const dp_flow *f = dialplan_flow(dp, "f");
    assert_string_equal(dp_flow_start(f)->name, "menu1");
    assert_null(dialplan_flow(dp, "nope"));
    assert_null(dp_flow_node(f, "nope"));
    assert_true(dialplan_has_language(dp, "en"));
    assert_false(dialplan_has_language(dp, "fr"));
    dialplan_unref(dp);
}

/* Input ----------------------------------------------------------------------*/

static void test_ask_accepts(void **state)
{
    (void)state;
    dialplan *dp = load_clean(CL_CASES_DIR "/_render");
    const dp_flow *f = dialplan_flow(dp, "f");
    const dp_node *id = dp_flow_node(f, "id"), *card = dp_flow_node(f, "card"), *mob = dp_flow_node(f, "mob");
    const dp_node *pin = dp_flow_node(f, "pin"), *word = dp_flow_node(f, "free");
    char out[64];
    assert_true(dp_ask_accepts(id, "110101199003074514", out, sizeof out));
    assert_string_equal(out, "110101199003074514");
    assert_true(dp_ask_accepts(id, "44030419851231002*", out, sizeof out));
    assert_string_equal(out, "44030419851231002X");
    assert_true(dp_ask_accepts(id, "44030419851231002x", out, sizeof out));
    assert_string_equal(out, "44030419851231002X");
    assert_false(dp_ask_accepts(id, "11010119900307451", out, sizeof out));   /* length */
    assert_false(dp_ask_accepts(id, "11010119900307451A", out, sizeof out));  /* pattern */
    assert_false(dp_ask_accepts(id, "110101199003074515", out, sizeof out));  /* checksum */
    assert_false(dp_ask_accepts(id, "110101199003074514", out, 10));          /* no room */
    assert_true(dp_ask_accepts(card, "A12345678", out, sizeof out));
    assert_true(dp_ask_accepts(card, "12345678", out, sizeof out));
    assert_false(dp_ask_accepts(card, "a12345678", out, sizeof out));
    assert_true(dp_ask_accepts(mob, "13800138000", out, sizeof out));
    assert_true(dp_ask_accepts(mob, "+8613800138000", out, sizeof out));
    assert_false(dp_ask_accepts(mob, "23800138000", out, sizeof out));
    assert_false(dp_ask_accepts(mob, "+86138001380a0", out, sizeof out));
    assert_true(dp_ask_accepts(pin, "123456", out, sizeof out));
    assert_false(dp_ask_accepts(pin, "12345a", out, sizeof out));
    /* length counts characters, not bytes */
    assert_true(dp_ask_accepts(word, "你好", out, sizeof out));
    assert_true(dp_ask_accepts(word, "查询卡号", out, sizeof out));
    assert_false(dp_ask_accepts(word, "查询卡状态", out, sizeof out));
    assert_false(dp_ask_accepts(word, "a", out, sizeof out));
    assert_false(dp_ask_accepts(word, "\xff\xfe", out, sizeof out));
    assert_false(dp_ask_accepts(dp_flow_node(f, "menu1"), "1", out, sizeof out));
    /* an input that is exactly one of the ask's keys leaves it */
    const dp_option *key = dp_ask_key(id, "0");
    assert_non_null(key);
    assert_ptr_equal(key->target.node, dp_flow_node(f, "bye"));
    assert_null(dp_ask_key(id, "00"));
    assert_null(dp_ask_key(id, "110101199003074514"));
    assert_null(dp_ask_key(card, "0"));          /* keys are the ask's own */
    assert_null(dp_ask_key(dp_flow_node(f, "menu1"), "1"));
    dialplan_unref(dp);
}

static void join_key(const char *key, void *buf)
{
    strcat(buf, " ");
    strcat(buf, key);
}

static void test_menu_options_and_settings_keys(void **state)
{
    (void)state;
    dialplan *dp = load_clean(CL_CASES_DIR "/_render");
    const dp_flow *f = dialplan_flow(dp, "f");
    const dp_node *menu = dp_flow_node(f, "menu1");
    const dp_option *o = dp_menu_option(menu, "1");
    assert_non_null(o);
    assert_ptr_equal(o->target.node, dp_flow_node(f, "id"));
    /* settings.keys apply to every menu ... */
    o = dp_menu_option(menu, "0");
    assert_non_null(o);
    assert_ptr_equal(o->target.node, dp_flow_node(f, "bye"));
    /* ... unless the menu uses the key itself */
    o = dp_menu_option(menu, "9");
    assert_int_equal(o->target.kind, DP_TO_NODE);
    assert_ptr_equal(o->target.node, dp_flow_node(f, "bye"));
    assert_null(dp_menu_option(menu, "7"));
    assert_null(dp_menu_option(menu, "cx")); /* keys match exactly */
    /* an option with `set` leads through a goto node doing the set */
    o = dp_menu_option(menu, "CX");
    assert_int_equal(o->target.node->kind, DP_GOTO);
    assert_int_equal(o->target.node->n_set, 1);
    assert_string_equal(o->target.node->set[0].name, "lang");
    assert_ptr_equal(o->target.node->next.node, dp_flow_node(f, "bye"));
    /* hints list the menu's keys, then the settings keys it does not shadow */
    char keys[64] = "";
    dp_menu_keys(menu, join_key, keys);
    assert_string_equal(keys, " 1 9 CX 0");
    /* an omitted failure block ends silently after settings.retries */
    assert_int_equal(menu->on_invalid.retries, 2);
    assert_int_equal(menu->on_invalid.then.node->kind, DP_END);
    assert_int_equal(menu->on_invalid.then.node->n_prompts, 0);
    dialplan_unref(dp);
}

/* Rendering ------------------------------------------------------------------*/

static json_t *sample_vars(void)
{
    return json_pack("{s:s, s:s, s:i, s:s, s:s, s:s, s:s, s:s}", "t", "hi", "d", "12333", "n", 3, "dt",
                     "2026-11-29", "a", "12.5", "id", "110101199003074514", "c", "A12340001", "p", "13800138000");
}

static void test_render_per_channel_wording(void **state)
{
    (void)state;
    dialplan *dp = load_clean(CL_CASES_DIR "/_render");
    char out[128];
    assert_true(dialplan_render_text(dp, "zh", CHANNEL_VOICE, "pick", NULL, out, sizeof out));
    assert_string_equal(out, "请按1");
    assert_true(dialplan_render_text(dp, "zh", CHANNEL_USSD, "pick", NULL, out, sizeof out));
    assert_string_equal(out, "回复1");
    assert_true(dialplan_render_text(dp, "zh", CHANNEL_SMS, "pick", NULL, out, sizeof out));
    assert_string_equal(out, "短信回复1");
    assert_true(dialplan_render_text(dp, "en", CHANNEL_SMS, "pick", NULL, out, sizeof out));
    assert_string_equal(out, "reply 1");
    /* unknown language: the default one */
    assert_true(dialplan_render_text(dp, "fr", CHANNEL_VOICE, "bye", NULL, out, sizeof out));
    assert_string_equal(out, "再见");
    assert_false(dialplan_render_text(dp, "zh", CHANNEL_VOICE, "nope", NULL, out, sizeof out));
    dialplan_unref(dp);
}

static void test_render_kinds_and_masking(void **state)
{
    (void)state;
    dialplan *dp = load_clean(CL_CASES_DIR "/_render");
    json_t *vars = sample_vars();
    char out[512];
    assert_true(dialplan_render_text(dp, "zh", CHANNEL_SMS, "all", vars, out, sizeof out));
    assert_string_equal(out, "Thi D12333 N3 日期2026年11月29日 金额12.50元 证110101********4514 卡0001 "
                             "机138****8000 {x}");
    assert_true(dialplan_render_text(dp, "en", CHANNEL_USSD, "all", vars, out, sizeof out));
    assert_string_equal(out, "Thi D12333 N3 date 29 November 2026 sum CNY 12.50 id 110101********4514 "
                             "card 0001 ph 138****8000 {x}");
    /* by voice only the last four of an ID, card or phone are said */
    assert_true(dialplan_render_text(dp, "en", CHANNEL_VOICE, "all", vars, out, sizeof out));
    assert_non_null(strstr(out, "id 4514 card 0001 ph the number ending 8000"));
    assert_true(dialplan_render_text(dp, "zh", CHANNEL_VOICE, "all", vars, out, sizeof out));
    assert_non_null(strstr(out, "证4514 卡0001 机尾号8000"));
    json_decref(vars);
    dialplan_unref(dp);
}

static void test_render_missing_variable_is_empty(void **state)
{
    (void)state;
    dialplan *dp = load_clean(CL_CASES_DIR "/_render");
    json_t *vars = json_pack("{s:s}", "t", "x");
    char out[256];
    assert_true(dialplan_render_text(dp, "en", CHANNEL_SMS, "all", vars, out, sizeof out));
    assert_string_equal(out, "Tx D N date  sum  id  card  ph  {x}");
    /* output is cut to fit, never inside a UTF-8 character */
    assert_true(dialplan_render_text(dp, "zh", CHANNEL_SMS, "pick", NULL, out, 5));
    assert_string_equal(out, "短"); /* the second character does not fit in 4 bytes */
    json_decref(vars);
    dialplan_unref(dp);
}

typedef struct {
    char joined[512];
    int values;
    dp_render renders[16];
    unsigned endings;        /* bit i: value i is a masked tail said after the ending word */
} piece_log;

static void collect_piece(const dp_piece *p, void *arg)
{
    piece_log *log = arg;
    if (p->is_value && p->ending)
        log->endings |= 1u << log->values;
    if (p->is_value)
        log->renders[log->values++] = p->render;
    strcat(log->joined, p->is_value ? "[" : "");
    strcat(log->joined, p->text);
    strcat(log->joined, p->is_value ? "]" : "");
}

static void test_render_pieces_for_voice(void **state)
{
    (void)state;
    dialplan *dp = load_clean(CL_CASES_DIR "/_render");
    json_t *vars = sample_vars();
    piece_log log = {0};
    assert_true(dialplan_render_pieces(dp, "zh", CHANNEL_VOICE, "all", vars, collect_piece, &log));
    assert_string_equal(log.joined, "T[hi] D[12333] N[3] 日期[2026-11-29] 金额[12.50] 证[4514] 卡[0001] "
                                    "机[8000] {x}");
    assert_int_equal(log.endings, 1 << 7); /* only the phone's tail follows "尾号" */
    assert_int_equal(log.values, 8);
    assert_int_equal(log.renders[1], DP_RENDER_DIGITS);
    assert_int_equal(log.renders[3], DP_RENDER_DATE);
    assert_int_equal(log.renders[4], DP_RENDER_AMOUNT);
    assert_int_equal(log.renders[5], DP_RENDER_ID);
    assert_false(dialplan_render_pieces(dp, "zh", CHANNEL_VOICE, "nope", vars, collect_piece, &log));
    json_decref(vars);
    dialplan_unref(dp);
}

/* One form per kind, the same decision on a screen, as heard and as the
 * player's pieces: "kinds" is "{c:card}|{o:card}|{p:phone}|{r:ref}|{d:digits}". */
static void expect_kinds(dialplan *dp, const char *lang, channel_kind ch, json_t *vars, const char *expected)
{
    char out[256];
    assert_true(dialplan_render_text(dp, lang, ch, "kinds", vars, out, sizeof out));
    assert_string_equal(out, expected);
}

static void expect_spoken(dialplan *dp, json_t *vars, const char *expected, unsigned endings)
{
    piece_log log = {0};
    assert_true(dialplan_render_pieces(dp, "zh", CHANNEL_VOICE, "kinds", vars, collect_piece, &log));
    assert_string_equal(log.joined, expected);
    assert_int_equal(log.endings, endings);
}

static void test_render_one_form_per_kind(void **state)
{
    (void)state;
    dialplan *dp = load_clean(CL_CASES_DIR "/_render");
    /* Old and new card ending alike: their letters tell them apart. A
     * Chinese mobile loses its +86; a reference and a mobile are said in
     * groups, the masked phone after "尾号". */
    json_t *vars = json_pack("{s:s, s:s, s:s, s:s, s:s}", "c", "A10000001", "o", "B20000001", "p",
                             "+8613800000002", "r", "GS3K7Q2M9X4PZ1", "d", "13800000002");
    expect_kinds(dp, "zh", CHANNEL_SMS, vars, "A...0001|B...0001|138****0002|GS3K7Q2M9X4PZ1|13800000002");
    expect_kinds(dp, "en", CHANNEL_USSD, vars, "A...0001|B...0001|138****0002|GS3K7Q2M9X4PZ1|13800000002");
    expect_kinds(dp, "zh", CHANNEL_VOICE, vars, "A...0001|B...0001|尾号0002|GS3K7Q2M9X4PZ1|13800000002");
    expect_kinds(dp, "en", CHANNEL_VOICE, vars,
                 "A...0001|B...0001|the number ending 0002|GS3K7Q2M9X4PZ1|13800000002");
    expect_spoken(dp, vars, "[A...0001]|[B...0001]|[0002]|[GS3K 7Q2M 9X4 PZ1]|[138 0000 0002]", 1u << 2);
    /* Cards ending differently need only their last 4; cards with the same
     * letters (or none) cannot be told apart by them, so they get none. */
    json_object_set_new(vars, "o", json_string("B20000002"));
    expect_kinds(dp, "zh", CHANNEL_SMS, vars, "0001|0002|138****0002|GS3K7Q2M9X4PZ1|13800000002");
    json_object_set_new(vars, "o", json_string("A20000001"));
    expect_kinds(dp, "zh", CHANNEL_SMS, vars, "0001|0001|138****0002|GS3K7Q2M9X4PZ1|13800000002");
    json_object_set_new(vars, "o", json_string("20000001"));
    expect_kinds(dp, "zh", CHANNEL_SMS, vars, "0001|0001|138****0002|GS3K7Q2M9X4PZ1|13800000002");
    json_decref(vars);
    /* Not a card, another country's phone, a reference that is not only
     * letters and digits, a landline, a short reference. */
    vars = json_pack("{s:s, s:s, s:s, s:s, s:s}", "c", "x1", "o", "", "p", "+447911123456", "r", "GS-7", "d",
                     "010-12333");
    expect_kinds(dp, "zh", CHANNEL_SMS, vars, "**||+44791***3456|GS-7|010-12333");
    expect_kinds(dp, "zh", CHANNEL_VOICE, vars, "||尾号3456|GS-7|010-12333");
    expect_spoken(dp, vars, "[]|[]|[3456]|[GS-7]|[010-12333]", 1u << 2);
    json_object_set_new(vars, "r", json_string("CB12345678AB"));
    json_object_set_new(vars, "p", json_string("12"));
    expect_spoken(dp, vars, "[]|[]|[]|[CB12 3456 78AB]|[010-12333]", 0);
    json_decref(vars);
    dialplan_unref(dp);
}

static void test_render_template(void **state)
{
    (void)state;
    dialplan *dp = load_shipped();
    const dp_node *verify = dp_flow_node(dialplan_flow(dp, "identify"), "verify");
    json_t *vars = json_pack("{s:s, s:s}", "id", "110101199003074514", "pin", "123456");
    char out[64];
    assert_string_equal(verify->args[0].name, "id");
    dialplan_render_template(verify->args[0].value, vars, out, sizeof out);
    assert_string_equal(out, "110101199003074514"); /* arguments are not masked */
    const dp_node *agent = dp_flow_node(dialplan_flow(dp, "agent"), "to_agent");
    json_object_set_new(vars, "node", json_string("main_menu"));
    dialplan_render_template(agent->reason, vars, out, sizeof out);
    assert_string_equal(out, "caller asked for an agent at main_menu");
    json_decref(vars);
    dialplan_unref(dp);
}

/* A set whose settings give a value, and a switch that branches on a
 * variable: the value renders wherever a variable would, a variable of the
 * same name wins, and the switch takes the matching case or its default. */
static void test_values_and_switch(void **state)
{
    (void)state;
    char dir[256];
    stage(dir, NULL, false);
    th_write_file_in(dir, "a.yaml",
               "settings:\n  languages: [en]\n  values: { loss_days: '10', office: 'Counter 3' }\n"
               "routes:\n  - { channel: sms, match: '^', flow: f }\n"
               "flows:\n  f:\n    nodes:\n"
               "      m: { menu: days, options: { '1': { goto: pick, set: { want: x } }, '2': pick } }\n"
               "      pick:\n        switch: '{lang}-{office}'\n        cases: { en-Counter 3: ok }\n"
               "        default: m\n"
               "      ok: { end: days }\n"
               "prompts:\n  en: { restarted: r, unavailable: u, days: '{loss_days:number} days at {office}' }\n");
    dp_errors errs;
    dialplan *dp = dialplan_load(dir, lookup, &errs);
    print_errors(&errs);
    assert_non_null(dp);
    char out[128];
    json_t *vars = json_pack("{s:s}", "lang", "en");
    assert_true(dialplan_render_text(dp, "en", CHANNEL_SMS, "days", vars, out, sizeof out));
    assert_string_equal(out, "10 days at Counter 3");
    const dp_node *pick = dp_flow_node(dialplan_flow(dp, "f"), "pick");
    dialplan_render_template(pick->subject, vars, out, sizeof out);
    assert_string_equal(out, "en-Counter 3");
    assert_string_equal(dp_switch_target(pick, out).node->name, "ok");
    assert_string_equal(dp_switch_target(pick, "fr-Counter 3").node->name, "m");
    json_object_set_new(vars, "office", json_string("Room 9"));
    dialplan_render_template(pick->subject, vars, out, sizeof out);
    assert_string_equal(out, "en-Room 9");
    json_decref(vars);
    dialplan_unref(dp);
    remove_dir(dir);
}

/* Lifetime and version -----------------------------------------------------------*/

static void test_ref_unref(void **state)
{
    (void)state;
    dialplan *dp = load_clean(CL_CASES_DIR "/_render");
    assert_ptr_equal(dialplan_ref(dp), dp);
    dialplan_unref(dp);
    /* still usable with the first reference */
    assert_non_null(dialplan_flow(dp, "f"));
    dialplan_unref(dp);
    dialplan_unref(NULL);
}

static void test_version_follows_sources(void **state)
{
    (void)state;
    char dir[256];
    stage(dir, NULL, true);
    dialplan *a = load_clean(dir), *b = load_clean(dir);
    assert_int_equal(strlen(dialplan_version(a)), 16);
    assert_string_equal(dialplan_version(a), dialplan_version(b));
    th_write_file_in(dir, "01-more.yaml", "prompts:\n  zh: { extra: e }\n  en: { extra: e }\n");
    dialplan *c = load_clean(dir);
    assert_string_not_equal(dialplan_version(a), dialplan_version(c));
    dialplan_unref(a);
    dialplan_unref(b);
    dialplan_unref(c);
    remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base_fixture_is_clean),
        cmocka_unit_test(test_yaml_syntax_error),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_missing_required_key),
        cmocka_unit_test(test_duplicate_names),
        cmocka_unit_test(test_duplicate_prompts),
        cmocka_unit_test(test_unknown_targets),
        cmocka_unit_test(test_unreachable_nodes_and_flows),
        cmocka_unit_test(test_undefined_handler),
        cmocka_unit_test(test_call_arguments),
        cmocka_unit_test(test_branch_on_undeclared_result),
        cmocka_unit_test(test_declared_result_not_handled),
        cmocka_unit_test(test_variable_used_before_set),
        cmocka_unit_test(test_secret_used_outside_secret_argument),
        cmocka_unit_test(test_secret_used_after_waiting_node),
        cmocka_unit_test(test_prompts_missing),
        cmocka_unit_test(test_bad_placeholders),
        cmocka_unit_test(test_option_keys),
        cmocka_unit_test(test_input_free_loop),
        cmocka_unit_test(test_ussd_question_fits_one_page),
        cmocka_unit_test(test_bad_patterns_with_offset),
        cmocka_unit_test(test_min_greater_than_max),
        cmocka_unit_test(test_unknown_validator),
        cmocka_unit_test(test_ask_keys),
        cmocka_unit_test(test_unknown_channel),
        cmocka_unit_test(test_route_to_unknown_flow),
        cmocka_unit_test(test_lang_set_to_unknown_language),
        cmocka_unit_test(test_route_lang),
        cmocka_unit_test(test_retries_and_timeout_ranges),
        cmocka_unit_test(test_required_prompts),
        cmocka_unit_test(test_name_length_limit),
        cmocka_unit_test(test_size_and_count_limits),
        cmocka_unit_test(test_all_errors_collected),
        cmocka_unit_test(test_error_list_is_capped),
        cmocka_unit_test(test_missing_directory_and_null_lookup),
        cmocka_unit_test(test_shipped_dialplans_load_clean),
        cmocka_unit_test(test_routing),
        cmocka_unit_test(test_ask_accepts),
        cmocka_unit_test(test_menu_options_and_settings_keys),
        cmocka_unit_test(test_render_per_channel_wording),
        cmocka_unit_test(test_render_kinds_and_masking),
        cmocka_unit_test(test_render_missing_variable_is_empty),
        cmocka_unit_test(test_render_pieces_for_voice),
        cmocka_unit_test(test_render_one_form_per_kind),
        cmocka_unit_test(test_render_template),
        cmocka_unit_test(test_values_and_switch),
        cmocka_unit_test(test_switch_checks),
        cmocka_unit_test(test_settings_values_checks),
        cmocka_unit_test(test_ref_unref),
        cmocka_unit_test(test_version_follows_sources),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
