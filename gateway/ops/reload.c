/* reload — the SIGHUP hook list (see reload.h). Owns a fixed array of hooks
 * and runs them in order; it keeps no configuration itself. */
#include "reload.h"

#include <stddef.h>

#include "log.h"

typedef struct {
    const char *name;  /* hook name for logs */
    reload_fn *fn;     /* applies its part of the new configuration */
    void *arg;         /* its argument */
} hook;

static hook hooks[RELOAD_MAX_HOOKS];
static size_t hook_count;

int reload_register(const char *name, reload_fn *fn, void *arg)
{
    if (hook_count == RELOAD_MAX_HOOKS || fn == NULL)
        return -1;
    hooks[hook_count++] = (hook){name, fn, arg};
    return 0;
}

void reload_clear(void)
{
    hook_count = 0;
}

int reload_run(const conf *next)
{
    int refused = 0;
    for (size_t i = 0; i < hook_count; i++) {
        if (hooks[i].fn(next, hooks[i].arg) == 0) {
            log_info("reload.applied", "hook=%s", hooks[i].name);
        } else {
            log_warn("reload.refused", "hook=%s", hooks[i].name);
            refused++;
        }
    }
    return refused;
}
