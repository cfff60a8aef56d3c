/* loss — owns the "loss_report" outbox kind: turning a confirmed report
 * into a durable entry, delivering entries to the registry exactly once
 * (Idempotency-Key), queueing the SMS confirmation, and the short waits of
 * callers who want to hear "done" rather than "accepted" (see loss.h).
 * Waits and registry requests are core/pending ops; those still waiting
 * for an answer when the module is freed are detached and end on it. */
#include "loss.h"

#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "log.h"
#include "mask.h"
#include "mem.h"
#include "metrics.h"
#include "monotime.h"
#include "outbox.h"
#include "pending.h"
#include "registry.h"

#define LOSS_KIND "loss_report"
#define LOSS_KEY_MAX 128          /* a caller's key, as the outbox allows for dedupe */
#define LOSS_SMS_MAX 1600         /* the SMS deliverer's text limit */
#define LOSS_DATE_MAX 16
#define LOSS_READD_MS 100         /* pause before adding again an add of unknown outcome */

typedef struct waiter waiter;

/* A caller waiting to hear how its report went. */
struct waiter {
    loss *l;                     /* NULL once the module is gone */
    pending_op op;               /* in the module's open waits; completed with
                                  * a loss_outcome, the wait's end its deadline */
    char reference[LOSS_REFERENCE_LEN + 1];
    loss_cb *cb;                 /* told exactly once */
    void *arg;
    int wait_ms;                 /* how long to wait after the add */
    long answer_by_ms;           /* monotonic ms the wait must end by; 0: none */
    bool adding;                 /* the outbox add has not answered yet */
    bool queued;                 /* an add was answered added or duplicate */
    bool unreplicated;           /* ...but the replicas did not all acknowledge it */
    bool told;                   /* the registry answered while the add was with Redis */
    loss_outcome told_outcome;   /* what it said, for when the add answers */
    char told_expires[LOSS_DATE_MAX]; /* and its expiry date */
    json_t *payload;             /* the entry, kept until an add is answered for
                                  * sure (full numbers: never logged) */
    char dedupe[LOSS_KEY_MAX + 1]; /* its dedupe key: a second add finds the first */
    const char *expires_on;      /* on LOSS_DONE, while the completion runs */
    struct event *readd;         /* the pause before adding again; NULL until one */
};

typedef struct delivery delivery;

/* One delivery in flight: the attempt and what the registry's answer needs. */
struct delivery {
    loss *l;                     /* NULL once the module is gone */
    pending_op op;               /* in the module's registry requests; completed
                                  * with the registry_status */
    outbox_attempt *attempt;
    char reference[LOSS_REFERENCE_LEN + 1];
    const registry_result *result; /* the registry's answer, while the completion runs */
};

struct loss {
    struct event_base *base;     /* the main loop */
    registry *reg;               /* where reports go */
    outbox *ob;                  /* where they wait */
    loss_render_fn *render;      /* SMS wording */
    void *render_ctx;
    pending_set waiters;         /* open waits, oldest first */
    pending_set deliveries;      /* registry requests in flight */
};

const char *loss_outcome_name(loss_outcome o)
{
    switch (o) {
    case LOSS_DONE: return "done";
    case LOSS_ACCEPTED: return "accepted";
    case LOSS_NOT_NORMAL: return "not_normal";
    case LOSS_UNAVAILABLE: return "unavailable";
    case LOSS_UNCONFIRMED: return "unconfirmed";
    }
    return "?";
}

/* References ----------------------------------------------------------------*/

/* "GS" + 12 characters (60 bits) of FNV-1a over the caller's key: the same
 * confirmation always gets the same reference, which is also what the
 * registry's Idempotency-Key is made of. Crockford's alphabet: no I, L, O, U,
 * so a reference read out over the phone is not misheard. */
static void reference_of(const char *key, char out[LOSS_REFERENCE_LEN + 1])
{
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    uint64_t h = 14695981039346656037ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    out[0] = 'G';
    out[1] = 'S';
    for (int i = 0; i < 12; i++, h >>= 5)
        out[2 + i] = alphabet[h & 31];
    out[LOSS_REFERENCE_LEN] = '\0';
}

/* Waits -----------------------------------------------------------------------*/

/* pending's completion, the only place a caller is told. */
static void waiter_completed(pending_op *op, int outcome)
{
    waiter *w = pending_owner(op, waiter, op);
    loss_outcome o = (loss_outcome)outcome;
    if (w->readd)
        event_free(w->readd);
    json_decref(w->payload);
    if (o == LOSS_UNCONFIRMED)
        metrics_inc(metrics_counter("cardline_loss_unconfirmed_total",
                                    "Loss reports told unconfirmed: queued, but not acknowledged by Redis's replicas in time.",
                                    NULL));
    loss_result r = {o, o == LOSS_UNAVAILABLE ? NULL : w->reference, w->expires_on};
    w->cb(&r, w->arg);
    free(w);
}

static void waiter_end(waiter *w, loss_outcome o, const char *expires_on)
{
    w->expires_on = expires_on;
    pending_complete(&w->op, (int)o);
}

static void add(waiter *w);

static void readd_due(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    add(arg);
}

/* A wait whose add is still with Redis is not ended: its add callback
 * still has to come, and the wait ends after it — with what the registry
 * said, kept here (a durable add may answer after a WAIT for replicas
 * that outlasts the delivery). */
static void tell_waiters(loss *l, const char *reference, loss_outcome o, const char *expires_on)
{
    pending_op *op, *next;
    for (op = TAILQ_FIRST(&l->waiters.ops); op; op = next) {
        next = TAILQ_NEXT(op, link);
        waiter *w = pending_owner(op, waiter, op);
        if (strcmp(w->reference, reference) != 0)
            continue;
        if (w->adding) {
            w->told = true;
            w->told_outcome = o;
            snprintf(w->told_expires, sizeof w->told_expires, "%s", expires_on ? expires_on : "");
        } else {
            waiter_end(w, o, expires_on);
        }
    }
}

/* Placing -------------------------------------------------------------------------*/

/* The wait after the add, cut to what is left before the caller's deadline. */
static int wait_left(const waiter *w)
{
    if (!w->answer_by_ms)
        return w->wait_ms;
    long left = w->answer_by_ms - (long)monotime_ms();
    return left < 0 ? 0 : left < w->wait_ms ? (int)left : w->wait_ms;
}

/* An unavailable add may have landed all the same (Redis slow past the
 * store's deadline, or gone between applying it and answering): adding
 * again under the same dedupe key tells, "duplicate" meaning it did, while
 * the caller's deadline leaves time for another try. */
static bool may_add_again(const waiter *w, outbox_add_status st)
{
    return st == OUTBOX_UNAVAILABLE && w->answer_by_ms && w->answer_by_ms - (long)monotime_ms() > 2 * LOSS_READD_MS;
}

static void added(outbox_add_status st, const char *entry_id, void *arg)
{
    waiter *w = arg;
    (void)entry_id;
    w->adding = false;
    if (!w->l) { /* the module went away meanwhile */
        waiter_end(w, st == OUTBOX_ADDED || st == OUTBOX_DUPLICATE ? LOSS_ACCEPTED
                      : st == OUTBOX_UNREPLICATED                ? LOSS_UNCONFIRMED
                                                                 : LOSS_UNAVAILABLE,
                   NULL);
        return;
    }
    if (may_add_again(w, st)) {
        log_warn("loss.add_again", "reference=%s why=%s", w->reference, outbox_add_status_name(st));
        if (w->readd == NULL && (w->readd = evtimer_new(w->l->base, readd_due, w)) == NULL)
            mem_out_of_memory("loss: evtimer_new");
        struct timeval tv = {0, LOSS_READD_MS * 1000};
        evtimer_add(w->readd, &tv);
        return;
    }
    if (st != OUTBOX_ADDED && st != OUTBOX_DUPLICATE && st != OUTBOX_UNREPLICATED) {
        log_warn("loss.not_queued", "reference=%s why=%s", w->reference, outbox_add_status_name(st));
        waiter_end(w, LOSS_UNAVAILABLE, NULL);
        return;
    }
    json_decref(w->payload);
    w->payload = NULL;
    w->queued = true;
    w->unreplicated = st == OUTBOX_UNREPLICATED;
    log_info("loss.queued", "reference=%s duplicate=%s replicated=%s", w->reference,
             st == OUTBOX_DUPLICATE ? "yes" : "no", w->unreplicated ? "no" : "yes");
    if (w->told) {
        waiter_end(w, w->told_outcome, w->told_expires);
        return;
    }
    pending_deadline(&w->op, wait_left(w), w->unreplicated ? LOSS_UNCONFIRMED : LOSS_ACCEPTED);
    outbox_poll_now(w->l->ob);
}

static bool request_complete(const loss_request *req)
{
    return req->card && *req->card && req->ssn && *req->ssn && req->channel && req->lang && req->key &&
           *req->key && strlen(req->key) + 6 <= LOSS_KEY_MAX;
}

static json_t *payload_of(const loss_request *req, const char *reference)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "card", req->card, "ssn", req->ssn, "channel",
                     req->channel, "lang", req->lang, "mobile", req->mobile ? req->mobile : "", "reference",
                     reference, "idempotency_key", req->key);
}

static void add(waiter *w)
{
    w->adding = true;
    outbox_add_durable(w->l->ob, LOSS_KIND, w->payload, w->dedupe, added, w);
}

void loss_place(loss *l, const loss_request *req, int wait_ms, int answer_within_ms, loss_cb *cb, void *arg)
{
    waiter *w = mem_calloc(1, sizeof *w);
    w->cb = cb;
    w->arg = arg;
    w->wait_ms = wait_ms < 0 ? 0 : wait_ms;
    w->answer_by_ms = answer_within_ms > 0 ? (long)monotime_ms() + answer_within_ms : 0;
    w->l = l;
    pending_start(&l->waiters, &w->op, waiter_completed);
    if (!request_complete(req)) {
        log_error("loss.bad_request", "why=%s", log_quote("card, ssn, channel, lang and key are required").s);
        pending_complete_soon(&w->op, LOSS_UNAVAILABLE);
        return;
    }
    reference_of(req->key, w->reference);
    snprintf(w->dedupe, sizeof w->dedupe, "loss:%s", req->key);
    w->payload = payload_of(req, w->reference);
    add(w);
}

/* Delivering ------------------------------------------------------------------------*/

static const char *payload_str(json_t *payload, const char *name)
{
    const char *s = json_string_value(json_object_get(payload, name));
    return s ? s : "";
}

/* The SMS the citizen gets once the registry answered, through the outbox
 * (deduplicated by reference, so a redelivery queues it once). False when
 * it could not be queued and the delivery should be tried again. */
typedef struct {
    delivery *d;
    outbox_outcome then;         /* how the attempt ends once the SMS is queued */
    const char *reason;
} sms_wait;

static void finish(delivery *d, outbox_outcome o, const char *reason)
{
    outbox_finish(d->attempt, o, reason);
    free(d);
}

static void sms_added(outbox_add_status st, const char *entry_id, void *arg)
{
    sms_wait *sw = arg;
    (void)entry_id;
    if (st == OUTBOX_ADDED || st == OUTBOX_DUPLICATE)
        finish(sw->d, sw->then, sw->reason);
    else
        finish(sw->d, OUTBOX_RETRY, "sms_not_queued");
    free(sw);
}

static void confirm_by_sms(delivery *d, const char *prompt, const char *expires_on, outbox_outcome then,
                           const char *reason)
{
    json_t *payload = outbox_attempt_payload(d->attempt);
    const char *mobile = payload_str(payload, "mobile");
    char text[LOSS_SMS_MAX];
    json_t *vars = json_pack("{s:s, s:s, s:s}", "reference", d->reference, "card", payload_str(payload, "card"),
                             "expires_on", expires_on ? expires_on : "");
    bool worded = *mobile && d->l->render &&
                  d->l->render(d->l->render_ctx, payload_str(payload, "lang"), prompt, vars, text, sizeof text);
    json_decref(vars);
    if (!worded) {
        if (*mobile)
            log_warn("loss.sms_unworded", "reference=%s prompt=%s", d->reference, prompt);
        finish(d, then, reason);
        return;
    }
    sms_wait *sw = mem_malloc(sizeof *sw);
    *sw = (sms_wait){d, then, reason};
    json_t *sms = json_pack("{s:s, s:s, s:s}", "to", mobile, "text", text, "ref", d->reference);
    char dedupe[LOSS_KEY_MAX];
    snprintf(dedupe, sizeof dedupe, "loss-sms:%s", d->reference);
    outbox_add(d->l->ob, "sms", sms, dedupe, sms_added, sw);
    json_decref(sms);
}

/* pending's completion: what the registry's answer means. */
static void delivered(pending_op *op, int status)
{
    delivery *d = pending_owner(op, delivery, op);
    const registry_result *r = d->result;
    (void)status; /* r->status */
    if (!d->l) { /* the module is gone: the lease brings the entry back */
        finish(d, OUTBOX_RETRY, "shutting_down");
        return;
    }
    log_info("loss.delivery", "reference=%s attempt=%d registry=%s http=%ld", d->reference,
             outbox_attempt_number(d->attempt), registry_status_name(r->status), r->http_status);
    switch (r->status) {
    case REGISTRY_OK: {
        char expires[LOSS_DATE_MAX];
        snprintf(expires, sizeof expires, "%s", payload_str(r->body, "expires_on"));
        tell_waiters(d->l, d->reference, LOSS_DONE, expires);
        confirm_by_sms(d, "sms_loss_done", expires, OUTBOX_DONE, "placed");
        return;
    }
    case REGISTRY_CONFLICT: /* the card is not in normal use: answered, nothing to retry */
        tell_waiters(d->l, d->reference, LOSS_NOT_NORMAL, NULL);
        confirm_by_sms(d, "sms_loss_refused", NULL, OUTBOX_DONE, "refused");
        return;
    case REGISTRY_NOT_FOUND:
    case REGISTRY_REJECTED: /* never deliverable: parked for an operator */
        tell_waiters(d->l, d->reference, LOSS_NOT_NORMAL, NULL);
        confirm_by_sms(d, "sms_loss_refused", NULL, OUTBOX_GIVE_UP, "rejected");
        return;
    default:
        finish(d, OUTBOX_RETRY, "registry_unavailable");
        return;
    }
}

static void reported(const registry_result *r, void *arg)
{
    delivery *d = arg;
    d->result = r;
    pending_complete(&d->op, (int)r->status);
}

static void deliver(outbox_attempt *a, void *arg)
{
    loss *l = arg;
    json_t *p = outbox_attempt_payload(a);
    const char *card = payload_str(p, "card"), *reference = payload_str(p, "reference");
    const char *key = payload_str(p, "idempotency_key");
    if (!*card || strlen(reference) != LOSS_REFERENCE_LEN || !*key) {
        outbox_finish(a, OUTBOX_GIVE_UP, "malformed");
        return;
    }
    delivery *d = mem_calloc(1, sizeof *d);
    d->l = l;
    pending_start(&l->deliveries, &d->op, delivered);
    d->attempt = a;
    memcpy(d->reference, reference, LOSS_REFERENCE_LEN + 1);
    char idem[LOSS_KEY_MAX];
    snprintf(idem, sizeof idem, "loss.%s", key);
    registry_report_loss(l->reg, card, payload_str(p, "channel"), reference, idem, reported, d);
}

/* Lifecycle -----------------------------------------------------------------------*/

loss *loss_new(struct event_base *base, registry *reg, outbox *ob, loss_render_fn *render, void *render_ctx)
{
    loss *l = mem_calloc(1, sizeof *l);
    *l = (loss){.base = base, .reg = reg, .ob = ob, .render = render, .render_ctx = render_ctx};
    if (outbox_register(ob, LOSS_KIND, OUTBOX_LIMIT_AGE_ONLY, deliver, l) != 0) {
        log_error("loss.config", "why=%s", log_quote("kind loss_report already registered").s);
        free(l);
        return NULL;
    }
    pending_set_init(&l->waiters, base);
    pending_set_init(&l->deliveries, base);
    return l;
}

void loss_free(loss *l)
{
    if (!l)
        return;
    /* The registry answers them all the same (its free does): the lease
     * brings the entry back. */
    while (!TAILQ_EMPTY(&l->deliveries.ops)) {
        delivery *d = pending_owner(TAILQ_FIRST(&l->deliveries.ops), delivery, op);
        d->l = NULL;
        pending_detach(&d->op);
    }
    /* A wait whose add is still with Redis ends when Redis answers; one
     * refused or about to add again never learnt that its report landed. */
    while (!TAILQ_EMPTY(&l->waiters.ops)) {
        waiter *w = pending_owner(TAILQ_FIRST(&l->waiters.ops), waiter, op);
        if (w->adding) {
            w->l = NULL;
            pending_detach(&w->op);
        } else {
            waiter_end(w, !w->queued ? LOSS_UNAVAILABLE : w->unreplicated ? LOSS_UNCONFIRMED : LOSS_ACCEPTED,
                       NULL);
        }
    }
    free(l);
}
