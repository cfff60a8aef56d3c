/* voice_world — what the sipp end-to-end suites (test_voice_e2e,
 * test_resume_e2e) run in: a real redis-server, the registry simulator on
 * its demo seed and the cardline daemon with voice on, on free loopback
 * ports in a temporary directory; sipp runs against it one at a time; and
 * the readers that judge what a run left behind (the session in Redis, the
 * gateway's /metrics and log). Prompts have no audio (an empty prompts_dir),
 * so a flow runs as fast as its keys arrive. Every wait is bounded.
 *
 * The helpers assert with cmocka, so they are called from a test (or its
 * setup). CL_SIPP_DIR, the folder of the sipp scenarios, comes from CMake. */
#ifndef CARDLINE_TEST_VOICE_WORLD_H
#define CARDLINE_TEST_VOICE_WORLD_H

#include <stdbool.h>
#include <stdio.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "world.h"

#define VW_WAIT_MS 20000         /* bound of every wait on the gateway */
#define VW_SIPP_WAIT_MS 45000    /* bound of a sipp run (its own -timeout is 30 s) */
#define VW_RTP_PORTS 40          /* [voice] rtp_port_max - rtp_port_min + 1 */
#define VW_HOTLINE "12333"

/* 王伟 of the demo seed: card A52870316 (normal), service PIN 246810. */
#define VW_ID "110101199003074514"
#define VW_PIN "246810"

typedef struct vw_world vw_world;

/* What a suite sets its world up with. */
typedef struct {
    const char *name;            /* "voice": names the directory (cl-voice-e2e…) and the hop key secret */
    int max_calls;               /* [voice] max_calls */
    const char *const *event_kinds; /* event kinds vw_session_events keeps (NULL-terminated) */
    /* Appends the suite's own config sections to `conf`, or NULL. Called
     * once every port of the world is picked. */
    void (*more_conf)(vw_world *w, FILE *conf);
} vw_suite;

struct vw_world {
    const vw_suite *suite;       /* what the world was set up with */
    tw_world tw;                 /* the daemon (/healthz, /metrics), Redis, the simulator, the directory */
    int agents_port;             /* the Agent API, when the suite's more_conf opens it (else 0) */
    int sip_port;                /* [voice] listen */
    int sipp_port;               /* sipp's SIP port, also the agent URI's */
    int media_port;              /* sipp's media port (RTP from the gateway lands there) */
    int rtp_min;                 /* [voice] rtp_port_min */
    int runs;                    /* sipp runs so far (each gets a directory) */
    th_proc sipp;                /* the sipp run under way, if any (one at a time) */
};

/* One sipp run: where its files are and whose call it made. */
typedef struct {
    char dir[256];               /* its working directory: its files */
    char call_id[64];            /* Call-ID of its (first) call */
    char session[96];            /* that call's session: "voice:" + Call-ID */
    char errors[300];            /* -error_file */
    char log[300];               /* -log_file: what the scenario's <log> actions wrote */
} vw_sipp_run;

/* The world ------------------------------------------------------------------------------*/

/* cmocka setup and teardown: a world for `suite` in *state, everything
 * started and the gateway healthy (-1 otherwise); then everything killed
 * and the directory removed (kept and named when CL_KEEP_TMP is set). */
int vw_setup(void **state, const vw_suite *suite);
int vw_teardown(void **state);

/* SIGTERM to the gateway; asserts a clean exit, which also means
 * LeakSanitizer found nothing, and shows the log's end otherwise. */
void vw_stop_gateway(vw_world *w);

/* sipp -------------------------------------------------------------------------------------*/

/* Starts sipp as a UAC calling `service` with scenario `scenario` (a file of
 * CL_SIPP_DIR); `extra` (NULL-terminated, may be NULL) follows the common
 * options, so "-m 3" there overrides the default one call. The Call-ID of
 * call N is "<tag>-N@cardline-e2e". */
void vw_sipp_start(vw_world *w, vw_sipp_run *r, const char *tag, const char *scenario, const char *service,
                   const char *const *extra);
/* Waits for sipp to exit (killing it past VW_SIPP_WAIT_MS) and returns its
 * exit code: 0 when every call went as the scenario says. */
int vw_sipp_wait(vw_world *w, const vw_sipp_run *r);
/* Both: a run from start to exit code. */
int vw_sipp(vw_world *w, vw_sipp_run *r, const char *tag, const char *scenario, const char *service,
            const char *const *extra);

/* Occurrences of `needle` in the scenario's log. */
int vw_sipp_log_count(const vw_sipp_run *r, const char *needle);
/* Asserts `want` stands exactly once in the scenario's log (shown otherwise). */
void vw_assert_sipp_logged_once(const vw_sipp_run *r, const char *want);

/* Skips the test unless sipp can play RFC 4733 from pcaps, which needs a
 * raw socket: root or CAP_NET_RAW. */
void vw_skip_without_pcap(void);

/* The session in Redis ----------------------------------------------------------------------*/

/* A new connection to the world's Redis (asserted); redisFree it. */
redisContext *vw_redis_connect(const vw_world *w);
/* The document of session `id`, or NULL when there is none. */
json_t *vw_session_doc(const vw_world *w, const char *id);
/* doc[a] or doc[a][b] (b not NULL) as a string, NULL when absent. */
const char *vw_doc_str(json_t *doc, const char *a, const char *b);
/* Polls until session `id` is in `state` and, when `result` is not NULL,
 * its assist_result var is `result`. */
void vw_wait_session(const vw_world *w, const char *id, const char *state, const char *result);

/* The session's events of the suite's event kinds as "KIND NODE [INPUT]"
 * (timestamps dropped), joined by " | "; malloc'd. */
char *vw_session_events(const vw_world *w, const char *id);
/* Asserts those events are exactly `want` (both shown otherwise). */
void vw_assert_events(const vw_world *w, const char *id, const char *want);

/* `pin` in neither the session's document nor its events nor the
 * gateway's log. */
void vw_assert_pin_kept_secret(const vw_world *w, const char *id, const char *pin);

/* The gateway's figures and log ------------------------------------------------------------*/

/* The value of metric `name` on /metrics (-1 when absent). */
double vw_metric(const vw_world *w, const char *name);
/* Polls until cardline_voice_calls is `calls`. */
void vw_wait_calls(const vw_world *w, int calls);

/* Text ---------------------------------------------------------------------------------------*/

/* The Refer-To URI the gateway sends for `target` and `session`: the
 * session embedded as an X-Cardline-Session header, '@' escaped (the
 * only character of the suites' Call-IDs a header value may not hold). */
void vw_refer_to(char *out, size_t size, const char *target, const char *session);

#endif
