/* log — structured key=value lines. Owns the output stream, the level
 * threshold and the hold buffer; a line is formatted whole, then written or
 * held under one lock, so lines from the SIP thread and the main thread
 * never interleave mid-line. */
#include "log.h"

#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static log_level threshold = LOG_INFO;
static FILE *out_stream;

/* Lines waiting for log_flush(); `held_lock` also orders every write. */
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static bool holding;
static char held[LOG_HOLD_BYTES];
static size_t held_len;

static const char *level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(log_level min)
{
    threshold = min;
}

static const conf_key log_conf_keys[] = {
    CONF_LIVE(log_options, "level", CONF_LOG_LEVEL, level, "info"),
    CONF_LIVE_INT(log_options, "flush_ms", flush_ms, 0, 1000, "100"),
};
const conf_section log_config = CONF_SECTION("log", log_conf_keys);

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

static FILE *stream_now(void)
{
    return out_stream ? out_stream : stderr;
}

/* Writes what is held and flushes the stream. Caller holds held_lock. */
static void write_held(void)
{
    fwrite(held, 1, held_len, stream_now());
    held_len = 0;
    fflush(stream_now());
}

void log_set_stream(FILE *stream)
{
    pthread_mutex_lock(&held_lock);
    write_held();
    out_stream = stream;
    pthread_mutex_unlock(&held_lock);
}

void log_set_hold(bool hold)
{
    pthread_mutex_lock(&held_lock);
    holding = hold;
    write_held();
    pthread_mutex_unlock(&held_lock);
}

void log_flush(void)
{
    pthread_mutex_lock(&held_lock);
    write_held();
    pthread_mutex_unlock(&held_lock);
}

bool log_enabled(log_level level)
{
    return level >= threshold;
}

/* The date and time to the second change once a second while lines come
 * thousands of times a second: each thread keeps its last one. */
static size_t format_timestamp(char *buf, size_t size)
{
    static _Thread_local time_t cached_sec = -1;
    static _Thread_local char cached[32];
    static _Thread_local size_t cached_len;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (now.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&now.tv_sec, &tm);
        cached_len = strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm);
        cached_sec = now.tv_sec;
    }
    unsigned ms = (unsigned)(now.tv_nsec / 1000000);
    if (size < cached_len + 6)
        return 0;
    memcpy(buf, cached, cached_len);
    char *p = buf + cached_len;
    p[0] = '.';
    p[1] = (char)('0' + ms / 100);
    p[2] = (char)('0' + ms / 10 % 10);
    p[3] = (char)('0' + ms % 10);
    p[4] = 'Z';
    p[5] = '\0';
    return cached_len + 5;
}

/* Every line passes through the hold buffer, so one written at once goes out
 * after the lines held before it, in the same write. */
static void emit(log_level level, const char *line, size_t len)
{
    pthread_mutex_lock(&held_lock);
    if (held_len + len > sizeof held)
        write_held();
    memcpy(held + held_len, line, len);
    held_len += len;
    if (!holding || level >= LOG_WARN)
        write_held();
    pthread_mutex_unlock(&held_lock);
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
    emit(level, line, (size_t)n);
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
