/* dtmf — keys that do not arrive as RFC 4733 events: in-band DTMF (tones
 * inside the G.711 audio, for peers that send neither events nor SIP INFO;
 * a thin owner of a spandsp dtmf_rx detector per call, fed by media.c) and
 * the bodies of SIP INFO requests (read by the SIP thread). */
#ifndef CARDLINE_VOICE_DTMF_H
#define CARDLINE_VOICE_DTMF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct voice_inband voice_inband;

typedef void voice_digit_fn(char digit, void *arg);

voice_inband *voice_inband_new(void);
void voice_inband_free(voice_inband *d);

/* Decodes one G.711 payload (pt RTP_PT_PCMA or RTP_PT_PCMU; others are
 * ignored) and calls `emit` for each key whose tone ended or was
 * recognised, once per key press. */
void voice_inband_feed(voice_inband *d, int pt, const uint8_t *payload, size_t len,
                       voice_digit_fn *emit, void *arg);

/* The key of a SIP INFO body of `len` bytes (not NUL-terminated): with
 * `relay`, an application/dtmf-relay body ("Signal=5" on one of its lines),
 * else an application/dtmf body (the key alone). 0-9 * # A-D (10 and 11
 * read as * and #), or 0 when the body names no key. Pure; any thread. */
char voice_info_digit(bool relay, const char *body, size_t len);

#endif
