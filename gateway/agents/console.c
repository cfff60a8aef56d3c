/* console — the agent console's static files on the API's listener and
 * the security headers every answer of the listener carries. `GET /`
 * is console/index.html, `GET /console/NAME` a file of [agents]
 * console_dir. They hold no data, so no token is asked for them (the page
 * signs in with the API). Files are read per request, so an edited page
 * shows at the next reload of the browser: a few small files, opened with
 * O_NOFOLLOW, at most AGENTS_CONSOLE_MAX_FILE bytes. */
#include "agents_int.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define CONSOLE_PREFIX "/console/"
#define CONSOLE_INDEX "index.html"
#define CONSOLE_MAX_NAME 64

static const struct {
    const char *ext;          /* file name ending */
    const char *type;         /* Content-Type */
} types[] = {
    {".html", "text/html; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".png", "image/png"},
    {".svg", "image/svg+xml"},
};

void agents_security_headers(struct evhttp_request *ev)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(ev);
    evhttp_add_header(out, "Content-Security-Policy",
                      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                      "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    evhttp_add_header(out, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(out, "Referrer-Policy", "no-referrer");
}

bool agents_console_path(const char *path)
{
    return path && (strcmp(path, "/") == 0 || strncmp(path, CONSOLE_PREFIX, strlen(CONSOLE_PREFIX)) == 0);
}

/* The content type of a plain name (letters, digits, '-', '_', one or
 * more dots but not first: no '/', no "..", no dotfile), or NULL. */
static const char *type_of(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > CONSOLE_MAX_NAME || name[0] == '.' || strstr(name, ".."))
        return NULL;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_' || c == '.'))
            return NULL;
    }
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        size_t e = strlen(types[i].ext);
        if (n > e && strcmp(name + n - e, types[i].ext) == 0)
            return types[i].type;
    }
    return NULL;
}

static void not_found(httpd_request *http)
{
    httpd_reply_error(http, 404, "not_found", "No such file.");
}

/* evbuffer_read takes at most 4096 bytes a call (libevent 2.1), so a page
 * is read in a loop; a file that shrinks meanwhile is refused. */
static bool read_whole(struct evbuffer *buf, int fd, size_t size)
{
    while (evbuffer_get_length(buf) < size)
        if (evbuffer_read(buf, fd, (int)(size - evbuffer_get_length(buf))) <= 0)
            return false;
    return true;
}

/* Reads dir/name into a new buffer: NULL when missing, not a regular file
 * or over the limit (`*too_big` tells the last apart). */
static struct evbuffer *read_file(const char *dir, const char *name, bool *too_big)
{
    char path[PATH_MAX];
    *too_big = false;
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return NULL;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    struct evbuffer *buf = NULL;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        *too_big = st.st_size > AGENTS_CONSOLE_MAX_FILE;
        buf = *too_big ? NULL : evbuffer_new();
        if (buf && !read_whole(buf, fd, (size_t)st.st_size)) {
            evbuffer_free(buf);
            buf = NULL;
        }
    }
    close(fd);
    return buf;
}

void agents_console_serve(agents *a, httpd_request *http, const char *path)
{
    struct evhttp_request *ev = httpd_request_evhttp(http);
    agents_security_headers(ev);
    if (evhttp_request_get_command(ev) != EVHTTP_REQ_GET) {
        evhttp_add_header(evhttp_request_get_output_headers(ev), "Allow", "GET");
        httpd_reply_error(http, 405, "method_not_allowed", "The console's files are only read (GET).");
        return;
    }
    const char *name = strcmp(path, "/") == 0 ? CONSOLE_INDEX : path + strlen(CONSOLE_PREFIX);
    const char *type = type_of(name);
    if (type == NULL) {
        not_found(http);
        return;
    }
    bool too_big;
    struct evbuffer *body = read_file(a->console_dir, name, &too_big);
    if (body == NULL) {
        if (too_big)
            log_warn("agents.console_file_too_big", "name=%s max=%d", log_quote(name).s, AGENTS_CONSOLE_MAX_FILE);
        not_found(http);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(ev), "Cache-Control", "no-cache");
    httpd_reply_text(http, 200, type, body);
    evbuffer_free(body);
}
