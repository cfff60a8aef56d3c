/* metrics — a fixed table of named series and its Prometheus rendering.
 * Owns the table; handles stay valid until metrics_reset(). */
#include "metrics.h"

#include <event2/buffer.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct metrics_series {
    char *name;     /* metric name, e.g. cardline_store_ops_total */
    char *help;     /* one-line description for # HELP */
    char *labels;   /* label text without braces, or NULL */
    bool is_gauge;  /* rendered as gauge rather than counter */
    double value;   /* current value */
};

static metrics_series table[METRICS_MAX_SERIES];
static size_t table_len;

typedef struct {
    metrics_collect_fn *fn;   /* renders its families */
    void *arg;                /* its argument */
} collector;

static collector collectors[METRICS_MAX_COLLECTORS];
static size_t collector_count;

static bool same_labels(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static metrics_series *register_series(const char *name, const char *help,
                                       const char *labels, bool is_gauge)
{
    for (size_t i = 0; i < table_len; i++)
        if (strcmp(table[i].name, name) == 0 && same_labels(table[i].labels, labels))
            return &table[i];
    if (table_len == METRICS_MAX_SERIES)
        return NULL;
    metrics_series *s = &table[table_len++];
    s->name = strdup(name);
    s->help = strdup(help);
    s->labels = labels ? strdup(labels) : NULL;
    s->is_gauge = is_gauge;
    s->value = 0;
    return s;
}

metrics_series *metrics_counter(const char *name, const char *help, const char *labels)
{
    return register_series(name, help, labels, false);
}

metrics_series *metrics_gauge(const char *name, const char *help, const char *labels)
{
    return register_series(name, help, labels, true);
}

void metrics_inc(metrics_series *s)
{
    metrics_add(s, 1);
}

void metrics_add(metrics_series *s, double v)
{
    if (s)
        s->value += v;
}

void metrics_set(metrics_series *s, double v)
{
    if (s)
        s->value = v;
}

double metrics_value(const metrics_series *s)
{
    return s ? s->value : 0;
}

double metrics_lookup(const char *name, const char *labels, double dflt)
{
    for (size_t i = 0; i < table_len; i++)
        if (strcmp(table[i].name, name) == 0 && same_labels(table[i].labels, labels))
            return table[i].value;
    return dflt;
}

int metrics_collector_add(metrics_collect_fn *fn, void *arg)
{
    if (collector_count == METRICS_MAX_COLLECTORS)
        return -1;
    collectors[collector_count++] = (collector){fn, arg};
    return 0;
}

void metrics_collector_remove(metrics_collect_fn *fn, void *arg)
{
    for (size_t i = 0; i < collector_count; i++) {
        if (collectors[i].fn == fn && collectors[i].arg == arg) {
            collectors[i] = collectors[--collector_count];
            return;
        }
    }
}

static bool name_rendered_before(size_t upto, const char *name)
{
    for (size_t i = 0; i < upto; i++)
        if (strcmp(table[i].name, name) == 0)
            return true;
    return false;
}

static void render_sample(struct evbuffer *out, const metrics_series *s)
{
    if (s->labels)
        evbuffer_add_printf(out, "%s{%s} %.17g\n", s->name, s->labels, s->value);
    else
        evbuffer_add_printf(out, "%s %.17g\n", s->name, s->value);
}

void metrics_render(struct evbuffer *out)
{
    for (size_t i = 0; i < table_len; i++) {
        if (name_rendered_before(i, table[i].name))
            continue;
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", table[i].name,
                            table[i].help, table[i].name,
                            table[i].is_gauge ? "gauge" : "counter");
        for (size_t j = i; j < table_len; j++)
            if (strcmp(table[j].name, table[i].name) == 0)
                render_sample(out, &table[j]);
    }
    for (size_t i = 0; i < collector_count; i++)
        collectors[i].fn(out, collectors[i].arg);
}

void metrics_reset(void)
{
    for (size_t i = 0; i < table_len; i++) {
        free(table[i].name);
        free(table[i].help);
        free(table[i].labels);
    }
    table_len = 0;
}
