/* cardline-sim — one cardline session in a terminal, or a golden
 * transcript replayed and compared, against the Redis and the registry
 * named in the configuration, through the daemon's own engine.
 *
 *   cardline-sim [--config FILE] --channel voice|ussd|sms --from CALLER
 *                [--entry ENTRY] [--lang LANG] [--session ID] [--record FILE]
 *   cardline-sim [--config FILE] --transcript FILE
 *
 * Exit status: 0 when the session ran (or the transcript matched), 1 when
 * it could not run or the transcript differs (a diff is printed), 2 for
 * usage errors and unreadable transcripts. This file owns the command line
 * and the two modes; driver.c runs the session, transcript.c the format. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "settings.h"
#include "driver.h"
#include "log.h"
#include "transcript.h"

/* How long to wait for Redis before giving up. */
#define CONNECT_TIMEOUT_MS 5000

typedef struct {
    const char *config;      /* --config, or NULL for the built-in defaults */
    const char *channel;     /* --channel */
    const char *from;        /* --from */
    const char *entry;       /* --entry, or NULL: the first input line */
    const char *lang;        /* --lang */
    const char *session;     /* --session */
    const char *record;      /* --record: write a transcript of the run here */
    const char *transcript;  /* --transcript: replay and compare this file */
} cli;

/* Command line ----------------------------------------------------------------*/

static void usage(FILE *out)
{
    fprintf(out,
            "usage: cardline-sim [--config FILE] --channel voice|ussd|sms --from CALLER\n"
            "                    [--entry ENTRY] [--lang LANG] [--session ID] [--record FILE]\n"
            "       cardline-sim [--config FILE] --transcript FILE\n"
            "  --config FILE      gateway settings: Redis, registry, dialplans (default: built-in)\n"
            "  --channel NAME     the channel the session arrives on\n"
            "  --from CALLER      the caller's phone number or SIP user\n"
            "  --entry ENTRY      number dialled, USSD code or first SMS text\n"
            "                     (default: the first line read)\n"
            "  --lang LANG        preferred language (default: the dialplans' first)\n"
            "  --session ID       session id (default: made up)\n"
            "  --record FILE      also write the run as a transcript to FILE\n"
            "  --transcript FILE  replay FILE and compare every shown line\n"
            "Input lines: digits or text; %s, %s and %s stand for those events;\n"
            "%s types the last one-time code received; %s and %s make them expire;\n"
            "after a transfer, \"%sFLOW.NODE\" acts as the agent sending the session there.\n",
            DRV_TIMEOUT, DRV_NO_INPUT, DRV_HANGUP, DRV_CODE, DRV_EXPIRE_CODE, DRV_EXPIRE_SESSION, DRV_AGENT);
}

static bool parse_cli(int argc, char **argv, cli *out)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},   {"channel", required_argument, NULL, 'C'},
        {"from", required_argument, NULL, 'f'},     {"entry", required_argument, NULL, 'e'},
        {"lang", required_argument, NULL, 'l'},     {"session", required_argument, NULL, 's'},
        {"record", required_argument, NULL, 'r'},   {"transcript", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    int opt;
    *out = (cli){0};
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'c': out->config = optarg; break;
        case 'C': out->channel = optarg; break;
        case 'f': out->from = optarg; break;
        case 'e': out->entry = optarg; break;
        case 'l': out->lang = optarg; break;
        case 's': out->session = optarg; break;
        case 'r': out->record = optarg; break;
        case 't': out->transcript = optarg; break;
        case 'h': usage(stdout); exit(0);
        default: return false;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "cardline-sim: unexpected argument '%s'\n", argv[optind]);
        return false;
    }
    if (out->transcript != NULL) {
        if (out->channel || out->from || out->entry || out->lang || out->session || out->record) {
            fprintf(stderr, "cardline-sim: --transcript takes the session from the file\n");
            return false;
        }
        return true;
    }
    if (out->channel == NULL || out->from == NULL) {
        fprintf(stderr, "cardline-sim: --channel and --from are required\n");
        return false;
    }
    return true;
}

static bool load_config(const char *path, conf *c)
{
    if (path == NULL) {
        settings_defaults(c);
        return true;
    }
    conf_errors errs;
    bool ok = settings_load(path, c, &errs) == 0;
    for (size_t i = 0; i < errs.count; i++)
        fprintf(stderr, "%s\n", errs.lines[i]);
    conf_errors_free(&errs);
    return ok;
}

/* Input ------------------------------------------------------------------------------*/

/* Reads one line without its line break; false at the end of input. A
 * secret is read with the terminal's echo off. Overlong lines are cut. */
static bool read_input(char *buf, size_t size, bool secret)
{
    struct termios saved, quiet;
    bool hush = secret && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
    if (hush) {
        quiet = saved;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    }
    bool got = fgets(buf, (int)size, stdin) != NULL;
    if (hush) {
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
        putchar('\n');
    }
    if (!got)
        return false;
    size_t len = strcspn(buf, "\r\n");
    if (buf[len] == '\0' && !feof(stdin)) {
        int ch;
        while ((ch = getchar()) != EOF && ch != '\n')
            ;
    }
    buf[len] = '\0';
    return true;
}

/* Interactive mode -----------------------------------------------------------------*/

static void show(const drv_reply *r, FILE *record)
{
    for (size_t i = 0; i < r->count; i++) {
        puts(r->lines[i]);
        if (record)
            ts_write_line(record, TS_OUTPUT, r->lines[i]);
    }
    fflush(stdout);
}

static FILE *open_record(const cli *a, channel_kind ch, const char *entry)
{
    FILE *f = fopen(a->record, "w");
    if (f == NULL) {
        perror(a->record);
        return NULL;
    }
    transcript head = {
        .channel = (char *)channel_name(ch),
        .from = (char *)a->from,
        .entry = (char *)entry,
        .lang = (char *)a->lang,
        .session = (char *)a->session,
    };
    ts_write_header(f, &head);
    return f;
}

static int run_interactive(const cli *a, const conf *c)
{
    channel_kind ch;
    char entry[TS_MAX_LINE_BYTES], line[TS_MAX_LINE_BYTES];
    if (channel_parse(a->channel, &ch) != 0) {
        fprintf(stderr, "cardline-sim: unknown channel '%s'\n", a->channel);
        return 2;
    }
    if (a->entry != NULL)
        snprintf(entry, sizeof entry, "%s", a->entry);
    else if (!read_input(entry, sizeof entry, false))
        return 0;
    driver *d = drv_new(c, CONNECT_TIMEOUT_MS);
    if (d == NULL)
        return 1;
    FILE *record = NULL;
    if (a->record != NULL && (record = open_record(a, ch, entry)) == NULL) {
        drv_free(d);
        return 1;
    }
    drv_session s = {ch, a->from, entry, a->lang, a->session};
    drv_reply r;
    bool ok = drv_start(d, &s, &r);
    while (ok) {
        show(&r, record);
        bool secret = r.secret;
        if (!r.waiting || !read_input(line, sizeof line, secret))
            break;
        if (record)
            ts_write_line(record, TS_INPUT, line);
        drv_reply_free(&r);
        ok = drv_send(d, line, &r);
    }
    drv_reply_free(&r);
    if (record)
        fclose(record);
    drv_free(d);
    return ok ? 0 : 1;
}

/* Transcript mode ------------------------------------------------------------------*/

static void append_reply(transcript *t, const drv_reply *r)
{
    for (size_t i = 0; i < r->count; i++)
        ts_append(t, TS_OUTPUT, r->lines[i], false);
}

/* Feeds the expected inputs in order while the session waits; the run's
 * lines go to `actual`. */
static bool replay(driver *d, const transcript *want, transcript *actual)
{
    channel_kind ch;
    channel_parse(want->channel, &ch);
    drv_session s = {ch, want->from, want->entry, want->lang, want->session};
    drv_reply r;
    bool ok = drv_start(d, &s, &r);
    for (size_t i = 0; ok && i <= want->count; i++) {
        if (i == 0 || want->lines[i - 1].kind == TS_INPUT)
            append_reply(actual, &r);
        if (i == want->count || want->lines[i].kind != TS_INPUT)
            continue;
        if (!r.waiting)
            break;
        ts_append(actual, TS_INPUT, want->lines[i].text, r.secret);
        drv_reply_free(&r);
        ok = drv_send(d, want->lines[i].text, &r);
    }
    drv_reply_free(&r);
    return ok;
}

static int run_transcript(const char *path, const conf *c)
{
    transcript want, actual = {0};
    char err[512];
    if (!ts_load(path, &want, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    driver *d = drv_new(c, CONNECT_TIMEOUT_MS);
    int rc = 1;
    if (d != NULL && replay(d, &want, &actual)) {
        rc = ts_compare(path, &want, &actual, stdout) ? 0 : 1;
        if (rc == 0)
            printf("%s: ok (%zu lines)\n", path, want.count);
    }
    drv_free(d);
    ts_free(&want);
    ts_free(&actual);
    return rc;
}

int main(int argc, char **argv)
{
    cli a;
    if (!parse_cli(argc, argv, &a)) {
        usage(stderr);
        return 2;
    }
    conf c;
    if (!load_config(a.config, &c)) {
        settings_free(&c);
        return 1;
    }
    /* The modules' info lines would drown the conversation. */
    log_set_level(c.log.level > LOG_WARN ? c.log.level : LOG_WARN);
    int rc = a.transcript ? run_transcript(a.transcript, &c) : run_interactive(&a, &c);
    settings_free(&c);
    return rc;
}
