/* audio — owns the prompt audio of one dialplan set: the list of files it
 * needs (each literal piece of each voice wording, and the words values are
 * said with), those files loaded once into both G.711 laws, the silence
 * clips, and turning one prompt with its values into a list of clips.
 *
 * Files are held in an array sorted by relative path, so the same path is
 * loaded once however many prompts use it and a lookup is a binary search.
 * How values are said, per language (zh, en; any other language has no
 * words, its values are skipped):
 *   digits, id, card, phone, ref  each digit or letter, a pause for anything
 *                            between them (dp_text.c gives groups: a mobile
 *                            3-4-4, a reference in fours, "A...0001"); zh
 *                            says 1 as 幺 here, as phone numbers are read;
 *                            a masked number's tail after "尾号" / "the number
 *                            ending" (the piece's `ending`)
 *   number                   words up to 99,999,999 (zh 二千零二十六, en two
 *                            thousand twenty six), larger ones digit by digit;
 *                            a fraction is said "point" and its digits
 *   amount "12.50"           zh 十二元五角 (角 and 分 only when not zero), en
 *                            twelve point five zero yuan ("point" only when
 *                            the fraction is not zero)
 *   date "2026-11-29"        zh 二零二六年十一月二十九日, en November twenty
 *                            nine two thousand twenty six (cardinal day, the
 *                            year as a number)
 *   text                     spelled when it is only letters and digits (a
 *                            reference such as GS7K2Q), otherwise given to
 *                            the caller's value function (speech.h says it)
 * A value that is not in the form its rendering expects is spelled. */
#include "audio.h"

#include "dialplan.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <sndfile.h>
#include <spandsp/telephony.h>
#include <spandsp/bit_operations.h>
#include <spandsp/g711.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define AUDIO_RATE 8000
#define AUDIO_MAX_SECONDS 60         /* a longer file is refused: prompts are short */
#define SILENCE_STEP_MS 20           /* one RTP packet */
#define SILENCE_MAX_MS 2000
#define SILENCE_STEPS (SILENCE_MAX_MS / SILENCE_STEP_MS)
#define SILENCE_SAMPLES (SILENCE_MAX_MS * AUDIO_RATE / 1000)
#define ALAW_SILENCE 0xD5
#define ULAW_SILENCE 0xFF
#define PATH_BYTES 256               /* "LANG/PROMPT.K.wav": names are at most 64 bytes */
#define MAX_WORDS 320                /* a value is at most 255 bytes: one word or pause each, and "ending" */
#define NUMBER_DIGITS 8              /* up to 99,999,999 in words, longer digit by digit */

typedef struct {
    char *path;              /* relative to the audio directories: "zh/welcome.0.wav" */
    voice_clip clip;         /* its audio; no samples when missing or unusable */
    uint8_t *data;           /* A-law then µ-law samples, one allocation */
} audio_file;

struct voice_audio {
    int refs;                /* voice_audio_ref/unref */
    struct dialplan *dp;     /* the set the files were listed from (a reference) */
    audio_file *files;       /* sorted by path, no duplicates */
    size_t n_files;
    voice_audio_stats stats; /* computed at load */
    voice_clip silence[SILENCE_STEPS + 1]; /* 0, 20, ... 2000 ms, over the buffers below */
    uint8_t silence_pcma[SILENCE_SAMPLES];
    uint8_t silence_pcmu[SILENCE_SAMPLES];
};

/* Words -------------------------------------------------------------------*/

/* A word is said by the file "LANG/say/KEY.wav", which says `text`. */
typedef struct {
    const char *key;
    const char *text;
} say_word;

static const say_word zh_words[] = {
    {"0", "零"},    {"1", "一"},    {"2", "二"},    {"3", "三"},     {"4", "四"},   {"5", "五"},
    {"6", "六"},    {"7", "七"},    {"8", "八"},    {"9", "九"},     {"yao", "幺"}, {"shi", "十"},
    {"bai", "百"},  {"qian", "千"}, {"wan", "万"},  {"nian", "年"},  {"yue", "月"}, {"ri", "日"},
    {"yuan", "元"}, {"jiao", "角"}, {"fen", "分"},  {"dian", "点"},  {"fu", "负"},
};

static const say_word en_words[] = {
    {"0", "zero"},         {"1", "one"},          {"2", "two"},          {"3", "three"},
    {"4", "four"},         {"5", "five"},         {"6", "six"},          {"7", "seven"},
    {"8", "eight"},        {"9", "nine"},         {"10", "ten"},         {"11", "eleven"},
    {"12", "twelve"},      {"13", "thirteen"},    {"14", "fourteen"},    {"15", "fifteen"},
    {"16", "sixteen"},     {"17", "seventeen"},   {"18", "eighteen"},    {"19", "nineteen"},
    {"20", "twenty"},      {"30", "thirty"},      {"40", "forty"},       {"50", "fifty"},
    {"60", "sixty"},       {"70", "seventy"},     {"80", "eighty"},      {"90", "ninety"},
    {"hundred", "hundred"}, {"thousand", "thousand"}, {"million", "million"},
    {"january", "January"}, {"february", "February"}, {"march", "March"}, {"april", "April"},
    {"may", "May"},        {"june", "June"},      {"july", "July"},      {"august", "August"},
    {"september", "September"}, {"october", "October"}, {"november", "November"},
    {"december", "December"}, {"yuan", "yuan"},   {"point", "point"},    {"minus", "minus"},
};

/* Both languages say a letter by its name; the file and its text are the letter. */
static const char *const letters[] = {"A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M",
                                      "N", "O", "P", "Q", "R", "S", "T", "U", "V", "W", "X", "Y", "Z"};

/* Keys of the numbers that have a word of their own (en up to 19, the tens). */
static const char *const small[] = {"0",  "1",  "2",  "3",  "4",  "5",  "6",  "7",  "8",  "9",
                                    "10", "11", "12", "13", "14", "15", "16", "17", "18", "19"};
static const char *const tens[] = {NULL, NULL, "20", "30", "40", "50", "60", "70", "80", "90"};
static const char *const months[] = {"january", "february", "march",     "april",   "may",      "june",
                                     "july",    "august",   "september", "october", "november", "december"};

typedef enum { LANG_OTHER, LANG_ZH, LANG_EN } lang_kind;

static lang_kind lang_of(const char *lang)
{
    return !strcmp(lang, "zh") ? LANG_ZH : !strcmp(lang, "en") ? LANG_EN : LANG_OTHER;
}

/* The word keys a value becomes, in order. */
typedef struct {
    const char *w[MAX_WORDS];
    size_t n;
} words;

static void push(words *w, const char *key)
{
    if (w->n < MAX_WORDS)
        w->w[w->n++] = key;
}

/* The pause between groups of a spelled value: a key with no file. */
#define PAUSE ""
#define PAUSE_MS 200

/* Each digit and letter of `s`; anything else between them is one pause
 * (groups: "138 0000 0002", "010-12333", "A...0001"). `phone`: zh says 1
 * as 幺, the way numbers are read out, rather than 一 of quantities. */
static void spell(words *w, lang_kind lk, const char *s, size_t len, bool phone)
{
    bool gap = false, said = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c)) {
            gap = said;
            continue;
        }
        if (gap)
            push(w, PAUSE);
        gap = false;
        said = true;
        if (isdigit(c))
            push(w, lk == LANG_ZH && phone && c == '1' ? "yao" : small[c - '0']);
        else
            push(w, letters[toupper(c) - 'A']);
    }
}

/* 1..9999 in zh: a digit and its unit per non-zero place, one 零 for any
 * run of zeros before a non-zero place; `leading`: 10-19 start with 十,
 * not 一十. */
static void zh_below_10000(words *w, unsigned long n, bool leading)
{
    static const char *const units[] = {NULL, "shi", "bai", "qian"};
    static const unsigned long place[] = {1, 10, 100, 1000};
    bool started = false, zero = false;
    for (int p = 3; p >= 0; p--) {
        unsigned long d = n / place[p] % 10;
        if (d == 0) {
            zero = started;
            continue;
        }
        if (zero)
            push(w, "0");
        zero = false;
        if (!(p == 1 && d == 1 && leading && !started))
            push(w, small[d]);
        if (units[p])
            push(w, units[p]);
        started = true;
    }
}

static void zh_number(words *w, unsigned long n)
{
    unsigned long high = n / 10000, low = n % 10000;
    if (n == 0) {
        push(w, "0");
        return;
    }
    if (high) {
        zh_below_10000(w, high, true);
        push(w, "wan");
        if (low && low < 1000)
            push(w, "0");
    }
    if (low)
        zh_below_10000(w, low, !high);
}

static void en_below_1000(words *w, unsigned long n)
{
    if (n >= 100) {
        push(w, small[n / 100]);
        push(w, "hundred");
        n %= 100;
        if (n == 0)
            return;
    }
    if (n < 20) {
        push(w, small[n]);
        return;
    }
    push(w, tens[n / 10]);
    if (n % 10)
        push(w, small[n % 10]);
}

static void en_number(words *w, unsigned long n)
{
    if (n == 0) {
        push(w, "0");
        return;
    }
    if (n >= 1000000) {
        en_below_1000(w, n / 1000000);
        push(w, "million");
    }
    if (n / 1000 % 1000) {
        en_below_1000(w, n / 1000 % 1000);
        push(w, "thousand");
    }
    if (n % 1000)
        en_below_1000(w, n % 1000);
}

static bool all_digits(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return len > 0;
}

/* A whole number in words, or digit by digit beyond NUMBER_MAX. */
static void say_whole(words *w, lang_kind lk, const char *s, size_t len)
{
    while (len > 1 && s[0] == '0')
        s++, len--;
    if (len > NUMBER_DIGITS) {
        spell(w, lk, s, len, false);
        return;
    }
    unsigned long n = strtoul(s, NULL, 10);
    if (lk == LANG_ZH)
        zh_number(w, n);
    else
        en_number(w, n);
}

/* "-12.5": sign, whole part, fraction digit by digit after "point". */
static void say_number(words *w, lang_kind lk, const char *s)
{
    bool minus = s[0] == '-';
    const char *digits = s + minus;
    const char *dot = strchr(digits, '.');
    size_t ilen = dot ? (size_t)(dot - digits) : strlen(digits);
    if (!all_digits(digits, ilen) || (dot && !all_digits(dot + 1, strlen(dot + 1)))) {
        spell(w, lk, s, strlen(s), true);
        return;
    }
    if (minus)
        push(w, lk == LANG_ZH ? "fu" : "minus");
    say_whole(w, lk, digits, ilen);
    if (dot) {
        push(w, lk == LANG_ZH ? "dian" : "point");
        spell(w, lk, dot + 1, strlen(dot + 1), false);
    }
}

/* "12.50" (dp_text.c gives amounts two decimals); any other form is said
 * as a number. */
static void say_amount(words *w, lang_kind lk, const char *s)
{
    bool minus = s[0] == '-';
    const char *digits = s + minus;
    const char *dot = strchr(digits, '.');
    if (!dot || strlen(dot) != 3 || !all_digits(dot + 1, 2) || !all_digits(digits, (size_t)(dot - digits))) {
        say_number(w, lk, s);
        return;
    }
    size_t ilen = (size_t)(dot - digits);
    int jiao = dot[1] - '0', fen = dot[2] - '0';
    bool whole = strspn(digits, "0") < ilen;
    if (minus)
        push(w, lk == LANG_ZH ? "fu" : "minus");
    if (lk == LANG_EN) {
        say_whole(w, lk, digits, ilen);
        if (jiao || fen) {
            push(w, "point");
            spell(w, lk, dot + 1, 2, false);
        }
        push(w, "yuan");
        return;
    }
    if (whole || (!jiao && !fen)) {
        say_whole(w, lk, digits, ilen);
        push(w, "yuan");
    }
    if (jiao) {
        push(w, small[jiao]);
        push(w, "jiao");
    } else if (fen && whole) {
        push(w, "0");
    }
    if (fen) {
        push(w, small[fen]);
        push(w, "fen");
    }
}

/* "2026-11-29"; anything else is spelled. */
static void say_date(words *w, lang_kind lk, const char *s)
{
    int m = 0, d = 0;
    bool ok = strlen(s) == 10 && s[4] == '-' && s[7] == '-' && all_digits(s, 4) && all_digits(s + 5, 2) &&
              all_digits(s + 8, 2);
    if (ok) {
        m = (s[5] - '0') * 10 + (s[6] - '0');
        d = (s[8] - '0') * 10 + (s[9] - '0');
        ok = m >= 1 && m <= 12 && d >= 1 && d <= 31;
    }
    if (!ok) {
        spell(w, lk, s, strlen(s), true);
        return;
    }
    if (lk == LANG_ZH) {
        spell(w, lk, s, 4, false);
        push(w, "nian");
        zh_number(w, (unsigned long)m);
        push(w, "yue");
        zh_number(w, (unsigned long)d);
        push(w, "ri");
        return;
    }
    push(w, months[m - 1]);
    en_number(w, (unsigned long)d);
    say_whole(w, lk, s, 4);
}

static bool alnum_only(const char *s)
{
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p))
            return false;
    return *s != '\0';
}

/* A value's words; a masked number's tail (`ending`) after the word
 * dialplan_ending_word gives ("尾号", "the number ending"). */
static void say_value(words *w, lang_kind lk, const dp_piece *piece)
{
    const char *value = piece->text;
    if (lk == LANG_OTHER || !*value)
        return;
    if (piece->ending)
        push(w, "ending");
    switch (piece->render) {
    case DP_RENDER_NUMBER:
        say_number(w, lk, value);
        return;
    case DP_RENDER_AMOUNT:
        say_amount(w, lk, value);
        return;
    case DP_RENDER_DATE:
        say_date(w, lk, value);
        return;
    case DP_RENDER_TEXT:
        if (alnum_only(value))
            spell(w, lk, value, strlen(value), true);
        return;
    default:
        spell(w, lk, value, strlen(value), true);
        return;
    }
}

/* Literal pieces ----------------------------------------------------------*/

/* Next code point of UTF-8 `s`, advancing it; malformed bytes count as one
 * code point each (they are not punctuation). */
static uint32_t next_code_point(const unsigned char **s)
{
    const unsigned char *p = *s;
    int extra = p[0] >= 0xF0 ? 3 : p[0] >= 0xE0 ? 2 : p[0] >= 0xC0 ? 1 : 0;
    uint32_t c = extra ? p[0] & (0x3F >> extra) : p[0];
    int i = 1;
    for (; i <= extra && (p[i] & 0xC0) == 0x80; i++)
        c = c << 6 | (p[i] & 0x3F);
    *s = p + i;
    return i == extra + 1 ? c : 0xFFFD;
}

static bool is_punctuation(uint32_t c)
{
    if (c < 0x80)
        return !isalnum((int)c);
    return (c >= 0x2000 && c <= 0x206F) || (c >= 0x3000 && c <= 0x303F) || (c >= 0xFF00 && c <= 0xFF0F) ||
           (c >= 0xFF1A && c <= 0xFF20) || (c >= 0xFF3B && c <= 0xFF40) || (c >= 0xFF5B && c <= 0xFF65);
}

/* A literal made only of spaces and punctuation ("。" after a value) has
 * nothing to say and gets no file; it still counts for K. */
static bool speakable(const char *text)
{
    const unsigned char *s = (const unsigned char *)text;
    while (*s)
        if (!is_punctuation(next_code_point(&s)))
            return true;
    return false;
}

static void literal_path(char *out, const char *lang, const char *id, size_t k)
{
    snprintf(out, PATH_BYTES, "%s/%s.%zu.wav", lang, id, k);
}

static void word_path(char *out, const char *lang, const char *key)
{
    snprintf(out, PATH_BYTES, "%s/say/%s.wav", lang, key);
}

/* The list of needed files ---------------------------------------------------*/

typedef struct {
    const struct dialplan *dp;
    const char *lang;
    const char *id;          /* prompt being listed */
    size_t literal;          /* literal pieces seen so far in it */
    voice_audio_need_fn *emit;
    void *arg;
} need_walk;

/* TSV carries the text: tabs and line ends become spaces. */
static void need_literal(const dp_piece *piece, void *arg)
{
    need_walk *nw = arg;
    if (piece->is_value)
        return;
    size_t k = nw->literal++;
    if (!speakable(piece->text))
        return;
    char path[PATH_BYTES];
    literal_path(path, nw->lang, nw->id, k);
    char *text = strdup(piece->text);
    if (!text)
        return;
    for (char *p = text; *p; p++)
        if (*p == '\t' || *p == '\n' || *p == '\r')
            *p = ' ';
    nw->emit(nw->lang, path, text, nw->arg);
    free(text);
}

static void need_prompt(const char *id, void *arg)
{
    need_walk *nw = arg;
    nw->id = id;
    nw->literal = 0;
    dialplan_render_pieces(nw->dp, nw->lang, CHANNEL_VOICE, id, NULL, need_literal, nw);
}

static void need_words(const char *lang, voice_audio_need_fn *emit, void *arg)
{
    lang_kind lk = lang_of(lang);
    if (lk == LANG_OTHER)
        return;
    const say_word *table = lk == LANG_ZH ? zh_words : en_words;
    size_t n = lk == LANG_ZH ? sizeof zh_words / sizeof *zh_words : sizeof en_words / sizeof *en_words;
    char path[PATH_BYTES];
    for (size_t i = 0; i < n; i++) {
        word_path(path, lang, table[i].key);
        emit(lang, path, table[i].text, arg);
    }
    for (size_t i = 0; i < sizeof letters / sizeof *letters; i++) {
        word_path(path, lang, letters[i]);
        emit(lang, path, letters[i], arg);
    }
    word_path(path, lang, "ending");
    emit(lang, path, dialplan_ending_word(lang), arg);
}

void voice_audio_needed(const struct dialplan *dp, voice_audio_need_fn *emit, void *arg)
{
    for (size_t i = 0; i < dialplan_language_count(dp); i++) {
        const char *lang = dialplan_language(dp, i);
        need_walk nw = {dp, lang, NULL, 0, emit, arg};
        dialplan_prompt_ids(dp, lang, need_prompt, &nw);
        need_words(lang, emit, arg);
    }
}

/* Loading --------------------------------------------------------------------*/

typedef struct {
    char **v;
    size_t n, cap;
    bool oom;
} path_list;

static void collect_path(const char *lang, const char *path, const char *text, void *arg)
{
    (void)lang, (void)text;
    path_list *l = arg;
    if (l->oom)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->oom = true;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(path)))
        l->oom = true;
    else
        l->n++;
}

static int path_order(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct {
    voice_audio_problem_fn *problem;
    void *arg;
} reporter;

static void report(const reporter *r, bool missing, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void report(const reporter *r, bool missing, const char *fmt, ...)
{
    char why[PATH_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (r->problem)
        r->problem(missing, why, r->arg);
}

typedef enum { READ_OK, READ_UNUSABLE, READ_NOMEM } read_result;

/* Reads `full` into `f` (8 kHz mono, at most AUDIO_MAX_SECONDS). */
static read_result read_file(audio_file *f, const char *full, const reporter *r)
{
    SF_INFO info = {0};
    SNDFILE *sf = sf_open(full, SFM_READ, &info);
    if (!sf) {
        report(r, false, "%s: unreadable (%s)", full, sf_strerror(NULL));
        return READ_UNUSABLE;
    }
    read_result res = READ_UNUSABLE;
    int16_t *pcm = NULL;
    if (info.samplerate != AUDIO_RATE || info.channels != 1) {
        report(r, false, "%s: %d Hz, %d channel%s, want %d mono", full, info.samplerate, info.channels,
               info.channels == 1 ? "" : "s", AUDIO_RATE);
    } else if (info.frames > (sf_count_t)AUDIO_MAX_SECONDS * AUDIO_RATE) {
        report(r, false, "%s: %lld s, at most %d", full, (long long)(info.frames / AUDIO_RATE), AUDIO_MAX_SECONDS);
    } else {
        size_t n = (size_t)info.frames;
        pcm = malloc((n ? n : 1) * sizeof *pcm);
        uint8_t *data = malloc(n ? 2 * n : 1);
        if (!pcm || !data) {
            free(data);
            res = READ_NOMEM;
        } else {
            n = (size_t)sf_readf_short(sf, pcm, (sf_count_t)n);
            for (size_t i = 0; i < n; i++) {
                data[i] = linear_to_alaw(pcm[i]);
                data[n + i] = linear_to_ulaw(pcm[i]);
            }
            f->data = data;
            f->clip = (voice_clip){data, data + n, n, NULL};
            res = READ_OK;
        }
    }
    free(pcm);
    sf_close(sf);
    return res;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* The recorded file when there is a usable one, else the generated one. */
static read_result load_file(audio_file *f, const char *generated_dir, const char *recorded_dir,
                             const reporter *r)
{
    char full[PATH_MAX];
    if (recorded_dir) {
        snprintf(full, sizeof full, "%s/%s", recorded_dir, f->path);
        if (exists(full)) {
            read_result res = read_file(f, full, r);
            if (res != READ_UNUSABLE)
                return res;
        }
    }
    snprintf(full, sizeof full, "%s/%s", generated_dir, f->path);
    if (!exists(full)) {
        report(r, true, "%s: missing", full);
        return READ_UNUSABLE;
    }
    return read_file(f, full, r);
}

static void init_silence(voice_audio *a)
{
    memset(a->silence_pcma, ALAW_SILENCE, sizeof a->silence_pcma);
    memset(a->silence_pcmu, ULAW_SILENCE, sizeof a->silence_pcmu);
    for (size_t i = 0; i <= SILENCE_STEPS; i++)
        a->silence[i] = (voice_clip){a->silence_pcma, a->silence_pcmu, i * SILENCE_STEP_MS * AUDIO_RATE / 1000, NULL};
}

/* Takes the sorted, deduplicated paths of `l` as the audio's files. */
static bool adopt_paths(voice_audio *a, path_list *l)
{
    qsort(l->v, l->n, sizeof *l->v, path_order);
    a->files = calloc(l->n ? l->n : 1, sizeof *a->files);
    if (!a->files)
        return false;
    for (size_t i = 0; i < l->n; i++) {
        if (a->n_files && !strcmp(a->files[a->n_files - 1].path, l->v[i]))
            free(l->v[i]);
        else
            a->files[a->n_files++].path = l->v[i];
        l->v[i] = NULL;
    }
    return true;
}

static void free_paths(path_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

voice_audio *voice_audio_load(const struct dialplan *dp, const char *generated_dir, const char *recorded_dir,
                              voice_audio_problem_fn *problem, void *arg)
{
    voice_audio *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->refs = 1;
    /* Holding a reference does not change the set; dialplan_ref only counts. */
    a->dp = dialplan_ref((struct dialplan *)dp);
    init_silence(a);

    path_list l = {0};
    voice_audio_needed(dp, collect_path, &l);
    bool ok = !l.oom && adopt_paths(a, &l);
    free_paths(&l);

    reporter r = {problem, arg};
    for (size_t i = 0; ok && i < a->n_files; i++) {
        audio_file *f = &a->files[i];
        read_result res = load_file(f, generated_dir, recorded_dir, &r);
        ok = res != READ_NOMEM;
        if (res == READ_OK) {
            a->stats.files++;
            a->stats.bytes += 2 * f->clip.samples;
        } else {
            a->stats.missing++;
        }
    }
    if (!ok) {
        voice_audio_unref(a);
        return NULL;
    }
    return a;
}

voice_audio *voice_audio_ref(voice_audio *a)
{
    a->refs++;
    return a;
}

void voice_audio_unref(voice_audio *a)
{
    if (!a || --a->refs > 0)
        return;
    for (size_t i = 0; i < a->n_files; i++) {
        free(a->files[i].path);
        free(a->files[i].data);
    }
    free(a->files);
    dialplan_unref(a->dp);
    free(a);
}

/* Saying ----------------------------------------------------------------------*/

static const voice_clip *find_clip(const voice_audio *a, const char *path)
{
    size_t lo = 0, hi = a->n_files;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(path, a->files[mid].path);
        if (c == 0)
            return a->files[mid].clip.samples ? &a->files[mid].clip : NULL;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

typedef struct {
    const voice_audio *a;
    const char *lang;        /* the language the set renders in (the default for an unknown one) */
    lang_kind lk;
    const char *id;
    size_t literal;          /* literal pieces seen so far */
    voice_audio_value_fn *value; /* says values that have no words, or NULL */
    void *value_arg;
    const voice_clip **out;
    size_t *n, max;
} say_walk;

static void append(say_walk *sw, const char *path)
{
    const voice_clip *c = find_clip(sw->a, path);
    if (c && *sw->n < sw->max)
        sw->out[(*sw->n)++] = c;
}

/* Free text (a bank's name, an address) has no words of ours: the value
 * function makes its clip, or it is skipped. */
static void say_unworded(say_walk *sw, const char *text)
{
    const voice_clip *c = sw->value ? sw->value(sw->lang, text, sw->value_arg) : NULL;
    if (c && *sw->n < sw->max)
        sw->out[(*sw->n)++] = c;
}

static void say_piece(const dp_piece *piece, void *arg)
{
    say_walk *sw = arg;
    char path[PATH_BYTES];
    if (!piece->is_value) {
        literal_path(path, sw->lang, sw->id, sw->literal++);
        append(sw, path);
        return;
    }
    words w = {.n = 0};
    say_value(&w, sw->lk, piece);
    if (w.n == 0 && piece->render == DP_RENDER_TEXT && speakable(piece->text)) {
        say_unworded(sw, piece->text);
        return;
    }
    for (size_t i = 0; i < w.n; i++) {
        if (!strcmp(w.w[i], PAUSE)) {
            if (*sw->n < sw->max)
                sw->out[(*sw->n)++] = voice_audio_silence(sw->a, PAUSE_MS);
            continue;
        }
        word_path(path, sw->lang, w.w[i]);
        append(sw, path);
    }
}

bool voice_audio_say_values(const voice_audio *a, const char *lang, const char *id, json_t *vars,
                            voice_audio_value_fn *value, void *value_arg, const voice_clip **out, size_t *n,
                            size_t max)
{
    const char *use = dialplan_has_language(a->dp, lang) ? lang : dialplan_language(a->dp, 0);
    say_walk sw = {a, use, lang_of(use), id, 0, value, value_arg, out, n, max};
    return dialplan_render_pieces(a->dp, use, CHANNEL_VOICE, id, vars, say_piece, &sw);
}

bool voice_audio_say(const voice_audio *a, const char *lang, const char *id, json_t *vars,
                     const voice_clip **out, size_t *n, size_t max)
{
    return voice_audio_say_values(a, lang, id, vars, NULL, NULL, out, n, max);
}

const voice_clip *voice_audio_silence(const voice_audio *a, int ms)
{
    if (ms < 0)
        ms = 0;
    if (ms > SILENCE_MAX_MS)
        ms = SILENCE_MAX_MS;
    return &a->silence[(ms + SILENCE_STEP_MS / 2) / SILENCE_STEP_MS];
}

void voice_audio_stats_get(const voice_audio *a, voice_audio_stats *out)
{
    *out = a->stats;
}
