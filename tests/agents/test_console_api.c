/* test_console_api — what the agent console needs from the API, on the real
 * cardline daemon against a real redis-server and the registry simulator
 * (demo seed): the console's static files (from a fixture folder) and the
 * security headers on every answer, path traversal refused; GET /v1/me;
 * the live stream (events after an SMS conversation reaches the queue
 * through the citizens' channel, after a message held for the agent,
 * after a release, after another gateway's write straight into Redis; the
 * heartbeat; max_streams; a reader too slow dropped); the queue paged at
 * 1,000 waiting sessions; the supervisor's overview; the funnel after a
 * scripted batch of USSD sessions that leave at known steps. Every wait is
 * bounded; streams are read from raw sockets as a browser's fetch() would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agents_world.h"
#include "rawhttp.h"

#define ID "110101199003074514"           /* 王伟's citizen ID */
#define PHONE "+8613800000001"            /* his registered mobile */
#define SMS_SESSION "sms:+8613800000001"
#define SMS_PATH "/v1/sessions/sms:%2B8613800000001"
#define MAX_STREAMS 4
#define CSP "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' " \
            "data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

#define SOON_S 8 /* the life of zhou's token from the start of the world */

static aw_agent AGENTS[] = {
    {"li", "agent", "tok-li", "    sip_uri: sip:li@127.0.0.1:5070\n"},
    {"wang", "supervisor", "tok-wang", ""},
    {"zhao", "observer", "tok-zhao", ""},
    {"zhou", "observer", "tok-zhou", NULL}, /* expires SOON_S after setup */
};

#define LI "Authorization: Bearer tok-li"
#define WANG "Authorization: Bearer tok-wang"
#define ZHAO "Authorization: Bearer tok-zhao"
#define ZHOU "Authorization: Bearer tok-zhou"

/* Helpers ---------------------------------------------------------------------------*/

static th_response api(const char *method, const char *path, const char *auth, const char *body)
{
    const char *headers[] = {auth, NULL};
    return th_request(aw_world_get()->api_port, method, path, body, auth ? headers : NULL);
}

/* The body of a 200 answer, parsed (caller json_decref's). */
static json_t *get_json(const char *path, const char *auth)
{
    th_response r = api("GET", path, auth, NULL);
    if (r.status != 200)
        fail_msg("GET %s: %ld %s", path, r.status, r.body);
    json_t *j = json_loads(r.body, 0, NULL);
    if (j == NULL)
        fail_msg("GET %s: not JSON: %s", path, r.body);
    th_response_free(&r);
    return j;
}

static long long jint(json_t *obj, const char *path)
{
    char copy[128];
    snprintf(copy, sizeof copy, "%s", path);
    json_t *v = obj;
    for (char *save = NULL, *k = strtok_r(copy, ".", &save); k; k = strtok_r(NULL, ".", &save))
        v = json_object_get(v, k);
    if (!json_is_integer(v))
        fail_msg("%s is not a number", path);
    return json_integer_value(v);
}

static redisContext *redis_connect(void)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", aw_world_get()->tw.redis.port, tv);
    assert_true(c && !c->err);
    return c;
}

static void redis_do(const char *fmt, ...)
{
    redisContext *c = redis_connect();
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    redisFree(c);
}

/* A header line ("Name: value") is in the answer's head. */
static void expect_header(const th_response *r, const char *line)
{
    char needle[512];
    snprintf(needle, sizeof needle, "%s\r\n", line);
    if (strcasestr(r->headers, needle) == NULL)
        fail_msg("header %s missing in:\n%s", line, r->headers);
}

static void expect_secured(const th_response *r)
{
    expect_header(r, CSP);
    expect_header(r, "X-Content-Type-Options: nosniff");
    expect_header(r, "Referrer-Policy: no-referrer");
    if (strcasestr(r->headers, "Set-Cookie") != NULL)
        fail_msg("a cookie was set:\n%s", r->headers);
}

/* A raw request's status ("GET /path" exactly as written, so that no
 * client tidies "..") and its head and body in buf. */
static int raw_get(const char *path, char *buf, size_t cap)
{
    char req[512];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
    return rh_exchange(aw_world_get()->api_port, req, buf, cap);
}

/* Streams, read as the page reads them ------------------------------------------------*/

typedef struct {
    int fd;                 /* the connection */
    char buf[1 << 16];      /* what arrived and was not consumed yet */
    size_t len;             /* bytes in buf */
} sse;

/* Opens GET /v1/stream; returns the status (the head is consumed; on an
 * error the body stays in buf). */
static int sse_open_buf(sse *s, const char *auth, int rcvbuf)
{
    s->len = 0;
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->fd >= 0);
    if (rcvbuf > 0)
        setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)aw_world_get()->api_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(s->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char req[256];
    snprintf(req, sizeof req, "GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n\r\n", auth);
    assert_true(rh_send(s->fd, req, strlen(req)));
    long deadline = rh_now_ms() + AW_WAIT_MS;
    char *end;
    while ((end = strstr(s->buf, "\r\n\r\n")) == NULL) {
        ssize_t n = rh_recv(s->fd, s->buf + s->len, sizeof s->buf - 1 - s->len, deadline);
        if (n <= 0)
            fail_msg("no answer to GET /v1/stream");
        s->len += (size_t)n;
        s->buf[s->len] = '\0';
    }
    int status = 0;
    sscanf(s->buf, "HTTP/1.%*d %d", &status);
    if (status == 200) {
        if (strcasestr(s->buf, "Content-Type: text/event-stream") == NULL || strcasestr(s->buf, CSP) == NULL)
            fail_msg("stream head:\n%s", s->buf);
        size_t head = (size_t)(end + 4 - s->buf);
        memmove(s->buf, s->buf + head, s->len - head + 1);
        s->len -= head;
    }
    return status;
}

static int sse_open(sse *s, const char *auth)
{
    return sse_open_buf(s, auth, 0);
}

/* Waits for `needle` in what the stream sends; what comes before it is
 * consumed. False when the wait ran out or the stream ended. */
static bool sse_wait(sse *s, const char *needle, int timeout_ms)
{
    long deadline = rh_now_ms() + timeout_ms;
    for (;;) {
        char *at = strstr(s->buf, needle);
        if (at) {
            size_t used = (size_t)(at - s->buf) + strlen(needle);
            memmove(s->buf, s->buf + used, s->len - used + 1);
            s->len -= used;
            return true;
        }
        if (s->len > sizeof s->buf / 2) { /* keep the tail: a needle may straddle reads */
            size_t drop = s->len - 1024;
            memmove(s->buf, s->buf + drop, s->len - drop + 1);
            s->len -= drop;
        }
        ssize_t n = rh_recv(s->fd, s->buf + s->len, sizeof s->buf - 1 - s->len, deadline);
        if (n <= 0)
            return false;
        s->len += (size_t)n;
        s->buf[s->len] = '\0';
    }
}

static void sse_expect(sse *s, const char *needle)
{
    if (!sse_wait(s, needle, AW_WAIT_MS))
        fail_msg("the stream never sent %s (it holds: %.400s)", needle, s->buf);
}

static void sse_close(sse *s)
{
    close(s->fd);
    s->fd = -1;
}

/* Opens a stream, retrying while the gateway has not yet noticed that
 * earlier streams went away (503 until then). */
static void sse_open_ok(sse *s, const char *auth)
{
    long deadline = th_now_ms() + AW_WAIT_MS;
    int status;
    while ((status = sse_open(s, auth)) == 503 && th_now_ms() < deadline) {
        sse_close(s);
        th_poll_pause();
    }
    assert_int_equal(status, 200);
}

static bool log_has(const char *needle);

/* The world ---------------------------------------------------------------------------*/

static int setup(void **state)
{
    static char expires[64];
    time_t soon = time(NULL) + SOON_S;
    strftime(expires, sizeof expires, "    expires: %Y-%m-%dT%H:%M:%SZ\n", gmtime(&soon));
    AGENTS[3].extra = expires;
    char extra[512];
    snprintf(extra, sizeof extra,
             "[outbox]\nconsumer = gw-console\n"
             "[agents]\nconsole_dir = %s/tests/agents/console\nmax_streams = %d\n"
             "stream_heartbeat_ms = 1000\nstream_poll_ms = 100\n",
             CL_SOURCE_DIR, MAX_STREAMS);
    return aw_setup(state, "console", false, AGENTS, sizeof AGENTS / sizeof AGENTS[0], extra);
}

/* The last test stops the world itself; should it fail first, this does. */
static int teardown(void **state)
{
    return aw_world_get() ? aw_teardown(state) : 0;
}

/* Static files and headers ------------------------------------------------------------*/

static void test_static_files_and_headers(void **state)
{
    (void)state;
    th_response r = api("GET", "/", NULL, NULL);
    assert_int_equal(r.status, 200);
    expect_header(&r, "Content-Type: text/html; charset=utf-8");
    expect_secured(&r);
    assert_non_null(strstr(r.body, "<title>fixture console</title>"));
    th_response_free(&r);

    r = api("GET", "/console/app.js", NULL, NULL);
    assert_int_equal(r.status, 200);
    expect_header(&r, "Content-Type: text/javascript; charset=utf-8");
    expect_secured(&r);
    assert_string_equal(r.body, "console.log(\"fixture\");\n");
    th_response_free(&r);

    r = api("GET", "/console/app.css", NULL, NULL);
    assert_int_equal(r.status, 200);
    expect_header(&r, "Content-Type: text/css; charset=utf-8");
    th_response_free(&r);

    /* Answers of the API carry the same headers: refused, found and not. */
    const char *paths[] = {"/v1/sessions", "/v1/nothing"};
    for (size_t i = 0; i < 2; i++) {
        r = api("GET", paths[i], NULL, NULL);
        assert_int_equal(r.status, 401);
        expect_secured(&r);
        th_response_free(&r);
    }
    r = api("GET", "/v1/me", LI, NULL);
    assert_int_equal(r.status, 200);
    expect_secured(&r);
    th_response_free(&r);

    /* Only plain names of the folder: no way out, no dotfile, no other type. */
    const char *refused[] = {"/console/../agents_world.c", "/console/..%2fagents_world.c",
                             "/console/%2e%2e/agents_world.c", "/console/.hidden.js", "/console/",
                             "/console/missing.js", "/console/app.js/x", "/console/test_console_api.c",
                             "/console//etc/passwd", "/console/index.html%00.js"};
    char buf[8192];
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        int status = raw_get(refused[i], buf, sizeof buf);
        if (status != 404 || strstr(buf, "fixture") || strstr(buf, "hidden") || strstr(buf, "#include"))
            fail_msg("GET %s: %d %s", refused[i], status, buf);
        if (strcasestr(buf, CSP) == NULL)
            fail_msg("GET %s: no CSP: %s", refused[i], buf);
    }
    r = api("POST", "/", NULL, "{}");
    assert_int_equal(r.status, 405);
    expect_header(&r, "Allow: GET");
    th_response_free(&r);
}

/* A stream lives no longer than its agent's token (checked at heartbeats). */
static void test_stream_ends_with_the_token(void **state)
{
    (void)state;
    static sse s;
    assert_int_equal(sse_open(&s, ZHOU), 200);
    if (!sse_wait(&s, "\r\n0\r\n\r\n", (SOON_S + 5) * 1000))
        fail_msg("the stream outlived its token");
    sse_close(&s);
    assert_int_equal(sse_open(&s, ZHOU), 401);
    sse_close(&s);
}

static void test_me(void **state)
{
    (void)state;
    struct {
        const char *auth, *agent, *role;
        bool can_resume;
    } cases[] = {{LI, "li", "agent", true}, {WANG, "wang", "supervisor", false}, {ZHAO, "zhao", "observer", false}};
    for (size_t i = 0; i < 3; i++) {
        json_t *me = get_json("/v1/me", cases[i].auth);
        assert_string_equal(json_string_value(json_object_get(me, "agent")), cases[i].agent);
        assert_string_equal(json_string_value(json_object_get(me, "role")), cases[i].role);
        assert_true(json_is_array(json_object_get(me, "queues")));
        assert_int_equal(json_is_true(json_object_get(me, "can_resume")), cases[i].can_resume);
        json_decref(me);
    }
    th_response r = api("GET", "/v1/me", "Authorization: Bearer nope", NULL);
    assert_int_equal(r.status, 401);
    th_response_free(&r);
}

/* The live stream ---------------------------------------------------------------------*/

static long long queue_total(void)
{
    json_t *q = get_json("/v1/queue?limit=1", ZHAO);
    long long n = jint(q, "total");
    json_decref(q);
    return n;
}

static void test_stream_events(void **state)
{
    (void)state;
    static sse agent, observer, boss;
    sse_open_ok(&agent, LI);
    sse_open_ok(&observer, ZHAO);
    sse_open_ok(&boss, WANG);
    sse_expect(&agent, ": open");
    /* A new stream gets the counts at the next poll. */
    sse_expect(&agent, "event: queue\ndata: {\"waiting\":0,");
    sse_expect(&agent, "event: callbacks\ndata: {\"open\":0}");
    sse_expect(&boss, "event: overview\ndata: {\"at_ms\":");

    /* An SMS conversation handed to an agent, the way a citizen does it. */
    aw_sms(PHONE, "CX", "身份证");
    aw_sms(PHONE, ID, "1 返回主菜单");
    aw_sms(PHONE, "0", "");
    sse_expect(&agent, "event: queue\ndata: {\"waiting\":1,");
    sse_expect(&observer, "event: queue\ndata: {\"waiting\":1,");
    sse_expect(&agent, "event: session\ndata: {\"id\":\"" SMS_SESSION "\"}");
    assert_int_equal(queue_total(), 1);

    /* The citizen writes again while an agent has the conversation. */
    aw_sms(PHONE, "请问新卡什么时候能领？", "");
    sse_expect(&agent, "event: session\ndata: {\"id\":\"" SMS_SESSION "\"}");
    sse_expect(&boss, "event: overview");

    /* Another gateway's change: only its entry in Redis. */
    redis_do("XADD cl:console * kind session id sms:+8613900000009");
    sse_expect(&observer, "event: session\ndata: {\"id\":\"sms:+8613900000009\"}");
    redis_do("XADD cl:callbacks * ref CB0000000001 session ussd:x caller +8613900000009 lang zh reason r "
             "context {} created_ms 1");
    sse_expect(&agent, "event: callbacks\ndata: {\"open\":1}");

    /* Released: the queue is empty again. */
    th_response r = api("POST", SMS_PATH "/release", LI, NULL);
    assert_int_equal(r.status, 200);
    th_response_free(&r);
    sse_expect(&agent, "event: queue\ndata: {\"waiting\":0,");
    assert_int_equal(queue_total(), 0);

    /* Heartbeats keep coming; overview ticks never reach a non-supervisor. */
    sse_expect(&observer, ": heartbeat\n\n");
    sse_expect(&observer, ": heartbeat\n\n");
    assert_null(strstr(observer.buf, "event: overview"));
    sse_close(&agent);
    sse_close(&observer);
    sse_close(&boss);
}

#define STORE_ID_MAX 128 /* a session id's longest (gateway/store) */

/* A session id as long as ids get, unique per round and index. */
static void long_id(char *out, size_t size, int round, int i)
{
    int n = snprintf(out, size, "sms:%d.%d.", round, i);
    memset(out + n, 'x', size - 1 - (size_t)n);
    out[size - 1] = '\0';
}

static void test_stream_limit_and_slow_reader(void **state)
{
    (void)state;
    static sse open[MAX_STREAMS], extra;
    for (int i = 0; i < MAX_STREAMS; i++)
        sse_open_ok(&open[i], i % 2 ? ZHAO : LI);
    assert_int_equal(sse_open(&extra, LI), 503);
    assert_non_null(strstr(extra.buf, "too_many_streams"));
    sse_close(&extra);
    /* One goes away: its place is free again once the gateway sees it. */
    sse_close(&open[0]);
    sse_open_ok(&open[0], LI);
    for (int i = 0; i < MAX_STREAMS; i++)
        sse_close(&open[i]);

    /* A reader that reads nothing while much is sent is cut off. */
    static sse slow, fast;
    assert_int_equal(sse_open_buf(&slow, ZHAO, 1024), 200);
    sse_open_ok(&fast, LI);
    char id[STORE_ID_MAX + 1];
    redisContext *c = redis_connect();
    long deadline = th_now_ms() + 60000;
    bool dropped = false;
    for (int round = 0; !dropped && th_now_ms() < deadline; round++) {
        for (int i = 0; i < 32; i++) {
            long_id(id, sizeof id, round, i);
            redisAppendCommand(c, "XADD cl:console * kind session id %s", id);
        }
        for (int i = 0; i < 32; i++) {
            redisReply *r = NULL;
            assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
            freeReplyObject(r);
        }
        /* The fast reader keeps up, and tells us a tick went by. */
        long_id(id, sizeof id, round, 31);
        char needle[200];
        snprintf(needle, sizeof needle, "{\"id\":\"%s\"}", id);
        sse_expect(&fast, needle);
        dropped = log_has("agents.stream_dropped");
    }
    redisFree(c);
    assert_true(dropped);
    assert_true(rh_wait_closed(slow.fd, AW_WAIT_MS));
    sse_close(&slow);
    sse_close(&fast);
}

/* The queue, a page at a time -------------------------------------------------------------*/

#define QUEUED 1000

static void test_queue_paging(void **state)
{
    (void)state;
    /* 1,000 waiting sessions in the store's layout (rev + doc) and the
     * index, as the engine writes them; the engine's own writes are
     * checked by the stream test above. */
    redisContext *c = redis_connect();
    for (int i = 0; i < QUEUED; i++) {
        char id[64], doc[1024];
        snprintf(id, sizeof id, "ussd:q%04d", i);
        snprintf(doc, sizeof doc,
                 "{\"v\":2,\"id\":\"%s\",\"channel\":\"ussd\",\"caller\":\"+86139%08d\",\"state\":\"transfer\","
                 "\"flow\":\"agent\",\"node\":\"to_agent\",\"lang\":\"zh\",\"created_at\":1,\"updated_at\":%d,"
                 "\"vars\":{\"node\":\"main.main_menu\"},"
                 "\"transfer\":{\"queue\":\"general\",\"reason\":\"caller asked for an agent at main.main_menu\"}}",
                 id, i, 1000 + i);
        redisAppendCommand(c, "HSET cl:s:%s rev 1 doc %s", id, doc);
        redisAppendCommand(c, "ZADD cl:q %d %s", 1000000 + i, id);
    }
    for (int i = 0; i < 2 * QUEUED; i++) {
        redisReply *r = NULL;
        assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
        assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
        freeReplyObject(r);
    }
    redisFree(c);

    /* Every page in order, oldest first, nothing twice, nothing missed. */
    int seen = 0;
    for (int offset = 0; offset < QUEUED; offset += 200) {
        char path[64];
        snprintf(path, sizeof path, "/v1/queue?offset=%d&limit=200", offset);
        json_t *page = get_json(path, ZHAO);
        assert_int_equal(jint(page, "total"), QUEUED);
        assert_int_equal(jint(page, "offset"), offset);
        json_t *sessions = json_object_get(page, "sessions");
        assert_int_equal(json_array_size(sessions), 200);
        size_t i;
        json_t *s;
        json_array_foreach(sessions, i, s) {
            char want[64];
            snprintf(want, sizeof want, "ussd:q%04d", seen);
            assert_string_equal(json_string_value(json_object_get(s, "id")), want);
            assert_int_equal(jint(s, "waiting_since_ms"), 1000000 + seen);
            assert_string_equal(json_string_value(json_object_get(s, "from")), "main.main_menu");
            assert_string_equal(json_string_value(json_object_get(s, "queue")), "general");
            assert_non_null(strstr(json_string_value(json_object_get(s, "caller")), "****"));
            seen++;
        }
        json_decref(page);
    }
    assert_int_equal(seen, QUEUED);
    json_t *last = get_json("/v1/queue?offset=999&limit=5", WANG);
    assert_int_equal(json_array_size(json_object_get(last, "sessions")), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(last, "sessions"), 0), "caller")),
                        "+8613900000999");
    json_decref(last);

    /* Expired while waiting: dropped from the index when a page meets it. */
    redis_do("DEL cl:s:ussd:q0000 cl:s:ussd:q0001");
    json_t *page = get_json("/v1/queue?offset=0&limit=10", ZHAO);
    assert_int_equal(json_array_size(json_object_get(page, "sessions")), 8);
    json_decref(page);
    assert_int_equal(queue_total(), QUEUED - 2);

    const char *bad[] = {"/v1/queue?offset=-1", "/v1/queue?offset=x", "/v1/queue?limit=0", "/v1/queue?limit=201",
                         "/v1/queue?page=2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        th_response r = api("GET", bad[i], LI, NULL);
        assert_int_equal(r.status, 400);
        th_response_free(&r);
    }
    redis_do("DEL cl:q");
}

/* The supervisor's overview -------------------------------------------------------------*/

static void test_overview(void **state)
{
    (void)state;
    th_response r = api("GET", "/v1/overview", LI, NULL);
    assert_int_equal(r.status, 403);
    th_response_free(&r);

    json_t *before = get_json("/v1/overview", WANG);
    assert_string_equal(json_string_value(json_object_get(before, "node")), "gw-console");
    assert_string_equal(json_string_value(json_object_get(json_object_get(before, "dependencies"), "redis")), "up");
    assert_non_null(json_string_value(json_object_get(json_object_get(before, "dependencies"), "registry")));
    aw_ussd("ov-1", "+8613900000101", NULL, "1 中文");
    aw_ussd("ov-2", "+8613900000102", NULL, "1 中文");
    redis_do("XADD cl:outbox:dead * entry 1-0 kind sms payload {} created 1 attempts 9 reason max_attempts");
    /* The live sets are written in batches, every second. */
    json_t *after = get_json("/v1/overview", WANG);
    long deadline = th_now_ms() + AW_WAIT_MS;
    while (jint(after, "sessions.ussd") < jint(before, "sessions.ussd") + 2 && th_now_ms() < deadline) {
        th_poll_pause();
        json_decref(after);
        after = get_json("/v1/overview", WANG);
    }
    assert_int_equal(jint(after, "sessions.ussd"), jint(before, "sessions.ussd") + 2);
    assert_int_equal(jint(after, "sessions.voice"), jint(before, "sessions.voice"));
    assert_int_equal(jint(after, "outbox.dead"), jint(before, "outbox.dead") + 1);
    assert_true(jint(after, "outbox.pending") >= 0);
    assert_int_equal(jint(after, "waiting_for_agent"), 0);
    assert_int_equal(jint(after, "this_node.calls"), 0);
    assert_true(jint(after, "this_node.streams") >= 0);
    json_decref(before);
    json_decref(after);
}

/* The funnel ------------------------------------------------------------------------*/

/* The counts of main.NODE: entered, then the six ways out. */
typedef struct {
    long long entered, next, timeout, invalid, hangup, transfer, end;
} counts;

static counts node_counts(json_t *funnel, const char *flow, const char *node)
{
    size_t i, j;
    json_t *f, *n;
    json_array_foreach(json_object_get(funnel, "flows"), i, f) {
        if (strcmp(json_string_value(json_object_get(f, "flow")), flow) != 0)
            continue;
        json_array_foreach(json_object_get(f, "nodes"), j, n) {
            if (strcmp(json_string_value(json_object_get(n, "node")), node) == 0)
                return (counts){jint(n, "entered"), jint(n, "left.next"), jint(n, "left.timeout"),
                                jint(n, "left.invalid"), jint(n, "left.hangup"), jint(n, "left.transfer"),
                                jint(n, "left.end")};
        }
    }
    fail_msg("no node %s.%s in the funnel", flow, node);
    return (counts){0};
}

static void expect_delta(json_t *was, json_t *now, const char *node, counts want)
{
    counts a = node_counts(was, "main", node), b = node_counts(now, "main", node);
    counts d = {b.entered - a.entered, b.next - a.next, b.timeout - a.timeout, b.invalid - a.invalid,
                b.hangup - a.hangup, b.transfer - a.transfer, b.end - a.end};
    if (memcmp(&d, &want, sizeof d) != 0)
        fail_msg("main.%s: entered %lld next %lld timeout %lld invalid %lld hangup %lld transfer %lld end %lld; "
                 "wanted %lld %lld %lld %lld %lld %lld %lld",
                 node, d.entered, d.next, d.timeout, d.invalid, d.hangup, d.transfer, d.end, want.entered, want.next,
                 want.timeout, want.invalid, want.hangup, want.transfer, want.end);
}

/* One USSD hop with `input` added to the session's history; the body (caller frees). */
static char *ussd_body(const char *sid, const char *phone, const char *input)
{
    aw_world *w = aw_world_get();
    size_t used = strlen(w->ussd_text);
    snprintf(w->ussd_text + used, sizeof w->ussd_text - used, "*%s", input);
    char form[1024];
    tw_ussd_form(form, sizeof form, sid, phone, w->ussd_text);
    long status;
    char *body = tw_call(&w->tw, "/ussd", form, &status, AW_WAIT_MS);
    if (status != 200)
        fail_msg("USSD %s: %ld %s", sid, status, body);
    return body;
}

/* A key the menu does not know, until it gives up (its retries used) and
 * `needle` shows. */
static void invalid_until(const char *sid, const char *phone, const char *needle)
{
    for (int i = 0; i < 6; i++) {
        char *body = ussd_body(sid, phone, "8");
        bool done = strstr(body, needle) != NULL;
        free(body);
        if (done)
            return;
    }
    fail_msg("%s never showed %s", sid, needle);
}

/* True once the gateway's log holds `needle`. */
static bool log_has(const char *needle)
{
    char *text = th_read_file(aw_world_get()->tw.gw.log, NULL);
    bool found = text && strstr(text, needle) != NULL;
    free(text);
    return found;
}

static void test_funnel_counts(void **state)
{
    (void)state;
    th_response r = api("GET", "/v1/funnel", ZHAO, NULL);
    assert_int_equal(r.status, 403);
    th_response_free(&r);
    json_t *was = get_json("/v1/funnel", WANG);

    /* A: three dial and go (they stay at the language menu). */
    aw_ussd("fa-1", "+8613900000201", NULL, "1 中文");
    aw_ussd("fa-2", "+8613900000202", NULL, "1 中文");
    aw_ussd("fa-3", "+8613900000203", NULL, "1 中文");
    /* B: two choose Chinese and stop at the main menu. */
    aw_ussd("fb-1", "+8613900000211", NULL, "1 中文");
    aw_ussd("fb-1", "+8613900000211", "1", "1 卡状态");
    aw_ussd("fb-2", "+8613900000212", NULL, "1 中文");
    aw_ussd("fb-2", "+8613900000212", "1", "1 卡状态");
    /* C: one presses a key the language menu does not know until it moves on. */
    aw_ussd("fc-1", "+8613900000221", NULL, "1 中文");
    invalid_until("fc-1", "+8613900000221", "1 卡状态");
    /* D: one chooses Chinese, then a wrong key at the main menu until goodbye. */
    aw_ussd("fd-1", "+8613900000231", NULL, "1 中文");
    aw_ussd("fd-1", "+8613900000231", "1", "1 卡状态");
    invalid_until("fd-1", "+8613900000231", "END ");

    json_t *now = get_json("/v1/funnel", WANG);
    expect_delta(was, now, "welcome", (counts){7, 7, 0, 0, 0, 0, 0});
    expect_delta(was, now, "choose_lang", (counts){7, 3, 0, 1, 0, 0, 0});
    expect_delta(was, now, "keys_told", (counts){4, 4, 0, 0, 0, 0, 0});
    expect_delta(was, now, "main_menu", (counts){4, 0, 0, 1, 0, 0, 0});
    expect_delta(was, now, "goodbye", (counts){1, 0, 0, 0, 0, 0, 1});

    /* The same numbers on /metrics, labels from the dialplans only. */
    r = th_request(aw_world_get()->tw.http_port, "GET", "/metrics", NULL, NULL);
    char line[160];
    snprintf(line, sizeof line, "cardline_flow_node_total{flow=\"main\",node=\"goodbye\",outcome=\"end\"} %lld\n",
             node_counts(now, "main", "goodbye").end);
    if (strstr(r.body, line) == NULL)
        fail_msg("/metrics lacks %s", line);
    assert_non_null(strstr(r.body, "# TYPE cardline_flow_node_total counter\n"));
    th_response_free(&r);
    json_decref(was);
    json_decref(now);
}

/* A console still open when the gateway stops: the stream is ended, and
 * the daemon exits cleanly (the teardown checks it, leaks included). */
static void test_stop_with_a_stream_open(void **state)
{
    (void)state;
    static sse s;
    sse_open_ok(&s, WANG);
    sse_expect(&s, "event: overview");
    assert_int_equal(aw_teardown(state), 0);
    assert_true(sse_wait(&s, "\r\n0\r\n\r\n", AW_WAIT_MS) || rh_wait_closed(s.fd, AW_WAIT_MS));
    sse_close(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_ends_with_the_token),
        cmocka_unit_test(test_static_files_and_headers),
        cmocka_unit_test(test_me),
        cmocka_unit_test(test_stream_events),
        cmocka_unit_test(test_stream_limit_and_slow_reader),
        cmocka_unit_test(test_queue_paging),
        cmocka_unit_test(test_overview),
        cmocka_unit_test(test_funnel_counts),
        cmocka_unit_test(test_stop_with_a_stream_open),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
