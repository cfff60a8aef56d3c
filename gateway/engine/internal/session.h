/* session — the session document: one JSON object per session, the only
 * state that survives between hops (gateway/engine/README.md has the format).
 *
 * This module builds and reads documents; it does no I/O and never stores a
 * secret (those live in the step's hop-only table, see step.h). Values in
 * `vars` are strings. */
#ifndef CARDLINE_ENGINE_SESSION_H
#define CARDLINE_ENGINE_SESSION_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "channel.h"

struct dialplan;

#define SESSION_FORMAT 2          /* "v" of documents this code writes */
#define SESSION_MAX_BACK 8        /* waiting nodes remembered for `back` */

/* Creating ------------------------------------------------------------------*/

/* A new session at no node yet, with the built-in variables set. `lang`
 * falls back to the set's default when NULL or not a language of `dp`. */
json_t *engine_session_new(const struct dialplan *dp, const char *id, channel_kind ch,
                    const char *caller, const char *entry, const char *lang);

/* Brings a loaded document to SESSION_FORMAT: format 1 kept the events
 * inside the document (they are in the store's event list now). */
void engine_session_upgrade(json_t *doc);

/* Reading and writing -------------------------------------------------------*/

const char *engine_session_str(json_t *doc, const char *key);
void engine_session_set_str(json_t *doc, const char *key, const char *value);
bool engine_session_channel(json_t *doc, channel_kind *out);

json_t *engine_session_vars(json_t *doc);
const char *engine_session_var(json_t *doc, const char *name);
void engine_session_set_var(json_t *doc, const char *name, const char *value);
const char *engine_session_lang(json_t *doc);

/* Per-node failure counters ("timeout", "no_input", "invalid"). */
int engine_session_fail_count(json_t *doc, const char *kind);
void engine_session_set_fail_count(json_t *doc, const char *kind, int n);
void engine_session_reset_fails(json_t *doc);

/* The stack of waiting nodes ("flow.node"), newest last. */
json_t *engine_session_back(json_t *doc);
void engine_session_push_back(json_t *doc, const char *where);

/* The information said on the way to the waiting node the session stands
 * at (prompts with their variables, as in an output), for `repeat`; NULL
 * when there was none (borrowed). Setting takes a reference; an empty list
 * removes the member. */
json_t *engine_session_said(json_t *doc);
void engine_session_set_said(json_t *doc, json_t *prompts);

/* Replays -------------------------------------------------------------------*/

/* Records the hop's key (may be NULL) and its output (a reference is taken). */
void engine_session_set_last_hop(json_t *doc, const char *hop_key, json_t *output);
/* The stored output if `hop_key` is the last hop's key, else NULL (borrowed). */
json_t *engine_session_replay(json_t *doc, const char *hop_key);

#endif
