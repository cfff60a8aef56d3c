/* Unit tests of rtp.h and dtmf.h: packets packed and parsed back, hostile
 * datagrams refused without reading past their end (ASan watches), RFC 4733
 * events reported once per (SSRC, timestamp) as real peers send them, and
 * in-band tones made by spandsp's dtmf_tx found again in A-law and µ-law. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <spandsp.h>

#include "dtmf.h"
#include "rtp.h"

/* Packets -------------------------------------------------------------------*/

static void test_pack_parse_round_trip(void **state)
{
    (void)state;
    uint8_t payload[RTP_SAMPLES_PER_PACKET];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 7);
    rtp_packet in = {.pt = RTP_PT_PCMA,
                     .marker = true,
                     .seq = 0xfffe,
                     .ts = 0xfffffff0u,
                     .ssrc = 0xdeadbeef,
                     .payload = payload,
                     .payload_len = sizeof payload};
    uint8_t buf[RTP_MAX_PACKET];
    size_t len = rtp_pack(&in, buf, sizeof buf);
    assert_int_equal(len, RTP_HEADER_BYTES + sizeof payload);
    assert_int_equal(buf[0], 0x80);
    assert_int_equal(buf[1], 0x88);

    rtp_packet out;
    assert_true(rtp_parse(buf, len, &out));
    assert_int_equal(out.pt, RTP_PT_PCMA);
    assert_true(out.marker);
    assert_int_equal(out.seq, 0xfffe);
    assert_int_equal(out.ts, 0xfffffff0u);
    assert_int_equal(out.ssrc, 0xdeadbeef);
    assert_int_equal(out.payload_len, sizeof payload);
    assert_ptr_equal(out.payload, buf + RTP_HEADER_BYTES);
    assert_memory_equal(out.payload, payload, sizeof payload);

    in.marker = false;
    in.pt = RTP_PT_PCMU;
    len = rtp_pack(&in, buf, sizeof buf);
    assert_true(rtp_parse(buf, len, &out));
    assert_false(out.marker);
    assert_int_equal(out.pt, RTP_PT_PCMU);
}

static void test_pack_refuses_small_buffer(void **state)
{
    (void)state;
    uint8_t payload[RTP_SAMPLES_PER_PACKET] = {0};
    rtp_packet p = {.pt = 8, .payload = payload, .payload_len = sizeof payload};
    uint8_t buf[RTP_HEADER_BYTES + RTP_SAMPLES_PER_PACKET];
    assert_int_equal(rtp_pack(&p, buf, sizeof buf - 1), 0);
    assert_int_equal(rtp_pack(&p, buf, 4), 0);
    assert_int_equal(rtp_pack(&p, buf, sizeof buf), sizeof buf);
    p.pt = 128;
    assert_int_equal(rtp_pack(&p, buf, sizeof buf), 0);
}

/* A header with `cc` CSRCs, an extension of `ext_words` words when
 * ext_words >= 0, `payload` bytes and `pad` padding bytes; returns length. */
static size_t build(uint8_t *buf, int cc, int ext_words, size_t payload, uint8_t pad)
{
    size_t off = 0;
    buf[off++] = (uint8_t)(0x80 | (ext_words >= 0 ? 0x10 : 0) | (pad ? 0x20 : 0) | cc);
    buf[off++] = 101;
    memset(buf + off, 0x11, 10);
    off += 10;
    memset(buf + off, 0x22, 4u * cc);
    off += 4u * cc;
    if (ext_words >= 0) {
        buf[off++] = 0xbe;
        buf[off++] = 0xde;
        buf[off++] = (uint8_t)(ext_words >> 8);
        buf[off++] = (uint8_t)ext_words;
        memset(buf + off, 0x33, 4u * ext_words);
        off += 4u * ext_words;
    }
    memset(buf + off, 0x44, payload);
    off += payload;
    if (pad) {
        memset(buf + off, 0, pad);
        off += pad;
        buf[off - 1] = pad;
    }
    return off;
}

static void test_parse_csrc_extension_padding(void **state)
{
    (void)state;
    uint8_t buf[RTP_MAX_PACKET];
    rtp_packet p;
    size_t len = build(buf, 2, 3, 4, 4);
    assert_true(rtp_parse(buf, len, &p));
    assert_int_equal(p.payload_len, 4);
    assert_ptr_equal(p.payload, buf + 12 + 8 + 4 + 12);
    assert_int_equal(p.payload[0], 0x44);

    len = build(buf, 0, 0, 0, 0); /* empty extension, no payload */
    assert_true(rtp_parse(buf, len, &p));
    assert_int_equal(p.payload_len, 0);
}

static void test_parse_refuses_overruns(void **state)
{
    (void)state;
    uint8_t buf[RTP_MAX_PACKET + 16];
    rtp_packet p;
    size_t len;

    len = build(buf, 15, -1, 0, 0); /* 15 CSRCs, exactly enough */
    assert_true(rtp_parse(buf, len, &p));
    assert_false(rtp_parse(buf, len - 1, &p)); /* CSRC list past the end */
    assert_false(rtp_parse(buf, 12 + 4 * 15 - 4, &p));

    len = build(buf, 0, 2, 0, 0);
    assert_false(rtp_parse(buf, len - 1, &p)); /* extension body past the end */
    assert_false(rtp_parse(buf, 12 + 2, &p));  /* extension header cut */
    len = build(buf, 1, 0, 0, 0);
    buf[12 + 4 + 2] = 0xff; /* extension length 0xffxx words */
    assert_false(rtp_parse(buf, len, &p));

    len = build(buf, 0, -1, 4, 4);
    buf[len - 1] = 9; /* padding longer than the payload */
    assert_false(rtp_parse(buf, len, &p));
    buf[len - 1] = 0; /* padding flag with zero count */
    assert_false(rtp_parse(buf, len, &p));
    buf[len - 1] = 8; /* padding eats the whole payload */
    assert_true(rtp_parse(buf, len, &p));
    assert_int_equal(p.payload_len, 0);

    len = build(buf, 0, -1, 160, 0);
    assert_false(rtp_parse(buf, 11, &p)); /* shorter than a header */
    assert_false(rtp_parse(buf, 0, &p));
    buf[0] = 0x40; /* version 1 */
    assert_false(rtp_parse(buf, len, &p));
    buf[0] = 0x80;
    buf[1] = 200; /* RTCP sender report */
    assert_false(rtp_parse(buf, len, &p));
    memset(buf, 0x80, sizeof buf);
    buf[1] = 8;
    assert_false(rtp_parse(buf, RTP_MAX_PACKET + 1, &p)); /* larger than any packet of ours */
}

/* Random datagrams: whatever parses must describe bytes inside the buffer. */
static void test_parse_garbage(void **state)
{
    (void)state;
    uint32_t x = 12345;
    int accepted = 0;
    for (int round = 0; round < 20000; round++) {
        size_t len = 0;
        x = x * 1103515245u + 12345u;
        len = (x >> 8) % 64;
        uint8_t *buf = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++) {
            x = x * 1103515245u + 12345u;
            buf[i] = (uint8_t)(x >> 16);
        }
        if (len && round % 2)
            buf[0] = (uint8_t)(0x80 | (buf[0] & 0x3f)); /* half look like version 2 */
        rtp_packet p;
        if (rtp_parse(buf, len, &p)) {
            accepted++;
            assert_true(p.payload >= buf + RTP_HEADER_BYTES);
            assert_true(p.payload + p.payload_len <= buf + len);
        }
        free(buf);
    }
    assert_true(accepted > 0);
    printf("garbage: %d of 20000 random datagrams parse as RTP, all within bounds\n", accepted);
}

/* RFC 4733 events -----------------------------------------------------------*/

static void test_event_parse(void **state)
{
    (void)state;
    const uint8_t bytes[] = {0x0b, 0x8a, 0x03, 0x20};
    rtp_event ev;
    assert_true(rtp_event_parse(bytes, sizeof bytes, &ev));
    assert_int_equal(ev.event, 11);
    assert_true(ev.end);
    assert_int_equal(ev.volume, 10);
    assert_int_equal(ev.duration, 800);
    assert_false(rtp_event_parse(bytes, 3, &ev));

    const char *keys = "0123456789*#ABCD";
    for (int e = 0; e < 16; e++)
        assert_int_equal(rtp_event_digit((uint8_t)e), keys[e]);
    assert_int_equal(rtp_event_digit(16), 0);
    assert_int_equal(rtp_event_digit(255), 0);
}

static rtp_packet event_packet(uint8_t *payload, uint32_t ssrc, uint32_t ts, uint16_t seq, uint8_t event, bool end,
                               uint16_t duration)
{
    payload[0] = event;
    payload[1] = (uint8_t)((end ? 0x80 : 0) | 10);
    payload[2] = (uint8_t)(duration >> 8);
    payload[3] = (uint8_t)duration;
    return (rtp_packet){.pt = 101, .seq = seq, .ts = ts, .ssrc = ssrc, .payload = payload, .payload_len = 4};
}

/* Feeds packets and returns what was reported, as a string. */
static void feed_all(rtp_event_dedupe *d, const rtp_packet *pkts, size_t n, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = rtp_event_feed(d, &pkts[i]);
        if (c)
            out[k++] = c;
    }
    out[k] = 0;
}

/* The packets of sipp's dtmf_2833_1.pcap, byte for byte: one timestamp,
 * duration +320 per 20 ms, three end packets with one sequence number. */
static void test_event_sipp_pcap(void **state)
{
    (void)state;
    static const uint8_t payloads[10][4] = {
        {0x01, 0x0a, 0x00, 0x00}, {0x01, 0x0a, 0x01, 0x40}, {0x01, 0x0a, 0x02, 0x80}, {0x01, 0x0a, 0x03, 0xc0},
        {0x01, 0x0a, 0x05, 0x00}, {0x01, 0x0a, 0x06, 0x40}, {0x01, 0x0a, 0x07, 0x80}, {0x01, 0x8a, 0x08, 0xc0},
        {0x01, 0x8a, 0x08, 0xc0}, {0x01, 0x8a, 0x08, 0xc0}};
    static const uint16_t seqs[10] = {7984, 7985, 7986, 7987, 7988, 7989, 7990, 7991, 7991, 7991};
    rtp_packet pkts[10];
    for (int i = 0; i < 10; i++)
        pkts[i] = (rtp_packet){.pt = 101,
                               .marker = i == 0,
                               .seq = seqs[i],
                               .ts = 13280,
                               .ssrc = 0x0e05384e,
                               .payload = payloads[i],
                               .payload_len = 4};
    rtp_event_dedupe d = {0};
    char got[16];
    feed_all(&d, pkts, 10, got);
    assert_string_equal(got, "1");
}

static void test_event_dedupe(void **state)
{
    (void)state;
    uint8_t pl[16][4];
    rtp_packet pkts[16];
    char got[16];
    rtp_event_dedupe d = {0};

    /* a start, two updates, three end packets sharing one seq */
    pkts[0] = event_packet(pl[0], 7, 1000, 1, 5, false, 160);
    pkts[1] = event_packet(pl[1], 7, 1000, 2, 5, false, 320);
    pkts[2] = event_packet(pl[2], 7, 1000, 3, 5, false, 480);
    pkts[3] = event_packet(pl[3], 7, 1000, 4, 5, true, 640);
    pkts[4] = pkts[3];
    pkts[5] = pkts[3];
    feed_all(&d, pkts, 6, got);
    assert_string_equal(got, "5");

    /* the same key again: a new timestamp, a new report */
    pkts[0] = event_packet(pl[0], 7, 2000, 5, 5, false, 160);
    pkts[1] = event_packet(pl[1], 7, 2000, 6, 5, true, 320);
    feed_all(&d, pkts, 2, got);
    assert_string_equal(got, "5");

    /* end packets all lost: still reported once, from the first packet */
    pkts[0] = event_packet(pl[0], 7, 3000, 7, 11, false, 160);
    pkts[1] = event_packet(pl[1], 7, 3000, 8, 11, false, 320);
    /* then the next key, with only its end packets arriving */
    pkts[2] = event_packet(pl[2], 7, 4000, 9, 10, true, 640);
    pkts[3] = pkts[2];
    pkts[4] = pkts[2];
    feed_all(&d, pkts, 5, got);
    assert_string_equal(got, "#*");

    /* a late end packet of an earlier event arrives after a newer one */
    pkts[0] = event_packet(pl[0], 7, 5000, 10, 1, false, 160);
    pkts[1] = event_packet(pl[1], 7, 6000, 11, 2, false, 160);
    pkts[2] = event_packet(pl[2], 7, 5000, 10, 1, true, 480);
    feed_all(&d, pkts, 3, got);
    assert_string_equal(got, "12");

    /* another source with the same timestamp is another event */
    pkts[0] = event_packet(pl[0], 8, 6000, 1, 3, false, 160);
    feed_all(&d, pkts, 1, got);
    assert_string_equal(got, "3");

    /* a new source clock far behind the old one is new, not a repeat */
    pkts[0] = event_packet(pl[0], 8, 6000u - 80000u, 2, 4, false, 160);
    feed_all(&d, pkts, 1, got);
    assert_string_equal(got, "4");

    /* timestamps wrapping past 2^32 */
    pkts[0] = event_packet(pl[0], 9, 0xffffff00u, 1, 6, true, 160);
    pkts[1] = event_packet(pl[1], 9, 0x00000100u, 2, 7, false, 160);
    pkts[2] = event_packet(pl[2], 9, 0xffffff00u, 1, 6, true, 160);
    feed_all(&d, pkts, 3, got);
    assert_string_equal(got, "67");

    /* not keys, or too short: nothing */
    pkts[0] = event_packet(pl[0], 9, 9000, 3, 16, false, 160);
    pkts[1] = event_packet(pl[1], 9, 9160, 4, 0, false, 160);
    pkts[1].payload_len = 3;
    feed_all(&d, pkts, 2, got);
    assert_string_equal(got, "");
}

/* In-band tones ---------------------------------------------------------------*/

typedef struct {
    char digits[64]; /* keys reported, in order */
    size_t n;        /* their count */
} collected;

static void collect(char digit, void *arg)
{
    collected *c = arg;
    if (c->n + 1 < sizeof c->digits)
        c->digits[c->n++] = digit;
    c->digits[c->n] = 0;
}

/* Tones of `keys` made by dtmf_tx (then 200 ms of silence), coded in
 * `pt`'s law, fed to a detector in 160-byte payloads. */
static void detect_tones(int pt, const char *keys, collected *c)
{
    dtmf_tx_state_t *tx = dtmf_tx_init(NULL);
    assert_non_null(tx);
    assert_int_equal(dtmf_tx_put(tx, keys, -1), 0); /* 0: all keys queued */
    voice_inband *d = voice_inband_new();
    assert_non_null(d);
    memset(c, 0, sizeof *c);
    int silent = 0;
    while (silent < 10) {
        int16_t pcm[RTP_SAMPLES_PER_PACKET] = {0};
        int n = dtmf_tx(tx, pcm, RTP_SAMPLES_PER_PACKET);
        silent = n == 0 ? silent + 1 : 0;
        uint8_t payload[RTP_SAMPLES_PER_PACKET];
        for (int i = 0; i < RTP_SAMPLES_PER_PACKET; i++)
            payload[i] = pt == RTP_PT_PCMA ? linear_to_alaw(pcm[i]) : linear_to_ulaw(pcm[i]);
        voice_inband_feed(d, pt, payload, sizeof payload, collect, c);
    }
    voice_inband_free(d);
    dtmf_tx_free(tx);
}

static void test_inband_alaw(void **state)
{
    (void)state;
    collected c;
    detect_tones(RTP_PT_PCMA, "0123456789*#ABCD", &c);
    assert_string_equal(c.digits, "0123456789*#ABCD");
    detect_tones(RTP_PT_PCMA, "1155", &c);
    assert_string_equal(c.digits, "1155");
}

static void test_inband_ulaw(void **state)
{
    (void)state;
    collected c;
    detect_tones(RTP_PT_PCMU, "0123456789*#ABCD", &c);
    assert_string_equal(c.digits, "0123456789*#ABCD");
    detect_tones(RTP_PT_PCMU, "#9#", &c);
    assert_string_equal(c.digits, "#9#");
}

static void test_inband_ignores_silence_and_other_types(void **state)
{
    (void)state;
    voice_inband *d = voice_inband_new();
    collected c = {0};
    uint8_t alaw_silence[RTP_SAMPLES_PER_PACKET], ulaw_silence[RTP_SAMPLES_PER_PACKET];
    memset(alaw_silence, 0xd5, sizeof alaw_silence);
    memset(ulaw_silence, 0xff, sizeof ulaw_silence);
    for (int i = 0; i < 100; i++) {
        voice_inband_feed(d, RTP_PT_PCMA, alaw_silence, sizeof alaw_silence, collect, &c);
        voice_inband_feed(d, RTP_PT_PCMU, ulaw_silence, sizeof ulaw_silence, collect, &c);
    }
    assert_int_equal(c.n, 0);

    /* the tone of '7' labelled with a payload type that is not G.711 */
    dtmf_tx_state_t *tx = dtmf_tx_init(NULL);
    dtmf_tx_put(tx, "7", 1);
    for (int i = 0; i < 20; i++) {
        int16_t pcm[RTP_SAMPLES_PER_PACKET] = {0};
        dtmf_tx(tx, pcm, RTP_SAMPLES_PER_PACKET);
        uint8_t payload[RTP_SAMPLES_PER_PACKET];
        for (int k = 0; k < RTP_SAMPLES_PER_PACKET; k++)
            payload[k] = linear_to_alaw(pcm[k]);
        voice_inband_feed(d, 18, payload, sizeof payload, collect, &c);
    }
    assert_int_equal(c.n, 0);
    dtmf_tx_free(tx);
    voice_inband_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack_parse_round_trip),
        cmocka_unit_test(test_pack_refuses_small_buffer),
        cmocka_unit_test(test_parse_csrc_extension_padding),
        cmocka_unit_test(test_parse_refuses_overruns),
        cmocka_unit_test(test_parse_garbage),
        cmocka_unit_test(test_event_parse),
        cmocka_unit_test(test_event_sipp_pcap),
        cmocka_unit_test(test_event_dedupe),
        cmocka_unit_test(test_inband_alaw),
        cmocka_unit_test(test_inband_ulaw),
        cmocka_unit_test(test_inband_ignores_silence_and_other_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
