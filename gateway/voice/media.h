/* media — RTP on the main loop: one UDP socket per call from a configured
 * port range, G.711 sent every 20 ms against CLOCK_MONOTONIC deadlines, and
 * what arrives turned into keys (RFC 4733 events with the negotiated payload
 * type, in-band tones through dtmf.h when the peer has no telephone-event).
 *
 * One timerfd paces every stream (in four 5 ms phase slots, so sends come
 * in short bursts) with one sendto per packet: sendmmsg cannot help, as
 * each call sends from its own socket. The cost of pacing grows with
 * packets, not with timers. A stream sends from the moment it knows its
 * peer until it is closed: the clips it was asked to play, G.711 silence
 * when it has none, nothing while on hold. It owns sockets and pacing
 * only; what to play comes from audio.h and what a key means is the
 * caller's business. Main-thread only. */
#ifndef CARDLINE_VOICE_MEDIA_H
#define CARDLINE_VOICE_MEDIA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "speech.h"

struct event_base;

typedef struct voice_media voice_media;
typedef struct voice_stream voice_stream;

/* A piece of audio in both G.711 laws, shared by every call that plays it.
 * A clip with NULL data is that many samples of silence. A clip with
 * `later` is a value still being made (speech.h): when the play list
 * reaches it the stream sends silence until it is ready, at most
 * value_wait_ms, then plays it, or skips it (a late value). */
typedef struct {
    const uint8_t *pcma;       /* A-law samples, or NULL for silence */
    const uint8_t *pcmu;       /* µ-law samples, or NULL for silence */
    size_t samples;            /* 8 kHz samples */
    const speech_sound *later; /* the audio instead of the above, or NULL */
} voice_clip;

typedef struct {
    const char *bind_addr;     /* local address of RTP sockets (and the one put in SDP) */
    int port_min;              /* first RTP port (even) */
    int port_max;              /* last RTP port */
    int max_streams;           /* open streams at once; more are refused */
    int inactivity_ms;         /* no RTP received for this long → on_inactive (0 = never) */
    int value_wait_ms;         /* a value not ready when its turn comes is waited for this long */
} voice_media_options;

typedef struct {
    void (*on_digit)(char digit, void *arg);  /* a key from RTP (RFC 4733 or in-band) */
    void (*on_played)(void *arg);             /* the play list ran out (not after voice_stream_stop) */
    void (*on_inactive)(void *arg);           /* nothing received for inactivity_ms while not on hold */
} voice_stream_cbs;

/* Send-interval figures of every stream, for scripts/bench voice. */
typedef struct {
    uint64_t packets;          /* packets sent */
    uint64_t send_errors;      /* packets whose sendto failed */
    double p50_us;             /* median interval between a stream's consecutive packets */
    double p99_us;             /* its 99th percentile */
    double max_us;             /* the largest interval */
    int streams;               /* streams open now */
    uint64_t values_late;      /* values skipped: not ready after value_wait_ms */
    uint64_t values_empty;     /* values skipped: nothing could be made of them */
} voice_media_stats;

/* Lifecycle ---------------------------------------------------------------------*/

/* NULL (logged) when an option is out of range. */
voice_media *voice_media_new(struct event_base *base, const voice_media_options *opt);
/* Closes every stream still open (no callbacks), then frees. Not from
 * inside one of its callbacks. */
void voice_media_free(voice_media *m);

/* Streams -----------------------------------------------------------------------*/

/* Binds the next free even port of the range. NULL when the range or
 * max_streams is exhausted. `cbs` is copied; callbacks never run inside a
 * voice_stream_* call. */
voice_stream *voice_stream_open(voice_media *m, const voice_stream_cbs *cbs, void *arg);
int voice_stream_port(const voice_stream *s);

/* Where to send and how: `pt` RTP_PT_PCMA or RTP_PT_PCMU, `dtmf_pt` the
 * telephone-event payload type or -1 (then in-band detection runs). Sending
 * starts at the next tick. Callable again (re-INVITE). Received packets
 * count from one source: this peer whenever it sends, else the first source
 * of valid RTP (a peer behind NAT); others are ignored. An unspecified
 * address (c=0.0.0.0) or port 0 sends nothing, as on hold. Arguments out
 * of range (another address family, another pt) are logged and ignored. */
void voice_stream_set_peer(voice_stream *s, const struct sockaddr *addr, socklen_t len, int pt,
                           int dtmf_pt);

/* On hold nothing is sent and inactivity is not watched. */
void voice_stream_hold(voice_stream *s, bool on);

/* Replaces whatever is playing with clips[0..n): the array is copied, the
 * clips themselves must live until played (audio.h keeps them). An empty
 * list calls on_played at the next tick. */
void voice_stream_play(voice_stream *s, const voice_clip *const *clips, size_t n);

/* Stops playing (barge-in): silence from the next packet, no on_played. */
void voice_stream_stop(voice_stream *s);

/* Also from inside any of the stream's callbacks. */
void voice_stream_close(voice_stream *s);

/* Figures ---------------------------------------------------------------------*/

/* `reset` starts a new measurement window after reading. */
void voice_media_stats_get(voice_media *m, voice_media_stats *out, bool reset);

#endif
