/* test_agents_api — the agent API of the real cardline daemon, against a
 * real redis-server and the real registry simulator (demo seed). Sessions
 * are made the way citizens make them: USSD over POST /ussd (identified
 * with ID and PIN 246810) and SMS over /sms/kannel (CX, ID, then 0 at
 * the menu hands the conversation to the agent queue). Two things are put
 * into Redis by hand, in the formats of gateway/agents/README.md: a voice
 * session (a hash in the store's exact layout: rev + doc), since calls need
 * SIP and RTP, and a USSD callback entry (its producer is the USSD flow),
 * plus held SMS for the context.
 *
 * Checked: 401 for no, wrong, malformed and expired tokens (with
 * WWW-Authenticate), 403 for roles, each of them in the audit log; what
 * each role sees of one session (masked below supervisor) and that no
 * response body ever holds the PIN; list filters, limit and truncation;
 * transfer back into a node (and its SMS through the outbox), two
 * concurrent transfers (one 200, one 409); resume tokens (201, key, TTL,
 * single GETDEL); replies through the outbox; release (ended, held list
 * gone); callbacks claimed once; bad input. Every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agents_world.h"
#include "rawhttp.h"

#define PIN "246810"                      /* 王伟's service PIN in the demo seed */
#define ID "110101199003074514"           /* 王伟's citizen ID */
#define PHONE "+8613800000001"            /* his registered mobile */
#define SMS_SESSION "sms:+8613800000001"
#define SMS_PATH "/v1/sessions/sms:%2B8613800000001"
#define VOICE_SESSION "voice:call-7f3a@10.0.0.9"
#define VOICE_PATH "/v1/sessions/voice:call-7f3a%4010.0.0.9"
#define VOICE_PORT 5099                   /* [voice] listen: only used in resume URIs */

/* The agents of the tokens file the test writes: name, role, token. */
static const aw_agent AGENTS[] = {
    {"li", "agent", "tok-li", "    sip_uri: sip:li@127.0.0.1:5070\n"},
    {"chen", "agent", "tok-chen", "    sip_uri: sip:chen@127.0.0.1:5070\n"},
    {"wang", "supervisor", "tok-wang", "    sip_uri: sip:wang@127.0.0.1:5070\n    expires: 2099-01-01T00:00:00Z\n"},
    {"zhao", "observer", "tok-zhao", ""},
    {"old", "agent", "tok-old", "    expires: 2020-01-01T00:00:00Z\n"},
};

#define LI "Authorization: Bearer tok-li"
#define CHEN "Authorization: Bearer tok-chen"
#define WANG "Authorization: Bearer tok-wang"
#define ZHAO "Authorization: Bearer tok-zhao"
#define OLD "Authorization: Bearer tok-old"

/* Small helpers -------------------------------------------------------------------*/

/* A reply that holds the PIN anywhere fails the test at once. */
static void assert_no_pin(const char *where, const char *body)
{
    if (body && strstr(body, PIN))
        fail_msg("%s: the response holds the PIN: %s", where, body);
}

/* One API request; `auth` is a whole header line or NULL. */
static th_response api(const char *method, const char *path, const char *auth, const char *body)
{
    const char *headers[] = {auth, NULL};
    th_response r = th_request(aw_world_get()->api_port, method, path, body, auth ? headers : NULL);
    assert_no_pin(path, r.body);
    return r;
}

/* The status of a request, its body parsed (caller json_decref's). */
static long api_json(const char *method, const char *path, const char *auth, const char *body, json_t **out)
{
    th_response r = api(method, path, auth, body);
    long status = r.status;
    if (out) {
        *out = json_loads(r.body, 0, NULL);
        if (*out == NULL)
            fail_msg("%s %s: not JSON (%ld): %s", method, path, status, r.body);
    }
    th_response_free(&r);
    return status;
}

static void expect_status(const char *method, const char *path, const char *auth, const char *body, long want)
{
    th_response r = api(method, path, auth, body);
    if (r.status != want)
        fail_msg("%s %s: status %ld, wanted %ld: %s", method, path, r.status, want, r.body);
    th_response_free(&r);
}

static const char *jstr(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

/* A redis reply from the test's own connection (caller frees). */
static redisReply *redis(const char *fmt, ...)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", aw_world_get()->tw.redis.port, tv);
    assert_true(c && !c->err);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    assert_non_null(r);
    return r;
}

static long long redis_int(const char *fmt, const char *arg)
{
    redisReply *r = redis(fmt, arg);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* One USSD hop of session `sid` (input NULL: the dial); the reply must
 * contain `needle`. */
static void ussd(const char *sid, const char *input, const char *needle)
{
    aw_ussd(sid, PHONE, input, needle);
}

/* One SMS from 王伟's mobile; the reply must contain `needle` ("" = any). */
static void sms(const char *text, const char *needle)
{
    aw_sms(PHONE, text, needle);
}

/* The context of a session as `auth` sees it (must be 200). */
static json_t *context(const char *path, const char *auth)
{
    json_t *ctx;
    long st = api_json("GET", path, auth, NULL, &ctx);
    if (st != 200)
        fail_msg("GET %s: %ld", path, st);
    return ctx;
}

/* Polls the context until the session is in `state` (or gone, for "gone"). */
static void wait_state(const char *path, const char *state)
{
    long deadline = th_now_ms() + AW_WAIT_MS;
    for (;;) {
        json_t *ctx = NULL;
        long st = api_json("GET", path, WANG, NULL, &ctx);
        bool ok = (st == 404 && strcmp(state, "gone") == 0) || (st == 200 && strcmp(jstr(ctx, "state"), state) == 0);
        json_decref(ctx);
        if (ok)
            return;
        if (th_now_ms() > deadline)
            fail_msg("%s never reached state %s", path, state);
        th_poll_pause();
    }
}

/* The SMS session from CX to the agent: the ID (SMS asks no PIN), then 0
 * at the menu. */
static void sms_to_agent(void)
{
    sms("CX", "身份证");
    sms(ID, "1 返回主菜单");
    sms("0", "");
    wait_state(SMS_PATH, "transfer");
}

/* Outbox entries of kind sms to `to` whose text contains `needle`. */
static int outbox_sms(const char *to, const char *needle)
{
    redisReply *r = redis("XRANGE cl:outbox - +");
    int n = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        redisReply *f = r->element[i]->element[1];
        const char *kind = NULL, *payload = NULL;
        for (size_t j = 0; j + 1 < f->elements; j += 2) {
            if (strcmp(f->element[j]->str, "kind") == 0)
                kind = f->element[j + 1]->str;
            if (strcmp(f->element[j]->str, "payload") == 0)
                payload = f->element[j + 1]->str;
        }
        json_t *p = payload ? json_loads(payload, 0, NULL) : NULL;
        if (kind && strcmp(kind, "sms") == 0 && strcmp(jstr(p, "to"), to) == 0 && strstr(jstr(p, "text"), needle))
            n++;
        json_decref(p);
    }
    freeReplyObject(r);
    return n;
}

/* The world ---------------------------------------------------------------------------*/

static int setup(void **state)
{
    char extra[256];
    snprintf(extra, sizeof extra,
             "[outbox]\nconsumer = gw-agents\n"
             "[voice]\nlisten = 127.0.0.1:%d\n"
             "[agents]\nresume_ttl_s = 60\naudit_max = 1000\n",
             VOICE_PORT);
    return aw_setup(state, "agents", false, AGENTS, sizeof AGENTS / sizeof AGENTS[0], extra);
}

/* Authentication and roles ------------------------------------------------------------*/

static void expect_401(const char *path, const char *auth)
{
    th_response r = api("GET", path, auth, NULL);
    if (r.status != 401 || strcasestr(r.headers, "\r\nWWW-Authenticate: Bearer") == NULL)
        fail_msg("GET %s with %s: %ld %s", path, auth ? auth : "(none)", r.status, r.headers);
    th_response_free(&r);
}

/* The audit entries (newest first) as the supervisor reads them. */
static json_t *audit(void)
{
    json_t *a;
    assert_int_equal(api_json("GET", "/v1/audit?limit=1000", WANG, NULL, &a), 200);
    return a;
}

static int audit_count(json_t *a, const char *agent, const char *action, const char *result, const char *detail)
{
    int n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(a, "entries"), i, e)
        n += strcmp(jstr(e, "agent"), agent) == 0 && strcmp(jstr(e, "action"), action) == 0 &&
             strcmp(jstr(e, "result"), result) == 0 && strstr(jstr(e, "detail"), detail) != NULL;
    return n;
}

static void test_auth(void **state)
{
    (void)state;
    expect_401("/v1/sessions", NULL);
    expect_401("/v1/sessions", "Authorization: Bearer not-a-token");
    expect_401("/v1/sessions", "Authorization: Basic bGk6cGFzcw==");
    expect_401("/v1/sessions", "Authorization: Bearer tok li");
    expect_401("/v1/sessions", OLD);
    expect_401("/v2/anything", NULL); /* no endpoint is revealed without a token */
    expect_status("POST", "/v1/sessions/ussd:x/release", ZHAO, "{}", 403);
    expect_status("POST", "/v1/callbacks/CB0000000000/claim", ZHAO, "{}", 403);
    expect_status("GET", "/v1/audit", ZHAO, NULL, 403);
    expect_status("GET", "/v1/audit", LI, NULL, 403);
    expect_status("GET", "/v1/sessions", ZHAO, NULL, 200);

    json_t *a = audit();
    assert_true(audit_count(a, "", "denied", "401", "why=no_token") >= 2);
    assert_int_equal(audit_count(a, "", "denied", "401", "why=unknown_token"), 1);
    assert_int_equal(audit_count(a, "", "denied", "401", "why=malformed"), 2);
    assert_int_equal(audit_count(a, "old", "denied", "401", "why=expired"), 1);
    assert_int_equal(audit_count(a, "zhao", "denied", "403", "tried=release"), 1);
    assert_int_equal(audit_count(a, "zhao", "denied", "403", "tried=callback_claim"), 1);
    assert_int_equal(audit_count(a, "zhao", "denied", "403", "tried=audit_read"), 1);
    assert_int_equal(audit_count(a, "li", "denied", "403", "tried=audit_read"), 1);
    assert_int_equal(audit_count(a, "zhao", "list", "200", ""), 1);
    json_t *first = json_array_get(json_object_get(a, "entries"), 0);
    assert_true(json_integer_value(json_object_get(first, "at_ms")) > 0);
    assert_string_equal(jstr(first, "role"), "observer"); /* newest first: zhao's list */
    json_decref(a);
}

/* What each role sees of an identified USSD session ---------------------------------------*/

static void test_roles_see_masked_and_never_the_pin(void **state)
{
    (void)state;
    ussd("agents-ussd-1", NULL, "1 中文");
    ussd("agents-ussd-1", "1", "1 卡状态");
    ussd("agents-ussd-1", "1", "身份证");
    ussd("agents-ussd-1", ID, "密码");
    ussd("agents-ussd-1", PIN, "状态");
    const char *path = "/v1/sessions/ussd:agents-ussd-1";
    const char *restricted[] = {ZHAO, LI};
    for (size_t i = 0; i < 2; i++) {
        th_response r = api("GET", path, restricted[i], NULL);
        assert_int_equal(r.status, 200);
        assert_null(strstr(r.body, ID));
        assert_null(strstr(r.body, "13800000001"));
        json_t *ctx = json_loads(r.body, 0, NULL);
        assert_string_equal(jstr(ctx, "caller"), "+86138****0001");
        assert_string_equal(jstr(json_object_get(ctx, "verification"), "level"), "pin");
        assert_string_equal(jstr(json_object_get(ctx, "verification"), "id"), "110101********4514");
        assert_string_equal(jstr(ctx, "channel"), "ussd");
        assert_string_equal(jstr(ctx, "state"), "wait");
        assert_true(json_array_size(json_object_get(ctx, "events")) >= 5);
        json_decref(ctx);
        th_response_free(&r);
    }
    json_t *ctx = context(path, WANG);
    assert_string_equal(jstr(ctx, "caller"), PHONE);
    assert_string_equal(jstr(json_object_get(ctx, "verification"), "id"), ID);
    assert_true(json_is_null(json_object_get(ctx, "assist")));
    char *text = json_dumps(ctx, 0);
    assert_non_null(strstr(text, ID)); /* the supervisor sees the typed ID in the events too */
    assert_null(strstr(text, "last_hop"));
    assert_null(strstr(text, "prompts"));
    free(text);
    json_decref(ctx);

    /* The list too, for every role (api() checks every body for the PIN). */
    const char *all[] = {ZHAO, LI, WANG};
    for (size_t i = 0; i < 3; i++)
        expect_status("GET", "/v1/sessions?channel=ussd", all[i], NULL, 200);
}

/* Listing ------------------------------------------------------------------------------------*/

static bool listed(json_t *list, const char *id)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(list, "sessions"), i, e)
        if (strcmp(jstr(e, "id"), id) == 0)
            return true;
    return false;
}

static json_t *list(const char *query, const char *auth)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/sessions%s", query);
    json_t *l;
    long st = api_json("GET", path, auth, NULL, &l);
    if (st != 200)
        fail_msg("GET %s: %ld", path, st);
    return l;
}

static void test_list_filters(void **state)
{
    (void)state;
    sms_to_agent();
    json_t *l = list("?channel=sms&state=transfer&queue=general", LI);
    assert_true(listed(l, SMS_SESSION));
    assert_false(listed(l, "ussd:agents-ussd-1"));
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(l, "sessions"), i, e) {
        assert_string_equal(jstr(e, "queue"), "general");
        if (strcmp(jstr(e, "id"), SMS_SESSION) == 0) {
            assert_string_equal(jstr(e, "caller"), "+86138****0001");
            assert_string_equal(jstr(e, "flow"), "agent");
        }
    }
    assert_false(json_is_true(json_object_get(l, "truncated")));
    json_decref(l);

    l = list("?channel=ussd", LI);
    assert_true(listed(l, "ussd:agents-ussd-1"));
    assert_false(listed(l, SMS_SESSION));
    json_decref(l);
    l = list("?state=wait", LI);
    assert_true(listed(l, "ussd:agents-ussd-1"));
    assert_false(listed(l, SMS_SESSION));
    json_decref(l);
    l = list("?queue=elsewhere", LI);
    assert_int_equal(json_array_size(json_object_get(l, "sessions")), 0);
    json_decref(l);

    l = list("?limit=1", WANG);
    assert_int_equal(json_array_size(json_object_get(l, "sessions")), 1);
    assert_true(json_is_true(json_object_get(l, "truncated")));
    json_decref(l);
    l = list("", WANG);
    assert_true(listed(l, SMS_SESSION) && listed(l, "ussd:agents-ussd-1"));
    assert_false(json_is_true(json_object_get(l, "truncated")));
    json_t *first = json_array_get(json_object_get(l, "sessions"), 0);
    assert_string_equal(jstr(first, "id"), SMS_SESSION); /* newest first */
    assert_string_equal(jstr(first, "caller"), PHONE);
    json_decref(l);
}

/* SMS: held messages, replies, transfer back, races, release -----------------------------------*/

static void test_sms_context_and_reply(void **state)
{
    (void)state;
    /* Held messages as the SMS channel keeps them (gateway/agents/README.md). */
    redisReply *r = redis("RPUSH cl:held:" SMS_SESSION " %s",
                          "{\"at_ms\":1795319578901,\"text\":\"我的卡丢了，手机13800000001\"}");
    freeReplyObject(r);
    json_t *ctx = context(SMS_PATH, LI);
    assert_string_equal(jstr(ctx, "state"), "transfer");
    assert_string_equal(jstr(json_object_get(ctx, "transfer"), "queue"), "general");
    json_t *held = json_object_get(ctx, "held");
    assert_int_equal(json_array_size(held), 1);
    assert_string_equal(jstr(json_array_get(held, 0), "text"), "我的卡丢了，手机138****0001");
    json_decref(ctx);
    ctx = context(SMS_PATH, WANG);
    assert_string_equal(jstr(json_array_get(json_object_get(ctx, "held"), 0), "text"), "我的卡丢了，手机13800000001");
    json_decref(ctx);

    json_t *out;
    assert_int_equal(api_json("POST", SMS_PATH "/reply", LI, "{\"text\":\"您好，我是客服小李，请稍等。\"}", &out), 202);
    assert_true(json_is_true(json_object_get(out, "queued")));
    json_decref(out);
    assert_int_equal(outbox_sms(PHONE, "我是客服小李"), 1);
    expect_status("POST", SMS_PATH "/reply", ZHAO, "{\"text\":\"hi\"}", 403);
    expect_status("POST", SMS_PATH "/reply", LI, "{\"text\":\"\"}", 400);
    expect_status("POST", "/v1/sessions/ussd:agents-ussd-1/reply", LI, "{\"text\":\"hi\"}", 400);
}

static void test_transfer_back_into_a_node(void **state)
{
    (void)state;
    json_t *out;
    /* SMS never asks for a PIN: sent to the PIN step, the citizen is told
     * to call, and the conversation comes straight back to the agent. */
    assert_int_equal(api_json("POST", SMS_PATH "/transfer", LI, "{\"node\":\"assist.verify_pin\"}", &out), 200);
    assert_string_equal(jstr(out, "state"), "transfer");
    json_decref(out);
    assert_int_equal(outbox_sms(PHONE, "服务密码不能通过短信发送"), 1);
    assert_int_equal(outbox_sms(PHONE, "请回复6位"), 0);
    assert_int_equal(api_json("POST", SMS_PATH "/transfer", LI, "{\"node\":\"main.main_menu\"}", &out), 200);
    assert_string_equal(jstr(out, "state"), "wait");
    assert_string_equal(jstr(out, "node"), "main.main_menu");
    assert_true(json_is_true(json_object_get(out, "sms_queued")));
    json_decref(out);
    json_t *ctx = context(SMS_PATH, LI);
    assert_string_equal(jstr(ctx, "flow"), "main");
    assert_string_equal(jstr(ctx, "node"), "main_menu");
    assert_string_equal(jstr(ctx, "state"), "wait");
    json_decref(ctx);
    assert_int_equal(outbox_sms(PHONE, "1 卡状态"), 1); /* the menu went to the caller by SMS */
    /* Not with an agent any more: transfers and replies are refused. */
    expect_status("POST", SMS_PATH "/transfer", LI, "{\"node\":\"main.main_menu\"}", 409);
    expect_status("POST", SMS_PATH "/reply", LI, "{\"text\":\"hi\"}", 409);
    expect_status("POST", "/v1/sessions/ussd:agents-ussd-1/transfer", LI, "{\"node\":\"main.main_menu\"}", 409);
}

/* Sends `request` on its own connection; returns the socket. */
static int send_raw(const char *request)
{
    int fd = rh_connect(aw_world_get()->api_port);
    assert_true(fd >= 0);
    assert_true(rh_send(fd, request, strlen(request)));
    return fd;
}

static void test_concurrent_transfers(void **state)
{
    (void)state;
    sms("0", "");
    wait_state(SMS_PATH, "transfer");
    const char *body = "{\"node\":\"main.main_menu\"}";
    char request[512];
    snprintf(request, sizeof request,
             "POST %s/transfer HTTP/1.1\r\nHost: x\r\n" LI "\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             SMS_PATH, strlen(body), body);
    int a = send_raw(request), b = send_raw(request);
    char buf_a[4096], buf_b[4096];
    int sa = rh_response(a, buf_a, sizeof buf_a, AW_WAIT_MS), sb = rh_response(b, buf_b, sizeof buf_b, AW_WAIT_MS);
    close(a);
    close(b);
    if (!((sa == 200 && sb == 409) || (sa == 409 && sb == 200)))
        fail_msg("two transfers: %d and %d, wanted one 200 and one 409:\n%s\n%s", sa, sb, buf_a, buf_b);
    wait_state(SMS_PATH, "wait");
    json_t *a_log = audit();
    assert_true(audit_count(a_log, "li", "transfer", "409", "node=main.main_menu") >= 3);
    json_decref(a_log);
}

static void test_release(void **state)
{
    (void)state;
    sms("0", "");
    wait_state(SMS_PATH, "transfer");
    freeReplyObject(redis("RPUSH cl:held:" SMS_SESSION " %s", "{\"at_ms\":1,\"text\":\"hello\"}"));
    assert_int_equal(redis_int("EXISTS %s", "cl:held:" SMS_SESSION), 1);
    expect_status("POST", SMS_PATH "/release", ZHAO, NULL, 403);
    json_t *out;
    assert_int_equal(api_json("POST", SMS_PATH "/release", LI, NULL, &out), 200);
    assert_string_equal(jstr(out, "state"), "end");
    json_decref(out);
    assert_int_equal(redis_int("EXISTS %s", "cl:held:" SMS_SESSION), 0);
    json_t *ctx = NULL;
    long st = api_json("GET", SMS_PATH, LI, NULL, &ctx);
    assert_true(st == 404 || (st == 200 && strcmp(jstr(ctx, "state"), "end") == 0));
    json_decref(ctx);
    expect_status("POST", SMS_PATH "/release", LI, NULL, st == 404 ? 404 : 409);
}

/* Voice resume tokens -----------------------------------------------------------------------*/

/* A voice session with an agent, written in the store's layout. */
static void put_voice_session(void)
{
    char doc[1024];
    snprintf(doc, sizeof doc,
             "{\"v\":2,\"id\":\"%s\",\"channel\":\"voice\",\"caller\":\"13800000001\",\"entry\":\"12333\","
             "\"dialplan\":\"x\",\"flow\":\"agent\",\"node\":\"to_agent\",\"state\":\"transfer\","
             "\"vars\":{\"caller\":\"13800000001\",\"channel\":\"voice\",\"lang\":\"zh\",\"session\":\"%s\","
             "\"node\":\"main.main_menu\",\"verified_id\":\"%s\",\"assist_node\":\"identify.ask_pin\","
             "\"assist_result\":\"verified\"},\"fails\":{},\"back\":[],"
             "\"transfer\":{\"queue\":\"general\",\"reason\":\"caller asked for an agent at main.main_menu\"},"
             "\"last_hop\":null,\"created_at\":1795319578901,\"updated_at\":1795319579020}",
             VOICE_SESSION, VOICE_SESSION, ID);
    freeReplyObject(redis("HSET cl:s:%s rev 1 doc %s", VOICE_SESSION, doc));
    freeReplyObject(redis("EXPIRE cl:s:%s 600", VOICE_SESSION));
}

static void test_resume_token(void **state)
{
    (void)state;
    put_voice_session();
    json_t *ctx = context(VOICE_PATH, LI);
    assert_string_equal(jstr(ctx, "caller"), "138****0001");
    assert_string_equal(jstr(json_object_get(ctx, "assist"), "result"), "verified");
    assert_string_equal(jstr(json_object_get(ctx, "assist"), "node"), "identify.ask_pin");
    json_decref(ctx);

    json_t *out;
    assert_int_equal(api_json("POST", VOICE_PATH "/resume", LI, "{\"node\":\"identify.ask_pin\"}", &out), 201);
    const char *uri = jstr(out, "uri");
    char want_tail[64];
    snprintf(want_tail, sizeof want_tail, "@127.0.0.1:%d", VOICE_PORT);
    /* Parsed rather than indexed: jstr answers "" for a missing member,
     * and uri + 11 would then point past its end. */
    char token_hex[33];
    int tail_at = 0;
    assert_int_equal(sscanf(uri, "sip:resume-%32[0-9a-f]%n", token_hex, &tail_at), 1);
    assert_int_equal(strlen(token_hex), 32);
    assert_string_equal(uri + tail_at, want_tail);
    assert_int_equal(json_integer_value(json_object_get(out, "expires_in_s")), 60);
    char key[64];
    snprintf(key, sizeof key, "cl:x:%s", token_hex);
    json_decref(out);

    long long ttl = redis_int("TTL %s", key);
    assert_true(ttl > 0 && ttl <= 60);
    redisReply *r = redis("GETDEL %s", key);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    json_t *token = json_loads(r->str, 0, NULL);
    freeReplyObject(r);
    assert_string_equal(jstr(token, "session"), VOICE_SESSION);
    assert_string_equal(jstr(token, "node"), "identify.ask_pin");
    assert_string_equal(jstr(token, "agent"), "li");
    assert_string_equal(jstr(token, "return_uri"), "sip:li@127.0.0.1:5070");
    assert_true(json_integer_value(json_object_get(token, "created_ms")) > 0);
    json_decref(token);
    r = redis("GETDEL %s", key); /* single use */
    assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);

    expect_status("POST", "/v1/sessions/ussd:agents-ussd-1/resume", LI, "{\"node\":\"identify.ask_pin\"}", 400);
    expect_status("POST", "/v1/sessions/voice:nobody/resume", LI, "{\"node\":\"identify.ask_pin\"}", 404);
    expect_status("POST", VOICE_PATH "/resume", LI, "{\"node\":\"identify.nothing\"}", 400);
    expect_status("POST", VOICE_PATH "/resume", ZHAO, "{\"node\":\"identify.ask_pin\"}", 403);
    expect_status("POST", VOICE_PATH "/transfer", LI, "{\"node\":\"main.main_menu\"}", 400);
}

/* Callbacks -----------------------------------------------------------------------------------*/

static void test_callbacks(void **state)
{
    (void)state;
    char now[24];
    snprintf(now, sizeof now, "%lld", (long long)time(NULL) * 1000);
    freeReplyObject(redis("XADD cl:callbacks MAXLEN ~ 10000 * ref CB7K2M9Q4X1Z session ussd:cb-1 caller %s "
                          "lang zh reason %s context %s created_ms %s",
                          "+8613800000002", "caller asked for a callback at main.main_menu",
                          "{\"flow\":\"main\",\"node\":\"main_menu\",\"verified\":false,\"verified_id\":\"\"}", now));
    json_t *l;
    assert_int_equal(api_json("GET", "/v1/callbacks?state=queued", ZHAO, NULL, &l), 200);
    json_t *cb = json_array_get(json_object_get(l, "callbacks"), 0);
    assert_string_equal(jstr(cb, "ref"), "CB7K2M9Q4X1Z");
    assert_string_equal(jstr(cb, "caller"), "+86138****0002");
    assert_string_equal(jstr(cb, "state"), "queued");
    assert_string_equal(jstr(json_object_get(cb, "context"), "node"), "main_menu");
    json_decref(l);

    expect_status("POST", "/v1/callbacks/CB7K2M9Q4X1Z/claim", LI, NULL, 200);
    expect_status("POST", "/v1/callbacks/CB7K2M9Q4X1Z/claim", CHEN, NULL, 409);
    expect_status("POST", "/v1/callbacks/CB7K2M9Q4X1Z/claim", LI, NULL, 200); /* one's own claim again */
    assert_int_equal(api_json("GET", "/v1/callbacks?state=claimed", WANG, NULL, &l), 200);
    cb = json_array_get(json_object_get(l, "callbacks"), 0);
    assert_string_equal(jstr(cb, "agent"), "li");
    assert_string_equal(jstr(cb, "caller"), "+8613800000002");
    json_decref(l);
    assert_int_equal(api_json("GET", "/v1/callbacks?state=queued", LI, NULL, &l), 200);
    assert_int_equal(json_array_size(json_object_get(l, "callbacks")), 0);
    json_decref(l);
    expect_status("POST", "/v1/callbacks/CB7K2M9Q4X1Z/done", CHEN, NULL, 409);
    expect_status("POST", "/v1/callbacks/CB7K2M9Q4X1Z/done", LI, NULL, 200);
    expect_status("POST", "/v1/callbacks/CB7K2M9Q4X1Z/done", LI, NULL, 409);
    expect_status("POST", "/v1/callbacks/CB7K2M9Q4X1Z/claim", CHEN, NULL, 409);
    assert_int_equal(redis_int("TTL %s", "cl:cb:CB7K2M9Q4X1Z") > 0, 1);
    expect_status("POST", "/v1/callbacks/CB0000000000/claim", LI, NULL, 404);
    expect_status("POST", "/v1/callbacks/nonsense/claim", LI, NULL, 404);
    expect_status("GET", "/v1/callbacks?state=lost", LI, NULL, 400);
}

/* Bad input -----------------------------------------------------------------------------------*/

static void test_bad_input(void **state)
{
    (void)state;
    expect_status("GET", "/v1/nothing", LI, NULL, 404);
    expect_status("GET", "/v1/sessions/ussd:x/transfer/more", LI, NULL, 404);
    expect_status("GET", "/", LI, NULL, 404);
    th_response r = api("DELETE", "/v1/sessions", LI, NULL);
    assert_int_equal(r.status, 405);
    assert_non_null(strcasestr(r.headers, "\r\nAllow: GET"));
    th_response_free(&r);
    expect_status("GET", "/v1/sessions/ussd:no-such-session", LI, NULL, 404);
    expect_status("GET", "/v1/sessions/not-a-session", LI, NULL, 404);
    expect_status("GET", "/v1/sessions/ussd:%00x", LI, NULL, 404);
    expect_status("POST", SMS_PATH "/transfer", LI, "{", 400);
    expect_status("POST", SMS_PATH "/transfer", LI, "[]", 400);
    expect_status("POST", SMS_PATH "/transfer", LI, "{\"node\":\"main.main_menu\",\"x\":1}", 400);
    expect_status("POST", SMS_PATH "/transfer", LI, "{\"node\":\"nowhere.at_all\"}", 400);
    expect_status("POST", SMS_PATH "/transfer", LI, "{\"node\":42}", 400);
    expect_status("POST", "/v1/sessions/ussd:no-such-session/transfer", LI, "{\"node\":\"main.main_menu\"}", 404);
    expect_status("GET", "/v1/sessions?colour=red", LI, NULL, 400);
    expect_status("GET", "/v1/sessions?limit=0", LI, NULL, 400);
    expect_status("GET", "/v1/sessions?limit=201", LI, NULL, 400);
    expect_status("GET", "/v1/sessions?channel=fax", LI, NULL, 400);
    expect_status("GET", "/v1/sessions?limit=1&limit=2", LI, NULL, 400);
    char *big = malloc(5001);
    memset(big, 'x', 5000);
    big[5000] = '\0';
    memcpy(big, "{\"text\":\"", 9);
    big[4998] = '"';
    big[4999] = '}';
    r = api("POST", SMS_PATH "/reply", LI, big);
    assert_int_equal(r.status, 413);
    th_response_free(&r);
    free(big);
    expect_status("POST", SMS_PATH "/reply", LI, "{\"text\":\"a\\u0000b\"}", 400);
}

/* The audit trail as a whole ------------------------------------------------------------------*/

static void test_audit_names_every_action(void **state)
{
    (void)state;
    json_t *a = audit();
    static const char *const actions[] = {"list", "context", "transfer", "resume", "reply", "release",
                                          "callback_list", "callback_claim", "callback_done", "audit_read",
                                          "denied"};
    for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++) {
        bool found = false;
        size_t j;
        json_t *e;
        json_array_foreach(json_object_get(a, "entries"), j, e)
            found |= strcmp(jstr(e, "action"), actions[i]) == 0;
        if (!found)
            fail_msg("no audit entry for %s", actions[i]);
    }
    assert_int_equal(audit_count(a, "li", "transfer", "200", "node=main.main_menu"), 2);
    assert_int_equal(audit_count(a, "li", "reply", "202", "text_len="), 1);
    assert_int_equal(audit_count(a, "li", "release", "200", ""), 1);
    assert_int_equal(audit_count(a, "li", "resume", "201", "node=identify.ask_pin"), 1);
    assert_int_equal(audit_count(a, "li", "callback_claim", "200", "ref=CB7K2M9Q4X1Z"), 2);
    assert_int_equal(audit_count(a, "chen", "callback_claim", "409", "ref=CB7K2M9Q4X1Z"), 2);
    char *text = json_dumps(a, 0);
    assert_null(strstr(text, "tok-"));
    assert_null(strstr(text, "客服小李")); /* replies are counted, never copied */
    free(text);
    json_decref(a);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_roles_see_masked_and_never_the_pin),
        cmocka_unit_test(test_list_filters),
        cmocka_unit_test(test_sms_context_and_reply),
        cmocka_unit_test(test_transfer_back_into_a_node),
        cmocka_unit_test(test_concurrent_transfers),
        cmocka_unit_test(test_release),
        cmocka_unit_test(test_resume_token),
        cmocka_unit_test(test_callbacks),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_audit_names_every_action),
    };
    int rc = cmocka_run_group_tests(tests, setup, aw_teardown);
    curl_global_cleanup();
    return rc;
}
