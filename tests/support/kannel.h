/* kannel — a real Kannel for integration tests: bearerbox and smsbox with a
 * `fake` SMSC on free loopback ports in a private temporary directory, and
 * Kannel's own fakesmsc as the handset side (MO in, MT out).
 *
 * The configuration is written from a template (see kannel.c): one
 * sms-service (keyword default, catch-all) whose get-url is the caller's,
 * X-Kannel headers accepted (so a reply may say X-Kannel-Coding: 2), one
 * sendsms-user, concatenation on, max-messages as given. Delivery reports:
 * a sendsms request with dlr-mask containing 8 (SMSC accepted) or 16 (SMSC
 * rejected) and a dlr-url gets that URL called by smsbox as soon as the
 * fake SMSC takes the message; the fake SMSC never produces final handset
 * reports (mask 1/2).
 *
 * The fake SMSC serves one fakesmsc connection at a time, so the harness
 * keeps at most one fakesmsc running: tk_mo() replaces it with a new one
 * that sends the message and stays connected to receive the answers, and
 * tk_smsc_connect() starts one that only receives (MT traffic not caused by
 * an MO, e.g. the outbox). Every MT any fakesmsc received is kept, in order,
 * with concatenated parts joined and UCS-2 decoded to UTF-8; tk_wait_mt()
 * takes them out one by one.
 *
 * All children die with the test process (PR_SET_PDEATHSIG, via th_spawn).
 * Without the Kannel binaries tk_available() is false: tests skip. */
#ifndef CARDLINE_TEST_KANNEL_H
#define CARDLINE_TEST_KANNEL_H

#include <stdbool.h>
#include <stddef.h>

#include "harness.h"

#define TK_BEARERBOX_BIN "/usr/sbin/bearerbox"
#define TK_SMSBOX_BIN "/usr/sbin/smsbox"
#define TK_FAKESMSC_BIN "/usr/lib/kannel/test/fakesmsc"

typedef struct {
    const char *get_url;       /* sms-service get-url with Kannel escapes (%p %P %a); required */
    const char *sendsms_user;  /* sendsms-user username; NULL = "outbox" */
    const char *sendsms_pass;  /* its password; NULL = "outbox-secret" */
    int max_messages;          /* max-messages of the service and the user; 0 = 3 */
    const char *trusted_ca;    /* certificate smsbox checks an https get-url's server with; NULL = none */
} tk_options;

/* One MT message as the handset got it (parts joined). */
typedef struct {
    char from[64];             /* sender (the service number) */
    char to[64];               /* receiver (the handset) */
    char *text;                /* UTF-8 text, malloc'd */
    int parts;                 /* SMS parts it arrived in (1 when not concatenated) */
} tk_mt;

typedef struct tk_mt_list tk_mt_list;

typedef struct {
    char dir[256];             /* configuration, spool and logs */
    char conf[300];            /* the kannel.conf written from the template */
    int admin_port;            /* bearerbox admin HTTP (status.txt) */
    int box_port;              /* bearerbox ↔ smsbox */
    int smsc_port;             /* fake SMSC, where fakesmsc connects */
    int sendsms_port;          /* smsbox sendsms HTTP (/cgi-bin/sendsms) */
    char user[64];             /* sendsms username */
    char pass[64];             /* sendsms password */
    th_proc bearerbox;         /* running bearerbox, pid 0 when down */
    th_proc smsbox;            /* running smsbox, pid 0 when down */
    th_proc smsc;              /* the current fakesmsc, pid 0 when none */
    size_t log_read;           /* bytes of the fakesmsc log already parsed */
    tk_mt_list *mts;           /* MTs received and not yet taken */
} tk_kannel;

/* True when bearerbox, smsbox and fakesmsc are installed. */
bool tk_available(void);

/* Lifecycle -----------------------------------------------------------------*/

/* Picks free ports, writes the configuration, starts bearerbox and smsbox
 * and waits (bounded) until smsbox is connected to bearerbox and the
 * sendsms port answers. On failure everything started is stopped. */
bool tk_start(tk_kannel *k, const tk_options *opt);

/* Stops fakesmsc, smsbox and bearerbox (SIGTERM, then SIGKILL), frees the
 * kept MTs and removes the directory. Safe on a stopped or failed k. */
void tk_stop(tk_kannel *k);

/* Kannel down then up: tk_boxes_down stops fakesmsc, smsbox and bearerbox
 * but keeps ports, configuration and spool; tk_boxes_up starts them again
 * on the same ports and waits as tk_start does. */
void tk_boxes_down(tk_kannel *k);
bool tk_boxes_up(tk_kannel *k);

/* The handset side -----------------------------------------------------------*/

/* Sends one MO text message (UTF-8) from `from` to `to` through a new
 * fakesmsc, which then stays connected for the answers. Waits until
 * bearerbox counts it as received. `from`, `to` must hold no spaces. */
bool tk_mo(tk_kannel *k, const char *from, const char *to, const char *text);

/* Connects a fakesmsc that only receives, and waits until bearerbox shows
 * the fake SMSC online. */
bool tk_smsc_connect(tk_kannel *k);

/* Waits up to `timeout_ms` for the oldest kept MT to `to` (any receiver
 * when NULL) and moves it to `out` (free with tk_mt_free). False on
 * timeout. */
bool tk_wait_mt(tk_kannel *k, const char *to, int timeout_ms, tk_mt *out);
void tk_mt_free(tk_mt *m);

/* MTs received and not yet taken (after parsing what has arrived so far). */
size_t tk_pending_mt(tk_kannel *k);

#endif
