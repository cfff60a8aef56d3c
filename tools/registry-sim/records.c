/* records — the contract's rules over the SQLite tables (see records.h).
 * Every function reads what it needs, decides, writes, and renders the
 * resource the contract names; JSON shapes live here and nowhere else. */
#include "records.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "domain.h"
#include "pinhash.h"
#include "simclock.h"

#define REFERENCE_MAX 64
#define ADDRESS_MAX 200
#define ID_TRIES 1000

struct records {
    sqlite3 *h;                            /* the database; owned by main */
    int loss_days;                         /* validity of a temporary loss report */
    int collect_days;                      /* a card at the outlet waits this long */
    char initial_pin[DOMAIN_PIN_LEN + 1];  /* the issuer's initial PIN */
    bool pin_count;                        /* answers carry remaining_attempts */
};

const char *const records_counter_names[] = {
    "loss_reports", "cancellations", "activations", "pin_verifications", "contact_updates", NULL};

static const char *const channels[] = {"voice", "ussd", "sms", "agent", NULL};

records *records_new(sqlite3 *h, int loss_days, int collect_days, const char *initial_pin, bool pin_count)
{
    records *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->h = h;
    r->loss_days = loss_days;
    r->collect_days = collect_days;
    r->pin_count = pin_count;
    snprintf(r->initial_pin, sizeof r->initial_pin, "%s", initial_pin);
    return r;
}

void records_free(records *r)
{
    if (r != NULL)
        explicit_bzero(r->initial_pin, sizeof r->initial_pin);
    free(r);
}

/* Small helpers -------------------------------------------------------------*/

static sim_reply internal_error(void)
{
    return reply_error(500, "internal", "The registry failed to process the request.");
}

static sim_reply invalid_request(const char *message)
{
    return reply_error(400, "invalid_request", message);
}

static sim_reply invalid_value(const char *field, const char *message)
{
    sim_reply rep = reply_error(422, "invalid_value", message);
    reply_error_field(&rep, "field", json_string(field));
    return rep;
}

static json_t *text_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static bool in_list(const char *s, const char *const *list)
{
    for (size_t i = 0; s && list[i]; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

/* The first key of `body` not in `allowed`, or NULL. */
static const char *unknown_field(json_t *body, const char *const *allowed)
{
    const char *key;
    json_t *value;
    json_object_foreach(body, key, value) {
        if (!in_list(key, allowed))
            return key;
    }
    return NULL;
}

static const char *status_name(int status)
{
    switch (status) {
    case 0: return "sealed";
    case 1: return "normal";
    case 2: return "formal_loss";
    case 3: return "locked";
    case 4: return "temporary_loss";
    case 9: return "cancelled";
    }
    return "unknown";
}

static bool count_applied(records *r, const char *counter)
{
    return db_counter_add(r->h, counter, 1);
}

/* SQL: a replacement of card `col` was applied for and has not failed. It
 * holds the card's temporary loss report (no lapse) and refuses its
 * cancellation. */
#define REPLACEMENT_REQUESTED(col) \
    "EXISTS(SELECT 1 FROM applications WHERE replaces_card = " col " AND stage <> 'production_failed')"

/* SQL: the temporary reports due to lapse on `?` (today): past their date
 * and not held by a replacement. */
#define REPORTS_DUE \
    "SELECT id FROM loss_reports WHERE kind = 'temporary' AND state = 'active' AND expires_on < ?" \
    " AND NOT " REPLACEMENT_REQUESTED("loss_reports.card_number")

/* The day a card waiting at the outlet since `stage_date` is sealed. */
#define COLLECT_BY_SQL "date(stage_date, '+' || ? || ' days')"

bool records_apply_due(records *r)
{
    char today[SIMCLOCK_DATE_LEN + 1];
    simclock_today(today);
    return db_run(r->h,
                  "UPDATE cards SET status = 1 WHERE status = 4 AND card_number IN ("
                  " SELECT card_number FROM loss_reports WHERE id IN (" REPORTS_DUE "))", "t", today) &&
           db_run(r->h, "UPDATE loss_reports SET state = 'lapsed' WHERE id IN (" REPORTS_DUE ")",
                  "t", today) &&
           db_run(r->h,
                  "UPDATE applications SET stage = 'uncollected',"
                  " stage_date = date(" COLLECT_BY_SQL ", '+1 day')"
                  " WHERE stage = 'at_outlet' AND " COLLECT_BY_SQL " < ?",
                  "iit", r->collect_days, r->collect_days, today);
}

sim_reply records_get_settings(records *r)
{
    return reply_json(200, json_pack("{s:i, s:i}", "temporary_loss_days", r->loss_days,
                                     "collection_days", r->collect_days));
}

/* Rendering -----------------------------------------------------------------*/

/* Sets `remaining_attempts` on `obj` unless the simulator plays a registry
 * without the count (--no-pin-count). Returns `obj`. */
static json_t *with_remaining(const records *r, json_t *obj, int remaining)
{
    if (obj != NULL && r->pin_count)
        json_object_set_new(obj, "remaining_attempts", json_integer(remaining));
    return obj;
}

/* The PIN state of the person's current card, `{"locked", "remaining_attempts"}`,
 * or JSON null without a current card. The counter is the card's and never
 * lapses: only a right PIN (or the counter's unlock) resets it. */
static json_t *current_pin_json(records *r, const char *ssn)
{
    sqlite3_stmt *st = db_prepare(r->h, "SELECT pin_failures FROM cards WHERE ssn = ? AND current = 1",
                                  "t", ssn);
    json_t *pin = json_null();
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        int failures = sqlite3_column_int(st, 0);
        json_decref(pin);
        pin = with_remaining(r, json_pack("{s:b}", "locked", failures >= RECORDS_PIN_ATTEMPTS),
                             RECORDS_PIN_ATTEMPTS - failures);
    }
    sqlite3_finalize(st);
    return pin;
}

static json_t *person_json(records *r, const char *ssn)
{
    sqlite3_stmt *st = db_prepare(r->h,
        "SELECT ssn, name, birth_date, mobile, address, updated_at FROM persons WHERE ssn = ?",
        "t", ssn);
    json_t *p = NULL;
    if (st && sqlite3_step(st) == SQLITE_ROW)
        p = json_pack("{s:s, s:s, s:s, s:o, s:o, s:s, s:o}",
                      "ssn", db_text(st, 0), "name", db_text(st, 1), "birth_date", db_text(st, 2),
                      "mobile", text_or_null(db_text(st, 3)), "address", text_or_null(db_text(st, 4)),
                      "updated_at", db_text(st, 5), "pin", current_pin_json(r, ssn));
    sqlite3_finalize(st);
    return p;
}

/* An active temporary report held by a replacement lapses on no date: it
 * shows the application holding it and no `expires_on`. */
static json_t *report_row_json(sqlite3_stmt *st)
{
    const char *held_by = db_text(st, 9);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:s, s:o, s:o, s:o}",
                     "id", db_text(st, 0), "card_number", db_text(st, 1), "kind", db_text(st, 2),
                     "state", db_text(st, 3), "channel", db_text(st, 4),
                     "reference", text_or_null(db_text(st, 5)), "placed_at", db_text(st, 6),
                     "expires_on", held_by ? json_null() : text_or_null(db_text(st, 7)),
                     "held_by", text_or_null(held_by),
                     "cancelled_at", text_or_null(db_text(st, 8)));
}

#define REPORT_COLUMNS \
    "id, card_number, kind, state, channel, reference, placed_at, expires_on, cancelled_at," \
    " CASE WHEN kind = 'temporary' AND state = 'active' THEN" \
    " (SELECT a.id FROM applications a WHERE a.replaces_card = loss_reports.card_number" \
    "  AND a.stage <> 'production_failed' ORDER BY a.created_at DESC LIMIT 1) END"

static json_t *report_json(records *r, const char *id)
{
    sqlite3_stmt *st = db_prepare(r->h, "SELECT " REPORT_COLUMNS " FROM loss_reports WHERE id = ?",
                                  "t", id);
    json_t *j = st && sqlite3_step(st) == SQLITE_ROW ? report_row_json(st) : NULL;
    sqlite3_finalize(st);
    return j;
}

/* The card's active loss report, or JSON null. */
static json_t *active_report_json(records *r, const char *card)
{
    sqlite3_stmt *st = db_prepare(r->h,
        "SELECT " REPORT_COLUMNS " FROM loss_reports WHERE card_number = ? AND state = 'active'"
        " ORDER BY placed_at DESC LIMIT 1", "t", card);
    json_t *j = st && sqlite3_step(st) == SQLITE_ROW ? report_row_json(st) : json_null();
    sqlite3_finalize(st);
    return j;
}

static json_t *card_json(records *r, const char *card)
{
    sqlite3_stmt *st = db_prepare(r->h,
        "SELECT c.card_number, c.ssn, c.status, c.current, c.generation, c.issued_date,"
        " c.replaces, c.replaced_by, b.code, b.name, b.name_en, b.hotline, c.pin_initial, c.pin_failures"
        " FROM cards c JOIN banks b ON b.code = c.bank_code WHERE c.card_number = ?", "t", card);
    json_t *j = NULL;
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        int status = sqlite3_column_int(st, 2);
        int failures = sqlite3_column_int(st, 13);
        j = json_pack("{s:s, s:s, s:i, s:s, s:b, s:i, s:o, s:o, s:o,"
                      " s:{s:s, s:s, s:o, s:s}, s:o, s:o}",
                      "card_number", db_text(st, 0), "ssn", db_text(st, 1), "status", status,
                      "status_name", status_name(status), "current", sqlite3_column_int(st, 3),
                      "generation", sqlite3_column_int(st, 4),
                      "issued_date", text_or_null(db_text(st, 5)),
                      "replaces", text_or_null(db_text(st, 6)),
                      "replaced_by", text_or_null(db_text(st, 7)),
                      "bank", "code", db_text(st, 8), "name", db_text(st, 9),
                      "name_en", text_or_null(db_text(st, 10)), "hotline", db_text(st, 11),
                      "pin", with_remaining(r, json_pack("{s:b, s:b}", "initial", sqlite3_column_int(st, 12),
                                                         "locked", failures >= RECORDS_PIN_ATTEMPTS),
                                            RECORDS_PIN_ATTEMPTS - failures),
                      "loss_report", active_report_json(r, card));
    }
    sqlite3_finalize(st);
    return j;
}

static bool stage_has_outlet(const char *stage)
{
    static const char *const stages[] = {"at_outlet", "collected", "activated", "uncollected", NULL};
    return in_list(stage, stages);
}

/* Appends "Mon-Fri" (a run of days) or "Sat" to `out`. */
static void day_run_text(int from, int to, char *out, size_t size)
{
    static const char *const names[] = {"", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
    size_t n = strlen(out);
    if (from == to)
        snprintf(out + n, size - n, "%s", names[from]);
    else
        snprintf(out + n, size - n, "%s-%s", names[from], names[to]);
}

/* The free-text `hours` older clients show: "Mon-Fri 09:00-17:00; Sat
 * 09:00-12:00", from the structured opening hours (checked at seeding). */
static json_t *hours_text(json_t *opening)
{
    char out[256] = "";
    size_t i, k;
    json_t *entry, *day;
    json_array_foreach(opening, i, entry) {
        size_t n = strlen(out);
        snprintf(out + n, sizeof out - n, "%s", i ? "; " : "");
        int run_from = 0, prev = 0;
        json_array_foreach(json_object_get(entry, "days"), k, day) {
            int d = (int)json_integer_value(day);
            if (run_from && d != prev + 1) {
                day_run_text(run_from, prev, out, sizeof out);
                n = strlen(out);
                snprintf(out + n, sizeof out - n, ", ");
                run_from = 0;
            }
            run_from = run_from ? run_from : d;
            prev = d;
        }
        day_run_text(run_from, prev, out, sizeof out);
        n = strlen(out);
        snprintf(out + n, sizeof out - n, " %s-%s", json_string_value(json_object_get(entry, "open")),
                 json_string_value(json_object_get(entry, "close")));
    }
    return json_string(out);
}

static json_t *outlet_json(records *r, const char *code)
{
    sqlite3_stmt *st = db_prepare(r->h,
        "SELECT code, name, name_en, address, address_en, opening_hours, phone FROM outlets WHERE code = ?",
        "t", code);
    json_t *j = json_null();
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        json_t *opening = json_loads(db_text(st, 5), 0, NULL);
        json_decref(j);
        j = json_pack("{s:s, s:s, s:o, s:s, s:o, s:o, s:o, s:s}", "code", db_text(st, 0),
                      "name", db_text(st, 1), "name_en", text_or_null(db_text(st, 2)),
                      "address", db_text(st, 3), "address_en", text_or_null(db_text(st, 4)),
                      "opening_hours", json_incref(opening), "hours", hours_text(opening),
                      "phone", db_text(st, 6));
        json_decref(opening);
    }
    sqlite3_finalize(st);
    return j;
}

static json_t *application_row_json(records *r, sqlite3_stmt *st)
{
    const char *stage = db_text(st, 3);
    const char *outlet = db_text(st, 7);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:s}",
                     "id", db_text(st, 0), "ssn", db_text(st, 1), "type", db_text(st, 2),
                     "stage", stage, "stage_date", db_text(st, 4),
                     "collect_by", text_or_null(db_text(st, 9)),
                     "card_number", text_or_null(db_text(st, 5)),
                     "replaces_card", text_or_null(db_text(st, 6)),
                     "outlet", outlet && stage_has_outlet(stage) ? outlet_json(r, outlet) : json_null(),
                     "created_at", db_text(st, 8));
}

/* Reads ---------------------------------------------------------------------*/

static sim_reply person_not_found(void)
{
    return reply_error(404, "not_found", "No person has this social security number.");
}

static sim_reply card_not_found(void)
{
    return reply_error(404, "not_found", "No card has this number.");
}

static bool person_exists(records *r, const char *ssn)
{
    return db_int(r->h, 0, "SELECT EXISTS(SELECT 1 FROM persons WHERE ssn = ?)", "t", ssn) != 0;
}

sim_reply records_get_person(records *r, const char *ssn)
{
    json_t *p = person_json(r, ssn);
    return p ? reply_json(200, p) : person_not_found();
}

sim_reply records_get_card(records *r, const char *card)
{
    json_t *c = card_json(r, card);
    return c ? reply_json(200, c) : card_not_found();
}

sim_reply records_list_cards(records *r, const char *ssn, int offset, int limit, bool *more)
{
    if (!person_exists(r, ssn))
        return person_not_found();
    sqlite3_stmt *st = db_prepare(r->h,
        "SELECT card_number FROM cards WHERE ssn = ?"
        " ORDER BY current DESC, generation DESC, card_number LIMIT ? OFFSET ?",
        "tii", ssn, limit + 1, offset);
    if (st == NULL)
        return internal_error();
    json_t *cards = json_array();
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW && n++ < limit)
        json_array_append_new(cards, card_json(r, db_text(st, 0)));
    sqlite3_finalize(st);
    *more = n > limit;
    return reply_json(200, json_pack("{s:o}", "cards", cards));
}

sim_reply records_list_applications(records *r, const char *ssn, int offset, int limit, bool *more)
{
    if (!person_exists(r, ssn))
        return person_not_found();
    sqlite3_stmt *st = db_prepare(r->h,
        "SELECT id, ssn, type, stage, stage_date, card_number, replaces_card, outlet_code,"
        " created_at, CASE WHEN stage = 'at_outlet' THEN " COLLECT_BY_SQL " END"
        " FROM applications WHERE ssn = ? ORDER BY created_at DESC, id DESC"
        " LIMIT ? OFFSET ?", "itii", r->collect_days, ssn, limit + 1, offset);
    if (st == NULL)
        return internal_error();
    json_t *apps = json_array();
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW && n++ < limit)
        json_array_append_new(apps, application_row_json(r, st));
    sqlite3_finalize(st);
    *more = n > limit;
    return reply_json(200, json_pack("{s:o}", "applications", apps));
}

/* Contact update ------------------------------------------------------------*/

bool records_mobile_valid(const char *m)
{
    size_t n = m ? strlen(m) : 0;
    if (n < 9 || n > 16 || m[0] != '+')
        return false;
    for (size_t i = 1; i < n; i++)
        if (!isdigit((unsigned char)m[i]))
            return false;
    return true;
}

/* 1–200 characters (code points), none of them a control character. */
bool records_address_valid(const char *a)
{
    size_t chars = 0;
    for (const unsigned char *p = (const unsigned char *)a; a && *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return false;
        if ((*p & 0xC0) != 0x80)
            chars++;
    }
    return chars >= 1 && chars <= ADDRESS_MAX;
}

sim_reply records_update_contact(records *r, const char *ssn, json_t *body)
{
    static const char *const updatable[] = {"mobile", "address", NULL};
    const char *other = unknown_field(body, updatable);
    if (other != NULL) {
        sim_reply rep = reply_error(422, "field_not_updatable",
                                    "Only mobile and address can change remotely; key fields change at a service counter.");
        reply_error_field(&rep, "field", json_string(other));
        return rep;
    }
    json_t *mobile = json_object_get(body, "mobile");
    json_t *address = json_object_get(body, "address");
    if (mobile == NULL && address == NULL)
        return invalid_request("Send mobile and/or address.");
    if (mobile && !records_mobile_valid(json_string_value(mobile)))
        return invalid_value("mobile", "mobile must be E.164: + and 8 to 15 digits.");
    if (address && !records_address_valid(json_string_value(address)))
        return invalid_value("address", "address must be 1 to 200 characters without control characters.");
    if (!person_exists(r, ssn))
        return person_not_found();
    char now[SIMCLOCK_INSTANT_LEN + 1];
    simclock_now(now);
    if (!db_run(r->h,
                "UPDATE persons SET mobile = coalesce(?, mobile), address = coalesce(?, address),"
                " updated_at = ? WHERE ssn = ?",
                "tttt", json_string_value(mobile), json_string_value(address), now, ssn) ||
        !count_applied(r, "contact_updates"))
        return internal_error();
    return records_get_person(r, ssn);
}

/* PIN verification ----------------------------------------------------------*/

static sim_reply pin_locked(const records *r)
{
    sim_reply rep = reply_error(423, "pin_locked",
                                "The service PIN is locked after 6 wrong attempts. Unlock at a service counter with your ID card.");
    if (r->pin_count)
        reply_error_field(&rep, "remaining_attempts", json_integer(0));
    reply_error_field(&rep, "unlock", json_string("counter"));
    return rep;
}

/* Records one attempt: a right PIN resets the count, a wrong one takes an
 * attempt and the last one locks the card (status 3). */
static bool record_attempt(records *r, const char *card, bool right, int failures)
{
    if (right)
        return db_run(r->h, "UPDATE cards SET pin_failures = 0 WHERE card_number = ?", "t", card);
    if (failures + 1 >= RECORDS_PIN_ATTEMPTS)
        return db_run(r->h, "UPDATE cards SET pin_failures = ?, status = 3 WHERE card_number = ?",
                      "it", RECORDS_PIN_ATTEMPTS, card);
    return db_run(r->h, "UPDATE cards SET pin_failures = ? WHERE card_number = ?",
                  "it", failures + 1, card);
}

sim_reply records_verify_pin(records *r, const char *ssn, json_t *body)
{
    static const char *const fields[] = {"pin", NULL};
    const char *other = unknown_field(body, fields);
    const char *pin = json_string_value(json_object_get(body, "pin"));
    if (other != NULL)
        return invalid_request("Only \"pin\" is accepted in this body.");
    if (pin == NULL || domain_pin_check(pin, NULL, NULL) == DOMAIN_PIN_MALFORMED)
        return invalid_request("pin must be a string of six digits.");
    if (!person_exists(r, ssn))
        return person_not_found();
    sqlite3_stmt *st = db_prepare(r->h,
        "SELECT card_number, pin_hash, pin_failures, pin_initial FROM cards"
        " WHERE ssn = ? AND current = 1", "t", ssn);
    if (st == NULL)
        return internal_error();
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        return reply_error(404, "not_found", "This person has no current card.");
    }
    char card[DOMAIN_CARD_MAX + 1];
    snprintf(card, sizeof card, "%s", db_text(st, 0));
    int failures = sqlite3_column_int(st, 2);
    bool initial = sqlite3_column_int(st, 3) != 0;
    bool right = failures < RECORDS_PIN_ATTEMPTS && pinhash_matches(pin, db_text(st, 1));
    sqlite3_finalize(st);
    if (failures >= RECORDS_PIN_ATTEMPTS)
        return pin_locked(r);
    if (!record_attempt(r, card, right, failures) || !count_applied(r, "pin_verifications"))
        return internal_error();
    int remaining = right ? RECORDS_PIN_ATTEMPTS : RECORDS_PIN_ATTEMPTS - failures - 1;
    if (remaining == 0)
        return pin_locked(r);
    return reply_json(200, with_remaining(r, json_pack("{s:b, s:s, s:b, s:b}", "verified", right,
                                                       "card_number", card, "locked", 0,
                                                       "initial_pin", initial),
                                          remaining));
}

/* Loss reports --------------------------------------------------------------*/

/* A new report id: LR + today + a five-digit sequence. */
static bool new_report_id(records *r, char id[32])
{
    char today[SIMCLOCK_DATE_LEN + 1];
    simclock_today(today);
    for (int i = 0; i < ID_TRIES; i++) {
        if (!count_applied(r, "seq.loss_report"))
            return false;
        long long seq = db_counter(r->h, "seq.loss_report") % 100000;
        snprintf(id, 32, "LR%.4s%.2s%.2s%05lld", today, today + 5, today + 8, seq);
        if (db_int(r->h, 1, "SELECT EXISTS(SELECT 1 FROM loss_reports WHERE id = ?)", "t", id) == 0)
            return true;
    }
    return false;
}

static sim_reply card_not_normal(int status)
{
    sim_reply rep = reply_error(409, "card_not_normal", "Only a card in normal status can be reported lost.");
    reply_error_field(&rep, "status", json_integer(status));
    return rep;
}

static sim_reply check_report_body(json_t *body)
{
    static const char *const fields[] = {"kind", "channel", "reference", NULL};
    const char *other = unknown_field(body, fields);
    json_t *kind = json_object_get(body, "kind");
    json_t *channel = json_object_get(body, "channel");
    json_t *reference = json_object_get(body, "reference");
    if (other != NULL)
        return invalid_request("Unknown field in the loss report; send kind, channel and reference.");
    if (!json_is_string(kind) || !json_is_string(channel))
        return invalid_request("kind and channel are required strings.");
    if (strcmp(json_string_value(kind), "temporary") != 0)
        return invalid_value("kind", "Only a temporary loss report can be placed remotely.");
    if (!in_list(json_string_value(channel), channels))
        return invalid_value("channel", "channel must be voice, ussd, sms or agent.");
    if (reference && !json_is_null(reference) &&
        (!json_is_string(reference) || json_string_length(reference) < 1 ||
         json_string_length(reference) > REFERENCE_MAX))
        return invalid_value("reference", "reference must be a string of 1 to 64 characters.");
    return reply_json(0, NULL);
}

sim_reply records_report_loss(records *r, const char *card, json_t *body)
{
    sim_reply bad = check_report_body(body);
    if (bad.status != 0)
        return bad;
    long long status = db_int(r->h, -1, "SELECT status FROM cards WHERE card_number = ?", "t", card);
    if (status < 0)
        return card_not_found();
    if (status != 1)
        return card_not_normal((int)status);
    char id[32], now[SIMCLOCK_INSTANT_LEN + 1], today[SIMCLOCK_DATE_LEN + 1];
    char expires[SIMCLOCK_DATE_LEN + 1];
    simclock_now(now);
    simclock_today(today);
    simclock_date_add(today, r->loss_days, expires);
    if (!new_report_id(r, id) ||
        !db_run(r->h,
                "INSERT INTO loss_reports(id, card_number, kind, state, channel, reference,"
                " placed_at, expires_on) VALUES(?, ?, 'temporary', 'active', ?, ?, ?, ?)",
                "tttttt", id, card, json_string_value(json_object_get(body, "channel")),
                json_string_value(json_object_get(body, "reference")), now, expires) ||
        !db_run(r->h, "UPDATE cards SET status = 4 WHERE card_number = ?", "t", card) ||
        !count_applied(r, "loss_reports"))
        return internal_error();
    json_t *report = report_json(r, id);
    return report ? reply_json(201, report) : internal_error();
}

static sim_reply conflict(const char *code, const char *message)
{
    return reply_error(409, code, message);
}

/* Why the report cannot be cancelled, or a reply with status 0. */
static sim_reply check_cancellable(records *r, const char *card, const char *kind, const char *state)
{
    if (strcmp(kind, "temporary") != 0)
        return conflict("not_temporary", "Only a temporary loss report can be cancelled remotely.");
    if (strcmp(state, "active") != 0)
        return conflict("not_active", "This loss report is no longer active.");
    if (db_int(r->h, 1, "SELECT " REPLACEMENT_REQUESTED("?"), "t", card))
        return conflict("reissue_requested",
                        "A replacement of this card has been requested; the loss report stays.");
    return reply_json(0, NULL);
}

sim_reply records_cancel_loss(records *r, const char *card, const char *report_id, json_t *body)
{
    static const char *const fields[] = {"channel", NULL};
    json_t *channel = json_object_get(body, "channel");
    if (unknown_field(body, fields) != NULL)
        return invalid_request("Only \"channel\" is accepted in this body.");
    if (channel && !in_list(json_string_value(channel), channels))
        return invalid_value("channel", "channel must be voice, ussd, sms or agent.");
    sqlite3_stmt *st = db_prepare(r->h,
        "SELECT kind, state FROM loss_reports WHERE id = ? AND card_number = ?", "tt", report_id, card);
    if (st == NULL)
        return internal_error();
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        return reply_error(404, "not_found", "This card has no loss report with this id.");
    }
    sim_reply refused = check_cancellable(r, card, db_text(st, 0), db_text(st, 1));
    sqlite3_finalize(st);
    if (refused.status != 0)
        return refused;
    char now[SIMCLOCK_INSTANT_LEN + 1];
    simclock_now(now);
    if (!db_run(r->h, "UPDATE loss_reports SET state = 'cancelled', cancelled_at = ? WHERE id = ?",
                "tt", now, report_id) ||
        !db_run(r->h, "UPDATE cards SET status = 1 WHERE card_number = ? AND status = 4", "t", card) ||
        !count_applied(r, "cancellations"))
        return internal_error();
    json_t *report = report_json(r, report_id);
    return report ? reply_json(200, report) : internal_error();
}

/* Activation ----------------------------------------------------------------*/

/* Refuses unless the card is sealed and, if an application produced it, the
 * application is at `collected`. Reply status 0 when activatable. */
static sim_reply check_activatable(records *r, const char *card, int status)
{
    sqlite3_stmt *st = db_prepare(r->h,
        "SELECT stage FROM applications WHERE card_number = ? ORDER BY created_at DESC LIMIT 1",
        "t", card);
    if (st == NULL)
        return internal_error();
    json_t *stage = sqlite3_step(st) == SQLITE_ROW ? json_string(db_text(st, 0)) : json_null();
    sqlite3_finalize(st);
    bool collected = json_is_null(stage) || strcmp(json_string_value(stage), "collected") == 0;
    if (status == 0 && collected) {
        json_decref(stage);
        return reply_json(0, NULL);
    }
    sim_reply rep = conflict("card_not_activatable",
                             status != 0 ? "Only a sealed card can be activated."
                                         : "The card must be collected from the outlet before activation.");
    reply_error_field(&rep, "status", json_integer(status));
    reply_error_field(&rep, "stage", stage);
    return rep;
}

static sim_reply pin_too_weak(domain_pin_verdict v)
{
    sim_reply rep = reply_error(422, "pin_too_weak",
                                "The new PIN must be six digits, not the initial PIN, not one digit repeated, not a run and not the birth date.");
    reply_error_field(&rep, "reason", json_string(domain_pin_verdict_name(v)));
    return rep;
}

static bool apply_activation(records *r, const char *card, const char *new_pin)
{
    char hash[PINHASH_MAX], today[SIMCLOCK_DATE_LEN + 1];
    simclock_today(today);
    return pinhash_make(new_pin, hash) &&
           db_run(r->h,
                  "UPDATE cards SET status = 1, current = 1, pin_hash = ?, pin_initial = 0,"
                  " pin_failures = 0, issued_date = coalesce(issued_date, ?) WHERE card_number = ?",
                  "ttt", hash, today, card) &&
           db_run(r->h,
                  "UPDATE cards SET current = 0, replaced_by = ? WHERE card_number ="
                  " (SELECT replaces FROM cards WHERE card_number = ?)", "tt", card, card) &&
           db_run(r->h,
                  "UPDATE applications SET stage = 'activated', stage_date = ? WHERE card_number = ?",
                  "tt", today, card) &&
           count_applied(r, "activations");
}

sim_reply records_activate(records *r, const char *card, json_t *body)
{
    static const char *const fields[] = {"ssn", "new_pin", NULL};
    const char *raw_ssn = json_string_value(json_object_get(body, "ssn"));
    const char *new_pin = json_string_value(json_object_get(body, "new_pin"));
    char ssn[DOMAIN_ID_LEN + 1];
    if (unknown_field(body, fields) != NULL)
        return invalid_request("Only \"ssn\" and \"new_pin\" are accepted in this body.");
    if (new_pin == NULL)
        return invalid_request("new_pin is a required string.");
    if (!domain_id_normalize(raw_ssn, ssn) || !domain_id_valid(ssn))
        return invalid_request("ssn must be a valid 18-character social security number.");
    long long status = db_int(r->h, -1, "SELECT status FROM cards WHERE card_number = ? AND ssn = ?",
                              "tt", card, ssn);
    if (status < 0)
        return reply_error(404, "not_found", "This person has no card with this number.");
    sim_reply refused = check_activatable(r, card, (int)status);
    if (refused.status != 0)
        return refused;
    domain_pin_verdict v = domain_pin_check(new_pin, r->initial_pin, ssn);
    if (v != DOMAIN_PIN_OK)
        return pin_too_weak(v);
    if (!apply_activation(r, card, new_pin))
        return internal_error();
    return records_get_card(r, card);
}
