/* test_typeahead — an ID and a PIN typed ahead never reach Redis or an
 * agent. The real cardline daemon against a real redis-server (AOF on,
 * fsync always, so the file on disk holds every write) and the registry
 * simulator (demo seed). Citizens who know the menus type ahead: on USSD
 * the whole history `1*3*ID*PIN` arrives at a menu (the channel derives
 * the newest input from it, gateway/ussd), by SMS the ID and PIN are texted
 * at the wrong moment — at every kind of waiting node (two menus, an ask
 * with a validator, a secret ask, an ask without a validator; SMS has no
 * secret ask, since it never asks for the PIN) and, by SMS, when no
 * conversation waits. The identification itself is done with
 * another citizen's ID and PIN (刘 … 2922, the sender's registered mobile),
 * whose PIN must not be stored either.
 *
 * Checked: no key, no value of any key and no byte of the AOF holds the
 * typed-ahead ID or PIN or the identifying PIN (as a number of its own: a
 * digit run, not part of a longer one such as a timestamp); the context a
 * supervisor (who sees numbers unmasked) reads holds none of them; and each
 * node did record an input event, so the inputs did reach them. Every wait
 * is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <dirent.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "harness.h"

#define WAIT_MS 20000
#define ID "110101199003074514"           /* 王伟's citizen ID: typed ahead */
#define PIN "246810"                      /* his service PIN: typed ahead */
#define TYPED_AHEAD "1*3*" ID "*" PIN     /* at the language menu, knowing the menus */
#define TEXTED ID " " PIN                 /* an SMS with both */
#define OWN_ID "370102196807202922"       /* the citizen who identifies (normal card L58304167) */
#define OWN_PIN "620418"
#define PHONE "+8613800000009"            /* his registered mobile: sends the SMS, dials USSD */
#define USSD_SID "typeahead-1"
#define USSD_PATH "/v1/sessions/ussd:" USSD_SID
#define SMS_PATH "/v1/sessions/sms:%2B8613800000009"
#define SUPERVISOR "Authorization: Bearer tok-wang"

typedef struct {
    char dir[256];          /* everything of the test */
    char conf[300];         /* the gateway's config */
    char tokens[300];       /* the tokens file */
    int http_port;          /* the gateway's listener (USSD, SMS, ops) */
    int api_port;           /* the agent API */
    th_proc redis, sim, gw; /* the real servers */
    char ussd_text[512];    /* the USSD session's history */
} world;

static world *W;

/* Small helpers -------------------------------------------------------------------*/

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* True when `number` occurs in `hay` (len bytes) as a digit run of its own. */
static bool has_number(const char *hay, size_t len, const char *number)
{
    size_t n = strlen(number);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(hay + i, number, n) == 0 && (i == 0 || !is_digit(hay[i - 1])) &&
            (i + n == len || !is_digit(hay[i + n])))
            return true;
    return false;
}

/* Fails naming `where` when `text` holds any of the three numbers. */
static void assert_clean(const char *where, const char *text, size_t len)
{
    const char *const numbers[] = {ID, PIN, OWN_PIN};
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++)
        if (has_number(text, len, numbers[i]))
            fail_msg("%s holds %s: %.*s", where, numbers[i], (int)(len > 4000 ? 4000 : len), text);
}

/* Channels: USSD and SMS as the aggregator and Kannel send them ---------------------------*/

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
    fwrite(data, size, n, arg);
    return size * n;
}

/* GET (form NULL) or signed POST to the gateway's listener; the body, malloc'd. */
static char *gateway_call(const char *path, const char *form, long *status)
{
    CURL *c = curl_easy_init();
    char url[1024];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", W->http_port, path);
    char *body = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&body, &len);
    curl_easy_setopt(c, CURLOPT_URL, url);
    struct curl_slist *h = NULL;
    if (form) {
        h = th_ussd_sign(NULL, form);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)WAIT_MS);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    *status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    fclose(out);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return body;
}

/* One USSD request: `input` joins the history with `*` (NULL: the dial);
 * the reply must be 200 and contain `needle`. */
static void ussd(const char *input, const char *needle)
{
    size_t used = strlen(W->ussd_text);
    if (input)
        snprintf(W->ussd_text + used, sizeof W->ussd_text - used, "%s%s", used ? "*" : "", input);
    CURL *c = curl_easy_init();
    char *text = curl_easy_escape(c, W->ussd_text, 0), *phone = curl_easy_escape(c, PHONE, 0);
    char form[1024];
    snprintf(form, sizeof form, "sessionId=" USSD_SID "&serviceCode=%%2A123%%23&phoneNumber=%s&text=%s", phone,
             text);
    curl_free(text);
    curl_free(phone);
    curl_easy_cleanup(c);
    long status;
    char *body = gateway_call("/ussd", form, &status);
    if (status != 200 || strstr(body, needle) == NULL)
        fail_msg("USSD text '%s': %ld %s (wanted %s)", W->ussd_text, status, body, needle);
    free(body);
}

/* One SMS from PHONE; the reply must be 200 and contain `needle`. */
static void sms(const char *text, const char *needle)
{
    CURL *c = curl_easy_init();
    char *t = curl_easy_escape(c, text, 0), *from = curl_easy_escape(c, PHONE, 0);
    char path[512];
    snprintf(path, sizeof path, "/sms/kannel?key=" TH_SMS_KEY "&from=%s&to=12333&text=%s", from, t);
    curl_free(t);
    curl_free(from);
    curl_easy_cleanup(c);
    long status;
    char *body = gateway_call(path, NULL, &status);
    if (status != 200 || strstr(body, needle) == NULL)
        fail_msg("SMS '%s': %ld %s (wanted %s)", text, status, body, needle);
    free(body);
}

/* Where it could be kept ------------------------------------------------------------*/

/* The context a supervisor reads: clean of the numbers; the nodes of its
 * input events, joined by spaces, into `nodes`. */
static void check_context(const char *path, char *nodes, size_t size)
{
    const char *headers[] = {SUPERVISOR, NULL};
    th_response r = th_request(W->api_port, "GET", path, NULL, headers);
    if (r.status != 200)
        fail_msg("GET %s: %ld %s", path, r.status, r.body);
    assert_clean(path, r.body, strlen(r.body));
    json_t *ctx = json_loads(r.body, 0, NULL);
    assert_non_null(ctx);
    nodes[0] = '\0';
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(ctx, "events"), i, e) {
        if (strcmp(json_string_value(json_object_get(e, "kind")), "input") != 0)
            continue;
        size_t used = strlen(nodes);
        snprintf(nodes + used, size - used, "%s ", json_string_value(json_object_get(e, "node")));
    }
    json_decref(ctx);
    th_response_free(&r);
}

/* Every key with every member and value, whatever its type. */
static void check_redis_keys(void)
{
    const char *script =
        "local out = {} "
        "for _, k in ipairs(redis.call('KEYS', '*')) do "
        "  out[#out + 1] = k "
        "  local t = redis.call('TYPE', k).ok "
        "  local items = {} "
        "  if t == 'string' then items = {redis.call('GET', k)} "
        "  elseif t == 'hash' then items = redis.call('HGETALL', k) "
        "  elseif t == 'list' then items = redis.call('LRANGE', k, 0, -1) "
        "  elseif t == 'set' then items = redis.call('SMEMBERS', k) "
        "  elseif t == 'zset' then items = redis.call('ZRANGE', k, 0, -1) "
        "  elseif t == 'stream' then "
        "    for _, e in ipairs(redis.call('XRANGE', k, '-', '+')) do "
        "      for _, v in ipairs(e[2]) do items[#items + 1] = v end "
        "    end "
        "  end "
        "  for _, v in ipairs(items) do out[#out + 1] = v end "
        "end return table.concat(out, '\\n')";
    const char *argv[] = {"EVAL", script, "0"};
    char *all = th_redis_cmd(&W->redis, 3, argv);
    assert_non_null(all);
    assert_non_null(strstr(all, "cl:e:ussd:" USSD_SID));   /* the search saw the event lists */
    assert_clean("Redis", all, strlen(all));
    free(all);
}

/* Every file of the AOF directory, byte for byte. */
static void check_aof(void)
{
    char dir[400];
    snprintf(dir, sizeof dir, "%s/appendonlydir", W->redis.dir);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int files = 0;
    size_t total = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        char path[700];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        char *bytes = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&bytes, &len);
        char buf[65536];
        for (size_t n; (n = fread(buf, 1, sizeof buf, f)) > 0;)
            fwrite(buf, 1, n, out);
        fclose(out);
        fclose(f);
        assert_clean(path, bytes, len);
        total += len;
        files++;
        free(bytes);
    }
    closedir(d);
    assert_true(files > 0);
    assert_true(total > 0);
}

/* The world ---------------------------------------------------------------------------*/

static void sha256_hex(const char *text, char out[65])
{
    unsigned char d[32];
    assert_int_equal(EVP_Digest(text, strlen(text), d, NULL, EVP_sha256(), NULL), 1);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void write_conf(world *w)
{
    char hex[65], text[4096];
    sha256_hex("tok-wang", hex);
    snprintf(text, sizeof text, "agents:\n  - name: wang\n    role: supervisor\n    token_sha256: %s\n", hex);
    snprintf(w->tokens, sizeof w->tokens, "%s/agents.yaml", w->dir);
    write_file(w->tokens, text);
    snprintf(text, sizeof text,
             "[log]\nlevel = info\n"
             "[http]\nlisten = 127.0.0.1:%d\n"
             "[redis]\nport = %d\n"
             "[registry]\nurl = http://127.0.0.1:%d\n"
             "[dialplans]\ndir = %s/dialplans\n"
             "[ussd]\nanswer_deadline_ms = 10000\nhop_key_secret = typeahead test secret\n" TH_USSD_SECRET_LINE
             "[sms]\n" TH_SMS_KEY_LINE
             "[voice]\nenabled = 0\n"
             "[agents]\nenabled = 1\nlisten = 127.0.0.1:%d\ntokens_file = %s\n"
             "[gateway]\nshutdown_grace_ms = 3000\n",
             w->http_port, w->redis.port, w->sim.port, CL_SOURCE_DIR, w->api_port, w->tokens);
    snprintf(w->conf, sizeof w->conf, "%s/cardline.conf", w->dir);
    write_file(w->conf, text);
}

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    W = w;
    th_mkdtemp(w->dir, "cl-typeahead");
    char dir[256];
    th_subdir(w->dir, "redis", dir);
    if (!th_redis_start(&w->redis, dir, true))
        return -1;
    th_subdir(w->dir, "sim", dir);
    if (!th_sim_start(&w->sim, dir, NULL, NULL))
        return -1;
    w->http_port = th_free_port();
    w->api_port = th_free_port();
    write_conf(w);
    th_subdir(w->dir, "gw", w->gw.dir);
    const char *argv[] = {CL_GATEWAY_BIN, "--config", w->conf, NULL};
    if (!th_spawn(&w->gw, "cardline", argv) || !th_wait_port(w->api_port, WAIT_MS) ||
        !th_wait_healthz(w->http_port, "\"status\":\"ok\"", WAIT_MS))
        return -1;
    *state = w;
    return 0;
}

/* SIGTERM: a clean exit also means LeakSanitizer found nothing. */
static int teardown(void **state)
{
    world *w = *state;
    int status = th_stop(&w->gw, WAIT_MS);
    th_kill(&w->sim);
    th_kill(&w->redis);
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!clean || getenv("CL_KEEP_TMP"))
        fprintf(stderr, "gateway exit %d; kept %s\n", status, w->dir);
    else
        th_rmdir(w->dir);
    free(w);
    return clean ? 0 : -1;
}

/* The test ------------------------------------------------------------------------------*/

/* USSD, one session through every kind of waiting node: at each the ID and
 * PIN typed ahead (refused; the node asks again), then the right answer. */
static void ussd_journey(void)
{
    W->ussd_text[0] = '\0';
    ussd(NULL, "CON ");
    ussd(TYPED_AHEAD, "CON ");                  /* main.choose_lang (menu) */
    ussd("1", "CON ");
    ussd("2*" ID "*" PIN, "CON ");              /* main.main_menu (menu) */
    ussd("2", "CON ");
    ussd(ID "*" PIN, "CON ");                   /* identify.ask_id (validator) */
    ussd(OWN_ID, "CON ");
    ussd(ID "*" PIN, "CON ");                   /* identify.ask_pin (secret) */
    ussd(PIN, "CON ");                          /* a wrong PIN: asked again */
    ussd(OWN_PIN, "CON ");
    ussd(ID "*" PIN, "CON ");                   /* loss.ask_last4 (no validator) */
    ussd("4167", "CON ");
    ussd(ID "*" PIN, "CON ");                   /* loss.confirm (menu) */
}

/* SMS, one conversation through the same nodes, then texts with no
 * conversation waiting (each starts the catch-all's help). */
static void sms_journey(void)
{
    sms("CX", "身份证");
    sms(TEXTED, "身份证");                      /* identify.ask_id */
    sms(PIN, "身份证");
    sms(OWN_ID, "状态");                        /* SMS asks no PIN: the sender and the ID */
    sms(TEXTED, "");                            /* main.after_task: asked again twice, */
    sms(PIN, "");
    sms(ID, "");                                /* then the conversation ends */
}

static void test_typed_ahead_is_kept_nowhere(void **state)
{
    (void)state;
    char nodes[2048];
    ussd_journey();
    check_context(USSD_PATH, nodes, sizeof nodes);
    assert_string_equal(nodes, "main.choose_lang main.choose_lang main.main_menu main.main_menu "
                               "identify.ask_id identify.ask_id identify.ask_pin identify.ask_pin "
                               "identify.ask_pin loss.ask_last4 loss.ask_last4 loss.confirm ");

    sms_journey();
    check_context(SMS_PATH, nodes, sizeof nodes);
    assert_string_equal(nodes, "identify.ask_id identify.ask_id identify.ask_id main.after_task "
                               "main.after_task main.after_task ");
    sms(PIN, "");                               /* none waits: each starts anew */
    sms(TEXTED, "");
    check_context(SMS_PATH, nodes, sizeof nodes);

    check_redis_keys();
    check_aof();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_typed_ahead_is_kept_nowhere),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
