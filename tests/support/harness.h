/* harness — real servers for integration tests: redis-server and the
 * registry simulator (and later the gateway itself) started on free loopback
 * ports in a private temporary directory, waited for until they answer, and
 * stopped again. Children die with the test process (PR_SET_PDEATHSIG), so a
 * crashed test leaves nothing running.
 *
 * Paths of our own binaries come from CMake as compile definitions:
 * CL_SIM_BIN, CL_GATEWAY_BIN, CL_SOURCE_DIR. */
#ifndef CARDLINE_TEST_HARNESS_H
#define CARDLINE_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

struct curl_slist;

typedef struct {
    pid_t pid;          /* child process, 0 when not running */
    int port;           /* the port it listens on (127.0.0.1) */
    char dir[256];      /* its working directory (data, logs) */
    char log[300];      /* its stdout+stderr, dir/NAME.log */
} th_proc;

/* Milliseconds on the monotonic clock: for bounded waits. */
long th_now_ms(void);

/* A fresh directory under $TMPDIR (or /tmp), removed by th_rmdir. */
void th_mkdtemp(char out[256], const char *prefix);
void th_rmdir(const char *dir);

/* Makes dir/name (it must not exist yet) and writes its path to `out`. */
void th_subdir(const char *dir, const char *name, char out[256]);

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int th_free_port(void);

/* Polls a TCP connect to 127.0.0.1:port until it succeeds or `timeout_ms`
 * passes (bounded waiting for readiness, not a sleep). */
bool th_wait_port(int port, int timeout_ms);

/* GETs http://127.0.0.1:port/path; returns the HTTP status (0 on failure)
 * and, if `body` is given, a malloc'd copy of the body (caller frees). */
long th_http_get(int port, const char *path, char **body);

/* Polls GET path on 127.0.0.1:port until it answers `status` (0: any)
 * with `needle` (NULL: anything) in the body, or `timeout_ms` passes. */
bool th_wait_http(int port, const char *path, long status, const char *needle, int timeout_ms);

/* Polls GET /healthz on 127.0.0.1:port until its body contains `needle`
 * (whatever the status) or `timeout_ms` passes. */
bool th_wait_healthz(int port, const char *needle, int timeout_ms);

/* Sends one request with an optional JSON body and extra header lines
 * ("Name: value", NULL-terminated array or NULL). Same return as above. */
long th_http(int port, const char *method, const char *path, const char *json_body,
             const char *const *headers, char **body);

/* The same request, keeping the response's header block as well. */
typedef struct {
    long status;        /* HTTP status, 0 when no answer came */
    char *body;         /* body as received, never NULL */
    char *headers;      /* header block ("Name: value\r\n"...), never NULL */
} th_response;
th_response th_request(int port, const char *method, const char *path, const char *json_body,
                       const char *const *headers);
void th_response_free(th_response *r);

/* Files and commands ------------------------------------------------------*/

/* Writes `text` to `path` (created or truncated); aborts when it cannot. */
void th_write_file(const char *path, const char *text);
/* The same with printf formatting. */
void th_write_filef(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes `text` to dir/name. */
void th_write_file_in(const char *dir, const char *name, const char *text);

/* The whole file, malloc'd, or NULL when it cannot be read; `len` (may
 * be NULL) gets its size. */
char *th_read_file(const char *path, size_t *len);

/* True when `number` stands in hay[0..len) as a whole run of digits: a
 * PIN typed as input or stored as a value, not six digits inside a
 * timestamp, a stream id or a longer number. */
bool th_has_number(const char *hay, size_t len, const char *number);

/* The whole file as text, "" when it cannot be read (a log not written
 * yet); malloc'd, never NULL. */
char *th_read_text(const char *path);

/* Occurrences of `needle` in `text`, not overlapping. */
int th_count(const char *text, const char *needle);

/* Occurrences of `needle` in p's log so far (0 while there is no log). */
int th_log_count(const th_proc *p, const char *needle);
/* Polls p's log until `needle` occurs more than `seen` times or
 * `timeout_ms` passes. */
bool th_log_wait(const th_proc *p, const char *needle, int seen, int timeout_ms);

/* Runs `cmd` through the shell (its own redirections decide what reaches
 * stdout); up to `cap` - 1 bytes of stdout in `out`, NUL-terminated.
 * Returns the exit code, or -1 when it did not exit. */
int th_run(const char *cmd, char *out, size_t cap);

/* Polls `cond(arg)` with th_poll_pause between tries until it holds or
 * `timeout_ms` passes; returns the last answer. */
bool th_poll_until(bool (*cond)(const void *arg), const void *arg, int timeout_ms);

/* The pause between two polls of a bounded wait (20 ms): for state that
 * only a poll can see (another process's files, logs, HTTP answers). */
void th_poll_pause(void);

/* Peer credentials -------------------------------------------------------*/

/* What the tests' gateways are configured with: the aggregator's signing
 * secret ([ussd] secret) and Kannel's get-url key ([sms] secret). */
#define TH_USSD_SECRET "the tests' aggregator secret"
#define TH_SMS_KEY "the-tests-kannel-key"
/* Lines for a cardline.conf's [ussd] and [sms] sections. */
#define TH_USSD_SECRET_LINE "secret = " TH_USSD_SECRET "\n"
#define TH_SMS_KEY_LINE "secret = " TH_SMS_KEY "\n"

/* Appends the X-Cardline-Timestamp and X-Cardline-Signature lines that
 * sign `body` (a /ussd form) with TH_USSD_SECRET now; returns the list. */
struct curl_slist *th_ussd_sign(struct curl_slist *headers, const char *body);

/* redis-server ------------------------------------------------------------*/

/* Starts redis-server on a free port with data under `dir` (AOF on when
 * `aof`), or on `p->port` if it is non-zero (a restart on the same port).
 * Waits until it answers PING. */
bool th_redis_start(th_proc *p, const char *dir, bool aof);
/* The same with `extra` redis-server arguments (NULL-terminated, at most
 * 8), e.g. {"--requirepass", "x", NULL}. */
bool th_redis_start_with(th_proc *p, const char *dir, bool aof, const char *const *extra);
/* A replica (AOF on) of the redis-server on 127.0.0.1:master_port. */
bool th_redis_start_replica(th_proc *p, const char *dir, int master_port);
/* A Redis Sentinel on a free port (or p->port) monitoring master `name`
 * at 127.0.0.1:master_port with quorum 2 and the given
 * down-after-milliseconds and failover-timeout; its config (which
 * Sentinel rewrites) is dir/sentinel.conf. Waits until it answers PING. */
bool th_sentinel_start(th_proc *p, const char *dir, const char *name, int master_port, int down_after_ms,
                       int failover_timeout_ms);
/* The INFO `section` of the server on 127.0.0.1:port holds `needle`
 * ("role:master", "master_link_status:up"). */
bool th_redis_info_has(int port, const char *section, const char *needle);
/* Every one of the `n` Sentinels knows master `name`'s replica and the
 * other n - 1 Sentinels (what a vote on a failover needs). */
bool th_sentinels_settled(const th_proc *sentinels, int n, const char *name);
/* The port of the master the Sentinel names for `name`, 0 if none. */
int th_sentinel_master_port(const th_proc *sentinel, const char *name);
/* Sends a command and returns its reply as text (integer replies as digits),
 * malloc'd, or NULL on error. Arguments as for redisCommandArgv. */
char *th_redis_cmd(const th_proc *p, int argc, const char **argv);

/* Every key of the database and every value, member and field of each
 * (strings, hashes, lists, sets, sorted sets, streams), one a line:
 * malloc'd, or NULL on error or a key of another type (whose contents a
 * search could not see). For searches that something is nowhere. */
char *th_redis_dump(const th_proc *p);

/* The files of the AOF directory of a redis-server started with AOF on
 * (manifest, base and increments: the whole write history), joined,
 * malloc'd; `len` gets the size. NULL when there is no such directory or
 * it holds no byte. */
char *th_redis_aof(const th_proc *p, size_t *len);

/* registry-sim --------------------------------------------------------------*/

/* Starts the simulator on a free port with a fresh database in `dir`,
 * seeded from `seed` (NULL = the demo seed), control endpoints on, and
 * `extra_args` (NULL-terminated, may be NULL). Waits for /v1/health. */
bool th_sim_start(th_proc *p, const char *dir, const char *seed,
                  const char *const *extra_args);

/* Resident memory of process `pid` (0: this one) in KiB, -1 when it
 * cannot be read: for bounds on what repeated work may cost. */
long th_rss_kib(pid_t pid);

/* GETs `path` from the simulator: its JSON body, or NULL unless it
 * answered 200 with JSON (json_decref it). */
json_t *th_sim_json(const th_proc *sim, const char *path);

/* A figure of the simulator's /_sim/stats: "requests", "replays" or
 * "applied.WHAT" (writes of WHAT it applied). Fails the test when the
 * simulator does not answer or has no such figure. */
long long th_sim_stat(const th_proc *sim, const char *name);
/* The same for "applied.`what`". */
long long th_sim_applied(const th_proc *sim, const char *what);

/* Any child ---------------------------------------------------------------*/

/* Starts `argv` with output to p->log in p->dir; does not wait for it. */
bool th_spawn(th_proc *p, const char *name, const char *const *argv);
/* SIGTERM, then SIGKILL after `grace_ms`; reaps. Returns the exit status
 * as from waitpid (or -1). Safe on a stopped th_proc. */
int th_stop(th_proc *p, int grace_ms);
/* SIGKILL and reap. */
void th_kill(th_proc *p);

#endif
