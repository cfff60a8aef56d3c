/* allow — allowlist parsing and matching (see allow.h). Entries are kept as
 * 16-byte IPv6 addresses with a prefix length: an IPv4 entry is stored in
 * its v4-mapped form (::ffff:a.b.c.d, prefix + 96), so one comparison
 * serves both families and v4-mapped peers need no special case. */
#include "allow.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
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
    allow_list *l = calloc(1, sizeof *l);
    char *copy = strdup(text);
    if (!l || !copy)
        abort();
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
