/* sms_wire — the parts of Kannel's get-url that only read bytes: the form
 * fields of one MO request and the shared-secret check. Pure functions so
 * the channel, the tests and the fuzz targets share them. Internal to
 * gateway/sms and its tests. */
#ifndef CARDLINE_SMS_WIRE_H
#define CARDLINE_SMS_WIRE_H

#include <stdbool.h>

struct evkeyvalq;

#define SMS_SESSION_MAX 32   /* bytes of a normalized sender */

/* One MO request, pointing into the parsed form. */
typedef struct {
    const char *from;              /* `from` as sent (%p) */
    const char *text;              /* `text` (%a) */
    const char *key;               /* `key`, the secret Kannel proves itself with, or NULL */
    char sender[SMS_SESSION_MAX];  /* `from` normalized (domain_phone_normalize) */
} sms_mo;

/* Why a request is refused: HTTP status, error code and message. */
typedef struct {
    int status;
    const char *code;
    const char *message;
} sms_refusal;

/* Parses the form text (query or body, NUL-terminated; NULL = unreadable)
 * into `form` (TAILQ_INIT'ed by the caller, cleared by the caller) and
 * checks the fields. `mo->key` is set whenever the form parsed, so the key
 * can be checked before the reason of a refusal is told. */
bool sms_wire_parse(const char *text, int max_text_bytes, struct evkeyvalq *form, sms_mo *mo, sms_refusal *why);

/* True when `key` equals `secret`, compared in constant time. */
bool sms_wire_key_ok(const char *secret, const char *key);

#endif
