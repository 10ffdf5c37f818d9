/* Fuzzes the Go duration parser: whatever the bytes, it returns 0 with a value within
 * +-100 years, or -EINVAL or -ERANGE; a value it accepts, written back in whole seconds and
 * parsed again, is the same to the second rounded up; and it never reads past len. Aborts on a
 * violation. Input: the duration's text. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lapi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const int64_t limit = 100LL * 365 * 86400 * 1000;
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    int64_t ms = 0;
    int r = lapi_duration_parse(buf, size, &ms);
    free(buf);
    if (r != 0 && r != -EINVAL && r != -ERANGE)
        abort();
    if (r == 0) {
        if (ms > limit || ms < -limit)
            abort();
        if (ms > 0) {
            char text[32];
            int64_t back;
            lapi_duration_format(ms, text, sizeof(text));
            if (lapi_duration_parse(text, strlen(text), &back) != 0 || back < ms ||
                back - ms >= 1000)
                abort();
        }
    }
    return 0;
}
