/* handlers — the one table of handlers dialplans may call, and the plumbing
 * of a call: its arguments, its context and its single ending. The table is
 * what the dialplan checker validates call nodes against; the results and
 * the variables they set are part of the dialplan language (docs). */
#include "handlers.h"

#include <stdlib.h>
#include <string.h>

#include "builtin.h"
#include "handler_call.h"
#include "log.h"
#include "mem.h"

struct handler_call {
    const handler_def *def;   /* the running handler */
    const handler_env *env;   /* what it may use */
    channel_kind channel;     /* the session's channel */
    char *caller;             /* the caller's address */
    char *session_id;         /* the session's id */
    char *call_key;           /* idempotency base for registry writes */
    json_t *args;             /* rendered arguments; strings wiped on free */
    handler_done_fn *done;    /* the owner's callback, NULL once abandoned */
    void *done_arg;           /* its argument */
    bool *durable;            /* the owner's flag for handler_finish_durable, or NULL */
    bool in_run;              /* run() has not returned yet */
    bool finished;            /* handler_finish ran */
};

/* Settings ----------------------------------------------------------------------*/

static const conf_key handler_conf_keys[] = {
    CONF_KEY_INT(handler_limits, "identify_window_s", identify_window_s, 60, 86400, "3600"),
    CONF_KEY_INT(handler_limits, "identify_max_per_caller", identify_max_per_caller, 1, 1000, "10"),
    CONF_KEY_INT(handler_limits, "identify_max_per_id", identify_max_per_id, 1, 1000, "5"),
    CONF_KEY_INT(handler_limits, "registry_pin_window_s", registry_pin_window_s, 0, 86400, "0"),
    CONF_KEY_INT(handler_limits, "code_ttl_s", code_ttl_s, 30, 3600, "300"),
    CONF_KEY_INT(handler_limits, "code_tries", code_tries, 1, 10, "3"),
    CONF_KEY_INT(handler_limits, "code_sends", code_sends, 1, 10, "3"),
    CONF_KEY_INT(handler_limits, "loss_confirm_wait_ms", loss_confirm_wait_ms, 0, 10000, "1500"),
    CONF_KEY_TEXT(handler_limits, "digest_secret", digest_secret, 16, 256, ""),
    CONF_KEY_INT(handler_limits, "number_window_s", number_window_s, 60, 86400, "3600"),
    CONF_KEY_INT(handler_limits, "sessions_per_number", sessions_per_number, 1, 1000000, "30"),
    CONF_KEY_INT(handler_limits, "codes_per_number", codes_per_number, 1, 1000, "5"),
    CONF_KEY_INT(handler_limits, "callbacks_per_number", callbacks_per_number, 1, 1000, "3"),
};

/* Without the registry's own PIN count, the per-ID window is all that
 * keeps a guesser from the wrong PIN that locks a card, and only while the
 * registry has forgotten a wrong PIN before the gateway has
 * (docs/workflows.md). */
static const conf_order handler_conf_orders[] = {
    {"registry_pin_window_s", "identify_window_s", "or guesses spread over the registry's window lock the card"},
};

const conf_section handler_config = CONF_SECTION_ORDERED("workflows", handler_conf_keys, handler_conf_orders);

void handlers_start_limit_default(int *starts_per_number, int *number_window_s)
{
    handler_limits l = {0};
    conf_section_defaults(&handler_config, &l);
    *starts_per_number = l.sessions_per_number;
    *number_window_s = l.number_window_s;
}

const char *handlers_start_limit_problem(int starts_per_number, int number_window_s, char *buf, size_t size)
{
    handler_limits l = {0};
    conf_section_defaults(&handler_config, &l);
    l.sessions_per_number = starts_per_number;
    l.number_window_s = number_window_s;
    return conf_section_problem(&handler_config, &l, buf, size);
}

/* The table ------------------------------------------------------------------*/

static const char *const verify_args[] = {"id", "pin", NULL};
static const char *const verify_secret_args[] = {"pin", NULL};
static const char *const verify_ok_sets[] = {"verified_id", "card", "pin_initial", "mobile", NULL};
static const char *const verify_wrong_sets[] = {"attempts_left", NULL};
static const handler_result verify_results[] = {
    {"ok", verify_ok_sets},
    {"wrong_pin", verify_wrong_sets},
    {"locked", NULL},
    {"not_found", NULL},
    {"rate_limited", NULL},   /* too many failed identifications from this number or for this ID */
    {"last_attempt", NULL},   /* one more wrong PIN would lock the card: not asked for */
    {"wrong_sender", NULL},   /* SMS: the sender is not the person's registered mobile */
    {"unavailable", NULL},
    {NULL, NULL},
};

/* Without a PIN: the SMS sender, or whether there is a card (verify_identity.c). */
static const char *const sender_ok_sets[] = {"verified_id", "card", "mobile", NULL};
static const char *const sender_no_card_sets[] = {"verified_id", "mobile", NULL};
static const handler_result sender_results[] = {
    {"ok", sender_ok_sets},           /* the sender is the person's registered mobile */
    {"no_card", sender_no_card_sets}, /* likewise, and the person has no current card */
    {"not_found", NULL},
    {"wrong_sender", NULL},
    {"rate_limited", NULL},
    {"unavailable", NULL},            /* also: not on SMS */
    {NULL, NULL},
};

static const handler_result person_results[] = {
    {"card", NULL},                   /* known, with a current card: ask the PIN */
    {"no_card", NULL},                /* known, no current card yet (an applicant) */
    {"not_found", NULL},
    {"rate_limited", NULL},
    {"unavailable", NULL},
    {NULL, NULL},
};

static const char *const id_args[] = {"id", NULL};
static const char *const lang_optional_args[] = {"lang", NULL};
/* One result per card status (the registry's status_name), so a dialplan
 * words each status, and offers its next step, in its own node. */
static const char *const status_sets[] = {"card", "bank_name", "bank_hotline", NULL};
static const char *const temp_loss_sets[] = {"card", "bank_name", "bank_hotline", "loss_until", NULL};
static const handler_result status_results[] = {
    {"sealed", status_sets},
    {"normal", status_sets},
    {"formal_loss", status_sets},
    {"locked", status_sets},
    {"temporary_loss", temp_loss_sets},   /* lapses on `loss_until` */
    {"temporary_loss_held", status_sets}, /* a replacement holds it: no end date */
    {"cancelled", status_sets},
    {"no_card", NULL},
    {"unavailable", NULL},
    {NULL, NULL},
};

/* One result per stage of the newest application, like card_status. */
static const char *const progress_sets[] = {"app_type",     "stage_date",     "collect_by",
                                            "new_card",     "outlet_name",    "outlet_address",
                                            "outlet_hours", "outlet_phone",   NULL};
static const handler_result progress_results[] = {
    {"received", progress_sets},
    {"in_production", progress_sets},
    {"at_city_bank", progress_sets},
    {"at_outlet", progress_sets},         /* collect by `collect_by`, or it is sealed */
    {"collected", progress_sets},
    {"activated", progress_sets},
    {"production_failed", progress_sets},
    {"uncollected", progress_sets},       /* not collected in time: sealed */
    {"no_application", NULL},
    {"unavailable", NULL},
    {NULL, NULL},
};

static const char *const settings_ok_sets[] = {"temp_loss_days", "collection_days", NULL};
static const handler_result settings_results[] = {
    {"ok", settings_ok_sets},
    {"unavailable", NULL},
    {NULL, NULL},
};

static const char *const history_replaced_sets[] = {"card", "old_card", NULL};
static const char *const history_single_sets[] = {"card", NULL};
static const handler_result history_results[] = {
    {"replaced", history_replaced_sets},
    {"single", history_single_sets},
    {"no_card", NULL},
    {"unavailable", NULL},
    {NULL, NULL},
};

static const char *const confirm_args[] = {"card", "last4", NULL};
static const handler_result confirm_results[] = {
    {"match", NULL},
    {"mismatch", NULL},
    {NULL, NULL},
};

static const char *const loss_args[] = {"id", "card", "lang", NULL};
static const char *const loss_optional_args[] = {"mobile", NULL};
static const char *const loss_done_sets[] = {"reference", "expires_on", NULL};
static const char *const loss_accepted_sets[] = {"reference", NULL};
static const handler_result loss_results[] = {
    {"done", loss_done_sets},         /* the registry confirmed in time */
    {"accepted", loss_accepted_sets}, /* durably queued; the SMS follows */
    {"unconfirmed", loss_accepted_sets}, /* queued, but Redis's replicas did not confirm it in time */
    {"not_normal", NULL},             /* the registry refused: the card is not in normal use */
    {"unavailable", NULL},            /* not even queued: nothing was promised */
    {NULL, NULL},
};

static const char *const cancel_ok_sets[] = {"card", NULL};
static const handler_result cancel_results[] = {
    {"ok", cancel_ok_sets},
    {"not_reported", NULL},           /* no active loss report on the current card */
    {"not_temporary", NULL},          /* a formal report: counter only */
    {"reissue_requested", NULL},      /* a replacement was applied for */
    {"unavailable", NULL},
    {NULL, NULL},
};

/* The same refusals, found before the caller is asked to confirm. */
static const handler_result check_cancel_results[] = {
    {"ok", cancel_ok_sets},           /* an active temporary report that may be cancelled */
    {"not_reported", NULL},
    {"not_temporary", NULL},
    {"reissue_requested", cancel_ok_sets},
    {"unavailable", NULL},
    {NULL, NULL},
};

static const char *const activatable_sets[] = {"new_card", NULL};
static const handler_result activatable_results[] = {
    {"ready", activatable_sets},         /* sealed and in the holder's hands */
    {"not_collected", activatable_sets}, /* sealed, still to be collected */
    {"nothing", NULL},                   /* no card waits for activation */
    {"unavailable", NULL},
    {NULL, NULL},
};

static const char *const new_pin_args[] = {"id", "pin", NULL};
static const char *const pin_secret_args[] = {"pin", NULL};
static const char *const new_pin_ok_sets[] = {"new_pin_digest", NULL};
static const handler_result new_pin_results[] = {
    {"ok", new_pin_ok_sets},
    {"initial", NULL},
    {"repeated", NULL},
    {"sequence", NULL},
    {"birth_date", NULL},
    {NULL, NULL},
};

static const char *const activate_args[] = {"id", "card", "pin", "digest", NULL};
static const handler_result activate_results[] = {
    {"ok", NULL},
    {"mismatch", NULL},               /* the second entry differs from the first */
    {"initial", NULL},
    {"repeated", NULL},
    {"sequence", NULL},
    {"birth_date", NULL},
    {"not_activatable", NULL},
    {"unavailable", NULL},
    {NULL, NULL},
};

/* Exactly one of `mobile` (a new number) and `id` (that person's registered mobile). */
static const char *const send_code_args[] = {"lang", NULL};
static const char *const send_code_optional_args[] = {"mobile", "id", NULL};
static const handler_result send_code_results[] = {
    {"sent", NULL},
    {"too_many", NULL},               /* this session, or the number's window, had too many codes */
    {"no_mobile", NULL},              /* `id`: no mobile is registered for the person */
    {"unavailable", NULL},
    {NULL, NULL},
};

static const char *const check_code_args[] = {"code", NULL};
static const char *const check_code_secret_args[] = {"code", NULL};
static const char *const check_code_ok_sets[] = {"new_mobile", NULL};
static const char *const check_code_wrong_sets[] = {"tries_left", NULL};
static const handler_result check_code_results[] = {
    {"ok", check_code_ok_sets},
    {"wrong", check_code_wrong_sets},
    {"expired", NULL},                /* no live code: its life ended or none was sent */
    {"too_many", NULL},               /* the tries are used up: the code is void */
    {"unavailable", NULL},            /* Redis down: nothing was checked or used */
    {NULL, NULL},
};

static const char *const verify_code_ok_sets[] = {"verified_id", "mobile", NULL};
static const handler_result verify_code_results[] = {
    {"ok", verify_code_ok_sets},      /* the code sent to verified_id's registered mobile */
    {"wrong", check_code_wrong_sets},
    {"expired", NULL},
    {"too_many", NULL},
    {"unavailable", NULL},
    {NULL, NULL},
};

static const char *const contact_optional_args[] = {"mobile", "address", NULL};
static const handler_result contact_results[] = {
    {"ok", NULL},
    {"invalid", NULL},
    {"unavailable", NULL},
    {NULL, NULL},
};

static const char *const callback_args[] = {"caller", "lang", "reason", NULL};
static const char *const callback_optional_args[] = {"at", NULL};
static const char *const callback_ok_sets[] = {"callback_ref", NULL};
static const handler_result callback_results[] = {
    {"ok", callback_ok_sets},         /* queued for agents (or already, by this call) */
    {"too_many", NULL},               /* this number booked callbacks_per_number in the window */
    {"unavailable", NULL},            /* Redis down, or the caller is no phone number */
    {NULL, NULL},
};

static const handler_def table[] = {
    {"verify_identity", verify_args, NULL, verify_secret_args, verify_results, handlers_verify_identity_run},
    {"card_status", id_args, lang_optional_args, NULL, status_results, handlers_card_status_run},
    {"reissue_progress", id_args, lang_optional_args, NULL, progress_results, handlers_reissue_progress_run},
    {"registry_settings", NULL, NULL, NULL, settings_results, handlers_registry_settings_run},
    {"card_history", id_args, NULL, NULL, history_results, handlers_card_history_run},
    {"confirm_card", confirm_args, NULL, NULL, confirm_results, handlers_confirm_card_run},
    {"report_loss", loss_args, loss_optional_args, NULL, loss_results, handlers_report_loss_run},
    {"check_cancel", id_args, NULL, NULL, check_cancel_results, handlers_check_cancel_run},
    {"cancel_loss", id_args, NULL, NULL, cancel_results, handlers_cancel_loss_run},
    {"find_activatable", id_args, NULL, NULL, activatable_results, handlers_find_activatable_run},
    {"check_new_pin", new_pin_args, NULL, pin_secret_args, new_pin_results, handlers_check_new_pin_run},
    {"activate_card", activate_args, NULL, pin_secret_args, activate_results, handlers_activate_card_run},
    {"send_code", send_code_args, send_code_optional_args, NULL, send_code_results, handlers_send_code_run},
    {"check_code", check_code_args, NULL, check_code_secret_args, check_code_results, handlers_check_code_run},
    {"verify_code", check_code_args, NULL, check_code_secret_args, verify_code_results, handlers_verify_code_run},
    {"update_contact", id_args, contact_optional_args, NULL, contact_results, handlers_update_contact_run},
    {"request_callback", callback_args, callback_optional_args, NULL, callback_results, handlers_request_callback_run},
    {"identify_sender", id_args, NULL, NULL, sender_results, handlers_identify_sender_run},
    {"find_person", id_args, NULL, NULL, person_results, handlers_find_person_run},
};

#define TABLE_SIZE (sizeof table / sizeof table[0])

const handler_def *handlers_find(const char *name)
{
    for (size_t i = 0; name && i < TABLE_SIZE; i++)
        if (strcmp(table[i].name, name) == 0)
            return &table[i];
    return NULL;
}

const handler_def *handlers_at(size_t i)
{
    return i < TABLE_SIZE ? &table[i] : NULL;
}

static const handler_result *find_result(const handler_def *def, const char *result)
{
    for (const handler_result *r = def->results; result && r->name; r++)
        if (strcmp(r->name, result) == 0)
            return r;
    return NULL;
}

bool handler_has_result(const handler_def *def, const char *result)
{
    return def && find_result(def, result) != NULL;
}

/* Inside a handler -------------------------------------------------------------*/

const char *handler_arg(const handler_call *c, const char *name)
{
    return json_string_value(json_object_get(c->args, name));
}

const handler_env *handler_env_of(const handler_call *c) { return c->env; }
channel_kind handler_channel(const handler_call *c) { return c->channel; }
const char *handler_caller(const handler_call *c) { return c->caller; }
const char *handler_session_id(const handler_call *c) { return c->session_id; }
const char *handler_call_key(const handler_call *c) { return c->call_key; }

/* jansson owns the bytes of a string value; wiping them in place is the only
 * way to make sure a PIN does not outlive its use in freed heap memory. */
static void wipe_string(json_t *s)
{
    if (json_is_string(s))
        explicit_bzero((char *)json_string_value(s), json_string_length(s));
}

void handler_wipe_arg(handler_call *c, const char *name)
{
    wipe_string(json_object_get(c->args, name));
}

static void call_free(handler_call *c)
{
    const char *key;
    json_t *v;
    json_object_foreach(c->args, key, v)
        wipe_string(v);
    json_decref(c->args);
    free(c->caller);
    free(c->session_id);
    free(c->call_key);
    free(c);
}

/* Keeps only the variables the result declares: a handler bug must not set
 * arbitrary session variables. */
static json_t *declared_vars(const handler_result *r, json_t *vars)
{
    json_t *out = json_object();
    for (const char *const *s = r->sets; s && *s; s++) {
        json_t *v = json_object_get(vars, *s);
        if (json_is_string(v))
            json_object_set(out, *s, v);
    }
    return out;
}

void handler_finish(handler_call *c, const char *result, json_t *vars)
{
    if (c->finished) {
        log_error("handler.finish_twice", "handler=%s", c->def->name);
        json_decref(vars);
        return;
    }
    c->finished = true;
    const handler_result *r = find_result(c->def, result);
    if (!r) {
        log_error("handler.bad_result", "handler=%s result=%s", c->def->name,
                  log_quote(result ? result : "(null)").s);
        r = find_result(c->def, "unavailable");
    }
    json_t *kept = r ? declared_vars(r, vars) : NULL;
    json_decref(vars);
    if (c->done)
        c->done(r ? r->name : "unavailable", kept, c->done_arg);
    json_decref(kept);
    if (!c->in_run)
        call_free(c);
}

void handler_finish_durable(handler_call *c, const char *result, json_t *vars)
{
    if (!c->finished && c->done && c->durable)
        *c->durable = true;
    handler_finish(c, result, vars);
}

/* The owner's side ---------------------------------------------------------------*/

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

handler_call *handler_call_start(const handler_call_spec *spec, handler_done_fn *done, void *arg)
{
    handler_call *c = mem_calloc(1, sizeof *c);
    c->def = spec->def;
    c->env = spec->env;
    c->channel = spec->channel;
    c->caller = dup_or_empty(spec->caller);
    c->session_id = dup_or_empty(spec->session_id);
    c->call_key = dup_or_empty(spec->call_key);
    c->args = spec->args ? spec->args : json_object();
    c->done = done;
    c->done_arg = arg;
    c->durable = spec->durable;
    c->in_run = true;
    c->def->run(c);
    c->in_run = false;
    if (!c->finished)
        return c;
    call_free(c);
    return NULL;
}

void handler_call_abandon(handler_call *c)
{
    c->done = NULL;
}
