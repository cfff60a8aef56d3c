/* world — the cardline daemon with its servers, for integration tests (see
 * world.h). Builds on harness: processes, ports and the USSD signature. */
#include "world.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

void tw_init(tw_world *w, const char *prefix)
{
    th_mkdtemp(w->dir, prefix);
    th_subdir(w->dir, "gw", w->gw.dir);
    w->http_port = th_free_port();
    snprintf(w->conf, sizeof w->conf, "%s/cardline.conf", w->dir);
}

bool tw_start_servers(tw_world *w, bool aof, const char *seed, const char *const *sim_args)
{
    char dir[256];
    th_subdir(w->dir, "redis", dir);
    if (!th_redis_start(&w->redis, dir, aof))
        return false;
    th_subdir(w->dir, "sim", dir);
    return th_sim_start(&w->sim, dir, seed, sim_args);
}

bool tw_start_gateway(tw_world *w, bool healthy, int wait_ms)
{
    const char *argv[] = {CL_GATEWAY_BIN, "--config", w->conf, NULL};
    return th_spawn(&w->gw, "cardline", argv) && th_wait_port(w->http_port, wait_ms) &&
           (!healthy || th_wait_healthz(w->http_port, "\"status\":\"ok\"", wait_ms));
}

bool tw_stop(tw_world *w, int grace_ms)
{
    bool was_running = w->gw.pid > 0;
    int status = 0;
    if (grace_ms > 0)
        status = th_stop(&w->gw, grace_ms);
    else
        th_kill(&w->gw);
    th_kill(&w->sim);
    th_kill(&w->redis);
    bool clean = grace_ms == 0 || !was_running || (WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!clean || getenv("CL_KEEP_TMP"))
        fprintf(stderr, "gateway exit %d; kept %s\n", status, w->dir);
    else
        th_rmdir(w->dir);
    return clean;
}

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
    return fwrite(data, size, n, arg) * size;
}

char *tw_call(const tw_world *w, const char *path, const char *form, long *status, int wait_ms)
{
    CURL *c = curl_easy_init();
    char url[1024];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", w->http_port, path);
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
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)wait_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    *status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    fclose(out);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return body;
}

void tw_ussd_form(char *out, size_t size, const char *sid, const char *phone, const char *text)
{
    CURL *c = curl_easy_init();
    char *s = curl_easy_escape(c, sid, 0), *p = curl_easy_escape(c, phone, 0), *t = curl_easy_escape(c, text, 0);
    snprintf(out, size, "sessionId=%s&serviceCode=%%2A123%%23&phoneNumber=%s&text=%s", s, p, t);
    curl_free(s);
    curl_free(p);
    curl_free(t);
    curl_easy_cleanup(c);
}

void tw_sms_path(char *out, size_t size, const char *from, const char *text)
{
    CURL *c = curl_easy_init();
    char *f = curl_easy_escape(c, from, 0), *t = curl_easy_escape(c, text, 0);
    snprintf(out, size, "/sms/kannel?key=" TH_SMS_KEY "&from=%s&to=12333&text=%s", f, t);
    curl_free(f);
    curl_free(t);
    curl_easy_cleanup(c);
}

bool tw_write_seed(const tw_world *w, const tw_seed_person *people, int n, char out[300])
{
    json_t *persons = json_array();
    for (int i = 0; i < n; i++) {
        const tw_seed_person *p = &people[i];
        json_t *card = json_pack("{s:s, s:i, s:b, s:i, s:s, s:s, s:{s:s, s:b}}", "card_number", p->card,
                                 "status", 1, "current", 1, "generation", 1, "issued_date", "2024-05-01",
                                 "bank", "ICBC", "pin", "value", p->pin, "initial", 0);
        json_array_append_new(persons, json_pack("{s:s, s:s, s:s, s:[o]}", "ssn", p->ssn, "name", "测试",
                                                 "mobile", p->mobile, "cards", card));
    }
    json_t *seed = json_pack("{s:[{s:s, s:s, s:s}], s:[], s:o}", "banks", "code", "ICBC", "name",
                             "中国工商银行", "hotline", "95588", "outlets", "persons", persons);
    snprintf(out, 300, "%s/seed.json", w->dir);
    bool ok = json_dump_file(seed, out, JSON_INDENT(1)) == 0;
    json_decref(seed);
    return ok;
}
