/* test_resume_e2e — agent → IVR → agent on voice, end to end: sipp as the
 * citizen, the real cardline daemon, a real redis-server and the registry
 * simulator on its demo seed. A citizen identifies (ID and PIN by SIP
 * INFO), asks for an agent and is REFERred to the agent URI; the agent asks
 * the Agent API for a resume URI (and afterwards reads the outcome there);
 * the refusal cases write tokens straight into Redis as the API does
 * (`cl:x:<token>`, docs/agents.md) to make them expired or malformed;
 * then sipp plays the caller the agent's phone transferred to
 * sip:resume-<token>@gateway: it types the PIN as RFC 4733 events and must
 * be REFERred back to the token's return URI. The cases:
 *   - the right PIN: the session shows assist_node verify_pin and
 *     assist_result verified, is with the agent again (queue "return"), and
 *     the PIN is in neither the session, its events nor the gateway's log;
 *     the same token again is refused 404 and changes nothing;
 *   - a wrong PIN: assist_result failed, still REFERred back;
 *   - the agent's phone declines the REFER back: the flow's fallback ends
 *     the call, the outcome stays in the session;
 *   - the caller hangs up before typing: the session ends "abandoned";
 *   - tokens that resume nothing — unknown, expired, malformed, naming a
 *     session that does not exist, carrying a return URI that would break
 *     the Refer-To header — are each refused 404, and a taken token is
 *     gone for good.
 * Prompts have no audio (an empty prompts_dir), so a flow runs as fast as
 * its keys arrive. RFC 4733 needs sipp's raw socket (root or CAP_NET_RAW):
 * without it the three cases that type a PIN are skipped. Every wait is
 * bounded; each case stops the daemon with SIGTERM and expects exit 0
 * (LeakSanitizer clean). The world the cases run in is voice_world.h's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "voice_world.h"

#define AGENT "li"
#define AGENT_TOKEN "resume-e2e-agent-token" /* its bearer token; the tokens file keeps the digest */
#define AGENT_TOKEN_SHA256 "e8c2ea9519d7e786f69192d3b226f7003648963891d4e59f6dcb4b8b0b1e1e1a"

/* A PIN that is not VW_PIN. */
#define WRONG_PIN "135790"

/* The citizen's keys by INFO: 1 中文, 1 status, the ID and # (status first
 * asks whether the ID has a card: an applicant would get a code), the PIN
 * and #, then 0 (an agent) at the menu after the status. */
static const char TO_AGENT_KEYS[] = "11" VW_ID "#" VW_PIN "#0";
static const char TO_AGENT_EVENTS[] = "input main.choose_lang 1 | input main.main_menu 1 | "
                                      "input identify.ask_id 110101********4514 | "
                                      "result identify.find_person card | input identify.ask_pin <secret> | "
                                      "result identify.verify ok | result status.lookup normal | "
                                      "result status.progress activated | input main.after_task 0";

/* The world ---------------------------------------------------------------------------------*/

/* One agent, li, whose resumed callers return to sipp's address. */
static void write_agents(const vw_world *w, char path[300])
{
    char text[512];
    snprintf(path, 300, "%s/agents.yaml", w->tw.dir);
    snprintf(text, sizeof text,
             "agents:\n  - name: " AGENT "\n    role: agent\n    token_sha256: " AGENT_TOKEN_SHA256
             "\n    sip_uri: sip:" AGENT "@127.0.0.1:%d\n",
             w->sipp_port);
    th_write_file(path, text);
}

/* The Agent API on a port of its own, knowing agent li. */
static void agents_conf(vw_world *w, FILE *conf)
{
    char agents[300];
    w->agents_port = th_free_port();
    write_agents(w, agents);
    fprintf(conf, "[agents]\nenabled = 1\nlisten = 127.0.0.1:%d\ntokens_file = %s\n", w->agents_port, agents);
}

/* The session's inputs, transfer backs and handler results. */
static const char *const JOURNEY_EVENTS[] = {"input", "transfer_back", "result", NULL};

static const vw_suite SUITE = {.name = "resume", .max_calls = 8, .event_kinds = JOURNEY_EVENTS, .more_conf = agents_conf};

static int setup(void **state)
{
    return vw_setup(state, &SUITE);
}

/* The session and the agent's tokens ---------------------------------------------------------*/

/* The session's events from the agent's transfer on must end with `want`. */
static void assert_events_end(const vw_world *w, const char *id, const char *want)
{
    char *got = vw_session_events(w, id);
    size_t g = strlen(got), n = strlen(want);
    bool ok = g >= n && strcmp(got + g - n, want) == 0;
    if (!ok)
        print_error("events of %s\n  got:  %s\n  want: ...%s\n", id, got, want);
    free(got);
    assert_true(ok);
}

static long long redis_int(const vw_world *w, const char *cmd, const char *key)
{
    redisContext *c = vw_redis_connect(w);
    redisReply *r = redisCommand(c, "%s %s", cmd, key);
    assert_true(r != NULL && r->type == REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    redisFree(c);
    return v;
}

/* A token as the agent API makes one: 32 lowercase hex characters. */
static void new_token(char out[33])
{
    static unsigned seq;
    unsigned long long x = (unsigned long long)th_now_ms() * 6364136223846793005ull + (unsigned)getpid() + ++seq;
    for (int i = 0; i < 32; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        out[i] = "0123456789abcdef"[(x >> 59) & 15];
    }
    out[32] = '\0';
}

/* The agent's request to the Agent API: `method` on /v1/sessions/{session}
 * + `tail` with `body`; the status, and the answer's JSON in *out. */
static long api(const vw_world *w, const char *method, const char *session, const char *tail, const char *body,
                json_t **out)
{
    char path[512], *escaped = curl_easy_escape(NULL, session, 0);
    snprintf(path, sizeof path, "/v1/sessions/%s%s", escaped, tail);
    curl_free(escaped);
    const char *headers[] = {"Authorization: Bearer " AGENT_TOKEN, "Content-Type: application/json", NULL};
    th_response r = th_request(w->agents_port, method, path, body, headers);
    *out = json_loads(r.body, 0, NULL);
    long status = r.status;
    th_response_free(&r);
    return status;
}

/* POST …/resume: the one-time URI the agent's phone transfers the caller
 * to; its token (32 hex) goes to `token`. */
static void api_resume(const vw_world *w, const char *session, const char *node, char token[33])
{
    char body[128];
    json_t *answer;
    snprintf(body, sizeof body, "{\"node\": \"%s\"}", node);
    assert_int_equal(api(w, "POST", session, "/resume", body, &answer), 201);
    const char *uri = json_string_value(json_object_get(answer, "uri"));
    assert_non_null(uri);
    assert_int_equal(strncmp(uri, "sip:resume-", 11), 0);
    assert_true(strlen(uri) > 11 + 32 && uri[11 + 32] == '@');
    memcpy(token, uri + 11, 32);
    token[32] = '\0';
    json_decref(answer);
}

/* What the agent's tools show after the caller came back. */
static void assert_api_assist(const vw_world *w, const char *session, const char *result)
{
    json_t *ctx;
    assert_int_equal(api(w, "GET", session, "", NULL, &ctx), 200);
    json_t *assist = json_object_get(ctx, "assist");
    assert_string_equal(json_string_value(json_object_get(assist, "node")), "verify_pin");
    assert_string_equal(json_string_value(json_object_get(assist, "result")), result);
    assert_string_equal(json_string_value(json_object_get(ctx, "state")), "transfer");
    char *text = json_dumps(ctx, JSON_COMPACT);
    assert_null(strstr(text, VW_PIN)); /* the agent never sees the digits either */
    free(text);
    json_decref(ctx);
}

/* Writes `cl:x:<token>` in the agent API's format (docs/agents.md), living
 * `ttl_ms`. */
static void write_token(const vw_world *w, const char *token, const char *session, const char *node,
                        const char *return_uri, long ttl_ms)
{
    char key[64], ttl[24];
    snprintf(key, sizeof key, "cl:x:%s", token);
    snprintf(ttl, sizeof ttl, "%ld", ttl_ms);
    json_t *value = json_pack("{s:s, s:s, s:s, s:s, s:I}", "session", session, "node", node, "agent", AGENT,
                              "return_uri", return_uri, "created_ms", (json_int_t)th_now_ms());
    char *text = json_dumps(value, JSON_COMPACT);
    const char *argv[] = {"SET", key, text, "PX", ttl};
    char *reply = th_redis_cmd(&w->tw.redis, 5, argv);
    assert_non_null(reply);
    assert_string_equal(reply, "OK");
    free(reply);
    free(text);
    json_decref(value);
}

static bool token_exists(const vw_world *w, const char *token)
{
    char key[64];
    snprintf(key, sizeof key, "cl:x:%s", token);
    return redis_int(w, "EXISTS", key) == 1;
}

/* The token is a credential: no line of the gateway's log names it. */
static void assert_token_unlogged(const vw_world *w, const char *token)
{
    char *log = th_read_text(w->tw.gw.log);
    bool leaked = strstr(log, token) != NULL;
    free(log);
    assert_false(leaked);
}

/* The journey ------------------------------------------------------------------------------*/

/* The citizen identifies and asks for an agent: REFERred to the agent URI
 * of queue "general", the session waits in "transfer". Its id goes to
 * `session`. */
static void citizen_to_agent(vw_world *w, char session[96])
{
    vw_sipp_run r;
    const char *extra[] = {"-key", "keys", TO_AGENT_KEYS, NULL};
    assert_int_equal(vw_sipp(w, &r, "citizen", "e2e-transfer.xml", VW_HOTLINE, extra), 0);
    snprintf(session, 96, "%s", r.session);
    vw_wait_session(w, session, "transfer", NULL);
    json_t *doc = vw_session_doc(w, session);
    assert_string_equal(vw_doc_str(doc, "transfer", "queue"), "general");
    assert_string_equal(vw_doc_str(doc, "vars", "id"), VW_ID);
    json_decref(doc);
    vw_assert_events(w, session, TO_AGENT_EVENTS);
    vw_wait_calls(w, 0);
}

static void return_uri(const vw_world *w, char out[64])
{
    snprintf(out, 64, "sip:" AGENT "@127.0.0.1:%d", w->sipp_port);
}

/* The caller the agent sent to the resume URI types `digits` and is
 * REFERred back to the agent, the session header naming `session`; the
 * agent's phone answers the REFER `refer_answer` ("202" or "603"). */
static void resumed_call(vw_world *w, const char *token, const char *session, const char *digits,
                         const char *refer_answer)
{
    char service[64], uri[64], refer_to[256], want[640];
    vw_sipp_run r;
    snprintf(service, sizeof service, "resume-%s", token);
    const char *extra[] = {"-key", "digits", digits, "-key", "refer_answer", refer_answer, NULL};
    assert_int_equal(vw_sipp(w, &r, "resumed", "resume-assist.xml", service, extra), 0);
    return_uri(w, uri);
    vw_refer_to(refer_to, sizeof refer_to, uri, session);
    snprintf(want, sizeof want, "REFER session=%s refer_to=%s ", session, refer_to);
    vw_assert_sipp_logged_once(&r, want);
}

static void expect_not_found(vw_world *w, const char *tag, const char *service)
{
    vw_sipp_run r;
    assert_int_equal(vw_sipp(w, &r, tag, "e2e-not-found.xml", service, NULL), 0);
}

/* The session is with the agent again, the outcome in its variables and
 * its transfer reason. */
static void assert_assist(const vw_world *w, const char *session, const char *result)
{
    char reason[64];
    vw_wait_session(w, session, "transfer", result);
    json_t *doc = vw_session_doc(w, session);
    snprintf(reason, sizeof reason, "assist verify_pin: %s", result);
    assert_string_equal(vw_doc_str(doc, "vars", "assist_node"), "verify_pin");
    assert_string_equal(vw_doc_str(doc, "transfer", "queue"), "return");
    assert_string_equal(vw_doc_str(doc, "transfer", "reason"), reason);
    assert_string_equal(vw_doc_str(doc, "flow", NULL), "assist");
    assert_string_equal(vw_doc_str(doc, "node", NULL), "return_to_agent");
    json_decref(doc);
}

/* The cases ---------------------------------------------------------------------------------*/

static void test_resume_verified(void **state)
{
    vw_world *w = *state;
    vw_skip_without_pcap();
    char session[96], token[33], service[64];
    citizen_to_agent(w, session);
    api_resume(w, session, "assist.verify_pin", token);

    resumed_call(w, token, session, VW_PIN "#", "202");
    assert_assist(w, session, "verified");
    assert_api_assist(w, session, "verified");
    assert_false(token_exists(w, token));
    assert_events_end(w, session,
                      "input main.after_task 0 | transfer_back agent.to_agent | input assist.ask_pin <secret> | "
                      "result assist.verify ok");
    vw_assert_pin_kept_secret(w, session, VW_PIN);
    assert_token_unlogged(w, token);
    assert_int_equal(th_log_count(&w->tw.gw, "event=voice.resume "), 1);
    assert_int_equal(vw_metric(w, "cardline_voice_resumed_total"), 1);
    vw_wait_calls(w, 0);

    /* The same token again: spent. The session is left as it was. */
    snprintf(service, sizeof service, "resume-%s", token);
    expect_not_found(w, "replay", service);
    assert_assist(w, session, "verified");
    assert_int_equal(th_log_count(&w->tw.gw, "why=no_token"), 1);
    assert_int_equal(vw_metric(w, "cardline_voice_resumed_total"), 1);
    vw_stop_gateway(w);
}

static void test_resume_wrong_pin(void **state)
{
    vw_world *w = *state;
    vw_skip_without_pcap();
    char session[96], token[33];
    citizen_to_agent(w, session);
    api_resume(w, session, "assist.verify_pin", token);

    resumed_call(w, token, session, WRONG_PIN "#", "202");
    assert_assist(w, session, "failed");
    assert_api_assist(w, session, "failed");
    assert_events_end(w, session, "transfer_back agent.to_agent | input assist.ask_pin <secret> | "
                                  "result assist.verify wrong_pin");
    vw_assert_pin_kept_secret(w, session, WRONG_PIN);
    vw_assert_pin_kept_secret(w, session, VW_PIN);
    assert_token_unlogged(w, token);
    vw_stop_gateway(w);
}

/* The agent's phone refuses the caller back: the transfer node's
 * fallback says so and ends the call; the agent still sees the outcome. */
static void test_resume_agent_gone(void **state)
{
    vw_world *w = *state;
    vw_skip_without_pcap();
    char session[96], token[33], uri[64];
    citizen_to_agent(w, session);
    new_token(token);
    return_uri(w, uri);
    write_token(w, token, session, "assist.verify_pin", uri, 60000);

    resumed_call(w, token, session, VW_PIN "#", "603");
    vw_wait_session(w, session, "end", "verified");
    json_t *doc = vw_session_doc(w, session);
    assert_string_equal(vw_doc_str(doc, "node", NULL), "agent_gone");
    assert_string_equal(vw_doc_str(doc, "vars", "assist_node"), "verify_pin");
    json_decref(doc);
    assert_events_end(w, session, "result assist.verify ok | transfer_back assist.return_to_agent");
    assert_int_equal(th_log_count(&w->tw.gw, "event=voice.transfer_failed"), 1);
    vw_assert_pin_kept_secret(w, session, VW_PIN);
    vw_stop_gateway(w);
}

/* The caller leaves before typing: the session ends like any call's, its
 * outcome "abandoned". */
static void test_resume_hangup(void **state)
{
    vw_world *w = *state;
    char session[96], token[33], uri[64], service[64];
    vw_sipp_run r;
    citizen_to_agent(w, session);
    new_token(token);
    return_uri(w, uri);
    write_token(w, token, session, "assist.verify_pin", uri, 60000);

    snprintf(service, sizeof service, "resume-%s", token);
    assert_int_equal(vw_sipp(w, &r, "hangup", "resume-hangup.xml", service, NULL), 0);
    vw_wait_session(w, session, "end", "abandoned");
    json_t *doc = vw_session_doc(w, session);
    assert_string_equal(vw_doc_str(doc, "vars", "assist_node"), "verify_pin");
    assert_string_equal(vw_doc_str(doc, "node", NULL), "ask_pin");
    json_decref(doc);
    assert_int_equal(vw_metric(w, "cardline_voice_resumed_total"), 1);
    vw_wait_calls(w, 0);
    vw_stop_gateway(w);
}

/* Tokens that resume nothing, each refused 404 before or without an answer. */
static void test_resume_refused(void **state)
{
    vw_world *w = *state;
    char token[33], service[64], uri[64];
    return_uri(w, uri);

    new_token(token); /* never written */
    snprintf(service, sizeof service, "resume-%s", token);
    expect_not_found(w, "unknown", service);

    new_token(token); /* expired: its TTL ran out before the call */
    write_token(w, token, "voice:gone@cardline-e2e", "assist.verify_pin", uri, 1000);
    long deadline = th_now_ms() + VW_WAIT_MS;
    while (token_exists(w, token)) {
        if (th_now_ms() > deadline)
            fail_msg("token still in Redis %d ms after its 1 s TTL", VW_WAIT_MS);
        th_poll_pause();
    }
    snprintf(service, sizeof service, "resume-%s", token);
    expect_not_found(w, "expired", service);
    assert_int_equal(th_log_count(&w->tw.gw, "why=no_token"), 2);

    expect_not_found(w, "malformed", "resume-NOT-A-TOKEN");
    expect_not_found(w, "short", "resume-0123abcd");
    assert_int_equal(th_log_count(&w->tw.gw, "why=bad_token"), 2);

    new_token(token); /* names a session that does not exist */
    write_token(w, token, "voice:nobody@cardline-e2e", "assist.verify_pin", uri, 60000);
    snprintf(service, sizeof service, "resume-%s", token);
    expect_not_found(w, "no-session", service);
    assert_false(token_exists(w, token)); /* spent all the same */
    assert_int_equal(th_log_count(&w->tw.gw, "why=no_session"), 1);
    assert_null(vw_session_doc(w, "voice:nobody@cardline-e2e"));

    new_token(token); /* a return URI that would break out of Refer-To */
    write_token(w, token, "voice:nobody@cardline-e2e", "assist.verify_pin", "sip:li@127.0.0.1>;x=<sip:evil", 60000);
    snprintf(service, sizeof service, "resume-%s", token);
    expect_not_found(w, "bad-uri", service);
    assert_int_equal(th_log_count(&w->tw.gw, "why=bad_token"), 3);

    assert_token_unlogged(w, token);
    assert_int_equal(vw_metric(w, "cardline_voice_resumed_total"), 0);
    assert_int_equal(vw_metric(w, "cardline_voice_refused_total"), 6);
    vw_wait_calls(w, 0);
    vw_stop_gateway(w);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_resume_verified, setup, vw_teardown),
        cmocka_unit_test_setup_teardown(test_resume_wrong_pin, setup, vw_teardown),
        cmocka_unit_test_setup_teardown(test_resume_agent_gone, setup, vw_teardown),
        cmocka_unit_test_setup_teardown(test_resume_hangup, setup, vw_teardown),
        cmocka_unit_test_setup_teardown(test_resume_refused, setup, vw_teardown),
    };
    return cmocka_run_group_tests_name("resume_e2e", tests, NULL, NULL);
}
