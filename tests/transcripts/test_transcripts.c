/* Golden transcripts: each tests/transcripts/NAME.transcript is one cmocka test that
 * runs `cardline-sim --transcript FILE` against a real redis-server and a
 * registry simulator of its own (PIN attempts and loss reports change the
 * simulator's data, so no transcript sees another's writes), with the
 * shipped dialplans/. A transcript that differs fails with cardline-sim's
 * diff in the output.
 *
 *   test_transcripts [SUBSTRING]   runs only the files whose name contains it */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "world.h"

/* The simulated calendar is fixed so dates in replies never drift. */
#define EXT ".transcript"
#define EXT_LEN (sizeof EXT - 1)
#define SIM_TODAY "2026-11-22"
#define OUTPUT_MAX (64 * 1024)

typedef struct {
    char path[512];       /* the transcript file */
    tw_world tw;          /* Redis, a fresh simulator and cardline-sim's config (no daemon) */
} world;

static void write_conf(const world *w)
{
    th_write_filef(w->tw.conf,
                   "[log]\nlevel = warn\n"
                   "[redis]\nport = %d\n"
                   "[registry]\nurl = http://127.0.0.1:%d\nread_retries = 0\n"
                   "[dialplans]\ndir = %s/dialplans\n"
                   "[workflows]\nloss_confirm_wait_ms = 10000\ndigest_secret = transcripts-only-digest-secret\n",
                   w->tw.redis.port, w->tw.sim.port, CL_SOURCE_DIR);
}

static int stop_world(void **state);

/* A transcript with "registry: down" in its header runs with no registry. */
static bool registry_down(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[256];
    bool down = false;
    while (f && !down && fgets(line, sizeof line, f) && strncmp(line, "---", 3) != 0)
        down = strcmp(line, "registry: down\n") == 0;
    if (f)
        fclose(f);
    return down;
}

static int start_world(void **state)
{
    world *w = calloc(1, sizeof *w);
    snprintf(w->path, sizeof w->path, "%s", (const char *)*state);
    tw_init(&w->tw, "cl-transcript");
    static const char *const sim_args[] = {"--today", SIM_TODAY, NULL};
    *state = w;
    if (!tw_start_servers(&w->tw, false, NULL, sim_args)) {
        stop_world(state);
        return -1;
    }
    write_conf(w);
    if (registry_down(w->path))
        th_kill(&w->tw.sim); /* its port stays in the config: connections are refused */
    return 0;
}

static int stop_world(void **state)
{
    world *w = *state;
    tw_stop(&w->tw, 0);
    free(w);
    return 0;
}

/* Runs cardline-sim on the transcript; its output goes to `out`. */
static int run_sim(const world *w, char *out, size_t cap)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "%s --config '%s' --transcript '%s' 2>&1 </dev/null",
             CL_CARDLINE_SIM_BIN, w->tw.conf, w->path);
    return th_run(cmd, out, cap);
}

static void test_transcript(void **state)
{
    world *w = *state;
    char *out = malloc(OUTPUT_MAX);
    int rc = run_sim(w, out, OUTPUT_MAX);
    if (rc != 0)
        print_error("%s", out);
    bool ok = rc == 0 && strstr(out, ": ok (") != NULL;
    free(out);
    assert_true(ok);
}

/* Discovery -------------------------------------------------------------------------*/

static int is_transcript(const struct dirent *e)
{
    size_t len = strlen(e->d_name);
    return e->d_name[0] != '.' && len > EXT_LEN && strcmp(e->d_name + len - EXT_LEN, EXT) == 0;
}

int main(int argc, char **argv)
{
    struct dirent **names;
    int n = scandir(CL_TRANSCRIPT_DIR, &names, is_transcript, alphasort);
    if (n <= 0) {
        fprintf(stderr, "no transcripts in %s\n", CL_TRANSCRIPT_DIR);
        return 1;
    }
    struct CMUnitTest *tests = calloc((size_t)n, sizeof *tests);
    char (*paths)[512] = calloc((size_t)n, sizeof *paths);
    size_t count = 0;
    for (int i = 0; i < n; i++) {
        if (argc < 2 || strstr(names[i]->d_name, argv[1]) != NULL) {
            snprintf(paths[count], sizeof paths[count], "%s/%s", CL_TRANSCRIPT_DIR, names[i]->d_name);
            tests[count] = (struct CMUnitTest){
                .name = strrchr(paths[count], '/') + 1,
                .test_func = test_transcript,
                .setup_func = start_world,
                .teardown_func = stop_world,
                .initial_state = paths[count],
            };
            count++;
        }
        free(names[i]);
    }
    free(names);
    int failed = count > 0 ? _cmocka_run_group_tests("transcripts", tests, count, NULL, NULL) : 1;
    free(tests);
    free(paths);
    return failed;
}
