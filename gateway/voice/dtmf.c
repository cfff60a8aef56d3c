/* dtmf — keys that do not come as RFC 4733 events. In-band: G.711 payloads
 * decoded to linear samples (spandsp's g711.h) and fed to a spandsp dtmf_rx
 * detector, which reports each key once when its tone has lasted long
 * enough; the detector keeps its state between payloads, so a tone may span
 * any number of packets. SIP INFO: the key read from an
 * application/dtmf-relay or application/dtmf body, pure text handling the
 * SIP thread calls. */
#include "dtmf.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <spandsp.h>

#include "rtp.h"

#define DTMF_BLOCK 160 /* samples decoded at a time: one 20 ms packet */

struct voice_inband {
    dtmf_rx_state_t *rx;  /* spandsp detector, owned */
    voice_digit_fn *emit; /* the current feed's sink, valid during a feed */
    void *arg;            /* its argument */
};

/* spandsp calls this from inside dtmf_rx() with the keys it confirmed. */
static void on_keys(void *user, const char *digits, int len)
{
    voice_inband *d = user;
    for (int i = 0; i < len; i++)
        d->emit(digits[i], d->arg);
}

voice_inband *voice_inband_new(void)
{
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

void voice_inband_free(voice_inband *d)
{
    if (!d)
        return;
    dtmf_rx_free(d->rx);
    free(d);
}

static void decode(int pt, const uint8_t *in, size_t n, int16_t *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = pt == RTP_PT_PCMA ? alaw_to_linear(in[i]) : ulaw_to_linear(in[i]);
}

void voice_inband_feed(voice_inband *d, int pt, const uint8_t *payload, size_t len, voice_digit_fn *emit, void *arg)
{
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

/* SIP INFO bodies -------------------------------------------------------------*/

/* The key of a dtmf-relay "Signal=" value or a dtmf body; 0 if none. */
static char signal_digit(const char *v, size_t len)
{
    while (len && (*v == ' ' || *v == '\t'))
        v++, len--;
    while (len && (v[len - 1] == ' ' || v[len - 1] == '\t' || v[len - 1] == '\r' || v[len - 1] == '\n'))
        len--;
    if (len == 1) {
        char d = v[0];
        if ((d >= '0' && d <= '9') || d == '*' || d == '#')
            return d;
        if ((d >= 'A' && d <= 'D') || (d >= 'a' && d <= 'd'))
            return (char)(d & ~0x20);
    }
    if (len == 2 && v[0] == '1' && (v[1] == '0' || v[1] == '1'))
        return v[1] == '0' ? '*' : '#';
    return 0;
}

static char relay_digit(const char *body, size_t len)
{
    const char *end = body + len;
    for (const char *line = body; line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        size_t n = (size_t)((eol ? eol : end) - line);
        if (n >= 7 && strncasecmp(line, "Signal=", 7) == 0)
            return signal_digit(line + 7, n - 7);
        line = eol ? eol + 1 : end;
    }
    return 0;
}

char voice_info_digit(bool relay, const char *body, size_t len)
{
    return relay ? relay_digit(body, len) : signal_digit(body, len);
}
