/* gsm — the GSM 03.38 alphabet and the cost of text in it (see gsm.h). */
#include "gsm.h"

#include <string.h>

#include "utf8.h"

/* The default alphabet (ESC excluded) and the extension table, in UTF-8. */
static const char gsm_basic[] =
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
static const char gsm_extension[] = "^{}\\[~]|€\f";

/* A character's bytes found in a table: a lead byte only ever matches at
 * the start of one of the table's characters, so this finds whole ones. */
static bool in_table(const char *table, const char *ch, size_t n)
{
    return n > 0 && memmem(table, strlen(table), ch, n) != NULL;
}

size_t gsm_char_septets(const char *ch, size_t n)
{
    if (in_table(gsm_basic, ch, n))
        return 1;
    return in_table(gsm_extension, ch, n) ? 2 : 0;
}

size_t gsm_char_ucs2(size_t n)
{
    return n == 4 ? 2 : 1;
}

/* Bytes of the character at text[i] within `len`, 0 when malformed or cut. */
static size_t char_at(const char *text, size_t i, size_t len)
{
    size_t n = utf8_char_len(text + i);
    return i + n <= len ? n : 0;
}

bool gsm_is_gsm7(const char *text, size_t len)
{
    for (size_t i = 0; i < len;) {
        size_t n = char_at(text, i, len);
        if (n == 0 || gsm_char_septets(text + i, n) == 0)
            return false;
        i += n;
    }
    return true;
}

size_t gsm_septets(const char *text, size_t len)
{
    size_t septets = 0;
    for (size_t i = 0, n; i < len && (n = char_at(text, i, len)) > 0; i += n)
        septets += gsm_char_septets(text + i, n);
    return septets;
}

size_t gsm_ucs2_units(const char *text, size_t len)
{
    size_t units = 0;
    for (size_t i = 0, n; i < len && (n = char_at(text, i, len)) > 0; i += n)
        units += gsm_char_ucs2(n);
    return units;
}

size_t gsm_septet_octets(size_t septets)
{
    return (septets * 7 + 7) / 8;
}

size_t gsm_ucs2_octets(size_t units)
{
    return units * 2;
}

size_t gsm_octets(const char *text, size_t len)
{
    if (gsm_is_gsm7(text, len))
        return gsm_septet_octets(gsm_septets(text, len));
    return gsm_ucs2_octets(gsm_ucs2_units(text, len));
}
