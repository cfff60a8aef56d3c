/* ussd — the USSD channel: `POST /ussd` in the aggregator convention
 * (form fields sessionId, serviceCode, phoneNumber, text; replies
 * "CON …"/"END …" as text/plain). It turns each request into one engine
 * event, derives the newest input from the `*`-joined history against what
 * the session consumed, splits long outputs into pages of at most
 * `page_chars` characters, and answers a holding page when a hop outlives
 * `answer_deadline_ms`.
 *
 * It owns the per-session channel state (pages still to show, a hop still
 * running after a holding page) in memory only; everything else lives in the
 * session the engine keeps in Redis. It never logs `text` (it may hold a
 * PIN) and masks phone numbers. Main-thread only. gateway/ussd/README.md has
 * the wire behaviour.
 *
 * Peers: a request is served only from an allowed source (`allow_from`,
 * else 403) and signed by the aggregator (else 401): header
 * X-Cardline-Timestamp (Unix seconds) and X-Cardline-Signature
 * "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + raw body), within
 * `max_clock_skew_s`. A refused request touches no session. A phone number
 * starting more than `starts_per_number` sessions in `number_window_s` is
 * answered a polite "try later" page. */
#ifndef CARDLINE_USSD_H
#define CARDLINE_USSD_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct engine;
struct httpd;

typedef struct ussd ussd;

typedef struct {
    struct engine *engine;      /* runs the hops (not owned) */
    int answer_deadline_ms;     /* a hop not done by then is answered with a holding page */
    int max_text_bytes;         /* longer `text` is refused with 413 */
    int page_chars;             /* characters (code points) of one page after "CON "/"END " */
    int max_sessions;           /* sessions with channel state held at once; more get "unavailable" */
    int state_ttl_s;            /* channel state of a silent session is dropped after this */
    const char *hop_key_secret; /* HMAC key of hop keys; NULL = random per process (not shared) */
    const char *secret;         /* key aggregators sign with; NULL = see allow_unsigned */
    bool allow_unsigned;        /* with no secret: true serves unsigned requests, false refuses all */
    const char *allow_from;     /* allowed sources (allow.h syntax); NULL = any */
    int max_clock_skew_s;       /* a signature's timestamp may be this far from our clock */
    int starts_per_number;      /* sessions one phoneNumber may start per window */
    int number_window_s;        /* that window */
} ussd_options;

/* Limits ----------------------------------------------------------------------*/

#define USSD_MIN_PAGE_CHARS 40
#define USSD_MAX_PAGE_CHARS 182
#define USSD_MAX_TEXT_BYTES 4096

/* Defaults: deadline 2500 ms, text 1024 bytes, 182 characters a page,
 * 10000 sessions, state kept 300 s, random hop key secret, no request
 * secret and unsigned requests refused, any source, 300 s clock skew, 30
 * sessions per number an hour. */
void ussd_options_default(ussd_options *opt);

/* Signing (the aggregator's side, for cardline-phone and the tests) ---------*/

#define USSD_TIMESTAMP_HEADER "X-Cardline-Timestamp"
#define USSD_SIGNATURE_HEADER "X-Cardline-Signature"
#define USSD_SIGNATURE_MAX 72   /* "sha256=" + 64 hex + NUL, rounded up */

/* Writes the X-Cardline-Signature value for `body` sent at `timestamp`
 * (decimal Unix seconds). False when the secret is empty or the timestamp
 * is not decimal. */
bool ussd_sign(const char *secret, const char *timestamp, const char *body, size_t len,
               char out[USSD_SIGNATURE_MAX]);

/* Lifecycle -------------------------------------------------------------------*/

/* Routes POST /ussd on `http`. NULL (logged) when an option is out of range
 * or the route is taken. */
ussd *ussd_new(struct event_base *base, struct httpd *http, const ussd_options *opt);

/* Call after httpd_free (or a finished httpd_drain) and before the engine is
 * freed: requests still open are dropped unanswered; hops still running
 * finish into nothing. */
void ussd_free(ussd *u);

#endif
