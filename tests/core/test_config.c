/* config: defaults, every value type, every error kind with FILE:LINE and
 * key, collection of all errors, the modules' own tables (defaults, ranges,
 * checks across keys, live keys), and the shipped cardline.conf and
 * docs/configuration.md agreeing with them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "settings.h"

typedef struct {
    char dir[64];        /* scratch directory of one test */
    char path[128];      /* the config file written there */
    conf c;              /* result of the last load */
    conf_errors errs;    /* errors of the last load */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/cl-conf-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->path, sizeof f->path, "%s/test.conf", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    settings_free(&f->c);
    conf_errors_free(&f->errs);
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Writes `text` as the config file and loads it; returns conf_load's result. */
static int load_text(fixture *f, const char *text)
{
    FILE *out = fopen(f->path, "w");
    assert_non_null(out);
    fputs(text, out);
    fclose(out);
    settings_free(&f->c);
    conf_errors_free(&f->errs);
    return settings_load(f->path, &f->c, &f->errs);
}

/* The expected "PATH:LINE: rest" text of an error. */
static void assert_error(const fixture *f, size_t i, int line, const char *rest)
{
    char want[512];
    snprintf(want, sizeof want, "%s:%d: %s", f->path, line, rest);
    assert_true(i < f->errs.count);
    assert_string_equal(f->errs.lines[i], want);
}

static char *read_whole(const char *path)
{
    FILE *in = fopen(path, "r");
    assert_non_null(in);
    fseek(in, 0, SEEK_END);
    long n = ftell(in);
    rewind(in);
    char *text = calloc(1, (size_t)n + 1);
    assert_int_equal(fread(text, 1, (size_t)n, in), (size_t)n);
    fclose(in);
    return text;
}

/* Defaults and valid values ---------------------------------------------------*/

static void test_defaults(void **state)
{
    fixture *f = *state;
    settings_defaults(&f->c);
    assert_int_equal(f->c.log.level, LOG_INFO);
    assert_string_equal(f->c.http.host, "127.0.0.1");
    assert_int_equal(f->c.http.port, 8080);
    assert_int_equal(f->c.http.max_body_bytes, 65536);
    assert_int_equal(f->c.http.max_header_bytes, 8192);
    assert_int_equal(f->c.http.max_connections, 1024);
    assert_int_equal(f->c.http.idle_timeout_ms, 30000);
    assert_string_equal(f->c.redis.host, "127.0.0.1");
    assert_int_equal(f->c.redis.port, 6379);
    assert_null(f->c.redis.password);
    assert_int_equal(f->c.redis.db, 0);
    assert_string_equal(f->c.registry.base_url, "http://127.0.0.1:8090");
    assert_null(f->c.registry.token);
    assert_null(f->c.registry.ca_file);
    assert_int_equal(f->c.registry.read_retries, 1);
    assert_int_equal(f->c.registry.health_interval_ms, 5000);
    assert_int_equal(f->c.gateway.shutdown_grace_ms, 5000);
}

static void test_every_type_parses(void **state)
{
    fixture *f = *state;
    char text[1024];
    snprintf(text, sizeof text,
             "; comment\n"
             "# another comment\n"
             "[log]\n"
             "level = debug\n"
             "[http]\n"
             "  listen = [::1]:9000   ; indented, inline comment\n"
             "max_body_bytes = 1024\n"
             "[redis]\n"
             "host = redis.internal\n"
             "port = 6390\n"
             "password = s3cret\n"
             "[registry]\n"
             "url = https://registry.example:8443\n"
             "ca_file = %s\n"
             "token =\n",
             f->path /* any readable file will do */);
    assert_int_equal(load_text(f, text), 0);
    assert_int_equal(f->errs.count, 0);
    assert_int_equal(f->c.log.level, LOG_DEBUG);
    assert_string_equal(f->c.http.host, "::1");
    assert_int_equal(f->c.http.port, 9000);
    assert_int_equal(f->c.http.max_body_bytes, 1024);
    assert_string_equal(f->c.redis.host, "redis.internal");
    assert_int_equal(f->c.redis.port, 6390);
    assert_string_equal(f->c.redis.password, "s3cret");
    assert_string_equal(f->c.registry.base_url, "https://registry.example:8443");
    assert_string_equal(f->c.registry.ca_file, f->path);
    assert_null(f->c.registry.token);
    /* untouched keys keep their defaults */
    assert_int_equal(f->c.http.max_connections, 1024);
}

/* Allowlists are checked at load (allow.h), naming the bad entry. */
static void test_allowlists(void **state)
{
    fixture *f = *state;
    assert_int_equal(load_text(f, "[ussd]\nallow_from = 127.0.0.1, 10.0.0.0/8, ::1\n[sms]\nallow_from =\n"), 0);
    assert_string_equal(f->c.ussd.allow_from, "127.0.0.1, 10.0.0.0/8, ::1");
    assert_null(f->c.sms.allow_from);
    assert_int_equal(load_text(f, "[sms]\nallow_from = 127.0.0.1, kannel.local\n"), -1);
    assert_int_equal(f->errs.count, 1);
    assert_non_null(strstr(f->errs.lines[0], "[sms] allow_from: \"kannel.local\" is not an IP address"));
}

static void test_ipv4_listen_and_range_edges(void **state)
{
    fixture *f = *state;
    assert_int_equal(load_text(f, "[http]\nlisten = 0.0.0.0:1\nmax_connections = 100000\n"
                                  "[redis]\nport = 65535\ndb = 0\n"),
                     0);
    assert_string_equal(f->c.http.host, "0.0.0.0");
    assert_int_equal(f->c.http.port, 1);
    assert_int_equal(f->c.http.max_connections, 100000);
    assert_int_equal(f->c.redis.port, 65535);
}

/* Each error kind ----------------------------------------------------------------*/

static void test_unknown_section(void **state)
{
    fixture *f = *state;
    assert_int_equal(load_text(f, "[log]\nlevel = info\n[nosuch]\nkey = 1\n"), -1);
    assert_int_equal(f->errs.count, 1);
    assert_error(f, 0, 3, "[nosuch]: unknown section");
}

static void test_unknown_key(void **state)
{
    fixture *f = *state;
    assert_int_equal(load_text(f, "[redis]\nhots = 10.0.0.1\n"), -1);
    assert_int_equal(f->errs.count, 1);
    assert_error(f, 0, 2, "[redis] hots: unknown key");
    assert_string_equal(f->c.redis.host, "127.0.0.1");
}

static void test_not_an_integer_changes_nothing(void **state)
{
    fixture *f = *state;
    assert_int_equal(load_text(f, "[redis]\nport = 63x9\n"), -1);
    assert_error(f, 0, 2, "[redis] port: not an integer");
    assert_int_equal(f->c.redis.port, 6379);
}

static void test_out_of_range(void **state)
{
    fixture *f = *state;
    assert_int_equal(load_text(f, "[http]\n\nmax_connections = 0\n"), -1);
    assert_error(f, 0, 3, "[http] max_connections: 0 is out of range 1..100000");
    assert_int_equal(f->c.http.max_connections, 1024);
}

static void test_identify_window_shorter_than_registry(void **state)
{
    fixture *f = *state;
    assert_int_equal(load_text(f, "[workflows]\nidentify_window_s = 600\nregistry_pin_window_s = 3600\n"), -1);
    assert_int_equal(f->errs.count, 1);
    assert_error(f, 0, 3, "[workflows] identify_window_s (600) must be at least registry_pin_window_s (3600), "
                          "or guesses spread over the registry's window lock the card");
    assert_int_equal(load_text(f, "[workflows]\nidentify_window_s = 3600\nregistry_pin_window_s = 3600\n"), 0);
}

/* Checks across keys belong to the module that owns them and refuse at
 * load, on the later of the two lines (they used to be clamped or refused
 * only when the module started). */
static void test_module_checks_across_keys(void **state)
{
    fixture *f = *state;
    assert_int_equal(load_text(f, "[redis]\nreconnect_min_ms = 2000\nreconnect_max_ms = 1000\n"
                                  "[registry]\ntimeout_ms = 1000\nconnect_timeout_ms = 2000\n"
                                  "[outbox]\nbackoff_min_ms = 5000\nbackoff_max_ms = 10\n"),
                     -1);
    assert_int_equal(f->errs.count, 3);
    assert_error(f, 0, 3, "[redis] reconnect_max_ms (1000) must be at least reconnect_min_ms (2000)");
    assert_error(f, 1, 6, "[registry] timeout_ms (1000) must be at least connect_timeout_ms (2000)");
    assert_error(f, 2, 9, "[outbox] backoff_max_ms (10) must be at least backoff_min_ms (5000)");
}

/* A secret's length is the table's, checked at load like any range. */
static void test_secret_length(void **state)
{
    fixture *f = *state;
    assert_int_equal(load_text(f, "[ussd]\nsecret = short\n[workflows]\ndigest_secret = 0123456789abcdef\n"), -1);
    assert_int_equal(f->errs.count, 1);
    assert_error(f, 0, 2, "[ussd] secret: must be 16-256 bytes");
    assert_string_equal(f->c.workflows.digest_secret, "0123456789abcdef");
}

/* A module's own defaults and ranges are its table's: the ones the file
 * is read with. */
static void test_module_defaults_and_ranges_are_the_tables(void **state)
{
    fixture *f = *state;
    settings_defaults(&f->c);
    store_options so;
    store_options_default(&so);
    assert_string_equal(so.host, f->c.redis.host);
    assert_int_equal(so.port, f->c.redis.port);
    assert_int_equal(so.db, f->c.redis.db);
    assert_int_equal(so.op_timeout_ms, f->c.redis.op_timeout_ms);
    assert_null(so.password);
    char buf[96];
    assert_null(conf_section_problem(&store_config, &so, buf, sizeof buf));
    so.db = 16;
    assert_string_equal(conf_section_problem(&store_config, &so, buf, sizeof buf), "db must be 0-15");
    ussd_options uo;
    ussd_options_default(&uo);
    uo.secret = "short";
    assert_string_equal(conf_section_problem(&ussd_config, &uo, buf, sizeof buf), "secret must be 16-256 bytes");
}

/* The keys a SIGHUP applies are the ones their tables mark live. */
static void test_live_keys(void **state)
{
    (void)state;
    const conf_key *k;
    const char *sec;
    char live[256] = "";
    for (size_t i = 0; (k = conf_key_at(&settings_schema, i, &sec)) != NULL; i++) {
        if (!k->live)
            continue;
        snprintf(live + strlen(live), sizeof live - strlen(live), "[%s] %s;", sec, k->name);
    }
    assert_string_equal(live, "[log] level;[log] flush_ms;[dialplans] dir;");
}

static void test_duplicate_key(void **state)
{
    fixture *f = *state;
    assert_int_equal(load_text(f, "[log]\nlevel = warn\n[http]\n[log]\nlevel = error\n"), -1);
    assert_int_equal(f->errs.count, 1);
    assert_error(f, 0, 5, "[log] level: duplicate key (first set on line 2)");
    assert_int_equal(f->c.log.level, LOG_WARN);
}

static void test_bad_address(void **state)
{
    fixture *f = *state;
    assert_int_equal(load_text(f, "[http]\nlisten = 127.0.0.1\n"), -1);
    assert_error(f, 0, 2, "[http] listen: expected host:port");
    assert_int_equal(load_text(f, "[http]\nlisten = 127.0.0.1:99999\n"), -1);
    assert_error(f, 0, 2, "[http] listen: the port must be a number in 1..65535");
    assert_int_equal(load_text(f, "[http]\nlisten = [nothex]:80\n"), -1);
    assert_error(f, 0, 2, "[http] listen: not an IPv6 address inside [ ]");
}

/* [redis] sentinels: IP:port items only, refused with FILE:LINE. */
static void test_ip_port_list(void **state)
{
    fixture *f = *state;
    assert_int_equal(load_text(f, "[redis]\nsentinels = 127.0.0.1:26379, [::1]:26380\n"), 0);
    assert_string_equal(f->c.redis.sentinels, "127.0.0.1:26379, [::1]:26380");
    const char *bad[] = {"localhost:26379", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:1,", "[::1:5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "[redis]\nsentinels = %s\n", bad[i]);
        assert_int_equal(load_text(f, text), -1);
        assert_error(f, 0, 2, "[redis] sentinels: expected IP:port or [IPv6]:port items separated by commas");
    }
}

static void test_bad_host_url_level_path(void **state)
{
    fixture *f = *state;
    assert_int_equal(load_text(f, "[redis]\nhost = bad host\n"
                                  "[registry]\nurl = ftp://x\n"
                                  "cert_file = /nonexistent/cert.pem\n"
                                  "[log]\nlevel = loud\n"),
                     -1);
    assert_int_equal(f->errs.count, 4);
    assert_error(f, 0, 2, "[redis] host: expected a host name or IPv4 address");
    assert_error(f, 1, 4, "[registry] url: expected an http:// or https:// URL");
    assert_error(f, 2, 5, "[registry] cert_file: cannot read the file: No such file or directory");
    assert_error(f, 3, 7, "[log] level: expected debug, info, warn or error");
    assert_int_equal(load_text(f, "[registry]\nurl = http://127.0.0.1:8090/v1\n"), -1);
    assert_error(f, 0, 2, "[registry] url: give the base URL without a trailing / or /v1");
}

static void test_shape_errors(void **state)
{
    fixture *f = *state;
    char text[600];
    char long_value[400];
    memset(long_value, 'a', sizeof long_value - 1);
    long_value[sizeof long_value - 1] = '\0';
    snprintf(text, sizeof text, "level = info\n[log\n[redis]\njust words\npassword = %s\n",
             long_value);
    assert_int_equal(load_text(f, text), -1);
    assert_int_equal(f->errs.count, 4);
    assert_error(f, 0, 1, "level: key outside any [section]");
    assert_error(f, 1, 2, "missing ']' after the section name");
    assert_error(f, 2, 4, "expected 'key = value' or '[section]'");
    assert_error(f, 3, 5, "line longer than 198 characters");
    assert_null(f->c.redis.password);
}

static void test_unreadable_file(void **state)
{
    fixture *f = *state;
    assert_int_equal(settings_load("/nonexistent/cardline.conf", &f->c, &f->errs), -1);
    assert_int_equal(f->errs.count, 1);
    assert_string_equal(f->errs.lines[0],
                        "/nonexistent/cardline.conf: cannot open: No such file or directory");
}

/* Collection ---------------------------------------------------------------------*/

static void test_all_errors_collected_in_order(void **state)
{
    fixture *f = *state;
    assert_int_equal(load_text(f, "[redis]\nport = x\ndb = 99\n[http]\nlisten = :80\n"
                                  "max_body_bytes = 100\n[gateway]\nshutdown_grace_ms = -1\n"),
                     -1);
    assert_int_equal(f->errs.count, 4);
    assert_error(f, 0, 2, "[redis] port: not an integer");
    assert_error(f, 1, 3, "[redis] db: 99 is out of range 0..15");
    assert_error(f, 2, 5, "[http] listen: expected host:port");
    assert_error(f, 3, 8, "[gateway] shutdown_grace_ms: -1 is out of range 0..600000");
    assert_int_equal(f->c.http.max_body_bytes, 100); /* the valid key still applied */
}

static void test_error_count_is_capped(void **state)
{
    fixture *f = *state;
    size_t lines = CONF_MAX_ERRORS + 10;
    char *text = calloc(lines, 16);
    strcpy(text, "[log]\n");
    for (size_t i = 0; i < lines; i++)
        strcat(text, "bogus = 1\n");
    assert_int_equal(load_text(f, text), -1);
    free(text);
    assert_int_equal(f->errs.count, CONF_MAX_ERRORS + 1);
    assert_error(f, 0, 2, "[log] bogus: unknown key");
    char want[256];
    snprintf(want, sizeof want, "%s: 10 more errors not shown", f->path);
    assert_string_equal(f->errs.lines[CONF_MAX_ERRORS], want);
}

/* The key table, the shipped file and the docs --------------------------------------*/

static void test_key_differs(void **state)
{
    fixture *f = *state;
    conf other;
    settings_defaults(&f->c);
    settings_defaults(&other);
    const conf_key *k;
    const char *sec;
    for (size_t i = 0; (k = conf_key_at(&settings_schema, i, &sec)) != NULL; i++)
        assert_false(conf_key_differs(&settings_schema, sec, k, &f->c, &other));
    other.redis.port = 6390;
    free((char *)other.http.host);
    other.http.host = strdup("0.0.0.0");
    size_t differing = 0;
    for (size_t i = 0; (k = conf_key_at(&settings_schema, i, &sec)) != NULL; i++)
        differing += conf_key_differs(&settings_schema, sec, k, &f->c, &other);
    assert_int_equal(differing, 2);
    settings_free(&other);
}

static void test_shipped_config_loads_clean(void **state)
{
    fixture *f = *state;
    int rc = settings_load(CL_SOURCE_DIR "/configs/cardline.conf", &f->c, &f->errs);
    for (size_t i = 0; i < f->errs.count; i++)
        print_error("%s\n", f->errs.lines[i]);
    assert_int_equal(rc, 0);
    assert_int_equal(f->c.redis.port, 6390);
    assert_string_equal(f->c.registry.base_url, "http://127.0.0.1:8090");
    assert_int_equal(f->c.http.port, 8080);
}

/* The text of section `name` in an INI file or a "## [name]" doc section. */
static char *section_text(const char *text, const char *header, const char *next_prefix)
{
    const char *start = strstr(text, header);
    if (start == NULL)
        return NULL;
    start += strlen(header);
    const char *end = strstr(start, next_prefix);
    size_t n = end ? (size_t)(end - start) : strlen(start);
    return strndup(start, n);
}

static const char *default_text(const conf_key *k)
{
    return *k->def ? k->def : "unset";
}

/* Every key appears in its section, preceded by a comment naming its default. */
static void test_shipped_config_documents_every_key(void **state)
{
    (void)state;
    char *text = read_whole(CL_SOURCE_DIR "/configs/cardline.conf");
    const conf_key *k;
    const char *section;
    for (size_t i = 0; (k = conf_key_at(&settings_schema, i, &section)) != NULL; i++) {
        char header[64], line[96], want[160];
        snprintf(header, sizeof header, "\n[%s]\n", section);
        char *sec = section_text(text, header, "\n[");
        assert_non_null(sec);
        snprintf(line, sizeof line, "\n%s = ", k->name);
        char *at = strstr(sec, line);
        if (at == NULL) {
            snprintf(line, sizeof line, "\n;%s = ", k->name);
            at = strstr(sec, line);
        }
        if (at == NULL)
            fail_msg("configs/cardline.conf: [%s] %s missing", section, k->name);
        snprintf(want, sizeof want, "default: %s", default_text(k));
        *at = '\0';
        char *last_key = strrchr(sec, '=');
        if (strstr(last_key ? last_key : sec, want) == NULL)
            fail_msg("configs/cardline.conf: [%s] %s lacks '%s'", section,
                     k->name, want);
        free(sec);
    }
    free(text);
}

/* Every key has a table row "| `key` | type | `default` | ..." in its section. */
static void test_docs_list_every_key(void **state)
{
    (void)state;
    char *text = read_whole(CL_SOURCE_DIR "/docs/configuration.md");
    const conf_key *k;
    const char *section;
    for (size_t i = 0; (k = conf_key_at(&settings_schema, i, &section)) != NULL; i++) {
        char header[64], row[96], want[96];
        snprintf(header, sizeof header, "## [%s]", section);
        char *sec = section_text(text, header, "\n## ");
        if (sec == NULL)
            fail_msg("docs/configuration.md: no section %s", header);
        snprintf(row, sizeof row, "\n| `%s` |", k->name);
        char *at = strstr(sec, row);
        if (at == NULL)
            fail_msg("docs/configuration.md: [%s] %s has no row", section,
                     k->name);
        char *eol = strchr(at + 1, '\n');
        if (eol)
            *eol = '\0';
        snprintf(want, sizeof want, *k->def ? "`%s`" : "%s", default_text(k));
        if (strstr(at, want) == NULL)
            fail_msg("docs/configuration.md: [%s] %s row lacks default %s", section,
                     k->name, want);
        free(sec);
    }
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_type_parses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ip_port_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipv4_listen_and_range_edges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allowlists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_section, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_an_integer_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_module_checks_across_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_module_defaults_and_ranges_are_the_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_host_url_level_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shape_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_errors_collected_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_count_is_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_differs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identify_window_shorter_than_registry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shipped_config_loads_clean, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shipped_config_documents_every_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_docs_list_every_key, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
