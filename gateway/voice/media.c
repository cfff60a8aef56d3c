/* media — owns the RTP sockets of every call, one timerfd that paces them
 * all, and the histogram of send intervals.
 *
 * Pacing: the 20 ms period is cut into SLOTS phase slots of 5 ms. A stream
 * that starts sending joins the emptiest slot and keeps it; its deadlines
 * are that slot's times (grid origin + slot + k * 20 ms). One CLOCK_MONOTONIC
 * timerfd, armed for the next slot that has streams, wakes the loop; the
 * slot's streams send the packets their own deadlines call for. Spreading
 * the streams keeps each burst of sends short: 1,000 streams in one burst
 * took 5-9 ms on loopback, and that variation lands in the intervals of
 * the streams sent last. More slots smooth further but wake the loop more
 * often (20 slots cost about 4 % of a core more at 500 streams).
 * Deadlines advance by exactly 20 ms, so a late wake-up never shifts the
 * grid: a stream that fell behind catches up with the packets it owes, or,
 * past RESYNC_NS, skips ahead (timestamps follow) instead of bursting. A
 * timerfd rather than an event timer keeps microsecond precision on a base
 * made without EVENT_BASE_FLAG_PRECISE_TIMER.
 *
 * Each packet goes out with its own sendto(): sendmmsg() batches datagrams
 * of one socket only, and every call must send from the port it put in its
 * SDP (peers behind NAT and symmetric-RTP peers answer that port).
 *
 * A clip whose `later` sound (speech.h) is not ready when its turn comes
 * is waited for packet by packet, in silence, up to value_wait_ms; the
 * sound is read at that moment only, on this loop, where speech writes it.
 *
 * Callbacks: on_digit runs from the socket's read event; on_played and
 * on_inactive are flagged by the tick (or by voice_stream_play) and run
 * from one deferred event. While any of our events runs user code, a
 * closed stream only becomes a zombie (socket closed, memory kept) and is
 * freed when the outermost of our events returns, so a callee may close
 * any stream, its own included. */
#include "media.h"

#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "dtmf.h"
#include "log.h"
#include "monotime.h"
#include "rtp.h"

#define PACKET_NS 20000000LL /* one packet's worth of time */
#define SLOTS 4              /* phase slots per packet period */
#define SLOT_NS (PACKET_NS / SLOTS)
#define RESYNC_NS 100000000LL /* behind by more than this: skip, don't burst */
#define RECV_BATCH 8          /* datagrams per recvmmsg */
#define RECV_ROUNDS 8         /* recvmmsg calls per wakeup, for fairness */
#define HIST_STEP_US 10       /* histogram resolution */
#define HIST_BUCKETS 10000    /* 0..100 ms; one more bucket for longer */
#define SILENCE_PCMA 0xD5
#define SILENCE_PCMU 0xFF
#define PENDING_PLAYED 0x1   /* on_played is owed */
#define PENDING_INACTIVE 0x2 /* on_inactive is owed */

typedef union {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
} sock_addr;

struct voice_stream {
    voice_media *m;          /* owner */
    size_t idx;              /* position in m->streams */
    int fd;                  /* UDP socket, -1 once closed */
    int port;                /* its local port */
    struct event *rx;        /* read event of fd */
    voice_stream_cbs cbs;    /* the owner's callbacks */
    void *arg;               /* their argument */
    sock_addr peer;          /* where packets go */
    socklen_t peer_len;      /* 0 until voice_stream_set_peer */
    sock_addr source;        /* the source received packets are accepted from */
    bool latched;            /* source is set */
    bool hold;               /* sending paused, inactivity not watched */
    bool dead;               /* closed; while busy, a zombie awaiting the sweep */
    bool marker;             /* the next packet starts a spurt */
    bool playing;            /* clips remain to be sent */
    bool inactive_reported;  /* on_inactive was owed for the current silence */
    uint8_t pending;         /* PENDING_* flags */
    int8_t slot;             /* phase slot while sending, else -1 */
    voice_stream *slot_prev; /* neighbours in the slot's list */
    voice_stream *slot_next;
    uint8_t pt;               /* payload type sent */
    int16_t dtmf_pt;          /* telephone-event payload type, -1 none */
    uint16_t seq;             /* next sequence number */
    uint32_t ts;              /* next timestamp */
    uint32_t ssrc;            /* ours */
    int last_errno;           /* last send error logged, 0 after a success */
    int64_t next_ns;          /* deadline of the next packet */
    int64_t last_deadline_ns; /* deadline of the last packet sent, 0 none */
    int64_t last_sent_ns;     /* when the last packet left, 0 at a spurt's start */
    int64_t last_rx_ns;       /* when valid RTP last arrived (or watching began) */
    const voice_clip **clips; /* play list, owned array of borrowed clips */
    size_t nclips;            /* its length */
    size_t clip;              /* the clip being sent */
    size_t offset;            /* samples of it already sent */
    int waited;               /* packets sent waiting for the current clip's value */
    rtp_event_dedupe dedupe;  /* RFC 4733 events reported */
    voice_inband *inband;     /* tone detector, made at the first audio packet */
};

struct voice_media {
    struct event_base *base; /* the main loop */
    voice_media_options opt; /* options (bind_addr not kept) */
    sock_addr bind;          /* address sockets bind to, port 0 */
    socklen_t bind_len;      /* its length */
    int first_port;          /* the lowest even port of the range */
    int next_port;           /* where the next search for a free port begins */
    voice_stream **streams;  /* open streams, zombies included */
    size_t count;            /* entries of streams */
    size_t cap;              /* its allocation */
    int open;                /* streams not closed */
    int busy;                /* depth of our events running user code */
    int zombies;             /* closed streams awaiting the sweep */
    int npending;            /* streams with pending callbacks */
    int64_t origin_ns;       /* the pacing grid's origin, a period before creation */
    struct {
        voice_stream *head; /* sending streams of this phase */
        int count;          /* their number */
        int64_t due_ns;     /* its next time to send */
    } slots[SLOTS];
    int timer_fd;                               /* one-shot timerfd for the next due slot */
    int64_t armed_ns;                           /* when it fires, 0 when disarmed */
    struct event *tick;                         /* read event of timer_fd */
    struct event *deferred;                     /* runs on_played and on_inactive */
    uint64_t packets;                           /* sent since the window began */
    uint64_t send_errors;                       /* failed sends since then */
    uint64_t values_late;                       /* values skipped after the wait, since then */
    uint64_t values_empty;                      /* empty values skipped, since then */
    int64_t max_interval_ns;                    /* longest interval since then */
    uint32_t hist[HIST_BUCKETS + 1];            /* intervals in HIST_STEP_US buckets */
    uint8_t rx_buf[RECV_BATCH][RTP_MAX_PACKET]; /* receive buffers, shared */
};

/* The first time of phase slot `slot` after `now`. */
static int64_t next_slot_time(const voice_media *m, int slot, int64_t now)
{
    int64_t phase = m->origin_ns + slot * SLOT_NS;
    return phase + ((now - phase) / PACKET_NS + 1) * PACKET_NS;
}

static uint8_t silence_of(uint8_t pt)
{
    return pt == RTP_PT_PCMU ? SILENCE_PCMU : SILENCE_PCMA;
}

/* Timer --------------------------------------------------------------------------*/

/* Arms the timerfd for `at` (0 disarms). */
static void set_timer(voice_media *m, int64_t at)
{
    struct itimerspec its = {
        .it_value = {.tv_sec = at / 1000000000LL, .tv_nsec = at % 1000000000LL},
    };
    if (timerfd_settime(m->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
        log_error("voice.media.timer_failed", "error=%s", log_quote(strerror(errno)).s);
    m->armed_ns = at;
}

static void join_slot(voice_media *m, voice_stream *s, int64_t now)
{
    int best = 0;
    for (int i = 1; i < SLOTS; i++)
        if (m->slots[i].count < m->slots[best].count)
            best = i;
    s->slot = (int8_t)best;
    s->slot_prev = NULL;
    s->slot_next = m->slots[best].head;
    if (s->slot_next)
        s->slot_next->slot_prev = s;
    m->slots[best].head = s;
    if (m->slots[best].count++ == 0)
        m->slots[best].due_ns = next_slot_time(m, best, now);
    s->next_ns = next_slot_time(m, best, now);
    if (!m->armed_ns || m->slots[best].due_ns < m->armed_ns)
        set_timer(m, m->slots[best].due_ns);
}

/* The timer stays armed: a wake-up with nothing due re-arms for what is. */
static void leave_slot(voice_media *m, voice_stream *s)
{
    if (s->slot < 0)
        return;
    if (s->slot_prev)
        s->slot_prev->slot_next = s->slot_next;
    else
        m->slots[s->slot].head = s->slot_next;
    if (s->slot_next)
        s->slot_next->slot_prev = s->slot_prev;
    m->slots[s->slot].count--;
    s->slot = -1;
    s->slot_prev = s->slot_next = NULL;
}

/* Callbacks and zombies ----------------------------------------------------------*/

static void set_pending(voice_stream *s, uint8_t flag)
{
    if (!s->pending) {
        s->m->npending++;
        event_active(s->m->deferred, EV_TIMEOUT, 0);
    }
    s->pending |= flag;
}

static void clear_pending(voice_stream *s, uint8_t flag)
{
    if (!s->pending)
        return;
    s->pending &= (uint8_t)~flag;
    if (!s->pending)
        s->m->npending--;
}

static void free_stream(voice_stream *s)
{
    voice_media *m = s->m;
    m->streams[s->idx] = m->streams[--m->count];
    m->streams[s->idx]->idx = s->idx;
    voice_inband_free(s->inband);
    free(s->clips);
    free(s);
}

/* Frees the zombies once no event of ours is running user code. */
static void sweep(voice_media *m)
{
    for (size_t i = m->count; i-- > 0 && m->zombies;) {
        voice_stream *s = m->streams[i];
        if (s->dead) {
            m->zombies--;
            free_stream(s);
        }
    }
}

static void enter(voice_media *m)
{
    m->busy++;
}

static void leave(voice_media *m)
{
    if (--m->busy == 0 && m->zombies)
        sweep(m);
}

static void on_deferred(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    voice_media *m = arg;
    enter(m);
    for (size_t i = 0; i < m->count && m->npending; i++) {
        voice_stream *s = m->streams[i];
        if (s->dead || !s->pending)
            continue;
        uint8_t due = s->pending;
        clear_pending(s, due);
        if ((due & PENDING_PLAYED) && s->cbs.on_played)
            s->cbs.on_played(s->arg);
        if ((due & PENDING_INACTIVE) && !s->dead && s->cbs.on_inactive)
            s->cbs.on_inactive(s->arg);
    }
    leave(m);
}

/* Sending ------------------------------------------------------------------------*/

static void finish_play(voice_stream *s)
{
    free(s->clips);
    s->clips = NULL;
    s->nclips = s->clip = s->offset = 0;
    s->playing = false;
    set_pending(s, PENDING_PLAYED);
}

/* The clip to send now, in *now: the clip itself, or its value once ready.
 * False while its value is awaited (the packet's rest is silence); a value
 * late past value_wait_ms, or empty, is skipped (counted; a late one is
 * logged). */
static bool current_clip(voice_stream *s, voice_clip *now)
{
    const voice_clip *c = s->clips[s->clip];
    *now = *c;
    if (!c->later)
        return true;
    if (!c->later->ready) {
        if (++s->waited * (PACKET_NS / 1000000) <= s->m->opt.value_wait_ms)
            return false;
        s->m->values_late++;
        log_warn("voice.value_late", "port=%d waited_ms=%d", s->port, s->m->opt.value_wait_ms);
    } else if (!c->later->samples) {
        s->m->values_empty++;
    }
    now->pcma = c->later->ready ? c->later->pcma : NULL;
    now->pcmu = c->later->ready ? c->later->pcmu : NULL;
    now->samples = c->later->ready ? c->later->samples : 0;
    return true;
}

/* The next RTP_SAMPLES_PER_PACKET samples of the play list, silence after
 * its end. A clip ending mid-packet continues with the next one. */
static void fill_payload(voice_stream *s, uint8_t *out)
{
    size_t filled = 0;
    voice_clip now;
    while (s->playing && filled < RTP_SAMPLES_PER_PACKET && s->clip < s->nclips) {
        if (!current_clip(s, &now))
            break;
        const voice_clip *c = &now;
        const uint8_t *src = s->pt == RTP_PT_PCMU ? c->pcmu : c->pcma;
        size_t take = c->samples - s->offset;
        if (take > RTP_SAMPLES_PER_PACKET - filled)
            take = RTP_SAMPLES_PER_PACKET - filled;
        if (src)
            memcpy(out + filled, src + s->offset, take);
        else
            memset(out + filled, silence_of(s->pt), take);
        filled += take;
        s->offset += take;
        if (s->offset == c->samples) {
            s->clip++;
            s->offset = 0;
            s->waited = 0;
        }
    }
    if (s->playing && s->clip == s->nclips)
        finish_play(s);
    memset(out + filled, silence_of(s->pt), RTP_SAMPLES_PER_PACKET - filled);
}

static void record_interval(voice_media *m, int64_t ns)
{
    if (ns > m->max_interval_ns)
        m->max_interval_ns = ns;
    int64_t bucket = ns / 1000 / HIST_STEP_US;
    m->hist[bucket < HIST_BUCKETS ? bucket : HIST_BUCKETS]++;
}

static void note_send_error(voice_media *m, voice_stream *s, int err)
{
    m->send_errors++;
    if (err != s->last_errno)
        log_warn("voice.rtp.send_failed", "port=%d error=%s", s->port, log_quote(strerror(err)).s);
    s->last_errno = err;
}

static void send_packet(voice_media *m, voice_stream *s)
{
    uint8_t payload[RTP_SAMPLES_PER_PACKET];
    fill_payload(s, payload);
    rtp_packet p = {.pt = s->pt,
                    .marker = s->marker,
                    .seq = s->seq,
                    .ts = s->ts,
                    .ssrc = s->ssrc,
                    .payload = payload,
                    .payload_len = sizeof payload};
    uint8_t buf[RTP_HEADER_BYTES + RTP_SAMPLES_PER_PACKET];
    size_t len = rtp_pack(&p, buf, sizeof buf);
    int64_t now = monotime_now();
    if (sendto(s->fd, buf, len, 0, &s->peer.sa, s->peer_len) < 0) {
        note_send_error(m, s, errno);
    } else {
        m->packets++;
        s->last_errno = 0;
    }
    if (s->last_sent_ns)
        record_interval(m, now - s->last_sent_ns);
    s->last_sent_ns = now;
    s->marker = false;
    s->seq++;
    s->ts += RTP_SAMPLES_PER_PACKET;
    s->last_deadline_ns = s->next_ns;
    s->next_ns += PACKET_NS;
}

/* Sends what `s` owes at `now`: nothing before its deadline, the packets
 * of a short delay at once, one packet after a long stall. */
static void pace(voice_media *m, voice_stream *s, int64_t now)
{
    int64_t late = now - s->next_ns;
    if (late < 0)
        return;
    if (late > RESYNC_NS) {
        int64_t skip = late / PACKET_NS;
        s->ts += (uint32_t)(skip * RTP_SAMPLES_PER_PACKET);
        s->next_ns += skip * PACKET_NS;
        s->marker = true;
    }
    while (s->next_ns <= now)
        send_packet(m, s);
}

static void watch_inactivity(voice_media *m, voice_stream *s, int64_t now)
{
    if (!m->opt.inactivity_ms || s->inactive_reported)
        return;
    if (now - s->last_rx_ns >= (int64_t)m->opt.inactivity_ms * 1000000LL) {
        s->inactive_reported = true;
        set_pending(s, PENDING_INACTIVE);
    }
}

/* Sends for every slot that is due and re-arms for the next one. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    voice_media *m = arg;
    uint64_t expirations;
    if (read(fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
        log_warn("voice.media.timer_read_failed", "error=%s", log_quote(strerror(errno)).s);
    int64_t now = monotime_now();
    int64_t next = 0;
    for (int i = 0; i < SLOTS; i++) {
        if (!m->slots[i].count)
            continue;
        if (m->slots[i].due_ns <= now) {
            for (voice_stream *s = m->slots[i].head; s; s = s->slot_next) {
                pace(m, s, now);
                watch_inactivity(m, s, now);
            }
            m->slots[i].due_ns = next_slot_time(m, i, now);
        }
        if (!next || m->slots[i].due_ns < next)
            next = m->slots[i].due_ns;
    }
    set_timer(m, next);
}

/* Starts (or resumes) sending at the next time of a phase slot; the
 * timestamp jumps by the time paused, as if the samples had been sent. */
static void start_sending(voice_stream *s)
{
    voice_media *m = s->m;
    int64_t now = monotime_now();
    join_slot(m, s, now);
    if (s->last_deadline_ns) {
        if (s->next_ns < s->last_deadline_ns + PACKET_NS)
            s->next_ns += PACKET_NS; /* a new slot must not send early */
        s->ts += (uint32_t)((s->next_ns - s->last_deadline_ns) / PACKET_NS - 1) * RTP_SAMPLES_PER_PACKET;
    }
    s->marker = true;
    s->last_sent_ns = 0;
    s->last_rx_ns = now;
    s->inactive_reported = false;
    clear_pending(s, PENDING_INACTIVE);
}

/* Receiving ----------------------------------------------------------------------*/

static bool same_addr(const sock_addr *a, const sock_addr *b)
{
    if (a->sa.sa_family != b->sa.sa_family)
        return false;
    if (a->sa.sa_family == AF_INET)
        return a->in.sin_port == b->in.sin_port && a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
    return a->in6.sin6_port == b->in6.sin6_port &&
           memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, sizeof a->in6.sin6_addr) == 0;
}

/* Packets count from one source: the peer of the SDP whenever it sends,
 * else the first that sent valid RTP (a peer behind NAT). Others could
 * only inject keys. */
static bool accept_source(voice_stream *s, const sock_addr *from)
{
    if (same_addr(from, &s->peer) || !s->latched) {
        s->source = *from;
        s->latched = true;
        return true;
    }
    return same_addr(from, &s->source);
}

static void emit_digit(char digit, void *arg)
{
    voice_stream *s = arg;
    if (!s->dead && s->cbs.on_digit)
        s->cbs.on_digit(digit, s->arg);
}

static void handle_datagram(voice_stream *s, const uint8_t *buf, size_t len, const sock_addr *from)
{
    rtp_packet p;
    if (!s->peer_len || !rtp_parse(buf, len, &p) || !accept_source(s, from))
        return;
    s->last_rx_ns = monotime_now();
    s->inactive_reported = false;
    clear_pending(s, PENDING_INACTIVE);
    if (s->dtmf_pt >= 0) {
        char digit = p.pt == s->dtmf_pt ? rtp_event_feed(&s->dedupe, &p) : 0;
        if (digit)
            emit_digit(digit, s);
        return;
    }
    if (p.pt != RTP_PT_PCMA && p.pt != RTP_PT_PCMU)
        return;
    if (!s->inband && !(s->inband = voice_inband_new())) {
        log_error("voice.media.oom", NULL);
        return;
    }
    voice_inband_feed(s->inband, p.pt, p.payload, p.payload_len, emit_digit, s);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    voice_stream *s = arg;
    voice_media *m = s->m;
    enter(m);
    for (int round = 0; round < RECV_ROUNDS && !s->dead; round++) {
        struct mmsghdr msgs[RECV_BATCH];
        struct iovec iov[RECV_BATCH];
        sock_addr from[RECV_BATCH];
        for (int i = 0; i < RECV_BATCH; i++) {
            iov[i] = (struct iovec){.iov_base = m->rx_buf[i], .iov_len = RTP_MAX_PACKET};
            msgs[i] = (struct mmsghdr){
                .msg_hdr = {.msg_name = &from[i], .msg_namelen = sizeof from[i], .msg_iov = &iov[i], .msg_iovlen = 1}};
        }
        int n = recvmmsg(fd, msgs, RECV_BATCH, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                log_warn("voice.rtp.recv_failed", "port=%d error=%s", s->port, log_quote(strerror(errno)).s);
            break;
        }
        for (int i = 0; i < n && !s->dead; i++)
            if (!(msgs[i].msg_hdr.msg_flags & MSG_TRUNC))
                handle_datagram(s, m->rx_buf[i], msgs[i].msg_len, &from[i]);
        if (n < RECV_BATCH)
            break;
    }
    leave(m);
}

/* Lifecycle ----------------------------------------------------------------------*/

static bool parse_bind(voice_media *m, const char *addr)
{
    memset(&m->bind, 0, sizeof m->bind);
    if (addr && inet_pton(AF_INET, addr, &m->bind.in.sin_addr) == 1) {
        m->bind.in.sin_family = AF_INET;
        m->bind_len = sizeof m->bind.in;
        return true;
    }
    if (addr && inet_pton(AF_INET6, addr, &m->bind.in6.sin6_addr) == 1) {
        m->bind.in6.sin6_family = AF_INET6;
        m->bind_len = sizeof m->bind.in6;
        return true;
    }
    return false;
}

static const char *check_options(const voice_media_options *o)
{
    if (o->port_min < 1 || o->port_max > 65535 || o->port_min > o->port_max)
        return "port range";
    if ((o->port_min + 1) / 2 * 2 > o->port_max)
        return "no even port in range";
    if (o->max_streams < 1)
        return "max_streams";
    if (o->inactivity_ms < 0)
        return "inactivity_ms";
    if (o->value_wait_ms < 0 || o->value_wait_ms > 60000)
        return "value_wait_ms";
    return NULL;
}

voice_media *voice_media_new(struct event_base *base, const voice_media_options *opt)
{
    const char *bad = check_options(opt);
    if (bad) {
        log_error("voice.media.bad_option", "option=%s", log_quote(bad).s);
        return NULL;
    }
    voice_media *m = calloc(1, sizeof *m);
    if (!m) {
        log_error("voice.media.oom", NULL);
        return NULL;
    }
    if (!parse_bind(m, opt->bind_addr)) {
        log_error("voice.media.bad_option", "option=bind_addr value=%s",
                  log_quote(opt->bind_addr ? opt->bind_addr : "").s);
        free(m);
        return NULL;
    }
    m->base = base;
    m->opt = *opt;
    m->opt.bind_addr = NULL;
    m->first_port = (opt->port_min + 1) / 2 * 2;
    m->next_port = m->first_port;
    m->origin_ns = monotime_now() - PACKET_NS;
    m->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (m->timer_fd >= 0) {
        m->tick = event_new(base, m->timer_fd, EV_READ | EV_PERSIST, on_tick, m);
        m->deferred = event_new(base, -1, 0, on_deferred, m);
    }
    if (!m->tick || !m->deferred || event_add(m->tick, NULL) < 0) {
        log_error("voice.media.setup_failed", "error=%s", log_quote(strerror(errno)).s);
        voice_media_free(m);
        return NULL;
    }
    return m;
}

void voice_media_free(voice_media *m)
{
    if (!m)
        return;
    m->busy = 0;
    sweep(m);
    while (m->count)
        voice_stream_close(m->streams[m->count - 1]);
    if (m->tick)
        event_free(m->tick);
    if (m->deferred)
        event_free(m->deferred);
    if (m->timer_fd >= 0)
        close(m->timer_fd);
    free(m->streams);
    free(m);
}

/* A socket bound to the next free even port after the cursor, or -1. */
static int bind_free_port(voice_media *m, int *port)
{
    int fd = socket(m->bind.sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_warn("voice.rtp.socket_failed", "error=%s", log_quote(strerror(errno)).s);
        return -1;
    }
    int ports = (m->opt.port_max - m->first_port) / 2 + 1;
    for (int i = 0; i < ports; i++) {
        int candidate = m->next_port;
        m->next_port = candidate + 2 > m->opt.port_max ? m->first_port : candidate + 2;
        sock_addr a = m->bind;
        if (a.sa.sa_family == AF_INET)
            a.in.sin_port = htons((uint16_t)candidate);
        else
            a.in6.sin6_port = htons((uint16_t)candidate);
        if (bind(fd, &a.sa, m->bind_len) == 0) {
            *port = candidate;
            return fd;
        }
        if (errno != EADDRINUSE && errno != EACCES) {
            log_warn("voice.rtp.bind_failed", "port=%d error=%s", candidate, log_quote(strerror(errno)).s);
            break;
        }
    }
    close(fd);
    return -1;
}

/* Voice packets ask the network for expedited forwarding (DSCP EF). */
static void mark_voice(int fd, int family)
{
    int tos = 0xB8;
    if (family == AF_INET)
        setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof tos);
    else
        setsockopt(fd, IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof tos);
}

static bool add_to_table(voice_media *m, voice_stream *s)
{
    if (m->count == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 16;
        voice_stream **grown = realloc(m->streams, cap * sizeof *grown);
        if (!grown)
            return false;
        m->streams = grown;
        m->cap = cap;
    }
    s->idx = m->count;
    m->streams[m->count++] = s;
    return true;
}

static void random_start(voice_stream *s)
{
    uint8_t r[10];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        log_warn("voice.rtp.random_failed", NULL);
    memcpy(&s->seq, r, sizeof s->seq);
    memcpy(&s->ts, r + 2, sizeof s->ts);
    memcpy(&s->ssrc, r + 6, sizeof s->ssrc);
}

voice_stream *voice_stream_open(voice_media *m, const voice_stream_cbs *cbs, void *arg)
{
    if (m->open >= m->opt.max_streams) {
        log_warn("voice.media.full", "max_streams=%d", m->opt.max_streams);
        return NULL;
    }
    voice_stream *s = calloc(1, sizeof *s);
    if (!s) {
        log_error("voice.media.oom", NULL);
        return NULL;
    }
    s->m = m;
    s->cbs = *cbs;
    s->arg = arg;
    s->dtmf_pt = -1;
    s->pt = RTP_PT_PCMA;
    s->slot = -1;
    random_start(s);
    s->fd = bind_free_port(m, &s->port);
    if (s->fd < 0) {
        log_warn("voice.media.no_port", "port_min=%d port_max=%d", m->opt.port_min, m->opt.port_max);
        free(s);
        return NULL;
    }
    mark_voice(s->fd, m->bind.sa.sa_family);
    s->rx = event_new(m->base, s->fd, EV_READ | EV_PERSIST, on_readable, s);
    if (!s->rx || event_add(s->rx, NULL) < 0 || !add_to_table(m, s)) {
        log_error("voice.media.setup_failed", "port=%d", s->port);
        if (s->rx)
            event_free(s->rx);
        close(s->fd);
        free(s);
        return NULL;
    }
    m->open++;
    return s;
}

int voice_stream_port(const voice_stream *s)
{
    return s->port;
}

/* An address packets can go to: c=0.0.0.0 (old-style hold) or port 0 is
 * not, and Linux would deliver a datagram to 0.0.0.0 to this very host. */
static bool is_destination(const sock_addr *a)
{
    if (a->sa.sa_family == AF_INET)
        return a->in.sin_port && a->in.sin_addr.s_addr != htonl(INADDR_ANY);
    return a->in6.sin6_port && !IN6_IS_ADDR_UNSPECIFIED(&a->in6.sin6_addr);
}

static bool should_send(const voice_stream *s)
{
    return s->peer_len && !s->hold && is_destination(&s->peer);
}

static socklen_t addr_len_of(int family)
{
    return family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

void voice_stream_set_peer(voice_stream *s, const struct sockaddr *addr, socklen_t len, int pt, int dtmf_pt)
{
    if (s->dead)
        return;
    int family = s->m->bind.sa.sa_family;
    if ((pt != RTP_PT_PCMA && pt != RTP_PT_PCMU) || dtmf_pt < -1 || dtmf_pt > 127 || addr->sa_family != family ||
        len < addr_len_of(family)) {
        log_warn("voice.rtp.bad_peer", "port=%d pt=%d dtmf_pt=%d family=%d", s->port, pt, dtmf_pt, addr->sa_family);
        return;
    }
    bool was_sending = s->slot >= 0;
    memset(&s->peer, 0, sizeof s->peer);
    memcpy(&s->peer, addr, addr_len_of(family));
    s->peer_len = addr_len_of(family);
    s->pt = (uint8_t)pt;
    s->dtmf_pt = (int16_t)dtmf_pt;
    s->latched = false;
    s->marker = true;
    if (!should_send(s))
        leave_slot(s->m, s);
    else if (!was_sending)
        start_sending(s);
}

void voice_stream_hold(voice_stream *s, bool on)
{
    if (s->dead || s->hold == on)
        return;
    s->hold = on;
    if (on) {
        leave_slot(s->m, s);
        clear_pending(s, PENDING_INACTIVE);
    } else if (should_send(s)) {
        start_sending(s);
    }
}

void voice_stream_stop(voice_stream *s)
{
    free(s->clips);
    s->clips = NULL;
    s->nclips = s->clip = s->offset = 0;
    s->waited = 0;
    s->playing = false;
    clear_pending(s, PENDING_PLAYED);
}

void voice_stream_play(voice_stream *s, const voice_clip *const *clips, size_t n)
{
    voice_stream_stop(s);
    if (s->dead)
        return;
    if (n && !(s->clips = malloc(n * sizeof *s->clips)))
        log_error("voice.media.oom", NULL);
    if (!s->clips) {
        set_pending(s, PENDING_PLAYED);
        return;
    }
    memcpy(s->clips, clips, n * sizeof *s->clips);
    s->nclips = n;
    s->playing = true;
    s->marker = true;
}

void voice_stream_close(voice_stream *s)
{
    if (!s || s->dead)
        return;
    voice_media *m = s->m;
    leave_slot(m, s);
    event_free(s->rx);
    s->rx = NULL;
    close(s->fd);
    s->fd = -1;
    clear_pending(s, s->pending);
    m->open--;
    s->dead = true;
    if (m->busy)
        m->zombies++;
    else
        free_stream(s);
}

/* Figures ------------------------------------------------------------------------*/

/* The middle of the bucket holding the q-quantile, never above the exact
 * maximum (which may lie in the lower half of its bucket). */
static double percentile_us(const voice_media *m, uint64_t total, double q)
{
    double max_us = (double)m->max_interval_ns / 1000.0;
    uint64_t want = (uint64_t)(q * (double)total + 0.999999);
    uint64_t seen = 0;
    for (int b = 0; b < HIST_BUCKETS; b++) {
        seen += m->hist[b];
        if (seen >= want) {
            double mid = (b + 0.5) * HIST_STEP_US;
            return mid < max_us ? mid : max_us;
        }
    }
    return max_us;
}

void voice_media_stats_get(voice_media *m, voice_media_stats *out, bool reset)
{
    uint64_t total = 0;
    for (int b = 0; b <= HIST_BUCKETS; b++)
        total += m->hist[b];
    *out = (voice_media_stats){
        .packets = m->packets,
        .send_errors = m->send_errors,
        .p50_us = total ? percentile_us(m, total, 0.50) : 0,
        .p99_us = total ? percentile_us(m, total, 0.99) : 0,
        .max_us = (double)m->max_interval_ns / 1000.0,
        .streams = m->open,
        .values_late = m->values_late,
        .values_empty = m->values_empty,
    };
    if (reset) {
        memset(m->hist, 0, sizeof m->hist);
        m->packets = m->send_errors = 0;
        m->values_late = m->values_empty = 0;
        m->max_interval_ns = 0;
    }
}
