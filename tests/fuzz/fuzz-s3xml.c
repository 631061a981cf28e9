/*
 * fuzz-s3xml.c — the XML answers of an S3 server (src/s3/listxml.c): a ListObjectsV2 page, an error and
 * a CreateMultipartUpload answer (its upload id must be a non-empty string that fits),
 * which come over the network and are untrusted. Every key handed to the visitor must be a non-empty
 * string of exactly the length the parser reports (no NUL inside), a token must be a string, and the
 * error's code and message must be terminated within their buffers.
 */
#include "config.h"

#include <stdbool.h>

#include "s3/s3.h"
#include "fuzz.h"

static int visit(void *ud, const char *key, uint64_t size)
{
    (void)size;
    size_t *n = ud;
    if (!key[0])
        abort();
    (*n) += strlen(key);
    return *n > (1u << 20); /* a visitor that stops the listing */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *xml = malloc(size + 1);
    if (!xml)
        return 0;
    memcpy(xml, data, size);
    xml[size] = 0;
    size_t n = 0;
    bool more = false;
    char *token = NULL;
    int r = s3_xml_list(xml, size, visit, &n, &more, &token);
    if (r == 0 && more != (token != NULL))
        abort();
    if (token && strlen(token) == 0)
        abort();
    free(token);
    char code[32], msg[64];
    s3_xml_error(xml, size, code, sizeof(code), msg, sizeof(msg));
    if (strlen(code) >= sizeof(code) || strlen(msg) >= sizeof(msg))
        abort();
    char id[48];
    int ir = s3_xml_upload_id(xml, size, id, sizeof(id));
    if (ir == 0 && (!id[0] || strlen(id) >= sizeof(id) - 1))
        abort();
    free(xml);
    return 0;
}
