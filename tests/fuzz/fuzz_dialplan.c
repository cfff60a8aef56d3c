/* fuzz_dialplan — the dialplan loader and checker (gateway/dialplan): a
 * directory holding a fixed, valid base file (the settings, a flow and the
 * prompt catalogue the unit tests build on) and the input as a second YAML
 * file, loaded with the daemon's handler table. Any input must end in a
 * loaded set or a list of errors, never a crash or a leak. */
#include "dialplan.h"
#include "handlers.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char base_yaml[] =
    "settings:\n"
    "  languages: [zh, en]\n"
    "  keys: { \"0\": base.bye }\n"
    "routes:\n"
    "  - { channel: voice, match: '^1$', flow: base }\n"
    "flows:\n"
    "  base:\n"
    "    nodes:\n"
    "      hello: { menu: hi, options: { \"1\": bye } }\n"
    "      bye: { end: bye }\n"
    "prompts:\n"
    "  zh: { restarted: r, unavailable: u, hi: h, bye: b }\n"
    "  en: { restarted: r, unavailable: u, hi: h, bye: b }\n";

static char dir[64];
static char case_path[96];

static void write_file(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
}

/* The scratch directory lives as long as the process; libFuzzer's exit
 * paths skip destructors, so it is removed at normal exit only. */
static void remove_dir(void)
{
    char base_path[96];
    snprintf(base_path, sizeof base_path, "%s/00-base.yaml", dir);
    unlink(base_path);
    unlink(case_path);
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (dir[0] == '\0') {
        const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(dir, sizeof dir, "%.40s/cl-fuzz-dp-XXXXXX", tmp);
        if (mkdtemp(dir) == NULL)
            abort();
        char base_path[96];
        snprintf(base_path, sizeof base_path, "%s/00-base.yaml", dir);
        write_file(base_path, (const uint8_t *)base_yaml, sizeof base_yaml - 1);
        snprintf(case_path, sizeof case_path, "%s/case.yaml", dir);
        atexit(remove_dir);
    }
    write_file(case_path, data, size);

    dp_errors errs;
    dialplan *dp = dialplan_load(dir, handlers_find, &errs);
    /* A set is returned exactly when nothing was wrong with it. */
    if ((dp != NULL) != (errs.count == 0))
        abort();
    if (dp)
        dialplan_unref(dp);
    dp_errors_free(&errs);
    return 0;
}
