/* metrics: registration is idempotent, updates land on the right series,
 * and the rendering is Prometheus text (HELP/TYPE once per name, samples
 * grouped under it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static int reset(void **state)
{
    (void)state;
    metrics_reset();
    return 0;
}

static char *render(void)
{
    struct evbuffer *b = evbuffer_new();
    metrics_render(b);
    size_t n = evbuffer_get_length(b);
    char *text = calloc(1, n + 1);
    evbuffer_remove(b, text, n);
    evbuffer_free(b);
    return text;
}

static void test_registration_is_idempotent(void **state)
{
    (void)state;
    metrics_series *a = metrics_counter("x_total", "X things", "k=\"a\"");
    metrics_series *b = metrics_counter("x_total", "X things", "k=\"b\"");
    assert_non_null(a);
    assert_ptr_not_equal(a, b);
    assert_ptr_equal(metrics_counter("x_total", "X things", "k=\"a\""), a);
    assert_ptr_equal(metrics_gauge("g", "G", NULL), metrics_gauge("g", "G", NULL));
}

static void test_updates(void **state)
{
    (void)state;
    metrics_series *c = metrics_counter("c_total", "C", NULL);
    metrics_inc(c);
    metrics_add(c, 2.5);
    assert_true(metrics_value(c) == 3.5);
    metrics_series *g = metrics_gauge("g", "G", NULL);
    metrics_set(g, 7);
    metrics_set(g, 4);
    assert_true(metrics_value(g) == 4);
    metrics_inc(NULL); /* ignored */
    assert_true(metrics_value(NULL) == 0);
}

static void test_render_format(void **state)
{
    (void)state;
    metrics_inc(metrics_counter("req_total", "Requests", "route=\"/a\""));
    metrics_set(metrics_gauge("up", "Up", NULL), 1);
    metrics_add(metrics_counter("req_total", "Requests", "route=\"/b\""), 2);
    char *text = render();
    assert_string_equal(text, "# HELP req_total Requests\n"
                              "# TYPE req_total counter\n"
                              "req_total{route=\"/a\"} 1\n"
                              "req_total{route=\"/b\"} 2\n"
                              "# HELP up Up\n"
                              "# TYPE up gauge\n"
                              "up 1\n");
    free(text);
}

static void test_table_is_bounded(void **state)
{
    (void)state;
    char labels[32];
    for (int i = 0; i < METRICS_MAX_SERIES; i++) {
        snprintf(labels, sizeof labels, "i=\"%d\"", i);
        assert_non_null(metrics_counter("many_total", "Many", labels));
    }
    assert_null(metrics_counter("many_total", "Many", "i=\"overflow\""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_registration_is_idempotent, reset, reset),
        cmocka_unit_test_setup_teardown(test_updates, reset, reset),
        cmocka_unit_test_setup_teardown(test_render_format, reset, reset),
        cmocka_unit_test_setup_teardown(test_table_is_bounded, reset, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
