/* handler_def — a handler's declaration, the row of the handler table
 * (handlers.h): its name, the arguments a call node may pass it and the
 * results it can end with, with the session variables each one sets. The
 * dialplan checker validates call nodes against it (dialplan.h looks
 * handlers up by name through a function it is given), so this is the one
 * header of handlers/ the dialplan module sees. */
#ifndef CARDLINE_HANDLER_DEF_H
#define CARDLINE_HANDLER_DEF_H

typedef struct handler_call handler_call;

typedef void handler_fn(handler_call *call);

typedef struct {
    const char *name;            /* result a call node branches on, e.g. "ok" */
    const char *const *sets;     /* variables set by this result (NULL-terminated, may be NULL) */
} handler_result;

typedef struct handler_def {
    const char *name;                    /* as written in dialplans */
    const char *const *args;             /* required arguments (NULL-terminated, may be NULL) */
    const char *const *optional_args;    /* optional arguments (NULL-terminated, may be NULL) */
    const char *const *secret_args;      /* arguments that may carry a secret variable (subset of the above) */
    const handler_result *results;       /* every possible result, ended by {NULL, NULL} */
    handler_fn *run;                     /* starts the work */
} handler_def;

#endif
