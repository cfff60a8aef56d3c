/* view — builds what agents see from stored JSON (see view.h). Every field
 * shown is named here; anything else in a document stays in Redis. */
#include "view.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mask.h"
#include "utf8.h"

/* Variables of a session an agent may see, and how each is masked for
 * restricted roles. None may hold a secret: ask nodes marked secret are
 * never stored, and names of PINs, codes and digests are not listed. */
typedef enum { SHOW_AS_IS, SHOW_CARD, SHOW_PHONE } show_kind;

static const struct {
    const char *name;   /* variable name */
    show_kind kind;     /* masking below supervisor */
} shown_vars[] = {
    {"intent", SHOW_AS_IS},
    {"card", SHOW_CARD},
    {"mobile", SHOW_PHONE},
};

/* Text ---------------------------------------------------------------------*/

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alnum(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* The replacement of one digit run (a leading '+' and an ID's trailing X
 * included in `run`), or NULL to keep it. */
static const char *mask_run(const char *run, size_t digits, unsigned flags, masked *m)
{
    if (digits >= 9 && (flags & VIEW_MASK_IDENTIFIERS)) {
        bool id = digits == 18 || (digits == 17 && (run[strlen(run) - 1] | 0x20) == 'x');
        *m = id ? mask_id(run) : mask_phone(run);
        return m->s;
    }
    if (digits >= 4 && digits <= 8 && (flags & VIEW_MASK_SHORT_NUMBERS)) {
        size_t n = strlen(run);
        memset(m->s, '*', n);
        m->s[n] = '\0';
        return m->s;
    }
    return NULL;
}

/* Appends `s` (n bytes) if it fits whole; returns false when full. */
static bool put(char *out, size_t size, size_t *len, const char *s, size_t n)
{
    if (*len + n >= size)
        return false;
    memcpy(out + *len, s, n);
    *len += n;
    return true;
}

void agents_view_mask_text(const char *in, unsigned flags, char *out, size_t size)
{
    size_t len = 0;
    const char *p = in ? in : "";
    if (size == 0)
        return;
    while (*p) {
        bool starts_run = is_digit(*p) || (*p == '+' && is_digit(p[1]));
        if (starts_run && (p == in || !is_alnum(p[-1]))) {
            const char *q = p + (*p == '+');
            size_t digits = strspn(q, "0123456789");
            size_t n = (size_t)(q - p) + digits;
            if (digits == 17 && (q[17] == 'X' || q[17] == 'x'))
                n++;
            char run[sizeof ((masked *)0)->s];
            masked m;
            const char *rep = NULL;
            if (n < sizeof run && !is_alnum(p[n])) {
                memcpy(run, p, n);
                run[n] = '\0';
                rep = mask_run(run, digits, flags, &m);
            }
            if (!put(out, size, &len, rep ? rep : p, rep ? strlen(rep) : n))
                break;
            p += n;
            continue;
        }
        size_t n = utf8_char_len(p);
        if (n == 0)
            n = 1; /* not UTF-8: copied byte by byte, the caller checked it */
        if (!put(out, size, &len, p, n))
            break;
        p += n;
    }
    out[len] = '\0';
}

static json_t *masked_string(const char *s, unsigned flags)
{
    char buf[VIEW_MAX_TEXT];
    agents_view_mask_text(s, flags, buf, sizeof buf);
    return json_string(buf);
}

/* Document fields -------------------------------------------------------------*/

static const char *str_of(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

static json_t *str_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

static json_t *caller_of(json_t *doc, bool unmasked)
{
    const char *caller = str_of(doc, "caller");
    return json_string(unmasked ? caller : mask_phone(caller).s);
}

static json_int_t ms_of(json_t *doc, const char *key)
{
    return json_integer_value(json_object_get(doc, key));
}

static bool transferred(json_t *doc)
{
    return strcmp(str_of(doc, "state"), "transfer") == 0;
}

json_t *agents_view_summary(json_t *doc, bool unmasked)
{
    json_t *queue = transferred(doc) ? str_or_null(str_of(json_object_get(doc, "transfer"), "queue"))
                                     : json_null();
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:I}", "id", str_of(doc, "id"), "channel",
                     str_of(doc, "channel"), "state", str_of(doc, "state"), "flow", str_of(doc, "flow"), "node",
                     str_of(doc, "node"), "queue", queue, "caller", caller_of(doc, unmasked), "updated_ms",
                     ms_of(doc, "updated_at"));
}

json_t *agents_view_queued(json_t *doc, long long since_ms, bool unmasked)
{
    unsigned flags = unmasked ? VIEW_MASK_SHORT_NUMBERS : VIEW_MASK_IDENTIFIERS | VIEW_MASK_SHORT_NUMBERS;
    json_t *t = json_object_get(doc, "transfer");
    return json_pack("{s:s, s:s, s:o, s:s, s:s, s:o, s:o, s:o, s:I}", "id", str_of(doc, "id"), "channel",
                     str_of(doc, "channel"), "caller", caller_of(doc, unmasked), "flow", str_of(doc, "flow"), "node",
                     str_of(doc, "node"), "from", str_or_null(str_of(json_object_get(doc, "vars"), "node")), "queue",
                     str_or_null(str_of(t, "queue")), "reason", masked_string(str_of(t, "reason"), flags),
                     "waiting_since_ms", (json_int_t)since_ms);
}

bool agents_view_matches(json_t *doc, const char *channel, const char *state, const char *queue)
{
    if (channel && strcmp(str_of(doc, "channel"), channel) != 0)
        return false;
    if (state && strcmp(str_of(doc, "state"), state) != 0)
        return false;
    return !queue || (transferred(doc) && strcmp(str_of(json_object_get(doc, "transfer"), "queue"), queue) == 0);
}

/* Context ---------------------------------------------------------------------*/

static json_t *verification_of(json_t *vars, bool unmasked)
{
    const char *id = str_of(vars, "verified_id");
    if (!*id)
        return json_pack("{s:s, s:n}", "level", "none", "id");
    return json_pack("{s:s, s:s}", "level", "pin", "id", unmasked ? id : mask_id(id).s);
}

static json_t *transfer_of(json_t *doc, unsigned flags)
{
    json_t *t = json_object_get(doc, "transfer");
    if (!json_is_object(t))
        return json_null();
    return json_pack("{s:s, s:o}", "queue", str_of(t, "queue"), "reason", masked_string(str_of(t, "reason"), flags));
}

static json_t *assist_of(json_t *vars)
{
    const char *node = str_of(vars, "assist_node"), *result = str_of(vars, "assist_result");
    if (!*node && !*result)
        return json_null();
    return json_pack("{s:o, s:o}", "node", str_or_null(node), "result", str_or_null(result));
}

static json_t *vars_of(json_t *vars, bool unmasked)
{
    json_t *out = json_object();
    for (size_t i = 0; i < sizeof shown_vars / sizeof shown_vars[0]; i++) {
        const char *v = json_string_value(json_object_get(vars, shown_vars[i].name));
        if (v == NULL)
            continue;
        const char *shown = v;
        masked m;
        if (!unmasked && shown_vars[i].kind != SHOW_AS_IS) {
            m = shown_vars[i].kind == SHOW_CARD ? mask_card(v) : mask_phone(v);
            shown = m.s;
        }
        json_object_set_new(out, shown_vars[i].name, json_string(shown));
    }
    return out;
}

json_t *agents_view_event(const char *event, bool unmasked)
{
    char kind[32], where[160];
    long long ms;
    int used = 0;
    if (sscanf(event, "%31s %159s %lld%n", kind, where, &ms, &used) != 3)
        return json_pack("{s:s}", "kind", "unreadable");
    json_t *e = json_pack("{s:s, s:s, s:I}", "kind", kind, "node", where, "at_ms", (json_int_t)ms);
    const char *input = event + used;
    if (*input == ' ') {
        unsigned flags = VIEW_MASK_SHORT_NUMBERS | (unmasked ? 0 : VIEW_MASK_IDENTIFIERS);
        json_object_set_new(e, "input", masked_string(input + 1, flags));
    }
    return e;
}

static json_t *events_of(json_t *events, bool unmasked)
{
    json_t *out = json_array();
    size_t n = json_array_size(events);
    for (size_t i = n > VIEW_EVENTS_SHOWN ? n - VIEW_EVENTS_SHOWN : 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(events, i));
        if (s)
            json_array_append_new(out, agents_view_event(s, unmasked));
    }
    return out;
}

/* Held SMS are the citizen's words to the agent: shown as received, but
 * with long numbers masked below supervisor. */
static json_t *held_of(json_t *held, bool unmasked)
{
    json_t *out = json_array();
    size_t i;
    json_t *item;
    json_array_foreach(held, i, item) {
        const char *s = json_string_value(item);
        json_t *msg = s ? json_loads(s, 0, NULL) : NULL;
        const char *text = json_string_value(json_object_get(msg, "text"));
        if (text && utf8_valid(text))
            json_array_append_new(out, json_pack("{s:I, s:o}", "at_ms", ms_of(msg, "at_ms"), "text",
                                                 masked_string(text, unmasked ? 0 : VIEW_MASK_IDENTIFIERS)));
        json_decref(msg);
    }
    return out;
}

json_t *agents_view_context(json_t *doc, json_t *events, json_t *held, bool unmasked)
{
    json_t *vars = json_object_get(doc, "vars");
    unsigned flags = VIEW_MASK_SHORT_NUMBERS | (unmasked ? 0 : VIEW_MASK_IDENTIFIERS);
    json_t *ctx = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:I, s:I}", "id", str_of(doc, "id"), "channel",
                            str_of(doc, "channel"), "state", str_of(doc, "state"), "flow", str_of(doc, "flow"),
                            "node", str_of(doc, "node"), "lang", str_of(vars, "lang"), "caller",
                            caller_of(doc, unmasked), "created_ms", ms_of(doc, "created_at"), "updated_ms",
                            ms_of(doc, "updated_at"));
    json_object_set_new(ctx, "verification", verification_of(vars, unmasked));
    json_object_set_new(ctx, "transfer", transfer_of(doc, flags));
    json_object_set_new(ctx, "assist", assist_of(vars));
    json_object_set_new(ctx, "vars", vars_of(vars, unmasked));
    if (strcmp(str_of(doc, "channel"), "sms") == 0)
        json_object_set_new(ctx, "held", held_of(held, unmasked));
    json_object_set_new(ctx, "events", events_of(events, unmasked));
    return ctx;
}

/* Callbacks --------------------------------------------------------------------*/

/* The producer's compact context, rebuilt from the fields agents may see. */
static json_t *callback_context(const char *text, unsigned flags)
{
    json_t *in = json_loads(text, 0, NULL), *out = json_null();
    if (json_is_object(in)) {
        out = json_pack("{s:s, s:s, s:b, s:o}", "flow", str_of(in, "flow"), "node", str_of(in, "node"),
                        "verified", json_is_true(json_object_get(in, "verified")), "verified_id",
                        masked_string(str_of(in, "verified_id"), flags));
    }
    json_decref(in);
    return out;
}

json_t *agents_view_callback(const char *entry_id, json_t *fields, const char *state, const char *agent,
                      const char *updated_ms, bool unmasked)
{
    const char *caller = str_of(fields, "caller");
    unsigned flags = VIEW_MASK_SHORT_NUMBERS | (unmasked ? 0 : VIEW_MASK_IDENTIFIERS);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:I, s:s, s:o, s:I}", "entry", entry_id, "ref",
                     str_of(fields, "ref"), "session", str_of(fields, "session"), "caller",
                     unmasked ? caller : mask_phone(caller).s, "lang", str_of(fields, "lang"), "reason",
                     masked_string(str_of(fields, "reason"), flags), "context",
                     callback_context(str_of(fields, "context"), unmasked ? 0 : VIEW_MASK_IDENTIFIERS),
                     "created_ms", (json_int_t)strtoll(str_of(fields, "created_ms"), NULL, 10), "state",
                     state && *state ? state : "queued", "agent", str_or_null(agent), "updated_ms",
                     (json_int_t)(updated_ms ? strtoll(updated_ms, NULL, 10) : 0));
}
