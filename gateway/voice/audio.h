/* audio — the prompt audio of a dialplan set: every file voice can need,
 * loaded once (libsndfile, 8 kHz mono), converted to both G.711 laws and
 * shared by all calls; and the clips that say one prompt with its values.
 *
 * Files live under a directory per language:
 *   LANG/PROMPT.K.wav   the K-th literal piece (K from 0) of prompt PROMPT's
 *                       voice text (dialplan_render_pieces splits it)
 *   LANG/say/WORD.wav   words values are said with: digits 0-9, letters A-Z,
 *                       number words, month names, units (audio.c lists them)
 * A recorded file in `recorded_dir` overrides the generated one of the same
 * name. scripts/prompts renders the generated ones from `cardline
 * --prompt-list`; `cardline --check` reports the ones still missing.
 *
 * Values: digits, card, id and phone renderings are said character by
 * character; numbers, amounts and dates in words of the language; plain text
 * values spelled when they are letters and digits; other free text (a
 * bank's name, an address) has no words here and is said by the caller's
 * value function (voice.c: speech.h), or skipped without one.
 * Main-thread only once loaded; a loaded set is immutable and reference
 * counted so a reload can swap it while calls still play the old one. */
#ifndef CARDLINE_VOICE_AUDIO_H
#define CARDLINE_VOICE_AUDIO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "media.h"

struct dialplan;

typedef struct voice_audio voice_audio;

/* Called for each problem: a file that is missing (`missing` true) or
 * unusable (not 8 kHz mono, unreadable). `why` names the file. */
typedef void voice_audio_problem_fn(bool missing, const char *why, void *arg);

/* Lists every file the set needs: `emit(lang, relative_path, text)` where
 * text is what the file must say (for the text-to-speech renderer; tabs and
 * line ends are turned into spaces, so it fits one TSV field). */
typedef void voice_audio_need_fn(const char *lang, const char *path, const char *text, void *arg);
void voice_audio_needed(const struct dialplan *dp, voice_audio_need_fn *emit, void *arg);

/* Loads every needed file from `recorded_dir` (may be NULL) or else
 * `generated_dir`. Problems go to `problem` and never stop the load: a
 * missing piece is silence at run time. Returns NULL only when out of memory. */
voice_audio *voice_audio_load(const struct dialplan *dp, const char *generated_dir,
                              const char *recorded_dir, voice_audio_problem_fn *problem, void *arg);

voice_audio *voice_audio_ref(voice_audio *a);
void voice_audio_unref(voice_audio *a);

/* Appends to out[*n..max) the clips saying prompt `id` in `lang` with
 * `vars` (what an engine output's prompt carries). Returns false when the
 * prompt is unknown to the set the audio was loaded for; pieces without
 * audio, and values without words, are skipped. */
bool voice_audio_say(const voice_audio *a, const char *lang, const char *id, json_t *vars,
                     const voice_clip **out, size_t *n, size_t max);

/* Says free text that has no words here: the clip that says `text` in
 * `lang` (it may still be being made, voice_clip's `later`), living until
 * the caller's play list is done, or NULL to skip the value. */
typedef const voice_clip *voice_audio_value_fn(const char *lang, const char *text, void *arg);

/* voice_audio_say, with `value` (may be NULL) for values without words. */
bool voice_audio_say_values(const voice_audio *a, const char *lang, const char *id, json_t *vars,
                            voice_audio_value_fn *value, void *value_arg, const voice_clip **out, size_t *n,
                            size_t max);

/* A clip of `ms` milliseconds of silence (between prompts), at most 2000,
 * rounded to 20 ms (one packet). */
const voice_clip *voice_audio_silence(const voice_audio *a, int ms);

/* Files loaded, files missing, bytes of G.711 held (for the note and
 * metrics). */
typedef struct {
    size_t files;
    size_t missing;
    size_t bytes;
} voice_audio_stats;
void voice_audio_stats_get(const voice_audio *a, voice_audio_stats *out);

#endif
