/* mem — allocation that aborts when out of memory (see mem.h). */
#include "mem.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

void mem_out_of_memory(const char *what)
{
    log_error("mem.oom", "what=%s", what);
    log_flush();
    abort();
}

void *mem_calloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL && n != 0 && size != 0)
        mem_out_of_memory("calloc");
    return p;
}

void *mem_malloc(size_t size)
{
    void *p = malloc(size);
    if (p == NULL && size != 0)
        mem_out_of_memory("malloc");
    return p;
}

void *mem_realloc(void *p, size_t size)
{
    void *q = realloc(p, size);
    if (q == NULL && size != 0)
        mem_out_of_memory("realloc");
    return q;
}

void *mem_reallocarray(void *p, size_t n, size_t size)
{
    void *q = reallocarray(p, n, size);
    if (q == NULL && n != 0 && size != 0)
        mem_out_of_memory("reallocarray");
    return q;
}

char *mem_strdup(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        mem_out_of_memory("strdup");
    return p;
}

char *mem_strndup(const char *s, size_t n)
{
    char *p = strndup(s, n);
    if (p == NULL)
        mem_out_of_memory("strndup");
    return p;
}
