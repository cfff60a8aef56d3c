/* test_speech — the speech module with the real espeak-ng: a value is
 * queued, made by the worker and handed back to the loop; asked again it
 * is a hit on the same sound; the cache keeps to its byte cap, dropping
 * the least recently used; a full queue refuses; a recording wins over
 * synthesis; Chinese text takes zh's voice in any language; a sound held
 * past speech_free stays valid. Every wait runs the loop until the
 * condition holds, with a bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <event2/event.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "metrics.h"
#include "speech.h"

#define WAIT_MS 20000

typedef struct {
    struct event_base *base;   /* the loop */
    struct event *tick;        /* wakes it so waits see their deadline */
    char dir[256];             /* recordings */
} fixture;

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->base = event_base_new();
    f->tick = event_new(f->base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 10000};
    event_add(f->tick, &tv);
    th_mkdtemp(f->dir, "cl-speech");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    th_rmdir(f->dir);
    event_free(f->tick);
    event_base_free(f->base);
    metrics_reset();
    free(f);
    return 0;
}

static speech *speech_with(fixture *f, size_t cache_bytes, int queue)
{
    speech_options o = {.voices = "zh:cmn en:en", .rate = 150, .cache_bytes = cache_bytes, .queue = queue,
                        .recorded_dir = f->dir};
    speech *s = speech_new(f->base, &o);
    assert_non_null(s);
    return s;
}

static void wait_ready(fixture *f, const speech_sound *snd)
{
    long deadline = th_now_ms() + WAIT_MS;
    while (!snd->ready && th_now_ms() < deadline)
        event_base_loop(f->base, EVLOOP_ONCE);
    assert_true(snd->ready);
}

static void test_made_then_hit(void **state)
{
    fixture *f = *state;
    speech *s = speech_with(f, 16 << 20, 8);
    const speech_sound *a = speech_get(s, "zh", "中国工商银行");
    assert_non_null(a);
    assert_false(a->ready); /* the loop has not run: the worker cannot have handed it back */
    wait_ready(f, a);
    /* 0.5 to 10 s of speech at 8 kHz, in both laws */
    assert_true(a->samples > 4000 && a->samples < 80000);
    assert_non_null(a->pcma);
    assert_ptr_equal(a->pcmu, a->pcma + a->samples);
    const speech_sound *b = speech_get(s, "zh", "中国工商银行");
    assert_ptr_equal(a, b);
    speech_stats st;
    speech_stats_get(s, &st);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.synthesized, 1);
    assert_int_equal(st.cache_bytes, 2 * a->samples);
    assert_true(st.p50_us > 0 && st.p99_us >= st.p50_us);
    /* Chinese text in an English answer is said by zh's voice: the same sound. */
    const speech_sound *c = speech_get(s, "en", "中国工商银行");
    assert_ptr_equal(a, c);
    /* A language without a voice is refused. */
    assert_null(speech_get(s, "fr", "Banque"));
    speech_release(a);
    speech_release(b);
    speech_release(c);
    speech_free(s);
}

/* The cap holds one value: the older goes when a newer is made, but a
 * holder keeps its sound; asked again, the older is made again. */
static void test_least_recently_used_goes(void **state)
{
    fixture *f = *state;
    speech *s = speech_with(f, 65536, 8);
    const speech_sound *a = speech_get(s, "en", "Mon-Fri 09:00-17:00");
    wait_ready(f, a);
    assert_true(2 * a->samples <= 65536);
    const speech_sound *b = speech_get(s, "en", "Mon-Sat 08:30-17:30");
    wait_ready(f, b);
    speech_stats st;
    speech_stats_get(s, &st);
    assert_true(st.cache_bytes <= 65536);
    assert_int_equal(st.cache_bytes, 2 * b->samples);
    assert_true(a->samples > 0 && a->pcma[0] == a->pcma[0]); /* still held, still readable */
    const speech_sound *again = speech_get(s, "en", "Mon-Fri 09:00-17:00");
    assert_ptr_not_equal(again, a);
    speech_stats_get(s, &st);
    assert_int_equal(st.misses, 3);
    wait_ready(f, again);
    speech_release(a);
    speech_release(b);
    speech_release(again);
    speech_free(s);
}

static void test_full_queue_refuses(void **state)
{
    fixture *f = *state;
    speech *s = speech_with(f, 16 << 20, 1);
    const speech_sound *a = speech_get(s, "zh", "南京市玄武区北京东路41号");
    assert_non_null(a);
    assert_null(speech_get(s, "zh", "武汉市武昌区友谊大道303号"));
    speech_stats st;
    speech_stats_get(s, &st);
    assert_int_equal(st.refused, 1);
    /* joining the value on its way is no new job */
    const speech_sound *b = speech_get(s, "zh", "南京市玄武区北京东路41号");
    assert_ptr_equal(a, b);
    wait_ready(f, a);
    speech_release(a);
    speech_release(b);
    speech_free(s);
}

/* A recording (any rate, mono) is taken instead of synthesis. */
static void test_recording_wins(void **state)
{
    fixture *f = *state;
    const char *text = "玄武区社保服务中心";
    char hash[SPEECH_HASH_HEX + 1], path[512];
    speech_hash(text, hash);
    assert_int_equal(strlen(hash), SPEECH_HASH_HEX);
    snprintf(path, sizeof path, "%s/zh", f->dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/zh/values", f->dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/zh/values/%s.wav", f->dir, hash);
    SF_INFO info = {.samplerate = 16000, .channels = 1, .format = SF_FORMAT_WAV | SF_FORMAT_PCM_16};
    SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
    assert_non_null(sf);
    static short tone[16000];
    for (size_t i = 0; i < 16000; i++)
        tone[i] = (short)((i / 8) % 2 ? 8000 : -8000); /* 1 kHz square */
    sf_writef_short(sf, tone, 16000);
    sf_close(sf);

    speech *s = speech_with(f, 16 << 20, 8);
    const speech_sound *a = speech_get(s, "en", text);
    wait_ready(f, a);
    /* one second at 8 kHz, then the 50 ms after every value */
    assert_true(a->samples >= 8000 + 400 - 40 && a->samples <= 8000 + 400 + 40);
    speech_stats st;
    speech_stats_get(s, &st);
    assert_int_equal(st.recorded, 1);
    assert_int_equal(st.synthesized, 0);
    speech_release(a);
    speech_free(s);
}

/* A sound held past speech_free: one being made turns ready (made or
 * empty), one made stays as it was. */
static void test_sound_outlives_speech(void **state)
{
    fixture *f = *state;
    speech *s = speech_with(f, 16 << 20, 8);
    const speech_sound *made = speech_get(s, "zh", "中国银行");
    wait_ready(f, made);
    size_t samples = made->samples;
    const speech_sound *pending = speech_get(s, "zh", "交通银行");
    speech_free(s);
    assert_true(pending->ready);
    assert_int_equal(made->samples, samples);
    speech_release(made);
    speech_release(pending);
}

static void test_bad_options_refused(void **state)
{
    fixture *f = *state;
    speech_options o = {.voices = "zh:no-such-voice", .rate = 150, .cache_bytes = 1 << 20, .queue = 4};
    assert_null(speech_new(f->base, &o));
    o.voices = "zh cmn";
    assert_null(speech_new(f->base, &o));
    o.voices = "zh:cmn";
    o.rate = 10;
    assert_null(speech_new(f->base, &o));
}

/* What tests and tools use to know what a value sounds like. */
static void test_synthesize_alone(void **state)
{
    (void)state;
    int16_t *pcm = NULL;
    size_t n = 0;
    assert_true(speech_synthesize("en", 150, "Mon-Fri 09:00-17:00", &pcm, &n));
    assert_true(n > 4000);
    free(pcm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_made_then_hit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_least_recently_used_goes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_queue_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recording_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sound_outlives_speech, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_options_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_synthesize_alone, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
