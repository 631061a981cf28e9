/*
 * fuzz-lock.c — the lock object of a store on object storage (src/store/remote.c, store_lock_parse):
 * anyone who can write to the bucket can write one, and every backup reads the ones it lists. A parsed
 * lock must have a host name of printable bytes without spaces, a pid and a time that the writer could
 * have written, and must parse to the same values once written back in the writer's form.
 */
#include "config.h"

#include <stdio.h>

#include "store/store.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    store_lock_body b;
    if (store_lock_parse((const char *)data, size, &b) < 0)
        return 0;
    size_t hl = strnlen(b.host, sizeof(b.host));
    if (hl == 0 || hl >= sizeof(b.host) || b.pid < 0 || b.time < 0)
        abort();
    for (size_t i = 0; i < hl; i++)
        if ((unsigned char)b.host[i] <= ' ')
            abort();
    char again[512];
    int n = snprintf(again, sizeof(again), "rehydrate-lock 1\nhost %s\npid %ld\ntime %lld\n", b.host, b.pid, b.time);
    store_lock_body c;
    if (n < 0 || (size_t)n >= sizeof(again) || store_lock_parse(again, (size_t)n, &c) < 0 ||
        strcmp(b.host, c.host) != 0 || b.pid != c.pid || b.time != c.time)
        abort();
    return 0;
}
