/* dialplan — loading a set from a directory, its lifetime and lookups, and
 * the small shared pieces of the module: the allocation pool and the problem
 * list (see dialplan.h, dp_int.h). Parsing is in dp_load.c, the checks in
 * dp_check.c, templates and rendering in dp_text.c, matching in dp_input.c. */
#include "dp_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

/* Pool ---------------------------------------------------------------------*/

struct dp_chunk {
    dp_chunk *next;
    max_align_t data[];
};

void *dp_alloc(dp_pool *p, size_t size)
{
    dp_chunk *c = mem_calloc(1, sizeof *c + size);
    c->next = p->chunks;
    p->chunks = c;
    return c->data;
}

char *dp_strdup(dp_pool *p, const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(dp_alloc(p, n), s, n);
}

void dp_pool_free(dp_pool *p)
{
    while (p->chunks) {
        dp_chunk *next = p->chunks->next;
        free(p->chunks);
        p->chunks = next;
    }
}

void *dp_grow(void *v, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return v;
    size_t cap2 = *cap ? *cap * 2 : 8;
    void *v2 = mem_realloc(v, cap2 * elem);
    *cap = cap2;
    return v2;
}

/* Problems -------------------------------------------------------------------*/

/* Kept beyond DP_MAX_ERRORS so the sort sees them all; past this only counted. */
#define DP_KEEP_PROBLEMS 10000

void dp_report(dp_problems *p, const char *file, int line, const char *fmt, ...)
{
    size_t seq = p->n;
    if (p->n >= DP_KEEP_PROBLEMS) {
        p->n++;
        return;
    }
    p->v = dp_grow(p->v, &p->cap, p->n, sizeof *p->v);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->v[p->n++] = (dp_problem){mem_strdup(file ? file : "-"), line, seq, mem_strdup(msg)};
}

static int problem_order(const void *a, const void *b)
{
    const dp_problem *x = a, *y = b;
    int c = strcmp(x->file, y->file);
    if (c)
        return c;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static char *format_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *format_line(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        mem_out_of_memory("dialplan: vasprintf");
    va_end(ap);
    return s;
}

void dp_problems_export(dp_problems *p, dp_errors *errs)
{
    size_t kept = p->n < DP_KEEP_PROBLEMS ? p->n : DP_KEEP_PROBLEMS;
    qsort(p->v, kept, sizeof *p->v, problem_order);
    size_t shown = kept < DP_MAX_ERRORS ? kept : DP_MAX_ERRORS;
    errs->lines = mem_calloc(shown + 1, sizeof *errs->lines);
    for (size_t i = 0; i < shown; i++) {
        const dp_problem *q = &p->v[i];
        errs->lines[errs->count++] = q->line > 0 ? format_line("%s:%d: %s", q->file, q->line, q->msg)
                                                 : format_line("%s: %s", q->file, q->msg);
    }
    if (p->n > shown)
        errs->lines[errs->count++] = format_line("... and %zu more problems", p->n - shown);
    for (size_t i = 0; i < kept; i++) {
        free(p->v[i].file);
        free(p->v[i].msg);
    }
    free(p->v);
    *p = (dp_problems){0};
}

void dp_errors_free(dp_errors *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->count; i++)
        free(e->lines[i]);
    free(e->lines);
    e->lines = NULL;
    e->count = 0;
}

/* Names ----------------------------------------------------------------------*/

bool dp_valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > DP_MAX_NAME || s[0] < 'a' || s[0] > 'z')
        return false;
    for (size_t i = 1; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

const char *dp_setting_value(const dialplan *dp, const char *name)
{
    for (size_t i = 0; dp && i < dp->n_values; i++)
        if (!strcmp(dp->values[i].name, name))
            return dp->values[i].text;
    return NULL;
}

bool dp_builtin_var(const char *s)
{
    static const char *const builtins[] = {"caller", "channel", "lang", "session", "node"};
    for (size_t i = 0; i < sizeof builtins / sizeof *builtins; i++)
        if (strcmp(s, builtins[i]) == 0)
            return true;
    return false;
}

/* Loading --------------------------------------------------------------------*/

/* FNV-1a 64: enough to tell two sets apart, not a security property. */
static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static bool is_yaml_name(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && n > 5 && strcmp(name + n - 5, ".yaml") == 0;
}

static int name_order(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.yaml names in `dir`, sorted; NULL with a problem if unreadable. */
static char **list_yaml(const char *dir, size_t *count, dp_problems *probs)
{
    DIR *d = opendir(dir);
    if (!d) {
        dp_report(probs, dir, 0, "cannot open dialplan directory: %s", strerror(errno));
        return NULL;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_yaml_name(e->d_name))
            continue;
        if (n == DP_MAX_FILES) {
            dp_report(probs, dir, 0, "more than %d dialplan files", DP_MAX_FILES);
            break;
        }
        names = dp_grow(names, &cap, n, sizeof *names);
        names[n++] = mem_strdup(e->d_name);
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, name_order);
    else
        dp_report(probs, dir, 0, "no dialplan files (*.yaml)");
    *count = n;
    return names;
}

/* Reads a whole file up to the size limit; NULL with a problem. */
static char *read_source(const char *path, size_t *len, dp_problems *probs)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        dp_report(probs, path, 0, "cannot read: %s", strerror(errno));
        return NULL;
    }
    char *buf = mem_malloc(DP_MAX_FILE_BYTES + 1);
    size_t n = fread(buf, 1, DP_MAX_FILE_BYTES + 1, f);
    bool failed = ferror(f);
    fclose(f);
    if (failed || n > DP_MAX_FILE_BYTES) {
        dp_report(probs, path, 0, failed ? "cannot read file" : "file larger than %d bytes", DP_MAX_FILE_BYTES);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void loader_free(dp_loader *L)
{
    free(L->pend);
    free(L->all);
    free(L->secrets);
}

static void load_sources(dp_loader *L, const char *dir)
{
    size_t n = 0;
    char **names = list_yaml(dir, &n, L->probs);
    size_t dlen = strlen(dir);
    while (dlen > 1 && dir[dlen - 1] == '/')
        dlen--;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        char *path = format_line("%.*s/%s", (int)dlen, dir, names[i]);
        size_t len = 0;
        char *text = read_source(path, &len, L->probs);
        if (text) {
            h = fnv1a(h, names[i], strlen(names[i]) + 1);
            h = fnv1a(h, text, len);
            h = fnv1a(h, "", 1);
            dp_load_file(L, path, text, len);
            free(text);
        }
        free(path);
        free(names[i]);
    }
    free(names);
    snprintf(L->dp->version, sizeof L->dp->version, "%016llx", (unsigned long long)h);
}

static void dialplan_free(dialplan *dp)
{
    for (size_t i = 0; i < dp->n_codes; i++)
        pcre2_code_free(dp->codes[i]);
    for (size_t i = 0; i < dp->n_cats; i++)
        free(dp->cats[i].prompts);
    free(dp->codes);
    free(dp->cats);
    free(dp->routes);
    free(dp->flows);
    dp_pool_free(&dp->pool);
    free(dp);
}

dialplan *dialplan_load(const char *dir, dp_handler_lookup *handlers, dp_errors *errs)
{
    *errs = (dp_errors){0};
    dialplan *dp = mem_calloc(1, sizeof *dp);
    dp->refs = 1;
    dp->timeout_ms = 8000;
    dp->retries = 2;
    dp_problems probs = {0};
    dp_loader L = {.dp = dp, .probs = &probs, .handlers = handlers};
    load_sources(&L, dir);
    dp_sort_catalogues(&L);
    dp_check(&L);
    loader_free(&L);
    if (probs.n == 0) {
        free(probs.v);
        return dp;
    }
    dp_problems_export(&probs, errs);
    dialplan_free(dp);
    return NULL;
}

dialplan *dialplan_ref(dialplan *dp)
{
    dp->refs++;
    return dp;
}

void dialplan_unref(dialplan *dp)
{
    if (dp && --dp->refs == 0)
        dialplan_free(dp);
}

const char *dialplan_version(const dialplan *dp)
{
    return dp->version;
}

/* Lookups --------------------------------------------------------------------*/

static const dp_route *route_of(const dialplan *dp, channel_kind channel, const char *entry)
{
    for (size_t i = 0; i < dp->n_routes; i++) {
        const dp_route *r = &dp->routes[i];
        if (r->channel == channel && dp_matches(r->code, entry))
            return r;
    }
    return NULL;
}

const dp_flow *dialplan_route(const dialplan *dp, channel_kind channel, const char *entry)
{
    const dp_route *r = route_of(dp, channel, entry);
    return r ? r->flow : NULL;
}

const char *dialplan_route_lang(const dialplan *dp, channel_kind channel, const char *entry)
{
    const dp_route *r = route_of(dp, channel, entry);
    return r ? r->lang : NULL;
}

const dp_flow *dialplan_flow(const dialplan *dp, const char *name)
{
    for (size_t i = 0; i < dp->n_flows; i++)
        if (strcmp(dp->flows[i]->name, name) == 0)
            return dp->flows[i];
    return NULL;
}

const char *dp_flow_name(const dp_flow *f)
{
    return f->name;
}

size_t dialplan_flow_count(const dialplan *dp)
{
    return dp->n_flows;
}

const dp_flow *dialplan_flow_at(const dialplan *dp, size_t i)
{
    return i < dp->n_flows ? dp->flows[i] : NULL;
}

size_t dp_flow_node_count(const dp_flow *f)
{
    return f->n_nodes;
}

const dp_node *dp_flow_node_at(const dp_flow *f, size_t i)
{
    return i < f->n_nodes ? &f->nodes[i]->pub : NULL;
}

const dp_node *dp_flow_start(const dp_flow *f)
{
    return f->start;
}

const dp_node *dp_flow_node(const dp_flow *f, const char *name)
{
    for (size_t i = 0; i < f->n_nodes; i++)
        if (strcmp(f->nodes[i]->pub.name, name) == 0)
            return &f->nodes[i]->pub;
    return NULL;
}

size_t dialplan_language_count(const dialplan *dp)
{
    return dp->n_langs;
}

const char *dialplan_language(const dialplan *dp, size_t i)
{
    return i < dp->n_langs ? dp->langs[i] : NULL;
}

bool dialplan_has_language(const dialplan *dp, const char *lang)
{
    for (size_t i = 0; lang && i < dp->n_langs; i++)
        if (strcmp(dp->langs[i], lang) == 0)
            return true;
    return false;
}
