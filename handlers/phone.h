/* phone — the one spelling of a phone number the workflows compare and
 * store: E.164. A sender's number and a registered mobile arrive written in
 * several ways ("13800000001", "+8613800000001", "008613800000001"); both
 * sides go through here before they are compared or kept, the same rules as
 * the SMS channel's session key (sms_normalize_sender). Header-only so the
 * handlers share it without a library of their own. */
#ifndef CARDLINE_HANDLER_PHONE_H
#define CARDLINE_HANDLER_PHONE_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define HANDLER_PHONE_MAX 24   /* "+" and up to 20 digits, with room to spare */

/* Writes the E.164 form of `in` to `out`: an 11-digit mainland mobile
 * (starting with 1) and the 86 / 0086 prefixed forms become +86…, other
 * numbers need their "+" already. Spaces and dashes are ignored. False when
 * `in` is not such a number (a SIP user name, a short code). */
static inline bool handler_phone_e164(const char *in, char out[HANDLER_PHONE_MAX])
{
    char digits[21];
    size_t n = 0;
    bool plus = false;
    for (const char *p = in ? in : ""; *p; p++) {
        if (*p == ' ' || *p == '-')
            continue;
        if (*p == '+' && n == 0 && !plus)
            plus = true;
        else if (*p >= '0' && *p <= '9' && n < sizeof digits - 1)
            digits[n++] = *p;
        else
            return false;   /* not a digit, or too many of them */
    }
    digits[n] = '\0';
    const char *national = NULL;
    if (n == 11 && digits[0] == '1' && !plus)
        national = digits;
    else if (n == 13 && strncmp(digits, "861", 3) == 0)
        national = digits + 2;
    else if (n == 15 && strncmp(digits, "00861", 5) == 0 && !plus)
        national = digits + 4;
    if (national)
        return snprintf(out, HANDLER_PHONE_MAX, "+86%s", national) < HANDLER_PHONE_MAX;
    if (!plus || n < 8 || n > 15)
        return false;
    return snprintf(out, HANDLER_PHONE_MAX, "+%s", digits) < HANDLER_PHONE_MAX;
}

#endif
