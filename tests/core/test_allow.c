/* allow: IPv4 and IPv6 addresses and prefixes, v4-mapped peers, bad lists
 * refused naming the entry, and refusals counted by channel and reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

/* Kernel filters: real sockets on loopback --------------------------------------*/

static int bound_udp(const char *addr, struct sockaddr_storage *out, socklen_t *len)
{
    peer p;
    const struct sockaddr *sa = addr_of(&p, addr);
    int fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    *len = sa->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    assert_int_equal(bind(fd, sa, *len), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)out, len), 0);
    return fd;
}

/* Sends `text` from a socket bound to `from` to `to`. */
static void send_from(const char *from, const struct sockaddr_storage *to, socklen_t to_len,
                      const char *text)
{
    struct sockaddr_storage me;
    socklen_t len;
    int fd = bound_udp(from, &me, &len);
    assert_int_equal(sendto(fd, text, strlen(text), 0, (const struct sockaddr *)to, to_len),
                     (ssize_t)strlen(text));
    close(fd);
}

/* The datagrams waiting on `fd`, joined with spaces, without waiting. */
static void drain(int fd, char *out, size_t size)
{
    out[0] = '\0';
    char buf[64];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT)) > 0) {
        buf[n] = '\0';
        if (out[0])
            strncat(out, " ", size - strlen(out) - 1);
        strncat(out, buf, size - strlen(out) - 1);
    }
    assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

/* Which senders' datagrams a socket on `at` filtered by `list` lets
 * through. The last datagram comes from an allowed sender; once it has
 * arrived, every earlier one has been judged (loopback keeps the order). */
static void expect_delivered(const char *at, const char *list, const char *const *senders, size_t n,
                             const char *last_allowed, const char *want)
{
    char err[128], got[256];
    allow_list *l = list ? allow_parse(list, err, sizeof err) : NULL;
    assert_true(list == NULL || l != NULL);
    struct sockaddr_storage sa;
    socklen_t len;
    int fd = bound_udp(at, &sa, &len);
    assert_int_equal(allow_filter_socket(l, fd), 0);
    for (size_t i = 0; i < n; i++)
        send_from(senders[i], &sa, len, senders[i]);
    if (last_allowed) {
        send_from(last_allowed, &sa, len, "last");
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        assert_int_equal(poll(&pfd, 1, 5000), 1);
    }
    drain(fd, got, sizeof got);
    assert_string_equal(got, want);
    close(fd);
    allow_free(l);
}

static void test_filter_drops_ipv4_strangers_in_the_kernel(void **state)
{
    (void)state;
    const char *senders[] = {"127.0.0.2", "127.0.0.1", "127.0.0.5", "127.0.3.1"};
    expect_delivered("127.0.0.1", "127.0.0.1", senders, 4, "127.0.0.1", "127.0.0.1 last");
    expect_delivered("127.0.0.1", "127.0.0.4/30, 127.0.3.0/24", senders, 4, "127.0.0.6",
                     "127.0.0.5 127.0.3.1 last");
    expect_delivered("127.0.0.1", "::/0", senders, 4, "127.0.0.9",
                     "127.0.0.2 127.0.0.1 127.0.0.5 127.0.3.1 last");
}

static void test_filter_reads_ipv6_and_drops_all_for_no_list(void **state)
{
    (void)state;
    const char *v6[] = {"::1"};
    expect_delivered("::1", "::1", v6, 1, "::1", "::1 last");
    const char *senders[] = {"127.0.0.1", "127.0.0.2"};
    expect_delivered("127.0.0.1", NULL, senders, 2, NULL, "");
    /* No IPv6 entry admits an IPv6 packet; nothing but ::1 reaches here. */
    peer p;
    int probe = socket(AF_INET6, SOCK_DGRAM, 0);
    bool have_v6 = probe >= 0 && bind(probe, addr_of(&p, "::1"), sizeof(struct sockaddr_in6)) == 0;
    if (probe >= 0)
        close(probe);
    if (have_v6) {
        char err[128], got[64];
        allow_list *l = allow_parse("127.0.0.1, fd00::/8", err, sizeof err);
        struct sockaddr_storage sa;
        socklen_t len;
        int fd = bound_udp("::1", &sa, &len);
        assert_int_equal(allow_filter_socket(l, fd), 0);
        send_from("::1", &sa, len, "dropped"); /* loopback delivers within sendto */
        drain(fd, got, sizeof got);
        assert_string_equal(got, "");
        close(fd);
        allow_free(l);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv4_addresses_and_prefixes),
        cmocka_unit_test(test_ipv6_and_v4_mapped),
        cmocka_unit_test(test_bad_lists_name_the_entry),
        cmocka_unit_test(test_no_list_or_no_address_matches_nothing),
        cmocka_unit_test(test_refusals_are_counted_by_channel_and_reason),
        cmocka_unit_test(test_filter_drops_ipv4_strangers_in_the_kernel),
        cmocka_unit_test(test_filter_reads_ipv6_and_drops_all_for_no_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
