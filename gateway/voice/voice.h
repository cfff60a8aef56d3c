/* voice — the voice channel's face: SIP calls (sip.h) answered by the IVR.
 * Each call is one engine session ("voice:" + Call-ID): its START hop when
 * the call is answered, an INPUT hop per menu key or finished entry, a
 * TIMEOUT or NO_INPUT hop when the caller stays silent or just presses the
 * terminator, a HANGUP hop when the caller leaves. The engine's prompts are
 * played as audio (audio.h) over RTP (media.h); a key pressed while a
 * waiting node's prompts play stops them and counts as input (barge-in);
 * keys pressed while a hop runs are kept for the next wait (type-ahead).
 * Free text values (a bank's name, an outlet's address) are asked of
 * speech.h as soon as the output arrives, so they are made while the
 * prompts before them play. An "end" output hangs up after its prompts, a "transfer" REFERs the
 * caller to the agent URI with the session id in X-Cardline-Session, and a
 * refused transfer returns to the flow's fallback.
 *
 * An agent sends a caller back into the IVR by transferring them to
 * sip:resume-<token>@… : the token (Redis `cl:x:<token>`, written by the
 * agent API, taken once with GETDEL) names a session left with an agent,
 * the node to run and the agent's URI. The call continues that session at
 * the node (a TRANSFER_BACK hop) and is answered only then; no token, or
 * no session waiting for it, is a 404. Every transfer of such a call goes
 * back to the agent's URI. voice never logs the token.
 *
 * Entered digits of a secret ask are held only until their hop starts and
 * then wiped; no digit is ever logged. Main-thread only, except what
 * sip.h runs in its own thread. docs/voice.md has the behaviour. */
#ifndef CARDLINE_VOICE_H
#define CARDLINE_VOICE_H

#include <stdbool.h>

#include "config.h"
#include "audio.h"
#include "media.h"
#include "sip.h"
#include "speech.h"

struct event_base;
struct engine;
struct store;

typedef struct voice voice;

typedef struct {
    bool enabled;               /* main answers SIP calls only when set */
    struct engine *engine;      /* runs the hops (not owned) */
    struct store *store;        /* Redis, for agents' resume tokens (not owned; required) */
    voice_sip_options sip;      /* signalling */
    voice_media_options media;  /* RTP */
    const char *prompts_dir;    /* generated audio */
    const char *recorded_dir;   /* recorded audio overriding it, or NULL */
    const char *agent_uri;      /* REFER target; "{queue}" is replaced by the queue */
    int inter_digit_timeout_ms; /* silence that ends a multi-key entry */
    int prompt_gap_ms;          /* silence between prompts */
    const speech_options *speech; /* values without words said at run time, or NULL: skipped */
} voice_options;

/* [voice]: enabled, listen and what sip, media and the prompts need. */
extern const conf_section voice_config;

/* Lifecycle ---------------------------------------------------------------------*/

/* Loads the audio of the engine's dialplan set, opens the RTP range and
 * starts SIP. NULL (logged) when an option is out of range or SIP cannot
 * bind. */
voice *voice_new(struct event_base *base, const voice_options *opt);

/* After a dialplan reload: loads the new set's audio; calls playing keep
 * the audio they started with. */
void voice_reload(voice *v);

/* Hangs up every call, stops SIP, then frees. Hops still running finish
 * into nothing. */
void voice_free(voice *v);

/* Figures -----------------------------------------------------------------------*/

/* The SIP thread answers its liveness pings (sip.h); for /healthz. */
bool voice_alive(const voice *v);

typedef struct {
    int calls;                  /* calls with a session now */
    voice_media_stats media;    /* RTP send intervals */
    voice_audio_stats audio;    /* prompt audio held */
} voice_stats;

void voice_stats_get(voice *v, voice_stats *out, bool reset_media);

#endif
