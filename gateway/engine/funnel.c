/* funnel — the counts behind cardline_flow_node_total and GET /v1/funnel
 * (see internal/funnel.h). Owns one row of counters per node of the
 * loaded set, in flow order and, within a flow, in the order the nodes are
 * written; a sorted index of node pointers finds a mark's row. */
#include "funnel.h"

#include <event2/buffer.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

typedef struct {
    const dp_node *node;                   /* the node (of the set the table was built for) */
    uint64_t count[FUNNEL_OUTCOMES];       /* by funnel_outcome */
} funnel_row;

struct funnel {
    funnel_row *rows;         /* flow by flow, nodes as written */
    size_t n_rows;
    funnel_row **by_node;     /* the rows sorted by node pointer */
};

static const char *const outcome_names[FUNNEL_OUTCOMES] = {"entered", "next", "timeout", "invalid",
                                                           "hangup", "transfer", "end"};

static const char *const kind_names[] = {"say", "menu", "ask", "call", "goto", "switch", "transfer", "end"};

static int by_pointer(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)(*(funnel_row *const *)a)->node, y = (uintptr_t)(*(funnel_row *const *)b)->node;
    return (x > y) - (x < y);
}

static funnel_row *row_of(const funnel *f, const dp_node *node)
{
    funnel_row key = {.node = node}, *k = &key;
    funnel_row **found = f->n_rows ? bsearch(&k, f->by_node, f->n_rows, sizeof *f->by_node, by_pointer) : NULL;
    return found ? *found : NULL;
}

/* The row of the node named like `n` in `old`, or NULL. */
static const funnel_row *same_node(const funnel *old, const dp_node *n)
{
    for (size_t i = 0; old && i < old->n_rows; i++) {
        const dp_node *o = old->rows[i].node;
        if (strcmp(o->name, n->name) == 0 && strcmp(dp_flow_name(o->flow), dp_flow_name(n->flow)) == 0)
            return &old->rows[i];
    }
    return NULL;
}

funnel *engine_funnel_new(const dialplan *dp, const funnel *old)
{
    funnel *f = mem_calloc(1, sizeof *f);
    for (size_t i = 0; i < dialplan_flow_count(dp); i++)
        f->n_rows += dp_flow_node_count(dialplan_flow_at(dp, i));
    f->rows = mem_calloc(f->n_rows ? f->n_rows : 1, sizeof *f->rows);
    f->by_node = mem_calloc(f->n_rows ? f->n_rows : 1, sizeof *f->by_node);
    size_t r = 0;
    for (size_t i = 0; i < dialplan_flow_count(dp); i++) {
        const dp_flow *flow = dialplan_flow_at(dp, i);
        for (size_t j = 0; j < dp_flow_node_count(flow); j++, r++) {
            funnel_row *row = &f->rows[r];
            row->node = dp_flow_node_at(flow, j);
            const funnel_row *was = same_node(old, row->node);
            if (was)
                memcpy(row->count, was->count, sizeof row->count);
            f->by_node[r] = row;
        }
    }
    qsort(f->by_node, f->n_rows, sizeof *f->by_node, by_pointer);
    return f;
}

void engine_funnel_free(funnel *f)
{
    if (f == NULL)
        return;
    free(f->rows);
    free(f->by_node);
    free(f);
}

void engine_funnel_mark(funnel_marks *m, const dp_node *node, funnel_outcome what)
{
    if (m && node && m->n < FUNNEL_MAX_MARKS)
        m->items[m->n++] = (funnel_mark){node, what};
}

void engine_funnel_add(funnel *f, const funnel_marks *m)
{
    for (size_t i = 0; i < m->n; i++) {
        funnel_row *row = row_of(f, m->items[i].node);
        if (row)
            row->count[m->items[i].what]++;
    }
}

static const char *kind_name(dp_node_kind k)
{
    return (size_t)k < sizeof kind_names / sizeof kind_names[0] ? kind_names[k] : "other";
}

json_t *engine_funnel_json(const funnel *f)
{
    json_t *flows = json_array(), *nodes = NULL;
    const dp_flow *flow = NULL;
    for (size_t i = 0; i < f->n_rows; i++) {
        const funnel_row *row = &f->rows[i];
        if (row->node->flow != flow) {
            flow = row->node->flow;
            nodes = json_array();
            json_array_append_new(flows, json_pack("{s:s, s:o}", "flow", dp_flow_name(flow), "nodes", nodes));
        }
        json_t *left = json_object();
        for (int o = FUNNEL_NEXT; o < FUNNEL_OUTCOMES; o++)
            json_object_set_new(left, outcome_names[o], json_integer((json_int_t)row->count[o]));
        json_array_append_new(nodes, json_pack("{s:s, s:s, s:I, s:o}", "node", row->node->name, "kind",
                                               kind_name(row->node->kind), "entered",
                                               (json_int_t)row->count[FUNNEL_ENTERED], "left", left));
    }
    return json_pack("{s:o}", "flows", flows);
}

void engine_funnel_render(const funnel *f, struct evbuffer *out)
{
    evbuffer_add_printf(out, "# HELP cardline_flow_node_total Dialplan nodes entered and left, by flow, node "
                             "and outcome (entered, or how the walk left).\n"
                             "# TYPE cardline_flow_node_total counter\n");
    for (size_t i = 0; i < f->n_rows; i++) {
        const funnel_row *row = &f->rows[i];
        for (int o = 0; o < FUNNEL_OUTCOMES; o++)
            evbuffer_add_printf(out, "cardline_flow_node_total{flow=\"%s\",node=\"%s\",outcome=\"%s\"} %llu\n",
                                dp_flow_name(row->node->flow), row->node->name, outcome_names[o],
                                (unsigned long long)row->count[o]);
    }
}
