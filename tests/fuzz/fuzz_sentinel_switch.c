/* fuzz_sentinel_switch — a Sentinel's +switch-master payload as the store
 * reads it (sentinel_read_switch): the input is the payload whole. A
 * message naming our master must yield an IP address and a port in range.
 * Nothing is kept between inputs. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sentinel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char host[SENTINEL_HOST_MAX];
    int port = 0;
    if (sentinel_read_switch((const char *)data, size, "cardline", host, &port) != SENTINEL_SWITCH_OURS)
        return 0;
    unsigned char bin[16];
    if ((inet_pton(AF_INET, host, bin) != 1 && inet_pton(AF_INET6, host, bin) != 1) || port < 1 || port > 65535)
        abort();
    return 0;
}
