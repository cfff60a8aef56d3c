/* cards — the opening the card handlers share (card_status, card_history,
 * find_activatable, cancel_loss, check_cancel): ask the registry for the
 * person's cards, then settle the answers none of them reads further. */
#ifndef CARDLINE_HANDLER_CARDS_H
#define CARDLINE_HANDLER_CARDS_H

#include <stdbool.h>

#include "handlers.h"
#include "registry.h"

/* Lists the cards of the call's "id" argument; `cb` gets the answer with
 * `c` as its argument. False, and nothing is asked, when the call has no ID
 * or the gateway no registry: the caller ends `c` "unavailable". */
bool cards_list(handler_call *c, registry_cb *cb);

/* True when `r` is a card list for the handler to read. Otherwise `c` is
 * ended: `unknown` for a person the registry does not know, "unavailable"
 * for a failure or an answer that is not a card list. */
bool cards_reply_ok(handler_call *c, const registry_result *r, const char *unknown);

#endif
