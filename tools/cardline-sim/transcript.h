/* transcript — golden conversations for cardline-sim (docs/dialplans.md,
 * "Transcript tests"): a header naming the session, then the lines the
 * channel shows ("< text") and the lines the caller types ("> text").
 *
 *   # what this covers
 *   channel: ussd
 *   from: +8613800000001
 *   entry: *123#
 *   lang: en                (optional)
 *   session: ID             (optional)
 *   ---
 *   < 1 中文
 *   < [reply: 1 2]
 *   > 1
 *
 * This module parses and writes that format and compares a run with it; it
 * runs nothing itself. Inputs answering a secret prompt are masked in every
 * diff it prints (the file itself must hold them to be replayed). */
#ifndef CARDLINE_SIM_TRANSCRIPT_H
#define CARDLINE_SIM_TRANSCRIPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Limits of a transcript file. */
#define TS_MAX_LINES 4096        /* body lines */
#define TS_MAX_LINE_BYTES 4096   /* bytes of one line */

typedef enum {
    TS_OUTPUT,   /* "< text": a line the channel shows */
    TS_INPUT     /* "> text": a line the caller sends */
} ts_kind;

typedef struct {
    ts_kind kind;      /* shown or sent */
    char *text;        /* without the "< " / "> " marker */
    int line;          /* 1-based line in the file, 0 for a line of a run */
    bool secret;       /* TS_INPUT: it answered a secret prompt (masked in diffs) */
} ts_line;

/* A conversation: the header and the body lines in order. */
typedef struct {
    char *channel;     /* "voice", "ussd" or "sms" */
    char *from;        /* caller */
    char *entry;       /* number dialled, USSD code or first SMS text */
    char *lang;        /* preferred language, or NULL */
    char *session;     /* session id, or NULL */
    char *registry;    /* "down": the test world runs no registry (read by the
                        * harness, not by cardline-sim), or NULL */
    ts_line *lines;    /* body */
    size_t count;      /* body lines */
} transcript;

/* References differ on every run: loss references ("GS" + 12 of [0-9A-Z],
 * gateway/loss/loss.h) hash the session's creation time, callback
 * references ("CB" + 10 of [0-9A-Z], handlers/callback.c) are random.
 * Shown lines keep them as "GS{ref}" and "CB{ref}", in golden files and in
 * runs alike. */
#define TS_REFERENCE_PLACEHOLDER "{ref}"

/* Reading and writing ----------------------------------------------------------*/

/* Parses `path`. Returns false with "FILE:LINE: why" in `err`. */
bool ts_load(const char *path, transcript *t, char *err, size_t err_size);

/* Writes the header (up to and including "---"). */
void ts_write_header(FILE *f, const transcript *t);
/* Writes one body line. */
void ts_write_line(FILE *f, ts_kind kind, const char *text);

/* Building a run ------------------------------------------------------------------*/

/* Appends a body line (copied); false when TS_MAX_LINES is reached. */
bool ts_append(transcript *t, ts_kind kind, const char *text, bool secret);

void ts_free(transcript *t);

/* Comparing ------------------------------------------------------------------------*/

/* True when the bodies are equal line for line. Otherwise prints to `out`
 * a unified-style diff of the first difference (a few lines of context,
 * then the differing block of each side) and returns false. */
bool ts_compare(const char *path, const transcript *expected, const transcript *actual, FILE *out);

#endif
