/* fetch_body — a libcurl response body gathered in memory, up to a bound:
 * the write callback the demo tools (cardline-phone, cardline-agentphone)
 * hand to CURLOPT_WRITEFUNCTION. */
#ifndef CARDLINE_FETCH_BODY_H
#define CARDLINE_FETCH_BODY_H

#include <stddef.h>

typedef struct {
    char *data;   /* the body so far, NUL-terminated; NULL before any byte */
    size_t len;   /* its length */
    size_t max;   /* the bound: a longer body ends the transfer */
} fetch_body;

/* CURLOPT_WRITEFUNCTION with a fetch_body as CURLOPT_WRITEDATA: appends,
 * or returns 0 (libcurl then fails the transfer) past `max` or out of
 * memory. */
size_t fetch_body_collect(char *p, size_t size, size_t n, void *body);

#endif
