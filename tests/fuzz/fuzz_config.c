/* fuzz_config — the configuration file parser (gateway/core/config.c):
 * settings_load on arbitrary bytes must end in a loaded conf or a list of
 * errors, never a crash or a leak. settings_load reads a path, so each input
 * is written to one in-memory file (memfd) opened by its /proc name. */
#include "settings.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static int conf_fd = -1;
static char conf_path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (conf_fd < 0) {
        conf_fd = memfd_create("fuzz_config", 0);
        if (conf_fd < 0)
            abort();
        snprintf(conf_path, sizeof conf_path, "/proc/self/fd/%d", conf_fd);
    }
    if (ftruncate(conf_fd, 0) != 0 || pwrite(conf_fd, data, size, 0) != (ssize_t)size)
        abort();

    conf c;
    conf_errors errs;
    int rc = settings_load(conf_path, &c, &errs);
    /* An accepted file is exactly one without errors. */
    if ((rc == 0) != (errs.count == 0))
        abort();
    settings_free(&c);
    conf_errors_free(&errs);
    return 0;
}
