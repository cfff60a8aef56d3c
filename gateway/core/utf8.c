/* utf8 — well-formedness, length and cutting of UTF-8 text (see utf8.h). */
#include "utf8.h"

#include <string.h>

static bool is_continuation(unsigned char c)
{
    return (c & 0xC0) == 0x80;
}

/* The range the second byte must fall in after lead byte `c`: the table 3-7
 * of RFC 3629, which is what rules out overlongs and surrogates. */
static bool second_byte_ok(unsigned char lead, unsigned char c)
{
    switch (lead) {
    case 0xE0: return c >= 0xA0 && c <= 0xBF;
    case 0xED: return c >= 0x80 && c <= 0x9F;
    case 0xF0: return c >= 0x90 && c <= 0xBF;
    case 0xF4: return c >= 0x80 && c <= 0x8F;
    default: return is_continuation(c);
    }
}

size_t utf8_char_len(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n;
    if (p[0] == 0)
        return 0;
    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xC2 && p[0] <= 0xDF)
        n = 2;
    else if (p[0] >= 0xE0 && p[0] <= 0xEF)
        n = 3;
    else if (p[0] >= 0xF0 && p[0] <= 0xF4)
        n = 4;
    else
        return 0;
    if (!second_byte_ok(p[0], p[1]))
        return 0;
    for (size_t i = 2; i < n; i++)
        if (!is_continuation(p[i]))
            return 0;
    return n;
}

long utf8_length(const char *s)
{
    long count = 0;
    while (*s) {
        size_t n = utf8_char_len(s);
        if (n == 0)
            return -1;
        s += n;
        count++;
    }
    return count;
}

bool utf8_valid(const char *s)
{
    return utf8_length(s) >= 0;
}

size_t utf8_cut(const char *s, size_t max_bytes)
{
    size_t n = strnlen(s, max_bytes + 1);
    if (n <= max_bytes)
        return n;
    n = max_bytes;
    while (n > 0 && is_continuation((unsigned char)s[n]))
        n--;
    return n;
}
