/* mask — masking of ID, card and phone numbers (see mask.h). */
#include "mask.h"

#include <string.h>

/* Keeps `head` leading and `tail` trailing characters of `s`, stars in
 * between. Strings too short to mask meaningfully become all stars. */
static masked keep_ends(const char *s, size_t head, size_t tail)
{
    masked m;
    size_t n = s ? strlen(s) : 0;
    if (n >= sizeof m.s)
        n = sizeof m.s - 1;
    if (n <= head + tail) {
        memset(m.s, '*', n);
        m.s[n] = '\0';
        return m;
    }
    for (size_t i = 0; i < n; i++)
        m.s[i] = (i < head || i >= n - tail) ? s[i] : '*';
    m.s[n] = '\0';
    return m;
}

masked mask_id(const char *id)
{
    return keep_ends(id, 6, 4);
}

masked mask_card(const char *card)
{
    return keep_ends(card, 0, 4);
}

masked mask_phone(const char *phone)
{
    if (phone == NULL)
        return keep_ends(NULL, 0, 0);
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
