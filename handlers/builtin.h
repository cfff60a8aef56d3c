/* builtin — the run functions of the handlers in the table (handlers.c).
 * Each lives in its own file and talks to the registry through
 * gateway/registry/registry.h only. */
#ifndef CARDLINE_HANDLERS_BUILTIN_H
#define CARDLINE_HANDLERS_BUILTIN_H

#include "handlers.h"

/* verify_identity.c: checks the service PIN of the caller's current card. */
handler_fn verify_identity_run;

/* card_status.c: the status and bank of the caller's current card. */
handler_fn card_status_run;

#endif
