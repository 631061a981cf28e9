/*
 * testutil.h — shared helpers for the Check suites: a temp directory per test and a runner main().
 */
#ifndef RH_TESTS_TESTUTIL_H
#define RH_TESTS_TESTUTIL_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Makes a fresh directory under $TMPDIR (or /tmp) and returns its malloc'd path. */
static inline char *test_mkdtemp(void)
{
    const char *t = getenv("TMPDIR");
    char *p;
    if (asprintf(&p, "%s/rh-test-XXXXXX", t && *t ? t : "/tmp") < 0)
        abort();
    if (!mkdtemp(p))
        abort();
    return p;
}

/* Removes a directory tree made by test_mkdtemp. */
static inline void test_rmtree(const char *p)
{
    char *cmd;
    if (asprintf(&cmd, "rm -rf '%s'", p) < 0)
        abort();
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", p);
    free(cmd);
}

/* A deterministic pseudo-random byte generator (splitmix64) for test data. */
static inline void test_fill_random(void *out, size_t n, unsigned long long seed)
{
    unsigned char *p = out;
    unsigned long long x = seed;
    for (size_t i = 0; i < n; i++) {
        if (i % 8 == 0) {
            x += 0x9e3779b97f4a7c15ull;
        }
        unsigned long long z = x + (i % 8);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        p[i] = (unsigned char)z;
    }
}

/* Runs one suite and returns the process exit status. */
static inline int test_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
