/* Tests of voice/audio: the list of files a set needs, loading them
 * (generated, recorded, missing, unusable), the clips a prompt with values
 * becomes in each language, silence, figures and lifetime. Each test writes
 * a small dialplan set and WAV files into its own temporary directory; a
 * file's length (in samples) is unique, so a clip says which file it is. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <sndfile.h>
#include <spandsp/telephony.h>
#include <spandsp/bit_operations.h>
#include <spandsp/g711.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audio.h"
#include "dialplan.h"

static const char set_yaml[] =
    "settings:\n"
    "  languages: [zh, en]\n"
    "  values: { days: \"7\" }\n"
    "routes:\n"
    "  - { channel: voice, match: '^1$', flow: f }\n"
    "flows:\n"
    "  f:\n"
    "    nodes:\n"
    "      bye: { end: bye }\n"
    "prompts:\n"
    "  zh:\n"
    "    restarted: \"重新开始\"\n"
    "    unavailable: \"暂停服务\"\n"
    "    bye: { voice: \"再见\", text: \"再会\" }\n"
    "    card: \"尾号{c:card}。\"\n"
    "    num: \"共{n:number}天\"\n"
    "    days: \"有效期{days:number}天\"\n"
    "    when: \"有效至{d:date}\"\n"
    "    sum: \"金额{a:amount}\"\n"
    "    ref: \"编号{r}，银行{b}\"\n"
    "    ids: \"{p:phone}{i:id}{x:digits}\"\n"
    "    lines: \"第一行\\n第二行\"\n"
    "    two: \"{c:card}/{o:card}\"\n"
    "    grp: \"{r:ref}|{x:digits}|{p:phone}\"\n"
    "  en:\n"
    "    restarted: \"again\"\n"
    "    unavailable: \"down\"\n"
    "    bye: \"bye\"\n"
    "    card: \"ending {c:card}.\"\n"
    "    num: \"{n:number} days\"\n"
    "    days: \"valid {days:number} days\"\n"
    "    when: \"until {d:date}\"\n"
    "    sum: \"sum {a:amount}\"\n"
    "    ref: \"reference {r}, bank {b}\"\n"
    "    ids: \"{p:phone}{i:id}{x:digits}\"\n"
    "    lines: \"one\\ttwo\"\n"
    "    two: \"{c:card}/{o:card}\"\n"
    "    grp: \"{r:ref}|{x:digits}|{p:phone}\"\n";

/* Fixture ----------------------------------------------------------------*/

typedef struct {
    char *lang, *path, *text;
} need;

typedef struct {
    char dir[256];           /* the temporary directory */
    char gen[300], rec[300]; /* generated and recorded audio under it */
    dialplan *dp;
    need *needs;             /* what voice_audio_needed listed */
    size_t n_needs;
    char problems[64][400];  /* the first ones: "missing WHY" / "unusable WHY" */
    size_t n_problems;       /* all of them */
} fixture;

static const struct handler_def *no_handlers(const char *name)
{
    (void)name;
    return NULL;
}

static void mkdirs(const char *file)
{
    char p[512];
    snprintf(p, sizeof p, "%s", file);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            mkdir(p, 0755);
            *s = '/';
        }
}

/* `frames` frames of `value` on every channel. */
static void write_wav(const char *path, int rate, int channels, size_t frames, short value)
{
    mkdirs(path);
    SF_INFO info = {.samplerate = rate, .channels = channels, .format = SF_FORMAT_WAV | SF_FORMAT_PCM_16};
    SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
    assert_non_null(sf);
    short *buf = malloc(frames * (size_t)channels * sizeof *buf + 1);
    assert_non_null(buf);
    for (size_t i = 0; i < frames * (size_t)channels; i++)
        buf[i] = value;
    assert_int_equal(sf_writef_short(sf, buf, (sf_count_t)frames), (sf_count_t)frames);
    free(buf);
    sf_close(sf);
}

static void collect_need(const char *lang, const char *path, const char *text, void *arg)
{
    fixture *f = arg;
    f->needs = realloc(f->needs, (f->n_needs + 1) * sizeof *f->needs);
    assert_non_null(f->needs);
    f->needs[f->n_needs++] = (need){strdup(lang), strdup(path), strdup(text)};
}

static void collect_problem(bool missing, const char *why, void *arg)
{
    fixture *f = arg;
    if (f->n_problems < 64)
        snprintf(f->problems[f->n_problems], sizeof f->problems[0], "%s %s", missing ? "missing" : "unusable",
                 why);
    f->n_problems++;
}

/* The samples a generated file is written with: unique per file. */
static size_t length_of(size_t i)
{
    return 100 + i;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(f->dir, sizeof f->dir, "%s/cl-audio-XXXXXX", tmp);
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->gen, sizeof f->gen, "%s/gen", f->dir);
    snprintf(f->rec, sizeof f->rec, "%s/rec", f->dir);
    char dpdir[300], yaml[320];
    snprintf(dpdir, sizeof dpdir, "%s/dp", f->dir);
    snprintf(yaml, sizeof yaml, "%s/set.yaml", dpdir);
    mkdirs(yaml);
    FILE *y = fopen(yaml, "w");
    assert_non_null(y);
    fputs(set_yaml, y);
    fclose(y);
    dp_errors errs = {0};
    f->dp = dialplan_load(dpdir, no_handlers, &errs);
    for (size_t i = 0; i < errs.count; i++)
        print_message("%s\n", errs.lines[i]);
    dp_errors_free(&errs);
    assert_non_null(f->dp);
    voice_audio_needed(f->dp, collect_need, f);
    *state = f;
    return 0;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    fixture *f = *state;
    nftw(f->dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    for (size_t i = 0; i < f->n_needs; i++) {
        free(f->needs[i].lang);
        free(f->needs[i].path);
        free(f->needs[i].text);
    }
    free(f->needs);
    if (f->dp)
        dialplan_unref(f->dp);
    free(f);
    return 0;
}

static const need *find_need(const fixture *f, const char *path)
{
    for (size_t i = 0; i < f->n_needs; i++)
        if (!strcmp(f->needs[i].path, path))
            return &f->needs[i];
    return NULL;
}

static void file_in(char *out, size_t size, const char *dir, const char *rel)
{
    snprintf(out, size, "%s/%s", dir, rel);
}

/* Writes every needed file but those listed in `skip` (NULL-terminated). */
static void write_generated(fixture *f, const char *const *skip)
{
    for (size_t i = 0; i < f->n_needs; i++) {
        bool skipped = false;
        for (size_t j = 0; skip && skip[j]; j++)
            skipped |= !strcmp(skip[j], f->needs[i].path);
        if (skipped)
            continue;
        char p[512];
        file_in(p, sizeof p, f->gen, f->needs[i].path);
        write_wav(p, 8000, 1, length_of(i), (short)(1000 + i));
    }
}

static voice_audio *load(fixture *f, bool recorded)
{
    voice_audio *a = voice_audio_load(f->dp, f->gen, recorded ? f->rec : NULL, collect_problem, f);
    assert_non_null(a);
    return a;
}

/* What `id` says as the files' names without language and ".wav", e.g.
 * "card.0 say/yao say/2"; a clip of unknown length shows as "?N". */
static void say(const fixture *f, const voice_audio *a, const char *lang, const char *id, json_t *vars, char *out,
                size_t size)
{
    const voice_clip *clips[128];
    size_t n = 0;
    assert_true(voice_audio_say(a, lang, id, vars, clips, &n, 128));
    json_decref(vars);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        char name[128];
        snprintf(name, sizeof name, "?%zu", clips[i]->samples);
        if (clips[i]->pcma == voice_audio_silence(a, 0)->pcma)
            snprintf(name, sizeof name, "pause");
        for (size_t j = 0; j < f->n_needs; j++)
            if (length_of(j) == clips[i]->samples) {
                const char *p = f->needs[j].path + strlen(f->needs[j].lang) + 1;
                snprintf(name, sizeof name, "%.*s", (int)(strlen(p) - 4), p);
            }
        size_t len = strlen(out);
        snprintf(out + len, size - len, "%s%s", len ? " " : "", name);
    }
}

#define ASSERT_SAYS(f, a, lang, id, vars, expected)                                                          \
    do {                                                                                                     \
        char got_[2048];                                                                                     \
        say(f, a, lang, id, vars, got_, sizeof got_);                                                        \
        assert_string_equal(got_, expected);                                                                 \
    } while (0)

/* Listing -------------------------------------------------------------------*/

static void test_needed_lists_literal_pieces_and_words(void **state)
{
    fixture *f = *state;
    const need *n = find_need(f, "zh/bye.0.wav");
    assert_non_null(n);
    assert_string_equal(n->lang, "zh");
    assert_string_equal(n->text, "再见"); /* the voice wording, not the text one */
    assert_string_equal(find_need(f, "zh/card.0.wav")->text, "尾号");
    assert_null(find_need(f, "zh/card.1.wav")); /* "。" says nothing */
    assert_null(find_need(f, "en/card.1.wav"));
    assert_string_equal(find_need(f, "zh/num.0.wav")->text, "共");
    assert_string_equal(find_need(f, "zh/num.1.wav")->text, "天");
    assert_string_equal(find_need(f, "en/num.0.wav")->text, " days"); /* K counts literal pieces only */
    assert_null(find_need(f, "zh/ids.0.wav"));
    assert_string_equal(find_need(f, "zh/lines.0.wav")->text, "第一行 第二行");
    assert_string_equal(find_need(f, "en/lines.0.wav")->text, "one two");
    assert_string_equal(find_need(f, "zh/say/yao.wav")->text, "幺");
    assert_string_equal(find_need(f, "zh/say/1.wav")->text, "一");
    assert_string_equal(find_need(f, "zh/say/wan.wav")->text, "万");
    assert_string_equal(find_need(f, "zh/say/Z.wav")->text, "Z");
    assert_string_equal(find_need(f, "en/say/november.wav")->text, "November");
    assert_string_equal(find_need(f, "en/say/19.wav")->text, "nineteen");
    assert_string_equal(find_need(f, "en/say/90.wav")->text, "ninety");
    assert_null(find_need(f, "en/say/yao.wav"));
    assert_string_equal(find_need(f, "zh/say/ending.wav")->text, "尾号");
    assert_string_equal(find_need(f, "en/say/ending.wav")->text, "the number ending");
    for (size_t i = 0; i < f->n_needs; i++) {
        assert_null(strchr(f->needs[i].text, '\t'));
        assert_null(strchr(f->needs[i].text, '\n'));
        for (size_t j = i + 1; j < f->n_needs; j++)
            assert_string_not_equal(f->needs[i].path, f->needs[j].path);
    }
}

/* Saying -----------------------------------------------------------------------*/

static void test_say_literals_and_spelled_values(void **state)
{
    fixture *f = *state;
    write_generated(f, NULL);
    voice_audio *a = load(f, false);
    assert_int_equal(f->n_problems, 0);

    ASSERT_SAYS(f, a, "zh", "bye", NULL, "bye.0");
    ASSERT_SAYS(f, a, "en", "bye", NULL, "bye.0");
    /* A card's last four; zh reads 1 as 幺. */
    ASSERT_SAYS(f, a, "zh", "card", json_pack("{s:s}", "c", "A12341231"),
                "card.0 say/yao say/2 say/3 say/yao");
    ASSERT_SAYS(f, a, "en", "card", json_pack("{s:s}", "c", "A12341231"),
                "card.0 say/1 say/2 say/3 say/1");
    /* A phone's last four after "尾号", an ID's last four with its X, digits
     * as they are. */
    ASSERT_SAYS(f, a, "zh", "ids",
                json_pack("{s:s,s:s,s:s}", "p", "13800138000", "i", "11010119900307451X", "x", "12333"),
                "say/ending say/8 say/0 say/0 say/0 say/4 say/5 say/yao say/X "
                "say/yao say/2 say/3 say/3 say/3");
    /* Text: a reference is spelled, a bank's name has no audio. */
    ASSERT_SAYS(f, a, "zh", "ref", json_pack("{s:s,s:s}", "r", "GS7k2Q", "b", "工商银行"),
                "ref.0 say/G say/S say/7 say/K say/2 say/Q ref.1");
    ASSERT_SAYS(f, a, "en", "ref", json_pack("{s:s,s:s}", "r", "GS-7", "b", "ICBC"),
                "ref.0 ref.1 say/I say/C say/B say/C");
    /* Missing variables say nothing; a settings value fills its placeholder. */
    ASSERT_SAYS(f, a, "zh", "card", NULL, "card.0");
    ASSERT_SAYS(f, a, "zh", "days", NULL, "days.0 say/7 days.1");
    ASSERT_SAYS(f, a, "en", "days", NULL, "days.0 say/7 days.1");
    voice_audio_unref(a);
}

/* Numbers people read out come in groups with a pause between them: a
 * reference in fours, a mobile 3-4-4, a landline at its dash, old and new
 * cards ending alike by letter and last four. */
static void test_say_numbers_in_groups(void **state)
{
    fixture *f = *state;
    write_generated(f, NULL);
    voice_audio *a = load(f, false);
    ASSERT_SAYS(f, a, "zh", "grp",
                json_pack("{s:s,s:s,s:s}", "r", "GS1K7Q2M9X4P", "x", "13800000002", "p", "+8613912345678"),
                "say/G say/S say/yao say/K pause say/7 say/Q say/2 say/M pause say/9 say/X say/4 say/P "
                "say/yao say/3 say/8 pause say/0 say/0 say/0 say/0 pause say/0 say/0 say/0 say/2 "
                "say/ending say/5 say/6 say/7 say/8");
    ASSERT_SAYS(f, a, "en", "grp", json_pack("{s:s,s:s}", "r", "CB12", "x", "010-12333"),
                "say/C say/B say/1 say/2 say/0 say/1 say/0 pause say/1 say/2 say/3 say/3 say/3");
    ASSERT_SAYS(f, a, "en", "two", json_pack("{s:s,s:s}", "c", "A10000001", "o", "B20000001"),
                "say/A pause say/0 say/0 say/0 say/1 say/B pause say/0 say/0 say/0 say/1");
    ASSERT_SAYS(f, a, "en", "two", json_pack("{s:s,s:s}", "c", "A10000001", "o", "B20000002"),
                "say/0 say/0 say/0 say/1 say/0 say/0 say/0 say/2");
    voice_audio_unref(a);
}

/* The value function of voice_audio_say_values: what it saw, the clip it gives. */
typedef struct {
    char seen[256];          /* "LANG:TEXT" per call, joined by "|" */
    voice_clip clip;         /* handed out, 4242 samples */
    bool refuse;             /* give NULL */
} value_spy;

static const voice_clip *spy_value(const char *lang, const char *text, void *arg)
{
    value_spy *v = arg;
    size_t len = strlen(v->seen);
    snprintf(v->seen + len, sizeof v->seen - len, "%s%s:%s", len ? "|" : "", lang, text);
    return v->refuse ? NULL : &v->clip;
}

/* Free text without words goes to the value function, in its place among
 * the pieces; a reference is still spelled; refused, it is skipped. */
static void test_values_without_words_go_to_the_value_function(void **state)
{
    fixture *f = *state;
    write_generated(f, NULL);
    voice_audio *a = load(f, false);
    value_spy spy = {.clip = {NULL, NULL, 4242, NULL}};
    const voice_clip *clips[16];
    size_t n = 0;
    json_t *vars = json_pack("{s:s,s:s}", "r", "GS7K2Q", "b", "中国工商银行");
    assert_true(voice_audio_say_values(a, "en", "ref", vars, spy_value, &spy, clips, &n, 16));
    assert_string_equal(spy.seen, "en:中国工商银行");
    assert_int_equal(n, 9); /* ref.0, six letters and digits, ref.1, the value */
    assert_ptr_equal(clips[8], &spy.clip);
    assert_int_equal(clips[7]->samples, length_of((size_t)(find_need(f, "en/ref.1.wav") - f->needs)));
    spy = (value_spy){.refuse = true};
    n = 0;
    assert_true(voice_audio_say_values(a, "zh", "ref", vars, spy_value, &spy, clips, &n, 16));
    assert_string_equal(spy.seen, "zh:中国工商银行");
    assert_int_equal(n, 8);
    /* Punctuation alone says nothing and is not asked for. */
    spy = (value_spy){.seen = ""};
    n = 0;
    json_object_set_new(vars, "b", json_string("——"));
    assert_true(voice_audio_say_values(a, "zh", "ref", vars, spy_value, &spy, clips, &n, 16));
    assert_string_equal(spy.seen, "");
    json_decref(vars);
    voice_audio_unref(a);
}

static void test_say_numbers_in_words(void **state)
{
    fixture *f = *state;
    write_generated(f, NULL);
    voice_audio *a = load(f, false);
    static const struct {
        const char *lang, *n, *says;
    } cases[] = {
        {"zh", "0", "say/0"},
        {"zh", "7", "say/7"},
        {"zh", "10", "say/shi"},
        {"zh", "15", "say/shi say/5"},
        {"zh", "20", "say/2 say/shi"},
        {"zh", "105", "say/1 say/bai say/0 say/5"},
        {"zh", "110", "say/1 say/bai say/1 say/shi"},
        {"zh", "2026", "say/2 say/qian say/0 say/2 say/shi say/6"},
        {"zh", "10000", "say/1 say/wan"},
        {"zh", "100010", "say/shi say/wan say/0 say/1 say/shi"},
        {"zh", "10500", "say/1 say/wan say/0 say/5 say/bai"},
        {"zh", "20000000", "say/2 say/qian say/wan"},
        {"zh", "1002003", "say/1 say/bai say/wan say/2 say/qian say/0 say/3"},
        {"zh", "99999999",
         "say/9 say/qian say/9 say/bai say/9 say/shi say/9 say/wan say/9 say/qian say/9 say/bai say/9 say/shi say/9"},
        {"zh", "123456789", "say/1 say/2 say/3 say/4 say/5 say/6 say/7 say/8 say/9"},
        {"zh", "007", "say/7"},
        {"zh", "-3", "say/fu say/3"},
        {"zh", "1.5", "say/1 say/dian say/5"},
        {"zh", "many", "say/M say/A say/N say/Y"},
        {"en", "0", "say/0"},
        {"en", "13", "say/13"},
        {"en", "40", "say/40"},
        {"en", "42", "say/40 say/2"},
        {"en", "115", "say/1 say/hundred say/15"},
        {"en", "2026", "say/2 say/thousand say/20 say/6"},
        {"en", "1000000", "say/1 say/million"},
        {"en", "12345678", "say/12 say/million say/3 say/hundred say/40 say/5 say/thousand say/6 say/hundred "
                           "say/70 say/8"},
        {"en", "-1.25", "say/minus say/1 say/point say/2 say/5"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char expected[512];
        snprintf(expected, sizeof expected, "%s%s num.1", !strcmp(cases[i].lang, "zh") ? "num.0 " : "",
                 cases[i].says);
        if (!strcmp(cases[i].lang, "en"))
            snprintf(expected, sizeof expected, "%s num.0", cases[i].says);
        ASSERT_SAYS(f, a, cases[i].lang, "num", json_pack("{s:s}", "n", cases[i].n), expected);
    }
    /* A JSON integer is a number too. */
    ASSERT_SAYS(f, a, "en", "num", json_pack("{s:i}", "n", 21), "say/20 say/1 num.0");
    voice_audio_unref(a);
}

static void test_say_dates_and_amounts(void **state)
{
    fixture *f = *state;
    write_generated(f, NULL);
    voice_audio *a = load(f, false);
    ASSERT_SAYS(f, a, "zh", "when", json_pack("{s:s}", "d", "2026-11-29"),
                "when.0 say/2 say/0 say/2 say/6 say/nian say/shi say/1 say/yue say/2 say/shi say/9 say/ri");
    ASSERT_SAYS(f, a, "zh", "when", json_pack("{s:s}", "d", "2031-01-10"),
                "when.0 say/2 say/0 say/3 say/1 say/nian say/1 say/yue say/shi say/ri");
    ASSERT_SAYS(f, a, "en", "when", json_pack("{s:s}", "d", "2026-11-29"),
                "when.0 say/november say/20 say/9 say/2 say/thousand say/20 say/6");
    /* Not a date: spelled, a pause at each dash. */
    ASSERT_SAYS(f, a, "zh", "when", json_pack("{s:s}", "d", "2026-13-01"),
                "when.0 say/2 say/0 say/2 say/6 pause say/yao say/3 pause say/0 say/yao");

    ASSERT_SAYS(f, a, "zh", "sum", json_pack("{s:f}", "a", 12.5), "sum.0 say/shi say/2 say/yuan say/5 say/jiao");
    ASSERT_SAYS(f, a, "zh", "sum", json_pack("{s:s}", "a", "12.05"),
                "sum.0 say/shi say/2 say/yuan say/0 say/5 say/fen");
    ASSERT_SAYS(f, a, "zh", "sum", json_pack("{s:s}", "a", "0.56"), "sum.0 say/5 say/jiao say/6 say/fen");
    ASSERT_SAYS(f, a, "zh", "sum", json_pack("{s:s}", "a", "300"), "sum.0 say/3 say/bai say/yuan");
    ASSERT_SAYS(f, a, "zh", "sum", json_pack("{s:s}", "a", "0"), "sum.0 say/0 say/yuan");
    ASSERT_SAYS(f, a, "en", "sum", json_pack("{s:s}", "a", "12.5"),
                "sum.0 say/12 say/point say/5 say/0 say/yuan");
    ASSERT_SAYS(f, a, "en", "sum", json_pack("{s:s}", "a", "-3"), "sum.0 say/minus say/3 say/yuan");
    voice_audio_unref(a);
}

static void test_say_unknown_prompt_language_and_room(void **state)
{
    fixture *f = *state;
    write_generated(f, NULL);
    voice_audio *a = load(f, false);
    const voice_clip *clips[2];
    size_t n = 0;
    assert_false(voice_audio_say(a, "zh", "nowhere", NULL, clips, &n, 2));
    assert_int_equal(n, 0);
    /* An unknown language is the default one, as the text renders it. */
    ASSERT_SAYS(f, a, "fr", "bye", NULL, "bye.0");
    /* Clips are appended after what is there, never past `max`. */
    n = 1;
    clips[0] = voice_audio_silence(a, 100);
    json_t *vars = json_pack("{s:s}", "d", "2026-11-29");
    assert_true(voice_audio_say(a, "zh", "when", vars, clips, &n, 2));
    json_decref(vars);
    assert_int_equal(n, 2);
    assert_int_equal(clips[0]->samples, 800);
    assert_int_equal(clips[1]->samples, length_of((size_t)(find_need(f, "zh/when.0.wav") - f->needs)));
    voice_audio_unref(a);
}

/* Loading --------------------------------------------------------------------------*/

static void test_g711_of_both_laws(void **state)
{
    fixture *f = *state;
    write_generated(f, NULL);
    voice_audio *a = load(f, false);
    const voice_clip *clips[4];
    size_t n = 0;
    assert_true(voice_audio_say(a, "zh", "bye", NULL, clips, &n, 4));
    assert_int_equal(n, 1);
    size_t i = (size_t)(find_need(f, "zh/bye.0.wav") - f->needs);
    short v = (short)(1000 + i);
    assert_int_equal(clips[0]->samples, length_of(i));
    for (size_t s = 0; s < clips[0]->samples; s++) {
        assert_int_equal(clips[0]->pcma[s], linear_to_alaw(v));
        assert_int_equal(clips[0]->pcmu[s], linear_to_ulaw(v));
    }
    voice_audio_stats st;
    voice_audio_stats_get(a, &st);
    size_t bytes = 0;
    for (size_t j = 0; j < f->n_needs; j++)
        bytes += 2 * length_of(j);
    assert_int_equal(st.files, f->n_needs);
    assert_int_equal(st.missing, 0);
    assert_int_equal(st.bytes, bytes);
    voice_audio_unref(a);
}

static void test_missing_files_reported_and_skipped(void **state)
{
    fixture *f = *state;
    static const char *const skip[] = {"zh/say/2.wav", "zh/card.0.wav", "en/bye.0.wav", NULL};
    write_generated(f, skip);
    voice_audio *a = load(f, false);
    assert_int_equal(f->n_problems, 3);
    for (size_t i = 0; i < 3; i++) {
        char expected[512];
        snprintf(expected, sizeof expected, "missing %s/%s: missing", f->gen, skip[i]);
        bool seen = false;
        for (size_t j = 0; j < f->n_problems; j++)
            seen |= !strcmp(f->problems[j], expected);
        if (!seen)
            print_message("not reported: %s\n", expected);
        assert_true(seen);
    }
    ASSERT_SAYS(f, a, "zh", "card", json_pack("{s:s}", "c", "A12341231"), "say/yao say/3 say/yao");
    ASSERT_SAYS(f, a, "en", "bye", NULL, "");
    voice_audio_stats st;
    voice_audio_stats_get(a, &st);
    assert_int_equal(st.files, f->n_needs - 3);
    assert_int_equal(st.missing, 3);
    voice_audio_unref(a);
}

static void test_unusable_files_reported(void **state)
{
    fixture *f = *state;
    static const char *const skip[] = {"zh/bye.0.wav", "en/bye.0.wav", "zh/say/0.wav", "zh/say/1.wav", NULL};
    write_generated(f, skip);
    char p[512];
    file_in(p, sizeof p, f->gen, "zh/bye.0.wav");
    write_wav(p, 16000, 1, 320, 5);
    file_in(p, sizeof p, f->gen, "en/bye.0.wav");
    write_wav(p, 8000, 2, 160, 5);
    file_in(p, sizeof p, f->gen, "zh/say/0.wav");
    write_wav(p, 8000, 1, 61 * 8000, 5);
    file_in(p, sizeof p, f->gen, "zh/say/1.wav");
    FILE *junk = fopen(p, "w");
    assert_non_null(junk);
    fputs("not audio", junk);
    fclose(junk);

    voice_audio *a = load(f, false);
    assert_int_equal(f->n_problems, 4);
    static const char *const why[] = {"zh/bye.0.wav: 16000 Hz, 1 channel, want 8000 mono",
                                      "en/bye.0.wav: 8000 Hz, 2 channels, want 8000 mono",
                                      "zh/say/0.wav: 61 s, at most 60", "zh/say/1.wav: unreadable"};
    for (size_t i = 0; i < 4; i++) {
        bool seen = false;
        for (size_t j = 0; j < f->n_problems; j++)
            seen |= !strncmp(f->problems[j], "unusable ", 9) && strstr(f->problems[j], why[i]) != NULL;
        if (!seen)
            print_message("not reported: %s\n", why[i]);
        assert_true(seen);
    }
    ASSERT_SAYS(f, a, "zh", "bye", NULL, "");
    voice_audio_stats st;
    voice_audio_stats_get(a, &st);
    assert_int_equal(st.missing, 4);
    voice_audio_unref(a);
}

static void test_recorded_file_overrides_generated(void **state)
{
    fixture *f = *state;
    write_generated(f, NULL);
    char p[512];
    file_in(p, sizeof p, f->rec, "zh/bye.0.wav");
    write_wav(p, 8000, 1, 4000, 7);
    file_in(p, sizeof p, f->rec, "en/bye.0.wav");
    write_wav(p, 22050, 1, 4000, 7); /* unusable: the generated one stands in */
    voice_audio *a = load(f, true);
    assert_int_equal(f->n_problems, 1);
    assert_non_null(strstr(f->problems[0], "rec/en/bye.0.wav: 22050 Hz"));
    ASSERT_SAYS(f, a, "zh", "bye", NULL, "?4000");
    ASSERT_SAYS(f, a, "en", "bye", NULL, "bye.0");
    ASSERT_SAYS(f, a, "zh", "num", json_pack("{s:i}", "n", 3), "num.0 say/3 num.1");
    voice_audio_unref(a);
}

/* Silence, figures, lifetime --------------------------------------------------------*/

static void test_silence_clips(void **state)
{
    fixture *f = *state;
    voice_audio *a = load(f, false); /* nothing written: every file is missing */
    assert_int_equal(f->n_problems, f->n_needs);
    static const struct {
        int ms;
        size_t samples;
    } cases[] = {{0, 0}, {-5, 0}, {9, 0}, {10, 160}, {20, 160}, {30, 320}, {500, 4000}, {2000, 16000}, {9000, 16000}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const voice_clip *c = voice_audio_silence(a, cases[i].ms);
        assert_non_null(c);
        assert_int_equal(c->samples, cases[i].samples);
    }
    const voice_clip *c = voice_audio_silence(a, 2000);
    for (size_t s = 0; s < c->samples; s++) {
        assert_int_equal(c->pcma[s], 0xD5);
        assert_int_equal(c->pcmu[s], 0xFF);
    }
    assert_ptr_equal(voice_audio_silence(a, 40)->pcma, c->pcma); /* one shared buffer */
    voice_audio_stats st;
    voice_audio_stats_get(a, &st);
    assert_int_equal(st.files, 0);
    assert_int_equal(st.missing, f->n_needs);
    assert_int_equal(st.bytes, 0);
    ASSERT_SAYS(f, a, "zh", "num", json_pack("{s:i}", "n", 3), "");
    voice_audio_unref(a);
}

static void test_references_keep_audio_and_set(void **state)
{
    fixture *f = *state;
    write_generated(f, NULL);
    voice_audio *a = load(f, false);
    /* The audio holds the set: the caller's reference may go first. */
    dialplan_unref(f->dp);
    f->dp = NULL;
    assert_ptr_equal(voice_audio_ref(a), a);
    voice_audio_unref(a);
    ASSERT_SAYS(f, a, "en", "num", json_pack("{s:i}", "n", 3), "say/3 num.0");
    voice_audio_unref(a);
    voice_audio_unref(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_needed_lists_literal_pieces_and_words, setup, teardown),
        cmocka_unit_test_setup_teardown(test_say_literals_and_spelled_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_say_numbers_in_groups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_values_without_words_go_to_the_value_function, setup, teardown),
        cmocka_unit_test_setup_teardown(test_say_numbers_in_words, setup, teardown),
        cmocka_unit_test_setup_teardown(test_say_dates_and_amounts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_say_unknown_prompt_language_and_room, setup, teardown),
        cmocka_unit_test_setup_teardown(test_g711_of_both_laws, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_files_reported_and_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unusable_files_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recorded_file_overrides_generated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silence_clips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_references_keep_audio_and_set, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
