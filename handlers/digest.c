/* digest — keyed digests of short secrets (see digest.h), on libcrypto's
 * HMAC. The scratch buffer holding the secret is wiped before returning. */
#include "digest.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#define DIGEST_INPUT_MAX 256

bool handler_digest(const handler_env *env, const char *purpose, const char *session,
                    const char *secret, char out[HANDLER_DIGEST_HEX + 1])
{
    out[0] = '\0';
    if (!env || !env->digest_key || !env->digest_key_len || !purpose || !session || !secret)
        return false;
    size_t lp = strlen(purpose), ls = strlen(session), lx = strlen(secret);
    if (lp + ls + lx + 2 > DIGEST_INPUT_MAX)
        return false;
    unsigned char in[DIGEST_INPUT_MAX];
    memcpy(in, purpose, lp + 1);
    memcpy(in + lp + 1, session, ls + 1);
    memcpy(in + lp + ls + 2, secret, lx);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    bool ok = HMAC(EVP_sha256(), env->digest_key, (int)env->digest_key_len, in, lp + ls + 2 + lx, mac,
                   &mac_len) != NULL;
    OPENSSL_cleanse(in, sizeof in);
    if (!ok || mac_len < HANDLER_DIGEST_HEX / 2)
        return false;
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < HANDLER_DIGEST_HEX / 2; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[HANDLER_DIGEST_HEX] = '\0';
    return true;
}

bool handler_digest_equal(const char *a, const char *b)
{
    if (!a || !b || strlen(a) != HANDLER_DIGEST_HEX || strlen(b) != HANDLER_DIGEST_HEX)
        return false;
    return CRYPTO_memcmp(a, b, HANDLER_DIGEST_HEX) == 0;
}
