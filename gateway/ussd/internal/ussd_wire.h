/* ussd_wire — the parts of the aggregator wire that only read bytes: the
 * request signature and the form's fields. Pure functions (no loop, no
 * state) so the channel, cardline-phone, the tests and the fuzz targets
 * share one implementation. Internal to gateway/ussd and its tests. */
#ifndef CARDLINE_USSD_WIRE_H
#define CARDLINE_USSD_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "ussd.h"

struct evkeyvalq;

typedef enum {
    USSD_SIG_OK = 0,
    USSD_SIG_MISSING,   /* no timestamp or no signature header */
    USSD_SIG_BAD,       /* malformed, or not the HMAC of this body under our secret */
    USSD_SIG_STALE      /* well signed, but the timestamp is outside the clock skew */
} ussd_sig;

/* Checks `signature` ("sha256=<64 hex>") against HMAC-SHA256(secret,
 * timestamp + "." + body) in constant time, then `timestamp` (decimal Unix
 * seconds) against `now` +- `max_skew_s`. A bad signature wins over a
 * stale one: only a holder of the secret learns that its clock is off. */
ussd_sig ussd_wire_verify(const char *secret, const char *timestamp, const char *signature, const char *body,
                          size_t len, time_t now, int max_skew_s);

/* The fields of one request, pointing into the parsed form. */
typedef struct {
    const char *session_id;   /* sessionId */
    const char *code;         /* serviceCode */
    const char *phone;        /* phoneNumber */
    const char *text;         /* text ("" when absent) */
} ussd_fields;

#define USSD_MAX_SESSION_ID 64    /* bytes of the aggregator's sessionId */
#define USSD_MAX_CODE 32          /* bytes of serviceCode */
#define USSD_MAX_PHONE 32         /* bytes of phoneNumber */
#define USSD_MAX_NETWORK 16       /* bytes of networkCode */

/* Parses the form body (`len` bytes, not NUL-terminated) into `form`
 * (TAILQ_INIT'ed by the caller, cleared by the caller with
 * evhttp_clear_headers) and checks its fields. NULL when the request is
 * fine, else why it is refused with `*status` (400 or 413). */
const char *ussd_wire_fields(const char *body, size_t len, int max_text_bytes, struct evkeyvalq *form,
                             ussd_fields *out, int *status);

/* True when `s` is 1..max bytes, all from `allowed`. */
bool ussd_wire_chars_ok(const char *s, size_t max, const char *allowed);

#define USSD_ID_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:"
#define USSD_PHONE_CHARS "+0123456789"

#endif
