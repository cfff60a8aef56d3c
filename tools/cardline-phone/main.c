/* cardline-phone — a terminal phone for the running gateway, over its real
 * HTTP interfaces: USSD as an aggregator posts it (sessionId, serviceCode,
 * phoneNumber and the cumulative `text`), SMS as Kannel's get-url sends it.
 * Owns no protocol logic of the gateway; it only speaks the wire, with the
 * credentials an aggregator or Kannel would send: USSD requests signed
 * (ussd_sign), SMS with the get-url `key`. The defaults are the demo's
 * (configs/cardline.conf); --secret and --key give others.
 *
 *   cardline-phone ussd '*123#' --from +8613800000001 [--url URL] [--secret S]
 *   cardline-phone sms --from +8613800000001 [--url URL] [--key K] ["TEXT"]
 *
 * Answers are read a line each from stdin; when stdin is not a terminal
 * (answers piped in) each is echoed after its prompt, so the output reads
 * as the conversation. Exit status: 0 when every message was answered and
 * a USSD session reached its END page (and for --help), 1 when the gateway
 * could not be reached or refused or the answers ran out first, 2 for
 * usage errors. */
#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fetch_body.h"
#include "ussd.h"

#define PHONE_BODY_MAX (64 * 1024)
#define PHONE_LINE_MAX 512
#define PHONE_TIMEOUT_MS 15000
#define DEMO_USSD_SECRET "cardline demo aggregator secret"
#define DEMO_SMS_KEY "cardline-demo-kannel-key"

/* One request; `form` NULL = GET, else a POST signed with `secret`.
 * Returns the HTTP status, 0 on failure. */
static long request(const char *url, const char *form, const char *secret, fetch_body *out)
{
    CURL *c = curl_easy_init();
    struct curl_slist *headers = NULL;
    long status = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)PHONE_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fetch_body_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    if (form) {
        char ts[24], sig[USSD_SIGNATURE_MAX], line[128];
        snprintf(ts, sizeof ts, "%lld", (long long)time(NULL));
        if (ussd_sign(secret, ts, form, strlen(form), sig)) {
            snprintf(line, sizeof line, USSD_TIMESTAMP_HEADER ": %s", ts);
            headers = curl_slist_append(headers, line);
            snprintf(line, sizeof line, USSD_SIGNATURE_HEADER ": %s", sig);
            headers = curl_slist_append(headers, line);
        }
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    else
        fprintf(stderr, "cardline-phone: %s\n", curl_easy_strerror(rc));
    curl_easy_cleanup(c);
    curl_slist_free_all(headers);
    return status;
}

/* A terminal echoes what is typed; piped answers would leave the output
 * with prompts and no answers, so they are echoed here. */
static bool read_line(const char *prompt, char *line, size_t size)
{
    fputs(prompt, stdout);
    fflush(stdout);
    if (!fgets(line, (int)size, stdin)) {
        putchar('\n');
        return false;
    }
    line[strcspn(line, "\r\n")] = '\0';
    if (!isatty(STDIN_FILENO))
        printf("%s\n", line);
    return true;
}

/* SMS -------------------------------------------------------------------------*/

static int sms_send(CURL *esc, const char *base, const char *key, const char *from, const char *text)
{
    char *f = curl_easy_escape(esc, from, 0), *t = curl_easy_escape(esc, text, 0);
    char *k = curl_easy_escape(esc, key, 0);
    size_t n = strlen(base) + strlen(k) + strlen(f) + strlen(t) + 64;
    char *url = malloc(n);
    if (!url)
        abort();
    snprintf(url, n, "%s/sms/kannel?key=%s&from=%s&to=12333&text=%s", base, k, f, t);
    fetch_body b = {.max = PHONE_BODY_MAX};
    long status = request(url, NULL, NULL, &b);
    if (status == 200)
        printf("%s\n", b.data ? b.data : "");
    else
        fprintf(stderr, "cardline-phone: HTTP %ld %s\n", status, b.data ? b.data : "");
    free(b.data);
    free(url);
    curl_free(f);
    curl_free(t);
    curl_free(k);
    return status == 200 ? 0 : 1;
}

static int run_sms(const char *base, const char *key, const char *from, const char *text)
{
    CURL *esc = curl_easy_init();
    int rc = 0;
    if (text) {
        rc = sms_send(esc, base, key, from, text);
    } else {
        char line[PHONE_LINE_MAX];
        while (read_line("sms> ", line, sizeof line))
            if (line[0])
                rc |= sms_send(esc, base, key, from, line);
    }
    curl_easy_cleanup(esc);
    return rc;
}

/* USSD ------------------------------------------------------------------------*/

static int run_ussd(const char *base, const char *secret, const char *from, const char *code)
{
    CURL *esc = curl_easy_init();
    char session[64], text[PHONE_LINE_MAX * 4] = "", line[PHONE_LINE_MAX];
    snprintf(session, sizeof session, "phone-%ld-%ld", (long)time(NULL), (long)clock());
    size_t n = strlen(base) + 8;
    char *url = malloc(n);
    snprintf(url, n, "%s/ussd", base);
    int rc = 1;
    for (;;) {
        char *s = curl_easy_escape(esc, session, 0), *c = curl_easy_escape(esc, code, 0);
        char *p = curl_easy_escape(esc, from, 0), *t = curl_easy_escape(esc, text, 0);
        char form[PHONE_LINE_MAX * 16];
        snprintf(form, sizeof form, "sessionId=%s&serviceCode=%s&phoneNumber=%s&text=%s", s, c, p, t);
        curl_free(s), curl_free(c), curl_free(p), curl_free(t);
        fetch_body b = {.max = PHONE_BODY_MAX};
        long status = request(url, form, secret, &b);
        const char *page = b.data ? b.data : "";
        if (status != 200 || (strncmp(page, "CON ", 4) != 0 && strncmp(page, "END ", 4) != 0)) {
            fprintf(stderr, "cardline-phone: HTTP %ld %s\n", status, page);
            free(b.data);
            break;
        }
        printf("%s\n", page + 4);
        bool end = strncmp(page, "END ", 4) == 0;
        free(b.data);
        if (end) {
            rc = 0;
            break;
        }
        if (!read_line("ussd> ", line, sizeof line) ||
            strlen(text) + strlen(line) + 2 > sizeof text)
            break;
        if (text[0])
            strcat(text, "*");
        strcat(text, line);
    }
    free(url);
    curl_easy_cleanup(esc);
    return rc;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: cardline-phone ussd CODE --from NUMBER [--url URL] [--secret S]\n"
            "       cardline-phone sms --from NUMBER [--url URL] [--key K] [TEXT]\n"
            "  --from NUMBER  the phone's number\n"
            "  --url URL      the gateway (default: http://127.0.0.1:8080)\n"
            "  --secret S     the aggregator's USSD signing secret (default: the demo's)\n"
            "  --key K        Kannel's get-url key (default: the demo's)\n"
            "USSD dials CODE, then sends each line read as the answer to the page shown.\n"
            "SMS sends TEXT, or each line read, and prints each reply.\n");
}

static int usage_error(void)
{
    usage(stderr);
    return 2;
}

static bool wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    return false;
}

int main(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    if (argc < 2)
        return usage_error();
    const char *mode = argv[1], *from = NULL, *url = "http://127.0.0.1:8080", *arg = NULL;
    const char *secret = DEMO_USSD_SECRET, *key = DEMO_SMS_KEY;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--from") == 0 && i + 1 < argc)
            from = argv[++i];
        else if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
            url = argv[++i];
        else if (strcmp(argv[i], "--secret") == 0 && i + 1 < argc)
            secret = argv[++i];
        else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
            key = argv[++i];
        else if (argv[i][0] != '-' && !arg)
            arg = argv[i];
        else
            return usage_error();
    }
    if (!from)
        return usage_error();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc;
    if (strcmp(mode, "sms") == 0)
        rc = run_sms(url, key, from, arg);
    else if (strcmp(mode, "ussd") == 0 && arg)
        rc = run_ussd(url, secret, from, arg);
    else
        rc = usage_error();
    curl_global_cleanup();
    return rc;
}
