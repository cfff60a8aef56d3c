/* view — what an agent's role may see of a session, a callback or a piece
 * of text. Pure functions over the stored JSON: no I/O, no state.
 *
 * Fields are copied from the session document by name (a whitelist): the
 * document's prompts, replay record and every variable not named here never
 * reach an agent. Restricted roles (observer, agent) see the caller's
 * number, the verified ID, card and mobile masked (gateway/core/mask.h) and
 * long digit runs inside free text masked too; no role sees digit runs of
 * PIN or code length inside event inputs. */
#ifndef CARDLINE_AGENTS_VIEW_H
#define CARDLINE_AGENTS_VIEW_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* How free text is masked. */
#define VIEW_MASK_IDENTIFIERS 1u /* runs of 9+ digits: ID (first 6 + last 4) or phone (3 + 4) */
#define VIEW_MASK_SHORT_NUMBERS 2u /* runs of 4 to 8 digits (PIN, code, card tail): all '*' */

#define VIEW_EVENTS_SHOWN 20     /* newest events in a context */
#define VIEW_MAX_TEXT 2048       /* bytes of one masked text */

/* Copies `in` to `out` (at most size - 1 bytes, never cutting a UTF-8
 * character) with the digit runs `flags` names replaced. */
void agents_view_mask_text(const char *in, unsigned flags, char *out, size_t size);

/* The list entry of a session: {id, channel, state, flow, node, queue,
 * caller, updated_ms}; `unmasked` for supervisors. */
json_t *agents_view_summary(json_t *doc, bool unmasked);

/* A queue entry: {id, channel, caller, flow, node, from (the last waiting
 * node, "flow.node"), queue, reason, waiting_since_ms}. */
json_t *agents_view_queued(json_t *doc, long long since_ms, bool unmasked);

/* True when the session passes the list filters (NULL = any). */
bool agents_view_matches(json_t *doc, const char *channel, const char *state, const char *queue);

/* The context of a session (gateway/agents/README.md): the document's
 * whitelisted fields, `events` (JSON array of the store's event strings,
 * oldest first; the newest VIEW_EVENTS_SHOWN are shown, newest last) and,
 * for SMS, `held` (JSON array of the held-message strings, or NULL). */
json_t *agents_view_context(json_t *doc, json_t *events, json_t *held, bool unmasked);

/* One stored event "KIND flow.node MS[ INPUT]" as {kind, node, at_ms[, input]}. */
json_t *agents_view_event(const char *event, bool unmasked);

/* A callback stream entry's fields (an object of strings) joined with its
 * state hash (state, agent, updated_ms; any may be NULL). */
json_t *agents_view_callback(const char *entry_id, json_t *fields, const char *state, const char *agent,
                      const char *updated_ms, bool unmasked);

#endif
