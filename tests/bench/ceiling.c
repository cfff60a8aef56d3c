/* ceiling — the fastest USSD answer this machine can give: a bare evhttp
 * server replying "END ok" to every POST /ussd. scripts/bench drives it with
 * the same wrk settings as the gateway, so the gateway's figures read as a
 * share of this ceiling.
 *
 *   bench-ceiling PORT */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static void answer(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct evbuffer *body = evbuffer_new();
    evbuffer_add(body, "END ok", 6);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; charset=utf-8");
    evhttp_send_reply(req, 200, "OK", body);
    evbuffer_free(body);
}

static void stop(evutil_socket_t sig, short what, void *base)
{
    (void)sig, (void)what;
    event_base_loopbreak(base);
}

int main(int argc, char **argv)
{
    int port = argc == 2 ? atoi(argv[1]) : 0;
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "usage: bench-ceiling PORT\n");
        return 2;
    }
    struct event_base *base = event_base_new();
    struct evhttp *http = evhttp_new(base);
    struct event *term = evsignal_new(base, SIGTERM, stop, base);
    evsignal_add(term, NULL);
    evhttp_set_cb(http, "/ussd", answer, NULL);
    if (evhttp_bind_socket(http, "127.0.0.1", (ev_uint16_t)port) != 0) {
        fprintf(stderr, "bench-ceiling: cannot bind 127.0.0.1:%d\n", port);
        return 1;
    }
    event_base_dispatch(base);
    event_free(term);
    evhttp_free(http);
    event_base_free(base);
    return 0;
}
