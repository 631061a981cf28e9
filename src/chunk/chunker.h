/*
 * chunker.h — content-defined chunking: FastCDC (Xia et al., 2016/2020) with a 64-bit gear hash and
 * normalized chunking. A cut point depends only on the bytes since the previous cut, so the chunker is
 * stateless: give it a buffer that starts at a chunk boundary and it says where the chunk ends.
 */
#ifndef RH_CHUNK_CHUNKER_H
#define RH_CHUNK_CHUNKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHUNKER_MIN_DEFAULT (16u * 1024)
#define CHUNKER_AVG_DEFAULT (64u * 1024)
#define CHUNKER_MAX_DEFAULT (256u * 1024)
#define CHUNKER_NORMALIZATION_DEFAULT 2

typedef struct chunker_params {
    uint32_t min_size, avg_size, max_size; /* avg a power of two; min < avg < max */
    uint32_t normalization;                /* FastCDC normalization level (bits), 0..3 */
    uint64_t seed;                         /* seeds the gear table; 0 is the store default */
} chunker_params;

/* The precomputed gear table and masks for one set of parameters. */
typedef struct chunker {
    chunker_params p;
    uint64_t mask_s, mask_l; /* stricter mask before avg_size, looser after */
    uint64_t gear[256];
} chunker;

/* Checks params (sizes, power of two, normalization range); 0 or -EINVAL. */
int chunker_params_check(const chunker_params *p);
/* Fills *c for params *p (which must pass chunker_params_check). */
void chunker_init(chunker *c, const chunker_params *p);
/*
 * Given buf[0..len) that starts at a chunk boundary, returns the length of the chunk that starts there:
 * - a cut point in [min_size, max_size] found in the data, or max_size if len >= max_size and no cut;
 * - if len < max_size and no cut was found: 0 when !eof (give me more data), len when eof.
 * Never returns more than len. A buffer of len <= min_size with eof is one chunk of len bytes.
 */
size_t chunker_next(const chunker *c, const uint8_t *buf, size_t len, bool eof);

#endif
