/* fetch_body — libcurl's write callback into a bounded buffer (see fetch_body.h). */
#include "fetch_body.h"

#include <stdlib.h>
#include <string.h>

size_t fetch_body_collect(char *p, size_t size, size_t n, void *body)
{
    fetch_body *b = body;
    size_t add = size * n;
    if (b->len + add > b->max)
        return 0;
    char *grown = realloc(b->data, b->len + add + 1);
    if (!grown)
        return 0;
    memcpy(grown + b->len, p, add);
    b->len += add;
    grown[b->len] = '\0';
    b->data = grown;
    return add;
}
