/* reply — shared readers of registry answers (see reply.h). Opening hours
 * are worded here because the contract gives them as data (weekdays 1-7,
 * HH:MM), not as text in one language. */
#include "reply.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define NAME_KEY_MAX 64
#define HOURS_ENTRIES_MAX 7

json_t *handler_reply_current_card(json_t *body)
{
    size_t i;
    json_t *card;
    json_array_foreach(json_object_get(body, "cards"), i, card)
        if (json_is_true(json_object_get(card, "current")))
            return card;
    return NULL;
}

const char *handler_reply_text(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

const char *handler_reply_name(json_t *obj, const char *key, const char *lang)
{
    char en_key[NAME_KEY_MAX];
    snprintf(en_key, sizeof en_key, "%s_en", key);
    const char *en = json_string_value(json_object_get(obj, en_key));
    if (lang && strcmp(lang, "en") == 0 && en && en[0])
        return en;
    return handler_reply_text(obj, key);
}

/* Wording of days and times in one language. */
typedef struct {
    const char *days[8];      /* [1] Monday .. [7] Sunday */
    const char *run;          /* between the first and last day of a run */
    const char *day_gap;      /* between runs of days */
    const char *before_time;  /* between the days and the times */
    const char *entry_gap;    /* between entries */
    bool hour_zero;           /* 09:00 rather than 9:00 */
} hours_words;

static const hours_words zh_words = {
    {"", "周一", "周二", "周三", "周四", "周五", "周六", "周日"}, "至", "、", "", "，", false};
static const hours_words en_words = {
    {"", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}, "-", ", ", " ", "; ", true};

typedef struct {
    char *out;
    size_t size, len;
    bool overflow;
} text_buf;

static void put(text_buf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->len + n >= b->size) {
        b->overflow = true;
        return;
    }
    memcpy(b->out + b->len, s, n + 1);
    b->len += n;
}

/* "HH:MM" with hours 00-23 and minutes 00-59. */
static bool clock_valid(const char *t)
{
    return t && strlen(t) == 5 && t[2] == ':' && t[0] >= '0' && t[0] <= '2' && t[1] >= '0' &&
           t[1] <= '9' && (t[0] < '2' || t[1] <= '3') && t[3] >= '0' && t[3] <= '5' && t[4] >= '0' &&
           t[4] <= '9';
}

static void put_time(text_buf *b, const char *t, const hours_words *w)
{
    put(b, !w->hour_zero && t[0] == '0' ? t + 1 : t);
}

/* Days as runs ("周一至周五", "Mon, Wed"); false unless 1-7 ascending. */
static bool put_days(text_buf *b, json_t *days, const hours_words *w)
{
    int from = 0, prev = 0;
    size_t i;
    json_t *day;
    if (!json_is_array(days) || json_array_size(days) == 0)
        return false;
    json_array_foreach(days, i, day) {
        json_int_t d = json_is_integer(day) ? json_integer_value(day) : 0;
        if (d < 1 || d > 7 || d <= prev)
            return false;
        if (from && d != prev + 1) {
            put(b, w->days[from]);
            if (prev != from) {
                put(b, w->run);
                put(b, w->days[prev]);
            }
            put(b, w->day_gap);
            from = 0;
        }
        from = from ? from : (int)d;
        prev = (int)d;
    }
    put(b, w->days[from]);
    if (prev != from) {
        put(b, w->run);
        put(b, w->days[prev]);
    }
    return true;
}

static bool put_entry(text_buf *b, json_t *entry, const hours_words *w)
{
    const char *open = json_string_value(json_object_get(entry, "open"));
    const char *close = json_string_value(json_object_get(entry, "close"));
    if (!clock_valid(open) || !clock_valid(close) || !put_days(b, json_object_get(entry, "days"), w))
        return false;
    put(b, w->before_time);
    put_time(b, open, w);
    put(b, "-");
    put_time(b, close, w);
    return true;
}

void handler_reply_hours(json_t *outlet, const char *lang, char *out, size_t size)
{
    const hours_words *w = lang && strcmp(lang, "en") == 0 ? &en_words : &zh_words;
    json_t *opening = json_object_get(outlet, "opening_hours");
    text_buf b = {.out = out, .size = size};
    bool ok = size > 0 && json_is_array(opening) && json_array_size(opening) > 0 &&
              json_array_size(opening) <= HOURS_ENTRIES_MAX;
    size_t i;
    json_t *entry;
    if (size > 0)
        out[0] = '\0';
    json_array_foreach(opening, i, entry) {
        if (!ok)
            break;
        if (i > 0)
            put(&b, w->entry_gap);
        ok = put_entry(&b, entry, w);
    }
    if (size > 0 && (!ok || b.overflow))
        snprintf(out, size, "%s", handler_reply_text(outlet, "hours"));
}
