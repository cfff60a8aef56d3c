/* seed — the seed file loader (see seed.h). Structure is checked with
 * json_unpack_ex in strict mode (unknown keys are errors), values with the
 * same rules the API enforces (domain.h, records.h). Dates of loss reports
 * are relative to the simulator's today, so a demo seeded any day shows live
 * reports rather than long-lapsed ones. */
#include "seed.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "domain.h"
#include "pinhash.h"
#include "records.h"
#include "simclock.h"

#define WHERE_MAX 96
#define DAYS_AGO_MAX 3650

typedef struct {
    sqlite3 *h;                 /* the database being loaded */
    const seed_options *opt;    /* what to load and how */
    char *err;                  /* where the first problem is described */
    size_t errlen;              /* size of err */
    char where[WHERE_MAX];      /* path of the item being loaded */
} loader;

static bool fail(loader *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool fail(loader *l, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(l->err, l->errlen, "%s: %s: %s", l->opt->path, l->where, what);
    return false;
}

static void locate(loader *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void locate(loader *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->where, sizeof l->where, fmt, ap);
    va_end(ap);
}

static bool one_of(const char *s, const char *const *list)
{
    for (size_t i = 0; s && list[i]; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

static bool insert_failed(loader *l)
{
    return fail(l, "database refused the row: %s", sqlite3_errmsg(l->h));
}

/* Banks and outlets ---------------------------------------------------------*/

static bool load_bank(loader *l, json_t *j)
{
    const char *code, *name, *name_en = NULL, *hotline;
    json_error_t e;
    if (json_unpack_ex(j, &e, JSON_STRICT, "{s:s, s:s, s?s, s:s}", "code", &code, "name", &name,
                       "name_en", &name_en, "hotline", &hotline) != 0)
        return fail(l, "%s", e.text);
    if (!db_run(l->h, "INSERT INTO banks(code, name, name_en, hotline) VALUES(?, ?, ?, ?)", "tttt", code,
                name, name_en, hotline))
        return insert_failed(l);
    return true;
}

/* "HH:MM" on a 24-hour clock; its minutes since midnight in *minutes. */
static bool clock_time(const char *s, int *minutes)
{
    if (strlen(s) != 5 || s[2] != ':')
        return false;
    for (int i = 0; i < 5; i++)
        if (i != 2 && (s[i] < '0' || s[i] > '9'))
            return false;
    int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
    *minutes = h * 60 + m;
    return h < 24 && m < 60;
}

/* One `opening_hours` entry: days 1 (Monday) to 7, ascending, once each;
 * an opening before the closing. `seen` collects days across entries. */
static bool opening_entry_valid(loader *l, json_t *entry, unsigned *seen)
{
    json_t *days;
    const char *open, *close;
    json_error_t e;
    int from, to, last = 0;
    if (json_unpack_ex(entry, &e, JSON_STRICT, "{s:o, s:s, s:s}", "days", &days, "open", &open,
                       "close", &close) != 0)
        return fail(l, "opening_hours: %s", e.text);
    if (!json_is_array(days) || json_array_size(days) == 0)
        return fail(l, "opening_hours: days must be a non-empty array of weekdays 1 (Monday) to 7");
    size_t i;
    json_t *day;
    json_array_foreach(days, i, day) {
        json_int_t d = json_is_integer(day) ? json_integer_value(day) : 0;
        if (d < 1 || d > 7 || d <= last || (*seen & (1u << d)))
            return fail(l, "opening_hours: days are weekdays 1 (Monday) to 7, ascending, each once");
        last = (int)d;
        *seen |= 1u << d;
    }
    if (!clock_time(open, &from) || !clock_time(close, &to) || from >= to)
        return fail(l, "opening_hours: open and close are HH:MM, open before close");
    return true;
}

static bool opening_hours_valid(loader *l, json_t *hours)
{
    unsigned seen = 0;
    size_t i;
    json_t *entry;
    if (!json_is_array(hours) || json_array_size(hours) < 1 || json_array_size(hours) > 7)
        return fail(l, "opening_hours must be an array of 1 to 7 entries");
    json_array_foreach(hours, i, entry)
        if (!opening_entry_valid(l, entry, &seen))
            return false;
    return true;
}

static bool load_outlet(loader *l, json_t *j)
{
    const char *code, *name, *name_en = NULL, *address, *address_en = NULL, *phone;
    json_t *hours;
    json_error_t e;
    if (json_unpack_ex(j, &e, JSON_STRICT, "{s:s, s:s, s?s, s:s, s?s, s:o, s:s}", "code", &code,
                       "name", &name, "name_en", &name_en, "address", &address, "address_en",
                       &address_en, "opening_hours", &hours, "phone", &phone) != 0)
        return fail(l, "%s", e.text);
    if (!opening_hours_valid(l, hours))
        return false;
    char *hours_text = json_dumps(hours, JSON_COMPACT);
    bool ok = hours_text &&
              db_run(l->h, "INSERT INTO outlets(code, name, name_en, address, address_en, opening_hours, phone)"
                           " VALUES(?, ?, ?, ?, ?, ?, ?)",
                     "ttttttt", code, name, name_en, address, address_en, hours_text, phone);
    free(hours_text);
    return ok ? true : insert_failed(l);
}

/* Loss reports --------------------------------------------------------------*/

/* An instant on the day `days_ago` before today, at a fixed time of day. */
static void day_instant(long days_ago, const char *time_of_day, char out[SIMCLOCK_INSTANT_LEN + 1],
                        char date[SIMCLOCK_DATE_LEN + 1])
{
    char today[SIMCLOCK_DATE_LEN + 1];
    simclock_today(today);
    simclock_date_add(today, -days_ago, date);
    snprintf(out, SIMCLOCK_INSTANT_LEN + 1, "%sT%sZ", date, time_of_day);
}

/* Loads one report; counts the active ones by kind for the status check. */
static bool load_report(loader *l, const char *card, json_t *j, int *active_temporary, int *active_formal)
{
    static const char *const kinds[] = {"temporary", "formal", NULL};
    static const char *const states[] = {"active", "cancelled", "lapsed", NULL};
    static const char *const channels[] = {"voice", "ussd", "sms", "agent", "counter", NULL};
    const char *id, *kind, *state, *channel, *reference = NULL;
    json_int_t days_ago;
    json_error_t e;
    if (json_unpack_ex(j, &e, JSON_STRICT, "{s:s, s:s, s:s, s:s, s?s, s:I}", "id", &id, "kind", &kind,
                       "state", &state, "channel", &channel, "reference", &reference,
                       "placed_days_ago", &days_ago) != 0)
        return fail(l, "%s", e.text);
    if (!one_of(kind, kinds) || !one_of(state, states) || !one_of(channel, channels))
        return fail(l, "kind must be temporary|formal, state active|cancelled|lapsed, channel voice|ussd|sms|agent|counter");
    if (days_ago < 0 || days_ago > DAYS_AGO_MAX)
        return fail(l, "placed_days_ago must be 0 to %d", DAYS_AGO_MAX);
    bool temporary = strcmp(kind, "temporary") == 0;
    if (!temporary && strcmp(state, "active") != 0)
        return fail(l, "a formal loss report can only be active");
    char placed[SIMCLOCK_INSTANT_LEN + 1], cancelled[SIMCLOCK_INSTANT_LEN + 1];
    char placed_on[SIMCLOCK_DATE_LEN + 1], expires[SIMCLOCK_DATE_LEN + 1];
    day_instant((long)days_ago, "01:30:00", placed, placed_on);
    day_instant((long)days_ago, "02:30:00", cancelled, placed_on);
    simclock_date_add(placed_on, l->opt->loss_days, expires);
    bool active = strcmp(state, "active") == 0;
    *active_temporary += active && temporary;
    *active_formal += active && !temporary;
    if (!db_run(l->h,
                "INSERT INTO loss_reports(id, card_number, kind, state, channel, reference, placed_at,"
                " expires_on, cancelled_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                "ttttttttt", id, card, kind, state, channel, reference, placed,
                temporary ? expires : NULL, strcmp(state, "cancelled") == 0 ? cancelled : NULL))
        return insert_failed(l);
    return true;
}

/* Cards ---------------------------------------------------------------------*/

static bool optional_card_number(loader *l, const char *field, const char *value)
{
    if (value != NULL && !domain_card_number_valid(value))
        return fail(l, "%s is not a valid card number", field);
    return true;
}

static bool card_status_consistent(loader *l, int status, int wrong_attempts,
                                   int active_temporary, int active_formal)
{
    if ((status == 3) != (wrong_attempts >= RECORDS_PIN_ATTEMPTS))
        return fail(l, "status 3 (locked) goes with pin.wrong_attempts 6, and only with it");
    if ((status == 4) != (active_temporary == 1))
        return fail(l, "status 4 (temporary loss) goes with exactly one active temporary loss report");
    if ((status == 2) != (active_formal == 1))
        return fail(l, "status 2 (formal loss) goes with exactly one active formal loss report");
    return true;
}

static bool card_values_valid(loader *l, const char *number, int status, int generation,
                              const char *issued, const char *replaces, const char *replaced_by)
{
    static const int statuses[] = {0, 1, 2, 3, 4, 9};
    bool known = false;
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
        known = known || statuses[i] == status;
    if (!domain_card_number_valid(number))
        return fail(l, "card_number must be 9 upper-case letters/digits or 8 digits");
    if (!known)
        return fail(l, "status must be 0, 1, 2, 3, 4 or 9");
    if (generation < 1)
        return fail(l, "generation must be 1 or more");
    if (issued != NULL && !simclock_date_valid(issued))
        return fail(l, "issued_date must be YYYY-MM-DD");
    return optional_card_number(l, "replaces", replaces) &&
           optional_card_number(l, "replaced_by", replaced_by);
}

static bool pin_values(loader *l, json_t *pin, const char **value, int *initial, int *wrong)
{
    json_error_t e;
    *value = l->opt->initial_pin;
    *initial = 1;
    *wrong = 0;
    if (pin && json_unpack_ex(pin, &e, JSON_STRICT, "{s:s, s:b, s?i}", "value", value,
                              "initial", initial, "wrong_attempts", wrong) != 0)
        return fail(l, "pin: %s", e.text);
    if (domain_pin_check(*value, NULL, NULL) == DOMAIN_PIN_MALFORMED)
        return fail(l, "pin.value must be six digits");
    if (*wrong < 0 || *wrong > RECORDS_PIN_ATTEMPTS)
        return fail(l, "pin.wrong_attempts must be 0 to 6");
    return true;
}

static bool load_card(loader *l, const char *ssn, json_t *j, const char *at)
{
    const char *number, *bank, *issued = NULL, *replaces = NULL, *replaced_by = NULL, *pin_value;
    int status, current, generation, initial, wrong;
    json_t *pin = NULL, *reports = NULL;
    json_error_t e;
    if (json_unpack_ex(j, &e, JSON_STRICT, "{s:s, s:i, s:b, s:i, s?s, s?s, s?s, s:s, s?o, s?o}",
                       "card_number", &number, "status", &status, "current", &current,
                       "generation", &generation, "issued_date", &issued, "replaces", &replaces,
                       "replaced_by", &replaced_by, "bank", &bank, "pin", &pin,
                       "loss_reports", &reports) != 0)
        return fail(l, "%s", e.text);
    if (!card_values_valid(l, number, status, generation, issued, replaces, replaced_by) ||
        !pin_values(l, pin, &pin_value, &initial, &wrong))
        return false;
    if (db_int(l->h, 0, "SELECT EXISTS(SELECT 1 FROM banks WHERE code = ?)", "t", bank) == 0)
        return fail(l, "bank \"%s\" is not in the banks list", bank);
    char hash[PINHASH_MAX];
    if (!pinhash_make(pin_value, hash))
        return fail(l, "could not hash the PIN");
    if (!db_run(l->h,
                "INSERT INTO cards(card_number, ssn, status, current, generation, issued_date, replaces,"
                " replaced_by, bank_code, pin_hash, pin_initial, pin_failures)"
                " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                "ttiiitttttii", number, ssn, status, current, generation, issued, replaces,
                replaced_by, bank, hash, initial, wrong))
        return insert_failed(l);
    int active_temporary = 0, active_formal = 0;
    size_t i;
    json_t *report;
    if (reports && !json_is_array(reports))
        return fail(l, "loss_reports must be an array");
    json_array_foreach(reports, i, report) {
        locate(l, "%s.loss_reports[%zu]", at, i);
        if (!load_report(l, number, report, &active_temporary, &active_formal))
            return false;
    }
    locate(l, "%s", at);
    return card_status_consistent(l, status, wrong, active_temporary, active_formal);
}

/* Applications --------------------------------------------------------------*/

static bool application_values_valid(loader *l, const char *type, const char *stage,
                                     const char *stage_date, const char *outlet,
                                     const char *card, const char *replaces)
{
    static const char *const types[] = {"new", "reissue_after_loss", "replacement", "warranty_replacement", NULL};
    static const char *const stages[] = {"received", "in_production", "at_city_bank", "at_outlet",
                                         "collected", "activated", "production_failed", "uncollected", NULL};
    static const char *const with_outlet[] = {"at_outlet", "collected", "activated", "uncollected", NULL};
    if (!one_of(type, types))
        return fail(l, "type must be new, reissue_after_loss, replacement or warranty_replacement");
    if (!one_of(stage, stages))
        return fail(l, "stage must be one of the contract's stages");
    if (!simclock_date_valid(stage_date))
        return fail(l, "stage_date must be YYYY-MM-DD");
    if (one_of(stage, with_outlet) && outlet == NULL)
        return fail(l, "stage %s needs an outlet", stage);
    if (outlet && db_int(l->h, 0, "SELECT EXISTS(SELECT 1 FROM outlets WHERE code = ?)", "t", outlet) == 0)
        return fail(l, "outlet \"%s\" is not in the outlets list", outlet);
    return optional_card_number(l, "card_number", card) &&
           optional_card_number(l, "replaces_card", replaces);
}

static bool load_application(loader *l, const char *ssn, json_t *j)
{
    const char *id, *type, *stage, *stage_date, *created, *card = NULL, *replaces = NULL, *outlet = NULL;
    json_error_t e;
    if (json_unpack_ex(j, &e, JSON_STRICT, "{s:s, s:s, s:s, s:s, s?s, s?s, s?s, s:s}", "id", &id,
                       "type", &type, "stage", &stage, "stage_date", &stage_date, "card_number", &card,
                       "replaces_card", &replaces, "outlet", &outlet, "created_at", &created) != 0)
        return fail(l, "%s", e.text);
    if (!application_values_valid(l, type, stage, stage_date, outlet, card, replaces))
        return false;
    if (!db_run(l->h,
                "INSERT INTO applications(id, ssn, type, stage, stage_date, card_number, replaces_card,"
                " outlet_code, created_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                "ttttttttt", id, ssn, type, stage, stage_date, card, replaces, outlet, created))
        return insert_failed(l);
    return true;
}

/* Persons -------------------------------------------------------------------*/

static bool person_values_valid(loader *l, const char *raw_ssn, char ssn[DOMAIN_ID_LEN + 1],
                                const char *mobile, const char *address)
{
    if (!domain_id_normalize(raw_ssn, ssn) || !domain_id_valid(ssn))
        return fail(l, "ssn is not a valid citizen ID (format or check character)");
    if (mobile && !records_mobile_valid(mobile))
        return fail(l, "mobile must be E.164 (+ and 8 to 15 digits)");
    if (address && !records_address_valid(address))
        return fail(l, "address must be 1 to 200 characters");
    return true;
}

static bool load_person(loader *l, json_t *j, size_t index)
{
    const char *raw_ssn, *name, *mobile = NULL, *address = NULL;
    json_t *cards = NULL, *apps = NULL;
    json_error_t e;
    char ssn[DOMAIN_ID_LEN + 1], birth[SIMCLOCK_DATE_LEN + 1], now[SIMCLOCK_INSTANT_LEN + 1];
    locate(l, "persons[%zu]", index);
    if (json_unpack_ex(j, &e, JSON_STRICT, "{s:s, s:s, s?s, s?s, s?o, s?o}", "ssn", &raw_ssn,
                       "name", &name, "mobile", &mobile, "address", &address, "cards", &cards,
                       "applications", &apps) != 0)
        return fail(l, "%s", e.text);
    if (!person_values_valid(l, raw_ssn, ssn, mobile, address))
        return false;
    snprintf(birth, sizeof birth, "%.4s-%.2s-%.2s", ssn + 6, ssn + 10, ssn + 12);
    simclock_now(now);
    if (!db_run(l->h, "INSERT INTO persons(ssn, name, birth_date, mobile, address, updated_at)"
                      " VALUES(?, ?, ?, ?, ?, ?)", "tttttt", ssn, name, birth, mobile, address, now))
        return insert_failed(l);
    if ((cards && !json_is_array(cards)) || (apps && !json_is_array(apps)))
        return fail(l, "cards and applications must be arrays");
    size_t i;
    json_t *item;
    char at[WHERE_MAX];
    json_array_foreach(cards, i, item) {
        snprintf(at, sizeof at, "persons[%zu].cards[%zu]", index, i);
        locate(l, "%s", at);
        if (!load_card(l, ssn, item, at))
            return false;
    }
    json_array_foreach(apps, i, item) {
        locate(l, "persons[%zu].applications[%zu]", index, i);
        if (!load_application(l, ssn, item))
            return false;
    }
    return true;
}

/* The file ------------------------------------------------------------------*/

static bool load_list(loader *l, json_t *root, const char *name, bool (*one)(loader *, json_t *))
{
    json_t *list = json_object_get(root, name);
    size_t i;
    json_t *item;
    if (!json_is_array(list)) {
        locate(l, "%s", name);
        return fail(l, "must be an array");
    }
    json_array_foreach(list, i, item) {
        locate(l, "%s[%zu]", name, i);
        if (!one(l, item))
            return false;
    }
    return true;
}

static bool load_all(loader *l, json_t *root)
{
    static const char *const sections[] = {"banks", "outlets", "persons", NULL};
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value) {
        if (!one_of(key, sections)) {
            locate(l, "%s", key);
            return fail(l, "unknown section (expected banks, outlets, persons)");
        }
    }
    if (!load_list(l, root, "banks", load_bank) || !load_list(l, root, "outlets", load_outlet))
        return false;
    json_t *persons = json_object_get(root, "persons");
    size_t i;
    json_t *item;
    if (!json_is_array(persons)) {
        locate(l, "persons");
        return fail(l, "must be an array");
    }
    json_array_foreach(persons, i, item)
        if (!load_person(l, item, i))
            return false;
    return true;
}

seed_result seed_load(sqlite3 *h, const seed_options *opt, char *err, size_t errlen)
{
    loader l = {.h = h, .opt = opt, .err = err, .errlen = errlen, .where = "(file)"};
    err[0] = '\0';
    json_error_t e;
    json_t *root = json_load_file(opt->path, JSON_REJECT_DUPLICATES, &e);
    if (!json_is_object(root)) {
        if (root == NULL)
            snprintf(err, errlen, "%s: line %d, column %d: %s", opt->path, e.line, e.column, e.text);
        else
            snprintf(err, errlen, "%s: the seed must be a JSON object", opt->path);
        json_decref(root);
        return SEED_FAILED;
    }
    seed_result result = SEED_FAILED;
    if (!db_begin(h)) {
        snprintf(err, errlen, "%s: database busy", opt->path);
    } else if (!opt->reseed && db_has_data(h)) {
        result = SEED_SKIPPED;
    } else if ((opt->reseed && !db_wipe(h)) || !load_all(&l, root)) {
        if (opt->reseed && err[0] == '\0')
            snprintf(err, errlen, "%s: could not wipe the database", opt->path);
    } else {
        result = SEED_LOADED;
    }
    if (result == SEED_FAILED || !db_commit(h)) {
        db_rollback(h);
        if (result != SEED_FAILED)
            snprintf(err, errlen, "%s: could not commit the seed", opt->path);
        result = SEED_FAILED;
    }
    json_decref(root);
    return result;
}
