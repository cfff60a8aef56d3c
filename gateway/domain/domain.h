/* domain — rules of the card domain that more than one program must apply
 * the same way: the citizen-ID checksum, the strength rules of a service
 * PIN and the one spelling of a phone number. The gateway uses them to refuse bad input early; the registry
 * simulator uses them to enforce the contract. Pure functions: no I/O, no
 * allocation, no logging (a PIN passed in here is never stored). */
#ifndef CARDLINE_DOMAIN_H
#define CARDLINE_DOMAIN_H

#include <stdbool.h>
#include <stddef.h>

#define DOMAIN_ID_LEN 18      /* citizen ID = social security number */
#define DOMAIN_PIN_LEN 6      /* service PIN */
#define DOMAIN_CARD_MAX 9     /* card number: 9 chars, older cards 8 digits */

/* Citizen ID ---------------------------------------------------------------*/

/* Copies `in` to `out` (DOMAIN_ID_LEN + 1 bytes) with a final `x` or keypad
 * `*` turned into `X`. Returns false if `in` is not 18 characters long. */
bool domain_id_normalize(const char *in, char out[DOMAIN_ID_LEN + 1]);

/* True if `id` (already normalized) has the national format: region, a birth
 * date in 1800–2099 with a plausible month and day, sequence, and a check
 * character that matches the weighted sum of the first 17 digits. */
bool domain_id_valid(const char *id);

/* The check character (0-9 or X) for the first 17 digits of `id`. */
char domain_id_check_char(const char *id17);

/* Phone number -------------------------------------------------------------*/

#define DOMAIN_PHONE_MAX 24   /* "+" and up to 20 digits, with room to spare */

/* The one spelling of a phone number, so a sender's number, a caller and a
 * registered mobile written in different ways ("13800000001",
 * "+86 138-0000-0001", "008613800000001") compare equal: an 11-digit
 * mainland mobile and the 86 / 0086 prefixed forms become "+86…"; spaces
 * and dashes are ignored. With `e164_only` any other number needs its "+"
 * and 8-15 digits (what the workflows store and compare); without, any 3-20
 * digits are kept as given, with or without "+" (SMS short codes, session
 * keys). False when `in` is not such a number (a SIP user name, letters). */
bool domain_phone_normalize(const char *in, bool e164_only, char out[DOMAIN_PHONE_MAX]);

/* Card number --------------------------------------------------------------*/

/* 9 uppercase letters/digits, or 8 digits for older local cards. */
bool domain_card_number_valid(const char *card);

/* Service PIN --------------------------------------------------------------*/

typedef enum {
    DOMAIN_PIN_OK = 0,
    DOMAIN_PIN_MALFORMED,   /* not exactly six digits */
    DOMAIN_PIN_INITIAL,     /* equals the issuer's initial PIN */
    DOMAIN_PIN_REPEATED,    /* one digit six times */
    DOMAIN_PIN_SEQUENCE,    /* ascending or descending run, e.g. 123456 */
    DOMAIN_PIN_BIRTH_DATE   /* the holder's birth date as YYMMDD or MMDDYY or DDMMYY */
} domain_pin_verdict;

/* Judges a new PIN. `initial_pin` and `id` may be NULL to skip those rules. */
domain_pin_verdict domain_pin_check(const char *pin, const char *initial_pin,
                                    const char *id);

/* A short stable name for a verdict ("ok", "initial", ...), for error codes. */
const char *domain_pin_verdict_name(domain_pin_verdict v);

#endif
