/* metrics — process-wide counters and gauges, rendered in the Prometheus
 * text format by the /metrics endpoint. A series is registered once (name,
 * help, fixed label set) and updated through its handle, so the hot path is
 * one add. Main-thread only: the SIP thread reports through the main loop. */
#ifndef CARDLINE_METRICS_H
#define CARDLINE_METRICS_H

#include <stdint.h>

struct evbuffer;

typedef struct metrics_series metrics_series;

/* Registration (idempotent: the same name and labels give the same handle) --*/

/* `labels` is NULL or Prometheus label text without braces, e.g.
 * `op="load",result="ok"`. Series sharing a name must share `help`.
 * Returns NULL only when the fixed table (METRICS_MAX_SERIES) is full. */
#define METRICS_MAX_SERIES 512
metrics_series *metrics_counter(const char *name, const char *help, const char *labels);
metrics_series *metrics_gauge(const char *name, const char *help, const char *labels);

/* Updates (a NULL handle is ignored) ----------------------------------------*/

void metrics_inc(metrics_series *s);
void metrics_add(metrics_series *s, double v);
void metrics_set(metrics_series *s, double v);
double metrics_value(const metrics_series *s);

/* Reading a series by name, for reports that sum up what other modules
 * count (the agent console's overview): the value, or `dflt` when no such
 * series is registered. */
double metrics_lookup(const char *name, const char *labels, double dflt);

/* Families with labels from loaded data (the funnel's flows and nodes):
 * their owner renders them, complete with # HELP and # TYPE, after the
 * table. At most METRICS_MAX_COLLECTORS; -1 when full. */
#define METRICS_MAX_COLLECTORS 4
typedef void metrics_collect_fn(struct evbuffer *out, void *arg);
int metrics_collector_add(metrics_collect_fn *fn, void *arg);
void metrics_collector_remove(metrics_collect_fn *fn, void *arg);

/* Output --------------------------------------------------------------------*/

/* Appends every series, grouped by name with # HELP and # TYPE lines,
 * then what each collector renders. */
void metrics_render(struct evbuffer *out);

/* Forgets every series (tests, and the end of main). */
void metrics_reset(void);

#endif
