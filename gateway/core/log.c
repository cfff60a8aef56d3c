/* log — structured key=value lines. Owns the output stream and the level
 * threshold; formats one line per call with a single write so lines from
 * the SIP thread and the main thread never interleave mid-line. */
#include "log.h"

#include <string.h>
#include <strings.h>
#include <time.h>

static log_level threshold = LOG_INFO;
static FILE *out_stream;

static const char *level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(log_level min)
{
    threshold = min;
}

int log_level_parse(const char *name, log_level *out)
{
    for (int i = LOG_DEBUG; i <= LOG_ERROR; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (log_level)i;
            return 0;
        }
    }
    return -1;
}

void log_set_stream(FILE *stream)
{
    out_stream = stream;
}

static size_t format_timestamp(char *buf, size_t size)
{
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    return n + (size_t)snprintf(buf + n, size - n, ".%03ldZ", now.tv_nsec / 1000000);
}

void log_event(log_level level, const char *event, const char *kv_fmt, ...)
{
    if (level < threshold)
        return;
    char line[2048];
    char ts[40];
    format_timestamp(ts, sizeof ts);
    int n = snprintf(line, sizeof line, "ts=%s level=%s event=%s", ts,
                     level_names[level], event);
    if (kv_fmt != NULL && n < (int)sizeof line - 2) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, kv_fmt);
        int m = vsnprintf(line + n, sizeof line - (size_t)n, kv_fmt, ap);
        va_end(ap);
        n = m < 0 ? n : n + m;
    }
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    FILE *f = out_stream ? out_stream : stderr;
    fwrite(line, 1, (size_t)n, f);
    fflush(f);
}

log_quoted log_quote(const char *value)
{
    log_quoted q;
    size_t o = 0, cap = sizeof q.s - 2; /* room for the closing quote and NUL */
    q.s[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)(value ? value : ""); *p && o < cap - 4; p++) {
        if (*p == '"' || *p == '\\') {
            q.s[o++] = '\\';
            q.s[o++] = (char)*p;
        } else if (*p < 0x20 || *p == 0x7f) {
            o += (size_t)snprintf(q.s + o, sizeof q.s - o, "\\x%02x", *p);
        } else {
            q.s[o++] = (char)*p;
        }
    }
    q.s[o++] = '"';
    q.s[o] = '\0';
    return q;
}
