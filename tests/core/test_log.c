/* log: one line per event, parseable as key=value pairs (quoted values
 * unescaped correctly), level threshold, quoting and truncation limits, and
 * holding lines: until a flush, a warning or a full buffer, in order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

typedef struct {
    char *buf;      /* what log wrote */
    size_t len;     /* its length */
    FILE *stream;   /* memory stream handed to log_set_stream */
} capture;

static int setup(void **state)
{
    capture *c = calloc(1, sizeof *c);
    c->stream = open_memstream(&c->buf, &c->len);
    log_set_stream(c->stream);
    log_set_level(LOG_INFO);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    capture *c = *state;
    log_set_hold(false);
    log_set_stream(NULL);
    log_set_level(LOG_INFO);
    fclose(c->stream);
    free(c->buf);
    free(c);
    return 0;
}

/* Splits one log line into key=value pairs the way a log shipper would:
 * a value is either bare up to a blank, or "quoted" with \" \\ \xNN escapes.
 * Returns the number of pairs; fails the test on a malformed line. */
#define MAX_PAIRS 16
typedef struct {
    char key[32];
    char value[300];
} pair;

static size_t parse_line(const char *line, pair *out)
{
    size_t n = 0;
    const char *p = line;
    while (*p && *p != '\n') {
        assert_true(n < MAX_PAIRS);
        const char *eq = strchr(p, '=');
        assert_non_null(eq);
        assert_true((size_t)(eq - p) < sizeof out[n].key);
        memcpy(out[n].key, p, (size_t)(eq - p));
        out[n].key[eq - p] = '\0';
        assert_null(strchr(out[n].key, ' '));
        p = eq + 1;
        size_t o = 0;
        if (*p == '"') {
            for (p++; *p != '"'; p++) {
                assert_true(*p != '\0' && *p != '\n');
                if (*p == '\\' && p[1] == 'x') {
                    unsigned v;
                    assert_int_equal(sscanf(p + 2, "%2x", &v), 1);
                    out[n].value[o++] = (char)v;
                    p += 3;
                } else if (*p == '\\') {
                    out[n].value[o++] = *++p;
                } else {
                    out[n].value[o++] = *p;
                }
            }
            p++;
        } else {
            while (*p && *p != ' ' && *p != '\n')
                out[n].value[o++] = *p++;
        }
        out[n].value[o] = '\0';
        n++;
        assert_true(*p == ' ' || *p == '\n' || *p == '\0');
        if (*p == ' ')
            p++;
    }
    return n;
}

static void test_line_parses_as_pairs(void **state)
{
    capture *c = *state;
    const char *tricky = "a \"quoted\" value\\ with\ttab\nand newline";
    log_info("test.event", "count=%d name=%s", 3, log_quote(tricky).s);
    fflush(c->stream);
    assert_int_equal(c->buf[c->len - 1], '\n');
    assert_null(memchr(c->buf, '\n', c->len - 1)); /* exactly one line */
    pair pairs[MAX_PAIRS];
    size_t n = parse_line(c->buf, pairs);
    assert_int_equal(n, 5);
    assert_string_equal(pairs[0].key, "ts");
    assert_int_equal(strlen(pairs[0].value), strlen("2026-11-22T03:04:05.123Z"));
    assert_int_equal(pairs[0].value[23], 'Z');
    assert_string_equal(pairs[1].key, "level");
    assert_string_equal(pairs[1].value, "info");
    assert_string_equal(pairs[2].key, "event");
    assert_string_equal(pairs[2].value, "test.event");
    assert_string_equal(pairs[3].value, "3");
    assert_string_equal(pairs[4].key, "name");
    assert_string_equal(pairs[4].value, tricky);
}

static void test_threshold_drops_lower_levels(void **state)
{
    capture *c = *state;
    log_debug("test.hidden", NULL);
    fflush(c->stream);
    assert_int_equal(c->len, 0);
    log_set_level(LOG_DEBUG);
    log_debug("test.shown", NULL);
    log_set_level(LOG_ERROR);
    log_warn("test.hidden", NULL);
    log_error("test.error", NULL);
    fflush(c->stream);
    assert_non_null(strstr(c->buf, "level=debug event=test.shown\n"));
    assert_non_null(strstr(c->buf, "level=error event=test.error\n"));
    assert_null(strstr(c->buf, "test.hidden"));
}

static void test_level_names_parse(void **state)
{
    (void)state;
    log_level l;
    assert_int_equal(log_level_parse("warn", &l), 0);
    assert_int_equal(l, LOG_WARN);
    assert_int_equal(log_level_parse("DEBUG", &l), 0);
    assert_int_equal(l, LOG_DEBUG);
    assert_int_equal(log_level_parse("verbose", &l), -1);
    assert_int_equal(log_level_parse("", &l), -1);
}

static void test_quote_is_bounded(void **state)
{
    (void)state;
    char big[1000];
    memset(big, '"', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    log_quoted q = log_quote(big);
    size_t n = strlen(q.s);
    assert_true(n < sizeof q.s);
    assert_int_equal(q.s[0], '"');
    assert_int_equal(q.s[n - 1], '"');
    assert_int_equal(q.s[n - 2], '"'); /* an escaped quote is never cut in half */
    assert_int_equal(q.s[n - 3], '\\');
    assert_string_equal(log_quote(NULL).s, "\"\"");
}

static void test_long_line_is_cut_but_ends_with_newline(void **state)
{
    capture *c = *state;
    char big[5000];
    memset(big, 'v', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    log_info("test.long", "v=%s", big);
    fflush(c->stream);
    assert_true(c->len <= 2048);
    assert_int_equal(c->buf[c->len - 1], '\n');
    assert_null(memchr(c->buf, '\n', c->len - 1));
}

/* What the stream has received so far, without flushing the log. */
static const char *received(capture *c)
{
    fflush(c->stream);
    return c->len ? c->buf : "";
}

static void test_held_lines_wait_for_flush(void **state)
{
    capture *c = *state;
    log_set_hold(true);
    log_info("test.first", NULL);
    log_debug("test.hidden", NULL);
    log_info("test.second", NULL);
    assert_string_equal(received(c), "");
    log_flush();
    const char *first = strstr(received(c), "event=test.first\n");
    assert_non_null(first);
    assert_non_null(strstr(first, "event=test.second\n"));
    assert_null(strstr(c->buf, "test.hidden"));
}

static void test_warning_writes_held_lines_first(void **state)
{
    capture *c = *state;
    log_set_hold(true);
    log_info("test.before", NULL);
    log_warn("test.warning", NULL);
    const char *before = strstr(received(c), "event=test.before\n");
    assert_non_null(before);
    assert_non_null(strstr(before, "event=test.warning\n"));
    log_info("test.after", NULL);
    log_error("test.error", NULL);
    const char *after = strstr(received(c), "event=test.after\n");
    assert_non_null(after);
    assert_non_null(strstr(after, "event=test.error\n"));
}

static void test_full_hold_writes_whole_lines(void **state)
{
    capture *c = *state;
    log_set_hold(true);
    char value[1000];
    memset(value, 'x', sizeof value - 1);
    value[sizeof value - 1] = '\0';
    int lines = 0;
    while (received(c)[0] == '\0') {
        assert_true(lines < 2 * LOG_HOLD_BYTES / 1000);
        log_info("test.filler", "n=%d v=%s", lines++, value);
    }
    assert_true(c->len <= LOG_HOLD_BYTES);
    assert_int_equal(c->buf[c->len - 1], '\n');
    log_set_hold(false);
    int written = 0;
    for (const char *p = received(c); (p = strstr(p, "event=test.filler")) != NULL; p++)
        written++;
    assert_int_equal(written, lines);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_line_parses_as_pairs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threshold_drops_lower_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_names_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quote_is_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_line_is_cut_but_ends_with_newline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_lines_wait_for_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_warning_writes_held_lines_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_hold_writes_whole_lines, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
