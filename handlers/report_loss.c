/* report_loss — the two steps of a loss report that are the caller's:
 * confirming the card by its last four characters, and placing the report
 * through gateway/loss, which makes it durable before anyone is told
 * "accepted" and delivers it to the registry exactly once. Every outcome
 * but "unavailable" ends durably: the report is in the outbox, so the
 * caller hears it even if the session cannot be saved afterwards. */
#include <ctype.h>
#include <string.h>

#include "builtin.h"
#include "channel.h"
#include "loss.h"

#define LAST_CHARS 4
/* The wait for the registry ends this long before the engine's deadline for
 * the call, so "accepted" comes from here, not "unavailable" from there. */
#define ANSWER_SLACK_MS 100

/* Compares the caller's last four with the card's, ignoring case: a keypad
 * cannot type letters, and a text user may type them in either case. */
static bool last_four_match(const char *card, const char *last4)
{
    size_t n = strlen(card);
    if (n < LAST_CHARS || strlen(last4) != LAST_CHARS)
        return false;
    for (size_t i = 0; i < LAST_CHARS; i++)
        if (toupper((unsigned char)card[n - LAST_CHARS + i]) != toupper((unsigned char)last4[i]))
            return false;
    return true;
}

void handlers_confirm_card_run(handler_call *c)
{
    const char *card = handler_arg(c, "card"), *last4 = handler_arg(c, "last4");
    bool match = card && last4 && last_four_match(card, last4);
    handler_finish(c, match ? "match" : "mismatch", NULL);
}

static void placed(const loss_result *r, void *arg)
{
    handler_call *c = arg;
    switch (r->outcome) {
    case LOSS_DONE:
        handler_finish_durable(c, "done", json_pack("{s:s, s:s}", "reference", r->reference, "expires_on",
                                                    r->expires_on ? r->expires_on : ""));
        return;
    case LOSS_ACCEPTED:
        handler_finish_durable(c, "accepted", json_pack("{s:s}", "reference", r->reference));
        return;
    case LOSS_UNCONFIRMED:
        handler_finish_durable(c, "unconfirmed", json_pack("{s:s}", "reference", r->reference));
        return;
    case LOSS_NOT_NORMAL:
        handler_finish_durable(c, "not_normal", NULL);
        return;
    case LOSS_UNAVAILABLE:
    default:
        handler_finish(c, "unavailable", NULL);
        return;
    }
}

void handlers_report_loss_run(handler_call *c)
{
    const handler_env *env = handler_env_of(c);
    if (!env->loss) {
        handler_finish(c, "unavailable", NULL);
        return;
    }
    loss_request req = {
        .card = handler_arg(c, "card"),
        .ssn = handler_arg(c, "id"),
        .channel = channel_name(handler_channel(c)),
        .lang = handler_arg(c, "lang"),
        .mobile = handler_arg(c, "mobile"),
        .key = handler_call_key(c),
    };
    int deadline = env->limits.handler_timeout_ms; /* 0: unknown, no bound */
    int within = deadline > ANSWER_SLACK_MS ? deadline - ANSWER_SLACK_MS : deadline;
    loss_place(env->loss, &req, env->limits.loss_confirm_wait_ms, within, placed, c);
}
