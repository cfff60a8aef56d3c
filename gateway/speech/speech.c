/* speech — owns the worker thread that makes values into audio, the queue
 * that feeds it, the list of finished jobs it hands back, and the cache of
 * sounds shared by every call.
 *
 * Handoff: the main loop appends jobs to `todo` under `lock` and signals
 * `wake`; the worker takes one, makes its audio into buffers of its own,
 * and hands the job back through core/handoff (a locked list and an eventfd
 * the main loop reads, as sip.c hands its events over), so the base needs no
 * evthread locking.
 * Only the main loop touches an entry: the worker sees the job's copies of
 * voice, language and text, and never the entry the job points to.
 *
 * Cache: entries are found by a chained hash table over their key (voice,
 * rate, text) and kept in least-recently-used order once ready; bytes over
 * the cap evict from the old end. An entry is reference counted (the
 * cache, each holder, the job making it), so an evicted sound still
 * playing lives until released, and a sound never needs the speech object
 * to be released: calls may outlive it.
 *
 * Making audio: espeak-ng (its rate, 22050 Hz) into int16 samples, trimmed
 * of the silence around speech and peak-normalized to -3 dBFS, as
 * scripts/prompts treats the prompts; or a recording as it is. Then to
 * 8 kHz with speexdsp's resampler: it takes and gives int16 (espeak-ng's
 * and G.711's format, where libsamplerate works in float and needs two
 * conversions), is made for telephony rates, and its quality is a knob
 * (RESAMPLE_QUALITY); then 50 ms of silence (as the prompts end) and both
 * G.711 laws by spandsp, as audio.c encodes prompts. The worker runs at a lower priority
 * (nice +10) so that RTP pacing on the main loop comes first. */
#include "speech.h"

#include <limits.h>
#include <pthread.h>
#include <sndfile.h>
#include <speex/speex_resampler.h>
#include <spandsp/telephony.h>
#include <spandsp/bit_operations.h>
#include <spandsp/g711.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <espeak-ng/espeak_ng.h>
#include <event2/event.h>
#include <openssl/evp.h>

#include "handoff.h"
#include "log.h"
#include "metrics.h"
#include "monotime.h"
#include "utf8.h"

#define RATE_OUT 8000
#define MAX_TEXT 512                 /* bytes of a value (dialplan values are at most 255) */
#define MAX_SECONDS 30               /* of audio for one value; synthesis past it is cut */
#define MAX_VOICES 8                 /* languages with a voice */
#define VOICE_NAME 40                /* bytes of an espeak-ng voice name */
#define LANG_NAME 16                 /* bytes of a language code */
#define TRIM_LEVEL 33                /* |sample| below 0.1 % of full scale is silence */
#define TRIM_RUN 220                 /* 10 ms at 22050 Hz above it starts speech */
#define PEAK 0.7079                  /* -3 dBFS: the peak after normalizing */
#define PAD_MS 50                    /* silence after a value */
/* speexdsp's quality for VoIP (3 of 0-10): about 2.5 ms for 4 s of
 * speech, where 8 took 8 ms and made synthesis the worker's bottleneck
 * at 100 new values a second (scripts/bench voice); G.711's own noise is
 * far above what the higher qualities remove. */
#define RESAMPLE_QUALITY SPEEX_RESAMPLER_QUALITY_VOIP
#define WORKER_NICE 10               /* below the main loop's 0 */
#define HIST_STEP_US 100             /* synthesis time histogram: 0.1 ms steps */
#define HIST_BUCKETS 10000           /* up to 1 s; one more bucket for longer */

typedef struct entry entry;
struct entry {
    speech_sound sound;          /* first: holders see only this */
    uint8_t *data;               /* A-law then µ-law samples, one allocation */
    int refs;                    /* the cache, holders, the job making it */
    bool cached;                 /* in the table (else freed at the last release) */
    char *key;                   /* "VOICE\x1fRATE\x1fTEXT" */
    uint64_t hash;               /* of key */
    entry *chain;                /* next in its bucket */
    entry *newer, *older;        /* LRU list, ready entries only */
};

typedef struct job job;
struct job {
    TAILQ_ENTRY(job) link;       /* in todo */
    handoff_item done;           /* in `finished`, once made */
    entry *e;                    /* the entry it fills (main loop only) */
    char voice[VOICE_NAME];      /* espeak-ng voice */
    char lang[LANG_NAME];        /* the language whose recordings are looked up */
    char text[MAX_TEXT + 1];     /* what to say */
    uint8_t *data;               /* result: A-law then µ-law */
    size_t samples;              /* result samples at 8 kHz */
    int64_t took_ns;             /* synthesis time, 0 for a recording */
    bool recorded;               /* read from a recording */
};

typedef struct {
    char lang[LANG_NAME];        /* a dialplan language */
    char voice[VOICE_NAME];      /* the espeak-ng voice that says it */
} voice_map;

struct speech {
    struct event_base *base;     /* the main loop */
    speech_options opt;          /* copy; strings below */
    char *recorded_dir;          /* owned copy, or NULL */
    voice_map voices[MAX_VOICES]; /* parsed `voices` */
    size_t nvoices;              /* entries of voices */
    entry **buckets;             /* the table */
    size_t nbuckets;             /* its size, a power of two */
    size_t nentries;             /* entries in it */
    entry *newest, *oldest;      /* LRU ends */
    size_t bytes;                /* audio held by ready cached entries */
    int queued;                  /* jobs not yet back (todo, in hand, done) */
    pthread_t thread;            /* the worker */
    bool started;                /* thread exists */
    pthread_mutex_t lock;        /* guards todo and stop */
    pthread_cond_t wake;         /* todo grew or stop was set */
    TAILQ_HEAD(, job) todo;      /* for the worker, oldest first */
    bool stop;                   /* the worker should return */
    handoff *finished;           /* jobs made, for the main loop */
    speech_stats stats;          /* figures; percentiles from hist */
    uint32_t hist[HIST_BUCKETS + 1]; /* synthesis times */
    uint64_t timed;              /* entries of hist */
    metrics_series *m_synth, *m_recorded, *m_failed, *m_hits, *m_misses, *m_refused; /* stats, as counters */
    metrics_series *m_bytes, *m_p50, *m_p99; /* and as gauges */
};

/* Options ---------------------------------------------------------------------*/

static const conf_key speech_conf_keys[] = {
    CONF_KEY_BOOL(speech_options, "enabled", enabled, "1"),
    CONF_KEY(speech_options, "voices", CONF_STRING, voices, "zh:cmn en:en"),
    CONF_KEY_INT(speech_options, "rate", rate, 80, 450, "150"),
    CONF_KEY_SIZE(speech_options, "cache_bytes", cache_bytes, 65536, 1073741824, "16777216"),
    CONF_KEY_INT(speech_options, "queue", queue, 1, 100000, "256"),
    CONF_KEY_INT(speech_options, "wait_ms", wait_ms, 0, 10000, "1000"),
};
const conf_section speech_config = CONF_SECTION("speech", speech_conf_keys);

/* "zh:cmn en:en": pairs separated by spaces or commas, into map[0..*n). */
static bool parse_voices(const char *text, voice_map *map, size_t *n)
{
    const char *p = text ? text : "";
    *n = 0;
    while (*p) {
        p += strspn(p, " ,\t");
        if (!*p)
            break;
        size_t len = strcspn(p, " ,\t");
        const char *colon = memchr(p, ':', len);
        if (!colon || *n == MAX_VOICES)
            return false;
        size_t ln = (size_t)(colon - p), vn = len - ln - 1;
        if (ln == 0 || ln >= LANG_NAME || vn == 0 || vn >= VOICE_NAME)
            return false;
        voice_map *v = &map[(*n)++];
        memcpy(v->lang, p, ln);
        v->lang[ln] = '\0';
        memcpy(v->voice, colon + 1, vn);
        v->voice[vn] = '\0';
        p += len;
    }
    return *n > 0;
}

static const voice_map *voice_of(const speech *s, const char *lang)
{
    for (size_t i = 0; i < s->nvoices; i++)
        if (!strcmp(s->voices[i].lang, lang))
            return &s->voices[i];
    return NULL;
}

/* Chinese characters (CJK unified ideographs, their extensions and
 * compatibility forms) anywhere in `text`. */
static bool has_han(const char *text)
{
    const unsigned char *p = (const unsigned char *)text;
    while (*p) {
        size_t n = utf8_char_len((const char *)p);
        if (n == 0)
            return false;
        uint32_t c = n == 1 ? p[0] : p[0] & (0x7F >> n);
        for (size_t i = 1; i < n; i++)
            c = c << 6 | (p[i] & 0x3F);
        if ((c >= 0x3400 && c <= 0x4DBF) || (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0xF900 && c <= 0xFAFF) ||
            (c >= 0x20000 && c <= 0x2FFFF))
            return true;
        p += n;
    }
    return false;
}

/* Making audio (worker thread, or speech_synthesize's caller) -----------------------*/

typedef struct {
    int16_t *pcm;                /* samples so far */
    size_t n, cap;               /* their count, the allocation's */
    size_t max;                  /* MAX_SECONDS of them: synthesis stops there */
} pcm_buf;

static bool pcm_push(pcm_buf *b, const int16_t *in, size_t n)
{
    if (b->n + n > b->max)
        return false;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 32768;
        while (cap < b->n + n)
            cap *= 2;
        int16_t *grown = realloc(b->pcm, cap * sizeof *grown);
        if (!grown)
            return false;
        b->pcm = grown;
        b->cap = cap;
    }
    memcpy(b->pcm + b->n, in, n * sizeof *in);
    b->n += n;
    return true;
}

/* espeak-ng's synthesis callback: 1 stops it (too long, out of memory). */
static int on_samples(short *wav, int n, espeak_EVENT *events)
{
    pcm_buf *b = events->user_data;
    if (!wav || n <= 0)
        return 0;
    return pcm_push(b, wav, (size_t)n) ? 0 : 1;
}

static bool espeak_ok;
static pthread_once_t espeak_once = PTHREAD_ONCE_INIT;

static void espeak_init_once(void)
{
    espeak_ng_InitializePath(NULL);
    if (espeak_ng_Initialize(NULL) != ENS_OK ||
        espeak_ng_InitializeOutput(ENOUTPUT_MODE_SYNCHRONOUS, 0, NULL) != ENS_OK)
        return;
    espeak_SetSynthCallback(on_samples);
    espeak_ok = true;
}

/* espeak-ng is set up once per process and never terminated: 1.51 hangs
 * in espeak_ng_Terminate once it has been initialized a second time. */
static bool espeak_start(void)
{
    pthread_once(&espeak_once, espeak_init_once);
    return espeak_ok;
}

/* The run of speech in pcm[0..n): from the first TRIM_RUN samples above
 * TRIM_LEVEL to the end of the last such run. */
static void trim(const int16_t *pcm, size_t n, size_t *from, size_t *to)
{
    size_t run = 0, first = n, last = 0;
    for (size_t i = 0; i < n; i++) {
        run = abs(pcm[i]) >= TRIM_LEVEL ? run + 1 : 0;
        if (run == TRIM_RUN && first == n)
            first = i + 1 - TRIM_RUN;
        if (run >= TRIM_RUN)
            last = i + 1;
    }
    *from = first == n ? 0 : first;
    *to = first == n ? 0 : last;
}

static void normalize(int16_t *pcm, size_t n)
{
    int peak = 0;
    for (size_t i = 0; i < n; i++)
        if (abs(pcm[i]) > peak)
            peak = abs(pcm[i]);
    if (peak == 0)
        return;
    double gain = 32767.0 * PEAK / peak;
    for (size_t i = 0; i < n; i++)
        pcm[i] = (int16_t)(pcm[i] * gain);
}

/* pcm at `rate` to 8 kHz, 50 ms of silence after it. */
static bool resample(const int16_t *pcm, size_t n, int rate, int16_t **out, size_t *out_n)
{
    size_t pad = PAD_MS * RATE_OUT / 1000;
    size_t cap = (size_t)((double)n * RATE_OUT / rate) + pad + 64;
    int16_t *dst = calloc(cap, sizeof *dst);
    if (!dst)
        return false;
    if (rate == RATE_OUT) {
        memcpy(dst, pcm, n * sizeof *pcm);
        *out = dst;
        *out_n = n + pad;
        return true;
    }
    int err = 0;
    SpeexResamplerState *st = speex_resampler_init(1, (spx_uint32_t)rate, RATE_OUT, RESAMPLE_QUALITY, &err);
    if (!st) {
        free(dst);
        return false;
    }
    speex_resampler_skip_zeros(st);
    spx_uint32_t in_len = (spx_uint32_t)n, made = (spx_uint32_t)(cap - pad);
    speex_resampler_process_int(st, 0, pcm, &in_len, dst, &made);
    /* The filter's delay: zeros in flush the last samples out. */
    size_t total = made;
    int16_t zeros[256] = {0};
    spx_uint32_t flush = (spx_uint32_t)speex_resampler_get_input_latency(st);
    while (flush > 0 && total < cap - pad) {
        spx_uint32_t take = flush < 256 ? flush : 256, room = (spx_uint32_t)(cap - pad - total);
        speex_resampler_process_int(st, 0, zeros, &take, dst + total, &room);
        flush -= take;
        total += room;
    }
    speex_resampler_destroy(st);
    *out = dst;
    *out_n = total + pad;
    return true;
}

/* A-law then µ-law of pcm, one allocation. */
static uint8_t *encode(const int16_t *pcm, size_t n)
{
    uint8_t *data = malloc(n ? 2 * n : 1);
    if (!data)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        data[i] = linear_to_alaw(pcm[i]);
        data[n + i] = linear_to_ulaw(pcm[i]);
    }
    return data;
}

/* espeak-ng's samples of `text`, trimmed and normalized, at its own rate. */
static bool synthesize_raw(const char *voice, int rate, const char *text, pcm_buf *b)
{
    int sr = espeak_ng_GetSampleRate();
    b->max = (size_t)MAX_SECONDS * (size_t)sr;
    if (espeak_ng_SetVoiceByName(voice) != ENS_OK || espeak_ng_SetParameter(espeakRATE, rate, 0) != ENS_OK)
        return false;
    if (espeak_ng_Synthesize(text, strlen(text) + 1, 0, POS_CHARACTER, 0, espeakCHARS_UTF8, NULL, b) != ENS_OK)
        return false;
    size_t from, to;
    if (b->n == 0)
        return true;
    trim(b->pcm, b->n, &from, &to);
    memmove(b->pcm, b->pcm + from, (to - from) * sizeof *b->pcm);
    b->n = to - from;
    normalize(b->pcm, b->n);
    return true;
}

static bool synthesize_8k(const char *voice, int rate, const char *text, int16_t **out, size_t *samples)
{
    pcm_buf b = {0};
    /* Nothing above the silence level is nothing said: a failure, not 50 ms of silence. */
    bool ok = synthesize_raw(voice, rate, text, &b) && b.n > 0 &&
              resample(b.pcm, b.n, espeak_ng_GetSampleRate(), out, samples);
    free(b.pcm);
    return ok;
}

/* A mono recording at any rate, at most MAX_SECONDS. */
static bool read_recording(const char *path, int16_t **out, size_t *samples)
{
    SF_INFO info = {0};
    SNDFILE *sf = sf_open(path, SFM_READ, &info);
    if (!sf)
        return false;
    bool ok = false;
    int16_t *pcm = NULL;
    if (info.channels == 1 && info.samplerate >= 4000 && info.samplerate <= 192000 &&
        info.frames <= (sf_count_t)MAX_SECONDS * info.samplerate) {
        size_t n = (size_t)info.frames;
        pcm = malloc((n ? n : 1) * sizeof *pcm);
        if (pcm) {
            n = (size_t)sf_readf_short(sf, pcm, (sf_count_t)n);
            ok = resample(pcm, n, info.samplerate, out, samples);
        }
    }
    free(pcm);
    sf_close(sf);
    return ok;
}

void speech_hash(const char *text, char out[SPEECH_HASH_HEX + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!EVP_Digest(text, strlen(text), md, &len, EVP_sha256(), NULL))
        memset(md, 0, sizeof md);
    for (int i = 0; i < SPEECH_HASH_HEX / 2; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* The job's audio: its recording when there is one, else synthesis. */
static void make_sound(const char *recorded_dir, int rate, job *j)
{
    int16_t *pcm = NULL;
    size_t n = 0;
    if (recorded_dir) {
        char hash[SPEECH_HASH_HEX + 1], path[PATH_MAX];
        speech_hash(j->text, hash);
        snprintf(path, sizeof path, "%s/%s/values/%s.wav", recorded_dir, j->lang, hash);
        struct stat st;
        j->recorded = stat(path, &st) == 0 && read_recording(path, &pcm, &n);
    }
    if (!j->recorded) {
        int64_t start = monotime_now();
        if (!synthesize_8k(j->voice, rate, j->text, &pcm, &n))
            n = 0;
        j->took_ns = monotime_now() - start;
    }
    j->data = n ? encode(pcm, n) : NULL;
    j->samples = j->data ? n : 0;
    free(pcm);
}

bool speech_synthesize(const char *voice, int rate, const char *text, int16_t **out, size_t *samples)
{
    return espeak_start() && synthesize_8k(voice, rate, text, out, samples);
}

const char *speech_check_voices(const char *voices, char *why, size_t size)
{
    voice_map map[MAX_VOICES];
    size_t n;
    if (!parse_voices(voices, map, &n)) {
        snprintf(why, size, "\"%s\" is not LANG:VOICE pairs (at most %d)", voices ? voices : "", MAX_VOICES);
        return why;
    }
    if (!espeak_start()) {
        snprintf(why, size, "espeak-ng did not initialize (is espeak-ng-data installed?)");
        return why;
    }
    for (size_t i = 0; i < n; i++)
        if (espeak_ng_SetVoiceByName(map[i].voice) != ENS_OK) {
            snprintf(why, size, "voice \"%s\" of %s is unknown to espeak-ng", map[i].voice, map[i].lang);
            return why;
        }
    return NULL;
}

/* The worker ---------------------------------------------------------------------*/

static job *take_job(speech *s)
{
    pthread_mutex_lock(&s->lock);
    while (!s->stop && TAILQ_EMPTY(&s->todo))
        pthread_cond_wait(&s->wake, &s->lock);
    job *j = s->stop ? NULL : TAILQ_FIRST(&s->todo);
    if (j)
        TAILQ_REMOVE(&s->todo, j, link);
    pthread_mutex_unlock(&s->lock);
    return j;
}

static void hand_back(speech *s, job *j)
{
    handoff_post(s->finished, &j->done);
}

static void *worker(void *arg)
{
    speech *s = arg;
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), WORKER_NICE);
    for (job *j; (j = take_job(s)) != NULL;) {
        make_sound(s->recorded_dir, s->opt.rate, j);
        hand_back(s, j);
    }
    return NULL;
}

/* The cache (main loop) ---------------------------------------------------------------*/

static uint64_t hash_key(const char *k)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)k; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

static entry **bucket(speech *s, uint64_t h)
{
    return &s->buckets[h & (s->nbuckets - 1)];
}

static void entry_free(entry *e)
{
    free(e->data);
    free(e->key);
    free(e);
}

static void entry_unref(entry *e)
{
    if (--e->refs == 0)
        entry_free(e);
}

void speech_release(const speech_sound *sound)
{
    if (sound)
        entry_unref((entry *)sound);
}

static void lru_unlink(speech *s, entry *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else if (s->newest == e)
        s->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else if (s->oldest == e)
        s->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void lru_push(speech *s, entry *e)
{
    e->older = s->newest;
    e->newer = NULL;
    if (s->newest)
        s->newest->newer = e;
    s->newest = e;
    if (!s->oldest)
        s->oldest = e;
}

static void uncache(speech *s, entry *e)
{
    for (entry **p = bucket(s, e->hash); *p; p = &(*p)->chain)
        if (*p == e) {
            *p = e->chain;
            break;
        }
    lru_unlink(s, e);
    if (e->sound.ready)
        s->bytes -= 2 * e->sound.samples;
    s->nentries--;
    e->cached = false;
    entry_unref(e);
}

static void evict(speech *s)
{
    while (s->bytes > s->opt.cache_bytes && s->oldest)
        uncache(s, s->oldest);
}

static entry *find(speech *s, const char *key, uint64_t h)
{
    for (entry *e = *bucket(s, h); e; e = e->chain)
        if (e->hash == h && !strcmp(e->key, key))
            return e;
    return NULL;
}

/* Grows the table when it holds more entries than buckets. */
static void grow(speech *s)
{
    if (s->nentries < s->nbuckets)
        return;
    size_t n = s->nbuckets * 2;
    entry **b = calloc(n, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < s->nbuckets; i++)
        for (entry *e = s->buckets[i], *next; e; e = next) {
            next = e->chain;
            e->chain = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
}

static double percentile_us(const speech *s, double q)
{
    uint64_t want = (uint64_t)(q * (double)s->timed + 0.999999), seen = 0;
    for (int b = 0; b <= HIST_BUCKETS; b++) {
        seen += s->hist[b];
        if (seen >= want)
            return (b + 0.5) * HIST_STEP_US;
    }
    return 0;
}

static void publish(speech *s)
{
    metrics_set(s->m_synth, (double)s->stats.synthesized);
    metrics_set(s->m_recorded, (double)s->stats.recorded);
    metrics_set(s->m_failed, (double)s->stats.failed);
    metrics_set(s->m_hits, (double)s->stats.hits);
    metrics_set(s->m_misses, (double)s->stats.misses);
    metrics_set(s->m_refused, (double)s->stats.refused);
    metrics_set(s->m_bytes, (double)s->bytes);
    metrics_set(s->m_p50, s->stats.p50_us);
    metrics_set(s->m_p99, s->stats.p99_us);
}

static void note_made(speech *s, const job *j)
{
    if (!j->data) {
        s->stats.failed++;
        log_warn("speech.failed", "voice=%s bytes=%zu", log_quote(j->voice).s, strlen(j->text));
        return;
    }
    if (j->recorded) {
        s->stats.recorded++;
        return;
    }
    s->stats.synthesized++;
    int64_t bucket_of = j->took_ns / 1000 / HIST_STEP_US;
    s->hist[bucket_of < HIST_BUCKETS ? bucket_of : HIST_BUCKETS]++;
    s->timed++;
    s->stats.p50_us = percentile_us(s, 0.50);
    s->stats.p99_us = percentile_us(s, 0.99);
}

/* The job's audio becomes its entry's sound; the job's hold ends. */
static void settle(speech *s, job *j)
{
    entry *e = j->e;
    e->data = j->data;
    e->sound.samples = j->samples;
    e->sound.pcma = e->data;
    e->sound.pcmu = e->data ? e->data + j->samples : NULL;
    e->sound.ready = true;
    if (e->cached) {
        s->bytes += 2 * e->sound.samples;
        if (e->data)
            lru_push(s, e);
        else
            uncache(s, e); /* asked again, it is tried again */
    }
    s->queued--;
    entry_unref(e);
    free(j);
}

static void finish(speech *s, job *j)
{
    note_made(s, j);
    settle(s, j);
}

static job *pop_done(speech *s)
{
    handoff_item *it = handoff_take(s->finished);
    return it ? handoff_owner(it, job, done) : NULL;
}

static void on_done(handoff *h, void *arg)
{
    (void)h;
    speech *s = arg;
    for (job *j; (j = pop_done(s)) != NULL;)
        finish(s, j);
    evict(s);
    s->stats.cache_bytes = s->bytes;
    publish(s);
}

/* Getting sounds ---------------------------------------------------------------------*/

static bool enqueue(speech *s, entry *e, const voice_map *v, const char *text)
{
    /* Not mem_calloc: without memory speech_get refuses the value, as with
     * a full queue; the caller skips it and the call goes on. */
    job *j = calloc(1, sizeof *j);
    if (!j)
        return false;
    j->e = e;
    snprintf(j->voice, sizeof j->voice, "%s", v->voice);
    snprintf(j->lang, sizeof j->lang, "%s", v->lang);
    snprintf(j->text, sizeof j->text, "%s", text);
    pthread_mutex_lock(&s->lock);
    TAILQ_INSERT_TAIL(&s->todo, j, link);
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    s->queued++;
    return true;
}

static entry *entry_new(speech *s, const char *key, uint64_t h)
{
    entry *e = calloc(1, sizeof *e);
    if (!e || !(e->key = strdup(key))) {
        free(e);
        return NULL;
    }
    e->hash = h;
    e->refs = 1; /* the cache's */
    e->cached = true;
    e->chain = *bucket(s, h);
    *bucket(s, h) = e;
    s->nentries++;
    return e;
}

static const speech_sound *refuse(speech *s, const char *why, const char *lang)
{
    s->stats.refused++;
    metrics_set(s->m_refused, (double)s->stats.refused);
    log_warn("speech.refused", "why=%s lang=%s queued=%d", why, log_quote(lang).s, s->queued);
    return NULL;
}

const speech_sound *speech_get(speech *s, const char *lang, const char *text)
{
    const voice_map *v = voice_of(s, has_han(text) && voice_of(s, "zh") ? "zh" : lang);
    if (!v)
        return refuse(s, "no_voice", lang);
    if (strlen(text) > MAX_TEXT || !utf8_valid(text))
        return refuse(s, "bad_text", lang);
    char key[VOICE_NAME + 16 + MAX_TEXT];
    snprintf(key, sizeof key, "%s\x1f%d\x1f%s", v->voice, s->opt.rate, text);
    uint64_t h = hash_key(key);
    entry *e = find(s, key, h);
    if (e) {
        s->stats.hits++;
        if (e->sound.ready) {
            lru_unlink(s, e);
            lru_push(s, e);
        }
    } else {
        if (s->queued >= s->opt.queue)
            return refuse(s, "queue_full", lang);
        grow(s);
        e = entry_new(s, key, h);
        if (!e)
            return refuse(s, "out_of_memory", lang);
        e->refs++; /* the job's */
        if (!enqueue(s, e, v, text)) {
            e->refs--;
            uncache(s, e);
            return refuse(s, "out_of_memory", lang);
        }
        s->stats.misses++;
    }
    e->refs++;
    publish(s);
    return &e->sound;
}

void speech_stats_get(const speech *s, speech_stats *out)
{
    *out = s->stats;
    out->cache_bytes = s->bytes;
}

/* Lifecycle ----------------------------------------------------------------------------*/

static void register_metrics(speech *s)
{
    s->m_synth = metrics_counter("cardline_speech_synthesized_total", "Values synthesized by espeak-ng.", NULL);
    s->m_recorded = metrics_counter("cardline_speech_recorded_total", "Values read from their recordings.", NULL);
    s->m_failed = metrics_counter("cardline_speech_failed_total",
                                  "Values neither a recording nor synthesis could make.", NULL);
    s->m_hits = metrics_counter("cardline_speech_cache_hits_total",
                                "Values found in the speech cache (ready or being made).", NULL);
    s->m_misses = metrics_counter("cardline_speech_cache_misses_total", "Values queued for the speech worker.", NULL);
    s->m_refused = metrics_counter("cardline_speech_refused_total",
                                   "Values the speech worker could not take (queue full, no voice).", NULL);
    s->m_bytes = metrics_gauge("cardline_speech_cache_bytes", "Audio held by the speech cache, bytes.", NULL);
    s->m_p50 = metrics_gauge("cardline_speech_synthesis_p50_us", "Median time to synthesize a value, microseconds.",
                             NULL);
    s->m_p99 = metrics_gauge("cardline_speech_synthesis_p99_us",
                             "99th percentile of the time to synthesize a value, microseconds.", NULL);
}

static bool options_ok(const speech_options *o)
{
    return o->rate >= 80 && o->rate <= 450 && o->cache_bytes >= 65536 && o->queue >= 1;
}

speech *speech_new(struct event_base *base, const speech_options *opt)
{
    speech *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->base = base;
    s->opt = *opt;
    s->opt.voices = NULL;
    s->opt.recorded_dir = NULL;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    TAILQ_INIT(&s->todo);
    /* espeak-ng is set up here, before the worker exists, which then has it alone. */
    char why[160];
    const char *bad = options_ok(opt) ? speech_check_voices(opt->voices, why, sizeof why) : "options out of range";
    if (bad || !parse_voices(opt->voices, s->voices, &s->nvoices)) {
        log_error("speech.config", "why=%s", log_quote(bad ? bad : "voices").s);
        speech_free(s);
        return NULL;
    }
    s->recorded_dir = opt->recorded_dir && *opt->recorded_dir ? strdup(opt->recorded_dir) : NULL;
    s->nbuckets = 64;
    s->buckets = calloc(s->nbuckets, sizeof *s->buckets);
    s->finished = handoff_new(base, on_done, s);
    if (!s->buckets || !s->finished ||
        pthread_create(&s->thread, NULL, worker, s) != 0) {
        log_error("speech.start", "why=%s", log_quote("no memory, eventfd or thread").s);
        speech_free(s);
        return NULL;
    }
    s->started = true;
    register_metrics(s);
    publish(s);
    log_info("speech.start", "voices=%s rate=%d cache_bytes=%zu queue=%d", log_quote(opt->voices).s, opt->rate,
             opt->cache_bytes, opt->queue);
    return s;
}

void speech_free(speech *s)
{
    if (!s)
        return;
    if (s->started) {
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_cond_broadcast(&s->wake);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
    }
    for (job *j; s->finished && (j = pop_done(s)) != NULL;)
        finish(s, j);
    while (!TAILQ_EMPTY(&s->todo)) {
        job *j = TAILQ_FIRST(&s->todo);
        TAILQ_REMOVE(&s->todo, j, link);
        settle(s, j); /* never tried: its sound turns ready and empty */
    }
    for (size_t i = 0; i < s->nbuckets; i++)
        while (s->buckets[i])
            uncache(s, s->buckets[i]);
    handoff_free(s->finished);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    free(s->buckets);
    free(s->recorded_dir);
    free(s);
}
