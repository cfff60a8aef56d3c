/* config — the key table and the loader built on libinih (see config.h).
 * Owns the conf strings and the error list. libinih does the INI syntax;
 * our line reader counts lines (Debian's inih reports no line numbers to
 * handlers), vets each line's shape and section, and the handler checks
 * every value against the table. */
#include "config.h"

#include "allow.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum {
    CONF_INT,        /* decimal integer within [min, max] */
    CONF_STRING,     /* free text; empty means unset (NULL) */
    CONF_HOST,       /* non-empty host name or address, no spaces */
    CONF_ADDRESS,    /* host:port or [v6]:port */
    CONF_URL,        /* http:// or https:// base URL */
    CONF_PATH,       /* readable file; empty means unset (NULL) */
    CONF_DIR,        /* directory name, required; read by its consumer */
    CONF_ALLOWLIST,  /* source addresses and CIDR prefixes (allow.h); empty means unset */
    CONF_LOG_LEVEL   /* debug, info, warn or error */
} conf_type;

struct conf_key {
    const char *section;  /* INI section without brackets */
    const char *name;     /* key within the section */
    conf_type type;       /* how the value is parsed and checked */
    long min;             /* CONF_INT: smallest accepted value */
    long max;             /* CONF_INT: largest accepted value */
    const char *def;      /* default, written as in the file */
    size_t offset;        /* field in struct conf */
};

#define KEY_INT(sec, key, lo, hi, dflt, field) \
    {sec, key, CONF_INT, lo, hi, dflt, offsetof(conf, field)}
#define KEY(sec, key, type, dflt, field) \
    {sec, key, type, 0, 0, dflt, offsetof(conf, field)}

static const conf_key keys[] = {
    KEY("log", "level", CONF_LOG_LEVEL, "info", log.level),
    KEY_INT("log", "flush_ms", 0, 1000, "100", log.flush_ms),

    KEY("http", "listen", CONF_ADDRESS, "127.0.0.1:8080", http.listen),
    KEY_INT("http", "max_body_bytes", 1, 16777216, "65536", http.max_body_bytes),
    KEY_INT("http", "max_header_bytes", 256, 1048576, "8192", http.max_header_bytes),
    KEY_INT("http", "max_connections", 1, 100000, "1024", http.max_connections),
    KEY_INT("http", "idle_timeout_ms", 10, 3600000, "30000", http.idle_timeout_ms),
    KEY_INT("http", "request_timeout_ms", 10, 3600000, "10000", http.request_timeout_ms),

    KEY("redis", "host", CONF_HOST, "127.0.0.1", redis.host),
    KEY_INT("redis", "port", 1, 65535, "6379", redis.port),
    KEY("redis", "password", CONF_STRING, "", redis.password),
    KEY_INT("redis", "db", 0, 15, "0", redis.db),
    KEY_INT("redis", "op_timeout_ms", 1, 60000, "250", redis.op_timeout_ms),
    KEY_INT("redis", "reconnect_min_ms", 1, 60000, "100", redis.reconnect_min_ms),
    KEY_INT("redis", "reconnect_max_ms", 1, 600000, "5000", redis.reconnect_max_ms),
    KEY_INT("redis", "ping_interval_ms", 10, 600000, "1000", redis.ping_interval_ms),
    KEY_INT("redis", "max_pending", 1, 1000000, "10000", redis.max_pending),

    KEY("registry", "url", CONF_URL, "http://127.0.0.1:8090", registry.url),
    KEY("registry", "token", CONF_STRING, "", registry.token),
    KEY("registry", "ca_file", CONF_PATH, "", registry.ca_file),
    KEY("registry", "cert_file", CONF_PATH, "", registry.cert_file),
    KEY("registry", "key_file", CONF_PATH, "", registry.key_file),
    KEY_INT("registry", "timeout_ms", 1, 600000, "2000", registry.timeout_ms),
    KEY_INT("registry", "connect_timeout_ms", 1, 600000, "500", registry.connect_timeout_ms),
    KEY_INT("registry", "max_connections", 1, 10000, "32", registry.max_connections),
    KEY_INT("registry", "max_pending", 1, 1000000, "10000", registry.max_pending),
    KEY_INT("registry", "read_retries", 0, 10, "1", registry.read_retries),
    KEY_INT("registry", "health_interval_ms", 10, 3600000, "5000", registry.health_interval_ms),

    KEY("dialplans", "dir", CONF_DIR, "dialplans", dialplans.dir),

    KEY_INT("session", "ttl_voice_s", 1, 86400, "3600", session.ttl_voice_s),
    KEY_INT("session", "ttl_ussd_s", 1, 86400, "300", session.ttl_ussd_s),
    KEY_INT("session", "ttl_sms_s", 1, 86400, "900", session.ttl_sms_s),
    KEY_INT("session", "max_steps_per_hop", 1, 10000, "64", session.max_steps_per_hop),
    KEY_INT("session", "max_input_bytes", 1, 65536, "512", session.max_input_bytes),
    KEY_INT("session", "events_kept", 0, 1000, "20", session.events_kept),
    KEY_INT("session", "handler_timeout_ms", 1, 600000, "3000", session.handler_timeout_ms),

    KEY_INT("ussd", "answer_deadline_ms", 100, 60000, "2500", ussd.answer_deadline_ms),
    KEY_INT("ussd", "max_text_bytes", 16, 4096, "1024", ussd.max_text_bytes),
    KEY_INT("ussd", "page_octets", 64, 160, "160", ussd.page_octets),
    KEY_INT("ussd", "max_sessions", 1, 1000000, "10000", ussd.max_sessions),
    KEY_INT("ussd", "state_ttl_s", 10, 86400, "300", ussd.state_ttl_s),
    KEY("ussd", "hop_key_secret", CONF_STRING, "", ussd.hop_key_secret),
    KEY("ussd", "secret", CONF_STRING, "", ussd.secret),
    KEY_INT("ussd", "allow_unsigned", 0, 1, "0", ussd.allow_unsigned),
    KEY("ussd", "allow_from", CONF_ALLOWLIST, "", ussd.allow_from),
    KEY_INT("ussd", "max_clock_skew_s", 1, 3600, "300", ussd.max_clock_skew_s),

    KEY_INT("sms", "max_messages", 1, 10, "3", sms.max_messages),
    KEY_INT("sms", "max_text_bytes", 1, 4096, "480", sms.max_text_bytes),
    KEY("sms", "secret", CONF_STRING, "", sms.secret),
    KEY_INT("sms", "allow_unsigned", 0, 1, "0", sms.allow_unsigned),
    KEY("sms", "allow_from", CONF_ALLOWLIST, "", sms.allow_from),

    KEY("outbox", "consumer", CONF_STRING, "cardline", outbox.consumer),
    KEY_INT("outbox", "poll_interval_ms", 10, 60000, "200", outbox.poll_interval_ms),
    KEY_INT("outbox", "batch", 1, 1000, "32", outbox.batch),
    KEY_INT("outbox", "max_in_flight", 1, 100000, "256", outbox.max_in_flight),
    KEY_INT("outbox", "lease_ms", 100, 3600000, "60000", outbox.lease_ms),
    KEY_INT("outbox", "backoff_min_ms", 1, 3600000, "1000", outbox.backoff_min_ms),
    KEY_INT("outbox", "backoff_max_ms", 1, 86400000, "300000", outbox.backoff_max_ms),
    KEY_INT("outbox", "max_attempts", 1, 1000, "20", outbox.max_attempts),
    KEY_INT("outbox", "max_age_s", 1, 2592000, "86400", outbox.max_age_s),
    KEY_INT("outbox", "max_payload_bytes", 2, 1048576, "16384", outbox.max_payload_bytes),
    KEY_INT("outbox", "dedupe_ttl_s", 1, 2592000, "604800", outbox.dedupe_ttl_s),

    KEY("kannel", "sendsms_url", CONF_URL, "http://127.0.0.1:13013/cgi-bin/sendsms", kannel.sendsms_url),
    KEY("kannel", "username", CONF_STRING, "", kannel.username),
    KEY("kannel", "password", CONF_STRING, "", kannel.password),
    KEY("kannel", "from", CONF_STRING, "cardline", kannel.from),
    KEY("kannel", "dlr_url", CONF_STRING, "", kannel.dlr_url),
    KEY_INT("kannel", "timeout_ms", 100, 60000, "5000", kannel.timeout_ms),
    KEY_INT("kannel", "message_ttl_s", 60, 2592000, "2592000", kannel.message_ttl_s),

    KEY_INT("workflows", "identify_window_s", 60, 86400, "3600", workflows.identify_window_s),
    KEY_INT("workflows", "identify_max_per_caller", 1, 1000, "10", workflows.identify_max_per_caller),
    KEY_INT("workflows", "identify_max_per_id", 1, 1000, "5", workflows.identify_max_per_id),
    KEY_INT("workflows", "registry_pin_window_s", 0, 86400, "0", workflows.registry_pin_window_s),
    KEY_INT("workflows", "code_ttl_s", 30, 3600, "300", workflows.code_ttl_s),
    KEY_INT("workflows", "code_tries", 1, 10, "3", workflows.code_tries),
    KEY_INT("workflows", "code_sends", 1, 10, "3", workflows.code_sends),
    KEY_INT("workflows", "loss_confirm_wait_ms", 0, 10000, "1500", workflows.loss_confirm_wait_ms),
    KEY("workflows", "digest_secret", CONF_STRING, "", workflows.digest_secret),
    KEY_INT("workflows", "number_window_s", 60, 86400, "3600", workflows.number_window_s),
    KEY_INT("workflows", "sessions_per_number", 1, 1000000, "30", workflows.sessions_per_number),
    KEY_INT("workflows", "codes_per_number", 1, 1000, "5", workflows.codes_per_number),
    KEY_INT("workflows", "callbacks_per_number", 1, 1000, "3", workflows.callbacks_per_number),

    KEY_INT("voice", "enabled", 0, 1, "0", voice.enabled),
    KEY("voice", "listen", CONF_ADDRESS, "127.0.0.1:5060", voice.listen),
    KEY("voice", "trunks", CONF_ALLOWLIST, "127.0.0.1", voice.trunks),
    KEY("voice", "pai_trunks", CONF_ALLOWLIST, "", voice.pai_trunks),
    KEY_INT("voice", "max_calls", 1, 10000, "600", voice.max_calls),
    KEY("voice", "rtp_address", CONF_HOST, "127.0.0.1", voice.rtp_address),
    KEY_INT("voice", "rtp_port_min", 1024, 65534, "20000", voice.rtp_port_min),
    KEY_INT("voice", "rtp_port_max", 1025, 65535, "29999", voice.rtp_port_max),
    KEY_INT("voice", "rtp_inactivity_ms", 0, 3600000, "30000", voice.rtp_inactivity_ms),
    KEY_INT("voice", "session_expires_s", 90, 86400, "1800", voice.session_expires_s),
    KEY("voice", "agent_uri", CONF_STRING, "sip:{queue}@127.0.0.1:5070", voice.agent_uri),
    KEY_INT("voice", "refer_timeout_ms", 100, 60000, "8000", voice.refer_timeout_ms),
    KEY_INT("voice", "inter_digit_timeout_ms", 500, 30000, "3000", voice.inter_digit_timeout_ms),
    KEY_INT("voice", "prompt_gap_ms", 0, 2000, "300", voice.prompt_gap_ms),
    KEY("voice", "prompts_dir", CONF_STRING, "build/prompts", voice.prompts_dir),
    KEY("voice", "recorded_dir", CONF_STRING, "", voice.recorded_dir),

    KEY_INT("speech", "enabled", 0, 1, "1", speech.enabled),
    KEY("speech", "voices", CONF_STRING, "zh:cmn en:en", speech.voices),
    KEY_INT("speech", "rate", 80, 450, "150", speech.rate),
    KEY_INT("speech", "cache_bytes", 65536, 1073741824, "16777216", speech.cache_bytes),
    KEY_INT("speech", "queue", 1, 100000, "256", speech.queue),
    KEY_INT("speech", "wait_ms", 0, 10000, "1000", speech.wait_ms),

    KEY_INT("agents", "enabled", 0, 1, "0", agents.enabled),
    KEY("agents", "listen", CONF_ADDRESS, "127.0.0.1:8081", agents.listen),
    KEY("agents", "tokens_file", CONF_STRING, "configs/agents.yaml", agents.tokens_file),
    KEY_INT("agents", "resume_ttl_s", 10, 600, "60", agents.resume_ttl_s),
    KEY_INT("agents", "audit_max", 1000, 10000000, "100000", agents.audit_max),

    KEY_INT("gateway", "shutdown_grace_ms", 0, 600000, "5000", gateway.shutdown_grace_ms),
};

#define KEY_COUNT (sizeof keys / sizeof keys[0])

/* Field access ----------------------------------------------------------------*/

static void *field(conf *c, const conf_key *k)
{
    return (char *)c + k->offset;
}

static const void *field_const(const conf *c, const conf_key *k)
{
    return (const char *)c + k->offset;
}

static void replace_string(char **slot, const char *value)
{
    free(*slot);
    *slot = value && *value ? strdup(value) : NULL;
}

/* Value parsers: NULL on success, else why the value is refused ---------------*/

static const char *parse_int(const conf_key *k, const char *v, int *out)
{
    static char why[96];
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || errno == ERANGE)
        return "not an integer";
    if (n < k->min || n > k->max) {
        snprintf(why, sizeof why, "%ld is out of range %ld..%ld", n, k->min, k->max);
        return why;
    }
    *out = (int)n;
    return NULL;
}

static bool host_chars_ok(const char *h, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)h[i]) && h[i] != '.' && h[i] != '-')
            return false;
    return true;
}

static const char *parse_host(const char *v, char **out)
{
    if (!host_chars_ok(v, strlen(v)))
        return "expected a host name or IPv4 address";
    replace_string(out, v);
    return NULL;
}

/* Splits host:port or [v6]:port; the host is stored without brackets. */
static const char *parse_address(const char *v, conf_address *out)
{
    char host[256];
    const char *port_text;
    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        struct in6_addr a6;
        size_t len = close ? (size_t)(close - v - 1) : 0;
        if (close == NULL || close[1] != ':' || len >= sizeof host)
            return "expected host:port or [IPv6]:port";
        memcpy(host, v + 1, len);
        host[len] = '\0';
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return "not an IPv6 address inside [ ]";
        port_text = close + 2;
    } else {
        const char *colon = strrchr(v, ':');
        size_t len = colon ? (size_t)(colon - v) : 0;
        if (colon == NULL || !host_chars_ok(v, len))
            return "expected host:port";
        memcpy(host, v, len);
        host[len] = '\0';
        port_text = colon + 1;
    }
    static const conf_key port_key = {"", "", CONF_INT, 1, 65535, "", 0};
    int port;
    if (parse_int(&port_key, port_text, &port) != NULL)
        return "the port must be a number in 1..65535";
    replace_string(&out->host, host);
    out->port = port;
    return NULL;
}

static const char *parse_url(const char *v, char **out)
{
    size_t scheme = strncmp(v, "http://", 7) == 0    ? 7
                    : strncmp(v, "https://", 8) == 0 ? 8
                                                     : 0;
    size_t len = strlen(v);
    if (scheme == 0)
        return "expected an http:// or https:// URL";
    if (len == scheme || v[scheme] == '/')
        return "the URL has no host";
    for (const char *p = v; *p; p++)
        if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
            return "the URL contains whitespace";
    if (v[len - 1] == '/' || (len >= 3 && strcmp(v + len - 3, "/v1") == 0))
        return "give the base URL without a trailing / or /v1";
    replace_string(out, v);
    return NULL;
}

static const char *parse_path(const char *v, char **out)
{
    static char why[96];
    if (*v != '\0' && access(v, R_OK) != 0) {
        snprintf(why, sizeof why, "cannot read the file: %s", strerror(errno));
        return why;
    }
    replace_string(out, v);
    return NULL;
}

static const char *parse_dir(const char *v, char **out)
{
    if (*v == '\0')
        return "a directory is required";
    replace_string(out, v);
    return NULL;
}

static const char *parse_allowlist(const char *v, char **out)
{
    static char why[160];
    if (*v != '\0') {
        allow_list *l = allow_parse(v, why, sizeof why);
        if (!l)
            return why;
        allow_free(l);
    }
    replace_string(out, v);
    return NULL;
}

static const char *parse_value(const conf_key *k, const char *v, conf *c)
{
    switch (k->type) {
    case CONF_INT:
        return parse_int(k, v, field(c, k));
    case CONF_STRING:
        replace_string(field(c, k), v);
        return NULL;
    case CONF_HOST:
        return parse_host(v, field(c, k));
    case CONF_ADDRESS:
        return parse_address(v, field(c, k));
    case CONF_URL:
        return parse_url(v, field(c, k));
    case CONF_PATH:
        return parse_path(v, field(c, k));
    case CONF_DIR:
        return parse_dir(v, field(c, k));
    case CONF_ALLOWLIST:
        return parse_allowlist(v, field(c, k));
    case CONF_LOG_LEVEL:
        return log_level_parse(v, field(c, k)) == 0
                   ? NULL
                   : "expected debug, info, warn or error";
    }
    return "unknown key type";
}

/* Table lookups --------------------------------------------------------------*/

static const conf_key *find_key(const char *section, const char *name, size_t *index)
{
    for (size_t i = 0; i < KEY_COUNT; i++) {
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0) {
            *index = i;
            return &keys[i];
        }
    }
    return NULL;
}

static bool section_known(const char *section)
{
    for (size_t i = 0; i < KEY_COUNT; i++)
        if (strcmp(keys[i].section, section) == 0)
            return true;
    return false;
}

/* Defaults and release ----------------------------------------------------------*/

void conf_defaults(conf *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < KEY_COUNT; i++)
        parse_value(&keys[i], keys[i].def, c);
}

void conf_free(conf *c)
{
    for (size_t i = 0; i < KEY_COUNT; i++) {
        const conf_key *k = &keys[i];
        if (k->type == CONF_ADDRESS)
            replace_string(&((conf_address *)field(c, k))->host, NULL);
        else if (k->type != CONF_INT && k->type != CONF_LOG_LEVEL)
            replace_string(field(c, k), NULL);
    }
}

void conf_errors_free(conf_errors *errs)
{
    for (size_t i = 0; i < errs->count; i++)
        free(errs->lines[i]);
    free(errs->lines);
    errs->lines = NULL;
    errs->count = 0;
}

/* Loading ------------------------------------------------------------------------*/

typedef enum { SECTION_NONE, SECTION_KNOWN, SECTION_UNKNOWN } section_state;

typedef struct {
    FILE *file;                  /* the open config file */
    const char *path;            /* its name, for messages */
    int line;                    /* number of the line inih is parsing */
    section_state section;       /* what the current [section] is */
    int set_on[KEY_COUNT];       /* line each key was set on, 0 = not set */
    conf *c;                     /* the conf being filled */
    conf_errors *errs;           /* collected messages */
    size_t dropped;              /* errors beyond CONF_MAX_ERRORS */
} load_ctx;

static void add_error(load_ctx *ctx, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void append_line(conf_errors *errs, const char *msg)
{
    char **grown = realloc(errs->lines, (errs->count + 1) * sizeof *grown);
    if (grown == NULL)
        return;
    errs->lines = grown;
    errs->lines[errs->count++] = strdup(msg);
}

static void add_error(load_ctx *ctx, int line, const char *fmt, ...)
{
    if (ctx->errs->count >= CONF_MAX_ERRORS) {
        ctx->dropped++;
        return;
    }
    char msg[512];
    int n = line > 0 ? snprintf(msg, sizeof msg, "%s:%d: ", ctx->path, line)
                     : snprintf(msg, sizeof msg, "%s: ", ctx->path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    append_line(ctx->errs, msg);
}

/* A [section] header: remembers whether keys under it are ours. The name is
 * taken exactly as inih takes it (no trimming inside the brackets). */
static bool vet_section_header(load_ctx *ctx, const char *s)
{
    const char *close = strchr(s, ']');
    if (close == NULL) {
        add_error(ctx, ctx->line, "missing ']' after the section name");
        return false;
    }
    char name[64];
    size_t len = (size_t)(close - s - 1);
    if (len >= sizeof name)
        len = sizeof name - 1;
    memcpy(name, s + 1, len);
    name[len] = '\0';
    ctx->section = section_known(name) ? SECTION_KNOWN : SECTION_UNKNOWN;
    if (ctx->section == SECTION_UNKNOWN)
        add_error(ctx, ctx->line, "[%s]: unknown section", name);
    return true;
}

/* Returns false when the line is malformed (and reports it). */
static bool vet_line(load_ctx *ctx, const char *s)
{
    if (*s == '\0' || *s == '\n' || *s == '\r' || *s == ';' || *s == '#')
        return true;
    if (*s == '[')
        return vet_section_header(ctx, s);
    if (strpbrk(s, "=:") == NULL) {
        add_error(ctx, ctx->line, "expected 'key = value' or '[section]'");
        return false;
    }
    return true;
}

/* Discards the rest of a line that did not fit the buffer. */
static void skip_rest_of_line(FILE *f)
{
    int ch;
    while ((ch = fgetc(f)) != EOF && ch != '\n')
        ;
}

/* ini_reader: fgets with line counting. Leading blanks are removed so an
 * indented key is never taken for inih's multi-line continuation, and a bad
 * line reaches inih as an empty one once reported. */
static char *read_line(char *str, int num, void *stream)
{
    load_ctx *ctx = stream;
    char buf[1024];
    if (fgets(buf, sizeof buf, ctx->file) == NULL)
        return NULL;
    ctx->line++;
    size_t len = strlen(buf);
    bool complete = (len > 0 && buf[len - 1] == '\n') || feof(ctx->file);
    if (!complete)
        skip_rest_of_line(ctx->file);
    const char *s = buf + strspn(buf, " \t");
    str[0] = '\0';
    if (!complete || strlen(s) >= (size_t)num) {
        add_error(ctx, ctx->line, "line longer than %d characters", num - 2);
        return str;
    }
    if (!vet_line(ctx, s))
        return str;
    memcpy(str, s, strlen(s) + 1);
    return str;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
    load_ctx *ctx = user;
    size_t i;
    if (ctx->section == SECTION_UNKNOWN)
        return 1; /* the section header was reported already */
    if (ctx->section == SECTION_NONE) {
        add_error(ctx, ctx->line, "%s: key outside any [section]", name);
        return 1;
    }
    const conf_key *k = find_key(section, name, &i);
    if (k == NULL) {
        add_error(ctx, ctx->line, "[%s] %s: unknown key", section, name);
        return 1;
    }
    if (ctx->set_on[i] != 0) {
        add_error(ctx, ctx->line, "[%s] %s: duplicate key (first set on line %d)",
                  section, name, ctx->set_on[i]);
        return 1;
    }
    ctx->set_on[i] = ctx->line;
    const char *why = parse_value(k, value, ctx->c);
    if (why != NULL)
        add_error(ctx, ctx->line, "[%s] %s: %s", section, name, why);
    return 1;
}

/* The line `name` of `section` was set on, 0 when it was not. */
static int line_of(const load_ctx *ctx, const char *section, const char *name)
{
    size_t i;
    return find_key(section, name, &i) ? ctx->set_on[i] : 0;
}

/* Settings each valid alone but not together. Without the registry's own
 * PIN count, the per-ID window is all that keeps a guesser from the wrong
 * PIN that locks a card, and only while the registry has forgotten a wrong
 * PIN before the gateway has (docs/workflows.md). */
static void vet_together(load_ctx *ctx)
{
    const conf *c = ctx->c;
    if (c->workflows.registry_pin_window_s > c->workflows.identify_window_s)
        add_error(ctx, line_of(ctx, "workflows", "registry_pin_window_s"),
                  "[workflows] identify_window_s (%d) must be at least registry_pin_window_s (%d), "
                  "or guesses spread over the registry's window lock the card",
                  c->workflows.identify_window_s, c->workflows.registry_pin_window_s);
}

int conf_load(const char *path, conf *c, conf_errors *errs)
{
    load_ctx ctx = {.path = path, .c = c, .errs = errs};
    errs->lines = NULL;
    errs->count = 0;
    conf_defaults(c);
    ctx.file = fopen(path, "r");
    if (ctx.file == NULL) {
        add_error(&ctx, 0, "cannot open: %s", strerror(errno));
        return -1;
    }
    int first_bad = ini_parse_stream(read_line, &ctx, on_key, &ctx);
    fclose(ctx.file);
    /* Lines we reported reach inih blank, so anything inih still
     * refuses is a shape we did not foresee. */
    if (first_bad > 0)
        add_error(&ctx, first_bad, "syntax error");
    else if (first_bad < 0)
        add_error(&ctx, 0, "out of memory while parsing");
    vet_together(&ctx);
    if (ctx.dropped > 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s: %zu more errors not shown", path, ctx.dropped);
        append_line(errs, msg);
    }
    return errs->count == 0 ? 0 : -1;
}

/* The key table, read-only ------------------------------------------------------*/

const conf_key *conf_key_at(size_t i)
{
    return i < KEY_COUNT ? &keys[i] : NULL;
}

const char *conf_key_section(const conf_key *k)
{
    return k->section;
}

const char *conf_key_name(const conf_key *k)
{
    return k->name;
}

const char *conf_key_default(const conf_key *k)
{
    return k->def;
}

static bool same_string(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

bool conf_key_differs(const conf_key *k, const conf *a, const conf *b)
{
    const void *fa = field_const(a, k), *fb = field_const(b, k);
    switch (k->type) {
    case CONF_INT:
        return *(const int *)fa != *(const int *)fb;
    case CONF_LOG_LEVEL:
        return *(const log_level *)fa != *(const log_level *)fb;
    case CONF_ADDRESS: {
        const conf_address *x = fa, *y = fb;
        return x->port != y->port || !same_string(x->host, y->host);
    }
    case CONF_STRING:
    case CONF_HOST:
    case CONF_URL:
    case CONF_PATH:
    case CONF_DIR:
    case CONF_ALLOWLIST:
        return !same_string(*(char *const *)fa, *(char *const *)fb);
    }
    return true;
}
