/* ussd_wire — request signatures and form fields of the aggregator wire
 * (see ussd_wire.h). HMAC by OpenSSL; the comparison is CRYPTO_memcmp on
 * the decoded bytes, so its time does not depend on where they differ. */
#include "ussd_wire.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "utf8.h"

#define SIG_PREFIX "sha256="
#define SIG_BYTES 32
#define TIMESTAMP_MAX 12

static bool mac_of(const char *secret, const char *timestamp, const char *body, size_t len,
                   unsigned char out[SIG_BYTES])
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *c = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac);
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
                           OSSL_PARAM_construct_end()};
    size_t n = 0;
    bool ok = c && EVP_MAC_init(c, (const unsigned char *)secret, strlen(secret), params) &&
              EVP_MAC_update(c, (const unsigned char *)timestamp, strlen(timestamp)) &&
              EVP_MAC_update(c, (const unsigned char *)".", 1) &&
              EVP_MAC_update(c, (const unsigned char *)body, len) && EVP_MAC_final(c, out, &n, SIG_BYTES) &&
              n == SIG_BYTES;
    EVP_MAC_CTX_free(c);
    return ok;
}

static bool timestamp_ok(const char *ts, long long *out)
{
    size_t n = ts ? strlen(ts) : 0;
    if (n == 0 || n > TIMESTAMP_MAX || strspn(ts, "0123456789") != n)
        return false;
    *out = strtoll(ts, NULL, 10);
    return true;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool decode_signature(const char *sig, unsigned char out[SIG_BYTES])
{
    size_t plen = strlen(SIG_PREFIX);
    if (strncmp(sig, SIG_PREFIX, plen) != 0 || strlen(sig) != plen + 2 * SIG_BYTES)
        return false;
    for (size_t i = 0; i < SIG_BYTES; i++) {
        int hi = hex_value(sig[plen + 2 * i]), lo = hex_value(sig[plen + 2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

bool ussd_sign(const char *secret, const char *timestamp, const char *body, size_t len,
               char out[USSD_SIGNATURE_MAX])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char mac[SIG_BYTES];
    long long ts;
    if (!secret || !*secret || !timestamp_ok(timestamp, &ts) || !mac_of(secret, timestamp, body, len, mac))
        return false;
    char *p = out + snprintf(out, USSD_SIGNATURE_MAX, SIG_PREFIX);
    for (size_t i = 0; i < SIG_BYTES; i++) {
        *p++ = hex[mac[i] >> 4];
        *p++ = hex[mac[i] & 15];
    }
    *p = '\0';
    return true;
}

ussd_sig ussd_wire_verify(const char *secret, const char *timestamp, const char *signature, const char *body,
                          size_t len, time_t now, int max_skew_s)
{
    unsigned char want[SIG_BYTES], got[SIG_BYTES];
    long long ts;
    if (!timestamp || !signature)
        return USSD_SIG_MISSING;
    if (!secret || !*secret || !timestamp_ok(timestamp, &ts) || !decode_signature(signature, got) ||
        !mac_of(secret, timestamp, body, len, want) || CRYPTO_memcmp(want, got, SIG_BYTES) != 0)
        return USSD_SIG_BAD;
    long long skew = (long long)now - ts;
    return skew > max_skew_s || skew < -(long long)max_skew_s ? USSD_SIG_STALE : USSD_SIG_OK;
}

bool ussd_wire_chars_ok(const char *s, size_t max, const char *allowed)
{
    size_t n = strnlen(s, max + 1);
    return n > 0 && n <= max && strspn(s, allowed) == n;
}

static const char *check_fields(struct evkeyvalq *form, int max_text_bytes, ussd_fields *q, int *status)
{
    q->session_id = evhttp_find_header(form, "sessionId");
    q->code = evhttp_find_header(form, "serviceCode");
    q->phone = evhttp_find_header(form, "phoneNumber");
    q->text = evhttp_find_header(form, "text");
    const char *network = evhttp_find_header(form, "networkCode");
    if (!q->text)
        q->text = "";
    *status = 400;
    if (!q->session_id || !q->session_id[0])
        return "sessionId is required";
    if (!q->code || !q->code[0])
        return "serviceCode is required";
    if (!q->phone || !q->phone[0])
        return "phoneNumber is required";
    if (!ussd_wire_chars_ok(q->session_id, USSD_MAX_SESSION_ID, USSD_ID_CHARS))
        return "sessionId must be 1-64 letters, digits or -_.:";
    if (!ussd_wire_chars_ok(q->code, USSD_MAX_CODE, "0123456789*#"))
        return "serviceCode must be 1-32 of 0-9 * #";
    if (!ussd_wire_chars_ok(q->phone, USSD_MAX_PHONE, USSD_PHONE_CHARS))
        return "phoneNumber must be 1-32 of + and digits";
    if (network && network[0] && !ussd_wire_chars_ok(network, USSD_MAX_NETWORK, "0123456789"))
        return "networkCode must be 1-16 digits";
    if (strlen(q->text) > (size_t)max_text_bytes) {
        *status = 413;
        return "text is too long";
    }
    if (!utf8_valid(q->text))
        return "text must be UTF-8";
    return NULL;
}

const char *ussd_wire_fields(const char *body, size_t len, int max_text_bytes, struct evkeyvalq *form,
                             ussd_fields *out, int *status)
{
    *out = (ussd_fields){0};
    *status = 400;
    if (memchr(body, '\0', len))
        return "the body holds a NUL byte";
    char *copy = mem_malloc(len + 1);
    memcpy(copy, body, len);
    copy[len] = '\0';
    int rc = evhttp_parse_query_str(copy, form);
    explicit_bzero(copy, len);
    free(copy);
    if (rc != 0)
        return "the form is malformed";
    return check_fields(form, max_text_bytes, out, status);
}
