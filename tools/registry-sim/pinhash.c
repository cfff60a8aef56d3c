/* pinhash — crypt_r wrappers (see pinhash.h). struct crypt_data is large
 * (~32 KiB), so it lives on the heap for the length of one call and is wiped
 * before it is freed: it holds a copy of the secret. */
#include "pinhash.h"

#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SALT_RANDOM_BYTES 16

static bool read_urandom(char *buf, size_t n)
{
    FILE *f = fopen("/dev/urandom", "rb");
    if (f == NULL)
        return false;
    bool ok = fread(buf, 1, n, f) == n;
    fclose(f);
    return ok;
}

/* Runs crypt_r and copies a well-formed result into `out`. */
static bool run_crypt(const char *secret, const char *setting, char out[PINHASH_MAX])
{
    struct crypt_data *cd = calloc(1, sizeof *cd);
    if (cd == NULL)
        return false;
    const char *h = crypt_r(secret, setting, cd);
    bool ok = h != NULL && h[0] == '$' && strlen(h) < PINHASH_MAX;
    if (ok)
        memcpy(out, h, strlen(h) + 1);
    explicit_bzero(cd, sizeof *cd);
    free(cd);
    return ok;
}

bool pinhash_make(const char *secret, char out[PINHASH_MAX])
{
    char random[SALT_RANDOM_BYTES];
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    if (strlen(secret) >= CRYPT_MAX_PASSPHRASE_SIZE || !read_urandom(random, sizeof random))
        return false;
    if (crypt_gensalt_rn("$6$", 0, random, sizeof random, setting, sizeof setting) == NULL)
        return false;
    return run_crypt(secret, setting, out);
}

bool pinhash_matches(const char *secret, const char *hash)
{
    char computed[PINHASH_MAX];
    if (strlen(secret) >= CRYPT_MAX_PASSPHRASE_SIZE || !run_crypt(secret, hash, computed))
        return false;
    size_t n = strlen(hash);
    if (strlen(computed) != n)
        return false;
    /* Compare every byte so timing does not tell how much matched. */
    unsigned char diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(computed[i] ^ hash[i]);
    return diff == 0;
}
