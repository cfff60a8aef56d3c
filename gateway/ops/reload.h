/* reload — what SIGHUP does: a short list of hooks, each applying the part
 * of a freshly loaded, already validated configuration that it can change
 * live (main registers the log level and the dialplans). A hook that cannot
 * apply its part refuses and keeps what it had; the others still run.
 *
 * reload does not read files or decide which settings need a restart: main
 * loads the file and reports those. Main-thread only. */
#ifndef CARDLINE_RELOAD_H
#define CARDLINE_RELOAD_H

#include "settings.h"

/* Hooks at most; reload_register refuses more. */
#define RELOAD_MAX_HOOKS 16

/* Returns 0 when applied, -1 when refused (after logging why). */
typedef int reload_fn(const conf *next, void *arg);

/* Registration ----------------------------------------------------------------*/

/* `name` names the hook in logs (kept as a pointer: use a literal).
 * Returns -1 when the list is full. */
int reload_register(const char *name, reload_fn *fn, void *arg);

/* Forgets every hook (end of main, tests). */
void reload_clear(void);

/* Running ---------------------------------------------------------------------*/

/* Runs every hook in registration order with `next`; returns the number of
 * hooks that refused. */
int reload_run(const conf *next);

#endif
