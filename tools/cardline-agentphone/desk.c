/* desk — the Agent API requests of the demo agent phone: a session's
 * context and a resume URI, over libcurl (blocking, bounded), JSON read
 * with jansson. The screen line is built from a few fields of the context;
 * what the API masks for the agent's role stays masked. */
#include "desk.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch_body.h"

#define DESK_BODY_MAX (256 * 1024)

/* `api`/v1/sessions/{escaped id}`tail`, malloc'd. */
static char *session_url(const desk *d, const char *session, const char *tail)
{
    char *id = curl_easy_escape(NULL, session, 0);
    size_t n = strlen(d->api) + strlen(id) + strlen(tail) + 16;
    char *url = malloc(n);
    if (url)
        snprintf(url, n, "%s/v1/sessions/%s%s", d->api, id, tail);
    curl_free(id);
    return url;
}

/* One request (`json` NULL = GET, else a POST of it). Returns the reply
 * parsed, or NULL with `why` filled. */
static json_t *request(const desk *d, const char *url, const char *json, long *status, char *why, size_t why_size)
{
    CURL *c = curl_easy_init();
    struct curl_slist *headers = NULL;
    char auth[256];
    fetch_body b = {.max = DESK_BODY_MAX};
    json_t *reply = NULL;
    *status = 0;
    if (c == NULL || url == NULL) {
        snprintf(why, why_size, "out of memory");
        goto done;
    }
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", d->token);
    headers = curl_slist_append(headers, auth);
    if (json)
        headers = curl_slist_append(headers, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)DESK_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)DESK_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fetch_body_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (json)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        snprintf(why, why_size, "Agent API at %s: %s", d->api, curl_easy_strerror(rc));
        goto done;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    reply = json_loadb(b.data ? b.data : "", b.len, 0, NULL);
    if (*status < 200 || *status >= 300 || !json_is_object(reply)) {
        const char *message = json_string_value(json_object_get(reply, "message"));
        snprintf(why, why_size, "Agent API answered %ld%s%s", *status, message ? ": " : "", message ? message : "");
        json_decref(reply);
        reply = NULL;
    }
done:
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    free(b.data);
    return reply;
}

static const char *str(json_t *o, const char *a, const char *b)
{
    json_t *v = json_object_get(o, a);
    if (b)
        v = json_object_get(v, b);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Appends " LABEL VALUE" when the value is there. */
static void add(char *out, size_t size, const char *label, const char *value)
{
    size_t n = strlen(out);
    if (value && *value && n < size)
        snprintf(out + n, size - n, "%s%s %s", n ? ", " : "", label, value);
}

bool desk_context_get(const desk *d, const char *session, desk_context *out, char *why, size_t why_size)
{
    long status;
    char *url = session_url(d, session, "");
    json_t *doc = request(d, url, NULL, &status, why, why_size);
    free(url);
    if (doc == NULL)
        return false;
    memset(out, 0, sizeof *out);
    snprintf(out->lang, sizeof out->lang, "%s", str(doc, "lang", NULL) ? str(doc, "lang", NULL) : "");
    char *s = out->summary;
    size_t n = sizeof out->summary;
    add(s, n, "state", str(doc, "state", NULL));
    add(s, n, "at", str(doc, "flow", NULL));
    if (str(doc, "node", NULL))
        snprintf(s + strlen(s), n - strlen(s), ".%s", str(doc, "node", NULL));
    add(s, n, "lang", str(doc, "lang", NULL));
    add(s, n, "caller", str(doc, "caller", NULL));
    add(s, n, "verified", str(doc, "verification", "level"));
    add(s, n, "id", str(doc, "verification", "id"));
    add(s, n, "queue", str(doc, "transfer", "queue"));
    add(s, n, "reason", str(doc, "transfer", "reason"));
    add(s, n, "assist", str(doc, "assist", "result"));
    json_decref(doc);
    return true;
}

static char *resume_body(const char *node)
{
    json_t *o = json_pack("{s:s}", "node", node);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return text;
}

bool desk_resume(const desk *d, const char *session, const char *node, char uri[DESK_URI_MAX], char *why,
                 size_t why_size)
{
    long status;
    char *url = session_url(d, session, "/resume"), *json = resume_body(node);
    json_t *reply = json ? request(d, url, json, &status, why, why_size) : NULL;
    free(url);
    free(json);
    const char *got = str(reply, "uri", NULL);
    bool ok = got && strncmp(got, "sip:", 4) == 0 && strlen(got) < DESK_URI_MAX && !strpbrk(got, "<> \r\n");
    if (ok)
        snprintf(uri, DESK_URI_MAX, "%s", got);
    else if (reply)
        snprintf(why, why_size, "Agent API gave no usable resume URI");
    json_decref(reply);
    return ok;
}

void desk_resume_command(const desk *d, const char *session, const char *node, char *out, size_t size)
{
    char *url = session_url(d, session, "/resume"), *json = resume_body(node);
    snprintf(out, size, "curl -s -H 'Authorization: Bearer %s' -d '%s' '%s'", d->token, json ? json : "",
             url ? url : "");
    free(url);
    free(json);
}
