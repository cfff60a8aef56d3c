/* sms — the SMS channel in through Kannel: the sms-service get-url
 * (`/sms/kannel?from=%p&to=%P&text=%a`, GET or a POST form) turned into
 * engine hops, and the hop's output rendered as the reply SMS, which Kannel
 * sends back to the sender (the HTTP reply body, text/plain; UTF-8).
 *
 * Sessions are keyed by sender ("sms:" + domain_phone_normalize). A text is
 * input to the sender's waiting conversation unless it is a keyword (it
 * routes to a flow other than the catch-all's): then, or when no
 * conversation waits, it starts a new one. While the conversation is with
 * an agent (the engine answers ENGINE_HELD) every text, keywords too, is
 * held for the agent in the list cl:held:{session} (JSON {"at_ms", "text"},
 * the newest 50, expiring with the SMS session TTL) and the sender gets the
 * dialplans' `sms_held` acknowledgement. The reply always fits the
 * configured number of concatenated parts and is never empty.
 *
 * Owns no state beyond the requests in flight and the held lists: the
 * conversation is the engine's session. Never logs the text (only its
 * length) and masks the sender. Sending SMS on its own (the outbox, an
 * agent's reply) is not here. Main-thread only.
 *
 * Peers: a request is served only from an allowed source (`allow_from`,
 * else 403) and with the shared secret in its `key` parameter, which
 * Kannel's get-url carries (else 401); a refused request changes nothing.
 * A sender starting more than `starts_per_number` conversations in
 * `number_window_s` is answered a "try later" SMS. */
#ifndef CARDLINE_SMS_H
#define CARDLINE_SMS_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct engine;
struct httpd;

typedef struct sms sms;

typedef struct {
    int max_messages;        /* SMS parts a reply may take (Kannel's max-messages), 1..10 */
    int max_text_bytes;      /* longer MO text is refused with 413, 1..4096 */
    const char *secret;      /* the `key` Kannel sends; NULL = see allow_unsigned */
    bool allow_unsigned;     /* with no secret: true serves requests without a key, false refuses all */
    const char *allow_from;  /* allowed sources (allow.h syntax); NULL = any */
    int starts_per_number;   /* conversations one sender may start per window ([workflows] sessions_per_number) */
    int number_window_s;     /* that window ([workflows] number_window_s) */
} sms_options;

/* [sms]: all but the per-number limits ([workflows]). */
extern const conf_section sms_config;

/* Defaults: 3 parts, 480 bytes, no secret and every request refused, any
 * source, and [workflows]' sessions per number and window (handlers.h). */
void sms_options_default(sms_options *opt);

/* Lifecycle -----------------------------------------------------------------*/

/* Routes /sms/kannel on `h` and runs hops on `e`. NULL (logged) when an
 * option is out of range or the route cannot be added. */
sms *sms_new(struct engine *e, struct httpd *h, const sms_options *opt);

/* Answers requests still waiting for the engine with 503, then frees. Call
 * before freeing the httpd or the engine. */
void sms_free(sms *s);

/* Text rules (exposed for the tests and cardline-phone) ---------------------*/

/* Fits `text` (UTF-8) into `max_messages` SMS parts in place, in the coding
 * gsm.h says it needs (the reply's X-Kannel-Coding says the same): GSM-7 160
 * septets single / 153 per concatenated part (extension characters count
 * two), UCS-2 70 / 67 UTF-16 units. A longer text is cut at the last line
 * break that leaves room (at a character boundary when none does) and ends
 * with "..." (GSM-7) or "…" (UCS-2); `size` is the buffer's size (the
 * marker may need up to 2 bytes more than the text held). Returns true when
 * it was cut. */
bool sms_fit(char *text, size_t size, int max_messages);

#endif
