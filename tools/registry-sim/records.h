/* records — the registry's rules over its data: persons, cards, PINs, loss
 * reports, applications, exactly as docs/registry-api.md states them. Each
 * operation runs inside the caller's transaction and answers a sim_reply
 * (the body without a request id). Identifiers arrive already validated by
 * the router. Owns no HTTP and no idempotency: a call here is one applied
 * action, and each applied write bumps its counter in the `counters` table
 * (the proof of exactly-once delivery). PINs are compared with their crypt
 * hashes and never leave this module, not even in an error message. */
#ifndef SIM_RECORDS_H
#define SIM_RECORDS_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>

#include "reply.h"

#define RECORDS_PIN_ATTEMPTS 6

typedef struct records records;

/* Lifecycle -----------------------------------------------------------------*/

/* `loss_days`: validity of a temporary loss report; `collect_days`: how
 * long a card waits at the outlet before it is sealed; `initial_pin`: the
 * issuer's initial PIN (copied); `pin_count`: whether answers carry the
 * PIN attempts left (false plays a registry older than that field). */
records *records_new(sqlite3 *h, int loss_days, int collect_days, const char *initial_pin, bool pin_count);
void records_free(records *r);

/* Applies the calendar against the simulator's today: due temporary loss
 * reports lapse (unless a replacement of the card holds them) and cards
 * left at the outlet past their collection date are sealed (stage
 * `uncollected`). Called before every operation, so both are lazy. */
bool records_apply_due(records *r);

/* Reads ---------------------------------------------------------------------*/

/* The registry's settings clients word their answers with. */
sim_reply records_get_settings(records *r);

sim_reply records_get_person(records *r, const char *ssn);
sim_reply records_get_card(records *r, const char *card);
/* One page of the person's cards (current first) or applications (newest
 * first) from `offset`; `*more` tells whether another page follows. */
sim_reply records_list_cards(records *r, const char *ssn, int offset, int limit, bool *more);
sim_reply records_list_applications(records *r, const char *ssn, int offset, int limit, bool *more);

/* Writes (body: the request's JSON object) ----------------------------------*/

sim_reply records_update_contact(records *r, const char *ssn, json_t *body);
sim_reply records_verify_pin(records *r, const char *ssn, json_t *body);
sim_reply records_report_loss(records *r, const char *card, json_t *body);
sim_reply records_cancel_loss(records *r, const char *card, const char *report_id, json_t *body);
sim_reply records_activate(records *r, const char *card, json_t *body);

/* Contact rules, shared with the seed loader --------------------------------*/

/* E.164: + and 8 to 15 digits. */
bool records_mobile_valid(const char *mobile);
/* 1 to 200 characters, no control characters. */
bool records_address_valid(const char *address);

/* Counters of applied writes, by the names /_sim/stats reports. */
extern const char *const records_counter_names[];

#endif
