/* dp_int — what the dialplan module's files share and nobody else sees: the
 * private structs behind the opaque types of dialplan.h, the allocation pool
 * a loaded set lives in, the problem list the loader and checker fill, and
 * the entry points between loader (dp_load.c), checker (dp_check.c),
 * templates (dp_text.c) and matching (dp_input.c).
 *
 * Everything allocated for a set goes through its pool and dies with it; no
 * function here keeps state outside a set except the one shared PCRE2 match
 * data block (dp_input.c, main thread only). */
#ifndef CARDLINE_DP_INT_H
#define CARDLINE_DP_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dialplan.h"
#include "handler_def.h"

/* Limits: a set larger than this is refused with a message. */
#define DP_MAX_FILE_BYTES (1024 * 1024)
#define DP_MAX_FILES 256
#define DP_MAX_NODES 1000          /* per flow */
#define DP_MAX_NAME 64             /* flow, node, variable, prompt, handler names */
#define DP_MAX_PROMPT_BYTES 1000   /* one prompt text */
#define DP_MAX_OPTION_KEY 16
#define DP_MAX_INPUT 256           /* longest `max` an ask node may allow */
#define DP_MAX_ERRORS 100          /* lines reported before "N more" */
#define DP_MIN_TIMEOUT_MS 1000
#define DP_MAX_TIMEOUT_MS 120000
#define DP_MIN_INTER_DIGIT_MS 500
#define DP_MAX_INTER_DIGIT_MS 30000
#define DP_MAX_RETRIES 9

/* Pool ----------------------------------------------------------------------*/

typedef struct dp_chunk dp_chunk;

typedef struct {
    dp_chunk *chunks;        /* every allocation, newest first */
} dp_pool;

void *dp_alloc(dp_pool *p, size_t size);   /* zeroed; aborts on OOM */
char *dp_strdup(dp_pool *p, const char *s);
void dp_pool_free(dp_pool *p);

/* Grows a malloc'd vector so it holds n+1 elements (loader scratch only). */
void *dp_grow(void *v, size_t *cap, size_t n, size_t elem);

/* Problems --------------------------------------------------------------------*/

typedef struct {
    char *file;              /* path as reported */
    int line;                /* 1-based, 0 when the whole file or set is meant */
    size_t seq;              /* order of discovery, to keep sorting stable */
    char *msg;
} dp_problem;

typedef struct {
    dp_problem *v;
    size_t n, cap;
} dp_problems;

void dp_report(dp_problems *p, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Sorts by file and line and moves them into `errs` ("FILE:LINE: msg"),
 * capped at DP_MAX_ERRORS plus one "N more problems" line. */
void dp_problems_export(dp_problems *p, dp_errors *errs);

/* Templates ---------------------------------------------------------------*/

typedef struct {
    const char *text;        /* literal text, or the variable name */
    bool is_var;             /* a {placeholder} */
    dp_render render;        /* its rendering when is_var */
} dp_tpart;

struct dp_template {
    const dp_tpart *parts;
    size_t n_parts;
    const dialplan *dp;      /* the set whose settings.values fill placeholders no variable fills */
};

/* Parses `src` into `dp`'s pool; NULL with `why` filled (static text) on a
 * syntax error. */
const dp_template *dp_template_parse(dialplan *dp, const char *src, const char **why);
bool dp_template_is_literal(const dp_template *t, const char **literal);

/* Prompts -------------------------------------------------------------------*/

/* The wording slots of one prompt: the plain string, or per channel. */
enum { DP_W_PLAIN = 0, DP_W_VOICE, DP_W_TEXT, DP_W_USSD, DP_W_SMS, DP_W_COUNT };

typedef struct {
    const char *id;
    const dp_template *w[DP_W_COUNT];
    const char *file;
    int line;
} dp_prompt;

typedef struct {
    const char *lang;
    dp_prompt *prompts;      /* file order during load, sorted by id once every file is read */
    size_t n, cap;
    const char *file;        /* where the language was first seen */
    int line;
} dp_catalogue;

/* The wording of a prompt for a channel, or NULL if it has none. */
const dp_template *dp_prompt_wording(const dp_prompt *pr, channel_kind ch);
/* The catalogue of `lang`, or NULL if the set has none. */
const dp_catalogue *dp_catalogue_of(const dialplan *dp, const char *lang);
/* A binary search: only once dp_sort_catalogues has run. */
const dp_prompt *dp_catalogue_find(const dp_catalogue *c, const char *id);

/* The model -----------------------------------------------------------------*/

struct dp_matcher {
    pcre2_code *code;
};

typedef struct {
    channel_kind channel;
    pcre2_code *code;
    const char *flow_name;   /* as written, resolved by the checker */
    const dp_flow *flow;
    const char *lang;        /* the language a session it starts speaks, or NULL */
    const char *file;
    int line;
} dp_route;

/* A node with what only this module needs; `pub` first so the two convert. */
typedef struct dp_xnode {
    dp_node pub;
    bool synthetic;          /* made by the loader: an option's `set`, a flow's silent end */
    size_t index;            /* position in the loader's list, for analysis */
} dp_xnode;

struct dp_flow {
    const char *name;
    const dialplan *dp;      /* the set it belongs to (settings.keys) */
    dp_xnode **nodes;        /* the written nodes, in file order */
    size_t n_nodes;
    const dp_node *start;
    dp_xnode *silent_end;    /* where an omitted `then`/`fallback` leads */
    const char *file;
    int line;
};

/* A settings value: a constant every template may use like a variable. */
typedef struct {
    const char *name;
    const char *text;
    const char *file;
    int line;
} dp_value;

struct dialplan {
    int refs;
    char version[17];        /* hex FNV-1a 64 of the sources */
    dp_pool pool;

    const char **langs;      /* settings.languages, first = default */
    size_t n_langs;
    int timeout_ms;          /* settings.timeout_ms */
    int retries;             /* settings.retries */
    dp_option *keys;         /* settings.keys */
    size_t n_keys;
    dp_value *values;        /* settings.values: the city's constants */
    size_t n_values;

    dp_route *routes;        /* malloc'd, file order */
    size_t n_routes, cap_routes;
    dp_flow **flows;         /* malloc'd */
    size_t n_flows, cap_flows;
    dp_catalogue *cats;      /* malloc'd, one per language */
    size_t n_cats, cap_cats;
    pcre2_code **codes;      /* every compiled pattern, freed with the set */
    size_t n_codes, cap_codes;
};

/* Loader --------------------------------------------------------------------*/

/* A target still written as text: resolved once every flow is known. */
typedef struct {
    dp_target *slot;
    const char *text;        /* "node", "flow.node", "flow.start", "repeat", "back" */
    const dp_flow *flow;     /* where a bare node name is looked up; NULL: settings.keys */
    const char *file;
    int line;
} dp_pending;

typedef struct {
    const char *file;
    int line;
    const char *name;
} dp_place;

typedef struct {
    dialplan *dp;
    dp_problems *probs;
    dp_handler_lookup *handlers;
    dp_pending *pend;        /* targets to resolve */
    size_t n_pend, cap_pend;
    dp_xnode **all;          /* every node of every flow, synthetic ones too */
    size_t n_all, cap_all;
    dp_place settings;       /* where settings were defined (file NULL: nowhere) */
    const char *first_file;
    dp_place *secrets;       /* variables some ask node declares secret */
    size_t n_secrets, cap_secrets;
} dp_loader;

/* Reads one file's YAML into the set; problems go to L->probs. */
void dp_load_file(dp_loader *L, const char *path, const char *text, size_t len);

/* Sorts every catalogue by id once every file is read; a prompt defined
 * again in its language is reported at the later definition and dropped. */
void dp_sort_catalogues(dp_loader *L);

/* Resolves targets and runs every whole-set check. */
void dp_check(dp_loader *L);

/* Input --------------------------------------------------------------------*/

/* Compiles a pattern, remembering it in the set; NULL with a message. */
pcre2_code *dp_compile(dialplan *dp, const char *pattern, bool anchored, char *err, size_t err_size);
bool dp_matches(const pcre2_code *code, const char *subject);

/* Names ------------------------------------------------------------------*/

bool dp_valid_name(const char *s);       /* [a-z][a-z0-9_]*, at most DP_MAX_NAME */
bool dp_builtin_var(const char *s);      /* caller, channel, lang, session, node */
#define DP_N_BUILTIN_VARS 5
/* The text of settings value `name`, or NULL if the set has none. */
const char *dp_setting_value(const dialplan *dp, const char *name);

#endif
