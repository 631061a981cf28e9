/*
 * wincrc.c — table-driven CRC-64 and CRC-32 of the Windows dedup format (see wincrc.h). The tables are
 * built once, on first use, from the polynomials; tests/unit/check_wincrc.c checks both against
 * published check values and against header CRCs of a real Windows container.
 */
#include "config.h"

#include <pthread.h>

#include "windows/wincrc.h"

#define CRC64_POLY 0x9a6c9329ac4bc9b5ull /* reflected */
#define CRC32_POLY 0xedb88320u           /* reflected */

static uint64_t crc64_table[256];
static uint32_t crc32_table[256];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void tables_init(void)
{
    for (unsigned i = 0; i < 256; i++) {
        uint64_t c64 = i;
        uint32_t c32 = i;
        for (int k = 0; k < 8; k++) {
            c64 = (c64 & 1) ? (c64 >> 1) ^ CRC64_POLY : c64 >> 1;
            c32 = (c32 & 1) ? (c32 >> 1) ^ CRC32_POLY : c32 >> 1;
        }
        crc64_table[i] = c64;
        crc32_table[i] = c32;
    }
}

uint64_t wincrc_64_more(uint64_t crc, const void *data, size_t len)
{
    pthread_once(&tables_once, tables_init);
    const uint8_t *p = data;
    uint64_t c = ~crc; /* undo the final XOR: the register as it was after the earlier bytes */
    for (size_t i = 0; i < len; i++)
        c = (c >> 8) ^ crc64_table[(c ^ p[i]) & 0xff];
    return ~c;
}

uint64_t wincrc_64(const void *data, size_t len) { return wincrc_64_more(~UINT64_C(0), data, len); }

uint32_t wincrc_32(const void *data, size_t len)
{
    pthread_once(&tables_once, tables_init);
    const uint8_t *p = data;
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < len; i++)
        c = (c >> 8) ^ crc32_table[(c ^ p[i]) & 0xff];
    return ~c;
}
