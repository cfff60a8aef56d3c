/* test_media — RTP streams on 127.0.0.1 against UDP sockets of the test:
 * what a stream sends (sequence, timestamps, SSRC, marker, the clip's
 * bytes then G.711 silence), on_played after the clip and never after
 * stop, hold, a new peer, RFC 4733 keys (sipp's packets), in-band keys,
 * hostile datagrams, inactivity, closing a stream from its own callback,
 * the port range, and values that are still being made (waited for, then
 * played or skipped). The loop runs until a condition holds, with a bounded
 * deadline; no assertion depends on timing (intervals are printed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "harness.h"
#include "media.h"
#include "rtp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <spandsp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WAIT_MS 10000
#define MAX_PKTS 256
#define SILENCE_PCMA 0xD5
#define SILENCE_PCMU 0xFF

/* A received packet, copied. */
typedef struct {
    rtp_packet h;                         /* header fields (payload points into data) */
    uint8_t data[RTP_SAMPLES_PER_PACKET]; /* payload bytes */
    long at_us;                           /* arrival, monotonic microseconds */
} pkt;

/* A UDP socket of the test that streams send to. */
typedef struct {
    int fd;                  /* bound to 127.0.0.1, non-blocking */
    struct sockaddr_in addr; /* its address */
    struct event *ev;        /* read event */
    pkt pkts[MAX_PKTS];      /* packets kept */
    int n;                   /* packets received (may exceed MAX_PKTS) */
    int bad;                 /* datagrams that were not 172-byte RTP */
} sink;

/* What a stream's callbacks saw. */
typedef struct {
    voice_stream *s;        /* the stream (NULL once closed by a callback) */
    sink *watch;            /* sink to drain when on_played fires */
    int played;             /* on_played calls */
    int played_at;          /* packets at watch when on_played first ran */
    int inactive;           /* on_inactive calls */
    char digits[32];        /* keys, in order */
    int ndigits;            /* their count */
    bool close_on_digit;    /* close the stream inside on_digit */
    bool close_on_inactive; /* close the stream inside on_inactive */
} calls;

typedef struct {
    struct event_base *base; /* the loop */
    struct event *wake;      /* wakes the loop so waits see their deadline */
    voice_media *m;          /* media under test */
} fixture;

static long now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000L + t.tv_nsec / 1000L;
}

/* Sinks ---------------------------------------------------------------------*/

static void sink_drain(sink *k)
{
    uint8_t buf[2048];
    for (;;) {
        ssize_t len = recv(k->fd, buf, sizeof buf, 0);
        if (len < 0)
            break;
        rtp_packet p;
        if (!rtp_parse(buf, (size_t)len, &p) || p.payload_len != RTP_SAMPLES_PER_PACKET) {
            k->bad++;
            continue;
        }
        if (k->n < MAX_PKTS) {
            pkt *o = &k->pkts[k->n];
            o->h = p;
            memcpy(o->data, p.payload, p.payload_len);
            o->h.payload = o->data;
            o->at_us = now_us();
        }
        k->n++;
    }
}

static void on_sink(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sink_drain(arg);
}

static void sink_open(fixture *f, sink *k)
{
    memset(k, 0, sizeof *k);
    k->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    assert_true(k->fd >= 0);
    k->addr.sin_family = AF_INET;
    k->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(k->fd, (struct sockaddr *)&k->addr, sizeof k->addr), 0);
    socklen_t len = sizeof k->addr;
    getsockname(k->fd, (struct sockaddr *)&k->addr, &len);
    k->ev = event_new(f->base, k->fd, EV_READ | EV_PERSIST, on_sink, k);
    event_add(k->ev, NULL);
}

static void sink_close(sink *k)
{
    event_free(k->ev);
    close(k->fd);
}

/* Sends a datagram from the sink's socket to a stream's port. */
static void sink_send(sink *k, int port, const void *data, size_t len)
{
    struct sockaddr_in to = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(sendto(k->fd, data, len, 0, (struct sockaddr *)&to, sizeof to), (ssize_t)len);
}

static void send_rtp(sink *k, int port, uint8_t pt, bool marker, uint16_t seq, uint32_t ts, uint32_t ssrc,
                     const uint8_t *payload, size_t len)
{
    rtp_packet p = {
        .pt = pt, .marker = marker, .seq = seq, .ts = ts, .ssrc = ssrc, .payload = payload, .payload_len = len};
    uint8_t buf[RTP_MAX_PACKET];
    size_t n = rtp_pack(&p, buf, sizeof buf);
    assert_true(n > 0);
    sink_send(k, port, buf, n);
}

/* One key as sipp's dtmf_2833 pcaps send it: one timestamp, duration +320
 * every packet, three end packets with one sequence number. */
static void send_event(sink *k, int port, uint8_t event, uint16_t seq, uint32_t ts)
{
    for (int i = 0; i < 10; i++) {
        bool end = i >= 7;
        uint16_t duration = (uint16_t)(320 * (end ? 7 : i));
        uint8_t pl[4] = {event, (uint8_t)((end ? 0x80 : 0) | 10), (uint8_t)(duration >> 8), (uint8_t)duration};
        send_rtp(k, port, 101, i == 0, (uint16_t)(seq + (end ? 7 : i)), ts, 0x0e05384e, pl, 4);
    }
}

/* Callbacks -----------------------------------------------------------------*/

static void cb_digit(char digit, void *arg)
{
    calls *c = arg;
    if (c->ndigits + 1 < (int)sizeof c->digits)
        c->digits[c->ndigits++] = digit;
    if (c->close_on_digit && c->s) {
        voice_stream_close(c->s);
        c->s = NULL;
    }
}

static void cb_played(void *arg)
{
    calls *c = arg;
    if (c->played++ == 0 && c->watch) {
        sink_drain(c->watch);
        c->played_at = c->watch->n;
    }
}

static void cb_inactive(void *arg)
{
    calls *c = arg;
    c->inactive++;
    if (c->close_on_inactive && c->s) {
        voice_stream_close(c->s);
        c->s = NULL;
    }
}

static const voice_stream_cbs cbs = {cb_digit, cb_played, cb_inactive};

/* Fixture -------------------------------------------------------------------*/

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* A port range of our own for this process, so parallel tests rarely meet
 * (and skip each other's ports when they do). */
static int range_base(void)
{
    return 30000 + (getpid() % 1000) * 20;
}

static voice_media *media_with(fixture *f, int port_min, int port_max, int max_streams, int inactivity_ms)
{
    voice_media_options o = {.bind_addr = "127.0.0.1",
                             .port_min = port_min,
                             .port_max = port_max,
                             .max_streams = max_streams,
                             .inactivity_ms = inactivity_ms};
    return voice_media_new(f->base, &o);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->base = event_base_new();
    f->wake = event_new(f->base, -1, EV_PERSIST, on_wake, NULL);
    struct timeval tv = {0, 10000};
    event_add(f->wake, &tv);
    f->m = media_with(f, range_base(), range_base() + 19, 8, 0);
    assert_non_null(f->m);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    voice_media_free(f->m);
    event_free(f->wake);
    event_base_free(f->base);
    free(f);
    return 0;
}

#define WAIT_FOR(f, cond)                                                                                              \
    do {                                                                                                               \
        long deadline_ = th_now_ms() + WAIT_MS;                                                                        \
        while (!(cond) && th_now_ms() < deadline_)                                                                     \
            event_base_loop((f)->base, EVLOOP_ONCE);                                                                   \
        assert_true(cond);                                                                                             \
    } while (0)

/* Runs the loop for `ms`: only to show that something did NOT happen. */
static void run_for(fixture *f, long ms)
{
    long deadline = th_now_ms() + ms;
    while (th_now_ms() < deadline)
        event_base_loop(f->base, EVLOOP_ONCE);
}

static void set_peer(voice_stream *s, const sink *k, int pt, int dtmf_pt)
{
    voice_stream_set_peer(s, (const struct sockaddr *)&k->addr, sizeof k->addr, pt, dtmf_pt);
}

/* Checks -----------------------------------------------------------------------*/

/* One spurt: seq +1, ts +160, one SSRC, marker on the first only. */
static void assert_continuous(const sink *k, int from, int to)
{
    for (int i = from + 1; i < to; i++) {
        assert_int_equal((uint16_t)(k->pkts[i].h.seq - k->pkts[i - 1].h.seq), 1);
        assert_int_equal(k->pkts[i].h.ts - k->pkts[i - 1].h.ts, RTP_SAMPLES_PER_PACKET);
        assert_int_equal(k->pkts[i].h.ssrc, k->pkts[from].h.ssrc);
        assert_false(k->pkts[i].h.marker);
    }
}

/* Payload bytes of packets [0, n) in one buffer. */
static void payload_stream(const sink *k, int n, uint8_t *out)
{
    for (int i = 0; i < n; i++)
        memcpy(out + i * RTP_SAMPLES_PER_PACKET, k->pkts[i].data, RTP_SAMPLES_PER_PACKET);
}

static void print_intervals(const char *what, const sink *k, int n)
{
    long iv[MAX_PKTS], lo = 1L << 40, hi = 0;
    int m = 0;
    for (int i = 1; i < n && i < MAX_PKTS; i++) {
        iv[m] = k->pkts[i].at_us - k->pkts[i - 1].at_us;
        if (iv[m] < lo)
            lo = iv[m];
        if (iv[m] > hi)
            hi = iv[m];
        m++;
    }
    long sum = 0;
    for (int i = 0; i < m; i++)
        sum += iv[i];
    printf("%s: %d intervals at the receiver: min %ld us, mean %ld us, max %ld us\n", what, m, lo, m ? sum / m : 0, hi);
}

/* Tests ----------------------------------------------------------------------*/

/* A-law: two clips (the first ending mid-packet), then silence; on_played
 * once, after the packet carrying the last sample. */
static void play_and_check(fixture *f, int pt, uint8_t silence)
{
    static uint8_t a1[400], a2[100], u1[400], u2[100];
    for (int i = 0; i < 400; i++) {
        a1[i] = (uint8_t)(i % 200);
        u1[i] = (uint8_t)(i % 100 + 1);
    }
    for (int i = 0; i < 100; i++) {
        a2[i] = (uint8_t)(200 + i % 13);
        u2[i] = (uint8_t)(150 + i % 17);
    }
    const voice_clip c1 = {a1, u1, 400, NULL}, gap = {NULL, NULL, 40, NULL}, c2 = {a2, u2, 100, NULL};
    const voice_clip *list[] = {&c1, &gap, &c2};

    sink k;
    sink_open(f, &k);
    calls c = {.watch = &k};
    voice_stream *s = voice_stream_open(f->m, &cbs, &c);
    assert_non_null(s);
    c.s = s;
    voice_stream_play(s, list, 3);
    set_peer(s, &k, pt, 101);
    assert_int_equal(c.played, 0);
    WAIT_FOR(f, k.n >= 12 && c.played);
    assert_int_equal(k.bad, 0);
    assert_true(k.pkts[0].h.marker);
    assert_int_equal(k.pkts[0].h.pt, pt);
    assert_continuous(&k, 0, 12);

    /* 540 samples of play list: packets 1..4 carry them, then silence */
    uint8_t got[12 * RTP_SAMPLES_PER_PACKET], want[12 * RTP_SAMPLES_PER_PACKET];
    memset(want, silence, sizeof want);
    memcpy(want, pt == RTP_PT_PCMA ? a1 : u1, 400);
    memcpy(want + 440, pt == RTP_PT_PCMA ? a2 : u2, 100);
    payload_stream(&k, 12, got);
    assert_memory_equal(got, want, sizeof want);
    assert_int_equal(c.played, 1);
    assert_true(c.played_at >= 4);
    printf("pt %d: on_played after %d packets had arrived (the clip fills 4)\n", pt, c.played_at);
    print_intervals(pt == RTP_PT_PCMA ? "pcma" : "pcmu", &k, k.n < MAX_PKTS ? k.n : MAX_PKTS);

    voice_media_stats st;
    voice_media_stats_get(f->m, &st, false);
    assert_true(st.packets >= 12);
    assert_int_equal(st.send_errors, 0);
    assert_int_equal(st.streams, 1);
    assert_true(st.p50_us > 0 && st.p99_us >= st.p50_us && st.max_us >= st.p99_us);
    printf("stats: packets %llu p50 %.0f us p99 %.0f us max %.0f us\n", (unsigned long long)st.packets, st.p50_us,
           st.p99_us, st.max_us);
    voice_stream_close(s);
    sink_close(&k);
}

static void test_play_pcma(void **state)
{
    play_and_check(*state, RTP_PT_PCMA, SILENCE_PCMA);
}

static void test_play_pcmu(void **state)
{
    play_and_check(*state, RTP_PT_PCMU, SILENCE_PCMU);
}

/* Barge-in: silence from the next packet, no on_played; a new play list
 * starts with a marker. An empty list reports played, but not inside the
 * call. */
static void test_stop_and_empty_play(void **state)
{
    fixture *f = *state;
    static uint8_t tone[16000];
    memset(tone, 0x2a, sizeof tone);
    const voice_clip long_clip = {tone, tone, sizeof tone, NULL};
    const voice_clip *list[] = {&long_clip};
    sink k;
    sink_open(f, &k);
    calls c = {0};
    voice_stream *s = voice_stream_open(f->m, &cbs, &c);
    c.s = s;
    set_peer(s, &k, RTP_PT_PCMA, 101);
    voice_stream_play(s, list, 1);
    WAIT_FOR(f, k.n >= 3);
    sink_drain(&k); /* loopback: every packet sent so far is queued now */
    voice_stream_stop(s);
    int stopped_at = k.n;
    WAIT_FOR(f, k.n >= stopped_at + 15);
    assert_continuous(&k, 0, k.n);
    int first_silent = 0;
    while (first_silent < k.n && k.pkts[first_silent].data[0] == 0x2a)
        first_silent++;
    assert_int_equal(first_silent, stopped_at);
    for (int i = first_silent; i < k.n && i < MAX_PKTS; i++)
        for (int b = 0; b < RTP_SAMPLES_PER_PACKET; b++)
            assert_int_equal(k.pkts[i].data[b], SILENCE_PCMA);
    assert_int_equal(c.played, 0);

    /* a new list: marker on its first packet */
    sink_drain(&k);
    int before = k.n;
    voice_stream_play(s, list, 1);
    WAIT_FOR(f, k.n >= before + 3);
    assert_int_equal(k.pkts[before].data[0], 0x2a);
    assert_true(k.pkts[before].h.marker);
    assert_false(k.pkts[before + 1].h.marker);
    assert_int_equal(c.played, 0);

    voice_stream_play(s, NULL, 0);
    assert_int_equal(c.played, 0);
    WAIT_FOR(f, c.played == 1);
    run_for(f, 100);
    assert_int_equal(c.played, 1);
    voice_stream_close(s);
    sink_close(&k);
}

/* Index of the first packet from `from` whose first byte is `b`, or -1. */
static int first_with(const sink *k, int from, uint8_t b)
{
    for (int i = from; i < k->n && i < MAX_PKTS; i++)
        if (k->pkts[i].data[0] == b)
            return i;
    return -1;
}

/* A value still being made when its turn comes: silence until it is
 * ready, then the value, then the rest; nothing counted late. */
static void test_value_waited_for(void **state)
{
    fixture *f = *state;
    voice_media_free(f->m);
    voice_media_options o = {.bind_addr = "127.0.0.1",
                             .port_min = range_base(),
                             .port_max = range_base() + 19,
                             .max_streams = 8,
                             .value_wait_ms = 5000};
    f->m = voice_media_new(f->base, &o);
    static uint8_t before[160], value[320], after[160];
    memset(before, 0x11, sizeof before);
    memset(value, 0x22, sizeof value);
    memset(after, 0x33, sizeof after);
    speech_sound sound = {0};
    const voice_clip c1 = {before, before, sizeof before, NULL}, later = {NULL, NULL, 0, &sound},
                     c2 = {after, after, sizeof after, NULL};
    const voice_clip *list[] = {&c1, &later, &c2};
    sink k;
    sink_open(f, &k);
    calls c = {0};
    voice_stream *s = voice_stream_open(f->m, &cbs, &c);
    set_peer(s, &k, RTP_PT_PCMA, 101);
    voice_stream_play(s, list, 3);
    WAIT_FOR(f, k.n >= 6);
    assert_int_equal(k.pkts[0].data[0], 0x11);
    for (int i = 1; i < 6; i++)
        assert_int_equal(k.pkts[i].data[0], SILENCE_PCMA);
    assert_int_equal(c.played, 0);
    sound = (speech_sound){value, value, sizeof value, true};
    WAIT_FOR(f, c.played == 1);
    sink_drain(&k);
    int v = first_with(&k, 1, 0x22);
    assert_true(v > 0);
    assert_int_equal(k.pkts[v + 1].data[0], 0x22);
    assert_int_equal(k.pkts[v + 2].data[0], 0x33);
    voice_media_stats st;
    voice_media_stats_get(f->m, &st, false);
    assert_int_equal(st.values_late, 0);
    voice_stream_close(s);
    sink_close(&k);
}

/* A value not ready within value_wait_ms is skipped: the rest plays and
 * the miss is counted; an empty one is skipped at once. */
static void test_value_late_and_empty(void **state)
{
    fixture *f = *state;
    voice_media_free(f->m);
    voice_media_options o = {.bind_addr = "127.0.0.1",
                             .port_min = range_base(),
                             .port_max = range_base() + 19,
                             .max_streams = 8,
                             .value_wait_ms = 100};
    f->m = voice_media_new(f->base, &o);
    static uint8_t after[160];
    memset(after, 0x33, sizeof after);
    speech_sound never = {0}, empty = {NULL, NULL, 0, true};
    const voice_clip late = {NULL, NULL, 0, &never}, none = {NULL, NULL, 0, &empty},
                     c2 = {after, after, sizeof after, NULL};
    const voice_clip *list[] = {&none, &late, &c2};
    sink k;
    sink_open(f, &k);
    calls c = {0};
    voice_stream *s = voice_stream_open(f->m, &cbs, &c);
    set_peer(s, &k, RTP_PT_PCMA, 101);
    voice_stream_play(s, list, 3);
    WAIT_FOR(f, c.played == 1);
    sink_drain(&k);
    int v = first_with(&k, 0, 0x33);
    assert_int_equal(v, 5); /* 100 ms of waiting: five packets of silence */
    voice_media_stats st;
    voice_media_stats_get(f->m, &st, false);
    assert_int_equal(st.values_late, 1);
    assert_int_equal(st.values_empty, 1);
    voice_stream_close(s);
    sink_close(&k);
}

/* Hold: nothing sent; resume: marker, seq continues, ts jumps by whole
 * packets. A peer at 0.0.0.0 (old-style hold) gets nothing either: Linux
 * would hand such datagrams to this host, the sink included. */
static void test_hold(void **state)
{
    fixture *f = *state;
    sink k;
    sink_open(f, &k);
    calls c = {0};
    voice_stream *s = voice_stream_open(f->m, &cbs, &c);
    struct sockaddr_in nowhere = k.addr;
    nowhere.sin_addr.s_addr = htonl(INADDR_ANY);
    voice_stream_set_peer(s, (struct sockaddr *)&nowhere, sizeof nowhere, RTP_PT_PCMA, 101);
    run_for(f, 100);
    assert_int_equal(k.n, 0);
    set_peer(s, &k, RTP_PT_PCMA, 101);
    WAIT_FOR(f, k.n >= 3);
    voice_stream_hold(s, true);
    sink_drain(&k);
    int held_at = k.n;
    run_for(f, 300);
    assert_int_equal(k.n, held_at);
    voice_stream_hold(s, false);
    WAIT_FOR(f, k.n >= held_at + 2);
    const pkt *last = &k.pkts[held_at - 1], *next = &k.pkts[held_at];
    assert_true(next->h.marker);
    assert_int_equal((uint16_t)(next->h.seq - last->h.seq), 1);
    assert_int_equal(next->h.ssrc, last->h.ssrc);
    uint32_t jump = next->h.ts - last->h.ts;
    assert_true(jump >= 160 * 10 && jump % RTP_SAMPLES_PER_PACKET == 0);
    printf("hold: resumed with a timestamp jump of %u samples\n", jump);
    voice_stream_close(s);
    sink_close(&k);
}

/* A re-INVITE moves the stream: packets go to the new peer, seq continues. */
static void test_new_peer(void **state)
{
    fixture *f = *state;
    sink a, b;
    sink_open(f, &a);
    sink_open(f, &b);
    calls c = {0};
    voice_stream *s = voice_stream_open(f->m, &cbs, &c);
    set_peer(s, &a, RTP_PT_PCMA, 101);
    WAIT_FOR(f, a.n >= 2);
    set_peer(s, &b, RTP_PT_PCMU, 101);
    sink_drain(&a);
    int a_final = a.n;
    WAIT_FOR(f, b.n >= 2);
    sink_drain(&a);
    assert_int_equal(a.n, a_final);
    assert_true(b.pkts[0].h.marker);
    assert_int_equal(b.pkts[0].h.pt, RTP_PT_PCMU);
    assert_int_equal((uint16_t)(b.pkts[0].h.seq - a.pkts[a_final - 1].h.seq), 1);
    assert_int_equal(b.pkts[0].data[0], SILENCE_PCMU);
    voice_stream_close(s);
    sink_close(&a);
    sink_close(&b);
}

/* RFC 4733 keys, once each, with hostile datagrams in between. */
static void test_rfc4733_keys_and_garbage(void **state)
{
    fixture *f = *state;
    sink k, intruder;
    sink_open(f, &k);
    sink_open(f, &intruder);
    calls c = {0};
    voice_stream *s = voice_stream_open(f->m, &cbs, &c);
    set_peer(s, &k, RTP_PT_PCMA, 101);
    int port = voice_stream_port(s);

    uint8_t junk[1600];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 31 + 7);
    sink_send(&k, port, junk, 1);
    sink_send(&k, port, junk, 11);
    sink_send(&k, port, junk, sizeof junk); /* larger than any RTP packet */
    uint8_t rtcp[28] = {0x80, 200, 0, 6};
    sink_send(&k, port, rtcp, sizeof rtcp);
    uint8_t overrun[16] = {0x8f, 101}; /* 15 CSRCs in 16 bytes */
    sink_send(&k, port, overrun, sizeof overrun);
    uint8_t short_event[2] = {1, 0x8a};
    send_rtp(&k, port, 101, true, 1, 100, 5, short_event, sizeof short_event);

    send_event(&k, port, 1, 7984, 13280);
    sink_send(&k, port, junk, 40);
    send_event(&k, port, 11, 8000, 13280 + 1600);
    uint8_t audio[160];
    memset(audio, SILENCE_PCMA, sizeof audio);
    send_rtp(&k, port, RTP_PT_PCMA, false, 9000, 99999, 0x0e05384e, audio, sizeof audio);
    send_event(&intruder, port, 5, 1, 777); /* not the peer: ignored */
    send_event(&k, port, 9, 8020, 13280 + 3200);
    WAIT_FOR(f, c.ndigits >= 3);
    run_for(f, 50);
    assert_string_equal(c.digits, "1#9");
    voice_stream_close(s);
    sink_close(&k);
    sink_close(&intruder);
}

/* The owner closes the stream from on_digit while more keys wait in the
 * same batch: nothing more is reported and nothing is touched after. */
static void test_close_inside_on_digit(void **state)
{
    fixture *f = *state;
    sink k;
    sink_open(f, &k);
    calls c = {.close_on_digit = true};
    voice_stream *s = voice_stream_open(f->m, &cbs, &c);
    c.s = s;
    set_peer(s, &k, RTP_PT_PCMA, 101);
    int port = voice_stream_port(s);
    for (int i = 0; i < 4; i++)
        send_event(&k, port, (uint8_t)(i + 1), (uint16_t)(100 + 10 * i), 1000u + 1600u * i);
    WAIT_FOR(f, c.ndigits >= 1);
    run_for(f, 100);
    assert_string_equal(c.digits, "1");
    assert_null(c.s);
    voice_media_stats st;
    voice_media_stats_get(f->m, &st, false);
    assert_int_equal(st.streams, 0);
    sink_close(&k);
}

/* No telephone-event: tones in the audio are keys (A-law and µ-law). */
static void inband_keys(fixture *f, int pt)
{
    sink k;
    sink_open(f, &k);
    calls c = {0};
    voice_stream *s = voice_stream_open(f->m, &cbs, &c);
    set_peer(s, &k, pt, -1);
    int port = voice_stream_port(s);
    dtmf_tx_state_t *tx = dtmf_tx_init(NULL);
    dtmf_tx_put(tx, "42#", -1);
    for (int i = 0; i < 40; i++) {
        int16_t pcm[RTP_SAMPLES_PER_PACKET] = {0};
        dtmf_tx(tx, pcm, RTP_SAMPLES_PER_PACKET);
        uint8_t payload[RTP_SAMPLES_PER_PACKET];
        for (int b = 0; b < RTP_SAMPLES_PER_PACKET; b++)
            payload[b] = pt == RTP_PT_PCMA ? linear_to_alaw(pcm[b]) : linear_to_ulaw(pcm[b]);
        send_rtp(&k, port, (uint8_t)pt, i == 0, (uint16_t)(500 + i), 160u * i, 42, payload, sizeof payload);
    }
    dtmf_tx_free(tx);
    WAIT_FOR(f, c.ndigits >= 3);
    run_for(f, 50);
    assert_string_equal(c.digits, "42#");
    voice_stream_close(s);
    sink_close(&k);
}

static void test_inband_keys(void **state)
{
    inband_keys(*state, RTP_PT_PCMA);
    inband_keys(*state, RTP_PT_PCMU);
}

/* on_inactive after silence from the peer, again after a packet restarts
 * the clock; never for a stream on hold; the callee may close inside. */
static void test_inactivity(void **state)
{
    fixture *f = *state;
    voice_media *m = media_with(f, range_base() + 100, range_base() + 119, 4, 200);
    assert_non_null(m);
    sink k;
    sink_open(f, &k);
    calls held = {0}, live = {0};
    voice_stream *sh = voice_stream_open(m, &cbs, &held);
    voice_stream *sl = voice_stream_open(m, &cbs, &live);
    live.s = sl;
    set_peer(sh, &k, RTP_PT_PCMA, 101);
    voice_stream_hold(sh, true);
    set_peer(sl, &k, RTP_PT_PCMA, 101);
    WAIT_FOR(f, live.inactive == 1);
    uint8_t audio[160];
    memset(audio, SILENCE_PCMA, sizeof audio);
    send_rtp(&k, voice_stream_port(sl), RTP_PT_PCMA, true, 1, 160, 3, audio, sizeof audio);
    live.close_on_inactive = true;
    WAIT_FOR(f, live.inactive == 2);
    assert_null(live.s);
    assert_int_equal(held.inactive, 0);
    voice_stream_close(sh);
    voice_media_free(m);
    sink_close(&k);
}

/* Even ports only, ports in use skipped, NULL when the range or
 * max_streams is used up, and the cursor moving on. */
static void test_port_range(void **state)
{
    fixture *f = *state;
    int p = range_base() + 200;
    int blocker = -1;
    for (; p < 65000; p += 4) {
        blocker = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = {
            .sin_family = AF_INET, .sin_port = htons((uint16_t)p), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int probe = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in b = a;
        b.sin_port = htons((uint16_t)(p + 2));
        bool ok =
            bind(blocker, (struct sockaddr *)&a, sizeof a) == 0 && bind(probe, (struct sockaddr *)&b, sizeof b) == 0;
        close(probe);
        if (ok)
            break;
        close(blocker);
    }
    voice_media *m = media_with(f, p, p + 3, 8, 0);
    assert_non_null(m);
    calls c = {0};
    voice_stream *s1 = voice_stream_open(m, &cbs, &c);
    assert_non_null(s1);
    assert_int_equal(voice_stream_port(s1), p + 2);
    assert_null(voice_stream_open(m, &cbs, &c));
    close(blocker);
    voice_stream *s2 = voice_stream_open(m, &cbs, &c);
    assert_non_null(s2);
    assert_int_equal(voice_stream_port(s2), p);
    assert_null(voice_stream_open(m, &cbs, &c));
    voice_stream_close(s1);
    voice_stream *s3 = voice_stream_open(m, &cbs, &c);
    assert_non_null(s3);
    assert_int_equal(voice_stream_port(s3), p + 2);
    voice_media_free(m); /* closes s2 and s3 */

    m = media_with(f, p, p + 3, 1, 0);
    s1 = voice_stream_open(m, &cbs, &c);
    assert_non_null(s1);
    assert_int_equal(voice_stream_port(s1), p);
    assert_null(voice_stream_open(m, &cbs, &c)); /* max_streams */
    voice_stream_close(s1);
    s2 = voice_stream_open(m, &cbs, &c);
    assert_non_null(s2);
    assert_int_equal(voice_stream_port(s2), p + 2); /* the cursor moved on */
    voice_media_free(m);

    assert_null(media_with(f, p + 1, p + 1, 1, 0)); /* no even port */
    assert_null(media_with(f, p, p - 2, 1, 0));
    assert_null(media_with(f, p, p + 3, 0, 0));
    voice_media_options bad = {.bind_addr = "not an address", .port_min = p, .port_max = p + 3, .max_streams = 1};
    assert_null(voice_media_new(f->base, &bad));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_play_pcma, setup, teardown),
        cmocka_unit_test_setup_teardown(test_play_pcmu, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_and_empty_play, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_waited_for, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_late_and_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rfc4733_keys_and_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_inside_on_digit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inband_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inactivity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_port_range, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
