/* dtmf — in-band key detection: G.711 payloads decoded to linear samples
 * (spandsp's g711.h) and fed to a spandsp dtmf_rx detector, which reports
 * each key once when its tone has lasted long enough. The detector keeps
 * its state between payloads, so a tone may span any number of packets. */
#include "dtmf.h"

#include <stdlib.h>

#include <spandsp.h>

#include "rtp.h"

#define DTMF_BLOCK 160 /* samples decoded at a time: one 20 ms packet */

struct voice_inband {
    dtmf_rx_state_t *rx;       /* spandsp detector, owned */
    voice_digit_fn *emit;      /* the current feed's sink, valid during a feed */
    void *arg;                 /* its argument */
};

/* spandsp calls this from inside dtmf_rx() with the keys it confirmed. */
static void on_keys(void *user, const char *digits, int len) {
    voice_inband *d = user;
    for (int i = 0; i < len; i++)
        d->emit(digits[i], d->arg);
}

voice_inband *voice_inband_new(void) {
    voice_inband *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->rx = dtmf_rx_init(NULL, on_keys, d);
    if (!d->rx) {
        free(d);
        return NULL;
    }
    return d;
}

void voice_inband_free(voice_inband *d) {
    if (!d)
        return;
    dtmf_rx_free(d->rx);
    free(d);
}

static void decode(int pt, const uint8_t *in, size_t n, int16_t *out) {
    for (size_t i = 0; i < n; i++)
        out[i] = pt == RTP_PT_PCMA ? alaw_to_linear(in[i]) : ulaw_to_linear(in[i]);
}

void voice_inband_feed(voice_inband *d, int pt, const uint8_t *payload, size_t len,
                       voice_digit_fn *emit, void *arg) {
    if (pt != RTP_PT_PCMA && pt != RTP_PT_PCMU)
        return;
    d->emit = emit;
    d->arg = arg;
    int16_t pcm[DTMF_BLOCK];
    for (size_t off = 0; off < len; off += DTMF_BLOCK) {
        size_t n = len - off < DTMF_BLOCK ? len - off : DTMF_BLOCK;
        decode(pt, payload + off, n, pcm);
        dtmf_rx(d->rx, pcm, (int)n);
    }
}
