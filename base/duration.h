/* Durations as admins write them: "90", "30s", "10m", "1h", "7d", "2w", "1h30m". */
#pragma once
#include <stddef.h>
#include <stdint.h>

/* Parses s into seconds. A bare number is seconds. Units: s m h d w, combinable in
 * decreasing order ("1d12h"). Returns 0, -EINVAL (garbage, empty, repeated or unordered units)
 * or -ERANGE (overflow). */
int duration_parse(const char *s, int64_t *ret_seconds);

/* Writes the shortest exact form ("1h30m", "0s") into buf; returns buf. */
const char *duration_format(int64_t seconds, char *buf, size_t buflen);
