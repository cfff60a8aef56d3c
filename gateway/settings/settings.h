/* settings — the gateway's configuration as one struct: each module's own
 * options struct, filled straight from cardline.conf by core/config
 * through the key table the module declares on its face. This is the one
 * place that lists the sections; adding a key touches only its module's
 * table (plus configs/cardline.conf and docs/configuration.md).
 *
 * A few values feed more than one module (the per-number window, voice's
 * RTP address, speech's wait); main and runtime hand them on when they
 * start the modules. Main-thread only. */
#ifndef CARDLINE_SETTINGS_H
#define CARDLINE_SETTINGS_H

#include "agents.h"
#include "config.h"
#include "engine.h"
#include "handlers.h"
#include "httpd.h"
#include "log.h"
#include "outbox.h"
#include "registry.h"
#include "sms.h"
#include "sms_out.h"
#include "speech.h"
#include "store.h"
#include "ussd.h"
#include "voice.h"

/* [dialplans] */
typedef struct {
    const char *dir;            /* directory of *.yaml menu scripts (never NULL); applied live */
} settings_dialplans;

/* [gateway] */
typedef struct {
    int shutdown_grace_ms;      /* wait for in-flight requests at SIGTERM */
    int nodes;                  /* gateways sharing this Redis; > 1 needs the shared secrets
                                 * and a consumer name of this node's own */
} settings_gateway;

/* Every section, in the order of configs/cardline.conf. Strings are owned
 * by the struct (settings_free); the pointers to other modules (engine,
 * store…) are left NULL for whoever starts them. */
typedef struct {
    log_options log;
    httpd_options http;
    store_options redis;
    registry_options registry;
    settings_dialplans dialplans;
    engine_options session;
    ussd_options ussd;
    sms_options sms;
    outbox_options outbox;
    sms_out_options kannel;
    handler_limits workflows;
    voice_options voice;
    speech_options speech;
    agents_options agents;
    settings_gateway gateway;
} conf;

/* The sections above, for conf_key_at and conf_key_differs. */
extern const conf_schema settings_schema;

/* Every key's default. Release with settings_free. */
void settings_defaults(conf *c);

/* Defaults, then the file on top: conf_load on settings_schema (0, or -1
 * with every error in `errs`; callers must not run on a failed load). */
int settings_load(const char *path, conf *c, conf_errors *errs);

void settings_free(conf *c);

#endif
