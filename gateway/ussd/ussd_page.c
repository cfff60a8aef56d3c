/* ussd_page — an output cut into USSD pages a handset can show (see
 * ussd.h, "Pages"). Pure: the budget of a page is measured with the GSM
 * 03.38 table (gsm.h) in the coding the page's own text needs, and the
 * cuts fall where a reader expects them. */
#include "ussd.h"

#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "gsm.h"
#include "mem.h"
#include "utf8.h"

#define PAGE_RENDER_MAX 8192      /* one output rendered as text */

/* What a stretch of text costs in either coding. */
typedef struct {
    size_t septets;                /* GSM-7 septets (valid while gsm) */
    size_t units;                  /* UCS-2 units */
    bool gsm;                      /* every character so far has septets */
} cost;

/* How good a place to cut is: lower is better. */
typedef enum {
    CUT_LINE = 1,                  /* at a line break */
    CUT_SENTENCE,                  /* after a sentence end */
    CUT_CLAUSE,                    /* after a clause mark (，；：、 or ,;: before a blank) */
    CUT_WORD,                      /* at a space */
} cut_kind;

/* A place a page may end: the page is [start, end), the next starts at next. */
typedef struct {
    size_t end;                    /* the page's text ends here */
    size_t next;                   /* the next page starts here (before skipping blanks) */
} cut;

static const char *const sentence_ends[] = {"。", "！", "？", NULL};
static const char *const clause_marks[] = {"，", "；", "：", "、", NULL};

static void cost_add(cost *c, const char *ch, size_t n)
{
    size_t s = gsm_char_septets(ch, n);
    if (s == 0)
        c->gsm = false;
    c->septets += s;
    c->units += gsm_char_ucs2(n);
}

static cost cost_of(const char *text, size_t len)
{
    cost c = {0, 0, true};
    for (size_t i = 0, n; i < len && (n = utf8_char_len(text + i)) > 0; i += n)
        cost_add(&c, text + i, n);
    return c;
}

/* Octets of two stretches shown together: one non-GSM character makes the
 * whole page UCS-2. */
static size_t octets_together(const cost *a, const cost *b)
{
    if (a->gsm && b->gsm)
        return gsm_septet_octets(a->septets + b->septets);
    return gsm_ucs2_octets(a->units + b->units);
}

static bool is_one_of(const char *s, size_t n, const char *const *set)
{
    for (size_t i = 0; set[i]; i++)
        if (strlen(set[i]) == n && memcmp(s, set[i], n) == 0)
            return true;
    return false;
}

/* What cutting next to the character at text[i] (n bytes) would be, and
 * where: 0 when it is no place to cut. ASCII punctuation counts only
 * before a blank ("12.50" is one word). */
static cut_kind cut_at(const char *text, size_t i, size_t n, cut *c)
{
    char ch = text[i];
    if (ch == '\n') {
        *c = (cut){i, i + 1};
        return CUT_LINE;
    }
    bool blank_next = text[i + 1] == ' ' || text[i + 1] == '\n';
    if ((ch == '.' || ch == '!' || ch == '?') && blank_next) {
        *c = (cut){i + 1, i + 1};
        return CUT_SENTENCE;
    }
    if ((ch == ',' || ch == ';' || ch == ':') && blank_next) {
        *c = (cut){i + 1, i + 1};
        return CUT_CLAUSE;
    }
    if (is_one_of(text + i, n, sentence_ends)) {
        *c = (cut){i + n, i + n};
        return CUT_SENTENCE;
    }
    if (ch == ' ') {
        *c = (cut){i, i + 1};
        return CUT_WORD;
    }
    if (is_one_of(text + i, n, clause_marks)) {
        *c = (cut){i + n, i + n};
        return CUT_CLAUSE;
    }
    return 0;
}

/* Where the page starting at `pos` ends, given that its text must fit
 * `budget` octets together with `more` and may not run past `limit`: the
 * whole stretch when it fits, else the last line break that fills at least
 * half of what fits, else the last sentence end that does, else the last
 * clause mark that does, else the last of any of these or a space, else
 * (one unbreakable run) the last character that fits. */
static cut page_cut(const char *text, size_t pos, size_t limit, const cost *more, size_t budget)
{
    cut best[CUT_WORD + 1] = {{0, 0}};
    cost c = {0, 0, true};
    size_t hard = pos, i = pos;
    while (i < limit) {
        size_t n = utf8_char_len(text + i);
        if (n == 0 || i + n > limit)
            break;
        cost next = c;
        cost_add(&next, text + i, n);
        if (octets_together(&next, more) > budget)
            break;
        cut here;
        cut_kind k = cut_at(text, i, n, &here);
        if (k && here.end > pos)
            best[k] = here;
        c = next;
        i += n;
        hard = i;
    }
    if (hard >= limit)
        return (cut){limit, limit};
    size_t half = pos + (hard - pos) / 2;
    for (cut_kind k = CUT_LINE; k < CUT_WORD; k++)
        if (best[k].end > pos && best[k].end >= half)
            return best[k];
    cut last = {0, 0};
    for (cut_kind k = CUT_LINE; k <= CUT_WORD; k++)
        if (best[k].end > last.end)
            last = best[k];
    if (last.end > pos)
        return last;
    if (hard == pos)   /* not even one character fits: take it anyway */
        hard = pos + (utf8_char_len(text + pos) ? utf8_char_len(text + pos) : 1);
    return (cut){hard, hard};
}

static size_t skip_blanks(const char *text, size_t i, size_t len)
{
    while (i < len && (text[i] == ' ' || text[i] == '\n'))
        i++;
    return i;
}

static void add_page(ussd_pages *p, const char *text, size_t len, const char *more)
{
    while (len > 0 && (text[len - 1] == ' ' || text[len - 1] == '\n'))
        len--;
    char **grown = mem_realloc(p->text, (p->count + 1) * sizeof *grown);
    p->text = grown;
    size_t size = len + strlen(more) + 1;
    char *page = mem_malloc(size);
    memcpy(page, text, len);
    memcpy(page + len, more, strlen(more) + 1);
    p->text[p->count++] = page;
}

const char *ussd_more_line(const char *lang)
{
    return lang && strcmp(lang, "zh") != 0 ? "\n" USSD_MORE_KEY " More" : "\n" USSD_MORE_KEY " 更多";
}

void ussd_paginate(const char *text, size_t block, const char *lang, int page_octets, ussd_pages *out)
{
    const char *more = ussd_more_line(lang);
    const cost more_cost = cost_of(more, strlen(more)), none = {0, 0, true};
    size_t budget = (size_t)page_octets, len = strlen(text), pos = 0;
    if (block > len)
        block = len;
    cost question = cost_of(text + block, len - block);
    bool keep_question = block < len && block > 0 && octets_together(&question, &none) <= budget;
    *out = (ussd_pages){0};
    for (;;) {
        cost rest = cost_of(text + pos, len - pos);
        if (octets_together(&rest, &none) <= budget)
            break;
        size_t limit = keep_question && pos < block ? block : len;
        cut c = page_cut(text, pos, limit, &more_cost, budget);
        add_page(out, text + pos, c.end - pos, more);
        pos = skip_blanks(text, c.next, len);
    }
    add_page(out, text + pos, len - pos, "");
}

void ussd_pages_free(ussd_pages *p)
{
    for (size_t i = 0; i < p->count; i++)
        free(p->text[i]);
    free(p->text);
    *p = (ussd_pages){0};
}

/* Renders prompts [from, to) of `output` as engine_render_text does. */
static size_t render_prompts(const struct engine *e, json_t *output, size_t from, size_t to, char *out,
                             size_t size)
{
    json_t *prompts = json_object_get(output, "prompts");
    json_t *part = json_pack("{s:O?, s:[]}", "lang", json_object_get(output, "lang"), "prompts");
    if (!part)
        mem_out_of_memory("ussd: json_pack");
    for (size_t i = from; i < to; i++)
        json_array_append(json_object_get(part, "prompts"), json_array_get(prompts, i));
    size_t len = engine_render_text(e, part, CHANNEL_USSD, out, size);
    json_decref(part);
    return len;
}

/* The output's text is its earlier prompts, then (joined by a line break,
 * as engine_render_text joins them) the question: rendered apart, so the
 * question's offset is known without rendering anything twice. */
void ussd_output_pages(const struct engine *e, json_t *output, int page_octets, ussd_pages *out)
{
    char text[PAGE_RENDER_MAX];
    const char *state = json_string_value(json_object_get(output, "state"));
    const char *lang = json_string_value(json_object_get(output, "lang"));
    size_t n = json_array_size(json_object_get(output, "prompts"));
    size_t len, block;
    if (state && strcmp(state, "wait") == 0 && n > 1) {
        len = block = render_prompts(e, output, 0, n - 1, text, sizeof text - 1);
        char *question = text + len + (len > 0);
        size_t qlen = render_prompts(e, output, n - 1, n, question, sizeof text - (size_t)(question - text));
        if (len > 0 && qlen > 0) {
            text[len] = '\n';
            block = len + 1;
        } else if (len == 0) {
            memmove(text, question, qlen + 1);
        }
    } else {
        len = block = engine_render_text(e, output, CHANNEL_USSD, text, sizeof text);
    }
    ussd_paginate(text, block, lang ? lang : "zh", page_octets, out);
}
