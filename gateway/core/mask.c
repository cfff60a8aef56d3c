/* mask — masking of ID, card and phone numbers (see mask.h). */
#include "mask.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* All stars, as long as `s` (within the buffer): for input too short to
 * mask meaningfully or not the expected kind of number, so no part of it
 * is echoed. */
static masked all_stars(const char *s)
{
    masked m;
    size_t n = s ? strlen(s) : 0;
    if (n >= sizeof m.s)
        n = sizeof m.s - 1;
    memset(m.s, '*', n);
    m.s[n] = '\0';
    return m;
}

/* Keeps `head` leading and `tail` trailing characters of `s`, stars in
 * between. */
static masked keep_ends(const char *s, size_t head, size_t tail)
{
    masked m;
    size_t n = strlen(s);
    if (n >= sizeof m.s || n <= head + tail)
        return all_stars(s);
    for (size_t i = 0; i < n; i++)
        m.s[i] = (i < head || i >= n - tail) ? s[i] : '*';
    m.s[n] = '\0';
    return m;
}

/* `s` has min..max characters, every one accepted by `ok` (the last one
 * by `ok_last`). */
static bool looks_like(const char *s, size_t min, size_t max, int (*ok)(int), int (*ok_last)(int))
{
    size_t n = s ? strlen(s) : 0;
    if (n < min || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(i + 1 == n ? ok_last : ok)((unsigned char)s[i]))
            return false;
    return true;
}

static int is_id_check_char(int c)
{
    return isdigit(c) || c == 'X' || c == 'x';
}

masked mask_id(const char *id)
{
    if (!looks_like(id, 15, 18, isdigit, is_id_check_char))
        return all_stars(id);
    return keep_ends(id, 6, 4);
}

masked mask_card(const char *card)
{
    if (!looks_like(card, 8, 9, isalnum, isalnum))
        return all_stars(card);
    return keep_ends(card, 0, 4);
}

masked mask_phone(const char *phone)
{
    const char *digits = phone && phone[0] == '+' ? phone + 1 : phone;
    if (!looks_like(digits, 1, 15, isdigit, isdigit))
        return all_stars(phone);
    if (phone[0] == '+' && strlen(phone) > 3) {
        /* +CC then the national number: keep the country code visible. */
        masked m = keep_ends(phone + 3, 3, 4);
        masked out;
        memcpy(out.s, phone, 3);
        memcpy(out.s + 3, m.s, sizeof out.s - 3);
        out.s[sizeof out.s - 1] = '\0';
        return out;
    }
    return keep_ends(phone, 3, 4);
}

static bool is_phone_number(const char *s)
{
    const char *digits = s[0] == '+' ? s + 1 : s;
    return looks_like(digits, 5, 15, isdigit, isdigit);
}

masked mask_session(const char *id)
{
    masked out;
    const char *colon = id ? strchr(id, ':') : NULL;
    if (id == NULL)
        return all_stars(NULL);
    if (colon == NULL || !is_phone_number(colon + 1)) {
        snprintf(out.s, sizeof out.s, "%s", id);
        return out;
    }
    size_t head = (size_t)(colon + 1 - id);
    masked tail = mask_phone(colon + 1);
    size_t tail_len = strlen(tail.s);
    if (head + tail_len >= sizeof out.s)
        return all_stars(id);
    memcpy(out.s, id, head);
    memcpy(out.s + head, tail.s, tail_len + 1);
    return out;
}
