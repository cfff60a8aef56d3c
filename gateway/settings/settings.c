/* settings — the list of sections that makes up cardline.conf (see
 * settings.h). Owns no key: each belongs to the module whose options it
 * sets; [dialplans] and [gateway] are the daemon's own. */
#include "settings.h"

#include <string.h>

static const conf_key dialplans_keys[] = {
    CONF_LIVE(settings_dialplans, "dir", CONF_DIR, dir, "dialplans"),
};
static const conf_section dialplans_config = CONF_SECTION("dialplans", dialplans_keys);

static const conf_key gateway_keys[] = {
    CONF_KEY_INT(settings_gateway, "shutdown_grace_ms", shutdown_grace_ms, 0, 600000, "5000"),
    CONF_KEY_INT(settings_gateway, "nodes", nodes, 1, 1000, "1"),
};
static const conf_section gateway_config = CONF_SECTION("gateway", gateway_keys);

#define PART(section, field) {&section, offsetof(conf, field)}

static const conf_part parts[] = {
    PART(log_config, log),
    PART(httpd_config, http),
    PART(store_config, redis),
    PART(registry_config, registry),
    PART(dialplans_config, dialplans),
    PART(engine_config, session),
    PART(ussd_config, ussd),
    PART(sms_config, sms),
    PART(outbox_config, outbox),
    PART(sms_out_config, kannel),
    PART(handler_config, workflows),
    PART(voice_config, voice),
    PART(speech_config, speech),
    PART(agents_config, agents),
    PART(gateway_config, gateway),
};

/* Gateways sharing a Redis must derive the same replay keys and digests
 * and never read each other's outbox leases as their own: with more than
 * one node configured, the secrets are set and the consumer is this
 * node's. Each problem cites the `nodes` line. */
static void vet_cluster(const void *settings, conf_report_fn *report, void *ctx)
{
    const conf *c = settings;
    if (c->gateway.nodes <= 1)
        return;
    outbox_options def;
    outbox_options_default(&def);
    if (!c->ussd.hop_key_secret)
        report(ctx, "gateway", "nodes",
               "more than one node needs [ussd] hop_key_secret, the same on every node "
               "(else a hop on another node is not recognised as a retry)");
    if (!c->workflows.digest_secret)
        report(ctx, "gateway", "nodes",
               "more than one node needs [workflows] digest_secret, the same on every node "
               "(else a one-time code sent by one node does not match on another)");
    if (c->outbox.consumer && def.consumer && strcmp(c->outbox.consumer, def.consumer) == 0)
        report(ctx, "gateway", "nodes",
               "more than one node needs [outbox] consumer set to a name of this node's own "
               "(else the nodes take each other's leases)");
}

const conf_schema settings_schema = {parts, sizeof parts / sizeof parts[0], vet_cluster};

void settings_defaults(conf *c)
{
    memset(c, 0, sizeof *c);
    conf_defaults(&settings_schema, c);
}

int settings_load(const char *path, conf *c, conf_errors *errs)
{
    memset(c, 0, sizeof *c);
    return conf_load(&settings_schema, path, c, errs);
}

void settings_free(conf *c)
{
    conf_free(&settings_schema, c);
}
