/* pinhash — one-way hashes of secrets (service PINs, and request
 * fingerprints that may contain a PIN) with crypt(3): SHA-512 crypt ("$6$")
 * with a fresh salt from /dev/urandom. The only place a secret is turned into
 * something storable; never logs and never keeps a copy of its input. */
#ifndef SIM_PINHASH_H
#define SIM_PINHASH_H

#include <stdbool.h>
#include <stddef.h>

#define PINHASH_MAX 128  /* room for a "$6$" hash and its terminator */

/* Hashes `secret` (at most 511 bytes) into `out`. False on failure. */
bool pinhash_make(const char *secret, char out[PINHASH_MAX]);

/* True if `secret` hashes to `hash`. */
bool pinhash_matches(const char *secret, const char *hash);

#endif
