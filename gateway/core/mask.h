/* mask — the only way personal numbers reach a log line or an agent with a
 * restricted role. Each helper returns a small value type so it can be used
 * inline: log_info("x", "id=%s", mask_id(id).s). Input that does not look
 * like the expected number is masked entirely rather than echoed. */
#ifndef CARDLINE_MASK_H
#define CARDLINE_MASK_H

/* Big enough for a session id (STORE_MAX_ID_LEN) as well as any number. */
typedef struct { char s[136]; } masked;

/* Citizen ID: first 6 + last 4, e.g. 110101********4514. */
masked mask_id(const char *id);

/* Card number: last 4, e.g. *****0001. */
masked mask_card(const char *card);

/* Phone number: first 3 + last 4 of the national number; an international
 * form keeps its first three characters (+ and the country code) in front,
 * e.g. +86138****0001 or 138****0001. */
masked mask_phone(const char *phone);

/* Session id ("channel:rest"): a rest that is a phone number, as in SMS
 * sessions keyed by sender, is masked like one; other ids (an aggregator's
 * sessionId, a SIP Call-ID) are kept whole for correlating log lines. */
masked mask_session(const char *id);

#endif
