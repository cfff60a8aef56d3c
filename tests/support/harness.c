/* harness — starts and stops real servers for integration tests (see
 * harness.h). Uses libcurl for HTTP checks and hiredis for Redis checks, the
 * same libraries the gateway uses, synchronously. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ussd.h"

long th_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void th_mkdtemp(char out[256], const char *prefix)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(out, 256, "%s/%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", prefix);
    if (mkdtemp(out) == NULL) {
        perror("mkdtemp");
        abort();
    }
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

void th_rmdir(const char *dir)
{
    if (dir && *dir)
        nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void th_subdir(const char *dir, const char *name, char out[256])
{
    if (snprintf(out, 256, "%s/%s", dir, name) >= 256 || mkdir(out, 0700) != 0) {
        fprintf(stderr, "cannot make %s/%s\n", dir, name);
        abort();
    }
}

int th_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        perror("th_free_port");
        abort();
    }
    close(fd);
    return ntohs(sa.sin_port);
}

static bool port_accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

bool th_wait_port(int port, int timeout_ms)
{
    long deadline = th_now_ms() + timeout_ms;
    while (!port_accepts(port)) {
        if (th_now_ms() > deadline)
            return false;
        pause_ms(10);
    }
    return true;
}

static size_t collect_body(char *data, size_t size, size_t n, void *arg)
{
    char **buf = arg;
    size_t old = *buf ? strlen(*buf) : 0;
    char *grown = realloc(*buf, old + size * n + 1);
    if (grown == NULL)
        return 0;
    memcpy(grown + old, data, size * n);
    grown[old + size * n] = '\0';
    *buf = grown;
    return size * n;
}

th_response th_request(int port, const char *method, const char *path, const char *json_body,
                       const char *const *headers)
{
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *c = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    th_response r = {0};
    if (json_body)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    for (size_t i = 0; headers && headers[i]; i++)
        hdrs = curl_slist_append(hdrs, headers[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (json_body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, json_body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect_body);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r.headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    if (r.body == NULL)
        r.body = strdup("");
    if (r.headers == NULL)
        r.headers = strdup("");
    return r;
}

void th_response_free(th_response *r)
{
    free(r->body);
    free(r->headers);
    *r = (th_response){0};
}

long th_http(int port, const char *method, const char *path, const char *json_body,
             const char *const *headers, char **body)
{
    th_response r = th_request(port, method, path, json_body, headers);
    long status = r.status;
    if (body) {
        *body = r.body;
        r.body = NULL;
    }
    th_response_free(&r);
    return status;
}

long th_http_get(int port, const char *path, char **body)
{
    return th_http(port, "GET", path, NULL, NULL, body);
}

bool th_wait_http(int port, const char *path, long status, const char *needle, int timeout_ms)
{
    long deadline = th_now_ms() + timeout_ms;
    for (;;) {
        char *body = NULL;
        long got = th_http_get(port, path, &body);
        bool ok = (status == 0 || got == status) && body && (needle == NULL || strstr(body, needle));
        free(body);
        if (ok)
            return true;
        if (th_now_ms() > deadline)
            return false;
        pause_ms(20);
    }
}

bool th_wait_healthz(int port, const char *needle, int timeout_ms)
{
    return th_wait_http(port, "/healthz", 0, needle, timeout_ms);
}

long th_rss_kib(pid_t pid)
{
    char path[64], line[128];
    long kib = -1;
    if (pid == 0)
        snprintf(path, sizeof path, "/proc/self/status");
    else
        snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

bool th_spawn(th_proc *p, const char *name, const char *const *argv)
{
    snprintf(p->log, sizeof p->log, "%s/%s.log", p->dir, name);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        if (chdir(p->dir) != 0)
            _exit(127);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    p->pid = pid;
    return true;
}

int th_stop(th_proc *p, int grace_ms)
{
    if (p->pid <= 0)
        return -1;
    int status = -1;
    kill(p->pid, SIGTERM);
    long deadline = th_now_ms() + grace_ms;
    while (waitpid(p->pid, &status, WNOHANG) == 0) {
        if (th_now_ms() > deadline) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &status, 0);
            break;
        }
        pause_ms(5);
    }
    p->pid = 0;
    return status;
}

void th_kill(th_proc *p)
{
    if (p->pid <= 0)
        return;
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
}

static bool child_alive(th_proc *p)
{
    int status;
    if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
        p->pid = 0;
        return false;
    }
    return true;
}

static bool redis_answers(int port)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    bool ok = false;
    if (c && !c->err) {
        redisReply *r = redisCommand(c, "PING");
        ok = r && r->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
    }
    redisFree(c);
    return ok;
}

/* Spawns `argv` and waits until it answers PING on p->port. */
static bool redis_spawn(th_proc *p, const char *name, const char *const *argv)
{
    if (!th_spawn(p, name, argv))
        return false;
    long deadline = th_now_ms() + 10000;
    while (!redis_answers(p->port)) {
        if (!child_alive(p) || th_now_ms() > deadline) {
            th_kill(p);
            return false;
        }
        pause_ms(10);
    }
    return true;
}

#define TH_REDIS_MAX_EXTRA 8

bool th_redis_start_with(th_proc *p, const char *dir, bool aof, const char *const *extra)
{
    if (dir != p->dir)
        snprintf(p->dir, sizeof p->dir, "%s", dir);
    if (p->port == 0)
        p->port = th_free_port();
    char port[16];
    snprintf(port, sizeof port, "%d", p->port);
    const char *argv[16 + TH_REDIS_MAX_EXTRA] = {
        "redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", p->dir, "--save", "",
        "--appendonly", aof ? "yes" : "no", "--appendfsync", "always", "--daemonize", "no"};
    int argc = 15;
    for (int i = 0; extra && extra[i]; i++) {
        if (i == TH_REDIS_MAX_EXTRA)
            return false;
        argv[argc++] = extra[i];
    }
    argv[argc] = NULL;
    return redis_spawn(p, "redis", argv);
}

bool th_redis_start(th_proc *p, const char *dir, bool aof)
{
    return th_redis_start_with(p, dir, aof, NULL);
}

bool th_redis_start_replica(th_proc *p, const char *dir, int master_port)
{
    char port[16];
    snprintf(port, sizeof port, "%d", master_port);
    const char *extra[] = {"--replicaof", "127.0.0.1", port, NULL};
    return th_redis_start_with(p, dir, true, extra);
}

bool th_sentinel_start(th_proc *p, const char *dir, const char *name, int master_port, int down_after_ms,
                       int failover_timeout_ms)
{
    if (dir != p->dir)
        snprintf(p->dir, sizeof p->dir, "%s", dir);
    if (p->port == 0)
        p->port = th_free_port();
    char conf[300];
    snprintf(conf, sizeof conf, "%s/sentinel.conf", p->dir);
    th_write_filef(conf,
                   "port %d\nbind 127.0.0.1\ndir %s\ndaemonize no\n"
                   "sentinel monitor %s 127.0.0.1 %d 2\n"
                   "sentinel down-after-milliseconds %s %d\n"
                   "sentinel failover-timeout %s %d\n"
                   "sentinel parallel-syncs %s 1\n",
                   p->port, p->dir, name, master_port, name, down_after_ms, name, failover_timeout_ms, name);
    const char *argv[] = {"redis-server", conf, "--sentinel", NULL};
    return redis_spawn(p, "sentinel", argv);
}

static redisReply *command_reply(int port, int argc, const char **argv)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    redisReply *r = NULL;
    if (c && !c->err)
        r = redisCommandArgv(c, argc, argv, NULL);
    redisFree(c);
    return r;
}

bool th_redis_info_has(int port, const char *section, const char *needle)
{
    const char *argv[] = {"INFO", section};
    redisReply *r = command_reply(port, 2, argv);
    bool yes = r && r->type == REDIS_REPLY_STRING && strstr(r->str, needle) != NULL;
    freeReplyObject(r);
    return yes;
}

static long array_length(int port, int argc, const char **argv)
{
    redisReply *r = command_reply(port, argc, argv);
    long n = r && r->type == REDIS_REPLY_ARRAY ? (long)r->elements : -1;
    freeReplyObject(r);
    return n;
}

bool th_sentinels_settled(const th_proc *sentinels, int n, const char *name)
{
    const char *replicas[] = {"SENTINEL", "replicas", name};
    const char *others[] = {"SENTINEL", "sentinels", name};
    for (int i = 0; i < n; i++)
        if (array_length(sentinels[i].port, 3, replicas) < 1 || array_length(sentinels[i].port, 3, others) < n - 1)
            return false;
    return true;
}

int th_sentinel_master_port(const th_proc *sentinel, const char *name)
{
    const char *argv[] = {"SENTINEL", "get-master-addr-by-name", name};
    redisReply *r = command_reply(sentinel->port, 3, argv);
    int port = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->type == REDIS_REPLY_STRING
                   ? atoi(r->element[1]->str)
                   : 0;
    freeReplyObject(r);
    return port;
}

static char *reply_text(const redisReply *r)
{
    char buf[64];
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        return strndup(r->str, r->len);
    case REDIS_REPLY_INTEGER:
        snprintf(buf, sizeof buf, "%lld", r->integer);
        return strdup(buf);
    case REDIS_REPLY_NIL:
        return strdup("");
    default:
        return NULL;
    }
}

char *th_redis_cmd(const th_proc *p, int argc, const char **argv)
{
    redisReply *r = command_reply(p->port, argc, argv);
    char *out = r ? reply_text(r) : NULL;
    freeReplyObject(r);
    return out;
}

char *th_redis_dump(const th_proc *p)
{
    static const char script[] =
        "local out = {} "
        "for _, k in ipairs(redis.call('KEYS', '*')) do "
        "  out[#out + 1] = k "
        "  local t = redis.call('TYPE', k).ok "
        "  local items "
        "  if t == 'string' then items = {redis.call('GET', k)} "
        "  elseif t == 'hash' then items = redis.call('HGETALL', k) "
        "  elseif t == 'list' then items = redis.call('LRANGE', k, 0, -1) "
        "  elseif t == 'set' then items = redis.call('SMEMBERS', k) "
        "  elseif t == 'zset' then items = redis.call('ZRANGE', k, 0, -1) "
        "  elseif t == 'stream' then "
        "    items = {} "
        "    for _, e in ipairs(redis.call('XRANGE', k, '-', '+')) do "
        "      for _, v in ipairs(e[2]) do items[#items + 1] = v end "
        "    end "
        "  else return redis.error_reply('unreadable type ' .. t .. ' of ' .. k) end "
        "  for _, v in ipairs(items) do out[#out + 1] = v end "
        "end return table.concat(out, '\\n')";
    const char *argv[] = {"EVAL", script, "0"};
    return th_redis_cmd(p, 3, argv);
}

char *th_redis_aof(const th_proc *p, size_t *len)
{
    char dir[400];
    snprintf(dir, sizeof dir, "%s/appendonlydir", p->dir);
    DIR *d = opendir(dir);
    if (d == NULL)
        return NULL;
    char *all = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&all, &size);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strncmp(e->d_name, "appendonly", 10) != 0)
            continue;
        char path[700];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t n = 0;
        char *bytes = th_read_file(path, &n);
        if (bytes)
            fwrite(bytes, 1, n, out);
        free(bytes);
    }
    closedir(d);
    fclose(out);
    if (size == 0) {
        free(all);
        return NULL;
    }
    *len = size;
    return all;
}

bool th_sim_start(th_proc *p, const char *dir, const char *seed,
                  const char *const *extra_args)
{
    if (dir != p->dir)
        snprintf(p->dir, sizeof p->dir, "%s", dir);
    if (p->port == 0)
        p->port = th_free_port();
    char listen[32], db[300];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", p->port);
    snprintf(db, sizeof db, "%s/registry.db", p->dir);
    const char *argv[32] = {CL_SIM_BIN, "--listen", listen, "--db", db,
                            "--seed", seed ? seed : CL_SOURCE_DIR "/tools/registry-sim/seed-demo.json",
                            "--control"};
    size_t n = 8;
    for (size_t i = 0; extra_args && extra_args[i] && n < 31; i++)
        argv[n++] = extra_args[i];
    argv[n] = NULL;
    if (!th_spawn(p, "registry-sim", argv))
        return false;
    long deadline = th_now_ms() + 10000;
    while (th_http_get(p->port, "/v1/health", NULL) != 200) {
        if (!child_alive(p) || th_now_ms() > deadline) {
            th_kill(p);
            return false;
        }
        pause_ms(10);
    }
    return true;
}

/* Files and commands ---------------------------------------------------------*/

void th_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        abort();
    }
}

void th_write_filef(const char *path, const char *fmt, ...)
{
    char *text = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    th_write_file(path, text);
    free(text);
}

void th_write_file_in(const char *dir, const char *name, const char *text)
{
    char path[512];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
        fprintf(stderr, "path too long: %s/%s\n", dir, name);
        abort();
    }
    th_write_file(path, text);
}

char *th_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    char buf[65536];
    for (size_t n; (n = fread(buf, 1, sizeof buf, f)) > 0;)
        fwrite(buf, 1, n, out);
    fclose(out);
    fclose(f);
    if (len)
        *len = size;
    return text;
}

char *th_read_text(const char *path)
{
    char *text = th_read_file(path, NULL);
    return text ? text : strdup("");
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

bool th_has_number(const char *hay, size_t len, const char *number)
{
    size_t n = strlen(number);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(hay + i, number, n) == 0 && (i == 0 || !is_digit(hay[i - 1])) &&
            (i + n == len || !is_digit(hay[i + n])))
            return true;
    return false;
}

int th_count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *at = text; (at = strstr(at, needle)) != NULL; at += strlen(needle))
        n++;
    return n;
}

int th_log_count(const th_proc *p, const char *needle)
{
    char *text = th_read_text(p->log);
    int n = th_count(text, needle);
    free(text);
    return n;
}

bool th_log_wait(const th_proc *p, const char *needle, int seen, int timeout_ms)
{
    long deadline = th_now_ms() + timeout_ms;
    while (th_log_count(p, needle) <= seen) {
        if (th_now_ms() > deadline)
            return false;
        th_poll_pause();
    }
    return true;
}

int th_run(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    if (p == NULL) {
        perror("popen");
        abort();
    }
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool th_poll_until(bool (*cond)(const void *arg), const void *arg, int timeout_ms)
{
    long deadline = th_now_ms() + timeout_ms;
    bool done;
    while (!(done = cond(arg)) && th_now_ms() < deadline)
        th_poll_pause();
    return done;
}

void th_poll_pause(void)
{
    pause_ms(20);
}

json_t *th_sim_json(const th_proc *sim, const char *path)
{
    char *body = NULL;
    long status = th_http_get(sim->port, path, &body);
    json_t *j = status == 200 ? json_loads(body, 0, NULL) : NULL;
    free(body);
    return j;
}

long long th_sim_stat(const th_proc *sim, const char *name)
{
    json_t *stats = th_sim_json(sim, "/_sim/stats");
    if (stats == NULL)
        fail_msg("the simulator on port %d gave no /_sim/stats", sim->port);
    json_t *v = strncmp(name, "applied.", 8) == 0 ? json_object_get(json_object_get(stats, "applied"), name + 8)
                                                  : json_object_get(stats, name);
    if (!json_is_integer(v)) {
        json_decref(stats);
        fail_msg("no figure %s in the simulator's /_sim/stats", name);
    }
    long long n = json_integer_value(v);
    json_decref(stats);
    return n;
}

long long th_sim_applied(const th_proc *sim, const char *what)
{
    char name[64];
    snprintf(name, sizeof name, "applied.%s", what);
    return th_sim_stat(sim, name);
}

/* Peer credentials ---------------------------------------------------------*/

struct curl_slist *th_ussd_sign(struct curl_slist *headers, const char *body)
{
    char ts[24], sig[USSD_SIGNATURE_MAX], line[160];
    snprintf(ts, sizeof ts, "%lld", (long long)time(NULL));
    if (!ussd_sign(TH_USSD_SECRET, ts, body, strlen(body), sig))
        abort();
    snprintf(line, sizeof line, USSD_TIMESTAMP_HEADER ": %s", ts);
    headers = curl_slist_append(headers, line);
    snprintf(line, sizeof line, USSD_SIGNATURE_HEADER ": %s", sig);
    return curl_slist_append(headers, line);
}
