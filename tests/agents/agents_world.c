/* agents_world — the daemon with the agent API, shared by the agents tests
 * (see agents_world.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "agents_world.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static aw_world *W;

aw_world *aw_world_get(void)
{
    return W;
}

void aw_sha256_hex(const char *text, char out[65])
{
    unsigned char d[32];
    assert_int_equal(EVP_Digest(text, strlen(text), d, NULL, EVP_sha256(), NULL), 1);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void write_tokens(aw_world *w, const aw_agent *agents, size_t n)
{
    char text[4096] = "agents:\n";
    for (size_t i = 0; i < n; i++) {
        char hex[65], entry[512];
        aw_sha256_hex(agents[i].token, hex);
        snprintf(entry, sizeof entry, "  - name: %s\n    role: %s\n    token_sha256: %s\n%s", agents[i].name,
                 agents[i].role, hex, agents[i].extra);
        strcat(text, entry);
    }
    snprintf(w->tokens, sizeof w->tokens, "%s/agents.yaml", w->tw.dir);
    th_write_file(w->tokens, text);
}

static void write_conf(const aw_world *w, const char *name, const char *extra)
{
    th_write_filef(w->tw.conf,
                   "[log]\nlevel = info\n"
                   "[http]\nlisten = 127.0.0.1:%d\n"
                   "[redis]\nport = %d\n"
                   "[registry]\nurl = http://127.0.0.1:%d\n"
                   "[dialplans]\ndir = %s/dialplans\n"
                   "[ussd]\nanswer_deadline_ms = 10000\nhop_key_secret = %s test secret\n" TH_USSD_SECRET_LINE
                   "[sms]\n" TH_SMS_KEY_LINE
                   "[voice]\nenabled = 0\n"
                   "[agents]\nenabled = 1\nlisten = 127.0.0.1:%d\ntokens_file = %s\n"
                   "[gateway]\nshutdown_grace_ms = 3000\n"
                   "%s",
                   w->tw.http_port, w->tw.redis.port, w->tw.sim.port, CL_SOURCE_DIR, name, w->api_port, w->tokens,
                   extra);
}

int aw_setup(void **state, const char *name, bool aof, const aw_agent *agents, size_t n, const char *extra)
{
    aw_world *w = calloc(1, sizeof *w);
    W = w;
    char prefix[64];
    snprintf(prefix, sizeof prefix, "cl-%s", name);
    tw_init(&w->tw, prefix);
    if (!tw_start_servers(&w->tw, aof, NULL, NULL))
        return -1;
    w->api_port = th_free_port();
    write_tokens(w, agents, n);
    write_conf(w, name, extra);
    if (!tw_start_gateway(&w->tw, true, AW_WAIT_MS) || !th_wait_port(w->api_port, AW_WAIT_MS))
        return -1;
    *state = w;
    return 0;
}

int aw_teardown(void **state)
{
    aw_world *w = *state;
    bool clean = tw_stop(&w->tw, AW_WAIT_MS);
    free(w);
    W = NULL;
    return clean ? 0 : -1;
}

void aw_ussd(const char *sid, const char *phone, const char *input, const char *needle)
{
    size_t used = strlen(W->ussd_text);
    if (input == NULL)
        W->ussd_text[0] = '\0';
    else
        snprintf(W->ussd_text + used, sizeof W->ussd_text - used, "%s%s", used ? "*" : "", input);
    char form[1024];
    tw_ussd_form(form, sizeof form, sid, phone, W->ussd_text);
    long status;
    char *body = tw_call(&W->tw, "/ussd", form, &status, AW_WAIT_MS);
    if (status != 200 || strstr(body, needle) == NULL)
        fail_msg("USSD %s after '%s' (history '%s'): %ld %s (wanted %s)", sid, input ? input : "(dial)",
                 W->ussd_text, status, body, needle);
    free(body);
}

void aw_sms(const char *from, const char *text, const char *needle)
{
    char path[512];
    tw_sms_path(path, sizeof path, from, text);
    long status;
    char *body = tw_call(&W->tw, path, NULL, &status, AW_WAIT_MS);
    if (status != 200 || strstr(body, needle) == NULL)
        fail_msg("SMS '%s': %ld %s (wanted %s)", text, status, body, needle);
    free(body);
}
