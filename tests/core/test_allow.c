/* allow: IPv4 and IPv6 addresses and prefixes, v4-mapped peers, bad lists
 * refused naming the entry, and refusals counted by channel and reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "allow.h"
#include "metrics.h"

typedef struct {
    struct sockaddr_storage ss;
} peer;

static const struct sockaddr *addr_of(peer *p, const char *text)
{
    memset(p, 0, sizeof *p);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&p->ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&p->ss;
    if (inet_pton(AF_INET, text, &v4->sin_addr) == 1)
        v4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1)
        v6->sin6_family = AF_INET6;
    else
        fail_msg("bad test address %s", text);
    return (const struct sockaddr *)&p->ss;
}

static bool matches(const allow_list *l, const char *text)
{
    peer p;
    return allow_match(l, addr_of(&p, text));
}

static void test_ipv4_addresses_and_prefixes(void **state)
{
    (void)state;
    char err[128];
    allow_list *l = allow_parse("127.0.0.1, 10.20.0.0/16,192.168.1.128/25", err, sizeof err);
    assert_non_null(l);
    assert_true(matches(l, "127.0.0.1"));
    assert_false(matches(l, "127.0.0.2"));
    assert_true(matches(l, "10.20.255.1"));
    assert_false(matches(l, "10.21.0.1"));
    assert_true(matches(l, "192.168.1.200"));
    assert_false(matches(l, "192.168.1.100"));
    assert_false(matches(l, "::1"));
    allow_free(l);
}

static void test_ipv6_and_v4_mapped(void **state)
{
    (void)state;
    char err[128];
    allow_list *l = allow_parse("::1, fd00::/8, 127.0.0.0/8", err, sizeof err);
    assert_non_null(l);
    assert_true(matches(l, "::1"));
    assert_false(matches(l, "::2"));
    assert_true(matches(l, "fd12:3456::1"));
    assert_false(matches(l, "fe80::1"));
    assert_true(matches(l, "::ffff:127.0.0.9"));   /* an IPv4 peer on a v6 socket */
    assert_false(matches(l, "::ffff:128.0.0.1"));
    allow_free(l);
    l = allow_parse("0.0.0.0/0", err, sizeof err);
    assert_true(matches(l, "203.0.113.5"));
    assert_true(matches(l, "::ffff:203.0.113.5"));
    assert_false(matches(l, "2001:db8::1"));
    allow_free(l);
}

static void test_bad_lists_name_the_entry(void **state)
{
    (void)state;
    char err[128];
    assert_null(allow_parse("127.0.0.1, example.org", err, sizeof err));
    assert_non_null(strstr(err, "example.org"));
    assert_null(allow_parse("10.0.0.0/33", err, sizeof err));
    assert_non_null(strstr(err, "10.0.0.0"));
    assert_null(allow_parse("::1/129", err, sizeof err));
    assert_null(allow_parse("10.0.0.0/", err, sizeof err));
    assert_null(allow_parse("10.0.0.0/-1", err, sizeof err));
    assert_null(allow_parse("127.0.0.1,,::1", err, sizeof err));
    assert_null(allow_parse("", err, sizeof err));
    assert_null(allow_parse(NULL, err, sizeof err));
    char many[ALLOW_MAX_ENTRIES * 12 + 16] = "";
    for (int i = 0; i <= ALLOW_MAX_ENTRIES; i++)
        strcat(many, i ? ",10.0.0.1" : "10.0.0.1");
    assert_null(allow_parse(many, err, sizeof err));
    assert_non_null(strstr(err, "entries"));
}

static void test_no_list_or_no_address_matches_nothing(void **state)
{
    (void)state;
    char err[128];
    allow_list *l = allow_parse("0.0.0.0/0, ::/0", err, sizeof err);
    assert_false(allow_match(l, NULL));
    struct sockaddr unix_sa = {.sa_family = AF_UNIX};
    assert_false(allow_match(l, &unix_sa));
    peer p;
    assert_false(allow_match(NULL, addr_of(&p, "127.0.0.1")));
    allow_free(l);
}

static void test_refusals_are_counted_by_channel_and_reason(void **state)
{
    (void)state;
    peer p;
    allow_refused("ussd", "signature", addr_of(&p, "127.0.0.2"));
    allow_refused("ussd", "signature", addr_of(&p, "::ffff:127.0.0.2"));
    allow_refused("sms", "source", NULL);
    metrics_series *s = metrics_counter("cardline_peer_refused_total",
                                        "Peer requests refused before anything was done, by channel and reason.",
                                        "channel=\"ussd\",reason=\"signature\"");
    assert_true(metrics_value(s) == 2.0);
    char text[64];
    allow_format(addr_of(&p, "::ffff:127.0.0.2"), text, sizeof text);
    assert_string_equal(text, "127.0.0.2");
    allow_format(NULL, text, sizeof text);
    assert_string_equal(text, "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv4_addresses_and_prefixes),
        cmocka_unit_test(test_ipv6_and_v4_mapped),
        cmocka_unit_test(test_bad_lists_name_the_entry),
        cmocka_unit_test(test_no_list_or_no_address_matches_nothing),
        cmocka_unit_test(test_refusals_are_counted_by_channel_and_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
