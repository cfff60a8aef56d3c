/* fuzz_rtp — RTP datagrams as peers send them (gateway/voice/rtp.c and
 * dtmf.c): rtp_parse, RFC 4733 telephone events through one dedupe state
 * as a call keeps it, and G.711 payloads through the in-band DTMF
 * detector. An input is a stream of datagrams, each preceded by its length
 * in two bytes (little-endian); telephone events use payload type 101, as
 * cardline offers them. A parsed packet must pack back to the same header
 * and payload. */
#include "dtmf.h"
#include "rtp.h"

#include <stdlib.h>
#include <string.h>

#define EVENT_PT 101

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_digit(char digit, void *arg)
{
    (void)arg;
    if (strchr("0123456789*#ABCD", digit) == NULL || digit == 0)
        abort();
}

/* Packing what was parsed gives back a packet that parses to the same. */
static void check_round_trip(const rtp_packet *p)
{
    uint8_t out[RTP_MAX_PACKET];
    rtp_packet again;
    size_t n = rtp_pack(p, out, sizeof out);
    if (n == 0)
        return;
    if (!rtp_parse(out, n, &again) || again.pt != p->pt || again.marker != p->marker ||
        again.seq != p->seq || again.ts != p->ts || again.ssrc != p->ssrc ||
        again.payload_len != p->payload_len || memcmp(again.payload, p->payload, p->payload_len) != 0)
        abort();
}

static void feed(voice_inband *inband, rtp_event_dedupe *dedupe, const uint8_t *buf, size_t len)
{
    rtp_packet p;
    if (!rtp_parse(buf, len, &p))
        return;
    if (p.payload_len > len)
        abort();
    check_round_trip(&p);
    if (p.pt == EVENT_PT) {
        rtp_event ev;
        if (rtp_event_parse(p.payload, p.payload_len, &ev) && ev.volume > 63)
            abort();
        rtp_event_feed(dedupe, &p);
    } else {
        voice_inband_feed(inband, p.pt, p.payload, p.payload_len, on_digit, NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    voice_inband *inband = voice_inband_new();
    rtp_event_dedupe dedupe = {0};
    while (size >= 2) {
        size_t len = (size_t)data[0] | (size_t)data[1] << 8;
        data += 2, size -= 2;
        if (len > size)
            len = size;
        /* Each datagram in a buffer of its own size, as recvfrom leaves it,
         * so a read past its end is caught. */
        uint8_t *dgram = malloc(len ? len : 1);
        if (dgram == NULL)
            abort();
        memcpy(dgram, data, len);
        feed(inband, &dedupe, dgram, len);
        free(dgram);
        data += len, size -= len;
    }
    voice_inband_free(inband);
    return 0;
}
