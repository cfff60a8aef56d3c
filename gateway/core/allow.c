/* allow — allowlist parsing and matching (see allow.h). Entries are kept as
 * 16-byte IPv6 addresses with a prefix length: an IPv4 entry is stored in
 * its v4-mapped form (::ffff:a.b.c.d, prefix + 96), so one comparison
 * serves both families and v4-mapped peers need no special case. */
#include "allow.h"

#include <arpa/inet.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "mem.h"
#include "metrics.h"

typedef struct {
    unsigned char addr[16];   /* the network, v4 entries v4-mapped */
    int prefix;               /* leading bits that must match, 0..128 */
} allow_entry;

struct allow_list {
    size_t count;             /* entries in use */
    allow_entry entries[ALLOW_MAX_ENTRIES]; /* the parsed entries, in text order */
};

static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Parsing ----------------------------------------------------------------------*/

static bool parse_prefix(const char *s, int max, int *out)
{
    if (*s == '\0' || strlen(s) > 3 || strspn(s, "0123456789") != strlen(s))
        return false;
    int n = atoi(s);
    if (n > max)
        return false;
    *out = n;
    return true;
}

/* One entry, trimmed, without the comma. */
static bool parse_entry(char *text, allow_entry *e)
{
    char *slash = strchr(text, '/');
    if (slash)
        *slash = '\0';
    struct in_addr v4;
    struct in6_addr v6;
    int max;
    if (inet_pton(AF_INET, text, &v4) == 1) {
        memcpy(e->addr, v4_mapped, 12);
        memcpy(e->addr + 12, &v4, 4);
        max = 32;
    } else if (inet_pton(AF_INET6, text, &v6) == 1) {
        memcpy(e->addr, &v6, 16);
        max = 128;
    } else {
        return false;
    }
    int prefix = max;
    if (slash && !parse_prefix(slash + 1, max, &prefix))
        return false;
    e->prefix = prefix + (max == 32 ? 96 : 0);
    return true;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

allow_list *allow_parse(const char *text, char *err, size_t errlen)
{
    if (!text || strlen(text) > ALLOW_MAX_TEXT) {
        snprintf(err, errlen, "the list must be 1-%d bytes", ALLOW_MAX_TEXT);
        return NULL;
    }
    allow_list *l = mem_calloc(1, sizeof *l);
    char *copy = mem_strdup(text);
    char *rest = copy, *item;
    bool ok = true;
    while (ok && (item = strsep(&rest, ",")) != NULL) {
        char *entry = trim(item);
        char shown[64];
        snprintf(shown, sizeof shown, "%s", entry);
        if (l->count == ALLOW_MAX_ENTRIES) {
            snprintf(err, errlen, "more than %d entries", ALLOW_MAX_ENTRIES);
            ok = false;
        } else if (!parse_entry(entry, &l->entries[l->count])) {
            snprintf(err, errlen, "\"%s\" is not an IP address or CIDR prefix", shown);
            ok = false;
        } else {
            l->count++;
        }
    }
    free(copy);
    if (ok && l->count == 0) {
        snprintf(err, errlen, "the list is empty");
        ok = false;
    }
    if (!ok) {
        free(l);
        return NULL;
    }
    return l;
}

void allow_free(allow_list *l)
{
    free(l);
}

/* Matching ----------------------------------------------------------------------*/

/* The peer as a 16-byte address, IPv4 v4-mapped. */
static bool as_v6(const struct sockaddr *sa, unsigned char out[16])
{
    if (sa && sa->sa_family == AF_INET) {
        memcpy(out, v4_mapped, 12);
        memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return true;
    }
    if (sa && sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return true;
    }
    return false;
}

static bool in_prefix(const unsigned char *a, const allow_entry *e)
{
    int whole = e->prefix / 8, bits = e->prefix % 8;
    if (memcmp(a, e->addr, (size_t)whole) != 0)
        return false;
    if (bits == 0)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - bits));
    return (a[whole] & mask) == (e->addr[whole] & mask);
}

bool allow_match(const allow_list *l, const struct sockaddr *sa)
{
    unsigned char a[16];
    if (!l || !as_v6(sa, a))
        return false;
    for (size_t i = 0; i < l->count; i++)
        if (in_prefix(a, &l->entries[i]))
            return true;
    return false;
}

/* Kernel filters -----------------------------------------------------------------*/

/* A classic BPF program over the source address in the packet's network
 * header (SKF_NET_OFF: socket filters see TCP and UDP from the transport
 * header on). Each entry is one short test followed by "accept", so every
 * jump stays within an 8-bit offset however long the list. An IPv4 packet
 * is the v4-mapped address, as in allow_match: its first 96 bits are known
 * when the program is built, so an entry either tests the last word or
 * cannot match it at all. */
#define FILTER_MAX (8 + ALLOW_MAX_ENTRIES * (4 + 13)) /* header, v4 and v6 tests */
#define NET(k) ((uint32_t)(SKF_NET_OFF + (k)))

typedef struct {
    struct sock_filter insns[FILTER_MAX]; /* the program */
    unsigned short len;                   /* instructions written */
} filter;

static void emit(filter *f, uint16_t code, uint8_t jt, uint8_t jf, uint32_t k)
{
    f->insns[f->len++] = (struct sock_filter)BPF_JUMP(code, k, jt, jf);
}

/* The mask of word `w` (0..3) of a prefix of `prefix` bits. */
static uint32_t word_mask(int prefix, int w)
{
    int bits = prefix - 32 * w;
    if (bits <= 0)
        return 0;
    return bits >= 32 ? 0xffffffffu : ~(0xffffffffu >> bits);
}

static uint32_t word_of(const unsigned char *a, int w)
{
    return (uint32_t)a[4 * w] << 24 | (uint32_t)a[4 * w + 1] << 16 | (uint32_t)a[4 * w + 2] << 8 |
           a[4 * w + 3];
}

static void emit_accept_if_equal(filter *f, uint32_t mask, uint32_t net, uint8_t skip)
{
    emit(f, BPF_ALU | BPF_AND | BPF_K, 0, 0, mask);
    emit(f, BPF_JMP | BPF_JEQ | BPF_K, 0, skip, net & mask);
}

/* IPv4 packets: entries whose first 96 bits admit the v4-mapped prefix. */
static void emit_v4_tests(filter *f, const allow_list *l)
{
    for (size_t i = 0; i < l->count; i++) {
        const allow_entry *e = &l->entries[i];
        bool admits = true;
        for (int w = 0; w < 3; w++)
            admits = admits && (word_of(v4_mapped, w) & word_mask(e->prefix, w)) ==
                                   (word_of(e->addr, w) & word_mask(e->prefix, w));
        if (!admits)
            continue;
        emit(f, BPF_LD | BPF_W | BPF_ABS, 0, 0, NET(12));
        emit_accept_if_equal(f, word_mask(e->prefix, 3), word_of(e->addr, 3), 1);
        emit(f, BPF_RET | BPF_K, 0, 0, 0xffffffffu);
    }
}

/* IPv6 packets: every entry, word by word; a word that differs skips the
 * rest of the entry and its accept. */
static void emit_v6_tests(filter *f, const allow_list *l)
{
    for (size_t i = 0; i < l->count; i++) {
        const allow_entry *e = &l->entries[i];
        for (int w = 0; w < 4; w++) {
            uint8_t left = (uint8_t)(3 * (3 - w) + 1); /* the later words' tests and the accept */
            emit(f, BPF_LD | BPF_W | BPF_ABS, 0, 0, NET(8 + 4 * w));
            emit_accept_if_equal(f, word_mask(e->prefix, w), word_of(e->addr, w), left);
        }
        emit(f, BPF_RET | BPF_K, 0, 0, 0xffffffffu);
    }
}

int allow_filter_socket(const allow_list *l, int fd)
{
    static const allow_list none = {0};
    filter *f = mem_calloc(1, sizeof *f);
    emit(f, BPF_LD | BPF_B | BPF_ABS, 0, 0, NET(0));
    emit(f, BPF_ALU | BPF_RSH | BPF_K, 0, 0, 4);
    emit(f, BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 6);
    size_t to_v6 = f->len;
    emit(f, BPF_JMP | BPF_JA, 0, 0, 0); /* its 32-bit offset is set below */
    emit_v4_tests(f, l ? l : &none);
    emit(f, BPF_RET | BPF_K, 0, 0, 0);
    f->insns[to_v6].k = (uint32_t)(f->len - to_v6 - 1);
    emit_v6_tests(f, l ? l : &none);
    emit(f, BPF_RET | BPF_K, 0, 0, 0);
    struct sock_fprog prog = {.len = f->len, .filter = f->insns};
    int rc = setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog);
    free(f);
    return rc;
}

/* Refusals ----------------------------------------------------------------------*/

void allow_format(const struct sockaddr *sa, char *out, size_t size)
{
    unsigned char a[16];
    char text[INET6_ADDRSTRLEN] = "?";
    if (as_v6(sa, a)) {
        if (memcmp(a, v4_mapped, 12) == 0)
            inet_ntop(AF_INET, a + 12, text, sizeof text);
        else
            inet_ntop(AF_INET6, a, text, sizeof text);
    }
    snprintf(out, size, "%s", text);
}

void allow_refused(const char *channel, const char *reason, const struct sockaddr *sa)
{
    char labels[96], source[INET6_ADDRSTRLEN];
    snprintf(labels, sizeof labels, "channel=\"%s\",reason=\"%s\"", channel, reason);
    metrics_inc(metrics_counter("cardline_peer_refused_total",
                                "Peer requests refused before anything was done, by channel and reason.",
                                labels));
    allow_format(sa, source, sizeof source);
    log_warn("peer.refused", "channel=%s reason=%s source=%s", channel, reason, source);
}
