/* sms_wire — Kannel's get-url form and key (see sms_wire.h). The key is
 * compared as SHA-256 digests with CRYPTO_memcmp: equal lengths whatever
 * was sent, and a time that does not depend on where the bytes differ. */
#include "sms_wire.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>

#include "domain.h"
#include "utf8.h"

bool sms_wire_key_ok(const char *secret, const char *key)
{
    unsigned char a[EVP_MAX_MD_SIZE], b[EVP_MAX_MD_SIZE];
    unsigned int alen = 0, blen = 0;
    if (!secret || !key || !EVP_Digest(secret, strlen(secret), a, &alen, EVP_sha256(), NULL) ||
        !EVP_Digest(key, strlen(key), b, &blen, EVP_sha256(), NULL))
        return false;
    return alen == blen && CRYPTO_memcmp(a, b, alen) == 0;
}

bool sms_wire_parse(const char *text, int max_text_bytes, struct evkeyvalq *form, sms_mo *mo, sms_refusal *why)
{
    *mo = (sms_mo){0};
    *why = (sms_refusal){400, "bad_form", "the form could not be parsed"};
    if (!text || evhttp_parse_query_str(text, form) != 0)
        return false;
    mo->from = evhttp_find_header(form, "from");
    mo->text = evhttp_find_header(form, "text");
    mo->key = evhttp_find_header(form, "key");
    if (!mo->from || !mo->text)
        *why = (sms_refusal){400, "missing_field", "from and text are required"};
    else if (strlen(mo->text) > (size_t)max_text_bytes)
        *why = (sms_refusal){413, "text_too_long", "text is longer than allowed"};
    else if (!utf8_valid(mo->text) || !utf8_valid(mo->from))
        *why = (sms_refusal){400, "bad_encoding", "from and text must be UTF-8"};
    else if (!domain_phone_normalize(mo->from, false, mo->sender))
        *why = (sms_refusal){400, "bad_sender", "from is not a phone number"};
    else
        return true;
    return false;
}
