/* domain — citizen-ID checksum and service PIN strength rules.
 * See domain.h; the weights and check characters are those of GB 11643, the
 * citizen-ID standard. */
#include "domain.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static const int id_weights[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
static const char id_check_chars[11] = {'1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'};

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

static int two_digits(const char *s)
{
    return (s[0] - '0') * 10 + (s[1] - '0');
}

bool domain_id_normalize(const char *in, char out[DOMAIN_ID_LEN + 1])
{
    if (in == NULL || strlen(in) != DOMAIN_ID_LEN)
        return false;
    memcpy(out, in, DOMAIN_ID_LEN + 1);
    if (out[DOMAIN_ID_LEN - 1] == 'x' || out[DOMAIN_ID_LEN - 1] == '*')
        out[DOMAIN_ID_LEN - 1] = 'X';
    return true;
}

char domain_id_check_char(const char *id17)
{
    int sum = 0;
    for (int i = 0; i < 17; i++)
        sum += (id17[i] - '0') * id_weights[i];
    return id_check_chars[sum % 11];
}

static bool id_birth_date_plausible(const char *id)
{
    int century = two_digits(id + 6);
    int month = two_digits(id + 10);
    int day = two_digits(id + 12);
    return century >= 18 && century <= 20 && month >= 1 && month <= 12 &&
           day >= 1 && day <= 31;
}

bool domain_id_valid(const char *id)
{
    if (id == NULL || strlen(id) != DOMAIN_ID_LEN)
        return false;
    if (id[0] == '0' || !all_digits(id, 17) || !id_birth_date_plausible(id))
        return false;
    char last = id[17];
    if (last != 'X' && !isdigit((unsigned char)last))
        return false;
    return domain_id_check_char(id) == last;
}

bool domain_card_number_valid(const char *card)
{
    if (card == NULL)
        return false;
    size_t n = strlen(card);
    if (n == 8)
        return all_digits(card, 8);
    if (n != DOMAIN_CARD_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)card[i]) && !isupper((unsigned char)card[i]))
            return false;
    return true;
}

static bool pin_is_run(const char *pin, int step)
{
    for (int i = 1; i < DOMAIN_PIN_LEN; i++)
        if (pin[i] - pin[i - 1] != step)
            return false;
    return true;
}

/* The birth date inside an ID, YYYYMMDD at offset 6, in the three orders
 * people pick for a PIN. */
static bool pin_is_birth_date(const char *pin, const char *id)
{
    if (id == NULL || strlen(id) != DOMAIN_ID_LEN || !all_digits(id + 6, 8))
        return false;
    const char *yy = id + 8, *mm = id + 10, *dd = id + 12;
    char forms[3][DOMAIN_PIN_LEN + 1] = {
        {yy[0], yy[1], mm[0], mm[1], dd[0], dd[1], 0},
        {mm[0], mm[1], dd[0], dd[1], yy[0], yy[1], 0},
        {dd[0], dd[1], mm[0], mm[1], yy[0], yy[1], 0},
    };
    for (int i = 0; i < 3; i++)
        if (memcmp(pin, forms[i], DOMAIN_PIN_LEN) == 0)
            return true;
    return false;
}

domain_pin_verdict domain_pin_check(const char *pin, const char *initial_pin,
                                    const char *id)
{
    if (pin == NULL || strlen(pin) != DOMAIN_PIN_LEN || !all_digits(pin, DOMAIN_PIN_LEN))
        return DOMAIN_PIN_MALFORMED;
    if (initial_pin != NULL && strcmp(pin, initial_pin) == 0)
        return DOMAIN_PIN_INITIAL;
    if (pin_is_run(pin, 0))
        return DOMAIN_PIN_REPEATED;
    if (pin_is_run(pin, 1) || pin_is_run(pin, -1))
        return DOMAIN_PIN_SEQUENCE;
    if (pin_is_birth_date(pin, id))
        return DOMAIN_PIN_BIRTH_DATE;
    return DOMAIN_PIN_OK;
}

const char *domain_pin_verdict_name(domain_pin_verdict v)
{
    switch (v) {
    case DOMAIN_PIN_OK: return "ok";
    case DOMAIN_PIN_MALFORMED: return "malformed";
    case DOMAIN_PIN_INITIAL: return "initial";
    case DOMAIN_PIN_REPEATED: return "repeated";
    case DOMAIN_PIN_SEQUENCE: return "sequence";
    case DOMAIN_PIN_BIRTH_DATE: return "birth_date";
    }
    return "unknown";
}

/* Phone number -------------------------------------------------------------*/

bool domain_phone_normalize(const char *in, bool e164_only, char out[DOMAIN_PHONE_MAX])
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
            return false; /* not a digit, or too many of them */
    }
    digits[n] = '\0';
    const char *national = NULL;
    if (n == 11 && digits[0] == '1' && !plus)
        national = digits;
    else if (n == 13 && strncmp(digits, "86", 2) == 0)
        national = digits + 2;
    else if (n == 15 && strncmp(digits, "0086", 4) == 0 && !plus)
        national = digits + 4;
    int w;
    if (national)
        w = snprintf(out, DOMAIN_PHONE_MAX, "+86%s", national);
    else if (e164_only ? plus && n >= 8 && n <= 15 : n >= 3)
        w = snprintf(out, DOMAIN_PHONE_MAX, "%s%s", plus ? "+" : "", digits);
    else
        return false;
    return w > 0 && w < DOMAIN_PHONE_MAX;
}
