/* rawhttp — byte-level HTTP/1.1 client for the gateway tests: exact
 * request bytes, keep-alive connections held open on purpose, reading
 * until the response is complete or the peer closes, all with bounded
 * waits. Header-only; the tests of this folder share it. */
#ifndef CARDLINE_TEST_RAWHTTP_H
#define CARDLINE_TEST_RAWHTTP_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static inline long rh_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* A connected socket to 127.0.0.1:port, or -1. */
static inline int rh_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
        return fd;
    if (fd >= 0)
        close(fd);
    return -1;
}

static inline bool rh_send(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        data += n;
        len -= (size_t)n;
    }
    return true;
}

/* One bounded read: >0 bytes, 0 at EOF or reset, -1 when the deadline passed. */
static inline ssize_t rh_recv(int fd, char *buf, size_t cap, long deadline)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    long left = deadline - rh_now_ms();
    if (left <= 0 || poll(&p, 1, (int)left) <= 0)
        return -1;
    ssize_t n = recv(fd, buf, cap, 0);
    return n < 0 ? 0 : n;
}

/* Reads one response (head + Content-Length body) into buf (NUL-terminated).
 * Returns its status code, or 0 when the connection ended or the wait ran
 * out first. */
static inline int rh_response(int fd, char *buf, size_t cap, int timeout_ms)
{
    long deadline = rh_now_ms() + timeout_ms;
    size_t len = 0;
    buf[0] = '\0';
    for (;;) {
        char *end = strstr(buf, "\r\n\r\n");
        if (end != NULL) {
            const char *cl = strcasestr(buf, "\r\nContent-Length:");
            size_t body = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
            if (len >= (size_t)(end + 4 - buf) + body) {
                int status = 0;
                sscanf(buf, "HTTP/1.%*d %d", &status);
                return status;
            }
        }
        if (len + 1 >= cap)
            return 0;
        ssize_t n = rh_recv(fd, buf + len, cap - 1 - len, deadline);
        if (n <= 0)
            return 0;
        len += (size_t)n;
        buf[len] = '\0';
    }
}

/* True when the peer closes the connection within timeout_ms (data that
 * arrives first is discarded). */
static inline bool rh_wait_closed(int fd, int timeout_ms)
{
    long deadline = rh_now_ms() + timeout_ms;
    char buf[4096];
    ssize_t n;
    while ((n = rh_recv(fd, buf, sizeof buf, deadline)) > 0)
        ;
    return n == 0;
}

/* Sends `request` on a fresh connection and returns the status (0 on
 * failure); the response lands in buf. */
static inline int rh_exchange(int port, const char *request, char *buf, size_t cap)
{
    int fd = rh_connect(port);
    if (fd < 0)
        return 0;
    int status = rh_send(fd, request, strlen(request)) ? rh_response(fd, buf, cap, 10000) : 0;
    close(fd);
    return status;
}

#endif
