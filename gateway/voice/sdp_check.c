/* sdp_check — sizes and RFC 4566 grammar of an SDP body (see sdp_check.h).
 * Owns the compiled pattern, built once on first use. The grammar is
 * section 9's ABNF written as one anchored pattern; every repetition is
 * possessive and every field starts with its own letter, so a match never
 * backtracks across lines, and the match context caps the work anyway.
 * Records may end in CRLF or a bare LF (section 5 asks parsers to accept
 * both); the last may end the body without one. */
#include "sdp_check.h"

#include <pthread.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#define MATCH_LIMIT 200000         /* PCRE2 backtracking steps for one body */
#define HEAP_LIMIT_KIB 256         /* PCRE2 heap for one match */

/* RFC 4566 section 9, piece by piece. */
#define EOL "(?:\\r?\\n|\\z)"
#define SP " "
#define TOKEN "[\\x21\\x23-\\x27\\x2A\\x2B\\x2D\\x2E\\x30-\\x39\\x41-\\x5A\\x5E-\\x7E]++"
#define TEXT "[\\x01-\\x09\\x0B\\x0C\\x0E-\\xFF]++"        /* byte-string */
#define NON_WS "[\\x21-\\xFF]++"                           /* non-ws-string */
#define DIGITS "[0-9]++"
#define TIME "(?:0|[1-9][0-9]{9,19})"
#define TYPED_TIME "[0-9]++[dhms]?+"
#define ORIGIN "o=" NON_WS SP DIGITS SP DIGITS SP TOKEN SP TOKEN SP NON_WS EOL
#define CONNECTION "c=" TOKEN SP TOKEN SP NON_WS EOL
#define BANDWIDTH "b=" TOKEN ":" DIGITS EOL
#define TIMING "t=" TIME SP TIME EOL \
    "(?:r=[1-9][0-9]*+[dhms]?+(?:" SP TYPED_TIME ")++" EOL ")*+"
#define ZONES "z=" TIME SP "-?" TYPED_TIME "(?:" SP TIME SP "-?" TYPED_TIME ")*+" EOL
#define KEY "k=(?:prompt|clear:" TEXT "|base64:[A-Za-z0-9+/=]++|uri:" NON_WS ")" EOL
#define ATTRIBUTE "a=" TOKEN "(?::" TEXT ")?+" EOL
#define MEDIA "m=" TOKEN SP DIGITS "(?:/" DIGITS ")?+" SP TOKEN "(?:/" TOKEN ")*+" \
    "(?:" SP TOKEN ")++" EOL
#define MEDIA_SECTION MEDIA "(?:i=" TEXT EOL ")?+(?:" CONNECTION ")*+(?:" BANDWIDTH ")*+" \
    "(?:" KEY ")?+(?:" ATTRIBUTE ")*+"

static const char session_pattern[] =
    "\\Av=0" EOL ORIGIN "s=" TEXT EOL
    "(?:i=" TEXT EOL ")?+"
    "(?:u=" NON_WS EOL ")?+"
    "(?:e=" TEXT EOL ")*+"
    "(?:p=" TEXT EOL ")*+"
    "(?:" CONNECTION ")?+"
    "(?:" BANDWIDTH ")*+"
    "(?:" TIMING ")++"
    "(?:" ZONES ")?+"
    "(?:" KEY ")?+"
    "(?:" ATTRIBUTE ")*+"
    "(?:" MEDIA_SECTION ")*+"
    "\\z";

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pcre2_code *pattern;            /* the grammar, or NULL if it failed to compile */
static pcre2_match_context *limits;    /* MATCH_LIMIT and HEAP_LIMIT_KIB; read-only once built */

static void compile_pattern(void)
{
    int err;
    PCRE2_SIZE offset;
    pattern = pcre2_compile((PCRE2_SPTR)session_pattern, PCRE2_ZERO_TERMINATED, PCRE2_NEVER_UTF,
                            &err, &offset, NULL);
    limits = pcre2_match_context_create(NULL);
    if (pattern == NULL || limits == NULL)
        return;
    pcre2_jit_compile(pattern, PCRE2_JIT_COMPLETE); /* optional: the interpreter is the fallback */
    pcre2_set_match_limit(limits, MATCH_LIMIT);
    pcre2_set_heap_limit(limits, HEAP_LIMIT_KIB);
}

/* The size checks, in one pass over the lines; NULL when all hold. */
static const char *size_problem(const char *body, size_t len)
{
    if (len == 0)
        return "empty";
    if (len > SDP_CHECK_MAX_BYTES)
        return "too_large";
    if (memchr(body, '\0', len))
        return "nul_byte";
    int lines = 0, media = 0, attributes = 0;
    for (const char *line = body, *end = body + len; line < end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        const char *stop = nl ? nl : end;
        size_t n = (size_t)(stop - line);
        if (n && line[n - 1] == '\r')
            n--;
        if (++lines > SDP_CHECK_MAX_LINES)
            return "too_many_lines";
        if (n > SDP_CHECK_MAX_LINE)
            return "line_too_long";
        if (n >= 2 && line[0] == 'm' && line[1] == '=') {
            if (++media > SDP_CHECK_MAX_MEDIA)
                return "too_many_media";
            int spaces = 0;
            for (size_t i = 0; i < n; i++)
                spaces += line[i] == ' ';
            if (spaces - 2 > SDP_CHECK_MAX_FORMATS)
                return "too_many_formats";
        } else if (n >= 2 && line[0] == 'a' && line[1] == '=' &&
                   ++attributes > SDP_CHECK_MAX_ATTRIBUTES) {
            return "too_many_attributes";
        }
        line = nl ? nl + 1 : end;
    }
    return NULL;
}

static const char *grammar_problem(const char *body, size_t len)
{
    pthread_once(&once, compile_pattern);
    if (pattern == NULL || limits == NULL)
        return "internal";
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(pattern, NULL);
    if (md == NULL)
        return "internal";
    int rc = pcre2_match(pattern, (PCRE2_SPTR)body, len, 0, 0, md, limits);
    pcre2_match_data_free(md);
    if (rc >= 0)
        return NULL;
    return rc == PCRE2_ERROR_NOMATCH ? "grammar" : "internal";
}

bool sdp_check(const char *body, size_t len, const char **why)
{
    const char *problem = body == NULL ? "empty" : size_problem(body, len);
    if (problem == NULL)
        problem = grammar_problem(body, len);
    if (why)
        *why = problem;
    return problem == NULL;
}
