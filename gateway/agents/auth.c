/* auth — owns the agent table loaded from the tokens file and the bearer
 * token check (see auth.h). The loader walks the libyaml document and
 * reports every problem it finds, with the line of the node concerned,
 * before giving up on the file. */
#include "auth.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "mem.h"

#define AUTH_MAX_FILE_BYTES (1024 * 1024)
#define AUTH_KEEP_ERRORS 64

struct auth_table {
    auth_agent *agents;      /* in file order */
    size_t count;            /* entries in agents */
};

typedef struct {
    const char *path;        /* the file, for messages */
    yaml_document_t doc;     /* the parsed document */
    agents_errors *errs;     /* collected problems */
    auth_table *t;           /* the table being filled */
} loader;

/* Errors --------------------------------------------------------------------*/

void agents_errors_free(agents_errors *errs)
{
    for (size_t i = 0; i < errs->count; i++)
        free(errs->lines[i]);
    free(errs->lines);
    errs->lines = NULL;
    errs->count = 0;
}

static void problem(agents_errors *errs, const char *path, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void problem(agents_errors *errs, const char *path, int line, const char *fmt, ...)
{
    if (errs->count >= AUTH_KEEP_ERRORS)
        return;
    char msg[512];
    int n = line > 0 ? snprintf(msg, sizeof msg, "%s:%d: ", path, line) : snprintf(msg, sizeof msg, "%s: ", path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    char **grown = mem_realloc(errs->lines, (errs->count + 1) * sizeof *grown);
    grown[errs->count] = mem_strdup(msg);
    errs->lines = grown;
    errs->count++;
}

#define PROBLEM(L, n, ...) problem((L)->errs, (L)->path, line_of(n), __VA_ARGS__)

/* YAML helpers ---------------------------------------------------------------*/

static int line_of(const yaml_node_t *n)
{
    return n ? (int)n->start_mark.line + 1 : 0;
}

static yaml_node_t *node_at(loader *L, yaml_node_item_t i)
{
    return yaml_document_get_node(&L->doc, i);
}

static const char *scalar_text(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* The value of `key` in mapping `m`, or NULL; `key_node` gets the key. */
static yaml_node_t *get(loader *L, yaml_node_t *m, const char *key)
{
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        const char *ks = scalar_text(node_at(L, p->key));
        if (ks && strcmp(ks, key) == 0)
            return node_at(L, p->value);
    }
    return NULL;
}

/* Every key a string, known and not repeated. */
static void check_keys(loader *L, yaml_node_t *m, const char *const *allowed, const char *what)
{
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(L, p->key);
        const char *ks = scalar_text(k);
        if (ks == NULL) {
            PROBLEM(L, k, "keys of %s must be strings", what);
            continue;
        }
        bool known = false;
        for (size_t i = 0; allowed[i] && !known; i++)
            known = strcmp(allowed[i], ks) == 0;
        if (!known)
            PROBLEM(L, k, "unknown key '%.40s' in %s", ks, what);
        for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < p; q++) {
            const char *prev = scalar_text(node_at(L, q->key));
            if (prev && strcmp(prev, ks) == 0)
                PROBLEM(L, k, "duplicate key '%.40s' in %s", ks, what);
        }
    }
}

/* Fields --------------------------------------------------------------------*/

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > AUTH_MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!islower((unsigned char)s[i]) && !isdigit((unsigned char)s[i]) && !strchr("_.-", s[i]))
            return false;
    return true;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static bool parse_digest(const char *s, unsigned char out[32])
{
    if (strlen(s) != 64)
        return false;
    for (size_t i = 0; i < 32; i++) {
        int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

/* A SIP URI we can put into a Refer-To: sip:/sips:, printable, no spaces
 * or characters that would end a header field value. */
static bool valid_sip_uri(const char *s)
{
    if ((strncmp(s, "sip:", 4) != 0 && strncmp(s, "sips:", 5) != 0) || strlen(s) > AUTH_MAX_SIP_URI ||
        strlen(s) < 6)
        return false;
    for (const char *p = s; *p; p++)
        if (*p <= ' ' || *p == 0x7f || strchr("<>\"", *p))
            return false;
    return true;
}

/* YYYY-MM-DDTHH:MM:SSZ, UTC. */
static bool parse_expiry(const char *s, time_t *out)
{
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (end == NULL || *end != '\0' || strlen(s) != 20)
        return false;
    int mday = tm.tm_mday, mon = tm.tm_mon;
    time_t t = timegm(&tm);
    /* timegm normalises 02-31 into March: refuse dates that moved. */
    if (t == (time_t)-1 || tm.tm_mday != mday || tm.tm_mon != mon)
        return false;
    *out = t;
    return true;
}

static bool parse_role(const char *s, agent_role *out)
{
    static const char *const names[] = {"observer", "agent", "supervisor"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (agent_role)i;
            return true;
        }
    }
    return false;
}

/* The string value of a required (or optional) field, or NULL. */
static const char *field(loader *L, yaml_node_t *m, const char *key, bool required)
{
    yaml_node_t *v = get(L, m, key);
    const char *s = scalar_text(v);
    if (v == NULL) {
        if (required)
            PROBLEM(L, m, "agent lacks '%s'", key);
        return NULL;
    }
    if (s == NULL || *s == '\0') {
        PROBLEM(L, v, "'%s' must be a non-empty string", key);
        return NULL;
    }
    return s;
}

/* The file ------------------------------------------------------------------*/

static void duplicate_checks(loader *L, yaml_node_t *n, const auth_agent *a)
{
    for (size_t i = 0; i < L->t->count; i++) {
        if (strcmp(L->t->agents[i].name, a->name) == 0)
            PROBLEM(L, n, "agent '%s' is listed twice", a->name);
        if (memcmp(L->t->agents[i].digest, a->digest, sizeof a->digest) == 0)
            PROBLEM(L, n, "agents '%s' and '%s' have the same token", L->t->agents[i].name, a->name);
    }
}

static void parse_agent(loader *L, yaml_node_t *m)
{
    static const char *const keys[] = {"name", "role", "token_sha256", "sip_uri", "expires", NULL};
    if (m->type != YAML_MAPPING_NODE) {
        PROBLEM(L, m, "each agent must be a mapping");
        return;
    }
    check_keys(L, m, keys, "an agent");
    auth_agent a = {0};
    bool ok = true;
    const char *name = field(L, m, "name", true), *role = field(L, m, "role", true);
    const char *digest = field(L, m, "token_sha256", true), *uri = field(L, m, "sip_uri", false);
    const char *expires = field(L, m, "expires", false);
    if (name && !valid_name(name)) {
        PROBLEM(L, get(L, m, "name"), "name '%.40s' is not [a-z0-9_.-], 1 to %d characters", name, AUTH_MAX_NAME);
        ok = false;
    }
    if (role && !parse_role(role, &a.role)) {
        PROBLEM(L, get(L, m, "role"), "role '%.40s' is not observer, agent or supervisor", role);
        ok = false;
    }
    if (digest && !parse_digest(digest, a.digest)) {
        PROBLEM(L, get(L, m, "token_sha256"), "token_sha256 must be 64 hex digits (the SHA-256 of the token)");
        ok = false;
    }
    if (uri && !valid_sip_uri(uri)) {
        PROBLEM(L, get(L, m, "sip_uri"), "sip_uri must be a sip: or sips: URI without spaces, at most %d bytes",
                AUTH_MAX_SIP_URI);
        ok = false;
    }
    if (expires && !parse_expiry(expires, &a.expires)) {
        PROBLEM(L, get(L, m, "expires"), "expires must be a UTC time as YYYY-MM-DDTHH:MM:SSZ");
        ok = false;
    }
    if (!ok || !name || !role || !digest)
        return;
    snprintf(a.name, sizeof a.name, "%s", name);
    snprintf(a.sip_uri, sizeof a.sip_uri, "%s", uri ? uri : "");
    duplicate_checks(L, m, &a);
    L->t->agents[L->t->count++] = a;
}

static void parse_root(loader *L, yaml_node_t *root)
{
    static const char *const keys[] = {"agents", NULL};
    if (root->type != YAML_MAPPING_NODE) {
        PROBLEM(L, root, "the file must be a mapping with the key 'agents'");
        return;
    }
    check_keys(L, root, keys, "the file");
    yaml_node_t *list = get(L, root, "agents");
    if (list == NULL || list->type != YAML_SEQUENCE_NODE) {
        PROBLEM(L, list ? list : root, "'agents' must be a list of agents");
        return;
    }
    size_t n = (size_t)(list->data.sequence.items.top - list->data.sequence.items.start);
    if (n == 0 || n > AUTH_MAX_AGENTS) {
        PROBLEM(L, list, "'agents' must list 1 to %d agents", AUTH_MAX_AGENTS);
        return;
    }
    L->t->agents = mem_calloc(n, sizeof *L->t->agents);
    for (yaml_node_item_t *it = list->data.sequence.items.start; it < list->data.sequence.items.top; it++)
        parse_agent(L, node_at(L, *it));
}

static void parse_text(loader *L, const char *text, size_t len)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        mem_out_of_memory("auth: yaml_parser_initialize");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &L->doc)) {
        const yaml_mark_t *mk = parser.problem ? &parser.problem_mark : &parser.context_mark;
        problem(L->errs, L->path, (int)mk->line + 1, "YAML syntax error: %s",
                parser.problem ? parser.problem : "unreadable");
        yaml_parser_delete(&parser);
        return;
    }
    yaml_parser_delete(&parser);
    yaml_node_t *root = yaml_document_get_root_node(&L->doc);
    if (root == NULL)
        problem(L->errs, L->path, 0, "the file is empty");
    else
        parse_root(L, root);
    yaml_document_delete(&L->doc);
}

static char *read_file(const char *path, size_t *len, agents_errors *errs)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        problem(errs, path, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    char *text = mem_malloc(AUTH_MAX_FILE_BYTES + 1);
    *len = fread(text, 1, AUTH_MAX_FILE_BYTES + 1, f);
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad || *len > AUTH_MAX_FILE_BYTES) {
        problem(errs, path, 0, bad ? "cannot read the file" : "larger than %d bytes", AUTH_MAX_FILE_BYTES);
        free(text);
        return NULL;
    }
    return text;
}

auth_table *agents_auth_load(const char *path, agents_errors *errs)
{
    errs->lines = NULL;
    errs->count = 0;
    size_t len = 0;
    char *text = read_file(path, &len, errs);
    if (text == NULL)
        return NULL;
    auth_table *t = mem_calloc(1, sizeof *t);
    loader L = {.path = path, .errs = errs, .t = t};
    parse_text(&L, text, len);
    free(text);
    if (errs->count > 0) {
        agents_auth_free(t);
        return NULL;
    }
    return t;
}

void agents_auth_free(auth_table *t)
{
    if (t == NULL)
        return;
    OPENSSL_cleanse(t->agents, t->count * sizeof *t->agents);
    free(t->agents);
    free(t);
}

size_t agents_auth_count(const auth_table *t)
{
    return t->count;
}

int agents_check(const char *tokens_file, agents_errors *errs)
{
    auth_table *t = agents_auth_load(tokens_file, errs);
    int n = t ? (int)t->count : -1;
    agents_auth_free(t);
    return n;
}

/* Checking a token ---------------------------------------------------------------*/

static bool token68(const char *s)
{
    size_t n = strlen(s), i = 0;
    if (n == 0 || n > AUTH_MAX_TOKEN)
        return false;
    while (i < n && (isalnum((unsigned char)s[i]) || strchr("-._~+/", s[i])))
        i++;
    if (i == 0)
        return false;
    while (i < n && s[i] == '=')
        i++;
    return i == n;
}

auth_result agents_auth_check(const auth_table *t, const char *header, time_t now, const auth_agent **who)
{
    *who = NULL;
    if (header == NULL)
        return AUTH_MISSING;
    if (strncasecmp(header, "Bearer ", 7) != 0 || !token68(header + 7))
        return AUTH_MALFORMED;
    const char *token = header + 7;
    unsigned char digest[32];
    if (EVP_Digest(token, strlen(token), digest, NULL, EVP_sha256(), NULL) != 1)
        return AUTH_UNKNOWN;
    const auth_agent *found = NULL;
    for (size_t i = 0; i < t->count; i++)
        if (CRYPTO_memcmp(digest, t->agents[i].digest, sizeof digest) == 0)
            found = &t->agents[i];
    OPENSSL_cleanse(digest, sizeof digest);
    if (found == NULL)
        return AUTH_UNKNOWN;
    *who = found;
    if (found->expires != 0 && now >= found->expires)
        return AUTH_EXPIRED;
    return AUTH_OK;
}

const char *agents_auth_result_name(auth_result r)
{
    switch (r) {
    case AUTH_OK: return "ok";
    case AUTH_MISSING: return "no_token";
    case AUTH_MALFORMED: return "malformed";
    case AUTH_UNKNOWN: return "unknown_token";
    case AUTH_EXPIRED: return "expired";
    }
    return "unknown";
}

const char *agents_auth_role_name(agent_role r)
{
    switch (r) {
    case AGENT_OBSERVER: return "observer";
    case AGENT_AGENT: return "agent";
    case AGENT_SUPERVISOR: return "supervisor";
    }
    return "unknown";
}
