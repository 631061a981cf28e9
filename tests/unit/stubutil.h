/*
 * stubutil.h — for the Check suites that restore through rh_restore_files: makes the stub of a snapshot
 * entry (an empty file of the entry's size carrying its reparse point in the xattr), as phase 1 of a
 * restore lays it out.
 */
#ifndef RH_TESTS_STUBUTIL_H
#define RH_TESTS_STUBUTIL_H

#include <check.h>
#include <fcntl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/util.h"
#include "store/reparse.h"
#include "snapshot/catalog.h"

/* Makes dir/name the stub of entry `name` (a path in the snapshot) of catalog c, of the store with
 * uuid `uuid`; returns the stub's malloc'd path. */
static inline char *test_make_stub(catalog *c, const uint8_t uuid[16], const char *name, const char *dir)
{
    uint64_t idx;
    ck_assert_int_eq(catalog_lookup_path(c, name, &idx), 0);
    catalog_entry *e;
    ck_assert_int_eq(catalog_get(c, idx, &e), 0);
    reparse_point rp;
    reparse_make(&rp, uuid, e->size, &e->stream);
    uint8_t raw[REPARSE_SIZE];
    reparse_encode(&rp, raw);
    char *p = xasprintf("%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)e->size), 0);
    ck_assert_int_eq(fsetxattr(fd, REPARSE_XATTR, raw, sizeof(raw), 0), 0);
    close(fd);
    catalog_entry_free(e);
    return p;
}

#endif
