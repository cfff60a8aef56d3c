/* dp_text — templates ("text with {placeholders}") parsed once at load, and
 * rendering them: a prompt's wording per channel, each value shown per its
 * rendering and language, personal numbers masked (mask.h, plus the spoken
 * forms: only the last four characters of an ID, card or phone are said).
 * One function per kind of value decides its form on screens, as heard and
 * as the voice player's pieces. Output is always terminated and never cut
 * inside a UTF-8 character. */
#include "dp_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mask.h"
#include "mem.h"
#include "utf8.h"

/* Parsing --------------------------------------------------------------------*/

static const char *const render_names[] = {"text", "digits", "number", "date", "amount", "id", "card", "phone", "ref"};
#define N_RENDERS (sizeof render_names / sizeof *render_names)

/* `{name}` or `{name:render}` at s (after the brace); returns the length up
 * to and including the closing brace, 0 on error. */
static size_t parse_placeholder(const char *s, char *name, dp_render *render, const char **why)
{
    const char *close = strchr(s, '}');
    if (!close) {
        *why = "unclosed '{' (write '{{' for a literal brace)";
        return 0;
    }
    size_t n = (size_t)(close - s);
    const char *colon = memchr(s, ':', n);
    size_t name_len = colon ? (size_t)(colon - s) : n;
    if (name_len == 0 || name_len > DP_MAX_NAME) {
        *why = "empty or overlong placeholder name";
        return 0;
    }
    memcpy(name, s, name_len);
    name[name_len] = '\0';
    if (!dp_valid_name(name)) {
        *why = "placeholder name must be [a-z][a-z0-9_]*";
        return 0;
    }
    *render = DP_RENDER_TEXT;
    if (colon) {
        size_t rlen = n - name_len - 1;
        size_t i = 0;
        while (i < N_RENDERS && !(strlen(render_names[i]) == rlen && !memcmp(render_names[i], colon + 1, rlen)))
            i++;
        if (i == N_RENDERS) {
            *why = "unknown rendering (text, digits, number, date, amount, id, card, phone, ref)";
            return 0;
        }
        *render = (dp_render)i;
    }
    return n + 1;
}

typedef struct {
    dp_pool *pool;
    dp_tpart *parts;
    size_t n;
    char *lit;               /* literal being collected */
    size_t lit_len;
} tbuild;

static void flush_literal(tbuild *b)
{
    if (!b->lit_len)
        return;
    b->lit[b->lit_len] = '\0';
    b->parts[b->n++] = (dp_tpart){dp_strdup(b->pool, b->lit), false, DP_RENDER_TEXT};
    b->lit_len = 0;
}

const dp_template *dp_template_parse(dialplan *dp, const char *src, const char **why)
{
    dp_pool *p = &dp->pool;
    size_t len = strlen(src);
    tbuild b = {p, dp_alloc(p, (len + 1) * sizeof(dp_tpart)), 0, mem_malloc(len + 1), 0};
    const char *s = src;
    while (*s) {
        if ((s[0] == '{' && s[1] == '{') || (s[0] == '}' && s[1] == '}')) {
            b.lit[b.lit_len++] = s[0];
            s += 2;
        } else if (*s == '}') {
            *why = "unmatched '}' (write '}}' for a literal brace)";
            free(b.lit);
            return NULL;
        } else if (*s == '{') {
            char name[DP_MAX_NAME + 1];
            dp_render r;
            size_t used = parse_placeholder(s + 1, name, &r, why);
            if (!used) {
                free(b.lit);
                return NULL;
            }
            flush_literal(&b);
            b.parts[b.n++] = (dp_tpart){dp_strdup(p, name), true, r};
            s += 1 + used;
        } else {
            b.lit[b.lit_len++] = *s++;
        }
    }
    flush_literal(&b);
    free(b.lit);
    dp_template *t = dp_alloc(p, sizeof *t);
    t->parts = b.parts;
    t->n_parts = b.n;
    t->dp = dp;
    return t;
}

bool dp_template_is_literal(const dp_template *t, const char **literal)
{
    if (t->n_parts > 1 || (t->n_parts == 1 && t->parts[0].is_var))
        return false;
    *literal = t->n_parts ? t->parts[0].text : "";
    return true;
}

/* Prompts ---------------------------------------------------------------------*/

const dp_template *dp_prompt_wording(const dp_prompt *pr, channel_kind ch)
{
    const dp_template *specific = NULL;
    switch (ch) {
    case CHANNEL_VOICE:
        specific = pr->w[DP_W_VOICE];
        break;
    case CHANNEL_USSD:
        specific = pr->w[DP_W_USSD] ? pr->w[DP_W_USSD] : pr->w[DP_W_TEXT];
        break;
    case CHANNEL_SMS:
        specific = pr->w[DP_W_SMS] ? pr->w[DP_W_SMS] : pr->w[DP_W_TEXT];
        break;
    default:
        break;
    }
    return specific ? specific : pr->w[DP_W_PLAIN];
}

const dp_catalogue *dp_catalogue_of(const dialplan *dp, const char *lang)
{
    for (size_t i = 0; lang && i < dp->n_cats; i++)
        if (!strcmp(dp->cats[i].lang, lang))
            return &dp->cats[i];
    return NULL;
}

static int id_order(const void *id, const void *prompt)
{
    return strcmp(id, ((const dp_prompt *)prompt)->id);
}

const dp_prompt *dp_catalogue_find(const dp_catalogue *c, const char *id)
{
    return c->n ? bsearch(id, c->prompts, c->n, sizeof *c->prompts, id_order) : NULL;
}

/* The prompt in `lang`, the default language standing in for an unknown
 * one; `*said_in` is the language whose catalogue answered. A loaded set
 * has a catalogue for exactly the languages settings lists (dp_check). */
static const dp_prompt *find_prompt(const dialplan *dp, const char *lang, const char *id, const char **said_in)
{
    const dp_catalogue *c = dp_catalogue_of(dp, lang);
    if (!c)
        c = dp_catalogue_of(dp, dp->langs[0]);
    *said_in = c ? c->lang : NULL;
    return c ? dp_catalogue_find(c, id) : NULL;
}

/* Values ---------------------------------------------------------------------*/

#define DP_VALUE_MAX 256

/* A session variable, else the set's settings value of that name. */
static void raw_value(const dialplan *dp, json_t *vars, const char *name, char *buf, size_t size)
{
    json_t *v = vars ? json_object_get(vars, name) : NULL;
    const char *setting = v ? NULL : dp_setting_value(dp, name);
    buf[0] = '\0';
    if (setting)
        snprintf(buf, size, "%s", setting);
    else if (json_is_string(v))
        snprintf(buf, size, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(buf, size, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, size, "%.2f", json_real_value(v));
    else if (json_is_boolean(v))
        snprintf(buf, size, "%s", json_is_true(v) ? "yes" : "no");
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return n > 0;
}

/* "12", "12.5", "12.50" → "12.50"; false for anything else. */
/* Amounts beyond a trillion yuan are not money a card service reads out. */
#define YUAN_MAX_DIGITS 13

static bool yuan(const char *raw, char *out, size_t size)
{
    const char *dot = strchr(raw, '.');
    const char *digits = raw[0] == '-' ? raw + 1 : raw;
    size_t ilen = dot ? (size_t)(dot - digits) : strlen(digits);
    size_t flen = dot ? strlen(dot + 1) : 0;
    if (ilen == 0 || ilen > YUAN_MAX_DIGITS || !all_digits(digits, ilen) || flen > 2 ||
        (dot && !all_digits(dot + 1, flen)))
        return false;
    snprintf(out, size, "%.*s.%c%c", (int)(ilen + (size_t)(digits - raw)), raw, flen > 0 ? dot[1] : '0',
             flen > 1 ? dot[2] : '0');
    return true;
}

/* "2026-11-29" in words of `lang`; false if not a date or no wording. */
static bool long_date(const char *raw, const char *lang, char *out, size_t size)
{
    static const char *const months[] = {"January", "February", "March",     "April",   "May",      "June",
                                         "July",    "August",   "September", "October", "November", "December"};
    if (strlen(raw) != 10 || raw[4] != '-' || raw[7] != '-' || !all_digits(raw, 4) || !all_digits(raw + 5, 2) ||
        !all_digits(raw + 8, 2))
        return false;
    int y = atoi(raw), m = atoi(raw + 5), d = atoi(raw + 8);
    if (m < 1 || m > 12 || d < 1 || d > 31)
        return false;
    if (!strcmp(lang, "zh"))
        snprintf(out, size, "%d年%d月%d日", y, m, d);
    else if (!strcmp(lang, "en"))
        snprintf(out, size, "%d %s %d", d, months[m - 1], y);
    else
        return false;
    return true;
}

/* Kinds ----------------------------------------------------------------------*/

/* Each kind of value has one function deciding how it reads wherever it
 * goes, so a screen and the hotline never disagree on a number's form. */

typedef enum {
    SHOW_TEMPLATE,           /* call arguments and `set` values: no words */
    SHOW_SCREEN,             /* USSD and SMS */
    SHOW_HEARD,              /* a voice wording as text: what the caller hears */
    SHOW_SPOKEN              /* voice pieces for the player: dates and amounts raw, groups apart */
} show_for;

typedef struct {
    show_for to;
    const char *lang;        /* the catalogue's language, NULL for templates */
    bool letters;            /* card: another card of the prompt ends alike, its letters differ */
} show_how;

#define TAIL_CHARS 4         /* what masking lets us read back of a card or phone */
#define GROUP_MAX 4          /* characters said in one breath */

const char *dialplan_ending_word(const char *lang)
{
    if (!lang)
        return NULL;
    return !strcmp(lang, "zh") ? "尾号" : !strcmp(lang, "en") ? "the number ending" : NULL;
}

/* The last four characters of a masked number, or "" if it was all stars. */
static const char *masked_tail(const masked *m)
{
    size_t n = strlen(m->s);
    const char *tail = n >= TAIL_CHARS ? m->s + n - TAIL_CHARS : m->s;
    return strchr(tail, '*') ? "" : tail;
}

/* `s` in groups as even as can be, at most GROUP_MAX each, larger ones
 * first: 14 characters are said 4-4-3-3, 12 are 4-4-4. */
static void even_groups(const char *s, size_t n, char *out, size_t size)
{
    size_t groups = (n + GROUP_MAX - 1) / GROUP_MAX, len = 0;
    out[0] = '\0';
    for (size_t g = 0, at = 0; g < groups && len + 1 < size; g++) {
        size_t take = n / groups + (g < n % groups);
        len += (size_t)snprintf(out + len, size - len, "%s%.*s", g ? " " : "", (int)take, s + at);
        at += take;
        if (len >= size)
            return;
    }
}

/* The 11 digits of a Chinese mobile number ("13800000002", "+8613800000002"),
 * or NULL. */
static const char *chinese_mobile(const char *raw)
{
    const char *national = strncmp(raw, "+86", 3) == 0 ? raw + 3 : raw;
    return strlen(national) == 11 && national[0] == '1' && all_digits(national, 11) ? national : NULL;
}

static void show_date(show_how h, const char *raw, char *out, size_t size)
{
    if (h.to == SHOW_SPOKEN || !h.lang || !long_date(raw, h.lang, out, size))
        snprintf(out, size, "%s", raw);
}

static void show_amount(show_how h, const char *raw, char *out, size_t size)
{
    char y[YUAN_MAX_DIGITS + 5]; /* sign, digits, point, two decimals, NUL */
    if (!yuan(raw, y, sizeof y))
        snprintf(out, size, "%s", raw);
    else if (h.to == SHOW_SPOKEN || !h.lang)
        snprintf(out, size, "%s", y);
    else if (!strcmp(h.lang, "zh"))
        snprintf(out, size, "%s元", y);
    else
        snprintf(out, size, "CNY %s", y);
}

/* First 6 + last 4 on a screen, only the last 4 by voice. */
static void show_id(show_how h, const char *raw, char *out, size_t size)
{
    masked m = mask_id(raw);
    bool voice = h.to == SHOW_HEARD || h.to == SHOW_SPOKEN;
    snprintf(out, size, "%s", voice ? masked_tail(&m) : m.s);
}

/* The letters a card number starts with ("A" of A10000001), if any. */
static size_t card_letters(const char *raw)
{
    size_t n = 0;
    while (isupper((unsigned char)raw[n]))
        n++;
    return n;
}

/* Two cards read back alike by their last 4 but told apart by their letters. */
static bool cards_need_letters(const char *a, const char *b)
{
    masked ma = mask_card(a), mb = mask_card(b);
    const char *ta = masked_tail(&ma), *tb = masked_tail(&mb);
    size_t la = card_letters(a), lb = card_letters(b);
    return *ta && !strcmp(ta, tb) && la && lb && (la != lb || memcmp(a, b, la) != 0);
}

/* The last 4 everywhere ("尾号0001", "ending 0001"); where two cards of a
 * prompt end alike, their letters too: "A...0001" (ASCII, so an English
 * page stays GSM 7-bit; voice says the letter, a pause, the digits). A
 * value that is not a card number shows as stars and says nothing. */
static void show_card(show_how h, const char *raw, char *out, size_t size)
{
    masked m = mask_card(raw);
    const char *tail = masked_tail(&m);
    if (!*tail)
        snprintf(out, size, "%s", h.to == SHOW_SCREEN || h.to == SHOW_TEMPLATE ? m.s : "");
    else if (h.letters)
        snprintf(out, size, "%.*s...%s", (int)card_letters(raw), raw, tail);
    else
        snprintf(out, size, "%s", tail);
}

/* 3 + 4 on a screen, a Chinese mobile without its +86 ("138****0002"); by
 * voice the last 4 after the ending word ("尾号0002"), which the player
 * says for a spoken piece marked `ending`. */
static void show_phone(show_how h, const char *raw, char *out, size_t size, bool *ending)
{
    const char *mobile = chinese_mobile(raw);
    masked m = mask_phone(mobile ? mobile : raw);
    const char *tail = masked_tail(&m);
    const char *word = dialplan_ending_word(h.lang);
    if (h.to == SHOW_SCREEN || h.to == SHOW_TEMPLATE)
        snprintf(out, size, "%s", m.s);
    else if (h.to == SHOW_HEARD && *tail && word)
        snprintf(out, size, "%s%s%s", word, isalpha((unsigned char)word[strlen(word) - 1]) ? " " : "", tail);
    else
        snprintf(out, size, "%s", tail);
    *ending = h.to == SHOW_SPOKEN && *tail;
}

/* As is; said digit by digit, a mobile number in groups 3-4-4 (anything
 * between digits, as in 010-12333, is a pause too). */
static void show_digits(show_how h, const char *raw, char *out, size_t size)
{
    const char *mobile = chinese_mobile(raw);
    if (h.to == SHOW_SPOKEN && mobile)
        snprintf(out, size, "%.3s %.4s %.4s", mobile, mobile + 3, mobile + 7);
    else
        snprintf(out, size, "%s", raw);
}

/* A reference the caller may have to quote: as is on a screen, said in
 * even groups of at most 4 ("GS3K 7Q2M 9X4 PZ1"). */
static void show_ref(show_how h, const char *raw, char *out, size_t size)
{
    size_t n = strlen(raw);
    bool alnum = n > 0;
    for (size_t i = 0; i < n; i++)
        alnum = alnum && isalnum((unsigned char)raw[i]);
    if (h.to == SHOW_SPOKEN && alnum)
        even_groups(raw, n, out, size);
    else
        snprintf(out, size, "%s", raw);
}

static void show_value(dp_render r, show_how h, const char *raw, char *out, size_t size, bool *ending)
{
    *ending = false;
    switch (r) {
    case DP_RENDER_DATE:
        show_date(h, raw, out, size);
        return;
    case DP_RENDER_AMOUNT:
        show_amount(h, raw, out, size);
        return;
    case DP_RENDER_ID:
        show_id(h, raw, out, size);
        return;
    case DP_RENDER_CARD:
        show_card(h, raw, out, size);
        return;
    case DP_RENDER_PHONE:
        show_phone(h, raw, out, size, ending);
        return;
    case DP_RENDER_DIGITS:
        show_digits(h, raw, out, size);
        return;
    case DP_RENDER_REF:
        show_ref(h, raw, out, size);
        return;
    default:
        snprintf(out, size, "%s", raw);
        return;
    }
}

/* Rendering ----------------------------------------------------------------*/

typedef struct {
    char *out;
    size_t size, len;
} sink;

/* Appends what fits, never splitting a UTF-8 character. */
static void sink_put(sink *k, const char *s)
{
    size_t n = utf8_cut(s, k->size - 1 - k->len);
    memcpy(k->out + k->len, s, n);
    k->len += n;
    k->out[k->len] = '\0';
}

/* Whether card part `i` of `t` ends like another card of the same prompt
 * (old and new card: "A...0001 replaced by B...0001"). */
static bool card_needs_letters(const dp_template *t, json_t *vars, size_t i, const char *raw)
{
    char other[DP_VALUE_MAX];
    for (size_t k = 0; k < t->n_parts; k++) {
        const dp_tpart *p = &t->parts[k];
        if (k == i || !p->is_var || p->render != DP_RENDER_CARD)
            continue;
        raw_value(t->dp, vars, p->text, other, sizeof other);
        if (cards_need_letters(raw, other))
            return true;
    }
    return false;
}

static void walk(const dp_template *t, json_t *vars, show_for to, const char *lang, dp_piece_fn *emit, void *arg)
{
    for (size_t i = 0; i < t->n_parts; i++) {
        const dp_tpart *p = &t->parts[i];
        dp_piece piece = {p->is_var, p->render, p->text, false};
        char raw[DP_VALUE_MAX], shown[DP_VALUE_MAX];
        if (p->is_var) {
            raw_value(t->dp, vars, p->text, raw, sizeof raw);
            show_how h = {to, lang, p->render == DP_RENDER_CARD && card_needs_letters(t, vars, i, raw)};
            show_value(p->render, h, raw, shown, sizeof shown, &piece.ending);
            piece.text = shown;
        }
        emit(&piece, arg);
    }
}

static void put_piece(const dp_piece *piece, void *arg)
{
    sink_put(arg, piece->text);
}

bool dialplan_render_text(const dialplan *dp, const char *lang, channel_kind channel, const char *id,
                          json_t *vars, char *out, size_t out_size)
{
    if (out_size)
        out[0] = '\0';
    const char *use;
    const dp_prompt *pr = find_prompt(dp, lang, id, &use);
    if (!pr || !out_size)
        return pr != NULL;
    sink k = {out, out_size, 0};
    walk(dp_prompt_wording(pr, channel), vars, channel == CHANNEL_VOICE ? SHOW_HEARD : SHOW_SCREEN, use, put_piece, &k);
    return true;
}

bool dialplan_render_pieces(const dialplan *dp, const char *lang, channel_kind channel, const char *id,
                            json_t *vars, dp_piece_fn *emit, void *arg)
{
    const char *use;
    const dp_prompt *pr = find_prompt(dp, lang, id, &use);
    if (!pr)
        return false;
    walk(dp_prompt_wording(pr, channel), vars, channel == CHANNEL_VOICE ? SHOW_SPOKEN : SHOW_SCREEN, use, emit, arg);
    return true;
}

void dialplan_prompt_ids(const dialplan *dp, const char *lang, dp_prompt_id_fn *emit, void *arg)
{
    const dp_catalogue *c = dp_catalogue_of(dp, lang);
    for (size_t i = 0; c && i < c->n; i++)
        emit(c->prompts[i].id, arg);
}

void dialplan_prompt_vars(const dialplan *dp, const char *id, dp_var_name_fn *emit, void *arg)
{
    for (size_t i = 0; i < dp->n_cats; i++) {
        const dp_prompt *pr = dp_catalogue_find(&dp->cats[i], id);
        for (int w = 0; pr && w < DP_W_COUNT; w++)
            for (size_t k = 0; pr->w[w] && k < pr->w[w]->n_parts; k++)
                if (pr->w[w]->parts[k].is_var)
                    emit(pr->w[w]->parts[k].text, arg);
    }
}

void dialplan_render_template(const dp_template *t, json_t *vars, char *out, size_t out_size)
{
    if (!out_size)
        return;
    out[0] = '\0';
    sink k = {out, out_size, 0};
    walk(t, vars, SHOW_TEMPLATE, NULL, put_piece, &k);
}
