/* test_sdp_check — the SDP gate: offers as sipp, linphone, baresip and an
 * IPv6 phone send them pass; the issue 13 datagram's body, bodies that are
 * not SDP, fields out of order or malformed, and bodies past each size
 * limit are refused, each with its reason. Also from several threads at
 * once, as the SIP thread and a fuzzer would call it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "sdp_check.h"

#define CRLF "\r\n"

static const char sipp_offer[] =
    "v=0" CRLF
    "o=user1 53655765 2353687637 IN IP4 127.0.0.1" CRLF
    "s=-" CRLF
    "c=IN IP4 127.0.0.1" CRLF
    "t=0 0" CRLF
    "m=audio 6000 RTP/AVP 8 0 101" CRLF
    "a=rtpmap:8 PCMA/8000" CRLF
    "a=rtpmap:0 PCMU/8000" CRLF
    "a=rtpmap:101 telephone-event/8000" CRLF
    "a=fmtp:101 0-15" CRLF;

static const char linphone_offer[] =
    "v=0" CRLF
    "o=wangwei 3223 1897 IN IP4 192.168.1.10" CRLF
    "s=Talk" CRLF
    "c=IN IP4 192.168.1.10" CRLF
    "t=0 0" CRLF
    "a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics" CRLF
    "m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100" CRLF
    "a=rtpmap:96 opus/48000/2" CRLF
    "a=fmtp:96 useinbandfec=1" CRLF
    "a=rtpmap:97 speex/16000" CRLF
    "a=fmtp:97 vbr=on" CRLF
    "a=rtpmap:98 speex/8000" CRLF
    "a=fmtp:18 annexb=yes" CRLF
    "a=rtpmap:101 telephone-event/48000" CRLF
    "a=rtpmap:99 telephone-event/16000" CRLF
    "a=rtpmap:100 telephone-event/8000" CRLF
    "a=rtcp-fb:* trr-int 1000" CRLF
    "a=rtcp-fb:* ccm tmmbr" CRLF;

static const char baresip_offer[] =
    "v=0" CRLF
    "o=- 1733212345 1733212346 IN IP4 127.0.0.1" CRLF
    "s=-" CRLF
    "c=IN IP4 127.0.0.1" CRLF
    "b=AS:80" CRLF
    "t=0 0" CRLF
    "a=tool:baresip 3.0.0" CRLF
    "m=audio 10000 RTP/AVP 0 8 101" CRLF
    "b=AS:80" CRLF
    "a=rtpmap:0 PCMU/8000" CRLF
    "a=rtpmap:8 PCMA/8000" CRLF
    "a=rtpmap:101 telephone-event/8000" CRLF
    "a=fmtp:101 0-15" CRLF
    "a=sendrecv" CRLF
    "a=label:1" CRLF
    "a=ssrc:1234 cname:abc" CRLF
    "a=rtcp-mux" CRLF
    "m=video 0 RTP/AVP 96" CRLF;

/* Bare LF ends, no end after the last line, IPv6, hold, every optional
 * session field in its place. */
static const char ipv6_hold_offer[] =
    "v=0\n"
    "o=- 1 2 IN IP6 ::1\n"
    "s=call\n"
    "i=a session\n"
    "u=http://example.com/x\n"
    "e=ops@example.com\n"
    "p=+86 10 1234 5678\n"
    "c=IN IP6 ::\n"
    "t=3034423619 3042462419\n"
    "r=604800 3600 0 90000\n"
    "z=2882844526 -1h 2898848070 0\n"
    "k=prompt\n"
    "a=sendonly\n"
    "m=audio 49170/2 RTP/AVP 0\n"
    "i=voice\n"
    "c=IN IP6 ::1\n"
    "a=ptime:20";

static void assert_passes(const char *body)
{
    const char *why = "unset";
    bool ok = sdp_check(body, strlen(body), &why);
    if (!ok)
        fprintf(stderr, "refused (%s):\n%s\n", why, body);
    assert_true(ok);
    assert_null(why);
}

static void assert_refused(const char *body, size_t len, const char *reason)
{
    const char *why = NULL;
    assert_false(sdp_check(body, len, &why));
    assert_non_null(why);
    assert_string_equal(why, reason);
}

static void test_real_offers_pass(void **state)
{
    (void)state;
    assert_passes(sipp_offer);
    assert_passes(linphone_offer);
    assert_passes(baresip_offer);
    assert_passes(ipv6_hold_offer);
    assert_true(sdp_check(sipp_offer, strlen(sipp_offer), NULL));
}

/* The body of the datagram that made sofia-sip 1.12.11 allocate without end:
 * an unknown protocol, then a format that is not a token. */
static void test_issue_13_body_refused(void **state)
{
    (void)state;
    static const char attack[] =
        "v=0" CRLF
        "o=- 1 1 IN IP4 127.0.0.1" CRLF
        "s=-" CRLF
        "c=IN IP4 127.0.0.1" CRLF
        "t=0 0" CRLF
        "m=audio 40000 X 8 <a>" CRLF;
    assert_refused(attack, strlen(attack), "grammar");
}

static void test_malformed_refused(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "this is not a session description",
        /* o= before v= */
        "o=- 1 1 IN IP4 127.0.0.1" CRLF "v=0" CRLF "s=-" CRLF "t=0 0" CRLF,
        /* version 1 */
        "v=1" CRLF "o=- 1 1 IN IP4 127.0.0.1" CRLF "s=-" CRLF "t=0 0" CRLF,
        /* session id not a number */
        "v=0" CRLF "o=- x 1 IN IP4 127.0.0.1" CRLF "s=-" CRLF "t=0 0" CRLF,
        /* no t= */
        "v=0" CRLF "o=- 1 1 IN IP4 127.0.0.1" CRLF "s=-" CRLF "m=audio 1 RTP/AVP 0" CRLF,
        /* empty session name */
        "v=0" CRLF "o=- 1 1 IN IP4 127.0.0.1" CRLF "s=" CRLF "t=0 0" CRLF,
        /* m= without a format */
        "v=0" CRLF "o=- 1 1 IN IP4 ::1" CRLF "s=-" CRLF "t=0 0" CRLF "m=audio 1 RTP/AVP" CRLF,
        /* a format with a separator character */
        "v=0" CRLF "o=- 1 1 IN IP4 ::1" CRLF "s=-" CRLF "t=0 0" CRLF "m=audio 1 RTP/AVP 0 (8)" CRLF,
        /* a port that is not a number */
        "v=0" CRLF "o=- 1 1 IN IP4 ::1" CRLF "s=-" CRLF "t=0 0" CRLF "m=audio x RTP/AVP 0" CRLF,
        /* two spaces */
        "v=0" CRLF "o=- 1 1 IN IP4 ::1" CRLF "s=-" CRLF "t=0 0" CRLF "m=audio 1 RTP/AVP  0" CRLF,
        /* an attribute without a name */
        "v=0" CRLF "o=- 1 1 IN IP4 ::1" CRLF "s=-" CRLF "t=0 0" CRLF "a=:x" CRLF,
        /* a session-level c= after t= */
        "v=0" CRLF "o=- 1 1 IN IP4 ::1" CRLF "s=-" CRLF "t=0 0" CRLF "c=IN IP4 1.2.3.4" CRLF,
        /* a lone CR inside a line */
        "v=0" CRLF "o=- 1 1 IN IP4 ::1" CRLF "s=a\rb" CRLF "t=0 0" CRLF,
        /* an unknown line type */
        "v=0" CRLF "o=- 1 1 IN IP4 ::1" CRLF "s=-" CRLF "t=0 0" CRLF "x=1" CRLF,
        /* a blank line */
        "v=0" CRLF "o=- 1 1 IN IP4 ::1" CRLF "s=-" CRLF CRLF "t=0 0" CRLF,
        /* a time of one digit that is not 0 */
        "v=0" CRLF "o=- 1 1 IN IP4 ::1" CRLF "s=-" CRLF "t=5 0" CRLF,
    };
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++)
        assert_refused(bodies[i], strlen(bodies[i]), "grammar");
    assert_refused("", 0, "empty");
    assert_false(sdp_check(NULL, 0, NULL));
    static const char with_nul[] = "v=0\r\no=- 1 1 IN IP4 ::1\r\ns=\0\r\nt=0 0\r\n";
    assert_refused(with_nul, sizeof with_nul - 1, "nul_byte");
}

/* Appends `line` CRLF `n` times to the sipp offer. */
static void grow(char *out, size_t size, const char *line, int n)
{
    size_t len = (size_t)snprintf(out, size, "%s", sipp_offer);
    for (int i = 0; i < n && len < size; i++)
        len += (size_t)snprintf(out + len, size - len, "%s" CRLF, line);
}

static void test_sizes_refused(void **state)
{
    (void)state;
    static char body[3 * SDP_CHECK_MAX_BYTES];
    grow(body, sizeof body, "a=x", SDP_CHECK_MAX_ATTRIBUTES - 4);
    assert_passes(body);
    grow(body, sizeof body, "a=x", SDP_CHECK_MAX_ATTRIBUTES - 3);
    assert_refused(body, strlen(body), "too_many_attributes");
    grow(body, sizeof body, "m=audio 0 RTP/AVP 0", SDP_CHECK_MAX_MEDIA - 1);
    assert_passes(body);
    grow(body, sizeof body, "m=audio 0 RTP/AVP 0", SDP_CHECK_MAX_MEDIA);
    assert_refused(body, strlen(body), "too_many_media");
    grow(body, sizeof body, "b=AS:1", SDP_CHECK_MAX_LINES);
    assert_refused(body, strlen(body), "too_many_lines");

    char line[SDP_CHECK_MAX_LINE + 2] = "a=";
    memset(line + 2, 'x', SDP_CHECK_MAX_LINE - 2);
    line[SDP_CHECK_MAX_LINE] = '\0';
    grow(body, sizeof body, line, 1);
    assert_passes(body);
    strcat(line, "x");
    grow(body, sizeof body, line, 1);
    assert_refused(body, strlen(body), "line_too_long");

    char formats[SDP_CHECK_MAX_LINE] = "m=audio 1 RTP/AVP";
    for (int i = 0; i < SDP_CHECK_MAX_FORMATS; i++)
        snprintf(formats + strlen(formats), sizeof formats - strlen(formats), " %d", 96 + i);
    grow(body, sizeof body, formats, 1);
    assert_passes(body);
    strcat(formats, " 0");
    grow(body, sizeof body, formats, 1);
    assert_refused(body, strlen(body), "too_many_formats");

    memset(body, 'a', SDP_CHECK_MAX_BYTES + 1);
    assert_refused(body, SDP_CHECK_MAX_BYTES + 1, "too_large");
}

static void *check_many(void *arg)
{
    (void)arg;
    int passed = 0;
    for (int i = 0; i < 2000; i++)
        passed += sdp_check(linphone_offer, strlen(linphone_offer), NULL) &&
                  !sdp_check("v=0\r\n", 5, NULL);
    return (void *)(size_t)passed;
}

static void test_threads(void **state)
{
    (void)state;
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, check_many, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *passed;
        pthread_join(th[i], &passed);
        assert_int_equal((size_t)passed, 2000);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_offers_pass),
        cmocka_unit_test(test_issue_13_body_refused),
        cmocka_unit_test(test_malformed_refused),
        cmocka_unit_test(test_sizes_refused),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
