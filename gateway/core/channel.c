/* channel — names of the channels (see channel.h). */
#include "channel.h"

#include <string.h>

static const char *const names[CHANNEL_COUNT] = {"voice", "ussd", "sms"};

const char *channel_name(channel_kind ch)
{
    return (unsigned)ch < CHANNEL_COUNT ? names[ch] : "unknown";
}

int channel_parse(const char *name, channel_kind *out)
{
    for (int i = 0; i < CHANNEL_COUNT; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (channel_kind)i;
            return 0;
        }
    }
    return -1;
}
