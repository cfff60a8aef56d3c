/* log — one structured line per event, key=value, on stderr (or a file).
 *
 *   ts=2026-11-22T03:04:05.123Z level=warn event=store.reconnect attempt=3 delay_ms=400
 *
 * Callers format their own key=value pairs; values that may hold spaces or
 * quotes go through log_quote(). Personal numbers go through mask.h first:
 * nothing here knows which values are sensitive, so nothing here may be
 * handed a PIN or a one-time code, masked or not. */
#ifndef CARDLINE_LOG_H
#define CARDLINE_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

typedef enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

#include "config.h"

/* [log], applied live on SIGHUP (main's reload hook). */
typedef struct {
    log_level level;        /* lowest level written */
    int flush_ms;           /* debug/info lines held at most this long; 0 = written at once */
} log_options;

extern const conf_section log_config;

/* Setup ---------------------------------------------------------------------*/

/* Lines below `min` are dropped. Default: LOG_INFO. */
void log_set_level(log_level min);

/* Parses "debug", "info", "warn" or "error". Returns -1 if unknown. */
int log_level_parse(const char *name, log_level *out);

/* Where lines go. Default: stderr. The stream is not closed by log. */
void log_set_stream(FILE *stream);

/* True when lines of `level` are written: lets a caller skip formatting
 * the values of a line that would be dropped. */
bool log_enabled(log_level level);

/* Holding: while on, debug and info lines wait in a buffer of
 * LOG_HOLD_BYTES and reach the stream together, at log_flush(), when the
 * buffer is full, or right before a warn or error line (which is never held).
 * A busy gateway then writes its log once per flush instead of once per
 * line (each write(2) cost ~6% of a USSD hop). What a crash loses: the held
 * lines, at most one flush interval of them. Off by default. Turning it off
 * flushes. Safe from any thread, like log_event. */
#define LOG_HOLD_BYTES 65536
void log_set_hold(bool hold);

/* Writes the held lines now. The daemon calls it from a timer
 * ([log] flush_ms) and before it exits. */
void log_flush(void);

/* Emitting ------------------------------------------------------------------*/

/* Writes one line: timestamp, level, `event` (dotted name such as
 * "http.request"), then the printf-formatted key=value pairs (may be NULL). */
void log_event(log_level level, const char *event, const char *kv_fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(...) log_event(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_event(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_event(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_event(LOG_ERROR, __VA_ARGS__)

/* A value made safe for key=value: double-quoted with `"`, `\` and control
 * characters escaped, cut to fit. Use as log_quote(s).s inside one call. */
typedef struct { char s[256]; } log_quoted;
log_quoted log_quote(const char *value);

#endif
