/* main — the cardline daemon: command line, configuration, the one libevent
 * loop, signals and the order in which modules start and stop.
 *
 *   cardline [--config FILE] [--check] [--version] [--help]
 *
 * Exit status: 0 after a clean stop or a clean --check, 1 when the
 * configuration is invalid or the gateway cannot start, 2 for usage errors.
 * SIGTERM/SIGINT drain the listeners (bounded by [gateway]
 * shutdown_grace_ms) and stop; SIGHUP reloads what can change live. */
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "ops.h"
#include "registry.h"
#include "reload.h"
#include "store.h"
#include "version.h"

typedef struct {
    const char *config_path;    /* --config, or NULL to run on defaults */
    bool check;                 /* --check: validate and exit */
    bool version;               /* --version */
    bool help;                  /* --help */
} cli;

typedef struct {
    const char *config_path;    /* file re-read on SIGHUP, or NULL */
    const conf *conf;           /* the configuration the process started with */
    struct event_base *base;    /* the main loop */
    store *store;               /* Redis sessions */
    registry *registry;         /* central card registry client */
    httpd *http;                /* the HTTP listener */
    ops *ops;                   /* /healthz and /metrics */
    struct event *signals[3];   /* SIGTERM, SIGINT, SIGHUP */
    bool stopping;              /* a stop signal arrived */
} gateway;

/* Command line ----------------------------------------------------------------*/

static void usage(FILE *out)
{
    fprintf(out, "usage: cardline [--config FILE] [--check] [--version] [--help]\n"
                 "  --config FILE  read settings from FILE (default: built-in defaults)\n"
                 "  --check        validate the configuration, print every error, exit\n"
                 "  --version      print the version and exit\n"
                 "  --help         print this text and exit\n");
}

/* Returns false on a usage error (already reported). */
static bool parse_cli(int argc, char **argv, cli *out)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, 'k'},
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
        conf_defaults(c);
        return true;
    }
    bool ok = conf_load(path, c, &errs) == 0;
    print_errors(&errs);
    conf_errors_free(&errs);
    return ok;
}

static void store_options_from(const conf *c, store_options *so)
{
    store_options_default(so);
    so->host = c->redis.host;
    so->port = c->redis.port;
    so->password = c->redis.password;
    so->db = c->redis.db;
    so->op_timeout_ms = c->redis.op_timeout_ms;
    so->reconnect_min_ms = c->redis.reconnect_min_ms;
    so->reconnect_max_ms = c->redis.reconnect_max_ms;
    so->ping_interval_ms = c->redis.ping_interval_ms;
    so->max_pending = c->redis.max_pending;
}

static void registry_options_from(const conf *c, registry_options *ro)
{
    registry_options_default(ro);
    ro->base_url = c->registry.url;
    ro->token = c->registry.token;
    ro->ca_file = c->registry.ca_file;
    ro->cert_file = c->registry.cert_file;
    ro->key_file = c->registry.key_file;
    ro->timeout_ms = c->registry.timeout_ms;
    ro->connect_timeout_ms = c->registry.connect_timeout_ms;
    ro->max_connections = c->registry.max_connections;
    ro->max_pending = c->registry.max_pending;
    ro->read_retries = c->registry.read_retries;
}

static void httpd_options_from(const conf *c, httpd_options *ho)
{
    *ho = (httpd_options){
        .name = "http",
        .host = c->http.listen.host,
        .port = c->http.listen.port,
        .max_body_bytes = c->http.max_body_bytes,
        .max_header_bytes = c->http.max_header_bytes,
        .max_connections = c->http.max_connections,
        .idle_timeout_ms = c->http.idle_timeout_ms,
    };
}

/* Reload ----------------------------------------------------------------------*/

static int apply_log_level(const conf *next, void *arg)
{
    (void)arg;
    log_set_level(next->log.level);
    return 0;
}

/* The settings a reload hook applies; every other change needs a restart. */
static bool applied_live(const conf_key *k)
{
    return strcmp(conf_key_section(k), "log") == 0 && strcmp(conf_key_name(k), "level") == 0;
}

static void report_restart_needed(const conf *running, const conf *next)
{
    const conf_key *k;
    for (size_t i = 0; (k = conf_key_at(i)) != NULL; i++)
        if (!applied_live(k) && conf_key_differs(k, running, next))
            log_warn("reload.restart_needed", "section=%s key=%s", conf_key_section(k),
                     conf_key_name(k));
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
    if (conf_load(gw->config_path, &next, &errs) != 0) {
        for (size_t i = 0; i < errs.count; i++)
            log_error("reload.config_invalid", "error=%s", log_quote(errs.lines[i]).s);
    } else {
        report_restart_needed(gw->conf, &next);
        reload_run(&next);
    }
    conf_errors_free(&errs);
    conf_free(&next);
}

/* Signals ----------------------------------------------------------------------*/

static void drained(void *arg)
{
    gateway *gw = arg;
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
    httpd_drain(gw->http, gw->conf->gateway.shutdown_grace_ms, drained, gw);
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

static bool start_modules(gateway *gw)
{
    store_options so;
    registry_options ro;
    httpd_options ho;
    store_options_from(gw->conf, &so);
    registry_options_from(gw->conf, &ro);
    httpd_options_from(gw->conf, &ho);
    gw->store = store_new(gw->base, &so);
    gw->registry = registry_new(gw->base, &ro);
    gw->http = httpd_new(gw->base, &ho);
    if (gw->store == NULL || gw->registry == NULL || gw->http == NULL)
        return false;
    gw->ops = ops_new(gw->base, gw->http, gw->store, gw->registry,
                      gw->conf->registry.health_interval_ms);
    return gw->ops != NULL && reload_register("log", apply_log_level, NULL) == 0 &&
           watch_signals(gw);
}

/* Pending store and registry operations complete (as unavailable) while
 * their callers still exist; the listener goes last so late replies still
 * find their requests. */
static void stop_modules(gateway *gw)
{
    if (gw->registry)
        registry_free(gw->registry);
    if (gw->store)
        store_free(gw->store);
    ops_free(gw->ops);
    httpd_free(gw->http);
    for (size_t i = 0; i < sizeof gw->signals / sizeof gw->signals[0]; i++)
        if (gw->signals[i])
            event_free(gw->signals[i]);
    reload_clear();
}

static void log_start(const gateway *gw)
{
    const conf_address *a = &gw->conf->http.listen;
    bool v6 = strchr(a->host, ':') != NULL;
    log_info("gateway.start", "version=%s listeners=http://%s%s%s:%d config=%s", CARDLINE_VERSION,
             v6 ? "[" : "", a->host, v6 ? "]" : "", httpd_port(gw->http),
             log_quote(gw->config_path ? gw->config_path : "").s);
}

static int run(const char *config_path, const conf *c)
{
    gateway gw = {.config_path = config_path, .conf = c};
    signal(SIGPIPE, SIG_IGN);
    gw.base = event_base_new();
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
        conf_free(&c);
        return 1;
    }
    int rc = 0;
    if (args.check) {
        printf("%s: ok\n", args.config_path ? args.config_path : "(built-in defaults)");
    } else {
        log_set_level(c.log.level);
        rc = run(args.config_path, &c);
    }
    conf_free(&c);
    return rc;
}
