/* test_compact — the store's document writer gives the bytes jansson's
 * json_dumps(JSON_COMPACT) gives, for every kind of value and escape, and
 * refuses what nests too deep or grows beyond the limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "compact.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

static void assert_like_jansson(compact_buf *b, json_t *v)
{
    char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_non_null(want);
    assert_true(store_compact_dump(b, v, 1 << 20));
    assert_int_equal(b->len, strlen(want));
    assert_string_equal(b->data, want);
    free(want);
    json_decref(v);
}

static void test_same_bytes_as_jansson(void **state)
{
    (void)state;
    compact_buf b = {0};
    assert_like_jansson(&b, json_object());
    assert_like_jansson(&b, json_array());
    assert_like_jansson(&b, json_pack("{s:s, s:i, s:I, s:f, s:b, s:b, s:n, s:[s, i, {}], s:{s:[]}}",
                                      "text", "中文 English", "int", -42, "big", (json_int_t)1795323777720,
                                      "real", 0.1, "t", 1, "f", 0, "null", "list", "a", 7, "nested",
                                      "x", "y"));
    /* Every escape jansson writes, a NUL inside a string, '/' and DEL as
     * they are, and keys escaped like values. */
    json_t *o = json_object();
    json_object_set_new(o, "q\"b\\s/\x7f", json_string("\b\f\n\r\t\x01\x1f \"\\ é"));
    json_object_set_new(o, "nul", json_stringn("a\0b", 3));
    json_object_setn_new(o, "k\0ey", 4, json_string(""));
    assert_like_jansson(&b, o);
    assert_like_jansson(&b, json_pack("[I, I, I, I, I]", (json_int_t)0, (json_int_t)-1, (json_int_t)10,
                                      (json_int_t)LLONG_MAX, (json_int_t)LLONG_MIN));
    /* Insertion order, as jansson keeps it. */
    assert_like_jansson(&b, json_pack("{s:i, s:i, s:i, s:i}", "z", 1, "a", 2, "m", 3, "b", 4));
    store_compact_free(&b);
}

static void test_limits(void **state)
{
    (void)state;
    compact_buf b = {0};
    json_t *v = json_pack("{s:s}", "key", "0123456789");
    assert_true(store_compact_dump(&b, v, 20));      /* {"key":"0123456789"} is 20 bytes */
    assert_string_equal(b.data, "{\"key\":\"0123456789\"}");
    assert_false(store_compact_dump(&b, v, 19));
    json_decref(v);

    json_t *deep = json_array();
    for (int i = 0; i < COMPACT_MAX_DEPTH; i++)
        deep = json_pack("[o]", deep);
    assert_true(store_compact_dump(&b, deep, 1 << 20)); /* COMPACT_MAX_DEPTH levels below the top */
    deep = json_pack("[o]", deep);
    assert_false(store_compact_dump(&b, deep, 1 << 20));
    json_decref(deep);

    /* A cycle would recurse forever: the depth limit stops it. */
    json_t *a = json_array(), *c = json_array();
    json_array_append(a, c);
    json_array_append(c, a);
    assert_false(store_compact_dump(&b, a, 1 << 20));
    json_array_clear(c);
    json_decref(a);
    json_decref(c);
    assert_false(store_compact_dump(&b, NULL, 100));
    store_compact_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_bytes_as_jansson),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
