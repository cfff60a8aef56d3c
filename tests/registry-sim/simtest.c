/* simtest — helpers for the registry-sim tests (see simtest.h). */
#include "simtest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

void simtest_start(th_proc *p, const char *const *extra_args)
{
    memset(p, 0, sizeof *p);
    th_mkdtemp(p->dir, "regsim");
    assert_true(th_sim_start(p, p->dir, NULL, extra_args));
}

/* Shows the simulator's own output when it did not exit cleanly. */
static void print_log(const th_proc *p)
{
    char line[512];
    FILE *f = fopen(p->log, "r");
    while (f && fgets(line, sizeof line, f))
        fprintf(stderr, "  sim| %s", line);
    if (f)
        fclose(f);
}

int simtest_setup(void **state)
{
    th_proc *p = calloc(1, sizeof *p);
    simtest_start(p, NULL);
    *state = p;
    return 0;
}

int simtest_teardown(void **state)
{
    simtest_stop(*state);
    free(*state);
    return 0;
}

void simtest_stop(th_proc *p)
{
    int status = th_stop(p, 10000);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        print_log(p);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    th_rmdir(p->dir);
}

static st_resp parsed(long status, char *raw)
{
    st_resp r = {status, NULL, raw, NULL};
    r.body = raw ? json_loads(raw, 0, NULL) : NULL;
    return r;
}

st_resp st_call(const th_proc *p, const char *method, const char *path, const char *body,
                const char *key)
{
    char header[128];
    const char *headers[2] = {NULL, NULL};
    if (key) {
        snprintf(header, sizeof header, "Idempotency-Key: %s", key);
        headers[0] = header;
    }
    char *raw = NULL;
    long status = th_http(p->port, method, path, body, headers, &raw);
    return parsed(status, raw);
}

st_resp st_call_h(const th_proc *p, const char *method, const char *path, const char *body,
                  const char *const *headers)
{
    const char *with_type[16] = {"Content-Type: application/json"};
    for (size_t i = 0; headers && headers[i] && i + 2 < 16; i++)
        with_type[i + 1] = headers[i];
    th_response t = th_request(p->port, method, path, body, with_type);
    st_resp r = parsed(t.status, t.body);
    r.headers = t.headers;
    return r;
}

void st_free(st_resp *r)
{
    json_decref(r->body);
    free(r->raw);
    free(r->headers);
    memset(r, 0, sizeof *r);
}

json_t *st_get(const st_resp *r, const char *dotted)
{
    char key[64];
    json_t *j = r->body;
    for (const char *p = dotted; j && *p;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        snprintf(key, sizeof key, "%.*s", (int)n, p);
        j = json_object_get(j, key);
        p += n + (dot != NULL);
    }
    return j;
}

const char *st_code(const st_resp *r)
{
    const char *code = json_string_value(st_get(r, "error.code"));
    return code ? code : "";
}

const char *st_header(const st_resp *r, const char *name)
{
    static char value[256];
    size_t n = strlen(name);
    value[0] = '\0';
    for (const char *line = r->headers; line && *line;) {
        const char *end = strstr(line, "\r\n");
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > n + 1 && strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            snprintf(value, sizeof value, "%.*s", (int)(line + len - v), v);
        }
        line = end ? end + 2 : line + len;
    }
    return value;
}

long long st_stat(const th_proc *p, const char *name)
{
    st_resp r = st_call(p, "GET", "/_sim/stats", NULL, NULL);
    assert_int_equal(r.status, 200);
    json_t *v = st_get(&r, name);
    assert_true(json_is_integer(v));
    long long n = json_integer_value(v);
    st_free(&r);
    return n;
}

long long st_applied(const th_proc *p, const char *counter)
{
    char name[64];
    snprintf(name, sizeof name, "applied.%s", counter);
    return st_stat(p, name);
}

const char *st_key(void)
{
    static char key[40];
    static unsigned n;
    snprintf(key, sizeof key, "test-%d-%u", (int)getpid(), ++n);
    return key;
}
