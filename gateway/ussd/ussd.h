/* ussd — the USSD channel: `POST /ussd` in the aggregator convention
 * (form fields sessionId, serviceCode, phoneNumber, text; replies
 * "CON …"/"END …" as text/plain). It turns each request into one engine
 * event, derives the newest input from the `*`-joined history against what
 * the session consumed, splits long outputs into pages a handset can show
 * (at most `page_octets` octets in the coding each page needs, see "Pages"
 * below), and answers a holding page when a hop outlives
 * `answer_deadline_ms`.
 *
 * It keeps nothing of a session between requests: pages are cut again from
 * the last hop's output the engine stores, and a held hop is described by
 * the session's store note, so any gateway sharing the Redis answers any
 * request. In memory are only the hops running here and the identical
 * requests waiting for them. It never logs `text` (it may hold a PIN) and
 * masks phone numbers. Main-thread only. gateway/ussd/README.md has
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

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "gsm.h"

struct event_base;
struct engine;
struct httpd;

typedef struct ussd ussd;

typedef struct {
    struct engine *engine;      /* runs the hops (not owned) */
    int answer_deadline_ms;     /* a hop not done by then is answered with a holding page */
    int max_text_bytes;         /* longer `text` is refused with 413 */
    int page_octets;            /* octets of one page after "CON "/"END " (GSM-7 packed or UCS-2) */
    const char *hop_key_secret; /* HMAC key of hop keys; NULL = random per process (not shared) */
    const char *secret;         /* key aggregators sign with; NULL = see allow_unsigned */
    bool allow_unsigned;        /* with no secret: true serves unsigned requests, false refuses all */
    const char *allow_from;     /* allowed sources (allow.h syntax); NULL = any */
    int max_clock_skew_s;       /* a signature's timestamp may be this far from our clock */
    int starts_per_number;      /* sessions one phoneNumber may start per window ([workflows] sessions_per_number) */
    int number_window_s;        /* that window ([workflows] number_window_s) */
} ussd_options;

/* [ussd]: all but engine and the per-number limits ([workflows]). */
extern const conf_section ussd_config;

/* Limits ----------------------------------------------------------------------*/

#define USSD_MIN_PAGE_OCTETS 64              /* room for a menu and the "98" line */
#define USSD_MAX_PAGE_OCTETS GSM_USSD_OCTETS /* one USSD string: 160 */
#define USSD_MAX_TEXT_BYTES 4096

/* Defaults: deadline 2500 ms, text 1024 bytes, 160 octets a page,
 * random hop key secret, no request
 * secret and unsigned requests refused, any source, 300 s clock skew, and
 * [workflows]' sessions per number and window (handlers.h). */
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

/* Pages (pure: the channel, the tests and tools show pages the same way) ---*/

#define USSD_MORE_KEY "98"   /* the reply that shows the next page; no shipped menu uses it */

/* An output cut into pages. */
typedef struct {
    char **text;             /* each page as shown after "CON "/"END ", its "98" line included */
    size_t count;            /* pages, at least one */
} ussd_pages;

/* Cuts `text` (UTF-8) into pages of at most `page_octets` octets each, a
 * page measured in the coding its own text needs (gsm.h: GSM-7 packed, or
 * UCS-2 as soon as one character is outside GSM 03.38). Every page but
 * the last ends with the line "98 更多" (`lang` zh) or "98 More", which
 * counts against it. A page ends at the last line break that fills at
 * least half of what fits, else at such a sentence end (。！？, or .!?
 * before a blank), else at such a clause mark (，；：、, or ,;: before a
 * blank), else at the last of any of these or a space — never inside a
 * word; only a run with no such place longer than a page is cut, and then
 * at a character boundary. Blanks at a cut are dropped.
 * `text` from byte `block` on (the question the caller answers, with a
 * menu's options; strlen(text) = none) is never split when it fits one
 * page: it comes whole on the last page, earlier text on earlier pages. */
void ussd_paginate(const char *text, size_t block, const char *lang, int page_octets, ussd_pages *out);

/* The pages of a hop's output (engine.h) as the channel shows them: its
 * prompts rendered for USSD, and when it waits (menu or ask) its last
 * prompt — the waiting node's question — kept whole. */
void ussd_output_pages(const struct engine *e, json_t *output, int page_octets, ussd_pages *out);

void ussd_pages_free(ussd_pages *p);

/* "\n98 更多" or "\n98 More": the line ending a page that has a next. */
const char *ussd_more_line(const char *lang);

/* Lifecycle -------------------------------------------------------------------*/

/* Routes POST /ussd on `http`. NULL (logged) when an option is out of range
 * or the route is taken. */
ussd *ussd_new(struct event_base *base, struct httpd *http, const ussd_options *opt);

/* Call after httpd_free (or a finished httpd_drain) and before the engine is
 * freed: requests still open are dropped unanswered; hops still running
 * finish into nothing. */
void ussd_free(ussd *u);

#endif
