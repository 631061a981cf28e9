/*
 * format_windows.h — a Windows Server dedup chunk store ({GUID}.ddp, with Data/ and Stream/ holding .ccc
 * containers) opened as an rh_store: its format table (store/format.h) and how rh_store_open finds it.
 */
#ifndef RH_STORE_FORMAT_WINDOWS_H
#define RH_STORE_FORMAT_WINDOWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/format.h"

/* Where a stub in a Linux tree keeps its Windows reparse buffer (ntfs-3g shows the same bytes as
 * system.ntfs_reparse_data, which other file systems do not let one set). */
#define WINSTORE_STUB_XATTR "user.ntfs_reparse_data"
#define WINSTORE_STUB_MAX 16384 /* NTFS's limit on a reparse buffer */

extern const store_format store_format_windows;

/* True when the store s (opened, without rehydrate.store) looks like a chunk store: local, it has Data/
 * or Stream/; behind callbacks, `list` finds a container in either. */
bool winstore_detect(rh_store *s);
/* Parses a container file name "<8 hex>.<8 hex>.ccc" (either case) into its id and generation. */
bool winstore_parse_name(const char *name, uint32_t *id, uint32_t *gen);
/* The local half: the directory rootfd has Data/ or Stream/. */
bool winstore_detect_dir(int rootfd);
/* The GUID of a directory named "{XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}.ddp" (trailing slashes allowed),
 * as a reparse point stores it (the first three fields little-endian). False for any other name. */
bool winstore_guid_of_name(const char *path, uint8_t out[16]);
/* Makes the store s (s->path and its callbacks set, no rehydrate.store) a Windows chunk store. */
int winstore_init(rh_store *s);
/*
 * A stream map's Smap payload raw[0..len) as a map with locations; `start` is the file offset where its
 * first chunk begins (0, or the begin of a part of a 0x0102 reparse point). RH_ECORRUPT, -ENOMEM.
 */
int winstore_smap_to_map(const uint8_t *raw, size_t len, uint64_t start, streammap **ret);

#endif
