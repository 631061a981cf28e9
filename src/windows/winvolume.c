/*
 * winvolume.c — a Windows Server dedup volume as Linux shows it (see winvolume.h).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "common/fsutil.h"
#include "common/util.h"
#include "store/format_windows.h"
#include "windows/winreparse.h"
#include "windows/winvolume.h"

const char *const winvolume_reparse_xattrs[2] = { "system.ntfs_reparse_data", WINSTORE_STUB_XATTR };

int winvolume_read_reparse(const char *path, bool follow, uint8_t **ret, size_t *ret_len, const char **ret_xattr)
{
    for (size_t k = 0; k < ARRAY_SIZE(winvolume_reparse_xattrs); k++) {
        uint8_t *b = NULL;
        size_t len = 0;
        int r = fs_xattr_fetch(path, winvolume_reparse_xattrs[k], follow, &b, &len);
        if (r == -ENODATA || r == -ENOTSUP || r == -EPERM) /* none; or no xattrs (of this namespace) here */
            continue;
        if (r < 0)
            return r;
        if (len < 4 || get_le32(b) != WINREPARSE_TAG) { /* another kind of reparse point: a link, a junction */
            free(b);
            continue;
        }
        *ret = b;
        *ret_len = len;
        *ret_xattr = winvolume_reparse_xattrs[k];
        return 1;
    }
    return 0;
}

void winvolume_guid_name(const uint8_t g[16], char out[40])
{
    snprintf(out, 40, "{%08X-%04X-%04X-%02X%02X-%02X%02X%02X%02X%02X%02X}", (unsigned)get_le32(g),
             (unsigned)get_le16(g + 4), (unsigned)get_le16(g + 6), g[8], g[9], g[10], g[11], g[12], g[13], g[14],
             g[15]);
}

char *winvolume_find_any_case(const char *dir, const char *want)
{
    char *path = xasprintf("%s/%s", dir, want);
    struct stat st;
    if (stat(path, &st) == 0)
        return path;
    free(path);
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    char *found = NULL;
    for (struct dirent *de; !found && (de = readdir(d));)
        if (!strcasecmp(de->d_name, want))
            found = xasprintf("%s/%s", dir, de->d_name);
    closedir(d);
    return found;
}

char *winvolume_chunkstore_dir(const char *root)
{
    char *dir = xstrdup(root);
    for (const char *p = WINVOLUME_CHUNKSTORES; dir && *p;) {
        size_t len = strcspn(p, "/");
        char *part = xasprintf("%.*s", (int)len, p);
        char *next = winvolume_find_any_case(dir, part);
        free(part);
        free(dir);
        dir = next;
        p += len + (p[len] == '/');
    }
    return dir;
}

char *winvolume_store_path(const char *store_dir, const uint8_t guid[16])
{
    char name[48];
    winvolume_guid_name(guid, name);
    strcat(name, ".ddp");
    return winvolume_find_any_case(store_dir, name);
}
