/* test_ussd — the USSD channel hosted in-process on a real httpd listener
 * with a real runtime (real redis-server, real registry-sim, the shipped
 * dialplans), driven over real HTTP with libcurl from the test thread while
 * the event loop runs in its own thread: a whole status check, an ID typed
 * with `*` for X, retries that run nothing twice, racing requests on one
 * session, a slow registry (holding page, then the answer), paging of a long
 * output, and every bad input (status and nothing stored). Waiting is by
 * polling with a bounded deadline, never by timing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "settings.h"
#include "gsm.h"
#include "harness.h"
#include "loop.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "rtworld.h"
#include "runtime.h"
#include "ussd.h"

#define SHIPPED_DIR CL_SOURCE_DIR "/dialplans"
#define PAGING_DIR CL_SOURCE_DIR "/tests/ussd/dialplans/paging"
#define WAIT_MS 15000
#define WANG_ID "110101199003074514"
#define WANG_PIN "246810"
#define WANG_PHONE "+8613800000001"
#define CHEN_ID_STAR "51010719880214226*"
#define CHEN_PIN "314159"
#define DEADLINE_MS 300
#define RACERS 8
#define AGGREGATOR_SECRET "the aggregator's test secret"
#define STARTS_PER_NUMBER 40

typedef struct {
    tr_world core;            /* real Redis and simulator, the runtime; its loop runs in its own thread */
    httpd *http;              /* the listener */
    ussd *ussd;               /* under test */
    struct event *tick;       /* keeps the loop thread looking at `stop` */
    pthread_t loop;           /* runs `base` */
    atomic_bool stop;         /* asks the loop thread to end */
    FILE *log;                /* captured log lines */
    char *log_text;
    size_t log_len;
} fixture;

typedef struct {
    long status;              /* HTTP status, 0 when none */
    char body[2048];          /* the reply */
    char ctype[128];          /* its Content-Type */
} reply;

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static void *run_loop(void *arg)
{
    fixture *f = arg;
    while (!atomic_load(&f->stop))
        event_base_loop(f->core.base, EVLOOP_ONCE);
    return NULL;
}

/* Setup ---------------------------------------------------------------------------*/

static int start(void **state, const char *dialplans)
{
    fixture *f = calloc(1, sizeof *f);
    assert_true(tr_start_servers(&f->core, "ussd", NULL));
    f->log = open_memstream(&f->log_text, &f->log_len);
    log_set_stream(f->log);
    f->core.conf.registry.timeout_ms = 8000;
    f->core.conf.session.handler_timeout_ms = 10000;
    assert_true(tr_start_runtime(&f->core, dialplans, NULL, NULL, WAIT_MS));
    httpd_options ho = {.name = "ussd", .host = "127.0.0.1", .port = 0, .max_body_bytes = 16384,
                        .max_header_bytes = 8192, .max_connections = 256, .idle_timeout_ms = 30000,
                        .request_timeout_ms = 10000};
    f->http = httpd_new(f->core.base, &ho);
    assert_non_null(f->http);
    ussd_options uo;
    ussd_options_default(&uo);
    uo.engine = runtime_engine(f->core.rt);
    uo.answer_deadline_ms = DEADLINE_MS;
    uo.hop_key_secret = "a test secret of enough bytes";
    uo.secret = AGGREGATOR_SECRET;
    uo.allow_from = "127.0.0.1, ::1";
    uo.starts_per_number = STARTS_PER_NUMBER;
    f->ussd = ussd_new(f->core.base, f->http, &uo);
    assert_non_null(f->ussd);
    f->tick = event_new(f->core.base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval every = {0, 10000};
    event_add(f->tick, &every);
    assert_int_equal(pthread_create(&f->loop, NULL, run_loop, f), 0);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return start(state, SHIPPED_DIR);
}

static int setup_paging(void **state)
{
    return start(state, PAGING_DIR);
}

static int teardown(void **state)
{
    fixture *f = *state;
    atomic_store(&f->stop, true);
    pthread_join(f->loop, NULL);
    httpd_free(f->http);
    ussd_free(f->ussd);
    event_free(f->tick);
    tr_stop(&f->core);
    log_set_stream(stderr);
    fclose(f->log);
    free(f->log_text);
    metrics_reset();
    free(f);
    return 0;
}

/* HTTP ------------------------------------------------------------------------------*/

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    reply *r = arg;
    size_t have = strlen(r->body), add = size * n;
    if (have + add < sizeof r->body)
        memcpy(r->body + have, data, add);
    return size * n;
}

/* How a request proves itself: signed with `secret` (NULL: unsigned) at
 * `now` + `skew_s`, sent from `source` (NULL: 127.0.0.1); the signature is
 * over `signed_body` when set (one lifted from another request). */
typedef struct {
    const char *secret;
    long skew_s;
    const char *source;
    const char *signed_body;
} credentials;

static const credentials aggregator = {AGGREGATOR_SECRET, 0, NULL, NULL};

static reply send_as(const fixture *f, const credentials *cr, const char *method, const char *ctype,
                     const char *body)
{
    reply r = {0};
    CURL *c = curl_easy_init();
    char url[64], header[160];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/ussd", httpd_port(f->http));
    struct curl_slist *h = NULL;
    if (ctype) {
        snprintf(header, sizeof header, "Content-Type: %s", ctype);
        h = curl_slist_append(h, header);
    }
    if (cr->secret && body) {
        char ts[24], sig[USSD_SIGNATURE_MAX];
        snprintf(ts, sizeof ts, "%ld", (long)time(NULL) + cr->skew_s);
        const char *over = cr->signed_body ? cr->signed_body : body;
        assert_true(ussd_sign(cr->secret, ts, over, strlen(over), sig));
        snprintf(header, sizeof header, USSD_TIMESTAMP_HEADER ": %s", ts);
        h = curl_slist_append(h, header);
        snprintf(header, sizeof header, USSD_SIGNATURE_HEADER ": %s", sig);
        h = curl_slist_append(h, header);
    }
    if (cr->source)
        curl_easy_setopt(c, CURLOPT_INTERFACE, cr->source);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)WAIT_MS);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (curl_easy_perform(c) == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
        char *ct = NULL;
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
        if (ct)
            snprintf(r.ctype, sizeof r.ctype, "%s", ct);
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return r;
}

static reply send_raw(const fixture *f, const char *method, const char *ctype, const char *body)
{
    return send_as(f, &aggregator, method, ctype, body);
}

/* The form body of one aggregator request; every value is form-encoded. */
static void form_of(const char *sid, const char *code, const char *phone, const char *text, char *body,
                    size_t size)
{
    CURL *c = curl_easy_init();
    const char *names[] = {"sessionId", "serviceCode", "phoneNumber", "text"};
    const char *values[] = {sid, code, phone, text};
    body[0] = '\0';
    for (int i = 0; i < 4; i++) {
        if (!values[i])
            continue;
        char *v = curl_easy_escape(c, values[i], 0);
        size_t at = strlen(body);
        snprintf(body + at, size - at, "%s%s=%s", at ? "&" : "", names[i], v);
        curl_free(v);
    }
    curl_easy_cleanup(c);
}

/* One signed aggregator request. */
static reply ussd_post(const fixture *f, const char *sid, const char *code, const char *phone, const char *text)
{
    char body[8192];
    form_of(sid, code, phone, text, body, sizeof body);
    return send_raw(f, "POST", "application/x-www-form-urlencoded", body);
}

static reply hop(const fixture *f, const char *sid, const char *text)
{
    return ussd_post(f, sid, "*123#", WANG_PHONE, text);
}

static void expect(const fixture *f, const char *sid, const char *text, const char *start, const char *contains)
{
    reply r = hop(f, sid, text);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "text/plain; charset=utf-8");
    assert_memory_equal(r.body, start, strlen(start));
    assert_non_null(strstr(r.body, contains));
}

/* Redis and the simulator -------------------------------------------------------------*/

static long pin_verifications(const fixture *f)
{
    return (long)th_sim_stat(&f->core.sim, "applied.pin_verifications");
}

static char *redis(const fixture *f, int argc, const char **argv)
{
    char *out = th_redis_cmd(&f->core.redis, argc, argv);
    assert_non_null(out);
    return out;
}

static long revision(const fixture *f, const char *sid)
{
    char key[128];
    snprintf(key, sizeof key, "cl:s:ussd:%s", sid);
    const char *argv[] = {"HGET", key, "rev"};
    char *rev = redis(f, 3, argv);
    long n = strtol(rev, NULL, 10);
    free(rev);
    return n;
}

static long dbsize(const fixture *f)
{
    const char *argv[] = {"DBSIZE"};
    char *n = redis(f, 1, argv);
    long v = strtol(n, NULL, 10);
    free(n);
    return v;
}

/* Keys matching `pattern` (sessions, counters). */
static long keys_matching(const fixture *f, const char *pattern)
{
    const char *argv[] = {"EVAL", "return #redis.call('KEYS', ARGV[1])", "0", pattern};
    char *n = redis(f, 4, argv);
    long v = strtol(n, NULL, 10);
    free(n);
    return v;
}

static bool log_contains(fixture *f, const char *needle)
{
    fflush(f->log);
    return f->log_text && strstr(f->log_text, needle) != NULL;
}

/* Tests ----------------------------------------------------------------------------------*/

static void test_status_session(void **state)
{
    fixture *f = *state;
    expect(f, "s1", "", "CON ", "1 中文\n2 English");
    expect(f, "s1", "1", "CON ", "1 卡状态/补卡进度\n2 挂失");
    expect(f, "s1", "1*1", "CON ", "18位身份证号码");
    expect(f, "s1", "1*1*" WANG_ID, "CON ", "6位");
    long before = pin_verifications(f);
    reply first = hop(f, "s1", "1*1*" WANG_ID "*" WANG_PIN);
    assert_int_equal(first.status, 200);
    assert_non_null(strstr(first.body, "状态：正常"));
    assert_non_null(strstr(first.body, "1 返回主菜单\n2 结束"));
    assert_int_equal(pin_verifications(f), before + 1);
    long rev = revision(f, "s1");

    reply again = hop(f, "s1", "1*1*" WANG_ID "*" WANG_PIN);   /* the aggregator retries */
    assert_int_equal(again.status, 200);
    assert_string_equal(again.body, first.body);
    assert_int_equal(pin_verifications(f), before + 1);
    assert_int_equal(revision(f, "s1"), rev);

    expect(f, "s1", "1*1*" WANG_ID "*" WANG_PIN "*2", "END ", "感谢使用，再见。");
    char *all = th_redis_dump(&f->core.redis);
    assert_non_null(all);
    assert_null(strstr(all, WANG_PIN));
    free(all);
    assert_false(log_contains(f, WANG_PIN));
    assert_false(log_contains(f, "8613800000001"));   /* masked */
    /* One info line per request: the hop's for those the engine answered
     * (their own ussd.request line is at debug), ussd.request for the rest. */
    assert_true(log_contains(f, "event=engine.hop"));
    assert_true(log_contains(f, "channel=ussd"));
    assert_false(log_contains(f, "result=engine"));
    reply bad = ussd_post(f, "s1", "*123#", "+8613800000001", "1*\xff");
    assert_int_equal(bad.status, 400);
    assert_true(log_contains(f, "event=ussd.request"));
    assert_true(log_contains(f, "result=bad_request"));
}

static void test_id_typed_with_star(void **state)
{
    fixture *f = *state;
    const char *phone = "+8613800000005";
    ussd_post(f, "s2", "*123#", phone, "");
    ussd_post(f, "s2", "*123#", phone, "1");
    reply r = ussd_post(f, "s2", "*123#", phone, "1*1");
    assert_non_null(strstr(r.body, "身份证"));
    r = ussd_post(f, "s2", "*123#", phone, "1*1*" CHEN_ID_STAR);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "6位"));
    r = ussd_post(f, "s2", "*123#", phone, "1*1*" CHEN_ID_STAR "*" CHEN_PIN);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "锁定"));
}

typedef struct {
    const fixture *f;         /* where to send */
    const char *text;         /* the text */
    reply r;                  /* the answer */
} racer;

static void *race(void *arg)
{
    racer *x = arg;
    x->r = hop(x->f, "s3", x->text);
    return NULL;
}

static void test_racing_requests(void **state)
{
    fixture *f = *state;
    expect(f, "s3", "", "CON ", "English");
    expect(f, "s3", "1", "CON ", "卡状态");
    long rev = revision(f, "s3");
    racer x[RACERS];
    pthread_t t[RACERS];
    for (int i = 0; i < RACERS; i++) {
        x[i] = (racer){.f = f, .text = i % 2 ? "1*1" : "1*9"};
        assert_int_equal(pthread_create(&t[i], NULL, race, &x[i]), 0);
    }
    for (int i = 0; i < RACERS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(revision(f, "s3"), rev + 1);   /* exactly one hop applied */
    const char *winner = NULL, *body = NULL;
    for (int i = 0; i < RACERS; i++) {
        assert_true(x[i].r.status == 200 || x[i].r.status == 409);
        assert_memory_equal(x[i].r.body, x[i].r.status == 200 ? "CON " : "END ", 4);
        if (x[i].r.status != 200)
            continue;
        if (!winner) {
            winner = x[i].text;
            body = x[i].r.body;
        }
        assert_string_equal(x[i].text, winner);       /* only one text won */
        assert_string_equal(x[i].r.body, body);       /* identical answers */
    }
    assert_non_null(winner);
    reply again = hop(f, "s3", winner);               /* still a replay afterwards */
    assert_string_equal(again.body, body);
    assert_int_equal(revision(f, "s3"), rev + 1);
}

static void set_fault(const fixture *f, const char *json)
{
    assert_int_equal(th_http(f->core.sim.port, "PUT", "/_sim/fault", json, NULL, NULL), 200);
}

static void test_slow_registry_holds(void **state)
{
    fixture *f = *state;
    const char *text = "1*1*" WANG_ID "*" WANG_PIN;
    hop(f, "s4", "");
    hop(f, "s4", "1");
    hop(f, "s4", "1*1");
    hop(f, "s4", "1*1*" WANG_ID);
    long before = pin_verifications(f);
    set_fault(f, "{\"delay_ms\": 1500, \"count\": 1, \"path_prefix\": \"/v1/\"}");
    reply held = hop(f, "s4", text);
    assert_int_equal(held.status, 200);
    assert_string_equal(held.body, "CON 正在查询，请回复1继续");

    /* The caller replies 1 until the answer is there (bounded). */
    char cont[1024];
    snprintf(cont, sizeof cont, "%s", text);
    reply r = held;
    for (int polls = 0; strcmp(r.body, held.body) == 0; polls++) {
        assert_true(polls < 60 && strlen(cont) + 3 < sizeof cont);
        struct timespec pause = {0, 100 * 1000000};  /* a caller's pace, not a timing assumption */
        nanosleep(&pause, NULL);
        strcat(cont, "*1");
        r = hop(f, "s4", cont);
        assert_int_equal(r.status, 200);
    }
    assert_non_null(strstr(r.body, "状态：正常"));
    assert_int_equal(pin_verifications(f), before + 1);
    reply again = hop(f, "s4", cont);                 /* a retry of the continue */
    assert_string_equal(again.body, r.body);

    strcat(cont, "*2");                               /* the menu sees only "2" */
    reply bye = hop(f, "s4", cont);
    assert_int_equal(bye.status, 200);
    assert_string_equal(bye.body, "END 感谢使用，再见。");
}

static size_t octets(const char *s)
{
    return gsm_octets(s, strlen(s));
}

static void test_paging(void **state)
{
    fixture *f = *state;
    char text[64] = "";
    reply r = ussd_post(f, "p1", "*456#", WANG_PHONE, text);
    int pages = 1;
    char seen[8192] = "";
    assert_int_equal(r.status, 200);
    while (strstr(r.body, "\n98 更多")) {
        assert_memory_equal(r.body, "CON ", 4);
        assert_true(octets(r.body + 4) <= USSD_MAX_PAGE_OCTETS);
        assert_null(strstr(r.body, "1 结束"));
        strcat(seen, r.body);
        strcat(text, text[0] ? "*98" : "98");
        reply same = ussd_post(f, "p1", "*456#", WANG_PHONE, text);
        r = ussd_post(f, "p1", "*456#", WANG_PHONE, text);   /* a retry gets the same page */
        assert_string_equal(r.body, same.body);
        assert_true(++pages < 10);
    }
    assert_true(pages >= 2);
    assert_true(octets(r.body + 4) <= USSD_MAX_PAGE_OCTETS);
    strcat(seen, r.body);
    assert_non_null(strstr(seen, "第一段"));
    assert_non_null(strstr(seen, "第二段"));
    assert_non_null(strstr(seen, "第三段"));
    assert_non_null(strstr(r.body, "1 结束"));
    strcat(text, "*1");
    r = ussd_post(f, "p1", "*456#", WANG_PHONE, text);
    assert_string_equal(r.body, "END 感谢使用，再见。");
}

static void expect_refused(const fixture *f, reply r, long status)
{
    (void)f;
    assert_int_equal(r.status, status);
    assert_memory_equal(r.body, "END ", 4);
}

static void test_bad_input(void **state)
{
    fixture *f = *state;
    expect_refused(f, ussd_post(f, NULL, "*123#", WANG_PHONE, ""), 400);
    expect_refused(f, ussd_post(f, "", "*123#", WANG_PHONE, ""), 400);
    expect_refused(f, ussd_post(f, "b1", NULL, WANG_PHONE, ""), 400);
    expect_refused(f, ussd_post(f, "b1", "*123#", "", ""), 400);
    expect_refused(f, ussd_post(f, "b1", "*123#", "not a phone", ""), 400);
    expect_refused(f, ussd_post(f, "b1 x", "*123#", WANG_PHONE, ""), 400);
    char big[1100];
    memset(big, '1', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    expect_refused(f, ussd_post(f, "b1", "*123#", WANG_PHONE, big), 413);
    expect_refused(f, send_raw(f, "POST", "application/x-www-form-urlencoded",
                               "sessionId=b1&serviceCode=*123%23&phoneNumber=1380&text=%FF%FE"), 400);
    expect_refused(f, send_raw(f, "POST", "application/json", "{\"sessionId\": \"b1\"}"), 415);
    assert_int_equal(send_raw(f, "GET", NULL, NULL).status, 405);

    reply r = ussd_post(f, "b2", "*999#", WANG_PHONE, "");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "END 该服务代码不可用。");
    r = ussd_post(f, "b3", "*123#", WANG_PHONE, "1*1");      /* no such session: expired */
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "END 会话已过期，请重新拨号。");
    assert_int_equal(keys_matching(f, "cl:s:*"), 0);

    expect(f, "b4", "", "CON ", "English");
    expect(f, "b4", "1", "CON ", "卡状态");
    long rev = revision(f, "b4");
    r = hop(f, "b4", "2*1");                                 /* does not extend "1" */
    expect_refused(f, r, 409);
    assert_int_equal(revision(f, "b4"), rev);
}

static double refused(const char *reason)
{
    char labels[96];
    snprintf(labels, sizeof labels, "channel=\"ussd\",reason=\"%s\"", reason);
    return metrics_value(metrics_counter("cardline_peer_refused_total",
                                         "Peer requests refused before anything was done, by channel and reason.",
                                         labels));
}

/* A forged request (no, wrong or stale signature, a signature over another
 * body, a source not allowed) is refused 401/403 with a clear body, is
 * counted, and leaves Redis untouched: no session, no counter. */
static void test_forged_requests_change_nothing(void **state)
{
    fixture *f = *state;
    char body[512];
    form_of("forged-1", "*123#", WANG_PHONE, "", body, sizeof body);
    const char *form = "application/x-www-form-urlencoded";
    double sig0 = refused("signature"), stale0 = refused("stale"), source0 = refused("source");

    const credentials unsigned_ = {NULL, 0, NULL, NULL};
    reply r = send_as(f, &unsigned_, "POST", form, body);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, USSD_SIGNATURE_HEADER));
    const credentials wrong_secret = {"not the aggregator's secret", 0, NULL, NULL};
    r = send_as(f, &wrong_secret, "POST", form, body);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, "signature does not match"));
    const credentials stale = {AGGREGATOR_SECRET, -301, NULL, NULL};
    r = send_as(f, &stale, "POST", form, body);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, "clock skew"));
    const credentials future = {AGGREGATOR_SECRET, 301, NULL, NULL};
    assert_int_equal(send_as(f, &future, "POST", form, body).status, 401);
    const credentials stranger = {AGGREGATOR_SECRET, 0, "127.0.0.2", NULL};
    r = send_as(f, &stranger, "POST", form, body);
    assert_int_equal(r.status, 403);
    assert_non_null(strstr(r.body, "not an allowed aggregator"));

    /* A signature lifted from one request does not carry another body. */
    char victim[512];
    form_of("forged-1", "*123#", "+8613800000009", "", victim, sizeof victim);
    const credentials lifted = {AGGREGATOR_SECRET, 0, NULL, body};
    assert_int_equal(send_as(f, &lifted, "POST", form, victim).status, 401);

    assert_int_equal(dbsize(f), 0);
    assert_true(refused("signature") == sig0 + 3);
    assert_true(refused("stale") == stale0 + 2);
    assert_true(refused("source") == source0 + 1);
    assert_true(log_contains(f, "event=peer.refused"));

    /* The genuine request still works. */
    expect(f, "forged-1", "", "CON ", "English");
}

/* Sessions started by one number are counted before they start: past the
 * limit the caller gets a polite page (200, END) and no session. */
static void test_session_starts_limited_per_number(void **state)
{
    fixture *f = *state;
    const char *phone = "+8613800000077";
    char sid[32];
    for (int i = 0; i < STARTS_PER_NUMBER; i++) {
        snprintf(sid, sizeof sid, "lim-%d", i);
        reply r = ussd_post(f, sid, "*123#", phone, "");
        assert_int_equal(r.status, 200);
        assert_memory_equal(r.body, "CON ", 4);
    }
    long sessions = keys_matching(f, "cl:s:ussd:lim-*");
    reply r = ussd_post(f, "lim-over", "*123#", phone, "");
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body, "END ", 4);
    assert_non_null(strstr(r.body, "try later"));
    assert_int_equal(keys_matching(f, "cl:s:ussd:lim-*"), sessions);
    /* Another number is not affected, nor a session already running. */
    expect(f, "lim-other", "", "CON ", "English");
    r = ussd_post(f, "lim-0", "*123#", phone, "1");
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body, "CON ", 4);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_status_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_id_typed_with_star, setup, teardown),
        cmocka_unit_test_setup_teardown(test_racing_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_registry_holds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paging, setup_paging, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forged_requests_change_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_starts_limited_per_number, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
