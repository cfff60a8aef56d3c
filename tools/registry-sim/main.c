/* registry-sim — the reference central card registry: docs/registry-api.md
 * over evhttp and SQLite, for the demo and the tests. main owns the command
 * line, the order of start-up and shut-down, and the exit codes: 0 after
 * SIGTERM/SIGINT, 1 when the database or the listener fails, 2 for bad
 * arguments or a broken seed file. */
#include <ctype.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "control.h"
#include "db.h"
#include "domain.h"
#include "log.h"
#include "records.h"
#include "seed.h"
#include "simclock.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2
#define HOST_MAX 64
#define TOKEN_MAX 256
#define LOSS_DAYS_MAX 365
#define COLLECT_DAYS_MAX 3650

typedef struct {
    char host[HOST_MAX];                    /* listen address */
    int port;                               /* listen port */
    const char *db_path;                    /* SQLite file */
    const char *seed_path;                  /* seed file, or NULL */
    bool reseed;                            /* wipe and load the seed */
    int loss_days;                          /* temporary loss validity */
    int collect_days;                       /* days a card waits at the outlet */
    char initial_pin[DOMAIN_PIN_LEN + 1];   /* the issuer's initial PIN */
    const char *token;                      /* bearer token, or NULL */
    bool control;                           /* serve /_sim */
    bool pin_count;                         /* answers carry the PIN attempts left */
} sim_args;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: registry-sim --listen HOST:PORT --db FILE [--seed FILE] [--reseed]\n"
            "                    [--loss-days N] [--collect-days N] [--initial-pin PIN]\n"
            "                    [--token TOKEN] [--control] [--today YYYY-MM-DD] [--no-pin-count]\n"
            "See tools/registry-sim/README.md.\n");
}

static int refuse(const char *fmt, const char *value)
{
    fprintf(stderr, "registry-sim: ");
    fprintf(stderr, fmt, value);
    fprintf(stderr, "\n");
    usage(stderr);
    return EXIT_USAGE;
}

static bool parse_listen(const char *s, sim_args *a)
{
    const char *colon = strrchr(s, ':');
    char *end = NULL;
    if (colon == NULL || colon == s || (size_t)(colon - s) >= sizeof a->host)
        return false;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port < 1 || port > 65535)
        return false;
    memcpy(a->host, s, (size_t)(colon - s));
    a->host[colon - s] = '\0';
    a->port = (int)port;
    return true;
}

static bool parse_int(const char *s, int min, int max, int *out)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v > max)
        return false;
    *out = (int)v;
    return true;
}

static bool token_valid(const char *t)
{
    size_t n = strlen(t);
    for (size_t i = 0; i < n; i++)
        if (!isgraph((unsigned char)t[i]))
            return false;
    return n >= 1 && n <= TOKEN_MAX;
}

/* Returns 0 when the arguments are usable, else the exit code. */
static int parse_args(int argc, char **argv, sim_args *a)
{
    static const struct option options[] = {
        {"listen", required_argument, NULL, 'l'}, {"db", required_argument, NULL, 'd'},
        {"seed", required_argument, NULL, 's'},   {"reseed", no_argument, NULL, 'r'},
        {"loss-days", required_argument, NULL, 'n'}, {"initial-pin", required_argument, NULL, 'p'},
        {"token", required_argument, NULL, 't'},  {"control", no_argument, NULL, 'c'},
        {"today", required_argument, NULL, 'y'},  {"help", no_argument, NULL, 'h'},
        {"no-pin-count", no_argument, NULL, 'q'}, {"collect-days", required_argument, NULL, 'k'},
        {NULL, 0, NULL, 0}};
    int opt;
    bool listen = false;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'l':
            if (!(listen = parse_listen(optarg, a)))
                return refuse("--listen wants HOST:PORT with a port 1-65535, got \"%s\"", optarg);
            break;
        case 'd': a->db_path = optarg; break;
        case 's': a->seed_path = optarg; break;
        case 'r': a->reseed = true; break;
        case 'n':
            if (!parse_int(optarg, 1, LOSS_DAYS_MAX, &a->loss_days))
                return refuse("--loss-days wants a number of days from 1 to 365, got \"%s\"", optarg);
            break;
        case 'k':
            if (!parse_int(optarg, 1, COLLECT_DAYS_MAX, &a->collect_days))
                return refuse("--collect-days wants a number of days from 1 to 3650, got \"%s\"", optarg);
            break;
        case 'p':
            if (domain_pin_check(optarg, NULL, NULL) == DOMAIN_PIN_MALFORMED)
                return refuse("--initial-pin wants six digits%s", "");
            memcpy(a->initial_pin, optarg, sizeof a->initial_pin);
            break;
        case 't':
            if (!token_valid(optarg))
                return refuse("--token wants 1-256 printable characters without spaces%s", "");
            a->token = optarg;
            break;
        case 'c': a->control = true; break;
        case 'q': a->pin_count = false; break;
        case 'y':
            if (!simclock_set_today(optarg))
                return refuse("--today wants a date YYYY-MM-DD within 100 years, got \"%s\"", optarg);
            break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc)
        return refuse("unexpected argument \"%s\"", argv[optind]);
    if (!listen || a->db_path == NULL)
        return refuse("--listen and --db are required%s", "");
    if (a->reseed && a->seed_path == NULL)
        return refuse("--reseed needs --seed FILE%s", "");
    return 0;
}

/* Opens the database and applies the seed; 0 or the exit code. */
static int prepare_db(const sim_args *a, sqlite3 **h)
{
    char err[512];
    *h = db_open(a->db_path, err, sizeof err);
    if (*h == NULL) {
        log_error("db.open_failed", "reason=%s", log_quote(err).s);
        return EXIT_RUNTIME;
    }
    if (a->seed_path == NULL)
        return 0;
    seed_options so = {a->seed_path, a->reseed, a->initial_pin, a->loss_days};
    seed_result r = seed_load(*h, &so, err, sizeof err);
    if (r == SEED_FAILED) {
        fprintf(stderr, "registry-sim: broken seed: %s\n", err);
        return EXIT_USAGE;
    }
    log_info("seed", "file=%s result=%s", log_quote(a->seed_path).s,
             r == SEED_LOADED ? "loaded" : "skipped_database_has_data");
    return 0;
}

#define DRAIN_GRACE_US 200000

typedef struct {
    struct event_base *base;  /* the loop to stop */
    api *srv;                 /* whose held requests get answered first */
} stopper;

/* Answers held requests, then gives the loop a short, bounded grace to
 * write those answers out before it stops. */
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    stopper *s = arg;
    struct timeval grace = {0, DRAIN_GRACE_US};
    log_info("stop", "signal=%d", (int)sig);
    if (api_drain(s->srv) > 0)
        event_base_loopexit(s->base, &grace);
    else
        event_base_loopbreak(s->base);
}

/* Serves until a signal; 0 or the exit code. */
static int serve(const sim_args *a, sqlite3 *h)
{
    int rc = EXIT_RUNTIME;
    struct event_base *base = event_base_new();
    records *rec = records_new(h, a->loss_days, a->collect_days, a->initial_pin, a->pin_count);
    control *ctl = control_new(h);
    api_options ao = {a->token, a->control};
    api *srv = base && rec && ctl ? api_new(base, h, rec, ctl, &ao) : NULL;
    stopper stop = {base, srv};
    struct event *term = base ? evsignal_new(base, SIGTERM, on_signal, &stop) : NULL;
    struct event *intr = base ? evsignal_new(base, SIGINT, on_signal, &stop) : NULL;
    if (srv && term && intr && api_listen(srv, a->host, a->port)) {
        evsignal_add(term, NULL);
        evsignal_add(intr, NULL);
        char today[SIMCLOCK_DATE_LEN + 1];
        simclock_today(today);
        log_info("start", "listen=%s:%d control=%s auth=%s loss_days=%d collect_days=%d today=%s", a->host,
                 a->port, a->control ? "on" : "off", a->token ? "bearer" : "none", a->loss_days,
                 a->collect_days, today);
        event_base_dispatch(base);
        rc = 0;
    } else {
        log_error("listen_failed", "listen=%s:%d", a->host, a->port);
    }
    if (term)
        event_free(term);
    if (intr)
        event_free(intr);
    api_free(srv);
    control_free(ctl);
    records_free(rec);
    if (base)
        event_base_free(base);
    return rc;
}

int main(int argc, char **argv)
{
    sim_args a = {.loss_days = 7, .collect_days = 365, .initial_pin = "123456", .pin_count = true};
    signal(SIGPIPE, SIG_IGN);
    int rc = parse_args(argc, argv, &a);
    if (rc != 0)
        return rc;
    sqlite3 *h = NULL;
    rc = prepare_db(&a, &h);
    if (rc == 0)
        rc = serve(&a, h);
    db_close(h);
    libevent_global_shutdown();
    return rc;
}
