/* config — cardline.conf: an INI file read once at start and again on
 * SIGHUP. One table of keys (config.c) drives parsing, defaults, range
 * checks and the documentation checks, so a key exists in exactly one place.
 *
 * Loading never stops at the first problem: every error is collected as
 * "FILE:LINE: [section] key: why" so `cardline --check` shows them all.
 * This module only reads and validates; it does not apply settings, open
 * sockets or know the modules that consume them. */
#ifndef CARDLINE_CONFIG_H
#define CARDLINE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "log.h"

/* Errors kept per load; further ones are summarised in one last line. */
#define CONF_MAX_ERRORS 64

typedef struct {
    char *host;                 /* IPv4/IPv6 literal or host name, no brackets */
    int port;                   /* 1..65535 */
} conf_address;

typedef struct {
    struct {
        log_level level;        /* lowest level written */
        int flush_ms;           /* debug/info lines held at most this long; 0 = written at once */
    } log;
    struct {
        conf_address listen;    /* the gateway's HTTP listener (ops endpoints) */
        int max_body_bytes;     /* larger request bodies get 413 */
        int max_header_bytes;   /* larger request heads are refused */
        int max_connections;    /* open client connections served at once */
        int idle_timeout_ms;    /* a silent connection is closed after this */
        int request_timeout_ms; /* a request's head and body must arrive within this */
    } http;
    struct {
        char *host;             /* Redis address */
        int port;               /* Redis port */
        char *password;         /* AUTH password, NULL when unset */
        int db;                 /* SELECT index */
        int op_timeout_ms;      /* deadline of each Redis operation */
        int reconnect_min_ms;   /* first reconnect delay */
        int reconnect_max_ms;   /* reconnect backoff ceiling */
        int ping_interval_ms;   /* liveness PING period */
        int max_pending;        /* operations in flight before refusing */
    } redis;
    struct {
        char *url;              /* registry base URL, without /v1 */
        char *token;            /* bearer token, NULL when unset */
        char *ca_file;          /* TLS CA bundle, NULL when unset */
        char *cert_file;        /* mTLS client certificate, NULL when unset */
        char *key_file;         /* mTLS client key, NULL when unset */
        int timeout_ms;         /* whole-request deadline */
        int connect_timeout_ms; /* connect (+TLS) deadline */
        int max_connections;    /* concurrent connections to the registry */
        int max_pending;        /* requests in flight before refusing */
        int read_retries;       /* extra attempts of a failed GET */
        int health_interval_ms; /* period of the /v1/health probe */
    } registry;
    struct {
        char *dir;              /* directory of *.yaml menu scripts (never NULL) */
    } dialplans;
    struct {
        int ttl_voice_s;        /* session lifetime after the last hop, voice */
        int ttl_ussd_s;         /* the same, USSD */
        int ttl_sms_s;          /* the same, SMS */
        int max_steps_per_hop;  /* nodes one hop may enter (runaway flows) */
        int max_input_bytes;    /* longer input is refused */
        int events_kept;        /* recent events kept in a session for agents */
        int handler_timeout_ms; /* a handler not finished by then is "unavailable" */
    } session;
    struct {
        int answer_deadline_ms; /* a slower hop is answered with a holding page */
        int max_text_bytes;     /* longer `text` gets 413 */
        int page_octets;        /* octets of one page after "CON "/"END " (GSM-7 packed or UCS-2) */
        int max_sessions;       /* sessions with paging/holding state in memory */
        int state_ttl_s;        /* that state is dropped after this much silence */
        char *hop_key_secret;   /* HMAC key of replay keys, NULL = random per process */
        char *secret;           /* key aggregators sign requests with, NULL when unset */
        int allow_unsigned;     /* 1: with no secret, unsigned requests are served */
        char *allow_from;       /* aggregator source addresses (allow.h), NULL = any */
        int max_clock_skew_s;   /* a signature's timestamp may be this far off */
    } ussd;
    struct {
        int max_messages;       /* SMS parts one reply may take (Kannel's max-messages) */
        int max_text_bytes;     /* longer MO text gets 413 */
        char *secret;           /* `key` Kannel's get-url carries, NULL when unset */
        int allow_unsigned;     /* 1: with no secret, requests without a key are served */
        char *allow_from;       /* Kannel's source addresses (allow.h), NULL = any */
    } sms;
    struct {
        char *consumer;         /* this gateway's name in the consumer group (unique per instance) */
        int poll_interval_ms;   /* how often new and due entries are fetched */
        int batch;              /* entries fetched per poll */
        int max_in_flight;      /* attempts open at once */
        int lease_ms;           /* an attempt not finished by then is reclaimed */
        int backoff_min_ms;     /* first retry delay */
        int backoff_max_ms;     /* retry delay ceiling */
        int max_attempts;       /* attempts before an entry is parked as dead */
        int max_age_s;          /* age after which a failing entry is parked as dead */
        int max_payload_bytes;  /* an entry's payload as compact JSON */
        int dedupe_ttl_s;       /* how long a dedupe key remembers its entry */
    } outbox;
    struct {
        char *sendsms_url;      /* smsbox's sendsms */
        char *username;         /* sendsms-user, NULL when unset */
        char *password;         /* its password, NULL when unset (never logged) */
        char *from;             /* sender shown on the handset */
        char *dlr_url;          /* /sms/dlr as Kannel reaches it, NULL = no reports */
        int timeout_ms;         /* deadline of one sendsms request */
        int message_ttl_s;      /* how long a message's state is kept */
    } kannel;
    struct {
        int identify_window_s;       /* window of the failed-identification counters */
        int identify_max_per_caller; /* failed identifications per caller number per window */
        int identify_max_per_id;     /* failed identifications per citizen ID per window */
        int registry_pin_window_s;   /* a registry without the PIN count: its lock window, 0 = it sends the count */
        int code_ttl_s;              /* life of an SMS one-time code */
        int code_tries;              /* wrong entries before a code is void */
        int code_sends;              /* codes one session may ask for */
        int loss_confirm_wait_ms;    /* wait for the registry before saying "accepted" */
        char *digest_secret;         /* HMAC key of code and new-PIN digests, NULL = random */
        int number_window_s;         /* window of the per-number limits below */
        int sessions_per_number;     /* USSD/SMS sessions one phone number may start per window */
        int codes_per_number;        /* one-time codes sent to one number per window */
        int callbacks_per_number;    /* callbacks one caller number may book per window */
    } workflows;
    struct {
        int enabled;                /* 1: answer SIP calls; 0: no voice channel */
        conf_address listen;        /* SIP address and port, UDP and TCP */
        char *trunks;               /* allowlist (allow.h) of sources allowed to INVITE; NULL = none */
        char *pai_trunks;           /* allowlist of trunks whose P-Asserted-Identity names the caller */
        int max_calls;              /* calls at once; more get 503 */
        char *rtp_address;          /* local address of RTP sockets, put in SDP */
        int rtp_port_min;           /* first RTP port (even) */
        int rtp_port_max;           /* last RTP port */
        int rtp_inactivity_ms;      /* no RTP from the caller this long: hang up */
        int session_expires_s;      /* SIP session timer asked for */
        char *agent_uri;            /* REFER target; {queue} is replaced by the queue */
        int refer_timeout_ms;       /* a transfer not confirmed by then has failed */
        int inter_digit_timeout_ms; /* silence that ends a multi-digit entry */
        int prompt_gap_ms;          /* silence between prompts */
        char *prompts_dir;          /* generated prompt audio (scripts/prompts) */
        char *recorded_dir;         /* recorded prompts overriding them, NULL when unset */
    } voice;
    struct {
        int enabled;                /* 1: values without words are synthesized; 0: skipped */
        char *voices;               /* "LANG:VOICE ..." espeak-ng voice per language */
        int rate;                   /* words per minute */
        int cache_bytes;            /* audio of values kept in memory */
        int queue;                  /* values waiting for synthesis, at most */
        int wait_ms;                /* a value not ready when its turn comes is waited for this long */
    } speech;
    struct {
        int enabled;            /* 1: serve the agent API; 0: no agent API */
        conf_address listen;    /* the agent API's own HTTP listener */
        char *tokens_file;      /* YAML file of agents, roles and token digests */
        int resume_ttl_s;       /* life of a one-time voice resume token */
        int audit_max;          /* audit stream entries kept (approximately) */
    } agents;
    struct {
        int shutdown_grace_ms;  /* wait for in-flight requests at SIGTERM */
    } gateway;
} conf;

/* The errors of one load, in file order. */
typedef struct {
    char **lines;               /* "FILE:LINE: [section] key: why" */
    size_t count;               /* entries in lines */
} conf_errors;

/* Loading -------------------------------------------------------------------*/

/* Fills `c` with every key's default. Release with conf_free. */
void conf_defaults(conf *c);

/* Defaults, then the file on top. Returns 0 when the file is valid; else
 * -1 with `errs` filled (an unreadable file is one error) and `c` left at
 * the defaults plus whatever was valid — callers must not run on it. */
int conf_load(const char *path, conf *c, conf_errors *errs);

void conf_free(conf *c);
void conf_errors_free(conf_errors *errs);

/* The key table -------------------------------------------------------------*/

typedef struct conf_key conf_key;

/* Iterates the table: the i-th key, or NULL past the end. */
const conf_key *conf_key_at(size_t i);
const char *conf_key_section(const conf_key *k);
const char *conf_key_name(const conf_key *k);
/* The default as it would be written in the file ("" when unset). */
const char *conf_key_default(const conf_key *k);

/* True when `k` holds different values in `a` and `b` (reload reporting). */
bool conf_key_differs(const conf_key *k, const conf *a, const conf *b);

#endif
