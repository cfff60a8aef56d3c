/* dialplan — menu scripts: routes from entry points to flows, flows of
 * nodes, and the prompt catalogue per language (docs/dialplans.md).
 *
 * dialplan_load() reads every *.yaml file of a directory (libyaml), compiles
 * patterns (PCRE2, JIT), resolves every target to a node pointer and checks
 * the whole set: each problem is reported as "FILE:LINE: message" and a set
 * with any error is never returned. A loaded set is immutable and shared:
 * the engine reads nodes through the structs below and never changes them.
 * A reload builds a new set and swaps the pointer; the old set is freed when
 * no hop uses it any more (dialplan_ref/unref).
 *
 * Nothing here performs I/O after loading or knows about sessions. */
#ifndef CARDLINE_DIALPLAN_H
#define CARDLINE_DIALPLAN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "channel.h"

struct handler_def;

typedef struct dialplan dialplan;    /* a loaded, checked set (opaque) */
typedef struct dp_flow dp_flow;      /* a named flow (opaque) */
typedef struct dp_node dp_node;

typedef enum {
    DP_SAY,        /* play prompts, then `next` */
    DP_MENU,       /* play prompts, wait for one of `options` */
    DP_ASK,        /* play prompts, collect input into `into` */
    DP_CALL,       /* run a handler, branch on its result */
    DP_GOTO,       /* jump (to another flow's node too) */
    DP_SWITCH,     /* compare a value with literal cases, jump to the match */
    DP_TRANSFER,   /* hand the session to an agent queue */
    DP_END         /* play prompts, end the session */
} dp_node_kind;

/* Where an option or branch leads: a node, or a built-in move. */
typedef enum {
    DP_TO_NODE = 0,  /* `node` */
    DP_TO_REPEAT,    /* replay the current waiting node from its prompts */
    DP_TO_BACK       /* return to the previous waiting node */
} dp_target_kind;

typedef struct {
    dp_target_kind kind;     /* node or built-in move */
    const dp_node *node;     /* the node when kind is DP_TO_NODE, else NULL */
} dp_target;

/* A text with {placeholders}, parsed once: used for prompt texts, call
 * arguments and `set` values. Rendering is dialplan_render_template(). */
typedef struct dp_template dp_template;

/* What a waiting node does when input fails. */
typedef struct {
    int retries;             /* times the node is asked again before `then` */
    const char *prompt;      /* prompt id said before asking again, or NULL */
    dp_target then;          /* where to go once retries are used up */
} dp_failure;

typedef struct {
    const char *key;         /* the input that selects it: "1", "0", "*", "CX" */
    dp_target target;        /* where it leads */
} dp_option;

typedef struct {
    const char *name;        /* variable name */
    const dp_template *value;/* value, may use other variables */
} dp_assign;

typedef struct {
    const char *name;        /* argument name as the handler table declares it */
    const dp_template *value;/* rendered at call time */
} dp_arg;

typedef struct {
    const char *result;      /* handler result name, or "default" */
    dp_target target;        /* where that result leads */
} dp_branch;

/* Named input validators beyond the pattern (checked after it). */
typedef enum {
    DP_VALIDATE_NONE = 0,
    DP_VALIDATE_CITIZEN_ID,  /* 18 chars, checksum; `*` and `x` mean X */
    DP_VALIDATE_CARD_NUMBER, /* 9 letters/digits or 8 digits */
    DP_VALIDATE_MOBILE,      /* 11-digit mainland mobile or E.164 */
    DP_VALIDATE_PIN          /* six digits */
} dp_validator;

struct dp_node {
    const char *name;              /* unique within its flow */
    const dp_flow *flow;           /* the flow it belongs to */
    const char *file;              /* source file, for messages */
    int line;                      /* 1-based line of its definition */
    dp_node_kind kind;             /* what it does */
    bool agent_entry;              /* agents may send a session here (docs/agents.md) */

    const char *const *prompts;    /* prompt ids said on entry, in order */
    size_t n_prompts;
    const dp_assign *set;          /* assignments done on entry, before prompts */
    size_t n_set;
    dp_target next;                /* DP_SAY, DP_GOTO: where to continue */

    /* Waiting nodes (DP_MENU, DP_ASK). */
    int timeout_ms;                /* how long the channel waits for input */
    dp_failure on_timeout;         /* nothing arrived in time */
    dp_failure on_no_input;        /* empty input (just the terminator) */
    dp_failure on_invalid;         /* input that does not match */

    /* DP_MENU: the choices; DP_ASK: its `keys`, inputs that leave the ask
     * instead of being an answer (never a valid answer, the checker says) */
    const dp_option *options;      /* keys unique */
    size_t n_options;

    /* DP_ASK */
    const char *into;              /* variable receiving the (normalized) input */
    const struct dp_matcher *matcher; /* compiled pattern, private to dialplan.c; use dp_ask_accepts */
    int min_len, max_len;          /* input length bounds, in characters */
    char terminator;               /* key ending input on keypads ('#'), or 0 */
    int inter_digit_ms;            /* keypads: silence ending the input, 0 = the channel's default */
    bool secret;                   /* `into` is never saved, logged or echoed */
    dp_validator validator;        /* extra check after the pattern */

    /* DP_CALL */
    const struct handler_def *handler; /* resolved from the handler table */
    const dp_arg *args;
    size_t n_args;
    const dp_branch *branches;     /* by result; a "default" branch may close the list */
    size_t n_branches;

    /* DP_SWITCH: cases are `options` (key = the value), the default is `next` */
    const dp_template *subject;    /* rendered and compared with each case */

    /* DP_TRANSFER */
    const char *queue;             /* agent queue name */
    const dp_template *reason;     /* shown to the agent */
    dp_target fallback;            /* when the transfer fails */
};

/* Loading and lifetime ----------------------------------------------------*/

typedef struct {
    char **lines;            /* "FILE:LINE: message", each malloc'd */
    size_t count;            /* number of lines */
} dp_errors;

void dp_errors_free(dp_errors *e);

/* How call nodes find their handler: handlers_find in the daemon, a small
 * table of their own in tests. */
typedef const struct handler_def *dp_handler_lookup(const char *name);

/* Prompt ids every catalogue must define in every language, because the
 * engine says them itself: "restarted" (a reload removed the session's node,
 * the flow starts again) and "unavailable" (the gateway cannot go on). */
#define DP_PROMPT_RESTARTED "restarted"
#define DP_PROMPT_UNAVAILABLE "unavailable"

/* Loads and checks every *.yaml under `dir` (not recursive, sorted by name).
 * Returns NULL and fills `errs` (all problems, not only the first) when the
 * set is not clean; `errs` is empty otherwise. The result starts with one
 * reference. */
dialplan *dialplan_load(const char *dir, dp_handler_lookup *handlers, dp_errors *errs);

dialplan *dialplan_ref(dialplan *dp);
void dialplan_unref(dialplan *dp);

/* A digest of the sources: sessions remember the set they started on. */
const char *dialplan_version(const dialplan *dp);

/* Lookups ---------------------------------------------------------------*/

/* The flow routed to from `entry` (SIP user part, USSD service code, SMS
 * text) on `channel`: the first route in file order whose pattern matches.
 * NULL if none. */
const dp_flow *dialplan_route(const dialplan *dp, channel_kind channel, const char *entry);

/* The language that route sets (its `lang`: an SMS keyword in English), or
 * NULL when it sets none or nothing matches. */
const char *dialplan_route_lang(const dialplan *dp, channel_kind channel, const char *entry);

const dp_flow *dialplan_flow(const dialplan *dp, const char *name);
const char *dp_flow_name(const dp_flow *f);
/* The flows in load order and a flow's nodes as written, for reports
 * per node (the funnel). */
size_t dialplan_flow_count(const dialplan *dp);
const dp_flow *dialplan_flow_at(const dialplan *dp, size_t i);
size_t dp_flow_node_count(const dp_flow *f);
const dp_node *dp_flow_node_at(const dp_flow *f, size_t i);
const dp_node *dp_flow_start(const dp_flow *f);
const dp_node *dp_flow_node(const dp_flow *f, const char *name);

/* Languages the catalogue covers; the first is the default. */
size_t dialplan_language_count(const dialplan *dp);
const char *dialplan_language(const dialplan *dp, size_t i);
bool dialplan_has_language(const dialplan *dp, const char *lang);

/* Input --------------------------------------------------------------------*/

/* Checks `input` against an ask node (length, pattern, validator) and writes
 * its normalized form (e.g. `*` → X in an ID) to `out`. */
bool dp_ask_accepts(const dp_node *ask, const char *input, char *out, size_t out_size);

/* The option selected by `input` on a menu node, or NULL: the menu's own
 * options first, then the settings keys. */
const dp_option *dp_menu_option(const dp_node *menu, const char *input);

/* The key of an ask node that `input` is exactly (its `keys`: "0" for an
 * agent while an ID is typed), or NULL: then `input` is an answer. */
const dp_option *dp_ask_key(const dp_node *ask, const char *input);

/* The target of a switch node for its rendered `value`: the case with that
 * exact value, else the default. */
dp_target dp_switch_target(const dp_node *sw, const char *value);

/* Every key a menu node accepts, for hints ("reply 1, 2 or 0"): calls
 * `emit` with its own option keys in order, then the settings keys it does
 * not define itself. */
typedef void dp_key_fn(const char *key, void *arg);
void dp_menu_keys(const dp_node *menu, dp_key_fn *emit, void *arg);

/* Prompts and templates ----------------------------------------------------------*/

/* How a placeholder's value is shown: {name} is text, {name:digits} etc. */
typedef enum {
    DP_RENDER_TEXT = 0,  /* as is */
    DP_RENDER_DIGITS,    /* one digit at a time (voice says each digit) */
    DP_RENDER_NUMBER,    /* a quantity */
    DP_RENDER_DATE,      /* YYYY-MM-DD, said or printed per language */
    DP_RENDER_AMOUNT,    /* money, in yuan */
    DP_RENDER_ID,        /* citizen ID, masked: first 6 + last 4 (text), last 4 (voice) */
    DP_RENDER_CARD,      /* card number, masked: last 4 (and its letters where two cards need them) */
    DP_RENDER_PHONE,     /* phone number, masked: 3 + 4 (text), "ending" and last 4 (voice) */
    DP_RENDER_REF        /* a reference to quote back: as is (text), in groups (voice) */
} dp_render;

/* One piece of a rendered prompt: literal text, or a value with its
 * rendering. Voice plays pieces as audio; text channels join them. */
typedef struct {
    bool is_value;           /* false: literal text */
    dp_render render;        /* how to show the value */
    const char *text;        /* the literal, or the value in its spoken form: masked if the
                                render masks, groups apart by spaces, dates and amounts raw */
    bool ending;             /* a value: the tail of a masked number, said after the word
                                dialplan_ending_word gives ("尾号0002") */
} dp_piece;

/* Renders prompt `id` in `lang` for `channel` with `vars`, as text, into
 * `out` (always terminated, cut at out_size). Returns false if the prompt is
 * unknown. Missing variables render as empty. */
bool dialplan_render_text(const dialplan *dp, const char *lang, channel_kind channel,
                          const char *id, json_t *vars, char *out, size_t out_size);

/* The same as pieces for voice: calls `emit` for each piece in order. */
typedef void dp_piece_fn(const dp_piece *piece, void *arg);
bool dialplan_render_pieces(const dialplan *dp, const char *lang, channel_kind channel,
                            const char *id, json_t *vars, dp_piece_fn *emit, void *arg);

/* The word a masked number's tail is said after in `lang` ("尾号", "the
 * number ending"), or NULL for a language with no such word. */
const char *dialplan_ending_word(const char *lang);

/* Calls `emit` with every prompt id of `lang`'s catalogue, sorted by id
 * (nothing for a language the set does not have): for tools that list all a
 * set can say, such as the voice prompt audio. */
typedef void dp_prompt_id_fn(const char *id, void *arg);
void dialplan_prompt_ids(const dialplan *dp, const char *lang, dp_prompt_id_fn *emit, void *arg);

/* Calls `emit` with each placeholder name prompt `id` uses in any language
 * or channel (a name may come more than once): the variables a prompt
 * carries in an output, so it renders the same on every channel. */
typedef void dp_var_name_fn(const char *name, void *arg);
void dialplan_prompt_vars(const dialplan *dp, const char *id, dp_var_name_fn *emit, void *arg);

/* Renders a template (call argument, `set` value) as plain text. */
void dialplan_render_template(const dp_template *t, json_t *vars, char *out, size_t out_size);

#endif
