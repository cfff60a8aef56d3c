/* overview — what a console asks about itself and the gateway: GET
 * /v1/me (the signed-in agent), GET /v1/overview (the supervisor's
 * numbers) and GET /v1/funnel (the engine's funnel).
 *
 * The overview reads Redis once, pipelined (sessions live per channel,
 * the agent queue, the outbox and its dead entries: the whole cluster's),
 * and adds what this process knows (dependency health as /healthz sees
 * it, its node name). */
#include "agents_int.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>

#include "channel.h"
#include "metrics.h"
#include "store.h"
#include "walltime.h"

void agents_ep_me(agent_req *r)
{
    agents_req_reply(r, 200,
                     json_pack("{s:s, s:s, s:[], s:b}", "agent", r->who->name, "role",
                               agents_auth_role_name(r->who->role), "queues", "can_resume",
                               r->who->sip_uri[0] != '\0'));
}

void agents_ep_funnel(agent_req *r)
{
    agents_req_reply(r, 200, engine_funnel(r->owner->engine));
}

/* GET /v1/overview --------------------------------------------------------------*/

/* Up, down, or unknown when this process does not watch the dependency. */
static const char *health(const char *name, const char *labels)
{
    double v = metrics_lookup(name, labels, -1);
    return v < 0 ? "unknown" : v > 0 ? "up" : "down";
}

static json_t *dependencies(agent_req *r)
{
    return json_pack("{s:s, s:s, s:s}", "redis", store_connected(r->owner->store) ? "up" : "down", "registry",
                     health("cardline_dependency_up", "dependency=\"registry\""), "voice",
                     health("cardline_voice_sip_up", NULL));
}

static long long int_at(const redisReply *reply, size_t i)
{
    const redisReply *e = i < reply->elements ? reply->element[i] : NULL;
    return e && e->type == REDIS_REPLY_INTEGER ? e->integer : -1;
}

static void overview_read(store_status st, const redisReply *reply, void *arg)
{
    agent_req *r = agents_req_back_ok(arg, st);
    if (r == NULL)
        return;
    /* The script's answer: live per channel (CHANNEL_COUNT), queue, outbox, dead. */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != CHANNEL_COUNT + 3) {
        agents_req_fail(r, 502, "bad_reply", "Redis answered unexpectedly.");
        return;
    }
    json_t *live = json_object();
    for (int ch = 0; ch < CHANNEL_COUNT; ch++)
        json_object_set_new(live, channel_name((channel_kind)ch), json_integer(int_at(reply, (size_t)ch)));
    agents_req_reply(r, 200,
                     json_pack("{s:s, s:I, s:o, s:I, s:{s:I, s:I}, s:o, s:{s:I, s:I}}", "node", r->owner->node_name,
                               "at_ms", (json_int_t)walltime_ms(), "sessions", live, "waiting_for_agent",
                               (json_int_t)int_at(reply, CHANNEL_COUNT), "outbox", "pending",
                               (json_int_t)int_at(reply, CHANNEL_COUNT + 1), "dead",
                               (json_int_t)int_at(reply, CHANNEL_COUNT + 2), "dependencies", dependencies(r),
                               "this_node", "streams", (json_int_t)r->owner->stream_count, "calls",
                               (json_int_t)metrics_lookup("cardline_voice_calls", NULL, 0)));
}

/* Live sessions per channel: those started within the channel's session
 * TTL and not ended (older entries, sessions that expired unended, are
 * trimmed here). KEYS: live sets per channel, queue, outbox, dead. ARGV:
 * now, then each channel's TTL in ms. */
static const char overview_script[] =
    "local out = {}\n"
    "local n = #KEYS - 3\n"
    "for i = 1, n do\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. (tonumber(ARGV[1]) - tonumber(ARGV[i + 1])))\n"
    "  out[i] = redis.call('ZCARD', KEYS[i])\n"
    "end\n"
    "out[n + 1] = redis.call('ZCARD', KEYS[n + 1])\n"
    "out[n + 2] = redis.call('XLEN', KEYS[n + 2])\n"
    "out[n + 3] = redis.call('XLEN', KEYS[n + 3])\n"
    "return out\n";

void agents_ep_overview(agent_req *r)
{
    enum { ARGS = 3 + CHANNEL_COUNT + 3 + 1 + CHANNEL_COUNT };
    char keys[CHANNEL_COUNT][sizeof ENGINE_LIVE_PREFIX + 16], ttl[CHANNEL_COUNT][24], now[24], nkeys[8];
    const char *argv[ARGS];
    int argc = 0;
    snprintf(nkeys, sizeof nkeys, "%d", CHANNEL_COUNT + 3);
    snprintf(now, sizeof now, "%lld", (long long)walltime_ms());
    argv[argc++] = "EVAL";
    argv[argc++] = overview_script;
    argv[argc++] = nkeys;
    for (int ch = 0; ch < CHANNEL_COUNT; ch++) {
        snprintf(keys[ch], sizeof keys[ch], ENGINE_LIVE_PREFIX "%s", channel_name((channel_kind)ch));
        argv[argc++] = keys[ch];
    }
    argv[argc++] = ENGINE_QUEUE_KEY;
    argv[argc++] = OUTBOX_STREAM_KEY;
    argv[argc++] = OUTBOX_DEAD_KEY;
    argv[argc++] = now;
    for (int ch = 0; ch < CHANNEL_COUNT; ch++) {
        snprintf(ttl[ch], sizeof ttl[ch], "%lld",
                 (long long)engine_session_ttl(r->owner->engine, (channel_kind)ch) * 1000);
        argv[argc++] = ttl[ch];
    }
    agents_req_command(r, argc, argv, NULL, overview_read);
}
