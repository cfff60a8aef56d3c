/* config — cardline.conf: an INI file read once at start and again on
 * SIGHUP. Each module declares its own settings once, in a table on its
 * face (as Kamailio modules export their parameters): name, type, range,
 * default, the field of the module's options struct the value lands in,
 * and whether it applies live. A schema lists those sections and where
 * each module's options sit in one settings struct; this module parses
 * the file straight into them, so a key exists in exactly one place and
 * --check, the reload list and the documentation checks follow from it.
 *
 * Loading never stops at the first problem: every error is collected as
 * "FILE:LINE: [section] key: why" so `cardline --check` shows them all.
 * A bad value is refused, never clamped. This module only reads and
 * validates; it does not apply settings, open sockets or know the modules
 * whose tables it reads. */
#ifndef CARDLINE_CONFIG_H
#define CARDLINE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

/* Errors kept per load; further ones are summarised in one last line. */
#define CONF_MAX_ERRORS 64

typedef enum {
    CONF_INT,        /* int, decimal within [min, max] */
    CONF_BOOL,       /* bool, written 0 or 1 */
    CONF_SIZE,       /* size_t, decimal within [min, max] */
    CONF_STRING,     /* const char *, free text; empty means unset (NULL); when max > 0, min..max bytes if set */
    CONF_HOST,       /* const char *, non-empty host name or address, no spaces */
    CONF_ADDRESS,    /* host:port or [v6]:port: the host (const char *) at offset, the port (int) at port_offset */
    CONF_URL,        /* const char *, http:// or https:// base URL */
    CONF_PATH,       /* const char *, readable file; empty means unset (NULL) */
    CONF_DIR,        /* const char *, directory name, required; read by its consumer */
    CONF_ALLOWLIST,  /* const char *, source addresses and CIDR prefixes (allow.h); empty means unset */
    CONF_LOG_LEVEL,  /* log_level: debug, info, warn or error */
    CONF_IP_PORT_LIST /* const char *, comma-separated IP:port or [IPv6]:port (IP addresses only,
                       * at most CONF_IP_PORT_LIST_MAX); empty means unset */
} conf_type;

#define CONF_IP_PORT_LIST_MAX 16
#define CONF_IP_TEXT_MAX 64 /* an IP address as text, with the NUL */

/* One item of a CONF_IP_PORT_LIST. */
typedef struct {
    char host[CONF_IP_TEXT_MAX]; /* an IP address, without brackets */
    int port;                    /* 1..65535 */
} conf_ip_port;

/* Splits a CONF_IP_PORT_LIST value into out[0..*count): NULL, or why it
 * is not one. The one reading of such a list, for the config and its
 * consumers alike. */
const char *conf_ip_port_list_split(const char *text, conf_ip_port out[CONF_IP_PORT_LIST_MAX], int *count);

/* One key of a section. */
typedef struct conf_key {
    const char *name;     /* key within the section */
    conf_type type;       /* how the value is parsed and checked, and the field's C type */
    long min;             /* CONF_INT, CONF_SIZE: smallest accepted value; CONF_STRING: shortest */
    long max;             /* CONF_INT, CONF_SIZE: largest accepted value; CONF_STRING: longest, 0 = any */
    const char *def;      /* default, written as in the file ("" = unset) */
    size_t offset;        /* field in the module's options struct */
    size_t port_offset;   /* CONF_ADDRESS: the port's field */
    bool live;            /* a SIGHUP applies it (the section's reload hook); else a restart */
} conf_key;

/* Table rows; T is the module's options struct. */
#define CONF_KEY_INT(T, key, field, lo, hi, dflt) {key, CONF_INT, lo, hi, dflt, offsetof(T, field), 0, false}
#define CONF_KEY_BOOL(T, key, field, dflt) {key, CONF_BOOL, 0, 1, dflt, offsetof(T, field), 0, false}
#define CONF_KEY_SIZE(T, key, field, lo, hi, dflt) {key, CONF_SIZE, lo, hi, dflt, offsetof(T, field), 0, false}
#define CONF_KEY(T, key, type, field, dflt) {key, type, 0, 0, dflt, offsetof(T, field), 0, false}
#define CONF_KEY_TEXT(T, key, field, minlen, maxlen, dflt) \
    {key, CONF_STRING, minlen, maxlen, dflt, offsetof(T, field), 0, false}
#define CONF_KEY_ADDRESS(T, key, host, port, dflt) \
    {key, CONF_ADDRESS, 0, 0, dflt, offsetof(T, host), offsetof(T, port), false}
/* The same, applied live on SIGHUP. */
#define CONF_LIVE_INT(T, key, field, lo, hi, dflt) {key, CONF_INT, lo, hi, dflt, offsetof(T, field), 0, true}
#define CONF_LIVE(T, key, type, field, dflt) {key, type, 0, 0, dflt, offsetof(T, field), 0, true}

/* Two CONF_INT keys of a section, each valid alone, that must keep an
 * order: high >= low. Refused on the later of their two lines as
 * "[section] HIGH (h) must be at least LOW (l)[, why]". */
typedef struct {
    const char *low;      /* the key that must not exceed high */
    const char *high;     /* the key that must be at least low */
    const char *why;      /* what breaks otherwise, or NULL */
} conf_order;

/* A module's settings: one [section] of the file. */
typedef struct {
    const char *name;         /* INI section without brackets */
    const conf_key *keys;     /* its keys, in file order */
    size_t count;             /* entries in keys */
    const conf_order *orders; /* checks across keys, or NULL */
    size_t order_count;       /* entries in orders */
} conf_section;

#define CONF_SECTION(name, keys) {name, keys, sizeof keys / sizeof keys[0], NULL, 0}
#define CONF_SECTION_ORDERED(name, keys, orders) \
    {name, keys, sizeof keys / sizeof keys[0], orders, sizeof orders / sizeof orders[0]}

/* Where a section's options struct sits in the program's settings struct. */
typedef struct {
    const conf_section *section;
    size_t offset;
} conf_part;

/* A check across sections, run on a file whose keys are each valid: it
 * calls `report` for each problem, naming the key whose line the error
 * cites ("FILE:LINE: [section] key: why"; the file alone when the key is
 * not in it). */
typedef void conf_report_fn(void *ctx, const char *section, const char *key, const char *why);
typedef void conf_vet_fn(const void *settings, conf_report_fn *report, void *ctx);

/* The program's settings: every section it reads. */
typedef struct {
    const conf_part *parts;
    size_t count;
    conf_vet_fn *vet;         /* checks across sections, or NULL */
} conf_schema;

/* The errors of one load, in file order. */
typedef struct {
    char **lines;               /* "FILE:LINE: [section] key: why" */
    size_t count;               /* entries in lines */
} conf_errors;

/* Defaults ------------------------------------------------------------------*/

/* Sets every key of `sec` in `opts` to its default. Strings point at the
 * table's text (nothing to free): this is a module's *_options_default. */
void conf_section_defaults(const conf_section *sec, void *opts);

/* Options a module is handed (from conf_load, or built by a test): NULL
 * when every number and bounded text of `sec` in `opts` is within its
 * table's range and its orders hold, else "KEY must be MIN-MAX" (bytes
 * for text) or "HIGH must be at least LOW" in `buf`. A module's *_new refuses such options;
 * the table stays the one place the ranges are written. */
const char *conf_section_problem(const conf_section *sec, const void *opts, char *buf, size_t size);

/* Loading -------------------------------------------------------------------*/

/* Fills `settings` with every key's default, strings copied. Release with
 * conf_free. */
void conf_defaults(const conf_schema *s, void *settings);

/* Defaults, then the file on top. Returns 0 when the file is valid; else
 * -1 with `errs` filled (an unreadable file is one error) and `settings`
 * left at the defaults plus whatever was valid — callers must not run on
 * it. */
int conf_load(const conf_schema *s, const char *path, void *settings, conf_errors *errs);

/* Frees the strings conf_defaults/conf_load copied (the other fields of
 * the options structs are untouched). */
void conf_free(const conf_schema *s, void *settings);
void conf_errors_free(conf_errors *errs);

/* The keys, read-only ----------------------------------------------------------*/

/* Iterates the schema's keys in order: the i-th key, or NULL past the end;
 * `section` receives its section's name. */
const conf_key *conf_key_at(const conf_schema *s, size_t i, const char **section);

/* True when `k` (of `section`) holds different values in `a` and `b`. */
bool conf_key_differs(const conf_schema *s, const char *section, const conf_key *k, const void *a,
                      const void *b);

#endif
