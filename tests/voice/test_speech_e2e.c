/* test_speech_e2e — the hotline says the registry's free text, proven from
 * the RTP a caller receives. sipp calls the real daemon (real redis-server,
 * the registry simulator on its demo seed), takes the status flow by SIP
 * INFO and asks for RTP at a socket of this test, which records every
 * packet; the daemon's config is the shipped one ([speech] defaults).
 *
 * The prompt pieces on both sides of a value are recorded as constant
 * tones, each at a level of its own (every other prompt file is missing,
 * so silent), so the received audio shows where each piece ends and the
 * next begins. Between the piece before a value and the piece after it
 * must lie the value as espeak-ng says it: the samples there match the
 * synthesized ones (normalized cross-correlation >= 0.95 at some offset),
 * and the rest of the span is the gateway's silence (none unless it had to
 * wait for the value), so the answer lasts as long as its recorded pieces
 * plus the synthesized values.
 * The old gateway skipped such values: the two pieces touched.
 *
 * espeak-ng's output depends on what it said before in the process (its
 * wave generator keeps state), and is otherwise deterministic: each case
 * starts a fresh daemon, and the reference is synthesized in a fresh child
 * process saying the same values in the same order as the daemon's worker
 * (the order they appear in the answer).
 *
 * Cases: 王伟 (bank 中国工商银行, in English Industrial and Commercial Bank
 * of China) in zh and en; 赵丽 (new card at the outlet 玄武区社保服务中心,
 * 南京市玄武区北京东路41号, bank 中国建设银行) in zh and en, with the
 * registry's names in the session's language: her bank, the outlet's
 * name, address and hours. zh calls
 * offer PCMA first, en calls PCMU. Once the answer's last piece is heard
 * whole, the caller presses 2 (finish) by RFC 4733 and waits for the
 * gateway's BYE; then the daemon stops (LeakSanitizer clean). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sndfile.h>
#include <spandsp/telephony.h>
#include <spandsp/bit_operations.h>
#include <spandsp/g711.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rtp.h"
#include "speech.h"
#include "voice_world.h"

#define RATE 150                 /* [speech] rate's default */
#define TONE_SAMPLES 2400        /* 300 ms per recorded piece */
#define MIN_RUN 2000             /* a tone is found by a run this long of its level */
#define MAX_PACKETS 4000         /* 80 s of RTP */
#define TOLERANCE 80             /* samples (10 ms) the span may fall short of the values */
#define MIN_NCC 0.95

/* 赵丽 of the demo seed: card J36815240, replacement K90273658 at outlet NJ-XW-01. */
#define ZL_ID "320102199508184642"
#define ZL_PIN "731864"

/* Prompt pieces recorded as tones: the pieces around the values checked. */
typedef struct {
    const char *lang;
    const char *prompt;
    int k;
} piece;

static const piece PIECES[] = {
    {"zh", "bank_contact", 0},    {"zh", "bank_contact", 1},    {"en", "bank_contact", 0},
    {"en", "bank_contact", 1},    {"zh", "stage_at_outlet", 0}, {"zh", "stage_at_outlet", 1},
    {"zh", "stage_at_outlet", 2}, {"zh", "stage_at_outlet", 3}, {"en", "stage_at_outlet", 0},
    {"en", "stage_at_outlet", 1}, {"en", "stage_at_outlet", 2}, {"en", "stage_at_outlet", 3},
};
#define NPIECES (sizeof PIECES / sizeof *PIECES)

static short level_of(size_t i)
{
    return (short)(1500 + 700 * (int)i);
}

static size_t piece_index(const char *lang, const char *prompt, int k)
{
    for (size_t i = 0; i < NPIECES; i++)
        if (!strcmp(PIECES[i].lang, lang) && !strcmp(PIECES[i].prompt, prompt) && PIECES[i].k == k)
            return i;
    fail_msg("no tone for %s/%s.%d", lang, prompt, k);
    return 0;
}

/* The world -------------------------------------------------------------------------------*/

static void write_tone(const char *dir, const piece *p, short level)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, p->lang);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/%s/%s.%d.wav", dir, p->lang, p->prompt, p->k);
    SF_INFO info = {.samplerate = 8000, .channels = 1, .format = SF_FORMAT_WAV | SF_FORMAT_PCM_16};
    SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
    assert_non_null(sf);
    short samples[TONE_SAMPLES];
    for (size_t i = 0; i < TONE_SAMPLES; i++)
        samples[i] = level;
    assert_int_equal(sf_writef_short(sf, samples, TONE_SAMPLES), TONE_SAMPLES);
    sf_close(sf);
}

/* The tones go into the world's (otherwise empty) prompts_dir before the
 * daemon starts; the caller sends no RTP, so inactivity is not watched. */
static void speech_conf(vw_world *w, FILE *conf)
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/prompts", w->tw.dir);
    for (size_t i = 0; i < NPIECES; i++)
        write_tone(dir, &PIECES[i], level_of(i));
    fprintf(conf, "[voice]\nrtp_inactivity_ms = 0\n");
}

static const char *const CALLER_EVENTS[] = {"input", "timeout", NULL};
static const vw_suite SUITE = {.name = "speech", .max_calls = 2, .event_kinds = CALLER_EVENTS,
                               .more_conf = speech_conf};

static int setup(void **state)
{
    return vw_setup(state, &SUITE);
}

/* The caller's ear --------------------------------------------------------------------------*/

typedef struct {
    int fd;                      /* UDP socket on 127.0.0.1 the SDP names */
    int port;                    /* its port */
    pthread_t thread;            /* records while the call runs */
    atomic_bool stop;            /* set when the call is over */
    int pt;                      /* payload type of the audio, -1 before the first */
    uint8_t *audio;              /* payloads in arrival order (loopback keeps order) */
    size_t packets;              /* how many */
    int foreign;                 /* packets of another payload type or size */
    short last_level;            /* the answer's last piece: heard whole, the caller presses 2 */
    size_t run;                  /* samples of its code in a row so far */
    bool pressed;                /* 2 was sent */
} ear;

/* Key 2 as RFC 4733 events (payload type 101, as the SDP offers), from
 * the address the SDP gave, to where the gateway sends from. */
static void press_2(ear *e, const struct sockaddr_in *to)
{
    uint32_t ts = 0x5150;
    for (uint16_t i = 0; i < 6; i++) {
        bool end = i >= 3;
        uint16_t duration = (uint16_t)(320 * (end ? 3 : i + 1));
        uint8_t pl[4] = {2, (uint8_t)((end ? 0x80 : 0) | 10), (uint8_t)(duration >> 8), (uint8_t)duration};
        rtp_packet p = {.pt = 101, .marker = i == 0, .seq = (uint16_t)(700 + (end ? 3 : i)), .ts = ts,
                        .ssrc = 0x2e2e2e2e, .payload = pl, .payload_len = sizeof pl};
        uint8_t out[RTP_MAX_PACKET];
        size_t n = rtp_pack(&p, out, sizeof out);
        sendto(e->fd, out, n, 0, (const struct sockaddr *)to, sizeof *to);
    }
    e->pressed = true;
}

/* Counts the last piece's code in a row; heard whole, the caller has
 * heard the answer and presses 2 (finish) at the menu after it. */
static void watch_for_end(ear *e, const uint8_t *payload, const struct sockaddr_in *from)
{
    uint8_t code = e->pt == RTP_PT_PCMU ? linear_to_ulaw(e->last_level) : linear_to_alaw(e->last_level);
    for (size_t i = 0; i < RTP_SAMPLES_PER_PACKET && !e->pressed; i++) {
        e->run = payload[i] == code ? e->run + 1 : 0;
        if (e->run == TONE_SAMPLES)
            press_2(e, from);
    }
}

static void *listen_loop(void *arg)
{
    ear *e = arg;
    uint8_t buf[2048];
    while (!atomic_load(&e->stop)) {
        struct pollfd p = {.fd = e->fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        struct sockaddr_in from;
        socklen_t from_len = sizeof from;
        ssize_t len = recvfrom(e->fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &from_len);
        rtp_packet r;
        if (len <= 0 || !rtp_parse(buf, (size_t)len, &r))
            continue;
        if (r.payload_len != RTP_SAMPLES_PER_PACKET || (e->pt >= 0 && r.pt != e->pt) ||
            (r.pt != RTP_PT_PCMA && r.pt != RTP_PT_PCMU)) {
            e->foreign++;
            continue;
        }
        e->pt = r.pt;
        if (e->packets < MAX_PACKETS)
            memcpy(e->audio + e->packets++ * RTP_SAMPLES_PER_PACKET, r.payload, RTP_SAMPLES_PER_PACKET);
        watch_for_end(e, r.payload, &from);
    }
    return NULL;
}

static void ear_open(ear *e, short last_level)
{
    memset(e, 0, sizeof *e);
    e->last_level = last_level;
    e->pt = -1;
    e->fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(e->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(e->fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(e->fd, (struct sockaddr *)&a, &len);
    e->port = ntohs(a.sin_port);
    e->audio = malloc((size_t)MAX_PACKETS * RTP_SAMPLES_PER_PACKET);
    assert_int_equal(pthread_create(&e->thread, NULL, listen_loop, e), 0);
}

static void ear_close(ear *e)
{
    if (e->fd < 0)
        return;
    atomic_store(&e->stop, true);
    pthread_join(e->thread, NULL);
    close(e->fd);
    e->fd = -1;
}

/* The case's ear: closed and freed by the teardown, also after a failure. */
static ear the_ear = {.fd = -1};

static int teardown(void **state)
{
    ear_close(&the_ear);
    free(the_ear.audio);
    the_ear.audio = NULL;
    return vw_teardown(state);
}

static int16_t expand(int pt, uint8_t code)
{
    return pt == RTP_PT_PCMU ? ulaw_to_linear(code) : alaw_to_linear(code);
}

static int16_t through_law(int pt, int16_t v)
{
    return expand(pt, pt == RTP_PT_PCMU ? linear_to_ulaw(v) : linear_to_alaw(v));
}

/* A call: keys by INFO, RTP to the ear, until the gateway's BYE (after
 * the caller pressed 2 at the menu that follows the answer). */
static void call(vw_world *w, ear *e, const char *tag, const char *keys, const char *codecs)
{
    char port[16];
    snprintf(port, sizeof port, "%d", e->port);
    const char *extra[] = {"-key", "keys", keys, "-key", "rtp_port", port, "-key", "codecs", codecs,
                           "-timeout", "40s", NULL};
    vw_sipp_run r;
    assert_int_equal(vw_sipp(w, &r, tag, "e2e-listen.xml", VW_HOTLINE, extra), 0);
    vw_wait_session(w, r.session, "end", NULL);
    ear_close(e);
    assert_int_equal(e->foreign, 0);
    assert_true(e->pressed);
    assert_true(e->packets > 0 && e->packets < MAX_PACKETS);
}

/* References -----------------------------------------------------------------------------------*/

typedef struct {
    const char *voice;           /* espeak-ng voice the daemon says it with */
    const char *text;            /* the value */
    int16_t *pcm;                /* its 8 kHz samples */
    size_t n;
} value;

static void read_exactly(int fd, void *buf, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        assert_true(r > 0);
        got += (size_t)r;
    }
}

/* Synthesizes values[0..n) in order in a fresh child, as the daemon's
 * worker does in its fresh process. */
static void synthesize_in_order(value *values, size_t n)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        for (size_t i = 0; i < n; i++) {
            int16_t *pcm = NULL;
            size_t len = 0;
            if (!speech_synthesize(values[i].voice, RATE, values[i].text, &pcm, &len))
                _exit(1);
            if (write(fds[1], &len, sizeof len) != sizeof len ||
                write(fds[1], pcm, len * sizeof *pcm) != (ssize_t)(len * sizeof *pcm))
                _exit(1);
        }
        _exit(0);
    }
    close(fds[1]);
    for (size_t i = 0; i < n; i++) {
        read_exactly(fds[0], &values[i].n, sizeof values[i].n);
        assert_true(values[i].n > 0 && values[i].n < 80000);
        values[i].pcm = malloc(values[i].n * sizeof *values[i].pcm);
        read_exactly(fds[0], values[i].pcm, values[i].n * sizeof *values[i].pcm);
    }
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The daemon synthesized exactly the values replayed: any other value said
 * before them would have changed espeak-ng's state, and the replay. */
static void assert_synthesized(const vw_world *w, int n)
{
    double made = vw_metric(w, "cardline_speech_synthesized_total");
    if ((int)made != n)
        fail_msg("the daemon synthesized %g values, the replay %d: the replay would not match", made, n);
}

static void free_values(value *values, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(values[i].pcm);
}

/* The proof ------------------------------------------------------------------------------------*/

typedef struct {
    int16_t *x;                  /* what the caller heard, decoded */
    size_t n;
    int pt;
} heard;

static heard decode(const ear *e)
{
    heard h = {malloc(e->packets * RTP_SAMPLES_PER_PACKET * sizeof(int16_t)), e->packets * RTP_SAMPLES_PER_PACKET,
               e->pt};
    for (size_t i = 0; i < h.n; i++)
        h.x[i] = expand(e->pt, e->audio[i]);
    return h;
}

/* The first run of at least MIN_RUN samples of `v` from `from`: its bounds. */
static bool find_run(const heard *h, size_t from, int16_t v, size_t *start, size_t *end)
{
    for (size_t i = from; i < h->n; i++) {
        if (h->x[i] != v)
            continue;
        size_t j = i;
        while (j < h->n && h->x[j] == v)
            j++;
        if (j - i >= MIN_RUN) {
            *start = i;
            *end = j;
            return true;
        }
        i = j;
    }
    return false;
}

static double ncc(const int16_t *a, const int16_t *b, size_t n)
{
    double xy = 0, xx = 0, yy = 0;
    for (size_t i = 0; i < n; i++) {
        xy += (double)a[i] * b[i];
        xx += (double)a[i] * a[i];
        yy += (double)b[i] * b[i];
    }
    return xx > 0 && yy > 0 ? xy / sqrt(xx * yy) : 0;
}

/* Samples [from, to) are the silence the gateway sends between clips. */
static bool silent(const heard *h, size_t from, size_t to)
{
    int16_t quiet = expand(h->pt, h->pt == RTP_PT_PCMU ? 0xFF : 0xD5);
    for (size_t i = from; i < to; i++)
        if (h->x[i] != quiet)
            return false;
    return true;
}

/* Where `v` best matches what was heard in [from, to), by normalized
 * cross-correlation of its samples through the call's law. */
static size_t locate(const heard *h, size_t from, size_t to, const value *v, double *best)
{
    int16_t *ref = malloc(v->n * sizeof *ref);
    for (size_t i = 0; i < v->n; i++)
        ref[i] = through_law(h->pt, v->pcm[i]);
    size_t at = from;
    *best = -1;
    for (size_t off = from; off + v->n <= to; off++) {
        double c = ncc(h->x + off, ref, v->n);
        if (c > *best) {
            *best = c;
            at = off;
        }
    }
    free(ref);
    return at;
}

/* Between piece K and piece `next` of `prompt` the caller heard values
 * v[0..n) in order and nothing else: each where its synthesized samples
 * match (correlation >= MIN_NCC), and around them only the gateway's
 * silence (none unless it had to wait for a value). So the span lasts as
 * long as the values, plus any wait, which is printed. Returns where
 * piece `next` starts. */
static size_t assert_values_between(const heard *h, size_t from, const char *lang, const char *prompt, int k,
                                    int next, const value *v, size_t n)
{
    int16_t before = through_law(h->pt, level_of(piece_index(lang, prompt, k)));
    int16_t after = through_law(h->pt, level_of(piece_index(lang, prompt, next)));
    size_t s0 = 0, e0 = 0, s1 = 0, e1 = 0, want = 0; /* fail_msg returns as far as the compiler knows */
    if (!find_run(h, from, before, &s0, &e0))
        fail_msg("%s/%s.%d never heard", lang, prompt, k);
    if (!find_run(h, e0, after, &s1, &e1))
        fail_msg("%s/%s.%d never heard after .%d", lang, prompt, next, k);
    (void)s0, (void)e1;
    for (size_t i = 0; i < n; i++)
        want += v[i].n;
    printf("%s %s: %zu ms between pieces %d and %d; the values synthesized last %zu ms\n", lang, prompt,
           (s1 - e0) / 8, k, next, want / 8);
    if (s1 - e0 + TOLERANCE < want)
        fail_msg("values not said: %zu samples between the pieces, the values have %zu", s1 - e0, want);
    size_t cursor = e0, waited = 0;
    for (size_t i = 0; i < n; i++) {
        double best;
        size_t at = locate(h, cursor, s1, &v[i], &best);
        printf("  \"%s\": correlation %.4f, %zu ms after what came before\n", v[i].text, best, (at - cursor) / 8);
        assert_true(best >= MIN_NCC);
        assert_true(silent(h, cursor, at));
        waited += at - cursor;
        cursor = at + v[i].n;
    }
    assert_true(cursor <= s1 && silent(h, cursor, s1));
    waited += s1 - cursor;
    printf("  span %zu ms = values %zu ms + waits %zu ms\n", (s1 - e0) / 8, want / 8, waited / 8);
    assert_int_equal(s1 - e0, want + waited);
    return s1;
}

static size_t assert_value_between(const heard *h, size_t from, const char *lang, const char *prompt, int k,
                                   const value *v)
{
    return assert_values_between(h, from, lang, prompt, k, k + 1, v, 1);
}

/* Cases ----------------------------------------------------------------------------------------*/

static void status_of_wang_wei(void **state, const char *lang)
{
    vw_world *w = *state;
    bool zh = !strcmp(lang, "zh");
    value v[] = {zh ? (value){"cmn", "中国工商银行", NULL, 0}
                    : (value){"en", "Industrial and Commercial Bank of China", NULL, 0}};
    synthesize_in_order(v, 1);
    ear *e = &the_ear;
    ear_open(e, level_of(piece_index(lang, "bank_contact", 1)));
    char keys[64];
    snprintf(keys, sizeof keys, "%s1%s#%s#", zh ? "1" : "2", VW_ID, VW_PIN);
    call(w, e, zh ? "bank-zh" : "bank-en", keys, zh ? "8 0" : "0 8");
    assert_int_equal(e->pt, zh ? RTP_PT_PCMA : RTP_PT_PCMU);
    heard h = decode(e);
    assert_synthesized(w, 1);
    assert_value_between(&h, 0, lang, "bank_contact", 0, &v[0]);
    free(h.x);
    free_values(v, 1);
    vw_stop_gateway(w);
}

static void test_bank_name_zh(void **state)
{
    status_of_wang_wei(state, "zh");
}

static void test_bank_name_en(void **state)
{
    status_of_wang_wei(state, "en");
}

/* 赵丽's answer: her bank (中国建设银行), then where her new card waits. */
static void progress_of_zhao_li(void **state, const char *lang)
{
    vw_world *w = *state;
    bool zh = !strcmp(lang, "zh");
    value in_zh[] = {
        {"cmn", "中国建设银行", NULL, 0},
        {"cmn", "玄武区社保服务中心", NULL, 0},
        {"cmn", "南京市玄武区北京东路41号", NULL, 0},
        {"cmn", "周一至周五9:00-17:00", NULL, 0},
    };
    value in_en[] = {
        {"en", "China Construction Bank", NULL, 0},
        {"en", "Xuanwu District Social Security Service Centre", NULL, 0},
        {"en", "41 Beijing East Road, Xuanwu District, Nanjing", NULL, 0},
        {"en", "Mon-Fri 09:00-17:00", NULL, 0},
    };
    value *v = zh ? in_zh : in_en;
    synthesize_in_order(v, 4);
    ear *e = &the_ear;
    ear_open(e, level_of(piece_index(lang, "stage_at_outlet", 3)));
    char keys[64];
    snprintf(keys, sizeof keys, "%s1%s#%s#", zh ? "1" : "2", ZL_ID, ZL_PIN);
    call(w, e, zh ? "outlet-zh" : "outlet-en", keys, zh ? "8 0" : "0 8");
    heard h = decode(e);
    assert_synthesized(w, 4);
    size_t at = assert_value_between(&h, 0, lang, "bank_contact", 0, &v[0]);
    if (zh) {
        at = assert_value_between(&h, at, lang, "stage_at_outlet", 0, &v[1]);
        at = assert_value_between(&h, at, lang, "stage_at_outlet", 1, &v[2]);
    } else { /* "at {outlet_name}, {outlet_address}, open": ", " alone has no audio */
        at = assert_values_between(&h, at, lang, "stage_at_outlet", 0, 2, &v[1], 2);
    }
    assert_value_between(&h, at, lang, "stage_at_outlet", 2, &v[3]);
    free(h.x);
    free_values(v, 4);
    vw_stop_gateway(w);
}

static void test_outlet_address_zh(void **state)
{
    progress_of_zhao_li(state, "zh");
}

static void test_outlet_address_en(void **state)
{
    progress_of_zhao_li(state, "en");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bank_name_zh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bank_name_en, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outlet_address_zh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outlet_address_en, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
