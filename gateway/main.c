/* main — the cardline daemon: command line, configuration, the one libevent
 * loop, signals and the order in which modules start and stop.
 *
 *   cardline [--config FILE] [--check] [--prompt-list] [--version] [--help]
 *
 * Exit status: 0 after a clean stop or a clean --check, 1 when the
 * configuration or the dialplans are invalid, prompt audio is missing for
 * an enabled voice channel, or the gateway cannot start, 2 for usage
 * errors. SIGTERM/SIGINT drain the listeners (bounded by
 * [gateway] shutdown_grace_ms) and stop; SIGHUP reloads what can change
 * live: the log settings and the dialplans. */
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "ops.h"
#include "reload.h"
#include "runtime.h"
#include "settings.h"
#include "sms.h"
#include "sms_out.h"
#include "ussd.h"
#include "version.h"
#include "voice.h"

typedef struct {
    const char *config_path;    /* --config, or NULL to run on defaults */
    bool check;                 /* --check: validate and exit */
    bool prompt_list;           /* --prompt-list: print the audio files voice needs */
    bool version;               /* --version */
    bool help;                  /* --help */
} cli;

typedef struct {
    const char *config_path;    /* file re-read on SIGHUP, or NULL */
    const conf *conf;           /* the configuration the process started with */
    struct event_base *base;    /* the main loop */
    dialplan *dialplans;        /* the set loaded at start (main holds a reference) */
    runtime *rt;                /* store, registry client, engine */
    httpd *http;                /* the HTTP listener */
    ussd *ussd;                 /* POST /ussd on it */
    sms *sms;                   /* /sms/kannel on it */
    sms_out *sms_out;           /* SMS out through Kannel; /sms/dlr on the listener */
    ops *ops;                   /* /healthz and /metrics */
    voice *voice;               /* SIP calls, when [voice] enabled */
    httpd *agents_http;         /* the agent API's own listener, when [agents] enabled */
    agents *agents;             /* the agent API on it */
    int draining;               /* listeners still draining after a stop signal */
    struct event *signals[3];   /* SIGTERM, SIGINT, SIGHUP */
    struct event *log_timer;    /* writes the held log lines every [log] flush_ms */
    bool stopping;              /* a stop signal arrived */
} gateway;

/* Command line ----------------------------------------------------------------*/

static void usage(FILE *out)
{
    fprintf(out, "usage: cardline [--config FILE] [--check] [--prompt-list] [--version] [--help]\n"
                 "  --config FILE  read settings from FILE (default: built-in defaults)\n"
                 "  --check        validate the configuration, the dialplans and (voice\n"
                 "                 enabled) their prompt audio, print every error, exit\n"
                 "  --prompt-list  print every prompt audio file voice needs, one per line:\n"
                 "                 LANG<TAB>PATH<TAB>TEXT (what scripts/prompts renders)\n"
                 "  --version      print the version and exit\n"
                 "  --help         print this text and exit\n");
}

/* Returns false on a usage error (already reported). */
static bool parse_cli(int argc, char **argv, cli *out)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, 'k'},
        {"prompt-list", no_argument, NULL, 'p'},
        {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    *out = (cli){0};
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'c': out->config_path = optarg; break;
        case 'k': out->check = true; break;
        case 'p': out->prompt_list = true; break;
        case 'v': out->version = true; break;
        case 'h': out->help = true; break;
        default: return false;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "cardline: unexpected argument '%s'\n", argv[optind]);
        return false;
    }
    return true;
}

/* Configuration ---------------------------------------------------------------*/

static void print_errors(const conf_errors *errs)
{
    for (size_t i = 0; i < errs->count; i++)
        fprintf(stderr, "%s\n", errs->lines[i]);
}

/* Loads the file (or the defaults). Returns false after printing errors. */
static bool load_config(const char *path, conf *c)
{
    conf_errors errs;
    if (path == NULL) {
        settings_defaults(c);
        return true;
    }
    bool ok = settings_load(path, c, &errs) == 0;
    print_errors(&errs);
    conf_errors_free(&errs);
    return ok;
}

/* Reload ----------------------------------------------------------------------*/

static void on_log_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    log_flush();
}

/* Holding lines saves a write per line (see log.h); flush_ms 0 turns it off. */
static int apply_log(const conf *next, void *arg)
{
    gateway *gw = arg;
    log_set_level(next->log.level);
    log_set_hold(next->log.flush_ms > 0);
    event_del(gw->log_timer);
    if (next->log.flush_ms > 0) {
        struct timeval every = {next->log.flush_ms / 1000, next->log.flush_ms % 1000 * 1000};
        event_add(gw->log_timer, &every);
    }
    return 0;
}

static int apply_dialplans(const conf *next, void *arg)
{
    gateway *gw = arg;
    int rc = runtime_reload_dialplans(gw->rt, next->dialplans.dir);
    if (rc == 0 && gw->voice)
        voice_reload(gw->voice);
    return rc;
}

/* Keys marked live in their table are applied by the hooks above; every
 * other change needs a restart. */
static void report_restart_needed(const conf *running, const conf *next)
{
    const conf_key *k;
    const char *section;
    for (size_t i = 0; (k = conf_key_at(&settings_schema, i, &section)) != NULL; i++)
        if (!k->live && conf_key_differs(&settings_schema, section, k, running, next))
            log_warn("reload.restart_needed", "section=%s key=%s", section, k->name);
}

static void reload(gateway *gw)
{
    log_info("gateway.reload", "config=%s", log_quote(gw->config_path ? gw->config_path : "").s);
    if (gw->config_path == NULL) {
        reload_run(gw->conf);
        return;
    }
    conf next;
    conf_errors errs;
    if (settings_load(gw->config_path, &next, &errs) != 0) {
        for (size_t i = 0; i < errs.count; i++)
            log_error("reload.config_invalid", "error=%s", log_quote(errs.lines[i]).s);
    } else {
        report_restart_needed(gw->conf, &next);
        reload_run(&next);
    }
    conf_errors_free(&errs);
    settings_free(&next);
}

/* Signals ----------------------------------------------------------------------*/

static void drained(void *arg)
{
    gateway *gw = arg;
    if (--gw->draining == 0)
        event_base_loopbreak(gw->base);
}

static void on_signal(evutil_socket_t signo, short what, void *arg)
{
    (void)what;
    gateway *gw = arg;
    if (signo == SIGHUP) {
        reload(gw);
        return;
    }
    if (gw->stopping) {
        log_warn("gateway.stop_now", "signal=%s", sigabbrev_np((int)signo));
        event_base_loopbreak(gw->base);
        return;
    }
    gw->stopping = true;
    log_info("gateway.stopping", "signal=%s grace_ms=%d", sigabbrev_np((int)signo),
             gw->conf->gateway.shutdown_grace_ms);
    gw->draining = gw->agents_http ? 2 : 1;
    httpd_drain(gw->http, gw->conf->gateway.shutdown_grace_ms, drained, gw);
    if (gw->agents_http)
        httpd_drain(gw->agents_http, gw->conf->gateway.shutdown_grace_ms, drained, gw);
}

static bool watch_signals(gateway *gw)
{
    static const int signos[] = {SIGTERM, SIGINT, SIGHUP};
    for (size_t i = 0; i < sizeof signos / sizeof signos[0]; i++) {
        gw->signals[i] = evsignal_new(gw->base, signos[i], on_signal, gw);
        if (gw->signals[i] == NULL || evsignal_add(gw->signals[i], NULL) != 0)
            return false;
    }
    return true;
}

/* Running ------------------------------------------------------------------------*/

static bool send_code_now(void *ctx, const char *to, const char *text)
{
    return sms_out_send_now(ctx, to, text);
}

/* SMS out: the outbox's "sms" deliverer, /sms/dlr on the listener and the
 * direct sends of one-time codes, when a Kannel sendsms user is configured.
 * A gateway without Kannel still runs, its SMS entries waiting in the
 * outbox for one that has it (codes cannot be sent then). */
static bool start_sms_out(gateway *gw)
{
    const sms_out_options *so = &gw->conf->kannel;
    if (so->username == NULL) {
        log_warn("sms_out.disabled", "why=%s", log_quote("[kannel] username unset").s);
        return true;
    }
    gw->sms_out = sms_out_new(gw->base, runtime_store(gw->rt), runtime_outbox(gw->rt), so);
    if (gw->sms_out == NULL || sms_out_dlr_route(gw->sms_out, gw->http) != 0)
        return false;
    runtime_set_send_now(gw->rt, send_code_now, gw->sms_out);
    return true;
}

static bool voice_up(const void *v)
{
    return voice_alive(v);
}

/* RTP takes the address SDP gives and room for every call; values wait
 * as [speech] says; recorded values sit with the recorded prompts. */
static bool start_voice(gateway *gw)
{
    const conf *c = gw->conf;
    if (!c->voice.enabled)
        return true;
    speech_options so = c->speech;
    so.recorded_dir = c->voice.recorded_dir;
    voice_options vo = c->voice;
    vo.engine = runtime_engine(gw->rt);
    vo.store = runtime_store(gw->rt);
    vo.media.bind_addr = c->voice.sip.rtp_address;
    vo.media.max_streams = c->voice.sip.max_calls;
    vo.media.value_wait_ms = c->speech.wait_ms;
    vo.speech = c->speech.enabled ? &so : NULL;
    gw->voice = voice_new(gw->base, &vo);
    return gw->voice != NULL;
}

/* The agent API on a listener of its own, when [agents] is enabled. */
static bool start_agents(gateway *gw)
{
    const conf *c = gw->conf;
    if (!c->agents.enabled)
        return true;
    httpd_options ho = {
        .name = "agents",
        .host = c->agents.listen_host,
        .port = c->agents.listen_port,
        .max_body_bytes = AGENTS_MAX_BODY_BYTES,
        .max_header_bytes = AGENTS_MAX_HEADER_BYTES,
        .max_connections = AGENTS_MAX_CONNECTIONS,
        .idle_timeout_ms = c->http.idle_timeout_ms,
        .request_timeout_ms = c->http.request_timeout_ms,
    };
    agents_options ao = c->agents;
    ao.engine = runtime_engine(gw->rt);
    ao.store = runtime_store(gw->rt);
    ao.outbox = runtime_outbox(gw->rt);
    ao.resume_host = c->voice.sip.bind_addr;
    ao.resume_port = c->voice.sip.port;
    ao.node_name = c->outbox.consumer;
    gw->agents_http = httpd_new(gw->base, &ho);
    if (gw->agents_http == NULL)
        return false;
    gw->agents = agents_new(gw->agents_http, &ao);
    return gw->agents != NULL;
}

static bool start_modules(gateway *gw)
{
    const conf *c = gw->conf;
    httpd_options ho = c->http;
    ussd_options uo = c->ussd;
    sms_options so = c->sms;
    ho.name = "http";
    gw->rt = runtime_new(gw->base, gw->conf, gw->dialplans);
    gw->http = httpd_new(gw->base, &ho);
    if (gw->rt == NULL || gw->http == NULL)
        return false;
    if (runtime_digest_key_random(gw->rt))
        log_warn("runtime.digest_secret_random", "why=%s",
                 log_quote("[workflows] digest_secret unset: codes do not survive a restart").s);
    /* The per-number limits are [workflows]', shared by the text channels. */
    uo.engine = runtime_engine(gw->rt);
    uo.starts_per_number = so.starts_per_number = c->workflows.sessions_per_number;
    uo.number_window_s = so.number_window_s = c->workflows.number_window_s;
    gw->ussd = ussd_new(gw->base, gw->http, &uo);
    gw->sms = sms_new(runtime_engine(gw->rt), gw->http, &so);
    if (gw->ussd == NULL || gw->sms == NULL || !start_sms_out(gw) || !start_voice(gw) || !start_agents(gw))
        return false;
    gw->ops = ops_new(gw->base, gw->http, runtime_store(gw->rt), runtime_registry(gw->rt),
                      gw->conf->registry.health_interval_ms);
    if (gw->ops && gw->voice)
        ops_watch(gw->ops, "voice", voice_up, gw->voice);
    gw->log_timer = event_new(gw->base, -1, EV_PERSIST, on_log_flush, NULL);
    return gw->ops != NULL && gw->log_timer != NULL && apply_log(gw->conf, gw) == 0 &&
           reload_register("log", apply_log, gw) == 0 &&
           reload_register("dialplans", apply_dialplans, gw) == 0 && watch_signals(gw);
}

/* Channels let go of their hops first (those finish into nothing); then
 * hops, store and registry operations in flight complete as unavailable;
 * the listener goes last so late replies still find their requests. */
static void stop_modules(gateway *gw)
{
    voice_free(gw->voice);
    ussd_free(gw->ussd);
    sms_free(gw->sms);
    agents_free(gw->agents);
    runtime_set_send_now(gw->rt, NULL, NULL);
    sms_out_free(gw->sms_out);
    runtime_free(gw->rt);
    ops_free(gw->ops);
    httpd_free(gw->http);
    httpd_free(gw->agents_http);
    for (size_t i = 0; i < sizeof gw->signals / sizeof gw->signals[0]; i++)
        if (gw->signals[i])
            event_free(gw->signals[i]);
    if (gw->log_timer)
        event_free(gw->log_timer);
    log_set_hold(false);
    reload_clear();
}

static void log_start(const gateway *gw)
{
    const char *host = gw->conf->http.host;
    bool v6 = strchr(host, ':') != NULL;
    log_info("gateway.start", "version=%s listeners=http://%s%s%s:%d config=%s dialplan=%s",
             CARDLINE_VERSION, v6 ? "[" : "", host, v6 ? "]" : "", httpd_port(gw->http),
             log_quote(gw->config_path ? gw->config_path : "").s, dialplan_version(gw->dialplans));
}

/* epoll's changelist folds the add/delete pairs of one loop turn into one
 * epoll_ctl each: a USSD hop re-arms the same sockets several times (about
 * 7% of its cost measured by scripts/bench ussd). Safe for us: no fd is
 * dup'ed while watched. */
static struct event_base *new_event_base(void)
{
    struct event_config *cfg = event_config_new();
    if (cfg == NULL)
        return NULL;
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    struct event_base *base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

static int run(const char *config_path, const conf *c, dialplan *dp)
{
    gateway gw = {.config_path = config_path, .conf = c, .dialplans = dp};
    signal(SIGPIPE, SIG_IGN);
    gw.base = new_event_base();
    if (gw.base == NULL)
        return 1;
    int rc = 0;
    if (start_modules(&gw)) {
        log_start(&gw);
        event_base_dispatch(gw.base);
        log_info("gateway.stopped", NULL);
    } else {
        log_error("gateway.start_failed", NULL);
        rc = 1;
    }
    stop_modules(&gw);
    event_base_free(gw.base);
    metrics_reset();
    return rc;
}

/* --check and --prompt-list ---------------------------------------------------------*/

static void print_needed(const char *lang, const char *path, const char *text, void *arg)
{
    (void)arg;
    printf("%s\t%s\t%s\n", lang, path, text);
}

static void print_audio_problem(bool missing, const char *why, void *arg)
{
    size_t *count = arg;
    (*count)++;
    fprintf(stderr, "%s%s\n", why, missing ? " (run scripts/prompts or record it)" : "");
}

/* Prompt audio of an enabled voice channel: true when nothing is missing
 * or unusable (each problem printed). */
static bool check_audio(const conf *c, dialplan *dp)
{
    if (!c->voice.enabled)
        return true;
    size_t problems = 0;
    voice_audio *a = voice_audio_load(dp, c->voice.prompts_dir, c->voice.recorded_dir, print_audio_problem,
                                      &problems);
    voice_audio_stats st = {0};
    if (a)
        voice_audio_stats_get(a, &st);
    voice_audio_unref(a);
    if (problems == 0)
        printf("%s: ok (%zu prompt audio files)\n", c->voice.prompts_dir, st.files);
    return a != NULL && problems == 0;
}

/* The espeak-ng voices of enabled speech: true when each is known. */
static bool check_speech(const conf *c)
{
    if (!c->voice.enabled || !c->speech.enabled)
        return true;
    char why[160];
    const char *bad = speech_check_voices(c->speech.voices, why, sizeof why);
    if (bad)
        fprintf(stderr, "[speech] voices: %s\n", bad);
    else
        printf("[speech] voices: ok (%s)\n", c->speech.voices);
    return bad == NULL;
}

/* The tokens file of an enabled agent API: true when clean, every problem
 * printed as FILE:LINE: message. */
static bool check_agents(const conf *c, bool say_ok)
{
    if (!c->agents.enabled)
        return true;
    agents_errors errs;
    int n = agents_check(c->agents.tokens_file, &errs);
    for (size_t i = 0; i < errs.count; i++)
        fprintf(stderr, "%s\n", errs.lines[i]);
    agents_errors_free(&errs);
    if (n >= 0 && say_ok)
        printf("%s: ok (%d agents)\n", c->agents.tokens_file, n);
    return n >= 0;
}

int main(int argc, char **argv)
{
    cli args;
    if (!parse_cli(argc, argv, &args)) {
        usage(stderr);
        return 2;
    }
    if (args.help) {
        usage(stdout);
        return 0;
    }
    if (args.version) {
        printf("cardline %s\n", CARDLINE_VERSION);
        return 0;
    }
    conf c;
    if (!load_config(args.config_path, &c)) {
        settings_free(&c);
        return 1;
    }
    dialplan *dp = runtime_load_dialplans_print(c.dialplans.dir, stderr);
    int rc = 1;
    if (dp != NULL && args.prompt_list) {
        voice_audio_needed(dp, print_needed, NULL);
        rc = 0;
    } else if (dp != NULL && args.check) {
        printf("%s: ok\n", args.config_path ? args.config_path : "(built-in defaults)");
        printf("%s: ok (version %s)\n", c.dialplans.dir, dialplan_version(dp));
        bool audio_ok = check_audio(&c, dp), speech_ok = check_speech(&c);
        rc = check_agents(&c, true) && audio_ok && speech_ok ? 0 : 1;
    } else if (dp != NULL && check_agents(&c, false)) {
        log_set_level(c.log.level);
        rc = run(args.config_path, &c, dp);
    }
    if (dp != NULL)
        dialplan_unref(dp);
    settings_free(&c);
    return rc;
}
