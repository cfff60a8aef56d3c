/* channel — the channels a session can arrive on. The engine never branches
 * on them; dialplans may (routes, per-channel wording) and channels render
 * the engine's output for their wire. */
#ifndef CARDLINE_CHANNEL_H
#define CARDLINE_CHANNEL_H

typedef enum {
    CHANNEL_VOICE = 0,   /* SIP call, DTMF input, prompts played as audio */
    CHANNEL_USSD,        /* aggregator HTTP, numbered text pages */
    CHANNEL_SMS,         /* Kannel, keyword commands and short conversations */
    CHANNEL_COUNT
} channel_kind;

/* "voice", "ussd", "sms". */
const char *channel_name(channel_kind ch);

/* Parses a name as above. Returns -1 if unknown. */
int channel_parse(const char *name, channel_kind *out);

#endif
