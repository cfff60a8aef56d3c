/* gsm — GSM 03.38, the alphabet SMS and USSD travel in: whether a text fits
 * the 7-bit default alphabet (with its extension table) and what it costs,
 * in septets (GSM-7, an extension character takes two) or in UTF-16 units
 * (UCS-2, a character outside the BMP takes two). The one copy of the table:
 * the SMS channel fits replies into parts with it, the USSD channel cuts
 * pages with it, the dialplan checker measures menus with it. Pure
 * functions over UTF-8 (the text must be NUL-terminated at or after `len`);
 * malformed bytes end the text. */
#ifndef CARDLINE_GSM_H
#define CARDLINE_GSM_H

#include <stdbool.h>
#include <stddef.h>

/* One USSD string (3GPP TS 23.038): 160 octets, that is 182 GSM-7
 * septets or 80 UCS-2 units. */
#define GSM_USSD_OCTETS 160

/* Septets the character at `ch` (`n` bytes of UTF-8) takes in GSM-7: 1 in
 * the default alphabet, 2 in the extension table, 0 when it has none. */
size_t gsm_char_septets(const char *ch, size_t n);

/* UTF-16 units of a character of `n` UTF-8 bytes: 2 outside the BMP. */
size_t gsm_char_ucs2(size_t n);

/* True when every character of the first `len` bytes of `text` has GSM-7
 * septets, so the text travels as GSM-7 (else as UCS-2). */
bool gsm_is_gsm7(const char *text, size_t len);

/* Septets of `text` in GSM-7 (characters without any count nothing: ask
 * gsm_is_gsm7 first). */
size_t gsm_septets(const char *text, size_t len);

/* UTF-16 units of `text` in UCS-2. */
size_t gsm_ucs2_units(const char *text, size_t len);

/* Octets `text` takes on the air in the coding it needs: GSM-7 packed
 * (7 bits a septet, rounded up) when it can, else 2 per UCS-2 unit. */
size_t gsm_octets(const char *text, size_t len);

/* Octets of `septets` packed GSM-7, and of `units` UCS-2. */
size_t gsm_septet_octets(size_t septets);
size_t gsm_ucs2_octets(size_t units);

#endif
