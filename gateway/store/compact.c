/* compact — the session document's writer: compact JSON text byte for byte
 * as jansson writes it (insertion order, the same escapes), without its
 * per-container cycle bookkeeping, into a buffer reused across saves. */
#include "compact.h"

#include <stdlib.h>
#include <string.h>

#include "mem.h"

typedef struct {
    compact_buf *b;
    size_t max_len; /* the text may not grow beyond this */
} writer;

static bool reserve(writer *w, size_t more)
{
    compact_buf *b = w->b;
    if (more > w->max_len - b->len)
        return false;
    if (b->len + more + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *grown = mem_realloc(b->data, cap);
    b->data = grown;
    b->cap = cap;
    return true;
}

static bool put(writer *w, const char *s, size_t n)
{
    if (!reserve(w, n))
        return false;
    memcpy(w->b->data + w->b->len, s, n);
    w->b->len += n;
    return true;
}

static bool put_char(writer *w, char c)
{
    return put(w, &c, 1);
}

/* jansson's escapes: the two specials, the five short control escapes,
 * \uXXXX (upper-case hex) for the other control bytes; UTF-8 as it is. */
static char short_escape(unsigned char c)
{
    switch (c) {
    case '"': return '"';
    case '\\': return '\\';
    case '\b': return 'b';
    case '\f': return 'f';
    case '\n': return 'n';
    case '\r': return 'r';
    case '\t': return 't';
    default: return 0;
    }
}

/* The quoted string and then `tail` (a ':' after a key, or 0), measured
 * first so the text is reserved once: most of a document is strings. */
static bool put_string(writer *w, const char *s, size_t n, char tail)
{
    size_t size = n + 2 + (tail != 0);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == '"' || c == '\\')
            size += short_escape(c) ? 1 : 5;
    }
    if (!reserve(w, size))
        return false;
    char *o = w->b->data + w->b->len;
    *o++ = '"';
    if (size == n + 2 + (tail != 0)) { /* nothing to escape: the common case */
        memcpy(o, s, n);
        o += n;
        n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
        } else if (short_escape(c)) {
            *o++ = '\\';
            *o++ = short_escape(c);
        } else {
            static const char hex[] = "0123456789ABCDEF";
            memcpy(o, "\\u00", 4);
            o[4] = hex[c >> 4];
            o[5] = hex[c & 15];
            o += 6;
        }
    }
    *o++ = '"';
    if (tail)
        *o++ = tail;
    w->b->len = (size_t)(o - w->b->data);
    return true;
}

/* Decimal digits by hand: snprintf's format parsing cost more than the
 * rest of a timestamp's writing. */
static bool put_integer(writer *w, json_int_t v)
{
    char digits[24];
    size_t i = sizeof digits;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        digits[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        digits[--i] = '-';
    return put(w, digits + i, sizeof digits - i);
}

/* Reals are rare in a document: jansson formats them itself. */
static bool put_real(writer *w, const json_t *v)
{
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!text)
        mem_out_of_memory("store: json_dumps");
    bool ok = put(w, text, strlen(text));
    free(text);
    return ok;
}

static bool put_value(writer *w, const json_t *v, int depth);

static bool put_object(writer *w, const json_t *v, int depth)
{
    if (!put_char(w, '{'))
        return false;
    bool first = true;
    for (void *it = json_object_iter((json_t *)v); it; it = json_object_iter_next((json_t *)v, it)) {
        if (!first && !put_char(w, ','))
            return false;
        first = false;
        if (!put_string(w, json_object_iter_key(it), json_object_iter_key_len(it), ':') ||
            !put_value(w, json_object_iter_value(it), depth + 1))
            return false;
    }
    return put_char(w, '}');
}

static bool put_array(writer *w, const json_t *v, int depth)
{
    if (!put_char(w, '['))
        return false;
    for (size_t i = 0; i < json_array_size(v); i++)
        if ((i > 0 && !put_char(w, ',')) || !put_value(w, json_array_get(v, i), depth + 1))
            return false;
    return put_char(w, ']');
}

static bool put_value(writer *w, const json_t *v, int depth)
{
    if (depth > COMPACT_MAX_DEPTH)
        return false;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return put_object(w, v, depth);
    case JSON_ARRAY:
        return put_array(w, v, depth);
    case JSON_STRING:
        return put_string(w, json_string_value(v), json_string_length(v), 0);
    case JSON_INTEGER:
        return put_integer(w, json_integer_value(v));
    case JSON_REAL:
        return put_real(w, v);
    case JSON_TRUE:
        return put(w, "true", 4);
    case JSON_FALSE:
        return put(w, "false", 5);
    default:
        return put(w, "null", 4);
    }
}

bool store_compact_dump(compact_buf *b, const json_t *value, size_t max_len)
{
    writer w = {b, max_len};
    b->len = 0;
    if (!value || !put_value(&w, value, 0))
        return false;
    b->data[b->len] = '\0';
    return true;
}

void store_compact_free(compact_buf *b)
{
    free(b->data);
    *b = (compact_buf){0};
}
