/* allow — source-address allowlists for the peers the gateway trusts by
 * address (a USSD aggregator, Kannel): the one place that parses them and
 * matches a connection's address against them, and the one way a channel
 * counts and logs a peer it refused.
 *
 * A list is written as comma-separated IPv4 or IPv6 addresses and CIDR
 * prefixes ("127.0.0.1, 10.20.0.0/16, ::1, fd00::/8"). An IPv4 peer seen
 * through an IPv6 socket (::ffff:a.b.c.d) matches the IPv4 entries. Lists
 * are immutable once parsed; matching allocates nothing. */
#ifndef CARDLINE_ALLOW_H
#define CARDLINE_ALLOW_H

#include <stdbool.h>
#include <stddef.h>

struct sockaddr;

typedef struct allow_list allow_list;

#define ALLOW_MAX_ENTRIES 64     /* entries one list may hold */
#define ALLOW_MAX_TEXT 4096      /* bytes of the text form */

/* Parses `text`. NULL with the reason in `err` (naming the bad entry) when
 * it is empty, too long, holds more than ALLOW_MAX_ENTRIES entries or any
 * entry that is not an address or prefix. */
allow_list *allow_parse(const char *text, char *err, size_t errlen);

/* True when `sa` (AF_INET or AF_INET6) falls in one of the entries. False
 * for NULL or any other family. */
bool allow_match(const allow_list *l, const struct sockaddr *sa);

void allow_free(allow_list *l);

/* Kernel filters ------------------------------------------------------------*/

/* Attaches to socket `fd` a classic BPF filter that lets the kernel deliver
 * only packets whose source is in `l` (NULL: none): the rest is dropped
 * before the program reads a byte. On a listening TCP socket it applies to
 * connection attempts and is inherited by the connections accepted. For
 * peers that must not reach a parser at all (the SIP stack). 0, or -1 with
 * errno from setsockopt. */
int allow_filter_socket(const allow_list *l, int fd);

/* Refusals ------------------------------------------------------------------*/

/* Writes the numeric address of `sa` ("?" when there is none). */
void allow_format(const struct sockaddr *sa, char *out, size_t size);

/* Counts a refused peer request in cardline_peer_refused_total{channel,
 * reason} and logs it once (event peer.refused) with its source address.
 * `channel` and `reason` are fixed names ("ussd", "signature"), never
 * request data. */
void allow_refused(const char *channel, const char *reason, const struct sockaddr *sa);

#endif
