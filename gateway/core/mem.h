/* mem — the gateway's allocation, with one out-of-memory policy (as Redis's
 * zmalloc): when the C library says no, one fatal log line is written and
 * the process aborts. Why not hand NULL back: the gateway cannot serve a
 * caller without memory, every caller up the stack expects its callback,
 * and half-built state (a session without its timer, a request on no list)
 * is worse than a restart by the supervisor. These never return NULL.
 *
 * Where running out is an answer rather than a failure — a bounded cache
 * that skips an entry, a request refused with 503 — the module calls the C
 * library itself and says so beside the call. */
#ifndef CARDLINE_MEM_H
#define CARDLINE_MEM_H

#include <stddef.h>

/* calloc(n, size): zeroed; aborts when out of memory (or when n * size
 * overflows). */
void *mem_calloc(size_t n, size_t size);

/* malloc(size), not zeroed; aborts when out of memory. */
void *mem_malloc(size_t size);

/* realloc(p, size); aborts when out of memory (`p` is then still the
 * caller's, but the process does not return to use it). */
void *mem_realloc(void *p, size_t size);

/* reallocarray(p, n, size): realloc with an overflow check on n * size. */
void *mem_reallocarray(void *p, size_t n, size_t size);

/* A copy of the string `s`; aborts when out of memory. */
char *mem_strdup(const char *s);

/* A NUL-terminated copy of the first `n` bytes of `s` (fewer if `s` ends
 * before); aborts when out of memory. */
char *mem_strndup(const char *s, size_t n);

/* The policy itself, for a library that reported out of memory in its own
 * way (a NULL from jansson, evbuffer_new): logs `what` and aborts. */
_Noreturn void mem_out_of_memory(const char *what);

#endif
