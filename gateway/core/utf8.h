/* utf8 — the one UTF-8 check of the gateway (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF). Channels refuse text that fails
 * it; pages and SMS parts are measured in its characters, and text is
 * cut to a size in whole characters. Pure functions. */
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

/* How many bytes of `s` to keep so that at most `max_bytes` remain and no
 * character is split: all of `s` when it fits, else `max_bytes` backed off
 * to the start of the character that would be cut. The one cut of the
 * gateway (prompts, SMS, events, log values). */
size_t utf8_cut(const char *s, size_t max_bytes);

#endif
