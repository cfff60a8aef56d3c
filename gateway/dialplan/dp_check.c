/* dp_check — the checks that need the whole set: resolving targets, routes
 * and settings defaults, prompt catalogues complete in every language,
 * reachability, variables set before use (a must-analysis over every flow
 * at once), secrets consumed by a call in the hop that collected them,
 * loops that would spin without waiting for input, and questions a USSD
 * handset could not show on one page. Read-only on the model except for
 * filling in targets and defaults. */
#include "dp_int.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gsm.h"
#include "mask.h"
#include "mem.h"

#define PROBLEM(L, file, line, ...) dp_report((L)->probs, (file), (line), __VA_ARGS__)

static dp_xnode *xnode_of(const dp_node *n)
{
    return (dp_xnode *)n;
}

static bool is_waiting(const dp_node *n)
{
    return n->kind == DP_MENU || n->kind == DP_ASK;
}

/* Settings and targets -------------------------------------------------------*/

static void fill_defaults(dp_loader *L)
{
    const dialplan *dp = L->dp;
    if (!L->settings.file && L->first_file)
        PROBLEM(L, L->first_file, 0, "no settings: 'settings: languages: [...]' is required in one file");
    for (size_t i = 0; i < L->n_all; i++) {
        dp_node *n = &L->all[i]->pub;
        if (!is_waiting(n))
            continue;
        if (!n->timeout_ms)
            n->timeout_ms = dp->timeout_ms;
        dp_failure *fails[] = {&n->on_timeout, &n->on_no_input, &n->on_invalid};
        for (int k = 0; k < 3; k++)
            if (fails[k]->retries < 0)
                fails[k]->retries = dp->retries;
    }
}

static void resolve_qualified(dp_loader *L, const dp_pending *p, const char *dot)
{
    char flow[DP_MAX_NAME + 2];
    size_t fl = (size_t)(dot - p->text);
    if (fl >= sizeof flow) {
        PROBLEM(L, p->file, p->line, "unknown flow in target '%.80s'", p->text);
        return;
    }
    memcpy(flow, p->text, fl);
    flow[fl] = '\0';
    const dp_flow *f = dialplan_flow(L->dp, flow);
    if (!f) {
        PROBLEM(L, p->file, p->line, "target '%.80s': unknown flow '%s'", p->text, flow);
        return;
    }
    const dp_node *n = !strcmp(dot + 1, "start") ? f->start : dp_flow_node(f, dot + 1);
    if (!n)
        PROBLEM(L, p->file, p->line, "target '%.80s': flow '%s' has no node '%.64s'", p->text, flow, dot + 1);
    else
        *p->slot = (dp_target){DP_TO_NODE, n};
}

static void resolve_target(dp_loader *L, const dp_pending *p)
{
    if (!strcmp(p->text, "repeat")) {
        *p->slot = (dp_target){DP_TO_REPEAT, NULL};
        return;
    }
    if (!strcmp(p->text, "back")) {
        *p->slot = (dp_target){DP_TO_BACK, NULL};
        return;
    }
    const char *dot = strchr(p->text, '.');
    if (dot) {
        resolve_qualified(L, p, dot);
        return;
    }
    if (!p->flow) {
        PROBLEM(L, p->file, p->line, "key target '%.80s' must be flow.node, flow.start, repeat or back", p->text);
        return;
    }
    const dp_node *n = dp_flow_node(p->flow, p->text);
    if (!n)
        PROBLEM(L, p->file, p->line, "unknown target '%.80s' in flow '%s'", p->text, p->flow->name);
    else
        *p->slot = (dp_target){DP_TO_NODE, n};
}

static void resolve_routes(dp_loader *L)
{
    dialplan *dp = L->dp;
    for (size_t i = 0; i < dp->n_routes; i++) {
        dp_route *r = &dp->routes[i];
        r->flow = dialplan_flow(dp, r->flow_name);
        if (!r->flow)
            PROBLEM(L, r->file, r->line, "route to unknown flow '%s'", r->flow_name);
        else if (!r->flow->start)
            PROBLEM(L, r->file, r->line, "route to flow '%s', which has no start node", r->flow_name);
        if (r->lang && dp->n_langs && !dialplan_has_language(dp, r->lang))
            PROBLEM(L, r->file, r->line, "route lang '%.32s', which settings.languages does not list", r->lang);
    }
}

/* Prompts --------------------------------------------------------------------*/

static bool prompt_defined(const dialplan *dp, const char *lang, const char *id)
{
    const dp_catalogue *c = dp_catalogue_of(dp, lang);
    return c && dp_catalogue_find(c, id);
}

static bool prompt_anywhere(const dialplan *dp, const char *id)
{
    for (size_t i = 0; i < dp->n_cats; i++)
        if (dp_catalogue_find(&dp->cats[i], id))
            return true;
    return false;
}

/* Each prompt in every language, reported once, at its first definition in
 * settings order. */
static void check_catalogues(dp_loader *L)
{
    const dialplan *dp = L->dp;
    for (size_t i = 0; i < dp->n_cats; i++)
        if (!dialplan_has_language(dp, dp->cats[i].lang))
            PROBLEM(L, dp->cats[i].file, dp->cats[i].line,
                    "prompts for language '%s', which settings.languages does not list", dp->cats[i].lang);
    for (size_t li = 0; li < dp->n_langs; li++) {
        const dp_catalogue *c = dp_catalogue_of(dp, dp->langs[li]);
        for (size_t p = 0; c && p < c->n; p++) {
            const dp_prompt *pr = &c->prompts[p];
            bool earlier = false;
            for (size_t lj = 0; lj < li && !earlier; lj++)
                earlier = prompt_defined(dp, dp->langs[lj], pr->id);
            for (size_t lk = 0; lk < dp->n_langs && !earlier; lk++)
                if (lk != li && !prompt_defined(dp, dp->langs[lk], pr->id))
                    PROBLEM(L, pr->file, pr->line, "prompt '%s' missing in language '%s'", pr->id, dp->langs[lk]);
        }
    }
    const char *required[] = {DP_PROMPT_RESTARTED, DP_PROMPT_UNAVAILABLE};
    for (size_t i = 0; i < 2 && dp->n_langs; i++)
        if (!prompt_anywhere(dp, required[i]))
            PROBLEM(L, L->settings.file, L->settings.line, "required prompt '%s' is missing", required[i]);
}

static void check_prompt_use(dp_loader *L, const dp_node *n, const char *id)
{
    if (id && L->dp->n_langs && !prompt_anywhere(L->dp, id))
        PROBLEM(L, n->file, n->line, "node '%s': unknown prompt '%s'", n->name, id);
}

static void check_used_prompts(dp_loader *L)
{
    for (size_t i = 0; i < L->n_all; i++) {
        const dp_node *n = &L->all[i]->pub;
        for (size_t k = 0; k < n->n_prompts; k++)
            check_prompt_use(L, n, n->prompts[k]);
        if (is_waiting(n)) {
            check_prompt_use(L, n, n->on_timeout.prompt);
            check_prompt_use(L, n, n->on_no_input.prompt);
            check_prompt_use(L, n, n->on_invalid.prompt);
        }
    }
}

static void check_lang_sets(dp_loader *L)
{
    for (size_t i = 0; i < L->n_all; i++) {
        const dp_node *n = &L->all[i]->pub;
        for (size_t k = 0; k < n->n_set; k++) {
            const char *lit;
            if (strcmp(n->set[k].name, "lang") != 0)
                continue;
            if (!dp_template_is_literal(n->set[k].value, &lit))
                PROBLEM(L, n->file, n->line, "node '%s': lang must be set to a language, not a template", n->name);
            else if (L->dp->n_langs && !dialplan_has_language(L->dp, lit))
                PROBLEM(L, n->file, n->line, "node '%s': lang set to '%.32s', which settings.languages does not list",
                        n->name, lit);
        }
    }
}

/* An ask's key is an input that leaves the ask: if the ask would also take
 * it as an answer, which one the caller meant could not be told. */
static void check_ask_keys(dp_loader *L)
{
    for (size_t i = 0; i < L->n_all; i++) {
        const dp_node *n = &L->all[i]->pub;
        char answer[DP_MAX_OPTION_KEY * 4 + 1];
        for (size_t k = 0; n->kind == DP_ASK && k < n->n_options; k++)
            if (dp_ask_accepts(n, n->options[k].key, answer, sizeof answer))
                PROBLEM(L, n->file, n->line, "ask '%s': key '%s' is also a valid answer", n->name,
                        n->options[k].key);
    }
}

/* The graph ---------------------------------------------------------------*/

typedef enum {
    EDGE_PLAIN = 0,   /* next, option, fallback, failure */
    EDGE_INPUT,       /* an ask node's accepted input: `into` is set */
    EDGE_RESULT,      /* a call result: its variables are set */
    EDGE_DEFAULT      /* a call's default: what every other result sets */
} edge_kind;

typedef struct {
    size_t to;
    edge_kind kind;
    const char *result;
} edge;

typedef struct {
    dp_loader *L;
    size_t n;                /* nodes */
    edge *edges;
    size_t n_edges, cap_edges;
    size_t *first;           /* edges of node i: first[i] .. first[i+1] */
    bool *reached;
} graph;

static void add_edge(graph *g, dp_target t, edge_kind kind, const char *result)
{
    if (t.kind != DP_TO_NODE || !t.node)
        return;
    g->edges = dp_grow(g->edges, &g->cap_edges, g->n_edges, sizeof *g->edges);
    g->edges[g->n_edges++] = (edge){xnode_of(t.node)->index, kind, result};
}

static bool menu_has_key(const dp_node *n, const char *key)
{
    for (size_t i = 0; i < n->n_options; i++)
        if (!strcmp(n->options[i].key, key))
            return true;
    return false;
}

static void add_node_edges(graph *g, const dp_node *n)
{
    const dialplan *dp = g->L->dp;
    switch (n->kind) {
    case DP_SAY:
    case DP_GOTO:
        add_edge(g, n->next, EDGE_PLAIN, NULL);
        break;
    case DP_MENU:
        for (size_t i = 0; i < n->n_options; i++)
            add_edge(g, n->options[i].target, EDGE_PLAIN, NULL);
        for (size_t i = 0; i < dp->n_keys; i++)
            if (!menu_has_key(n, dp->keys[i].key))
                add_edge(g, dp->keys[i].target, EDGE_PLAIN, NULL);
        break;
    case DP_ASK:
        add_edge(g, n->next, EDGE_INPUT, NULL);
        for (size_t i = 0; i < n->n_options; i++)
            add_edge(g, n->options[i].target, EDGE_PLAIN, NULL);
        break;
    case DP_CALL:
        for (size_t i = 0; i < n->n_branches; i++) {
            bool dflt = !strcmp(n->branches[i].result, "default");
            add_edge(g, n->branches[i].target, dflt ? EDGE_DEFAULT : EDGE_RESULT, n->branches[i].result);
        }
        break;
    case DP_TRANSFER:
        add_edge(g, n->fallback, EDGE_PLAIN, NULL);
        break;
    case DP_SWITCH:
        for (size_t i = 0; i < n->n_options; i++)
            add_edge(g, n->options[i].target, EDGE_PLAIN, NULL);
        add_edge(g, n->next, EDGE_PLAIN, NULL);
        break;
    case DP_END:
        break;
    }
    if (is_waiting(n)) {
        add_edge(g, n->on_timeout.then, EDGE_PLAIN, NULL);
        add_edge(g, n->on_no_input.then, EDGE_PLAIN, NULL);
        add_edge(g, n->on_invalid.then, EDGE_PLAIN, NULL);
    }
}

static void build_graph(graph *g, dp_loader *L)
{
    *g = (graph){.L = L, .n = L->n_all};
    g->first = mem_calloc(g->n + 1, sizeof *g->first);
    g->reached = mem_calloc(g->n + 1, sizeof *g->reached);
    for (size_t i = 0; i < g->n; i++) {
        g->first[i] = g->n_edges;
        add_node_edges(g, &L->all[i]->pub);
    }
    g->first[g->n] = g->n_edges;
}

static void free_graph(graph *g)
{
    free(g->edges);
    free(g->first);
    free(g->reached);
}

/* Reachability -----------------------------------------------------------------*/

static bool routed(const dialplan *dp, const dp_flow *f)
{
    for (size_t i = 0; i < dp->n_routes; i++)
        if (dp->routes[i].flow == f)
            return true;
    return false;
}

static bool routed_on(const dialplan *dp, const dp_flow *f, channel_kind ch)
{
    for (size_t i = 0; i < dp->n_routes; i++)
        if (dp->routes[i].flow == f && dp->routes[i].channel == ch)
            return true;
    return false;
}

static void reach(bool *reached, size_t *stack, size_t *top, const dp_node *n)
{
    if (!n || reached[xnode_of(n)->index])
        return;
    reached[xnode_of(n)->index] = true;
    stack[(*top)++] = xnode_of(n)->index;
}

/* Marks in `reached` the nodes reachable from the start of a flow routed
 * on `ch` (any channel when `any`), from an agent entry, or from the start
 * of a flow another reachable node leads into. */
static void reach_all(graph *g, bool *reached, bool any, channel_kind ch)
{
    const dialplan *dp = g->L->dp;
    size_t *stack = mem_malloc((g->n + 1) * sizeof *stack), top = 0;
    for (size_t i = 0; i < dp->n_flows; i++)
        if (any ? routed(dp, dp->flows[i]) : routed_on(dp, dp->flows[i], ch))
            reach(reached, stack, &top, dp->flows[i]->start);
    for (size_t i = 0; i < g->n; i++)
        if (g->L->all[i]->pub.agent_entry)
            reach(reached, stack, &top, &g->L->all[i]->pub);
    while (top) {
        size_t i = stack[--top];
        reach(reached, stack, &top, g->L->all[i]->pub.flow->start);
        for (size_t e = g->first[i]; e < g->first[i + 1]; e++)
            reach(reached, stack, &top, &g->L->all[g->edges[e].to]->pub);
    }
    free(stack);
}

static void mark_reachable(graph *g)
{
    reach_all(g, g->reached, true, CHANNEL_VOICE);
}

static bool flow_reached(const graph *g, const dp_flow *f)
{
    return f->start && g->reached[xnode_of(f->start)->index];
}

static void report_unreachable(graph *g)
{
    dp_loader *L = g->L;
    for (size_t i = 0; i < L->dp->n_flows; i++) {
        const dp_flow *f = L->dp->flows[i];
        if (!flow_reached(g, f)) {
            PROBLEM(L, f->file, f->line, "unreachable flow '%s': no route or reference leads to it", f->name);
            continue;
        }
        for (size_t k = 0; k < f->n_nodes; k++)
            if (!g->reached[f->nodes[k]->index])
                PROBLEM(L, f->nodes[k]->pub.file, f->nodes[k]->pub.line, "unreachable node '%s' in flow '%s'",
                        f->nodes[k]->pub.name, f->name);
    }
}

/* Variables --------------------------------------------------------------------*/

typedef struct {
    const char **names;
    size_t n, cap;
    size_t words;            /* uint64_t words per set */
} vartab;

static long var_index(const vartab *v, const char *name)
{
    for (size_t i = 0; name && i < v->n; i++)
        if (!strcmp(v->names[i], name))
            return (long)i;
    return -1;
}

static void var_add(vartab *v, const char *name)
{
    if (var_index(v, name) >= 0)
        return;
    v->names = dp_grow(v->names, &v->cap, v->n, sizeof *v->names);
    v->names[v->n++] = name;
}

static void collect_vars(vartab *v, dp_loader *L)
{
    static const char *const builtins[DP_N_BUILTIN_VARS] = {"caller", "channel", "lang", "session", "node"};
    for (size_t i = 0; i < DP_N_BUILTIN_VARS; i++)
        var_add(v, builtins[i]);
    for (size_t i = 0; i < L->dp->n_values; i++)
        var_add(v, L->dp->values[i].name);
    for (size_t i = 0; i < L->n_all; i++) {
        const dp_node *n = &L->all[i]->pub;
        for (size_t k = 0; k < n->n_set; k++)
            var_add(v, n->set[k].name);
        if (n->kind == DP_ASK && n->into)
            var_add(v, n->into);
        for (const handler_result *r = n->handler ? n->handler->results : NULL; r && r->name; r++)
            for (size_t s = 0; r->sets && r->sets[s]; s++)
                var_add(v, r->sets[s]);
    }
    v->words = (v->n + 63) / 64;
}

typedef uint64_t *bits;

static void bit_set(bits b, long i)
{
    if (i >= 0)
        b[i / 64] |= UINT64_C(1) << (i % 64);
}

static bool bit_has(const uint64_t *b, long i)
{
    return i >= 0 && (b[i / 64] >> (i % 64)) & 1;
}

typedef struct {
    graph *g;
    vartab vars;
    uint64_t *in;            /* n × words: variables set on every path into node i */
    bool *known;             /* in[i] holds a value */
    bool *queued;            /* i is on the work stack */
    uint64_t *secret;        /* variables declared secret */
    uint64_t *scratch;
    bool unknown_handlers;   /* some call's handler is unknown (already reported) */
    size_t *work;
    size_t n_work;
} must;

static bits in_of(must *m, size_t i)
{
    return m->in + i * m->vars.words;
}

static bool is_secret(dp_loader *L, const char *name)
{
    for (size_t i = 0; i < L->n_secrets; i++)
        if (!strcmp(L->secrets[i].name, name))
            return true;
    return false;
}

/* What every result of `call` not branched on by name sets. */
static void default_sets(must *m, const dp_node *call, bits out)
{
    bool first = true;
    uint64_t *one = mem_calloc(m->vars.words + 1, sizeof *one);
    for (const handler_result *r = call->handler ? call->handler->results : NULL; r && r->name; r++) {
        bool named = false;
        for (size_t i = 0; i < call->n_branches && !named; i++)
            named = !strcmp(call->branches[i].result, r->name);
        if (named)
            continue;
        memset(one, 0, m->vars.words * sizeof *one);
        for (size_t s = 0; r->sets && r->sets[s]; s++)
            bit_set(one, var_index(&m->vars, r->sets[s]));
        for (size_t w = 0; w < m->vars.words; w++)
            out[w] = first ? one[w] : out[w] & one[w];
        first = false;
    }
    if (first)
        memset(out, 0, m->vars.words * sizeof *out);
    free(one);
}

/* The variables set when leaving node i along edge e. */
static void out_along(must *m, size_t i, const edge *e, bits out)
{
    const dp_node *n = &m->g->L->all[i]->pub;
    size_t W = m->vars.words;
    memcpy(out, in_of(m, i), W * sizeof *out);
    if (n->kind == DP_CALL && !n->handler) {
        /* What an unknown handler sets is unknown: assume everything rather
         * than report every variable after it. */
        memset(out, 0xff, W * sizeof *out);
        return;
    }
    for (size_t k = 0; k < n->n_set; k++)
        bit_set(out, var_index(&m->vars, n->set[k].name));
    if (is_waiting(n))
        for (size_t w = 0; w < W; w++)
            out[w] &= ~m->secret[w];
    if (e->kind == EDGE_INPUT)
        bit_set(out, var_index(&m->vars, n->into));
    if (e->kind == EDGE_RESULT) {
        for (const handler_result *r = n->handler ? n->handler->results : NULL; r && r->name; r++)
            for (size_t s = 0; !strcmp(r->name, e->result) && r->sets && r->sets[s]; s++)
                bit_set(out, var_index(&m->vars, r->sets[s]));
    }
    if (e->kind == EDGE_DEFAULT) {
        uint64_t *d = mem_calloc(W + 1, sizeof *d);
        default_sets(m, n, d);
        for (size_t w = 0; w < W; w++)
            out[w] |= d[w];
        free(d);
    }
}

static void meet(must *m, size_t to, const uint64_t *val)
{
    size_t W = m->vars.words;
    bits in = in_of(m, to);
    bool changed = !m->known[to];
    for (size_t w = 0; w < W; w++) {
        uint64_t v = m->known[to] ? in[w] & val[w] : val[w];
        changed = changed || v != in[w];
        in[w] = v;
    }
    m->known[to] = true;
    if (changed && !m->queued[to]) {
        m->queued[to] = true;
        m->work[m->n_work++] = to;
    }
}

static void propagate(must *m)
{
    while (m->n_work) {
        size_t i = m->work[--m->n_work];
        m->queued[i] = false;
        for (size_t e = m->g->first[i]; e < m->g->first[i + 1]; e++) {
            out_along(m, i, &m->g->edges[e], m->scratch);
            meet(m, m->g->edges[e].to, m->scratch);
        }
    }
}

/* An agent sends a session in with whatever it holds: any variable but a
 * secret may be set (one that is not renders empty). */
static void meet_agent_entries(must *m)
{
    uint64_t *any = mem_calloc(m->vars.words + 1, sizeof *any);
    for (size_t w = 0; w < m->vars.words; w++)
        any[w] = ~m->secret[w];
    for (size_t i = 0; i < m->g->n; i++)
        if (m->g->L->all[i]->pub.agent_entry)
            meet(m, i, any);
    free(any);
}

/* Entry points start with the built-ins only: routed flow starts first, then
 * agent entries (see above), then any reachable node nothing reachable
 * leads to (a flow's start reached only because another of its nodes is). */
static void solve(must *m)
{
    const dialplan *dp = m->g->L->dp;
    uint64_t *builtins = mem_calloc(m->vars.words + 1, sizeof *builtins);
    for (long i = 0; i < (long)(DP_N_BUILTIN_VARS + dp->n_values); i++)
        bit_set(builtins, i);
    for (size_t i = 0; i < dp->n_flows; i++)
        if (routed(dp, dp->flows[i]) && dp->flows[i]->start)
            meet(m, xnode_of(dp->flows[i]->start)->index, builtins);
    meet_agent_entries(m);
    propagate(m);
    for (size_t i = 0; i < m->g->n; i++) {
        if (m->g->reached[i] && !m->known[i]) {
            meet(m, i, builtins);
            propagate(m);
        }
    }
    free(builtins);
}

typedef enum {
    USE_PLAIN,               /* prompt, set value, transfer reason, ordinary argument */
    USE_SECRET_ARG           /* an argument the handler accepts a secret in */
} use_kind;

static void check_use(must *m, const dp_node *n, const uint64_t *avail, const char *var, use_kind how)
{
    dp_loader *L = m->g->L;
    long i = var_index(&m->vars, var);
    if (is_secret(L, var)) {
        if (how != USE_SECRET_ARG)
            PROBLEM(L, n->file, n->line,
                    "node '%s': secret variable '%s' may only be passed to a handler argument that accepts secrets",
                    n->name, var);
        else if (!bit_has(avail, i))
            PROBLEM(L, n->file, n->line,
                    "node '%s': secret variable '%s' is not available here: a secret must be used before the next "
                    "waiting node",
                    n->name, var);
        return;
    }
    if (i < 0 && !m->unknown_handlers)
        PROBLEM(L, n->file, n->line, "node '%s': variable '%s' is never set", n->name, var);
    else if (i >= 0 && !bit_has(avail, i))
        PROBLEM(L, n->file, n->line, "node '%s': variable '%s' may be used before it is set", n->name, var);
}

static void check_template_use(must *m, const dp_node *n, const uint64_t *avail, const dp_template *t,
                               use_kind how)
{
    for (size_t k = 0; t && k < t->n_parts; k++)
        if (t->parts[k].is_var)
            check_use(m, n, avail, t->parts[k].text, how);
}

/* Variables of prompt `id` in any language and wording; each name once. */
static void check_prompt_vars(must *m, const dp_node *n, const uint64_t *avail, const char *id, const char **seen,
                              size_t *n_seen)
{
    const dialplan *dp = m->g->L->dp;
    for (size_t c = 0; id && c < dp->n_cats; c++) {
        const dp_prompt *pr = dp_catalogue_find(&dp->cats[c], id);
        for (int w = 0; pr && w < DP_W_COUNT; w++) {
            for (size_t k = 0; pr->w[w] && k < pr->w[w]->n_parts; k++) {
                const dp_tpart *p = &pr->w[w]->parts[k];
                bool dup = false;
                for (size_t s = 0; s < *n_seen && !dup; s++)
                    dup = !strcmp(seen[s], p->text);
                if (!p->is_var || dup || *n_seen >= 64)
                    continue;
                seen[(*n_seen)++] = p->text;
                check_use(m, n, avail, p->text, USE_PLAIN);
            }
        }
    }
}

static bool in_list(const char *const *list, const char *s)
{
    for (size_t i = 0; list && list[i]; i++)
        if (!strcmp(list[i], s))
            return true;
    return false;
}

static void check_node_uses(must *m, size_t i)
{
    const dp_node *n = &m->g->L->all[i]->pub;
    bits avail = m->scratch;
    memcpy(avail, in_of(m, i), m->vars.words * sizeof *avail);
    for (size_t k = 0; k < n->n_set; k++) {
        check_template_use(m, n, avail, n->set[k].value, USE_PLAIN);
        bit_set(avail, var_index(&m->vars, n->set[k].name));
    }
    const char *seen[64];
    size_t n_seen = 0;
    for (size_t k = 0; k < n->n_prompts; k++)
        check_prompt_vars(m, n, avail, n->prompts[k], seen, &n_seen);
    if (is_waiting(n)) {
        check_prompt_vars(m, n, avail, n->on_timeout.prompt, seen, &n_seen);
        check_prompt_vars(m, n, avail, n->on_no_input.prompt, seen, &n_seen);
        check_prompt_vars(m, n, avail, n->on_invalid.prompt, seen, &n_seen);
    }
    for (size_t k = 0; n->handler && k < n->n_args; k++) {
        bool secret_ok = in_list(n->handler->secret_args, n->args[k].name);
        check_template_use(m, n, avail, n->args[k].value, secret_ok ? USE_SECRET_ARG : USE_PLAIN);
    }
    if (n->kind == DP_TRANSFER)
        check_template_use(m, n, avail, n->reason, USE_PLAIN);
    if (n->kind == DP_SWITCH)
        check_template_use(m, n, avail, n->subject, USE_PLAIN);
}

static void check_secret_declarations(dp_loader *L)
{
    for (size_t i = 0; i < L->n_all; i++) {
        const dp_node *n = &L->all[i]->pub;
        if (n->kind == DP_ASK && n->into && !n->secret && is_secret(L, n->into))
            PROBLEM(L, n->file, n->line, "node '%s': variable '%s' is secret elsewhere and must be secret here too",
                    n->name, n->into);
        for (size_t k = 0; k < n->n_set; k++)
            if (is_secret(L, n->set[k].name))
                PROBLEM(L, n->file, n->line, "node '%s': secret variable '%s' cannot be set", n->name,
                        n->set[k].name);
        for (size_t k = 0; k < n->n_set; k++)
            if (dp_setting_value(L->dp, n->set[k].name))
                PROBLEM(L, n->file, n->line, "node '%s': '%s' is a settings value and cannot be set", n->name,
                        n->set[k].name);
        if (n->kind == DP_ASK && n->into && dp_setting_value(L->dp, n->into))
            PROBLEM(L, n->file, n->line, "node '%s': '%s' is a settings value and cannot be set", n->name,
                    n->into);
    }
}

static void check_variables(graph *g)
{
    must m = {.g = g};
    collect_vars(&m.vars, g->L);
    size_t W = m.vars.words;
    m.in = mem_calloc(g->n * W + 1, sizeof *m.in);
    m.known = mem_calloc(g->n + 1, sizeof *m.known);
    m.secret = mem_calloc(W + 1, sizeof *m.secret);
    m.scratch = mem_calloc(W + 1, sizeof *m.scratch);
    m.queued = mem_calloc(g->n + 1, sizeof *m.queued);
    m.work = mem_malloc((g->n + 1) * sizeof *m.work);
    for (size_t i = 0; i < g->n; i++)
        m.unknown_handlers = m.unknown_handlers || (g->L->all[i]->pub.kind == DP_CALL && !g->L->all[i]->pub.handler);
    for (size_t i = 0; i < g->L->n_secrets; i++)
        bit_set(m.secret, var_index(&m.vars, g->L->secrets[i].name));
    solve(&m);
    for (size_t i = 0; i < g->n; i++)
        if (g->reached[i] && m.known[i])
            check_node_uses(&m, i);
    check_secret_declarations(g->L);
    free(m.vars.names);
    free(m.in);
    free(m.known);
    free(m.queued);
    free(m.secret);
    free(m.scratch);
    free(m.work);
}

/* Input-free loops ---------------------------------------------------------------*/

/* Depth-first search over the nodes that do not wait for input; an edge back
 * to a node on the current path closes a loop the engine could spin in. */
typedef struct {
    size_t node;
    size_t next_edge;
} frame;

static void report_loop(graph *g, const frame *path, size_t depth, size_t from)
{
    char text[512] = "";
    size_t len = 0;
    const dp_node *head = &g->L->all[path[from].node]->pub;
    for (size_t k = from; k < depth && len < sizeof text - 80; k++) {
        const dp_node *n = &g->L->all[path[k].node]->pub;
        bool other_flow = n->flow != head->flow;
        len += (size_t)snprintf(text + len, sizeof text - len, "%s%s%s -> ", other_flow ? n->flow->name : "",
                                other_flow ? "." : "", n->name);
    }
    snprintf(text + len, sizeof text - len, "%s", head->name);
    PROBLEM(g->L, head->file, head->line, "input-free loop: %s (no menu or ask on the way)", text);
}

static void find_loops(graph *g)
{
    unsigned char *color = mem_calloc(g->n + 1, 1); /* 0 new, 1 on path, 2 done */
    frame *path = mem_malloc((g->n + 1) * sizeof *path);
    for (size_t root = 0; root < g->n; root++) {
        if (color[root] || is_waiting(&g->L->all[root]->pub))
            continue;
        size_t depth = 0;
        path[depth++] = (frame){root, g->first[root]};
        color[root] = 1;
        while (depth) {
            frame *f = &path[depth - 1];
            if (f->next_edge == g->first[f->node + 1]) {
                color[f->node] = 2;
                depth--;
                continue;
            }
            size_t to = g->edges[f->next_edge++].to;
            if (is_waiting(&g->L->all[to]->pub) || color[to] == 2)
                continue;
            if (color[to] == 1) {
                size_t from = 0;
                while (path[from].node != to)
                    from++;
                report_loop(g, path, depth, from);
                continue;
            }
            color[to] = 1;
            path[depth++] = (frame){to, g->first[to]};
        }
    }
    free(color);
    free(path);
}

/* USSD pages -------------------------------------------------------------------*/

/* What a question costs on a USSD page, placeholders at their widest. */
typedef struct {
    const char *lang;        /* the catalogue's language (dates, amounts) */
    char text[4 * DP_MAX_PROMPT_BYTES]; /* the wording with every placeholder at its widest */
    size_t len;
} widest;

static void widest_put(widest *w, const char *s)
{
    size_t n = strlen(s);
    if (w->len + n < sizeof w->text) {
        memcpy(w->text + w->len, s, n + 1);
        w->len += n;
    }
}

/* A placeholder's widest text (docs/dialplans.md, "What the checker
 * reports"): free text as 20 Chinese characters (a bank, an outlet), IDs,
 * cards and phones masked as shown, dates and amounts in the language's
 * words. A settings value renders as itself. */
static void widest_piece(const dp_piece *piece, void *arg)
{
    widest *w = arg;
    bool zh = !strcmp(w->lang, "zh");
    if (!piece->is_value || piece->text[0]) {
        widest_put(w, piece->text);
        return;
    }
    switch (piece->render) {
    case DP_RENDER_DIGITS:
        widest_put(w, "123456789012345678");
        break;
    case DP_RENDER_NUMBER:
        widest_put(w, "1234567890");
        break;
    case DP_RENDER_DATE:
        widest_put(w, zh ? "2026年12月31日" : "30 September 2026");
        break;
    case DP_RENDER_AMOUNT:
        widest_put(w, zh ? "9999999.99元" : "CNY 9999999.99");
        break;
    case DP_RENDER_ID:
        widest_put(w, mask_id("11010119900307451X").s);
        break;
    case DP_RENDER_CARD:
        widest_put(w, mask_card("AB1000001").s);
        break;
    case DP_RENDER_PHONE:
        widest_put(w, mask_phone("+8613800000001").s);
        break;
    default:
        widest_put(w, "中国工商银行股份有限公司北京市分行");
        break;
    }
}

static bool prompt_seen(const dp_prompt **seen, size_t n, const dp_prompt *pr)
{
    for (size_t i = 0; i < n; i++)
        if (seen[i] == pr)
            return true;
    return false;
}

/* The question of a waiting node (its last prompt: a menu's question and
 * options, an ask's request) is what a USSD page keeps whole, so in every
 * language it must fit one USSD string on its own. Checked for the nodes a
 * USSD route can reach; reported once per prompt and language, where the
 * wording is. */
static void check_ussd_questions(graph *g)
{
    dp_loader *L = g->L;
    const dialplan *dp = L->dp;
    bool *ussd = mem_calloc(g->n + 1, sizeof *ussd);
    const dp_prompt **seen = mem_calloc(g->n * dp->n_langs + 1, sizeof *seen);
    size_t n_seen = 0;
    reach_all(g, ussd, false, CHANNEL_USSD);
    for (size_t i = 0; i < g->n; i++) {
        const dp_node *n = &L->all[i]->pub;
        if (!ussd[i] || !is_waiting(n) || n->n_prompts == 0)
            continue;
        const char *id = n->prompts[n->n_prompts - 1];
        for (size_t li = 0; li < dp->n_langs; li++) {
            const dp_catalogue *c = dp_catalogue_of(dp, dp->langs[li]);
            const dp_prompt *pr = c ? dp_catalogue_find(c, id) : NULL;
            if (!pr || !dp_prompt_wording(pr, CHANNEL_USSD) || prompt_seen(seen, n_seen, pr))
                continue;   /* a prompt without USSD wording was reported already */
            seen[n_seen++] = pr;
            widest *w = mem_calloc(1, sizeof *w);
            w->lang = c->lang;
            dialplan_render_pieces(dp, c->lang, CHANNEL_USSD, id, NULL, widest_piece, w);
            size_t octets = gsm_octets(w->text, w->len);
            if (octets > GSM_USSD_OCTETS) {
                bool gsm = gsm_is_gsm7(w->text, w->len);
                PROBLEM(L, pr->file, pr->line,
                        "prompt '%s' (%s) of %s '%s' does not fit one USSD page: %zu %s, at most %d "
                        "(placeholders at their widest)",
                        id, c->lang, n->kind == DP_MENU ? "menu" : "ask", n->name,
                        gsm ? gsm_septets(w->text, w->len) : gsm_ucs2_units(w->text, w->len),
                        gsm ? "GSM-7 characters" : "UCS-2 units", gsm ? GSM_USSD_OCTETS * 8 / 7 : GSM_USSD_OCTETS / 2);
            }
            free(w);
        }
    }
    free(seen);
    free(ussd);
}

/* All of it -----------------------------------------------------------------*/

void dp_check(dp_loader *L)
{
    fill_defaults(L);
    for (size_t i = 0; i < L->n_pend; i++)
        resolve_target(L, &L->pend[i]);
    resolve_routes(L);
    check_catalogues(L);
    check_used_prompts(L);
    check_lang_sets(L);
    check_ask_keys(L);
    graph g;
    build_graph(&g, L);
    mark_reachable(&g);
    report_unreachable(&g);
    check_variables(&g);
    find_loops(&g);
    check_ussd_questions(&g);
    free_graph(&g);
}
