/* digest — keyed digests of short secrets (a one-time code, the first entry
 * of a new PIN) so a later hop, on any gateway, can compare a second entry
 * with the first while only the digest is stored in Redis. The key
 * (handler_env.digest_key, from the configuration) never leaves the
 * process, so a digest of a six-digit secret cannot be reversed by someone
 * who reads Redis alone. */
#ifndef CARDLINE_HANDLER_DIGEST_H
#define CARDLINE_HANDLER_DIGEST_H

#include <stdbool.h>

#include "handlers.h"

#define HANDLER_DIGEST_HEX 32   /* hex characters of a digest (128 bits) */

/* HMAC-SHA256(key, purpose NUL session NUL secret) cut to 128 bits, as hex
 * into `out` (HANDLER_DIGEST_HEX + 1 bytes). `purpose` ("code", "new_pin")
 * keeps digests of one kind from matching another. False without a key. */
bool handler_digest(const handler_env *env, const char *purpose, const char *session,
                    const char *secret, char out[HANDLER_DIGEST_HEX + 1]);

/* Compares two digests in constant time. */
bool handler_digest_equal(const char *a, const char *b);

#endif
