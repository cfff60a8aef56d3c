/* speech — values that have no recording (a bank's name, an outlet's
 * address), made into G.711 audio at run time: synthesized by espeak-ng's
 * library, or read from a recording of the value when there is one.
 *
 * espeak-ng keeps process-wide state and is not reentrant, so one worker
 * thread does all of it (synthesis, resampling to 8 kHz, both G.711 laws),
 * fed by a bounded queue; the main loop never waits for it. What it makes
 * lands in a cache shared by every call, keyed by voice, rate and text,
 * capped in bytes (least recently used goes first). A sound is handed out
 * at once, ready or not: `ready` turns true on the main loop when the
 * worker is done, so a caller can start playing what comes before it.
 *
 * A value is said by the voice of its language, except that text with
 * Chinese characters is said by zh's voice (place names in English
 * answers). A recording in `recorded_dir`/LANG/values/HASH.wav (HASH: the
 * first 16 hex digits of the SHA-256 of the text; any rate, mono) wins
 * over synthesis. Main-thread only, except the worker inside. */
#ifndef CARDLINE_SPEECH_H
#define CARDLINE_SPEECH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct event_base;

typedef struct speech speech;

/* The audio of one value, in both laws; written on the main loop only. */
typedef struct {
    const uint8_t *pcma;       /* A-law samples; NULL until ready */
    const uint8_t *pcmu;       /* µ-law samples; NULL until ready */
    size_t samples;            /* 8 kHz samples; 0 until ready, and when nothing could be made */
    bool ready;                /* the worker is done with it */
} speech_sound;

typedef struct {
    bool enabled;              /* voice synthesizes values without words only when set */
    int wait_ms;               /* voice waits this long for a value not ready in its turn */
    const char *voices;        /* "LANG:VOICE ..." (espeak-ng voice names), e.g. "zh:cmn en:en" */
    int rate;                  /* words per minute, as scripts/prompts renders prompts */
    size_t cache_bytes;        /* audio kept (both laws counted) */
    int queue;                 /* values waiting for the worker, at most */
    const char *recorded_dir;  /* recordings of values (LANG/values/HASH.wav), or NULL */
} speech_options;

/* [speech]: every field but recorded_dir ([voice]). */
extern const conf_section speech_config;

#define SPEECH_HASH_HEX 16     /* hex digits of a recording's file name */

/* NULL when `voices` is well-formed and espeak-ng knows every voice in
 * it; else why not, written into why[0..size). For --check too. */
const char *speech_check_voices(const char *voices, char *why, size_t size);

/* NULL (logged) when an option is out of range, a voice is unknown to
 * espeak-ng, or the worker cannot start. */
speech *speech_new(struct event_base *base, const speech_options *opt);
/* Stops the worker (it finishes the value in hand). Sounds still held stay
 * valid until released; those not yet made turn ready and empty. */
void speech_free(speech *s);

/* The sound of `text` said in `lang`, held for the caller (release it):
 * from the cache, or queued for the worker. NULL when the language has no
 * voice or the queue is full (logged; the caller skips the value). */
const speech_sound *speech_get(speech *s, const char *lang, const char *text);
void speech_release(const speech_sound *sound);

/* The recording's file name of `text`: HASH (SPEECH_HASH_HEX digits). */
void speech_hash(const char *text, char out[SPEECH_HASH_HEX + 1]);

/* Says `text` with `voice` at `rate` into 8 kHz 16-bit samples, in the
 * calling thread: the worker's synthesis, for tests and tools that must
 * know what a value sounds like. Not while a speech object exists (espeak-ng
 * is process-wide). *out is malloc'd; false when synthesis failed. */
bool speech_synthesize(const char *voice, int rate, const char *text, int16_t **out, size_t *samples);

typedef struct {
    uint64_t synthesized;      /* values synthesized */
    uint64_t recorded;         /* values read from recordings */
    uint64_t failed;           /* values neither could make */
    uint64_t hits;             /* speech_get found the text (ready or on its way) */
    uint64_t misses;           /* speech_get queued it */
    uint64_t refused;          /* speech_get gave NULL */
    size_t cache_bytes;        /* audio held by the cache now */
    double p50_us;             /* synthesis time, median since start */
    double p99_us;             /* its 99th percentile */
} speech_stats;
void speech_stats_get(const speech *s, speech_stats *out);

#endif
