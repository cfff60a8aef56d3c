/* rtp — RTP packets and RFC 4733 telephone events as bytes: packing the
 * G.711 packets cardline sends, parsing what peers send, and turning event
 * packets into digits reported once. No sockets and no clocks (media.c owns
 * those); everything here is a pure function of its arguments. */
#ifndef CARDLINE_VOICE_RTP_H
#define CARDLINE_VOICE_RTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RTP_HEADER_BYTES 12
#define RTP_SAMPLES_PER_PACKET 160  /* 20 ms of 8 kHz G.711, one byte a sample */
#define RTP_PT_PCMU 0
#define RTP_PT_PCMA 8
#define RTP_MAX_PACKET 1500         /* larger datagrams are not ours to parse */

typedef struct {
    uint8_t pt;                /* payload type, 0..127 */
    bool marker;               /* first packet of a talk spurt or of an event */
    uint16_t seq;              /* sequence number */
    uint32_t ts;               /* timestamp, 8 kHz units */
    uint32_t ssrc;             /* synchronisation source */
    const uint8_t *payload;    /* parse: points into the datagram; pack: the bytes to send */
    size_t payload_len;        /* bytes of payload */
} rtp_packet;

/* Packets ---------------------------------------------------------------------*/

/* Writes `p` (version 2, no CSRC, no extension) into out. Returns the
 * datagram length, or 0 when it does not fit in `size`. */
size_t rtp_pack(const rtp_packet *p, uint8_t *out, size_t size);

/* Parses a datagram. False for anything that is not a well-formed RTP v2
 * packet: too short, wrong version, CSRC list, extension or padding running
 * past the end. */
bool rtp_parse(const uint8_t *buf, size_t len, rtp_packet *out);

/* Telephone events (RFC 4733) -------------------------------------------------*/

typedef struct {
    uint8_t event;             /* 0-9, 10 '*', 11 '#', 12-15 A-D, others not digits */
    bool end;                  /* E bit: the event is over */
    uint8_t volume;            /* 0..63, in -dBm0 */
    uint16_t duration;         /* timestamp units since the event began */
} rtp_event;

/* Parses an event payload (4 bytes at least). False when too short. */
bool rtp_event_parse(const uint8_t *payload, size_t len, rtp_event *out);

/* The key of an event code: '0'..'9', '*', '#', 'A'..'D', or 0. */
char rtp_event_digit(uint8_t event);

/* Reports each event once per (SSRC, timestamp), at its first packet that
 * arrives, so a lost end packet loses nothing and the three end packets
 * (often with one sequence number) count once. Zero-initialise. */
typedef struct {
    bool have;                 /* an event was seen */
    uint32_t ssrc;             /* its source */
    uint32_t ts;               /* its timestamp */
} rtp_event_dedupe;

/* Feeds a packet already known to carry the negotiated telephone-event
 * payload type. Returns the digit to report now, or 0 (repeat, malformed or
 * not a key). */
char rtp_event_feed(rtp_event_dedupe *d, const rtp_packet *p);

#endif
