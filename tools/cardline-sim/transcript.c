/* transcript — the golden-conversation format of cardline-sim: parsing,
 * writing and the first-difference diff (see transcript.h). Owns the
 * transcript strings. */
#include "transcript.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Lines of equal context shown before a difference, and lines per side
 * (a block ends at the next input; its common tail is shown as context). */
#define DIFF_CONTEXT 3
#define DIFF_BLOCK_MAX 40

static const char *const channels[] = {"voice", "ussd", "sms"};

/* Parsing ------------------------------------------------------------------------*/

typedef struct {
    const char *path;    /* for messages */
    int line;            /* current line */
    char *err;           /* message buffer */
    size_t err_size;
} parse_ctx;

static bool fail(parse_ctx *p, const char *why, const char *what)
{
    snprintf(p->err, p->err_size, "%s:%d: %s%s", p->path, p->line, why, what ? what : "");
    return false;
}

static bool known_channel(const char *name)
{
    for (size_t i = 0; i < sizeof channels / sizeof channels[0]; i++)
        if (strcmp(name, channels[i]) == 0)
            return true;
    return false;
}

static char **header_slot(transcript *t, const char *key)
{
    if (strcmp(key, "channel") == 0)
        return &t->channel;
    if (strcmp(key, "from") == 0)
        return &t->from;
    if (strcmp(key, "entry") == 0)
        return &t->entry;
    if (strcmp(key, "lang") == 0)
        return &t->lang;
    if (strcmp(key, "session") == 0)
        return &t->session;
    if (strcmp(key, "registry") == 0)
        return &t->registry;
    return NULL;
}

/* "key: value" */
static bool parse_header_line(parse_ctx *p, transcript *t, char *s)
{
    char *colon = strchr(s, ':');
    if (colon == NULL)
        return fail(p, "expected 'key: value' or '---'", NULL);
    *colon = '\0';
    const char *value = colon + 1 + strspn(colon + 1, " \t");
    char **slot = header_slot(t, s);
    if (slot == NULL)
        return fail(p, "unknown header key: ", s);
    if (*slot != NULL)
        return fail(p, "duplicate header key: ", s);
    if (*value == '\0')
        return fail(p, "empty value for ", s);
    if (slot == &t->channel && !known_channel(value))
        return fail(p, "channel must be voice, ussd or sms, not ", value);
    *slot = strdup(value);
    return true;
}

static bool parse_body_line(parse_ctx *p, transcript *t, const char *s)
{
    if ((s[0] != '<' && s[0] != '>') || (s[1] != '\0' && s[1] != ' '))
        return fail(p, "expected '< shown text' or '> input'", NULL);
    if (!ts_append(t, s[0] == '<' ? TS_OUTPUT : TS_INPUT, s[1] ? s + 2 : "", false))
        return fail(p, "too many lines", NULL);
    t->lines[t->count - 1].line = p->line;
    return true;
}

static bool check_header(parse_ctx *p, const transcript *t, bool body)
{
    p->line = 1;
    if (!body)
        return fail(p, "no '---' line ends the header", NULL);
    if (t->channel == NULL)
        return fail(p, "the header lacks 'channel:'", NULL);
    if (t->from == NULL)
        return fail(p, "the header lacks 'from:'", NULL);
    if (t->entry == NULL)
        return fail(p, "the header lacks 'entry:'", NULL);
    return true;
}

/* Reads one line without its line break; false at the end or on error. */
static bool read_line(FILE *f, parse_ctx *p, char *buf, size_t size, bool *ok)
{
    if (fgets(buf, (int)size, f) == NULL)
        return false;
    p->line++;
    size_t len = strlen(buf);
    if (len > 0 && buf[len - 1] == '\n')
        buf[--len] = '\0';
    else if (!feof(f))
        return *ok = fail(p, "line too long", NULL);
    if (len > 0 && buf[len - 1] == '\r')
        buf[--len] = '\0';
    return true;
}

static bool ignorable(const char *s)
{
    return s[0] == '\0' || s[0] == '#';
}

bool ts_load(const char *path, transcript *t, char *err, size_t err_size)
{
    parse_ctx p = {.path = path, .err = err, .err_size = err_size};
    *t = (transcript){0};
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, err_size, "%s: cannot open: %s", path, strerror(errno));
        return false;
    }
    char buf[TS_MAX_LINE_BYTES + 2];
    bool ok = true, body = false;
    while (ok && read_line(f, &p, buf, sizeof buf, &ok)) {
        if (ignorable(buf))
            continue;
        if (body)
            ok = parse_body_line(&p, t, buf);
        else if (strcmp(buf, "---") == 0)
            body = true;
        else
            ok = parse_header_line(&p, t, buf);
    }
    fclose(f);
    if (ok)
        ok = check_header(&p, t, body);
    if (!ok)
        ts_free(t);
    return ok;
}

/* Writing ------------------------------------------------------------------------*/

static void write_header_key(FILE *f, const char *key, const char *value)
{
    if (value != NULL)
        fprintf(f, "%s: %s\n", key, value);
}

void ts_write_header(FILE *f, const transcript *t)
{
    write_header_key(f, "channel", t->channel);
    write_header_key(f, "from", t->from);
    write_header_key(f, "entry", t->entry);
    write_header_key(f, "lang", t->lang);
    write_header_key(f, "session", t->session);
    write_header_key(f, "registry", t->registry);
    fputs("---\n", f);
}

/* Stable wording ------------------------------------------------------------------*/

/* The references a line may show: a prefix and its count of [0-9A-Z]. */
static const struct {
    char prefix[3];
    int tail;
} references[] = {{"GS", 12}, {"CB", 10}};

static bool reference_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z');
}

/* The length of the reference starting at p (its prefix and exactly its
 * tail of [0-9A-Z], not inside a longer word), or 0. */
static size_t reference_at(const char *start, const char *p)
{
    if (p > start && (reference_char(p[-1]) || (p[-1] >= 'a' && p[-1] <= 'z')))
        return 0;
    for (size_t r = 0; r < sizeof references / sizeof references[0]; r++) {
        if (p[0] != references[r].prefix[0] || p[1] != references[r].prefix[1])
            continue;
        int i = 2;
        while (i < 2 + references[r].tail && reference_char(p[i]))
            i++;
        if (i == 2 + references[r].tail && !reference_char(p[i]))
            return (size_t)i;
    }
    return 0;
}

/* `text` with every reference's tail replaced by the placeholder, malloc'd. */
static char *stable_text(const char *text)
{
    size_t n = strlen(text);
    char *out = malloc(n + 1); /* a prefix and the placeholder are shorter than a reference */
    if (out == NULL)
        return NULL;
    size_t used = 0;
    for (const char *p = text; *p;) {
        size_t len = reference_at(text, p);
        if (len) {
            memcpy(out + used, p, 2);
            memcpy(out + used + 2, TS_REFERENCE_PLACEHOLDER, strlen(TS_REFERENCE_PLACEHOLDER));
            used += 2 + strlen(TS_REFERENCE_PLACEHOLDER);
            p += len;
        } else {
            out[used++] = *p++;
        }
    }
    out[used] = '\0';
    return out;
}

void ts_write_line(FILE *f, ts_kind kind, const char *text)
{
    char *shown = kind == TS_OUTPUT ? stable_text(text) : NULL;
    if (shown)
        text = shown;
    fprintf(f, "%c%s%s\n", kind == TS_OUTPUT ? '<' : '>', *text ? " " : "", text);
    free(shown);
}

/* Building -----------------------------------------------------------------------*/

bool ts_append(transcript *t, ts_kind kind, const char *text, bool secret)
{
    if (t->count == TS_MAX_LINES)
        return false;
    ts_line *grown = realloc(t->lines, (t->count + 1) * sizeof *grown);
    if (grown == NULL)
        return false;
    char *copy = kind == TS_OUTPUT ? stable_text(text) : strdup(text);
    if (copy == NULL)
        return false;
    t->lines = grown;
    t->lines[t->count++] = (ts_line){kind, copy, 0, secret};
    return true;
}

void ts_free(transcript *t)
{
    free(t->channel);
    free(t->from);
    free(t->entry);
    free(t->lang);
    free(t->session);
    free(t->registry);
    for (size_t i = 0; i < t->count; i++)
        free(t->lines[i].text);
    free(t->lines);
    *t = (transcript){0};
}

/* Comparing ---------------------------------------------------------------------*/

static bool same_line(const ts_line *a, const ts_line *b)
{
    return a->kind == b->kind && strcmp(a->text, b->text) == 0;
}

/* A secret input is masked on both sides: the run knows which inputs were
 * secret, and the expected side sent the same ones. */
static bool masked_at(const transcript *a, const transcript *b, size_t i)
{
    return (i < a->count && a->lines[i].secret) || (i < b->count && b->lines[i].secret);
}

static void print_line(FILE *out, char mark, const ts_line *l, bool masked)
{
    const char *text = l->kind == TS_INPUT && masked ? "******" : l->text;
    fprintf(out, "%c%c%s%s\n", mark, l->kind == TS_OUTPUT ? '<' : '>', *text ? " " : "", text);
}

/* End of the block starting at `from`: the next input line after it. */
static size_t block_end(const transcript *t, size_t from)
{
    size_t end = from;
    while (end < t->count && end - from < DIFF_BLOCK_MAX &&
           (end == from || t->lines[end].kind != TS_INPUT))
        end++;
    return end;
}

static void print_diff(const char *path, const transcript *exp, const transcript *act, size_t at,
                       FILE *out)
{
    int line = at < exp->count               ? exp->lines[at].line
               : exp->count > 0 ? exp->lines[exp->count - 1].line + 1
                                : 1;
    fprintf(out, "--- %s (expected)\n+++ cardline-sim (this run)\n@@ %s:%d @@\n", path, path, line);
    for (size_t i = at > DIFF_CONTEXT ? at - DIFF_CONTEXT : 0; i < at; i++)
        print_line(out, ' ', &exp->lines[i], masked_at(exp, act, i));
    size_t exp_end = block_end(exp, at), act_end = block_end(act, at), same = 0;
    while (exp_end - same > at && act_end - same > at &&
           same_line(&exp->lines[exp_end - same - 1], &act->lines[act_end - same - 1]))
        same++;
    for (size_t i = at; i < exp_end - same; i++)
        print_line(out, '-', &exp->lines[i], masked_at(exp, act, i));
    for (size_t i = at; i < act_end - same; i++)
        print_line(out, '+', &act->lines[i], masked_at(exp, act, i));
    for (size_t i = exp_end - same; i < exp_end; i++)
        print_line(out, ' ', &exp->lines[i], masked_at(exp, act, i));
}

bool ts_compare(const char *path, const transcript *expected, const transcript *actual, FILE *out)
{
    size_t i = 0;
    while (i < expected->count && i < actual->count &&
           same_line(&expected->lines[i], &actual->lines[i]))
        i++;
    if (i == expected->count && i == actual->count)
        return true;
    print_diff(path, expected, actual, i, out);
    return false;
}
