/* utf8 — the one UTF-8 check of the gateway (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF). Channels refuse text that fails
 * it; pages and SMS parts are measured in its characters. Pure functions. */
#ifndef CARDLINE_UTF8_H
#define CARDLINE_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Bytes of the well-formed character starting at `s`, or 0 when the bytes
 * there are not one (a NUL byte is not a character either). */
size_t utf8_char_len(const char *s);

/* True if all of `s` is well-formed UTF-8. */
bool utf8_valid(const char *s);

/* Characters (code points) in `s`, or -1 if it is not well-formed. */
long utf8_length(const char *s);

#endif
