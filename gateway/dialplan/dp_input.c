/* dp_input — what callers type: PCRE2 patterns (routes, ask nodes) and the
 * checks of an ask node's input, and the choice of a menu option.
 *
 * One pcre2_match_data block serves every match. It is a static, created on
 * first use and kept for the life of the process: matching is main-thread
 * only, like the rest of the engine's path. */
#include "dp_int.h"

#include <stdio.h>
#include <string.h>

#include "domain.h"
#include "utf8.h"

static pcre2_match_data *match_data;

pcre2_code *dp_compile(dialplan *dp, const char *pattern, bool anchored, char *err, size_t err_size)
{
    int code = 0;
    PCRE2_SIZE offset = 0;
    uint32_t opts = PCRE2_UTF | (anchored ? PCRE2_ANCHORED | PCRE2_ENDANCHORED : 0);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opts, &code, &offset, NULL);
    if (!re) {
        PCRE2_UCHAR msg[200];
        pcre2_get_error_message(code, msg, sizeof msg);
        snprintf(err, err_size, "at offset %zu: %s", (size_t)offset, (const char *)msg);
        return NULL;
    }
    /* Without JIT support the interpreter matches the same way, only slower. */
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    dp->codes = dp_grow(dp->codes, &dp->cap_codes, dp->n_codes, sizeof *dp->codes);
    dp->codes[dp->n_codes++] = re;
    return re;
}

bool dp_matches(const pcre2_code *code, const char *subject)
{
    if (!match_data) {
        match_data = pcre2_match_data_create(1, NULL);
        if (!match_data)
            return false;
    }
    /* Invalid UTF-8 from a channel is a non-match, not an error to raise. */
    return pcre2_match(code, (PCRE2_SPTR)subject, PCRE2_ZERO_TERMINATED, 0, 0, match_data, NULL) >= 0;
}

static bool all_digits(const char *s)
{
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static bool mobile_valid(const char *s)
{
    size_t n = strlen(s);
    if (s[0] == '+')
        return n >= 9 && n <= 16 && all_digits(s + 1);
    return n == 11 && s[0] == '1' && all_digits(s);
}

/* Applies the validator to `in`, writing the normalized form to `norm`. */
static bool validate(dp_validator v, const char *in, char *norm, size_t size)
{
    snprintf(norm, size, "%s", in);
    switch (v) {
    case DP_VALIDATE_CITIZEN_ID: {
        char id[DOMAIN_ID_LEN + 1];
        if (!domain_id_normalize(in, id) || !domain_id_valid(id))
            return false;
        snprintf(norm, size, "%s", id);
        return true;
    }
    case DP_VALIDATE_CARD_NUMBER:
        return domain_card_number_valid(in);
    case DP_VALIDATE_MOBILE:
        return mobile_valid(in);
    case DP_VALIDATE_PIN:
        return strlen(in) == DOMAIN_PIN_LEN && all_digits(in);
    default:
        return true;
    }
}

bool dp_ask_accepts(const dp_node *ask, const char *input, char *out, size_t out_size)
{
    if (!ask || ask->kind != DP_ASK || !input || !out_size)
        return false;
    long len = utf8_length(input);
    if (len < ask->min_len || len > ask->max_len)
        return false;
    if (ask->matcher && !dp_matches(ask->matcher->code, input))
        return false;
    char norm[DP_MAX_INPUT * 4 + 1];
    if (!validate(ask->validator, input, norm, sizeof norm) || strlen(norm) >= out_size)
        return false;
    memcpy(out, norm, strlen(norm) + 1);
    return true;
}

const dp_option *dp_menu_option(const dp_node *menu, const char *input)
{
    if (!menu || menu->kind != DP_MENU || !input)
        return NULL;
    for (size_t i = 0; i < menu->n_options; i++)
        if (!strcmp(menu->options[i].key, input))
            return &menu->options[i];
    const dialplan *dp = menu->flow->dp;
    for (size_t i = 0; i < dp->n_keys; i++)
        if (!strcmp(dp->keys[i].key, input))
            return &dp->keys[i];
    return NULL;
}

const dp_option *dp_ask_key(const dp_node *ask, const char *input)
{
    if (!ask || ask->kind != DP_ASK || !input)
        return NULL;
    for (size_t i = 0; i < ask->n_options; i++)
        if (!strcmp(ask->options[i].key, input))
            return &ask->options[i];
    return NULL;
}

static bool menu_defines(const dp_node *menu, const char *key)
{
    for (size_t i = 0; i < menu->n_options; i++)
        if (!strcmp(menu->options[i].key, key))
            return true;
    return false;
}

void dp_menu_keys(const dp_node *menu, dp_key_fn *emit, void *arg)
{
    if (!menu || menu->kind != DP_MENU)
        return;
    for (size_t i = 0; i < menu->n_options; i++)
        emit(menu->options[i].key, arg);
    const dialplan *dp = menu->flow->dp;
    for (size_t i = 0; i < dp->n_keys; i++)
        if (!menu_defines(menu, dp->keys[i].key))
            emit(dp->keys[i].key, arg);
}

dp_target dp_switch_target(const dp_node *sw, const char *value)
{
    for (size_t i = 0; sw && value && i < sw->n_options; i++)
        if (!strcmp(sw->options[i].key, value))
            return sw->options[i].target;
    return sw ? sw->next : (dp_target){DP_TO_NODE, NULL};
}
