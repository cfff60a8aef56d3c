/* rtp — the bytes of RTP (RFC 3550) and of telephone events (RFC 4733):
 * the fixed header cardline writes, the checks that keep a hostile or
 * broken datagram from being read past its end, and the rule that reports
 * each key press once per (SSRC, timestamp). */
#include "rtp.h"

#include <string.h>

#define RTP_VERSION 2
#define RTP_EVENT_BYTES 4
/* How far back an event's timestamp may lie and still be a late copy of
 * one already reported rather than a new source clock: 2 s of 8 kHz. */
#define RTP_EVENT_REORDER_WINDOW 16000u

static uint16_t read16(const uint8_t *b)
{
    return (uint16_t)(b[0] << 8 | b[1]);
}

static uint32_t read32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static void write16(uint8_t *b, uint16_t v)
{
    b[0] = (uint8_t)(v >> 8);
    b[1] = (uint8_t)v;
}

static void write32(uint8_t *b, uint32_t v)
{
    b[0] = (uint8_t)(v >> 24);
    b[1] = (uint8_t)(v >> 16);
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
}

size_t rtp_pack(const rtp_packet *p, uint8_t *out, size_t size)
{
    if (p->pt > 127 || p->payload_len > size || size - p->payload_len < RTP_HEADER_BYTES)
        return 0;
    out[0] = RTP_VERSION << 6;
    out[1] = (uint8_t)((p->marker ? 0x80 : 0) | p->pt);
    write16(out + 2, p->seq);
    write32(out + 4, p->ts);
    write32(out + 8, p->ssrc);
    if (p->payload_len)
        memcpy(out + RTP_HEADER_BYTES, p->payload, p->payload_len);
    return RTP_HEADER_BYTES + p->payload_len;
}

/* RTCP multiplexed on the RTP port (RFC 5761) shows as these payload
 * types once the marker bit is taken off its packet type 200..204. */
static bool is_rtcp_type(uint8_t pt)
{
    return pt >= 72 && pt <= 76;
}

bool rtp_parse(const uint8_t *buf, size_t len, rtp_packet *out)
{
    if (len < RTP_HEADER_BYTES || len > RTP_MAX_PACKET || buf[0] >> 6 != RTP_VERSION)
        return false;
    uint8_t pt = buf[1] & 0x7f;
    if (is_rtcp_type(pt))
        return false;
    size_t off = RTP_HEADER_BYTES + 4u * (buf[0] & 0x0f);
    if (off > len)
        return false;
    if (buf[0] & 0x10) {
        if (len - off < 4)
            return false;
        size_t ext = 4u * read16(buf + off + 2);
        if (len - off - 4 < ext)
            return false;
        off += 4 + ext;
    }
    size_t end = len;
    if (buf[0] & 0x20) {
        uint8_t pad = buf[len - 1];
        if (pad == 0 || pad > len - off)
            return false;
        end -= pad;
    }
    out->pt = pt;
    out->marker = buf[1] & 0x80;
    out->seq = read16(buf + 2);
    out->ts = read32(buf + 4);
    out->ssrc = read32(buf + 8);
    out->payload = buf + off;
    out->payload_len = end - off;
    return true;
}

bool rtp_event_parse(const uint8_t *payload, size_t len, rtp_event *out)
{
    if (len < RTP_EVENT_BYTES)
        return false;
    out->event = payload[0];
    out->end = payload[1] & 0x80;
    out->volume = payload[1] & 0x3f;
    out->duration = read16(payload + 2);
    return true;
}

char rtp_event_digit(uint8_t event)
{
    static const char keys[] = "0123456789*#ABCD";
    return event < sizeof keys - 1 ? keys[event] : 0;
}

/* True for a packet of the event last reported, or of an earlier one
 * arriving late (reordered end packets must not report again). */
static bool already_seen(const rtp_event_dedupe *d, const rtp_packet *p)
{
    if (!d->have || d->ssrc != p->ssrc)
        return false;
    uint32_t behind = d->ts - p->ts;
    return behind <= RTP_EVENT_REORDER_WINDOW;
}

char rtp_event_feed(rtp_event_dedupe *d, const rtp_packet *p)
{
    rtp_event ev;
    if (!rtp_event_parse(p->payload, p->payload_len, &ev) || already_seen(d, p))
        return 0;
    d->have = true;
    d->ssrc = p->ssrc;
    d->ts = p->ts;
    return rtp_event_digit(ev.event);
}
