/* dtmf — in-band DTMF: keys pressed as tones inside the G.711 audio, for
 * peers that send neither RFC 4733 events nor SIP INFO. A thin owner of a
 * spandsp dtmf_rx detector per call; media.c feeds it received payloads. */
#ifndef CARDLINE_VOICE_DTMF_H
#define CARDLINE_VOICE_DTMF_H

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

#endif
