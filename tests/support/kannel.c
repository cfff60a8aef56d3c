/* kannel — bearerbox, smsbox and fakesmsc for integration tests (see
 * kannel.h). Owns the configuration template, the readiness checks against
 * bearerbox's status page and the parsing of what fakesmsc prints.
 *
 * fakesmsc prints every line the fake SMSC writes as "Got message N: <LINE>".
 * LINE is "FROM TO TYPE PAYLOAD": `text` raw (a newline inside the text
 * breaks it into further "Got message" lines, joined back here), `data`
 * URL-encoded bytes, `ucs-2` URL-encoded UCS-2BE, or `udh UDH data PAYLOAD`
 * for concatenated parts. A `data` payload is UTF-8 when it is valid UTF-8
 * without NUL bytes and UCS-2BE otherwise: cardline sends only those two. */
#include "kannel.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#define TK_STATUS_PASS "tk-status"
#define TK_WAIT_MS 15000
#define TK_STOP_GRACE_MS 3000
#define TK_MAX_PART_BYTES 1024
#define TK_LINE_MAX 8192

/* One part of a concatenated MT, held until its siblings arrive. */
typedef struct {
    char from[64], to[64];
    int ref, total, seq;
    size_t len;
    unsigned char data[TK_MAX_PART_BYTES];
} tk_part;

struct tk_mt_list {
    tk_mt *items;            /* complete MTs, oldest first */
    size_t n, cap;
    tk_part *parts;          /* parts waiting for siblings */
    size_t np, pcap;
    size_t open_text;        /* 1 + index of the last plain text MT (continuation lines go there), 0 = none */
    long open_at;            /* when open_text last grew (monotonic ms) */
};

/* A plain text MT is taken only after its lines stopped coming for this
 * long: fakesmsc prints each line of a multi-line text separately. */
#define TK_TEXT_SETTLE_MS 300

/* Port picks tried before tk_start gives up. */
#define TK_START_ATTEMPTS 3

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

bool tk_available(void)
{
    return access(TK_BEARERBOX_BIN, X_OK) == 0 && access(TK_SMSBOX_BIN, X_OK) == 0 &&
           access(TK_FAKESMSC_BIN, X_OK) == 0;
}

/* Configuration -------------------------------------------------------------*/

static bool write_conf(const tk_kannel *k, const tk_options *opt)
{
    FILE *f = fopen(k->conf, "w");
    if (!f)
        return false;
    int max_messages = opt->max_messages > 0 ? opt->max_messages : 3;
    fprintf(f,
            "group = core\n"
            "admin-port = %d\nadmin-interface = 127.0.0.1\n"
            "admin-password = tk-admin\nstatus-password = " TK_STATUS_PASS "\n"
            "smsbox-port = %d\nsmsbox-interface = 127.0.0.1\nbox-allow-ip = 127.0.0.1\n"
            "log-file = \"%s/bearerbox-core.log\"\nlog-level = 2\n"
            "store-type = spool\nstore-location = \"%s/spool\"\n"
            "dlr-storage = internal\n"
            "%s%s%s\n"
            "group = smsc\nsmsc = fake\nsmsc-id = fake\nport = %d\n"
            "host = 127.0.0.1\nconnect-allow-ip = 127.0.0.1\n\n"
            "group = smsbox\nbearerbox-host = 127.0.0.1\nbearerbox-port = %d\n"
            "sendsms-port = %d\nsendsms-interface = 127.0.0.1\nmo-recode = true\n"
            "log-file = \"%s/smsbox-core.log\"\nlog-level = 2\n\n"
            "group = sms-service\nkeyword = default\ncatch-all = true\n"
            "get-url = \"%s\"\nmax-messages = %d\nconcatenation = true\n"
            "accept-x-kannel-headers = true\nomit-empty = true\n\n"
            "group = sendsms-user\nusername = %s\npassword = %s\n"
            "max-messages = %d\nconcatenation = true\n",
            k->admin_port, k->box_port, k->dir, k->dir, opt->trusted_ca ? "ssl-trusted-ca-file = \"" : "",
            opt->trusted_ca ? opt->trusted_ca : "", opt->trusted_ca ? "\"\n" : "", k->smsc_port, k->box_port,
            k->sendsms_port, k->dir, opt->get_url, max_messages, k->user, k->pass, max_messages);
    return fclose(f) == 0;
}

/* Status page ---------------------------------------------------------------*/

static char *status_text(const tk_kannel *k)
{
    char *body = NULL;
    if (th_http_get(k->admin_port, "/status.txt?password=" TK_STATUS_PASS, &body) != 200) {
        free(body);
        return NULL;
    }
    return body;
}

/* bearerbox's "SMS: received N" counter, or -1. */
static long received_count(const tk_kannel *k)
{
    char *s = status_text(k);
    long n = -1;
    const char *p = s ? strstr(s, "SMS: received ") : NULL;
    if (p)
        n = strtol(p + strlen("SMS: received "), NULL, 10);
    free(s);
    return n;
}

static bool status_has(const tk_kannel *k, const char *needle)
{
    char *s = status_text(k);
    bool found = s && strstr(s, needle) != NULL;
    free(s);
    return found;
}

static bool smsc_online(const tk_kannel *k)
{
    char line[64];
    snprintf(line, sizeof line, "FAKE:%d (online", k->smsc_port);
    return status_has(k, line);
}

/* Lifecycle -----------------------------------------------------------------*/

static void proc_init(th_proc *p, const tk_kannel *k)
{
    memset(p, 0, sizeof *p);
    snprintf(p->dir, sizeof p->dir, "%s", k->dir);
}

static bool wait_boxes(tk_kannel *k)
{
    long deadline = th_now_ms() + TK_WAIT_MS;
    while (th_now_ms() < deadline) {
        if (status_has(k, "smsbox:") && th_wait_port(k->sendsms_port, 50))
            return true;
        pause_ms(50);
    }
    return false;
}

bool tk_boxes_up(tk_kannel *k)
{
    proc_init(&k->bearerbox, k);
    proc_init(&k->smsbox, k);
    /* -v 2: warnings and errors on stderr too, as in scripts/demo (at
     * info and below Kannel writes message text). */
    const char *const bb[] = {TK_BEARERBOX_BIN, "-v", "2", k->conf, NULL};
    const char *const sb[] = {TK_SMSBOX_BIN, "-v", "2", k->conf, NULL};
    if (!th_spawn(&k->bearerbox, "bearerbox", bb) || !th_wait_port(k->admin_port, TK_WAIT_MS) ||
        !th_spawn(&k->smsbox, "smsbox", sb) || !wait_boxes(k)) {
        tk_boxes_down(k);
        return false;
    }
    return true;
}

static void stop_smsc(tk_kannel *k)
{
    th_stop(&k->smsc, TK_STOP_GRACE_MS);
}

void tk_boxes_down(tk_kannel *k)
{
    stop_smsc(k);
    th_stop(&k->smsbox, TK_STOP_GRACE_MS);
    th_stop(&k->bearerbox, TK_STOP_GRACE_MS);
}

/* Four distinct ports that were free a moment ago. */
static bool pick_ports(tk_kannel *k)
{
    k->admin_port = th_free_port();
    k->box_port = th_free_port();
    k->smsc_port = th_free_port();
    k->sendsms_port = th_free_port();
    return k->admin_port != k->box_port && k->box_port != k->smsc_port &&
           k->smsc_port != k->sendsms_port && k->admin_port != k->smsc_port &&
           k->admin_port != k->sendsms_port && k->box_port != k->sendsms_port;
}

bool tk_start(tk_kannel *k, const tk_options *opt)
{
    memset(k, 0, sizeof *k);
    if (!opt || !opt->get_url)
        return false;
    th_mkdtemp(k->dir, "cl-kannel");
    snprintf(k->conf, sizeof k->conf, "%s/kannel.conf", k->dir);
    snprintf(k->user, sizeof k->user, "%s", opt->sendsms_user ? opt->sendsms_user : "outbox");
    snprintf(k->pass, sizeof k->pass, "%s", opt->sendsms_pass ? opt->sendsms_pass : "outbox-secret");
    k->mts = calloc(1, sizeof *k->mts);
    char spool[300];
    snprintf(spool, sizeof spool, "%s/spool", k->dir);
    if (k->mts && mkdir(spool, 0700) == 0) {
        /* Another test may bind a picked port before the boxes do (tests run
         * in parallel): then the boxes fail to come up, and fresh ports
         * usually succeed. */
        for (int attempt = 0; attempt < TK_START_ATTEMPTS; attempt++)
            if (pick_ports(k) && write_conf(k, opt) && tk_boxes_up(k))
                return true;
    }
    tk_stop(k);
    return false;
}

static void mt_list_free(tk_mt_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        tk_mt_free(&l->items[i]);
    free(l->items);
    free(l->parts);
    free(l);
}

void tk_stop(tk_kannel *k)
{
    tk_boxes_down(k);
    mt_list_free(k->mts);
    k->mts = NULL;
    if (k->dir[0])
        th_rmdir(k->dir);
    k->dir[0] = '\0';
}

/* The handset side ----------------------------------------------------------*/

static bool spawn_smsc(tk_kannel *k, const char *message)
{
    stop_smsc(k);
    proc_init(&k->smsc, k);
    char port[16];
    snprintf(port, sizeof port, "%d", k->smsc_port);
    const char *const send[] = {TK_FAKESMSC_BIN, "-H", "127.0.0.1", "-r", port, "-i", "0.01",
                                "-m", "1", message, NULL};
    const char *const listen[] = {TK_FAKESMSC_BIN, "-H", "127.0.0.1", "-r", port, "-m", "0",
                                  "0 0 text unused", NULL};
    return th_spawn(&k->smsc, "fakesmsc", message ? send : listen);
}

bool tk_mo(tk_kannel *k, const char *from, const char *to, const char *text)
{
    if (!from || !to || !text || strpbrk(from, " \r\n") || strpbrk(to, " \r\n") ||
        strpbrk(text, "\r\n"))
        return false;
    long before = received_count(k);
    if (before < 0)
        return false;
    size_t len = strlen(from) + strlen(to) + strlen(text) + 16;
    char *message = malloc(len);
    snprintf(message, len, "%s %s text %s", from, to, text);
    bool ok = spawn_smsc(k, message);
    free(message);
    long deadline = th_now_ms() + TK_WAIT_MS;
    while (ok && received_count(k) <= before) {
        if (th_now_ms() > deadline)
            return false;
        pause_ms(20);
    }
    return ok;
}

bool tk_smsc_connect(tk_kannel *k)
{
    if (!spawn_smsc(k, NULL))
        return false;
    long deadline = th_now_ms() + TK_WAIT_MS;
    while (!smsc_online(k)) {
        if (th_now_ms() > deadline)
            return false;
        pause_ms(20);
    }
    return true;
}

/* Decoding ------------------------------------------------------------------*/

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* URL-decodes `s` into `out`; returns the length. */
static size_t url_decode(const char *s, unsigned char *out, size_t cap)
{
    size_t n = 0;
    for (; *s && n < cap; s++) {
        if (*s == '%' && hex_value(s[1]) >= 0 && hex_value(s[2]) >= 0) {
            out[n++] = (unsigned char)(hex_value(s[1]) * 16 + hex_value(s[2]));
            s += 2;
        } else {
            out[n++] = *s == '+' ? ' ' : (unsigned char)*s;
        }
    }
    return n;
}

static bool valid_utf8_text(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t more = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2
                    : (c & 0xF8) == 0xF0 ? 3 : 9;
        if (c == 0 || more == 9 || i + more >= n + (more ? 0 : 1))
            return false;
        for (size_t j = 1; j <= more; j++)
            if ((s[i + j] & 0xC0) != 0x80)
                return false;
        i += more + 1;
    }
    return true;
}

static void put_utf8(char **out, uint32_t cp)
{
    unsigned char *o = (unsigned char *)*out;
    if (cp < 0x80) {
        *o++ = (unsigned char)cp;
    } else if (cp < 0x800) {
        *o++ = (unsigned char)(0xC0 | cp >> 6);
        *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (unsigned char)(0xE0 | cp >> 12);
        *o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (unsigned char)(0xF0 | cp >> 18);
        *o++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        *o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    }
    *out = (char *)o;
}

static char *ucs2_to_utf8(const unsigned char *s, size_t n)
{
    char *out = malloc(n * 2 + 1), *o = out;
    for (size_t i = 0; i + 1 < n; i += 2) {
        uint32_t cp = (uint32_t)s[i] << 8 | s[i + 1];
        if (cp >= 0xD800 && cp < 0xDC00 && i + 3 < n) {
            uint32_t lo = (uint32_t)s[i + 2] << 8 | s[i + 3];
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 2;
        }
        put_utf8(&o, cp);
    }
    *o = '\0';
    return out;
}

/* A `data` payload as UTF-8 text (see the top of the file). */
static char *payload_text(const unsigned char *s, size_t n)
{
    if (valid_utf8_text(s, n))
        return strndup((const char *)s, n);
    return ucs2_to_utf8(s, n);
}

/* The MT list ---------------------------------------------------------------*/

static tk_mt *mt_push(tk_mt_list *l, const char *from, const char *to, char *text, int parts)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->items = realloc(l->items, l->cap * sizeof *l->items);
    }
    tk_mt *m = &l->items[l->n++];
    memset(m, 0, sizeof *m);
    snprintf(m->from, sizeof m->from, "%s", from);
    snprintf(m->to, sizeof m->to, "%s", to);
    m->text = text;
    m->parts = parts;
    return m;
}

/* Joins the parts of (to, ref) once all `total` are there. */
static void join_parts(tk_mt_list *l, const tk_part *last)
{
    int have = 0;
    for (size_t i = 0; i < l->np; i++)
        have += strcmp(l->parts[i].to, last->to) == 0 && l->parts[i].ref == last->ref;
    if (have < last->total)
        return;
    unsigned char *all = malloc((size_t)last->total * TK_MAX_PART_BYTES);
    size_t len = 0;
    for (int seq = 1; seq <= last->total; seq++)
        for (size_t i = 0; i < l->np; i++) {
            const tk_part *p = &l->parts[i];
            if (strcmp(p->to, last->to) == 0 && p->ref == last->ref && p->seq == seq) {
                memcpy(all + len, p->data, p->len);
                len += p->len;
                break;
            }
        }
    char from[64], to[64];
    snprintf(from, sizeof from, "%s", last->from);
    snprintf(to, sizeof to, "%s", last->to);
    int ref = last->ref, total = last->total;
    size_t kept = 0;
    for (size_t i = 0; i < l->np; i++)
        if (!(strcmp(l->parts[i].to, to) == 0 && l->parts[i].ref == ref))
            l->parts[kept++] = l->parts[i];
    l->np = kept;
    mt_push(l, from, to, payload_text(all, len), total);
    free(all);
}

static void add_part(tk_mt_list *l, const char *from, const char *to, const char *udh,
                     const char *payload)
{
    unsigned char h[32];
    size_t hn = url_decode(udh, h, sizeof h);
    /* IEI 0: 8-bit reference; IEI 8: 16-bit reference. */
    tk_part p;
    memset(&p, 0, sizeof p);
    if (hn >= 6 && h[1] == 0x00) {
        p.ref = h[3], p.total = h[4], p.seq = h[5];
    } else if (hn >= 7 && h[1] == 0x08) {
        p.ref = h[3] << 8 | h[4], p.total = h[5], p.seq = h[6];
    } else {
        return;
    }
    snprintf(p.from, sizeof p.from, "%s", from);
    snprintf(p.to, sizeof p.to, "%s", to);
    p.len = url_decode(payload, p.data, sizeof p.data);
    if (l->np == l->pcap) {
        l->pcap = l->pcap ? l->pcap * 2 : 16;
        l->parts = realloc(l->parts, l->pcap * sizeof *l->parts);
    }
    l->parts[l->np++] = p;
    join_parts(l, &p);
}

static bool is_address(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '+')
            return false;
    return true;
}

/* One "<LINE>" printed by fakesmsc. */
static void parse_line(tk_mt_list *l, char *line)
{
    char *from = line, *to = NULL, *type = NULL, *rest = NULL;
    char *sp1 = strchr(line, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    char *sp3 = sp2 ? strchr(sp2 + 1, ' ') : NULL;
    if (sp3) {
        *sp1 = *sp2 = *sp3 = '\0';
        to = sp1 + 1, type = sp2 + 1, rest = sp3 + 1;
    }
    bool known = type && (strcmp(type, "text") == 0 || strcmp(type, "data") == 0 ||
                          strcmp(type, "ucs-2") == 0 || strcmp(type, "ucs2") == 0 ||
                          strcmp(type, "udh") == 0);
    if (!known || !is_address(from) || !is_address(to)) {
        if (sp3)
            *sp1 = *sp2 = *sp3 = ' ';
        if (l->open_text) {
            tk_mt *m = &l->items[l->open_text - 1];
            size_t a = strlen(m->text), b = strlen(line);
            m->text = realloc(m->text, a + b + 2);
            m->text[a] = '\n';
            memcpy(m->text + a + 1, line, b + 1);
            l->open_at = th_now_ms();
        }
        return;
    }
    l->open_text = 0;
    unsigned char *buf = malloc(strlen(rest) + 1);
    size_t n;
    if (strcmp(type, "text") == 0) {
        mt_push(l, from, to, strdup(rest), 1);
        l->open_text = l->n;
        l->open_at = th_now_ms();
    } else if (strcmp(type, "udh") == 0) {
        char *sp = strchr(rest, ' ');
        char *payload = sp ? strchr(sp + 1, ' ') : NULL;
        if (payload) {
            *sp = '\0';
            add_part(l, from, to, rest, payload + 1);
        }
    } else if (strcmp(type, "data") == 0) {
        n = url_decode(rest, buf, strlen(rest));
        mt_push(l, from, to, payload_text(buf, n), 1);
    } else {
        n = url_decode(rest, buf, strlen(rest));
        mt_push(l, from, to, ucs2_to_utf8(buf, n), 1);
    }
    free(buf);
}

/* Parses the complete lines fakesmsc has written since the last call. */
static void read_smsc_log(tk_kannel *k)
{
    char path[300];
    snprintf(path, sizeof path, "%s/fakesmsc.log", k->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    if (fseek(f, (long)k->log_read, SEEK_SET) != 0) {
        fclose(f);
        return;
    }
    char *line = malloc(TK_LINE_MAX);
    while (fgets(line, TK_LINE_MAX, f)) {
        size_t len = strlen(line);
        if (len == 0 || line[len - 1] != '\n')
            break;
        k->log_read += len;
        line[--len] = '\0';
        char *got = strstr(line, "Got message ");
        char *open = got ? strstr(got, ": <") : NULL;
        if (!open || len == 0 || line[len - 1] != '>')
            continue;
        line[len - 1] = '\0';
        parse_line(k->mts, open + 3);
    }
    free(line);
    fclose(f);
}

size_t tk_pending_mt(tk_kannel *k)
{
    read_smsc_log(k);
    return k->mts->n;
}

static bool take_mt(tk_kannel *k, const char *to, tk_mt *out)
{
    tk_mt_list *l = k->mts;
    for (size_t i = 0; i < l->n; i++) {
        if (to && strcmp(l->items[i].to, to) != 0)
            continue;
        if (i + 1 == l->open_text && th_now_ms() - l->open_at < TK_TEXT_SETTLE_MS)
            return false;
        *out = l->items[i];
        memmove(&l->items[i], &l->items[i + 1], (l->n - i - 1) * sizeof *l->items);
        l->n--;
        l->open_text = l->open_text > i + 1 ? l->open_text - 1 : 0;
        return true;
    }
    return false;
}

bool tk_wait_mt(tk_kannel *k, const char *to, int timeout_ms, tk_mt *out)
{
    memset(out, 0, sizeof *out);
    long deadline = th_now_ms() + timeout_ms;
    for (;;) {
        read_smsc_log(k);
        if (take_mt(k, to, out))
            return true;
        if (th_now_ms() > deadline)
            return false;
        pause_ms(20);
    }
}

void tk_mt_free(tk_mt *m)
{
    free(m->text);
    m->text = NULL;
}
