/* compact — writes a jansson value as compact JSON text, the same bytes
 * json_dumps(value, JSON_COMPACT) gives, into a buffer the caller reuses.
 *
 * Why not json_dumps: every save writes a session document, and jansson's
 * dumper checks each object and array for cycles by printing its address
 * into a hash table, then copies the result once more: ~8.7 µs for a ~1 KB
 * session, a sixth of a USSD hop's CPU. This writer walks the same values
 * (~2.5 µs) with a depth limit instead of the cycle check (documents are
 * built by us and shallow). */
#ifndef CARDLINE_STORE_COMPACT_H
#define CARDLINE_STORE_COMPACT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define COMPACT_MAX_DEPTH 64 /* deeper values (or a cycle) are refused */

typedef struct {
    char *data; /* the text, NUL-terminated after store_compact_dump */
    size_t len; /* bytes of text */
    size_t cap; /* bytes allocated */
} compact_buf;

/* Replaces the buffer's text with `value` as compact JSON. False when the
 * value nests deeper than COMPACT_MAX_DEPTH or the text would exceed
 * `max_len` bytes (the text is then unusable). Aborts when out of memory. */
bool store_compact_dump(compact_buf *b, const json_t *value, size_t max_len);

/* Frees the buffer's memory. */
void store_compact_free(compact_buf *b);

#endif
