/* builtin — the run functions of the handlers in the table (handlers.c).
 * Each lives in its own file and talks to the registry through
 * gateway/registry/registry.h only. */
#ifndef CARDLINE_HANDLERS_BUILTIN_H
#define CARDLINE_HANDLERS_BUILTIN_H

#include "handlers.h"

/* verify_identity.c: checks the service PIN of the caller's current card;
 * without a PIN, the ID and the SMS sender, or whether an ID has a card. */
handler_fn handlers_verify_identity_run;
handler_fn handlers_identify_sender_run;
handler_fn handlers_find_person_run;

/* card_status.c: the status and bank of the caller's current card. */
handler_fn handlers_card_status_run;

/* reissue_progress.c: the stage of the newest card application. */
handler_fn handlers_reissue_progress_run;

/* registry_settings.c: the registry's loss validity and collection period. */
handler_fn handlers_registry_settings_run;

/* card_history.c: the current card and the one it replaced. */
handler_fn handlers_card_history_run;

/* report_loss.c: the last four characters of the card; the loss report,
 * placed through the durable outbox (gateway/loss). */
handler_fn handlers_confirm_card_run;
handler_fn handlers_report_loss_run;

/* cancel_loss.c: whether the temporary loss report of the current card can
 * be cancelled (no write), and its cancellation. */
handler_fn handlers_check_cancel_run;
handler_fn handlers_cancel_loss_run;

/* activation.c: the card waiting for activation, the new PIN's strength
 * and its digest (the first entry), and the activation itself. */
handler_fn handlers_find_activatable_run;
handler_fn handlers_check_new_pin_run;
handler_fn handlers_activate_card_run;

/* contact.c: one-time codes by SMS (only their digests reach Redis), to a
 * new number or to an ID's registered mobile, and the change of mobile
 * number or address. */
handler_fn handlers_send_code_run;
handler_fn handlers_check_code_run;
handler_fn handlers_verify_code_run;
handler_fn handlers_update_contact_run;

/* callback.c: a callback request queued for agents (USSD cannot reach a
 * person live). */
handler_fn handlers_request_callback_run;

#endif
