/* sms_out — SMS out through Kannel's sendsms HTTP interface, as the
 * outbox's deliverer of kind "sms", and the delivery reports Kannel sends
 * back to our dlr-url.
 *
 * An "sms" entry's payload is {"to": "+number", "text": "UTF-8 text",
 * "ref": "caller's reference" (optional)}. Each message's state lives in
 * Redis under `cl:m:{entry id}` (a hash: to, ref, state
 * queued|sent|buffered|smsc_accepted|delivered|failed|smsc_rejected,
 * attempts, created, updated, last_error, dlr_status, dlr_ts, dlr_token:
 * the latest attempt's report token) with a TTL;
 * the number is kept there, in full, for the agent API, and only masked in
 * logs. Text never reaches a log (it may carry a one-time code).
 * Main-thread only. */
#ifndef CARDLINE_SMS_OUT_H
#define CARDLINE_SMS_OUT_H

#include <stdbool.h>

#include "config.h"

struct event_base;
typedef struct store store;
typedef struct outbox outbox;
typedef struct httpd httpd;

typedef struct sms_out sms_out;

#define SMS_OUT_MAX_TEXT 1600   /* bytes of UTF-8 (Kannel splits into parts) */
#define SMS_OUT_MAX_NUMBER 20   /* '+' and digits */

typedef struct {
    const char *sendsms_url;  /* smsbox's sendsms, e.g. "http://127.0.0.1:13013/cgi-bin/sendsms" */
    const char *username;     /* sendsms-user username */
    const char *password;     /* its password (never logged) */
    const char *from;         /* sender number or name shown to the handset */
    const char *dlr_url;      /* our DLR endpoint as Kannel reaches it, e.g.
                               * "http://127.0.0.1:8080/sms/dlr"; NULL = no reports */
    int timeout_ms;           /* deadline of one sendsms request */
    int message_ttl_s;        /* how long `cl:m:ID` is kept */
} sms_out_options;

/* [kannel]: every field. */
extern const conf_section sms_out_config;

/* Defaults: sendsms on 127.0.0.1:13013, no credentials, from "cardline",
 * no DLR URL, 5 s requests, messages kept 30 days. */
void sms_out_options_default(sms_out_options *opt);

/* Registers the "sms" deliverer with `ob`. NULL (logged as sms_out.config)
 * when an option is invalid or "sms" is already registered. */
sms_out *sms_out_new(struct event_base *base, store *st, outbox *ob,
                     const sms_out_options *opt);

/* Ends sendsms requests in flight (their attempts end retry-later) and
 * forgets reports still waiting for Redis (they get no reply). Free it
 * before the outbox, the listener with the DLR route and the store. */
void sms_out_free(sms_out *so);

/* Sends `text` to `to` at once, outside the outbox, with no record kept
 * anywhere: for one-time codes, which must never be stored. The outcome is
 * only logged (number masked). False when the number or text is invalid. */
bool sms_out_send_now(sms_out *so, const char *to, const char *text);

/* Serves Kannel's delivery reports on `GET /sms/dlr?id=&token=&status=&ts=`:
 * 200 {"recorded": true}, or {"recorded": false} when the message already
 * has its final state (the first delivered/failed report stands); 400
 * malformed; 401 when the token is missing or wrong or the id unknown (one
 * answer for all three); 503 Redis down. Returns -1 if the route cannot be
 * added. */
int sms_out_dlr_route(sms_out *so, httpd *h);

/* A delivery report's query ---------------------------------------------------*/

#define SMS_OUT_TOKEN_LEN 32    /* hex characters of a report token */

typedef struct {
    char id[48];                          /* the outbox entry id */
    char token[SMS_OUT_TOKEN_LEN + 1];    /* the token as sent ("" when absent or too long) */
    long status;                          /* Kannel's report type (%d) */
    long ts;                              /* Kannel's time (%T), 0 when absent */
    const char *state;                    /* the state that type means (static) */
} sms_out_dlr;

/* Parses the query of one report (pure: for the route and the fuzz
 * target). NULL when it is well formed, else why not. */
const char *sms_out_dlr_parse(const char *query, sms_out_dlr *out);

#endif
