/* test_loss_durability — a loss report a caller heard "accepted" for is
 * never lost and never applied twice. The real cardline daemon runs against
 * a real redis-server with AOF (appendfsync always) and the real registry
 * simulator on its own SQLite file (a restarted simulator keeps its data
 * and its count of applied writes); callers dial in over POST /ussd. Eight
 * failures:
 *   - the gateway is SIGKILLed while the registry refuses the report, and a
 *     new gateway on the same Redis delivers it;
 *   - the registry is stopped while five identified callers confirm;
 *   - Redis is restarted while three accepted reports wait for the registry;
 *   - Redis is SIGKILLed after a report reached the outbox and before its
 *     caller was answered: the caller still hears "accepted" with the
 *     reference the registry then gets, and a retry hears the same;
 *   - the registry applies a report whose answer the gateway gave up on;
 *   - the wait for the registry is set longer than the engine's deadline
 *     for a handler: the caller still hears "accepted";
 *   - Redis stalls as a report is added, past the store's deadline, and
 *     applies the add when it resumes: the caller hears "accepted";
 *   - with [redis] replicas = 1, the replica is stopped as a report is
 *     added while the registry is down: the caller hears "received, check
 *     the card's status" (unconfirmed), and "accepted" once it is back.
 * Each ends with every card in temporary loss carrying the reference its
 * caller heard, the registry's count of applied loss reports equal to the
 * reports confirmed, no loss_report entry left in the outbox (none dead),
 * one SMS confirmation queued per report, no PIN in Redis (live keys and
 * the AOF files, the whole write history) and neither PIN nor full ID in
 * the gateway's log. The gateway has no Kannel, so the SMS entries stay in
 * the outbox, which lets the test count them. Every wait is a bounded poll;
 * how long delivery took is printed, never asserted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <ctype.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <pthread.h>
#include <sys/wait.h>
#include <time.h>

#include "domain.h"
#include "world.h"

#define WAIT_MS 20000            /* bound of every wait */
#define PEOPLE 5                 /* callers with a normal card in the seed */
#define CONFIRM_WAIT_MS 300      /* [workflows] loss_confirm_wait_ms */
#define HELD_CONFIRM_WAIT_MS 2000 /* the same, where the test acts during the wait
                                   * (below [session] handler_timeout_ms) */
#define HANDLER_TIMEOUT_MS 3000  /* [session] handler_timeout_ms, its default */
#define REFERENCE_LEN 14         /* "GS" + 12, gateway/loss/loss.h */
#define ACCEPTED "挂失申请已受理"
#define UNCONFIRMED "挂失申请已收到" /* loss_unconfirmed */

typedef struct {
    char id[19];                 /* citizen ID (checksum computed) */
    char pin[7];                 /* service PIN, not the initial one */
    char card[10];               /* normal card */
    char mobile[20];             /* registered mobile: the SMS confirmation goes there */
    char phone[20];              /* the number the USSD session comes from */
    char session[32];            /* the aggregator's sessionId */
    char text[128];              /* the USSD history so far */
    char reference[REFERENCE_LEN + 1]; /* what the caller heard */
} person;

typedef struct {
    tw_world tw;                 /* the daemon (log in dir/gw), Redis (AOF on) and the simulator */
    char seed[300];              /* the registry's seed */
    int confirm_wait_ms;         /* [workflows] loss_confirm_wait_ms */
    int handler_timeout_ms;      /* [session] handler_timeout_ms */
    int poll_interval_ms;        /* [outbox] poll_interval_ms */
    person people[PEOPLE];
    int reporting;               /* people[0..reporting) report their card lost */
    th_proc replica;             /* a replica of tw.redis with [redis] replicas = 1, or not running */
} world;

static const char *const PINS[PEOPLE] = {"246810", "582046", "907315", "731864", "620418"};

/* The people and their seed ------------------------------------------------------*/

/* Five people born 1980-01-01..05 in Beijing Dongcheng (110101), each with
 * one normal card T2000000N and a PIN that is not the initial one. */
static void make_people(world *w)
{
    for (int i = 0; i < PEOPLE; i++) {
        person *p = &w->people[i];
        char id17[18];
        snprintf(id17, sizeof id17, "1101011980010%d23%d", i + 1, i);
        snprintf(p->id, sizeof p->id, "%s%c", id17, domain_id_check_char(id17));
        snprintf(p->pin, sizeof p->pin, "%s", PINS[i]);
        snprintf(p->card, sizeof p->card, "T2000000%d", i + 1);
        snprintf(p->mobile, sizeof p->mobile, "+86138100000%02d", i + 1);
        snprintf(p->phone, sizeof p->phone, "+86139200000%02d", i + 1);
        snprintf(p->session, sizeof p->session, "loss-durability-%d", i + 1);
    }
}

static void write_seed(world *w)
{
    tw_seed_person seed[PEOPLE];
    for (int i = 0; i < PEOPLE; i++) {
        const person *p = &w->people[i];
        seed[i] = (tw_seed_person){p->id, p->card, p->pin, p->mobile};
    }
    assert_true(tw_write_seed(&w->tw, seed, PEOPLE, w->seed));
}

/* The gateway ----------------------------------------------------------------------*/

/* Fast reconnects, retries and reclaims so the failures heal in well under
 * a second; no [kannel] username, so SMS entries wait in the outbox. */
static void write_conf(world *w)
{
    th_write_filef(w->tw.conf,
             "[log]\nlevel = info\nflush_ms = 0\n" /* lines are counted right after each act */
             "[http]\nlisten = 127.0.0.1:%d\n"
             "[redis]\nport = %d\nreconnect_min_ms = 20\nreconnect_max_ms = 200\nping_interval_ms = 100\n%s"
             "[registry]\nurl = http://127.0.0.1:%d\ntimeout_ms = 500\nconnect_timeout_ms = 200\n"
             "read_retries = 0\nhealth_interval_ms = 100\n"
             "[dialplans]\ndir = %s/dialplans\n"
             "[ussd]\nanswer_deadline_ms = 10000\nhop_key_secret = loss durability test secret\n" TH_USSD_SECRET_LINE
             "[outbox]\nconsumer = gw-loss\npoll_interval_ms = %d\nlease_ms = 1000\n"
             "backoff_min_ms = 50\nbackoff_max_ms = 500\n"
             "[session]\nhandler_timeout_ms = %d\n"
             "[workflows]\nloss_confirm_wait_ms = %d\n"
             "[gateway]\nshutdown_grace_ms = 3000\n",
             w->tw.http_port, w->tw.redis.port, w->replica.pid ? "replicas = 1\nreplica_wait_ms = 200\n" : "",
             w->tw.sim.port, CL_SOURCE_DIR, w->poll_interval_ms,
             w->handler_timeout_ms, w->confirm_wait_ms);
}

/* Starts the daemon and waits until it sees Redis and the registry: it
 * listens before its Redis connection is up, and answers "unavailable"
 * meanwhile. */
static long start_gateway(world *w)
{
    long started = th_now_ms();
    assert_true(tw_start_gateway(&w->tw, true, WAIT_MS));
    return started;
}

/* SIGTERM; a clean exit also means LeakSanitizer found nothing. */
static void stop_gateway(world *w)
{
    int status = th_stop(&w->tw.gw, WAIT_MS);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static int setup_world_replicated(void **state, int confirm_wait_ms, int handler_timeout_ms,
                                  int poll_interval_ms, bool replicated)
{
    world *w = calloc(1, sizeof *w);
    w->confirm_wait_ms = confirm_wait_ms;
    w->handler_timeout_ms = handler_timeout_ms;
    w->poll_interval_ms = poll_interval_ms;
    tw_init(&w->tw, "cl-loss");
    make_people(w);
    write_seed(w);
    if (!tw_start_servers(&w->tw, true, w->seed, NULL))
        return -1;
    /* Should Redis rewrite its AOF, the RDB base file keeps strings readable
     * for the PIN search. */
    const char *plain[] = {"CONFIG", "SET", "rdbcompression", "no"};
    free(th_redis_cmd(&w->tw.redis, 4, plain));
    if (replicated) {
        th_subdir(w->tw.dir, "replica", w->replica.dir);
        if (!th_redis_start_replica(&w->replica, w->replica.dir, w->tw.redis.port))
            return -1;
    }
    write_conf(w);
    start_gateway(w);
    *state = w;
    return 0;
}

static int setup_world(void **state, int confirm_wait_ms, int handler_timeout_ms, int poll_interval_ms)
{
    return setup_world_replicated(state, confirm_wait_ms, handler_timeout_ms, poll_interval_ms, false);
}

/* [redis] replicas = 1 with a replica of the test's Redis. */
static int setup_replicated(void **state)
{
    return setup_world_replicated(state, CONFIRM_WAIT_MS, HANDLER_TIMEOUT_MS, 20, true);
}

static int setup_waiting(void **state, int confirm_wait_ms, int handler_timeout_ms)
{
    return setup_world(state, confirm_wait_ms, handler_timeout_ms, 20);
}

static int setup(void **state)
{
    return setup_waiting(state, CONFIRM_WAIT_MS, HANDLER_TIMEOUT_MS);
}

/* A wait long enough for the test to act in after the report is queued. */
static int setup_held(void **state)
{
    return setup_waiting(state, HELD_CONFIRM_WAIT_MS, HANDLER_TIMEOUT_MS);
}

/* The held wait, with the outbox polled seldom: a poll is a write, and one
 * sent into a CLIENT PAUSE WRITE would hold up every command behind it on
 * the store's one connection, the session's load included. */
static int setup_held_seldom_polled(void **state)
{
    return setup_world(state, HELD_CONFIRM_WAIT_MS, HANDLER_TIMEOUT_MS, 2000);
}

/* A wait configured past the engine's deadline for the handler. */
static int setup_overlong(void **state)
{
    return setup_waiting(state, 3000, 1000);
}

static int teardown(void **state)
{
    world *w = *state;
    if (w->replica.pid > 0)
        kill(w->replica.pid, SIGCONT);
    th_stop(&w->replica, 2000);
    tw_stop(&w->tw, 0);
    free(w);
    return 0;
}

/* USSD -------------------------------------------------------------------------------*/

/* POSTs the session's history to /ussd; the reply body, malloc'd. */
static char *post_ussd(const world *w, const person *p, long *status)
{
    char form[512];
    tw_ussd_form(form, sizeof form, p->session, p->phone, p->text);
    return tw_call(&w->tw, "/ussd", form, status, WAIT_MS);
}

/* One hop: `input` (NULL on the dial itself) joins the history; the reply
 * must be 200, begin with `head` and contain `needle`. Returns the body. */
static char *hop(const world *w, person *p, const char *input, const char *head, const char *needle)
{
    if (input) {
        size_t used = strlen(p->text);
        snprintf(p->text + used, sizeof p->text - used, "%s%s", used ? "*" : "", input);
    }
    long status;
    char *body = post_ussd(w, p, &status);
    if (status != 200 || strncmp(body, head, strlen(head)) != 0 || strstr(body, needle) == NULL)
        fail_msg("%s after \"%s\": status %ld, wanted %s…%s, got: %s", p->session, input ? input : "(dial)",
                 status, head, needle, body);
    return body;
}

/* Dials *123# and goes as far as the confirmation menu: 中文, 挂失, ID, PIN,
 * the card's last four. Needs the registry (identification, card status). */
static void dial_to_confirm(const world *w, person *p)
{
    p->text[0] = '\0';
    free(hop(w, p, NULL, "CON ", "1 中文"));
    free(hop(w, p, "1", "CON ", "2 挂失"));
    free(hop(w, p, "2", "CON ", "身份证号码"));
    free(hop(w, p, p->id, "CON ", "服务密码"));
    free(hop(w, p, p->pin, "CON ", "后4位"));
    free(hop(w, p, p->card + strlen(p->card) - 4, "CON ", "1 确认挂失"));
}

/* The reference a USSD reply tells, into `out`; fails the test if none. */
static void reference_in(const char *body, char out[REFERENCE_LEN + 1])
{
    if (strncmp(body, "CON ", 4) != 0 && strncmp(body, "END ", 4) != 0)
        fail_msg("not a USSD reply: %s", body);
    const char *at = strstr(body, "受理编号");
    if (at == NULL)
        fail_msg("no reference in: %s", body);
    at += strlen("受理编号");
    size_t len = strspn(at, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    if (len != REFERENCE_LEN || strncmp(at, "GS", 2) != 0)
        fail_msg("bad reference in: %s", body);
    memcpy(out, at, REFERENCE_LEN);
    out[REFERENCE_LEN] = '\0';
}

/* Confirms with "1"; the answer must contain `outcome` and a reference,
 * which is kept in p->reference. */
static void confirm(const world *w, person *p, const char *outcome)
{
    char *body = hop(w, p, "1", "", outcome);
    reference_in(body, p->reference);
    free(body);
}

/* A confirmation sent from a thread, so the test can act while the
 * gateway holds it. */
typedef struct {
    const world *w;
    const person *p;             /* its text already ends with the "1" */
    pthread_t thread;
    long status;                 /* the reply's HTTP status, 0 if none */
    char *body;                  /* the reply, malloc'd */
} pending_confirm;

static void *send_confirm(void *arg)
{
    pending_confirm *pc = arg;
    pc->body = post_ussd(pc->w, pc->p, &pc->status);
    return NULL;
}

static void confirm_start(pending_confirm *pc, const world *w, person *p)
{
    size_t used = strlen(p->text);
    snprintf(p->text + used, sizeof p->text - used, "*1");
    *pc = (pending_confirm){.w = w, .p = p};
    assert_int_equal(pthread_create(&pc->thread, NULL, send_confirm, pc), 0);
}

/* Waits for the reply (post_ussd's own deadline bounds it). */
static void confirm_end(pending_confirm *pc)
{
    assert_int_equal(pthread_join(pc->thread, NULL), 0);
}

/* The registry -------------------------------------------------------------------------*/

/* The card's status (-1 when the registry does not answer) and, if it has
 * an active loss report, that report's reference in `reference`. */
static int card_status(const world *w, const char *card, char reference[65])
{
    char path[64];
    snprintf(path, sizeof path, "/v1/cards/%s", card);
    json_t *j = th_sim_json(&w->tw.sim, path);
    int status = j ? (int)json_integer_value(json_object_get(j, "status")) : -1;
    const char *ref = json_string_value(json_object_get(json_object_get(j, "loss_report"), "reference"));
    snprintf(reference, 65, "%s", ref ? ref : "");
    json_decref(j);
    return status;
}

/* Writes of `what` the registry applied (kept in its database across
 * restarts; never replays, refusals or injected faults). */
static long long applied_count(const world *w, const char *what)
{
    return th_sim_applied(&w->tw.sim, what);
}

static long long sim_replays(const world *w)
{
    return th_sim_stat(&w->tw.sim, "replays");
}

/* Polls the simulator's log until more than `seen` lines hold `needle`. */
static bool sim_log_grows(const world *w, const char *needle, int seen)
{
    long deadline = th_now_ms() + WAIT_MS;
    for (;;) {
        char *text = th_read_file(w->tw.sim.log, NULL);
        int n = 0;
        for (const char *at = text; at && (at = strstr(at, needle)) != NULL; at += strlen(needle))
            n++;
        free(text);
        if (n > seen)
            return true;
        if (th_now_ms() > deadline)
            return false;
        th_poll_pause();
    }
}

static void set_fault(const world *w, const char *fault)
{
    assert_int_equal(th_http(w->tw.sim.port, "PUT", "/_sim/fault", fault, NULL, NULL), 200);
}

/* Returns when it was started (th_now_ms). */
static long restart_sim(world *w)
{
    long started = th_now_ms();
    assert_true(th_sim_start(&w->tw.sim, w->tw.sim.dir, w->seed, NULL)); /* same port, same database */
    return started;
}

/* Redis ----------------------------------------------------------------------------------*/

static redisContext *redis_connect(const world *w)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", w->tw.redis.port, tv);
    assert_true(c != NULL && c->err == 0);
    return c;
}

static const char *field_of(const redisReply *fields, const char *name)
{
    for (size_t i = 0; i + 1 < fields->elements; i += 2)
        if (strcmp(fields->element[i]->str, name) == 0)
            return fields->element[i + 1]->str;
    return NULL;
}

/* Entries of `kind` in `stream` whose payload's `ref_field` is `reference`
 * (any, when NULL). */
static int count_entries(const world *w, const char *stream, const char *kind, const char *ref_field,
                         const char *reference)
{
    redisContext *c = redis_connect(w);
    redisReply *r = redisCommand(c, "XRANGE %s - +", stream);
    assert_true(r != NULL && r->type == REDIS_REPLY_ARRAY);
    int n = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *fields = r->element[i]->element[1];
        const char *k = field_of(fields, "kind"), *payload = field_of(fields, "payload");
        if (k == NULL || strcmp(k, kind) != 0)
            continue;
        json_t *j = json_loads(payload ? payload : "", 0, NULL);
        const char *ref = json_string_value(json_object_get(j, ref_field));
        n += reference == NULL || (ref && strcmp(ref, reference) == 0);
        json_decref(j);
    }
    freeReplyObject(r);
    redisFree(c);
    return n;
}

static int loss_entries(const world *w)
{
    return count_entries(w, "cl:outbox", "loss_report", "reference", NULL);
}

static long long stream_length(const world *w, const char *stream)
{
    redisContext *c = redis_connect(w);
    redisReply *r = redisCommand(c, "XLEN %s", stream);
    assert_true(r != NULL && r->type == REDIS_REPLY_INTEGER);
    long long n = r->integer;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

static void restart_redis(world *w)
{
    th_stop(&w->tw.redis, WAIT_MS); /* SIGTERM */
    assert_true(th_redis_start(&w->tw.redis, w->tw.redis.dir, true)); /* same port, same AOF */
}

/* Waiting ----------------------------------------------------------------------------------*/

/* Every reporting card is in temporary loss and no loss_report entry is
 * left in the outbox. */
static bool all_delivered(const world *w)
{
    char ref[65];
    for (int i = 0; i < w->reporting; i++)
        if (card_status(w, w->people[i].card, ref) != 4)
            return false;
    return loss_entries(w) == 0;
}

/* Polls until everything is delivered and prints how long that took since
 * `start` (th_now_ms) when `since` happened. */
static void wait_delivered(const world *w, long start, const char *since)
{
    long deadline = th_now_ms() + WAIT_MS;
    while (!all_delivered(w)) {
        if (th_now_ms() > deadline)
            fail_msg("%d report(s) not delivered within %d ms of %s; outbox holds %d", w->reporting, WAIT_MS,
                     since, loss_entries(w));
        th_poll_pause();
    }
    long took = th_now_ms() - start;
    print_message("%d report(s) delivered %ld ms after %s\n", w->reporting, took, since);
}

/* Lines of the gateway's log holding both `a` and `b`. */
static int log_count(const world *w, const char *a, const char *b)
{
    char *text = th_read_file(w->tw.gw.log, NULL);
    int n = 0;
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char *copy = strndup(line, len);
        n += strstr(copy, a) && strstr(copy, b);
        free(copy);
        line = end ? end + 1 : line + len;
    }
    free(text);
    return n;
}

static bool log_has(const world *w, const char *a, const char *b)
{
    return log_count(w, a, b) > 0;
}

/* Polls the gateway's log until more than `seen` lines hold `a` and `b`. */
static bool log_grows(const world *w, const char *a, const char *b, int seen)
{
    long deadline = th_now_ms() + WAIT_MS;
    while (log_count(w, a, b) <= seen) {
        if (th_now_ms() > deadline)
            return false;
        th_poll_pause();
    }
    return true;
}

static bool log_shows(const world *w, const char *a, const char *b)
{
    return log_grows(w, a, b, 0);
}

/* Outcome and privacy ------------------------------------------------------------------*/

/* The end state every test shares: each reporting card in temporary loss
 * with its caller's reference, references distinct, exactly `reporting`
 * loss reports applied, nothing dead, one SMS queued per report. */
static void assert_exactly_once(const world *w)
{
    for (int i = 0; i < w->reporting; i++) {
        const person *p = &w->people[i];
        char ref[65];
        assert_int_equal(card_status(w, p->card, ref), 4);
        assert_string_equal(ref, p->reference);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(p->reference, w->people[j].reference);
        assert_int_equal(count_entries(w, "cl:outbox", "sms", "ref", p->reference), 1);
    }
    char ref[65];
    for (int i = w->reporting; i < PEOPLE; i++)
        assert_int_equal(card_status(w, w->people[i].card, ref), 1);
    assert_int_equal(applied_count(w, "loss_reports"), w->reporting);
    assert_int_equal(loss_entries(w), 0);
    assert_int_equal(stream_length(w, "cl:outbox:dead"), 0);
    print_message("registry replays answered (since its last start): %lld\n", sim_replays(w));
}

static void assert_no_pin_in(const world *w, const char *what, const char *s, size_t len)
{
    for (int i = 0; i < PEOPLE; i++)
        if (th_has_number(s, len, w->people[i].pin))
            fail_msg("PIN of %s found in %s", w->people[i].session, what);
}

/* Every string of a reply, recursively. */
static void assert_no_pin_in_reply(const world *w, const char *key, const redisReply *r)
{
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
        assert_no_pin_in(w, key, r->str, r->len);
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        assert_no_pin_in_reply(w, key, r->element[i]);
}

/* Reads `key` whole, by its type. */
static redisReply *read_key(redisContext *c, const char *key)
{
    redisReply *t = redisCommand(c, "TYPE %s", key);
    assert_non_null(t);
    redisReply *r = NULL;
    if (!strcmp(t->str, "string"))
        r = redisCommand(c, "GET %s", key);
    else if (!strcmp(t->str, "hash"))
        r = redisCommand(c, "HGETALL %s", key);
    else if (!strcmp(t->str, "list"))
        r = redisCommand(c, "LRANGE %s 0 -1", key);
    else if (!strcmp(t->str, "set"))
        r = redisCommand(c, "SMEMBERS %s", key);
    else if (!strcmp(t->str, "zset"))
        r = redisCommand(c, "ZRANGE %s 0 -1 WITHSCORES", key);
    else if (!strcmp(t->str, "stream"))
        r = redisCommand(c, "XRANGE %s - +", key);
    else if (strcmp(t->str, "none") != 0) /* gone meanwhile is fine */
        fail_msg("key %s of unexpected type %s", key, t->str);
    freeReplyObject(t);
    return r;
}

/* SCANs every key and reads it by type: no PIN in a name or a value. */
static void assert_no_pin_in_redis(const world *w)
{
    redisContext *c = redis_connect(w);
    char cursor[32] = "0";
    int keys = 0;
    do {
        redisReply *r = redisCommand(c, "SCAN %s COUNT 1000", cursor);
        assert_true(r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            const redisReply *k = r->element[1]->element[i];
            assert_no_pin_in(w, "a key name", k->str, k->len);
            redisReply *v = read_key(c, k->str);
            if (v)
                assert_no_pin_in_reply(w, k->str, v);
            freeReplyObject(v);
            keys++;
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    redisFree(c);
    assert_true(keys > 0); /* the search saw something */
}

/* The AOF holds every write Redis ever took, including keys deleted since:
 * no PIN in it. It must hold the first reference (so the files were read). */
static void assert_no_pin_in_aof(const world *w)
{
    size_t len;
    char *text = th_redis_aof(&w->tw.redis, &len);
    assert_non_null(text);
    assert_no_pin_in(w, "the AOF", text, len);
    assert_non_null(memmem(text, len, w->people[0].reference, REFERENCE_LEN));
    free(text);
}

/* The gateway's log (every run of it): no PIN, no full ID; and it is the
 * log of these reports. */
static void assert_log_clean(const world *w)
{
    size_t len;
    char *text = th_read_file(w->tw.gw.log, &len);
    assert_non_null(text);
    assert_no_pin_in(w, "the gateway log", text, len);
    for (int i = 0; i < PEOPLE; i++) {
        char lower[19];
        snprintf(lower, sizeof lower, "%s", w->people[i].id);
        lower[17] = (char)tolower((unsigned char)lower[17]);
        if (strstr(text, w->people[i].id) || strstr(text, lower))
            fail_msg("full ID of %s found in the gateway log", w->people[i].session);
    }
    free(text);
    assert_true(log_has(w, "loss.queued", w->people[0].reference));
}

static void assert_private(const world *w)
{
    assert_no_pin_in_redis(w);
    assert_no_pin_in_aof(w);
    assert_log_clean(w);
}

/* Tests ----------------------------------------------------------------------------------*/

/* The registry refuses the report (503) so the caller hears "accepted";
 * the gateway dies (SIGKILL) with the report in the outbox; a new gateway
 * on the same Redis delivers it once the registry takes it. */
static void test_gateway_crash(void **state)
{
    world *w = *state;
    person *p = &w->people[0];
    w->reporting = 1;
    dial_to_confirm(w, p);
    set_fault(w, "{\"status\": 503, \"path_prefix\": \"/v1/cards/\"}");
    confirm(w, p, ACCEPTED);
    /* The registry really was asked, and said no, before the crash. */
    assert_true(log_shows(w, "loss.delivery", "http=503"));
    assert_true(log_has(w, "loss.delivery", p->reference));
    assert_int_equal(loss_entries(w), 1);
    th_kill(&w->tw.gw);

    assert_int_equal(th_http(w->tw.sim.port, "DELETE", "/_sim/fault", NULL, NULL, NULL), 200);
    char ref[65];
    assert_int_equal(card_status(w, p->card, ref), 1); /* nothing reached the registry */
    assert_int_equal(applied_count(w, "loss_reports"), 0);
    assert_int_equal(loss_entries(w), 1);               /* the report outlived its gateway */

    long started = start_gateway(w);
    wait_delivered(w, started, "the new gateway was started");
    assert_exactly_once(w);
    stop_gateway(w);
    assert_private(w);
}

/* Five callers identified with the registry up; it stops; all five confirm
 * and hear "accepted"; it comes back on the same port and database. */
static void test_registry_outage(void **state)
{
    world *w = *state;
    w->reporting = PEOPLE;
    for (int i = 0; i < PEOPLE; i++)
        dial_to_confirm(w, &w->people[i]);
    th_stop(&w->tw.sim, WAIT_MS);
    for (int i = 0; i < PEOPLE; i++)
        confirm(w, &w->people[i], ACCEPTED);
    assert_int_equal(loss_entries(w), PEOPLE);
    assert_true(log_shows(w, "loss.delivery", "registry=unavailable"));

    long started = restart_sim(w);
    assert_int_equal(applied_count(w, "pin_verifications"), PEOPLE); /* the same database */
    wait_delivered(w, started, "the registry was started again");
    assert_exactly_once(w);
    stop_gateway(w);
    assert_private(w);
}

/* [redis] replicas = 1 and the registry down: a report the replica does
 * not acknowledge in time (it is SIGSTOPped) is told "received, check the
 * card's status in a few minutes", one it does acknowledge "accepted";
 * both reach the registry once it is back. */
static void test_unreplicated_report_unconfirmed(void **state)
{
    world *w = *state;
    w->reporting = 2;
    for (int i = 0; i < w->reporting; i++)
        dial_to_confirm(w, &w->people[i]);
    th_stop(&w->tw.sim, WAIT_MS);
    kill(w->replica.pid, SIGSTOP);
    confirm(w, &w->people[0], UNCONFIRMED);
    assert_true(log_shows(w, "loss.queued", "replicated=no"));
    kill(w->replica.pid, SIGCONT);
    const char *caught_up[] = {"WAIT", "1", "1000"}; /* the replica holds every write so far */
    long deadline = th_now_ms() + WAIT_MS;
    for (bool acked = false; !acked;) {
        char *n = th_redis_cmd(&w->tw.redis, 3, caught_up);
        acked = n && strcmp(n, "1") == 0;
        free(n);
        assert_true(acked || th_now_ms() < deadline);
    }
    confirm(w, &w->people[1], ACCEPTED);
    assert_int_equal(loss_entries(w), 2);

    long started = restart_sim(w);
    wait_delivered(w, started, "the registry was started again");
    assert_exactly_once(w);
    stop_gateway(w);
    assert_private(w);
}

/* Three reports accepted while the registry is down; Redis restarts
 * (SIGTERM, then the same port and AOF); the gateway reconnects; the
 * registry comes back and gets all three, once each. */
static void test_redis_restart(void **state)
{
    world *w = *state;
    w->reporting = 3;
    for (int i = 0; i < w->reporting; i++)
        dial_to_confirm(w, &w->people[i]);
    th_stop(&w->tw.sim, WAIT_MS);
    for (int i = 0; i < w->reporting; i++)
        confirm(w, &w->people[i], ACCEPTED);
    assert_int_equal(loss_entries(w), w->reporting);

    int connects = log_count(w, "store.connected", "port=");
    restart_redis(w);
    assert_int_equal(loss_entries(w), w->reporting); /* the AOF kept them */
    assert_true(log_grows(w, "store.connected", "port=", connects)); /* the gateway reconnected */
    assert_true(th_wait_healthz(w->tw.http_port, "\"redis\":\"up\"", WAIT_MS));

    long started = restart_sim(w);
    wait_delivered(w, started, "the registry was started again");
    assert_exactly_once(w);
    assert_true(th_wait_healthz(w->tw.http_port, "\"status\":\"ok\"", WAIT_MS));
    stop_gateway(w);
    assert_private(w);
}

/* One trial of test_redis_killed_before_answer: `p` confirms while the
 * registry refuses their card (503), so the hop waits the whole
 * loss_confirm_wait_ms for it; once the gateway logs the report queued
 * (the outbox append acknowledged, under appendfsync always) Redis is
 * SIGKILLed inside that wait, and the hop's session save meets a dead
 * Redis. The caller must hear "accepted" with a reference. Redis restarts
 * on its AOF; the aggregator's retry of the same request must hear the
 * same reference. */
static void kill_redis_while_waiting(world *w, person *p)
{
    dial_to_confirm(w, p);
    char fault[160];
    snprintf(fault, sizeof fault, "{\"status\": 503, \"path_prefix\": \"/v1/cards/%s/\"}", p->card);
    set_fault(w, fault);
    int queued = log_count(w, "loss.queued", "duplicate=no");
    int unsaved = log_count(w, "engine.unsaved_answer", "session=");
    pending_confirm pc;
    confirm_start(&pc, w, p);
    assert_true(log_grows(w, "loss.queued", "duplicate=no", queued));
    th_kill(&w->tw.redis);
    confirm_end(&pc);
    char heard[512]; /* the body is freed before any failure: a failing run reports no leak */
    snprintf(heard, sizeof heard, "%s", pc.body ? pc.body : "");
    free(pc.body);
    if (pc.status != 200 || strncmp(heard, "END ", 4) != 0 || strstr(heard, ACCEPTED) == NULL)
        fail_msg("%s: Redis died after the report was queued; the caller heard (status %ld): %s", p->session,
                 pc.status, heard);
    reference_in(heard, p->reference);
    /* The answer came from the failed save, so the kill was inside the window. */
    assert_true(log_grows(w, "engine.unsaved_answer", "session=", unsaved));

    int connects = log_count(w, "store.connected", "port=");
    assert_true(th_redis_start(&w->tw.redis, w->tw.redis.dir, true)); /* same port, same AOF */
    assert_true(log_grows(w, "store.connected", "port=", connects));
    assert_int_equal(count_entries(w, "cl:outbox", "loss_report", "reference", p->reference), 1);

    long status;
    char *again = post_ussd(w, p, &status); /* the same request, retried */
    snprintf(heard, sizeof heard, "%s", again ? again : "");
    free(again);
    if (status != 200 || strstr(heard, ACCEPTED) == NULL)
        fail_msg("%s: the retry heard (status %ld): %s", p->session, status, heard);
    char reference[REFERENCE_LEN + 1];
    reference_in(heard, reference);
    assert_string_equal(reference, p->reference);
    assert_int_equal(count_entries(w, "cl:outbox", "loss_report", "reference", p->reference), 1);
    assert_int_equal(th_http(w->tw.sim.port, "DELETE", "/_sim/fault", NULL, NULL, NULL), 200);
}

/* Redis dies between the outbox append and the answer, once per caller:
 * what each caller heard is what the registry gets, once. */
static void test_redis_killed_before_answer(void **state)
{
    world *w = *state;
    for (int i = 0; i < PEOPLE; i++)
        kill_redis_while_waiting(w, &w->people[i]);
    w->reporting = PEOPLE;
    wait_delivered(w, th_now_ms(), "the last retry");
    assert_exactly_once(w);
    stop_gateway(w);
    assert_private(w);
}

/* loss_confirm_wait_ms (3 s) is longer than handler_timeout_ms (1 s) and
 * the registry refuses the card, so the wait runs into the engine's
 * deadline: the caller must hear "accepted", not the "unavailable" of an
 * abandoned handler, and the registry gets the report they heard of. */
static void test_wait_past_handler_deadline(void **state)
{
    world *w = *state;
    person *p = &w->people[0];
    w->reporting = 1;
    dial_to_confirm(w, p);
    char fault[160];
    snprintf(fault, sizeof fault, "{\"status\": 503, \"path_prefix\": \"/v1/cards/%s/\"}", p->card);
    set_fault(w, fault);
    confirm(w, p, ACCEPTED);
    assert_false(log_has(w, "engine.handler_timeout", "handler=report_loss"));
    assert_int_equal(th_http(w->tw.sim.port, "DELETE", "/_sim/fault", NULL, NULL, NULL), 200);
    wait_delivered(w, th_now_ms(), "the registry took it");
    assert_exactly_once(w);
    stop_gateway(w);
    assert_private(w);
}

/* One stalled confirm for `p`: Redis pauses writes (CLIENT PAUSE WRITE)
 * from just before the confirm until the gateway logs a failed add, or for
 * the bounded wait if none comes. True when the add failed in the pause;
 * `heard` gets what the caller heard. */
static bool confirm_in_pause(world *w, person *p, char *heard, size_t size, long *status)
{
    dial_to_confirm(w, p);
    char fault[160];
    snprintf(fault, sizeof fault, "{\"status\": 503, \"path_prefix\": \"/v1/cards/%s/\"}", p->card);
    set_fault(w, fault);
    const char *pause[] = {"CLIENT", "PAUSE", "60000", "WRITE"};
    char *ok = th_redis_cmd(&w->tw.redis, 4, pause);
    assert_non_null(ok);
    free(ok);
    int failed = log_count(w, "loss.", "why=unavailable");
    pending_confirm pc;
    confirm_start(&pc, w, p);
    bool seen = log_grows(w, "loss.", "why=unavailable", failed);
    const char *unpause[] = {"CLIENT", "UNPAUSE"};
    ok = th_redis_cmd(&w->tw.redis, 2, unpause);
    confirm_end(&pc);
    assert_non_null(ok);
    free(ok);
    snprintf(heard, size, "%s", pc.body ? pc.body : "");
    free(pc.body);
    *status = pc.status;
    return seen;
}

/* Redis stalls as the report is added: the add outlives the store's
 * deadline and is answered "unavailable", and Redis applies it once it
 * resumes, so the report is in the outbox all the same. The caller must
 * hear "accepted" with the reference the registry then gets, once.
 *
 * The outbox is polled seldom here, yet a poll can still fall into the
 * pause and hold up the session's load behind it on the store's one
 * connection, so the hop fails before the add is tried: then nothing
 * reached the outbox, "unavailable" is the truth, and the trial is run
 * again with the next person (bounded). */
static void test_redis_stalls_during_add(void **state)
{
    world *w = *state;
    char heard[512];
    long status = 0;
    int trial = 0;
    for (; trial < 3; trial++) {
        person *p = &w->people[trial];
        if (confirm_in_pause(w, p, heard, sizeof heard, &status))
            break;
        print_message("trial %d: the pause stopped the hop before the add: %s\n", trial, heard);
        assert_null(strstr(heard, ACCEPTED));
        assert_int_equal(count_entries(w, "cl:outbox", "loss_report", "card", p->card), 0);
        assert_true(th_wait_healthz(w->tw.http_port, "\"status\":\"ok\"", WAIT_MS));
    }
    assert_true(trial < 3); /* the add did fail while Redis was paused */
    person reporter = w->people[trial];
    w->people[trial] = w->people[0];
    w->people[0] = reporter;
    w->reporting = 1;
    person *p = &w->people[0];
    if (status != 200 || strstr(heard, ACCEPTED) == NULL)
        fail_msg("%s: the report's add was applied late; the caller heard (status %ld): %s", p->session,
                 status, heard);
    reference_in(heard, p->reference);
    assert_int_equal(count_entries(w, "cl:outbox", "loss_report", "reference", p->reference), 1);
    assert_int_equal(th_http(w->tw.sim.port, "DELETE", "/_sim/fault", NULL, NULL, NULL), 200);
    wait_delivered(w, th_now_ms(), "Redis resumed");
    assert_exactly_once(w);
    stop_gateway(w);
    assert_private(w);
}

/* The registry's answer is lost: the first two attempts are held 800 ms,
 * past the gateway's 500 ms deadline. The first is applied after the
 * gateway gave up on it; the third attempt (not held, sent after the second
 * timed out, so after that write) and the held second are replays of it:
 * one write, and the gateway ends with the replayed answer. */
static void test_registry_answer_lost(void **state)
{
    world *w = *state;
    person *p = &w->people[0];
    w->reporting = 1;
    dial_to_confirm(w, p);
    char fault[160];
    snprintf(fault, sizeof fault, "{\"delay_ms\": 800, \"count\": 2, \"path_prefix\": \"/v1/cards/%s/\"}",
             p->card);
    set_fault(w, fault);
    confirm(w, p, ACCEPTED);
    wait_delivered(w, th_now_ms(), "confirmation");
    assert_true(log_has(w, "loss.delivery", "attempt=3 registry=ok"));
    assert_true(sim_log_grows(w, "path=/v1/cards/*****0001/loss-reports", 2)); /* all three answered */
    assert_int_equal(sim_replays(w), 2);
    assert_exactly_once(w);
    stop_gateway(w);
    assert_private(w);
}

/* Lets every session expire at once, as their TTL would (the dedupe keys of
 * the outbox live on, for days). */
static void expire_sessions(const world *w)
{
    const char *argv[] = {"EVAL",
                          "for _, k in ipairs(redis.call('KEYS', 'cl:s:*')) do redis.call('DEL', k) end\n"
                          "return 1",
                          "0"};
    free(th_redis_cmd(&w->tw.redis, 3, argv));
}

/* An aggregator recycles its sessionIds: a second caller gets the id of a
 * session that expired. Their reports are two reports, each applied once,
 * with two references: a report is keyed by its session's creation too,
 * never taken for a replay of another session's. */
static void test_reused_session_id(void **state)
{
    world *w = *state;
    w->reporting = 2;
    person *first = &w->people[0], *second = &w->people[1];
    memcpy(second->session, first->session, sizeof second->session);
    dial_to_confirm(w, first);
    confirm(w, first, "挂失已办理");
    expire_sessions(w);
    dial_to_confirm(w, second);
    confirm(w, second, "挂失已办理");
    assert_string_not_equal(first->reference, second->reference);
    wait_delivered(w, th_now_ms(), "the second confirmation");
    assert_exactly_once(w);
    stop_gateway(w);
    assert_private(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_gateway_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry_outage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_killed_before_answer, setup_held, teardown),
        cmocka_unit_test_setup_teardown(test_registry_answer_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_past_handler_deadline, setup_overlong, teardown),
        cmocka_unit_test_setup_teardown(test_redis_stalls_during_add, setup_held_seldom_polled, teardown),
        cmocka_unit_test_setup_teardown(test_reused_session_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreplicated_report_unconfirmed, setup_replicated, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
