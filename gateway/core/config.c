/* config — the loader built on libinih over the modules' key tables (see
 * config.h). Owns the copied strings and the error list. libinih does the INI syntax;
 * our line reader counts lines (Debian's inih reports no line numbers to
 * handlers), vets each line's shape and section, and the handler checks
 * every value against the table. */
#include "config.h"

#include "allow.h"
#include "log.h"

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

/* Field access ----------------------------------------------------------------*/

static void *field(void *opts, size_t offset)
{
    return (char *)opts + offset;
}

static const void *field_const(const void *opts, size_t offset)
{
    return (const char *)opts + offset;
}

/* A string field: copied when the settings own their strings (conf_load),
 * else pointing at the table's text (conf_section_defaults). */
static void replace_string(const char **slot, const char *value, bool copy)
{
    if (copy) {
        free((char *)*slot);
        *slot = value && *value ? strdup(value) : NULL;
    } else {
        *slot = value && *value ? value : NULL;
    }
}

/* Value parsers: NULL on success, else why the value is refused ---------------*/

static const char *parse_long(long min, long max, const char *v, long *out)
{
    static char why[96];
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || errno == ERANGE)
        return "not an integer";
    if (n < min || n > max) {
        snprintf(why, sizeof why, "%ld is out of range %ld..%ld", n, min, max);
        return why;
    }
    *out = n;
    return NULL;
}

/* CONF_INT, CONF_BOOL and CONF_SIZE: the range, then the field's own type. */
static const char *parse_number(const conf_key *k, const char *v, void *out)
{
    long n;
    const char *why = parse_long(k->min, k->max, v, &n);
    if (why != NULL)
        return why;
    if (k->type == CONF_BOOL)
        *(bool *)out = n != 0;
    else if (k->type == CONF_SIZE)
        *(size_t *)out = (size_t)n;
    else
        *(int *)out = (int)n;
    return NULL;
}

static bool text_length_ok(const conf_key *k, const char *v)
{
    size_t n = v ? strlen(v) : 0;
    return k->max == 0 || n == 0 || (n >= (size_t)k->min && n <= (size_t)k->max);
}

static const char *parse_text(const conf_key *k, const char *v, const char **out, bool copy)
{
    static char why[96];
    if (!text_length_ok(k, v)) {
        snprintf(why, sizeof why, "must be %ld-%ld bytes", k->min, k->max);
        return why;
    }
    replace_string(out, v, copy);
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

static const char *parse_host(const char *v, const char **out, bool copy)
{
    if (!host_chars_ok(v, strlen(v)))
        return "expected a host name or IPv4 address";
    replace_string(out, v, copy);
    return NULL;
}

/* Splits host:port or [v6]:port; the host is stored without brackets. The
 * host is a piece of the text, so it is stored only when copied (a
 * module's own defaults leave it NULL). */
static const char *parse_address(const conf_key *k, const char *v, void *opts, bool copy)
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
    long port;
    if (parse_long(1, 65535, port_text, &port) != NULL)
        return "the port must be a number in 1..65535";
    replace_string(field(opts, k->offset), copy ? host : NULL, copy);
    *(int *)field(opts, k->port_offset) = (int)port;
    return NULL;
}

/* The `len` bytes at `item` as `host` (without brackets) and `*port`;
 * false when they are not IP:port or [IPv6]:port. */
static bool split_ip_port(const char *item, size_t len, char *host, size_t host_size, int *port)
{
    const char *start = item, *colon;
    size_t host_len;
    int family = AF_INET;
    if (len > 0 && item[0] == '[') {
        const char *close = memchr(item, ']', len);
        if (close == NULL || (size_t)(close - item) + 1 >= len || close[1] != ':')
            return false;
        start = item + 1;
        host_len = (size_t)(close - start);
        colon = close + 1;
        family = AF_INET6;
    } else {
        colon = memrchr(item, ':', len);
        if (colon == NULL)
            return false;
        host_len = (size_t)(colon - item);
    }
    char port_text[8];
    size_t port_len = (size_t)(item + len - colon - 1);
    unsigned char bin[sizeof(struct in6_addr)];
    if (host_len == 0 || host_len >= host_size || port_len == 0 || port_len >= sizeof port_text)
        return false;
    memcpy(host, start, host_len);
    host[host_len] = '\0';
    memcpy(port_text, colon + 1, port_len);
    port_text[port_len] = '\0';
    long p;
    if (inet_pton(family, host, bin) != 1 || parse_long(1, 65535, port_text, &p) != NULL)
        return false;
    *port = (int)p;
    return true;
}

const char *conf_ip_port_list_split(const char *text, conf_ip_port out[CONF_IP_PORT_LIST_MAX], int *count)
{
    *count = 0;
    for (const char *p = text;;) {
        p += strspn(p, " ");
        size_t len = strcspn(p, ",");
        size_t trimmed = len;
        while (trimmed > 0 && p[trimmed - 1] == ' ')
            trimmed--;
        if (*count == CONF_IP_PORT_LIST_MAX)
            return "too many items";
        conf_ip_port *item = &out[*count];
        if (!split_ip_port(p, trimmed, item->host, sizeof item->host, &item->port))
            return "expected IP:port or [IPv6]:port items separated by commas";
        (*count)++;
        if (p[len] == '\0')
            return NULL;
        p += len + 1;
    }
}

static const char *parse_ip_port_list(const char *v, const char **out, bool copy)
{
    conf_ip_port items[CONF_IP_PORT_LIST_MAX];
    int count;
    const char *why = *v ? conf_ip_port_list_split(v, items, &count) : NULL;
    if (why)
        return why;
    replace_string(out, v, copy);
    return NULL;
}

static const char *parse_url(const char *v, const char **out, bool copy)
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
    replace_string(out, v, copy);
    return NULL;
}

static const char *parse_path(const char *v, const char **out, bool copy)
{
    static char why[96];
    if (*v != '\0' && access(v, R_OK) != 0) {
        snprintf(why, sizeof why, "cannot read the file: %s", strerror(errno));
        return why;
    }
    replace_string(out, v, copy);
    return NULL;
}

static const char *parse_dir(const char *v, const char **out, bool copy)
{
    if (*v == '\0')
        return "a directory is required";
    replace_string(out, v, copy);
    return NULL;
}

static const char *parse_allowlist(const char *v, const char **out, bool copy)
{
    static char why[160];
    if (*v != '\0') {
        allow_list *l = allow_parse(v, why, sizeof why);
        if (!l)
            return why;
        allow_free(l);
    }
    replace_string(out, v, copy);
    return NULL;
}

static const char *parse_value(const conf_key *k, const char *v, void *opts, bool copy)
{
    void *at = field(opts, k->offset);
    switch (k->type) {
    case CONF_INT:
    case CONF_BOOL:
    case CONF_SIZE:
        return parse_number(k, v, at);
    case CONF_STRING:
        return parse_text(k, v, at, copy);
    case CONF_HOST:
        return parse_host(v, at, copy);
    case CONF_ADDRESS:
        return parse_address(k, v, opts, copy);
    case CONF_URL:
        return parse_url(v, at, copy);
    case CONF_PATH:
        return parse_path(v, at, copy);
    case CONF_DIR:
        return parse_dir(v, at, copy);
    case CONF_ALLOWLIST:
        return parse_allowlist(v, at, copy);
    case CONF_IP_PORT_LIST:
        return parse_ip_port_list(v, at, copy);
    case CONF_LOG_LEVEL:
        return log_level_parse(v, at) == 0 ? NULL : "expected debug, info, warn or error";
    }
    return "unknown key type";
}

static bool is_string(const conf_key *k)
{
    return k->type != CONF_INT && k->type != CONF_BOOL && k->type != CONF_SIZE &&
           k->type != CONF_LOG_LEVEL;
}

/* Schema lookups ---------------------------------------------------------------*/

static void *part_opts(const conf_part *p, void *settings)
{
    return (char *)settings + p->offset;
}

/* The part named `section`, or NULL. */
static const conf_part *find_part(const conf_schema *s, const char *section)
{
    for (size_t i = 0; i < s->count; i++)
        if (strcmp(s->parts[i].section->name, section) == 0)
            return &s->parts[i];
    return NULL;
}

/* The key `name` of `sec`, or NULL. */
static const conf_key *find_key(const conf_section *sec, const char *name)
{
    for (size_t i = 0; i < sec->count; i++)
        if (strcmp(sec->keys[i].name, name) == 0)
            return &sec->keys[i];
    return NULL;
}

/* The schema-wide index of `name` in part `p`'s section, or -1. */
static long key_index(const conf_schema *s, const conf_part *p, const char *name)
{
    const conf_key *k = find_key(p->section, name);
    if (k == NULL)
        return -1;
    long base = 0;
    for (const conf_part *q = s->parts; q != p; q++)
        base += (long)q->section->count;
    return base + (k - p->section->keys);
}

static size_t key_count(const conf_schema *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->count; i++)
        n += s->parts[i].section->count;
    return n;
}

/* The int value of key `name` of `sec` in `opts`. */
static int int_value(const conf_section *sec, const void *opts, const char *name)
{
    const conf_key *k = find_key(sec, name);
    return k ? *(const int *)field_const(opts, k->offset) : 0;
}

/* The first order of `sec` that `opts` breaks, or NULL. */
static const conf_order *broken_order(const conf_section *sec, const void *opts)
{
    for (size_t i = 0; i < sec->order_count; i++) {
        const conf_order *o = &sec->orders[i];
        if (int_value(sec, opts, o->high) < int_value(sec, opts, o->low))
            return o;
    }
    return NULL;
}

/* Defaults and release ----------------------------------------------------------*/

void conf_section_defaults(const conf_section *sec, void *opts)
{
    for (size_t i = 0; i < sec->count; i++)
        parse_value(&sec->keys[i], sec->keys[i].def, opts, false);
}

const char *conf_section_problem(const conf_section *sec, const void *opts, char *buf, size_t size)
{
    for (size_t i = 0; i < sec->count; i++) {
        const conf_key *k = &sec->keys[i];
        const void *at = field_const(opts, k->offset);
        long n;
        if (k->type == CONF_STRING && !text_length_ok(k, *(const char *const *)at)) {
            snprintf(buf, size, "%s must be %ld-%ld bytes", k->name, k->min, k->max);
            return buf;
        }
        if (k->type == CONF_INT)
            n = *(const int *)at;
        else if (k->type == CONF_SIZE)
            n = (long)*(const size_t *)at;
        else
            continue;
        if (n < k->min || n > k->max) {
            snprintf(buf, size, "%s must be %ld-%ld", k->name, k->min, k->max);
            return buf;
        }
    }
    const conf_order *o = broken_order(sec, opts);
    if (o) {
        snprintf(buf, size, "%s must be at least %s", o->high, o->low);
        return buf;
    }
    return NULL;
}

void conf_defaults(const conf_schema *s, void *settings)
{
    for (size_t p = 0; p < s->count; p++) {
        const conf_section *sec = s->parts[p].section;
        void *opts = part_opts(&s->parts[p], settings);
        for (size_t i = 0; i < sec->count; i++) {
            if (is_string(&sec->keys[i]))
                *(const char **)field(opts, sec->keys[i].offset) = NULL;
            parse_value(&sec->keys[i], sec->keys[i].def, opts, true);
        }
    }
}

void conf_free(const conf_schema *s, void *settings)
{
    for (size_t p = 0; p < s->count; p++) {
        const conf_section *sec = s->parts[p].section;
        void *opts = part_opts(&s->parts[p], settings);
        for (size_t i = 0; i < sec->count; i++)
            if (is_string(&sec->keys[i]))
                replace_string(field(opts, sec->keys[i].offset), NULL, true);
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
    const conf_schema *schema;   /* the sections read */
    int *set_on;                 /* line each key was set on (schema-wide index), 0 = not set */
    void *settings;              /* the settings being filled */
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
    ctx->section = find_part(ctx->schema, name) ? SECTION_KNOWN : SECTION_UNKNOWN;
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
    if (ctx->section == SECTION_UNKNOWN)
        return 1; /* the section header was reported already */
    if (ctx->section == SECTION_NONE) {
        add_error(ctx, ctx->line, "%s: key outside any [section]", name);
        return 1;
    }
    const conf_part *p = find_part(ctx->schema, section);
    long i = p ? key_index(ctx->schema, p, name) : -1;
    if (i < 0) {
        add_error(ctx, ctx->line, "[%s] %s: unknown key", section, name);
        return 1;
    }
    if (ctx->set_on[i] != 0) {
        add_error(ctx, ctx->line, "[%s] %s: duplicate key (first set on line %d)",
                  section, name, ctx->set_on[i]);
        return 1;
    }
    ctx->set_on[i] = ctx->line;
    const char *why = parse_value(find_key(p->section, name), value, part_opts(p, ctx->settings), true);
    if (why != NULL)
        add_error(ctx, ctx->line, "[%s] %s: %s", section, name, why);
    return 1;
}

/* Checks across keys ------------------------------------------------------------*/

/* Settings each valid alone but not together, section by section. */
static void vet_together(load_ctx *ctx)
{
    for (size_t p = 0; p < ctx->schema->count; p++) {
        const conf_part *part = &ctx->schema->parts[p];
        const conf_section *sec = part->section;
        const void *opts = part_opts(part, ctx->settings);
        for (size_t i = 0; i < sec->order_count; i++) {
            const conf_order *o = &sec->orders[i];
            int high = int_value(sec, opts, o->high), low = int_value(sec, opts, o->low);
            if (high >= low)
                continue;
            long hi = key_index(ctx->schema, part, o->high), lo = key_index(ctx->schema, part, o->low);
            int line_hi = hi < 0 ? 0 : ctx->set_on[hi], line_lo = lo < 0 ? 0 : ctx->set_on[lo];
            add_error(ctx, line_hi > line_lo ? line_hi : line_lo, "[%s] %s (%d) must be at least %s (%d)%s%s",
                      sec->name, o->high, high, o->low, low, o->why ? ", " : "", o->why ? o->why : "");
        }
    }
}

static void report_across(void *arg, const char *section, const char *key, const char *why)
{
    load_ctx *ctx = arg;
    const conf_part *p = find_part(ctx->schema, section);
    long i = p ? key_index(ctx->schema, p, key) : -1;
    add_error(ctx, i < 0 ? 0 : ctx->set_on[i], "[%s] %s: %s", section, key, why);
}

int conf_load(const conf_schema *s, const char *path, void *settings, conf_errors *errs)
{
    load_ctx ctx = {.path = path, .schema = s, .settings = settings, .errs = errs};
    errs->lines = NULL;
    errs->count = 0;
    conf_defaults(s, settings);
    ctx.set_on = calloc(key_count(s) + 1, sizeof *ctx.set_on);
    ctx.file = ctx.set_on ? fopen(path, "r") : NULL;
    if (ctx.file == NULL) {
        add_error(&ctx, 0, "cannot open: %s", strerror(ctx.set_on ? errno : ENOMEM));
        free(ctx.set_on);
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
    if (s->vet && errs->count == 0)
        s->vet(settings, report_across, &ctx);
    free(ctx.set_on);
    if (ctx.dropped > 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s: %zu more errors not shown", path, ctx.dropped);
        append_line(errs, msg);
    }
    return errs->count == 0 ? 0 : -1;
}

/* The keys, read-only ------------------------------------------------------------*/

const conf_key *conf_key_at(const conf_schema *s, size_t i, const char **section)
{
    for (size_t p = 0; p < s->count; p++) {
        const conf_section *sec = s->parts[p].section;
        if (i < sec->count) {
            if (section)
                *section = sec->name;
            return &sec->keys[i];
        }
        i -= sec->count;
    }
    return NULL;
}

static bool same_string(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

bool conf_key_differs(const conf_schema *s, const char *section, const conf_key *k, const void *a,
                      const void *b)
{
    const conf_part *p = find_part(s, section);
    if (p == NULL)
        return false;
    const void *oa = (const char *)a + p->offset, *ob = (const char *)b + p->offset;
    const void *fa = field_const(oa, k->offset), *fb = field_const(ob, k->offset);
    switch (k->type) {
    case CONF_INT:
        return *(const int *)fa != *(const int *)fb;
    case CONF_BOOL:
        return *(const bool *)fa != *(const bool *)fb;
    case CONF_SIZE:
        return *(const size_t *)fa != *(const size_t *)fb;
    case CONF_LOG_LEVEL:
        return *(const log_level *)fa != *(const log_level *)fb;
    case CONF_ADDRESS:
        return *(const int *)field_const(oa, k->port_offset) != *(const int *)field_const(ob, k->port_offset) ||
               !same_string(*(const char *const *)fa, *(const char *const *)fb);
    case CONF_STRING:
    case CONF_HOST:
    case CONF_URL:
    case CONF_PATH:
    case CONF_DIR:
    case CONF_ALLOWLIST:
    case CONF_IP_PORT_LIST:
        return !same_string(*(const char *const *)fa, *(const char *const *)fb);
    }
    return true;
}
