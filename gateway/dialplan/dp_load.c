/* dp_load — turns one YAML file into routes, flows, prompts and settings of
 * the set being loaded (libyaml document API). Everything checkable inside a
 * file is checked here with the line it concerns: keys, types, names,
 * ranges, patterns, templates, handler arguments and results. Targets stay
 * text (dp_pending) until dp_check.c has seen every file; prompt catalogues
 * are sorted, and repeated prompts found, once every file is read. */
#include "dp_int.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "mem.h"

typedef struct {
    dp_loader *L;
    dialplan *dp;
    yaml_document_t doc;
    const char *file;
} ydoc;

#define PROBLEM(d, n, ...) dp_report((d)->L->probs, (d)->file, line_of(n), __VA_ARGS__)

static int line_of(const yaml_node_t *n)
{
    return n ? (int)n->start_mark.line + 1 : 0;
}

static yaml_node_t *node_at(ydoc *d, yaml_node_item_t i)
{
    return yaml_document_get_node(&d->doc, i);
}

/* YAML helpers ---------------------------------------------------------------*/

static const char *scalar_text(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static bool is_null(const yaml_node_t *n)
{
    const char *s = scalar_text(n);
    return s && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL"));
}

static const char *want_string(ydoc *d, yaml_node_t *n, const char *what)
{
    const char *s = scalar_text(n);
    if (!s || is_null(n)) {
        PROBLEM(d, n, "%s must be a string", what);
        return NULL;
    }
    return s;
}

static bool want_mapping(ydoc *d, yaml_node_t *n, const char *what)
{
    if (n->type == YAML_MAPPING_NODE)
        return true;
    PROBLEM(d, n, "%s must be a mapping", what);
    return false;
}

static bool want_int(ydoc *d, yaml_node_t *n, const char *what, long lo, long hi, int *out)
{
    const char *s = scalar_text(n);
    char *end = NULL;
    long v = s && *s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end) {
        PROBLEM(d, n, "%s must be a whole number", what);
        return false;
    }
    if (v < lo || v > hi) {
        PROBLEM(d, n, "%s %ld out of range (%ld..%ld)", what, v, lo, hi);
        return false;
    }
    *out = (int)v;
    return true;
}

static bool want_bool(ydoc *d, yaml_node_t *n, const char *what, bool *out)
{
    const char *s = scalar_text(n);
    if (s && (!strcmp(s, "true") || !strcmp(s, "yes"))) {
        *out = true;
        return true;
    }
    if (s && (!strcmp(s, "false") || !strcmp(s, "no"))) {
        *out = false;
        return true;
    }
    PROBLEM(d, n, "%s must be true or false", what);
    return false;
}

static bool want_name(ydoc *d, yaml_node_t *n, const char *what, const char **out)
{
    const char *s = want_string(d, n, what);
    if (!s)
        return false;
    if (!dp_valid_name(s)) {
        PROBLEM(d, n, "%s '%.80s' is not a valid name ([a-z][a-z0-9_]*, at most %d characters)", what, s,
                DP_MAX_NAME);
        return false;
    }
    *out = dp_strdup(&d->dp->pool, s);
    return true;
}

/* Checks a mapping's keys: scalars, unique, and in `allowed` (NULL-ended;
 * NULL accepts any). Returns false if a key is not a string, which makes
 * the mapping unusable; callers skip later duplicates themselves. */
static bool check_keys(ydoc *d, yaml_node_t *m, const char *const *allowed, const char *what)
{
    bool ok = true;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(d, p->key);
        const char *ks = scalar_text(k);
        if (!ks) {
            PROBLEM(d, k, "keys of %s must be strings", what);
            ok = false;
            continue;
        }
        for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < p; q++) {
            const char *prev = scalar_text(node_at(d, q->key));
            if (prev && !strcmp(prev, ks)) {
                PROBLEM(d, k, "duplicate key '%.80s' in %s (first at line %d)", ks, what,
                        line_of(node_at(d, q->key)));
            }
        }
        if (!allowed)
            continue;
        bool known = false;
        for (size_t i = 0; allowed[i] && !known; i++)
            known = !strcmp(allowed[i], ks);
        if (!known)
            PROBLEM(d, k, "unknown key '%.80s' in %s", ks, what);
    }
    return ok;
}

static yaml_node_t *get_key(ydoc *d, yaml_node_t *m, const char *key)
{
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(d, p->key);
        const char *ks = scalar_text(k);
        if (ks && !strcmp(ks, key))
            return k;
    }
    return NULL;
}

static yaml_node_t *get(ydoc *d, yaml_node_t *m, const char *key)
{
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        const char *ks = scalar_text(node_at(d, p->key));
        if (ks && !strcmp(ks, key))
            return node_at(d, p->value);
    }
    return NULL;
}

static size_t pair_count(const yaml_node_t *m)
{
    return (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start);
}

/* Aliases would let a small file expand into a huge walk; the language needs
 * none, so a node reachable twice is refused. */
static bool reject_aliases(ydoc *d, yaml_node_item_t i, unsigned char *seen)
{
    yaml_node_t *n = node_at(d, i);
    if (!n)
        return true;
    size_t idx = (size_t)(n - d->doc.nodes.start);
    if (seen[idx]) {
        PROBLEM(d, n, "YAML aliases are not supported");
        return false;
    }
    seen[idx] = 1;
    if (n->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++)
            if (!reject_aliases(d, *it, seen))
                return false;
    } else if (n->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++)
            if (!reject_aliases(d, p->key, seen) || !reject_aliases(d, p->value, seen))
                return false;
    }
    return true;
}

/* Templates -----------------------------------------------------------------*/

static const dp_template *want_template(ydoc *d, yaml_node_t *n, const char *what)
{
    const char *s = want_string(d, n, what);
    if (!s)
        return NULL;
    if (strlen(s) > DP_MAX_PROMPT_BYTES) {
        PROBLEM(d, n, "%s longer than %d bytes", what, DP_MAX_PROMPT_BYTES);
        return NULL;
    }
    const char *why = NULL;
    const dp_template *t = dp_template_parse(d->dp, s, &why);
    if (!t)
        PROBLEM(d, n, "%s: %s", what, why);
    return t;
}

/* Nodes ----------------------------------------------------------------------*/

static dp_xnode *new_node(ydoc *d, dp_flow *f, const char *name, int line, dp_node_kind kind, bool synthetic)
{
    dp_loader *L = d->L;
    dp_xnode *x = dp_alloc(&d->dp->pool, sizeof *x);
    x->pub.name = name;
    x->pub.flow = f;
    x->pub.file = d->file;
    x->pub.line = line;
    x->pub.kind = kind;
    x->synthetic = synthetic;
    x->index = L->n_all;
    L->all = dp_grow(L->all, &L->cap_all, L->n_all, sizeof *L->all);
    L->all[L->n_all++] = x;
    return x;
}

static void pend_target(ydoc *d, dp_target *slot, const char *text, const dp_flow *f, int line)
{
    dp_loader *L = d->L;
    L->pend = dp_grow(L->pend, &L->cap_pend, L->n_pend, sizeof *L->pend);
    L->pend[L->n_pend++] = (dp_pending){slot, dp_strdup(&d->dp->pool, text), f, d->file, line};
}

static void silent_end(dp_flow *f, dp_target *slot)
{
    *slot = (dp_target){DP_TO_NODE, &f->silent_end->pub};
}

/* A target written as a string. */
static void parse_target(ydoc *d, yaml_node_t *n, dp_target *slot, const dp_flow *f, const char *what)
{
    const char *s = want_string(d, n, what);
    if (s)
        pend_target(d, slot, s, f, line_of(n));
}

static void parse_set(ydoc *d, yaml_node_t *n, const dp_assign **out, size_t *count)
{
    if (!want_mapping(d, n, "set") || !check_keys(d, n, NULL, "set"))
        return;
    dp_assign *a = dp_alloc(&d->dp->pool, (pair_count(n) + 1) * sizeof *a);
    size_t k = 0;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *key = node_at(d, p->key);
        const char *name = NULL;
        if (!want_name(d, key, "variable", &name))
            continue;
        if (dp_builtin_var(name) && strcmp(name, "lang") != 0) {
            PROBLEM(d, key, "'%s' is built in and cannot be set", name);
            continue;
        }
        const dp_template *t = want_template(d, node_at(d, p->value), "set value");
        if (t)
            a[k++] = (dp_assign){name, t};
    }
    *out = a;
    *count = k;
}

/* An option target: a string, or {goto: TARGET, set: {...}} which becomes a
 * synthetic goto node doing the `set` on its way. */
static void parse_option_target(ydoc *d, yaml_node_t *n, dp_target *slot, dp_flow *f, const char *menu,
                                const char *key)
{
    if (n->type != YAML_MAPPING_NODE) {
        parse_target(d, n, slot, f, "option target");
        return;
    }
    static const char *const keys[] = {"goto", "set", NULL};
    check_keys(d, n, keys, "option");
    yaml_node_t *to = get(d, n, "goto");
    if (!to) {
        PROBLEM(d, n, "option '%s' needs 'goto'", key);
        return;
    }
    char name[DP_MAX_NAME + DP_MAX_OPTION_KEY + 4];
    snprintf(name, sizeof name, "%s[%s]", menu, key);
    dp_xnode *x = new_node(d, f, dp_strdup(&d->dp->pool, name), line_of(n), DP_GOTO, true);
    yaml_node_t *set = get(d, n, "set");
    if (set)
        parse_set(d, set, &x->pub.set, &x->pub.n_set);
    parse_target(d, to, &x->pub.next, f, "goto");
    *slot = (dp_target){DP_TO_NODE, &x->pub};
}

/* Prompt ids: one string, or a list of them. */
static void parse_prompt_ids(ydoc *d, yaml_node_t *n, dp_node *node, bool null_ok)
{
    if (null_ok && is_null(n))
        return;
    size_t count = n->type == YAML_SEQUENCE_NODE ? (size_t)(n->data.sequence.items.top - n->data.sequence.items.start) : 1;
    const char **ids = dp_alloc(&d->dp->pool, (count + 1) * sizeof *ids);
    size_t k = 0;
    if (n->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++)
            k += want_name(d, node_at(d, *it), "prompt id", &ids[k]);
    } else {
        k += want_name(d, n, "prompt id", &ids[k]);
    }
    if (count == 0)
        PROBLEM(d, n, "prompt list is empty");
    node->prompts = ids;
    node->n_prompts = k;
}

static void parse_failure(ydoc *d, yaml_node_t *n, dp_failure *fl, dp_flow *f, const char *what)
{
    if (!want_mapping(d, n, what))
        return;
    static const char *const keys[] = {"retries", "prompt", "then", NULL};
    check_keys(d, n, keys, what);
    yaml_node_t *v;
    if ((v = get(d, n, "retries")))
        want_int(d, v, "retries", 0, DP_MAX_RETRIES, &fl->retries);
    if ((v = get(d, n, "prompt")))
        want_name(d, v, "prompt id", &fl->prompt);
    if ((v = get(d, n, "then")))
        parse_target(d, v, &fl->then, f, "then");
}

static void parse_waiting(ydoc *d, yaml_node_t *n, dp_xnode *x, dp_flow *f)
{
    dp_node *node = &x->pub;
    dp_failure *fails[] = {&node->on_timeout, &node->on_no_input, &node->on_invalid};
    static const char *const names[] = {"on_timeout", "on_no_input", "on_invalid"};
    for (int i = 0; i < 3; i++) {
        fails[i]->retries = -1; /* settings.retries, filled once settings are known */
        silent_end(f, &fails[i]->then);
        yaml_node_t *v = get(d, n, names[i]);
        if (v)
            parse_failure(d, v, fails[i], f, names[i]);
    }
    yaml_node_t *v = get(d, n, "timeout_ms");
    if (v)
        want_int(d, v, "timeout_ms", DP_MIN_TIMEOUT_MS, DP_MAX_TIMEOUT_MS, &node->timeout_ms);
}

/* A menu's `options`, or an ask's `keys` (`what`): key -> target. */
static void parse_options(ydoc *d, yaml_node_t *opts, dp_node *node, dp_flow *f, const char *what)
{
    if (!want_mapping(d, opts, what) || !check_keys(d, opts, NULL, what))
        return;
    dp_option *o = dp_alloc(&d->dp->pool, (pair_count(opts) + 1) * sizeof *o);
    size_t k = 0;
    for (yaml_node_pair_t *p = opts->data.mapping.pairs.start; p < opts->data.mapping.pairs.top; p++) {
        yaml_node_t *key = node_at(d, p->key);
        const char *ks = scalar_text(key);
        if (!*ks || strlen(ks) > DP_MAX_OPTION_KEY) {
            PROBLEM(d, key, "option key must be 1..%d characters", DP_MAX_OPTION_KEY);
            continue;
        }
        o[k].key = dp_strdup(&d->dp->pool, ks);
        parse_option_target(d, node_at(d, p->value), &o[k].target, f, node->name, ks);
        k++;
    }
    if (k == 0)
        PROBLEM(d, opts, "%s '%s' has no %s", node->kind == DP_MENU ? "menu" : "ask", node->name, what);
    node->options = o;
    node->n_options = k;
}

static void parse_menu(ydoc *d, yaml_node_t *n, dp_xnode *x, dp_flow *f)
{
    dp_node *node = &x->pub;
    parse_prompt_ids(d, get(d, n, "menu"), node, false);
    parse_waiting(d, n, x, f);
    yaml_node_t *opts = get(d, n, "options");
    if (!opts)
        PROBLEM(d, n, "menu '%s' needs 'options'", node->name);
    else
        parse_options(d, opts, node, f, "options");
}

/* switch: a template compared with literal case values; `default` is
 * required so every value leads somewhere. Cases reuse `options`, the
 * default is `next`. */
static void parse_switch(ydoc *d, yaml_node_t *n, dp_xnode *x, dp_flow *f)
{
    dp_node *node = &x->pub;
    node->subject = want_template(d, get(d, n, "switch"), "switch value");
    yaml_node_t *v;
    if (!(v = get(d, n, "default")))
        PROBLEM(d, n, "switch '%s' needs 'default'", node->name);
    else
        parse_target(d, v, &node->next, f, "default");
    yaml_node_t *cases = get(d, n, "cases");
    if (!cases) {
        PROBLEM(d, n, "switch '%s' needs 'cases'", node->name);
        return;
    }
    if (!want_mapping(d, cases, "cases") || !check_keys(d, cases, NULL, "cases"))
        return;
    dp_option *o = dp_alloc(&d->dp->pool, (pair_count(cases) + 1) * sizeof *o);
    size_t k = 0;
    for (yaml_node_pair_t *p = cases->data.mapping.pairs.start; p < cases->data.mapping.pairs.top; p++) {
        yaml_node_t *key = node_at(d, p->key);
        const char *ks = scalar_text(key);
        if (!*ks || strlen(ks) > DP_MAX_NAME) {
            PROBLEM(d, key, "case value must be 1..%d characters", DP_MAX_NAME);
            continue;
        }
        o[k].key = dp_strdup(&d->dp->pool, ks);
        parse_target(d, node_at(d, p->value), &o[k].target, f, "case target");
        k++;
    }
    if (k == 0)
        PROBLEM(d, cases, "switch '%s' has no cases", node->name);
    node->options = o;
    node->n_options = k;
}

static dp_validator parse_validator(ydoc *d, yaml_node_t *n)
{
    static const struct {
        const char *name;
        dp_validator v;
    } table[] = {{"citizen_id", DP_VALIDATE_CITIZEN_ID},
                 {"card_number", DP_VALIDATE_CARD_NUMBER},
                 {"mobile", DP_VALIDATE_MOBILE},
                 {"pin", DP_VALIDATE_PIN}};
    const char *s = want_string(d, n, "validator");
    for (size_t i = 0; s && i < sizeof table / sizeof *table; i++)
        if (!strcmp(s, table[i].name))
            return table[i].v;
    if (s)
        PROBLEM(d, n, "unknown validator '%.80s' (citizen_id, card_number, mobile, pin)", s);
    return DP_VALIDATE_NONE;
}

static void remember_secret(ydoc *d, const char *name, int line)
{
    dp_loader *L = d->L;
    L->secrets = dp_grow(L->secrets, &L->cap_secrets, L->n_secrets, sizeof *L->secrets);
    L->secrets[L->n_secrets++] = (dp_place){d->file, line, name};
}

static void parse_ask(ydoc *d, yaml_node_t *n, dp_xnode *x, dp_flow *f)
{
    dp_node *node = &x->pub;
    parse_prompt_ids(d, get(d, n, "ask"), node, false);
    parse_waiting(d, n, x, f);
    yaml_node_t *v;
    if (!(v = get(d, n, "into")))
        PROBLEM(d, n, "ask '%s' needs 'into'", node->name);
    else if (want_name(d, v, "variable", &node->into) && dp_builtin_var(node->into))
        PROBLEM(d, v, "'%s' is built in and cannot be set", node->into);
    node->min_len = 1;
    node->max_len = 64;
    if ((v = get(d, n, "min")))
        want_int(d, v, "min", 0, DP_MAX_INPUT, &node->min_len);
    if ((v = get(d, n, "max")))
        want_int(d, v, "max", 1, DP_MAX_INPUT, &node->max_len);
    if (node->min_len > node->max_len)
        PROBLEM(d, n, "min %d is greater than max %d", node->min_len, node->max_len);
    if ((v = get(d, n, "terminator"))) {
        const char *t = want_string(d, v, "terminator");
        if (t && strlen(t) != 1)
            PROBLEM(d, v, "terminator must be one character");
        else if (t)
            node->terminator = t[0];
    }
    if ((v = get(d, n, "inter_digit_ms")))
        want_int(d, v, "inter_digit_ms", DP_MIN_INTER_DIGIT_MS, DP_MAX_INTER_DIGIT_MS, &node->inter_digit_ms);
    if ((v = get(d, n, "validator")))
        node->validator = parse_validator(d, v);
    if ((v = get(d, n, "secret")))
        want_bool(d, v, "secret", &node->secret);
    if (node->secret && node->into)
        remember_secret(d, node->into, line_of(n));
    if ((v = get(d, n, "pattern"))) {
        const char *pat = want_string(d, v, "pattern");
        char err[256];
        pcre2_code *code = pat ? dp_compile(d->dp, pat, true, err, sizeof err) : NULL;
        if (pat && !code)
            PROBLEM(d, v, "ask pattern error %s", err);
        if (code) {
            struct dp_matcher *m = dp_alloc(&d->dp->pool, sizeof *m);
            m->code = code;
            node->matcher = m;
        }
    }
    if ((v = get(d, n, "keys")))
        parse_options(d, v, node, f, "keys");
    if (!(v = get(d, n, "next")))
        PROBLEM(d, n, "ask '%s' needs 'next'", node->name);
    else
        parse_target(d, v, &node->next, f, "next");
}

static bool in_list(const char *const *list, const char *s)
{
    for (size_t i = 0; list && list[i]; i++)
        if (!strcmp(list[i], s))
            return true;
    return false;
}

static bool has_result(const handler_def *h, const char *result)
{
    for (const handler_result *r = h->results; r && r->name; r++)
        if (!strcmp(r->name, result))
            return true;
    return false;
}

static void parse_args(ydoc *d, yaml_node_t *n, dp_node *node, const handler_def *h)
{
    if (!want_mapping(d, n, "args") || !check_keys(d, n, NULL, "args"))
        return;
    dp_arg *a = dp_alloc(&d->dp->pool, (pair_count(n) + 1) * sizeof *a);
    size_t k = 0;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *key = node_at(d, p->key);
        const char *name = scalar_text(key);
        if (h && !in_list(h->args, name) && !in_list(h->optional_args, name)) {
            PROBLEM(d, key, "handler '%s' takes no argument '%.80s'", h->name, name);
            continue;
        }
        const dp_template *t = want_template(d, node_at(d, p->value), "argument");
        if (t)
            a[k++] = (dp_arg){dp_strdup(&d->dp->pool, name), t};
    }
    node->args = a;
    node->n_args = k;
}

static void check_required_args(ydoc *d, yaml_node_t *n, const dp_node *node, const handler_def *h)
{
    for (size_t i = 0; h->args && h->args[i]; i++) {
        bool given = false;
        for (size_t j = 0; j < node->n_args && !given; j++)
            given = !strcmp(node->args[j].name, h->args[i]);
        if (!given)
            PROBLEM(d, n, "call '%s': missing argument '%s' for handler '%s'", node->name, h->args[i], h->name);
    }
}

static void parse_branches(ydoc *d, yaml_node_t *n, dp_node *node, dp_flow *f, const handler_def *h)
{
    if (!want_mapping(d, n, "on") || !check_keys(d, n, NULL, "on"))
        return;
    dp_branch *b = dp_alloc(&d->dp->pool, (pair_count(n) + 1) * sizeof *b);
    size_t k = 0;
    yaml_node_pair_t *dflt = NULL;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *key = node_at(d, p->key);
        const char *result = scalar_text(key);
        if (!strcmp(result, "default")) {
            dflt = p;
            continue;
        }
        if (h && !has_result(h, result)) {
            PROBLEM(d, key, "handler '%s' has no result '%.80s'", h->name, result);
            continue;
        }
        b[k].result = dp_strdup(&d->dp->pool, result);
        parse_target(d, node_at(d, p->value), &b[k].target, f, "branch target");
        k++;
    }
    if (dflt) {
        b[k].result = "default";
        parse_target(d, node_at(d, dflt->value), &b[k].target, f, "branch target");
        k++;
    }
    node->branches = b;
    node->n_branches = k;
    for (const handler_result *r = h ? h->results : NULL; !dflt && r && r->name; r++) {
        bool handled = false;
        for (size_t i = 0; i < k && !handled; i++)
            handled = !strcmp(b[i].result, r->name);
        if (!handled)
            PROBLEM(d, n, "call '%s': result '%s' of handler '%s' is not handled (add it or 'default')",
                    node->name, r->name, h->name);
    }
}

static void parse_call(ydoc *d, yaml_node_t *n, dp_xnode *x, dp_flow *f)
{
    dp_node *node = &x->pub;
    yaml_node_t *hn = get(d, n, "call");
    const char *name = want_string(d, hn, "handler");
    const handler_def *h = name && d->L->handlers ? d->L->handlers(name) : NULL;
    if (name && !h)
        PROBLEM(d, hn, "unknown handler '%.80s'", name);
    node->handler = h;
    yaml_node_t *v = get(d, n, "args");
    if (v)
        parse_args(d, v, node, h);
    if (h)
        check_required_args(d, n, node, h);
    if (!(v = get(d, n, "on")))
        PROBLEM(d, n, "call '%s' needs 'on'", node->name);
    else
        parse_branches(d, v, node, f, h);
}

static void parse_transfer(ydoc *d, yaml_node_t *n, dp_xnode *x, dp_flow *f)
{
    dp_node *node = &x->pub;
    const char *q = want_string(d, get(d, n, "transfer"), "queue");
    if (q && !dp_valid_name(q))
        PROBLEM(d, get(d, n, "transfer"), "queue '%.80s' is not a valid name", q);
    node->queue = q ? dp_strdup(&d->dp->pool, q) : NULL;
    yaml_node_t *v;
    if ((v = get(d, n, "reason")))
        node->reason = want_template(d, v, "reason");
    if ((v = get(d, n, "prompt")))
        parse_prompt_ids(d, v, node, false);
    silent_end(f, &node->fallback);
    if ((v = get(d, n, "fallback")))
        parse_target(d, v, &node->fallback, f, "fallback");
}

typedef struct {
    const char *kind;
    dp_node_kind k;
    const char *const *keys;   /* allowed besides the kind key and `set` */
} kind_spec;

static const char *const say_keys[] = {"next", NULL};
static const char *const menu_keys[] = {"options", "timeout_ms", "on_timeout", "on_no_input", "on_invalid", NULL};
static const char *const ask_keys[] = {"into",       "pattern",   "min",        "max",
                                       "terminator", "inter_digit_ms", "validator", "secret", "next",
                                       "timeout_ms", "on_timeout", "on_no_input", "on_invalid", "keys", NULL};
static const char *const call_keys[] = {"args", "on", NULL};
static const char *const transfer_keys[] = {"reason", "fallback", "prompt", NULL};
static const char *const switch_keys[] = {"cases", "default", NULL};
static const char *const no_keys[] = {NULL};

static const kind_spec kinds[] = {
    {"say", DP_SAY, say_keys},   {"menu", DP_MENU, menu_keys},         {"ask", DP_ASK, ask_keys},
    {"call", DP_CALL, call_keys}, {"goto", DP_GOTO, no_keys}, {"transfer", DP_TRANSFER, transfer_keys},
    {"switch", DP_SWITCH, switch_keys}, {"end", DP_END, no_keys},
};
#define N_KINDS (sizeof kinds / sizeof *kinds)

/* The node's kind from its one kind key; NULL (with a problem) otherwise. */
static const kind_spec *node_kind(ydoc *d, yaml_node_t *n, const char *name)
{
    const kind_spec *found = NULL;
    for (size_t i = 0; i < N_KINDS; i++) {
        if (!get(d, n, kinds[i].kind))
            continue;
        if (found) {
            PROBLEM(d, n, "node '%s' has two kinds: %s and %s", name, found->kind, kinds[i].kind);
            return NULL;
        }
        found = &kinds[i];
    }
    if (!found)
        PROBLEM(d, n, "node '%s' needs one of say, menu, ask, call, goto, switch, transfer, end", name);
    return found;
}

static void check_node_keys(ydoc *d, yaml_node_t *n, const kind_spec *ks)
{
    const char *allowed[24] = {ks->kind, "set", "agent_entry"};
    size_t k = 3;
    for (size_t i = 0; ks->keys[i]; i++)
        allowed[k++] = ks->keys[i];
    allowed[k] = NULL;
    char what[32];
    snprintf(what, sizeof what, "%s node", ks->kind);
    check_keys(d, n, allowed, what);
}

static void parse_node(ydoc *d, yaml_node_t *n, dp_xnode *x, dp_flow *f, const kind_spec *ks)
{
    dp_node *node = &x->pub;
    check_node_keys(d, n, ks);
    yaml_node_t *v = get(d, n, "set");
    if (v)
        parse_set(d, v, &node->set, &node->n_set);
    if ((v = get(d, n, "agent_entry")))
        want_bool(d, v, "agent_entry", &node->agent_entry);
    switch (ks->k) {
    case DP_SAY:
        parse_prompt_ids(d, get(d, n, "say"), node, false);
        if (!(v = get(d, n, "next")))
            PROBLEM(d, n, "say '%s' needs 'next'", node->name);
        else
            parse_target(d, v, &node->next, f, "next");
        break;
    case DP_MENU:
        parse_menu(d, n, x, f);
        break;
    case DP_ASK:
        parse_ask(d, n, x, f);
        break;
    case DP_CALL:
        parse_call(d, n, x, f);
        break;
    case DP_GOTO:
        parse_target(d, get(d, n, "goto"), &node->next, f, "goto");
        break;
    case DP_TRANSFER:
        parse_transfer(d, n, x, f);
        break;
    case DP_SWITCH:
        parse_switch(d, n, x, f);
        break;
    case DP_END:
        parse_prompt_ids(d, get(d, n, "end"), node, true);
        break;
    }
}

/* Flows ----------------------------------------------------------------------*/

static bool reserved_node_name(const char *s)
{
    return !strcmp(s, "start") || !strcmp(s, "repeat") || !strcmp(s, "back");
}

static dp_flow *new_flow(ydoc *d, const char *name, int line)
{
    dialplan *dp = d->dp;
    dp_flow *f = dp_alloc(&dp->pool, sizeof *f);
    f->name = name;
    f->dp = dp;
    f->file = d->file;
    f->line = line;
    f->silent_end = new_node(d, f, "(end)", line, DP_END, true);
    dp->flows = dp_grow(dp->flows, &dp->cap_flows, dp->n_flows, sizeof *dp->flows);
    dp->flows[dp->n_flows++] = f;
    return f;
}

static void parse_nodes(ydoc *d, yaml_node_t *nodes, dp_flow *f)
{
    size_t count = pair_count(nodes);
    if (count > DP_MAX_NODES) {
        PROBLEM(d, nodes, "flow '%s' has %zu nodes (at most %d)", f->name, count, DP_MAX_NODES);
        return;
    }
    f->nodes = dp_alloc(&d->dp->pool, (count + 1) * sizeof *f->nodes);
    for (yaml_node_pair_t *p = nodes->data.mapping.pairs.start; p < nodes->data.mapping.pairs.top; p++) {
        yaml_node_t *key = node_at(d, p->key), *val = node_at(d, p->value);
        const char *name = NULL;
        if (!want_name(d, key, "node name", &name))
            continue;
        if (dp_flow_node(f, name))
            continue; /* reported as a duplicate key */
        if (reserved_node_name(name)) {
            PROBLEM(d, key, "node name '%s' is reserved", name);
            continue;
        }
        if (!want_mapping(d, val, "a node"))
            continue;
        const kind_spec *ks = node_kind(d, val, name);
        if (!ks)
            continue;
        dp_xnode *x = new_node(d, f, name, line_of(key), ks->k, false);
        f->nodes[f->n_nodes++] = x;
        parse_node(d, val, x, f, ks);
    }
}

static void parse_flow(ydoc *d, yaml_node_t *key, yaml_node_t *val)
{
    const char *name = NULL;
    if (!want_name(d, key, "flow name", &name))
        return;
    const dp_flow *old = dialplan_flow(d->dp, name);
    if (old) {
        PROBLEM(d, key, "duplicate flow '%s' (first at %s:%d)", name, old->file, old->line);
        return;
    }
    if (!want_mapping(d, val, "a flow"))
        return;
    static const char *const keys[] = {"start", "nodes", NULL};
    check_keys(d, val, keys, "a flow");
    dp_flow *f = new_flow(d, name, line_of(key));
    yaml_node_t *nodes = get(d, val, "nodes");
    if (!nodes)
        PROBLEM(d, val, "flow '%s' needs 'nodes'", name);
    else if (want_mapping(d, nodes, "nodes") && check_keys(d, nodes, NULL, "nodes"))
        parse_nodes(d, nodes, f);
    yaml_node_t *start = get(d, val, "start");
    const char *sname = start ? want_string(d, start, "start") : NULL;
    if (sname) {
        f->start = dp_flow_node(f, sname);
        if (!f->start)
            PROBLEM(d, start, "flow '%s': start node '%.80s' does not exist", name, sname);
    } else if (!start && f->n_nodes) {
        f->start = &f->nodes[0]->pub;
    }
    if (nodes && nodes->type == YAML_MAPPING_NODE && !pair_count(nodes))
        PROBLEM(d, nodes, "flow '%s' has no nodes", name);
}

static void parse_flows(ydoc *d, yaml_node_t *n)
{
    if (!want_mapping(d, n, "flows") || !check_keys(d, n, NULL, "flows"))
        return;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++)
        parse_flow(d, node_at(d, p->key), node_at(d, p->value));
}

/* Routes ---------------------------------------------------------------------*/

static void parse_route(ydoc *d, yaml_node_t *r)
{
    if (!want_mapping(d, r, "a route"))
        return;
    static const char *const keys[] = {"channel", "match", "flow", "lang", NULL};
    check_keys(d, r, keys, "a route");
    dp_route route = {.file = d->file, .line = line_of(r)};
    bool ok = true;
    /* A route with a bad channel or pattern still names its flow, so the
     * flow is not reported unreachable as well. */
    for (size_t i = 0; keys[i] && strcmp(keys[i], "lang") != 0; i++) {
        if (!get(d, r, keys[i])) {
            PROBLEM(d, r, "route needs '%s'", keys[i]);
            ok = false;
        }
    }
    if (!ok)
        return;
    yaml_node_t *ch = get(d, r, "channel"), *m = get(d, r, "match"), *fl = get(d, r, "flow");
    const char *chs = want_string(d, ch, "channel");
    if (chs && channel_parse(chs, &route.channel) != 0)
        PROBLEM(d, ch, "unknown channel '%.80s' (voice, ussd, sms)", chs);
    const char *pat = want_string(d, m, "match");
    char err[256];
    route.code = pat ? dp_compile(d->dp, pat, false, err, sizeof err) : NULL;
    if (pat && !route.code)
        PROBLEM(d, m, "route pattern error %s", err);
    if (!want_name(d, fl, "flow name", &route.flow_name))
        return;
    yaml_node_t *lang = get(d, r, "lang");
    if (lang && !want_name(d, lang, "route lang", &route.lang))
        return;
    dialplan *dp = d->dp;
    dp->routes = dp_grow(dp->routes, &dp->cap_routes, dp->n_routes, sizeof *dp->routes);
    dp->routes[dp->n_routes++] = route;
}

static void parse_routes(ydoc *d, yaml_node_t *n)
{
    if (n->type != YAML_SEQUENCE_NODE) {
        PROBLEM(d, n, "routes must be a list");
        return;
    }
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++)
        parse_route(d, node_at(d, *it));
}

/* Prompts --------------------------------------------------------------------*/

static dp_catalogue *catalogue(ydoc *d, const char *lang, int line)
{
    dialplan *dp = d->dp;
    for (size_t i = 0; i < dp->n_cats; i++)
        if (!strcmp(dp->cats[i].lang, lang))
            return &dp->cats[i];
    dp->cats = dp_grow(dp->cats, &dp->cap_cats, dp->n_cats, sizeof *dp->cats);
    dp->cats[dp->n_cats] = (dp_catalogue){.lang = lang, .file = d->file, .line = line};
    return &dp->cats[dp->n_cats++];
}

static void parse_wording(ydoc *d, yaml_node_t *v, dp_prompt *pr)
{
    if (v->type == YAML_SCALAR_NODE) {
        pr->w[DP_W_PLAIN] = want_template(d, v, "prompt text");
        return;
    }
    if (!want_mapping(d, v, "a prompt (a string, or voice/text/ussd/sms)"))
        return;
    static const char *const keys[] = {"", "voice", "text", "ussd", "sms", NULL};
    check_keys(d, v, keys + 1, "a prompt");
    for (int i = DP_W_VOICE; i < DP_W_COUNT; i++) {
        yaml_node_t *w = get(d, v, keys[i]);
        if (w)
            pr->w[i] = want_template(d, w, "prompt text");
    }
    if (!pr->w[DP_W_VOICE])
        PROBLEM(d, v, "prompt '%s' has no wording for voice", pr->id);
    if (!pr->w[DP_W_TEXT] && (!pr->w[DP_W_USSD] || !pr->w[DP_W_SMS]))
        PROBLEM(d, v, "prompt '%s' has no wording for %s", pr->id, pr->w[DP_W_USSD] ? "sms" : "ussd");
}

static void parse_language(ydoc *d, yaml_node_t *key, yaml_node_t *val)
{
    const char *lang = NULL;
    if (!want_name(d, key, "language", &lang) || !want_mapping(d, val, "a language's prompts") ||
        !check_keys(d, val, NULL, "prompts"))
        return;
    dp_catalogue *c = catalogue(d, lang, line_of(key));
    for (yaml_node_pair_t *p = val->data.mapping.pairs.start; p < val->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(d, p->key);
        const char *id = NULL;
        if (!want_name(d, k, "prompt id", &id))
            continue;
        c->prompts = dp_grow(c->prompts, &c->cap, c->n, sizeof *c->prompts);
        dp_prompt *pr = &c->prompts[c->n++];
        *pr = (dp_prompt){.id = id, .file = d->file, .line = line_of(k)};
        parse_wording(d, node_at(d, p->value), pr);
    }
}

static void parse_prompts(ydoc *d, yaml_node_t *n)
{
    if (!want_mapping(d, n, "prompts") || !check_keys(d, n, NULL, "prompts"))
        return;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++)
        parse_language(d, node_at(d, p->key), node_at(d, p->value));
}

/* Files load in name order, so ordering equal ids by file and line puts
 * the first definition of an id first among its repeats. */
static int prompt_order(const void *a, const void *b)
{
    const dp_prompt *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    if (!c)
        c = strcmp(x->file, y->file);
    if (!c)
        c = (x->line > y->line) - (x->line < y->line);
    return c;
}

/* On a sorted catalogue: keeps the first definition of each id. */
static void drop_repeated_prompts(dp_loader *L, dp_catalogue *c)
{
    size_t kept = 1;
    for (size_t i = 1; i < c->n; i++) {
        const dp_prompt *pr = &c->prompts[i], *first = &c->prompts[kept - 1];
        if (strcmp(pr->id, first->id))
            c->prompts[kept++] = *pr;
        else
            dp_report(L->probs, pr->file, pr->line, "prompt '%s' (%s) already defined at %s:%d", pr->id, c->lang,
                      first->file, first->line);
    }
    c->n = kept;
}

void dp_sort_catalogues(dp_loader *L)
{
    for (size_t i = 0; i < L->dp->n_cats; i++) {
        dp_catalogue *c = &L->dp->cats[i];
        if (c->n < 2)
            continue;
        qsort(c->prompts, c->n, sizeof *c->prompts, prompt_order);
        drop_repeated_prompts(L, c);
    }
}

/* Settings -------------------------------------------------------------------*/

static void parse_languages(ydoc *d, yaml_node_t *n)
{
    if (n->type != YAML_SEQUENCE_NODE || n->data.sequence.items.top == n->data.sequence.items.start) {
        PROBLEM(d, n, "languages must be a non-empty list");
        return;
    }
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    dialplan *dp = d->dp;
    dp->langs = dp_alloc(&dp->pool, count * sizeof *dp->langs);
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        const char *lang = NULL;
        yaml_node_t *ln = node_at(d, *it);
        if (!want_name(d, ln, "language", &lang))
            continue;
        if (dialplan_has_language(dp, lang))
            PROBLEM(d, ln, "language '%s' listed twice", lang);
        else
            dp->langs[dp->n_langs++] = lang;
    }
}

static void parse_keys(ydoc *d, yaml_node_t *n)
{
    if (!want_mapping(d, n, "keys") || !check_keys(d, n, NULL, "keys"))
        return;
    dialplan *dp = d->dp;
    dp->keys = dp_alloc(&dp->pool, (pair_count(n) + 1) * sizeof *dp->keys);
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(d, p->key);
        const char *ks = scalar_text(k);
        if (!*ks || strlen(ks) > DP_MAX_OPTION_KEY) {
            PROBLEM(d, k, "key must be 1..%d characters", DP_MAX_OPTION_KEY);
            continue;
        }
        dp_option *o = &dp->keys[dp->n_keys++];
        o->key = dp_strdup(&dp->pool, ks);
        parse_target(d, node_at(d, p->value), &o->target, NULL, "key target");
    }
}

/* settings.values: name -> scalar, the city's constants (validity days,
 * documents, opening hours) that prompts read like variables. */
static void parse_values(ydoc *d, yaml_node_t *n)
{
    if (!want_mapping(d, n, "values"))
        return;
    dialplan *dp = d->dp;
    dp->values = dp_alloc(&dp->pool, (pair_count(n) + 1) * sizeof *dp->values);
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(d, p->key);
        const char *name = NULL;
        if (!want_name(d, k, "value name", &name))
            continue;
        if (dp_builtin_var(name)) {
            PROBLEM(d, k, "'%s' is built in and cannot be a settings value", name);
            continue;
        }
        const char *text = want_string(d, node_at(d, p->value), "value");
        if (!text)
            continue;
        if (strlen(text) > DP_MAX_PROMPT_BYTES) {
            PROBLEM(d, k, "value '%s' longer than %d bytes", name, DP_MAX_PROMPT_BYTES);
            continue;
        }
        dp->values[dp->n_values++] = (dp_value){name, dp_strdup(&dp->pool, text), d->file, line_of(k)};
    }
}

static void parse_settings(ydoc *d, yaml_node_t *n, yaml_node_t *key)
{
    dp_loader *L = d->L;
    if (L->settings.file) {
        PROBLEM(d, key, "settings already defined at %s:%d", L->settings.file, L->settings.line);
        return;
    }
    L->settings = (dp_place){d->file, line_of(key), "settings"};
    if (!want_mapping(d, n, "settings"))
        return;
    static const char *const keys[] = {"languages", "timeout_ms", "retries", "keys", "values", NULL};
    check_keys(d, n, keys, "settings");
    yaml_node_t *v;
    if (!(v = get(d, n, "languages")))
        PROBLEM(d, n, "settings need 'languages'");
    else
        parse_languages(d, v);
    if ((v = get(d, n, "timeout_ms")))
        want_int(d, v, "timeout_ms", DP_MIN_TIMEOUT_MS, DP_MAX_TIMEOUT_MS, &d->dp->timeout_ms);
    if ((v = get(d, n, "retries")))
        want_int(d, v, "retries", 0, DP_MAX_RETRIES, &d->dp->retries);
    if ((v = get(d, n, "keys")))
        parse_keys(d, v);
    if ((v = get(d, n, "values")))
        parse_values(d, v);
}

/* A file ---------------------------------------------------------------------*/

static void parse_root(ydoc *d, yaml_node_t *root)
{
    if (!want_mapping(d, root, "a dialplan file"))
        return;
    static const char *const keys[] = {"routes", "flows", "prompts", "settings", NULL};
    check_keys(d, root, keys, "a dialplan file");
    /* settings first: nothing in a file depends on their order. */
    yaml_node_t *v;
    if ((v = get(d, root, "settings")))
        parse_settings(d, v, get_key(d, root, "settings"));
    if ((v = get(d, root, "prompts")))
        parse_prompts(d, v);
    if ((v = get(d, root, "flows")))
        parse_flows(d, v);
    if ((v = get(d, root, "routes")))
        parse_routes(d, v);
}

static void yaml_failure(ydoc *d, const yaml_parser_t *p)
{
    const yaml_mark_t *m = p->problem ? &p->problem_mark : &p->context_mark;
    if (p->context)
        dp_report(d->L->probs, d->file, (int)m->line + 1, "YAML syntax error: %s (%s)", p->problem, p->context);
    else
        dp_report(d->L->probs, d->file, (int)m->line + 1, "YAML syntax error: %s",
                   p->problem ? p->problem : "unreadable");
}

void dp_load_file(dp_loader *L, const char *path, const char *text, size_t len)
{
    ydoc d = {.L = L, .dp = L->dp, .file = dp_strdup(&L->dp->pool, path)};
    if (!L->first_file)
        L->first_file = d.file;
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        mem_out_of_memory("dialplan: yaml_parser_initialize");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &d.doc)) {
        yaml_failure(&d, &parser);
        yaml_parser_delete(&parser);
        return;
    }
    yaml_node_t *root = yaml_document_get_root_node(&d.doc);
    yaml_document_t extra;
    if (root && yaml_parser_load(&parser, &extra)) {
        if (yaml_document_get_root_node(&extra))
            dp_report(L->probs, d.file, 0, "more than one YAML document");
        yaml_document_delete(&extra);
    }
    yaml_parser_delete(&parser);
    if (root) {
        size_t n = (size_t)(d.doc.nodes.top - d.doc.nodes.start);
        unsigned char *seen = mem_calloc(n + 1, 1);
        if (reject_aliases(&d, 1, seen))
            parse_root(&d, root);
        free(seen);
    }
    yaml_document_delete(&d.doc);
}
