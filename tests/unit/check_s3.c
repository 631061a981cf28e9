/*
 * check_s3.c — the parts of the S3 client that need no server (src/s3/): store URLs, where credentials
 * and the region come from, and the two XML answers we read. Requests themselves are tested against a
 * real server in tests/integration/s3.sh.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "s3/s3.h"
#include "testutil.h"

static char home[256];

/* A clean environment: no AWS variables, HOME in a fresh directory. */
static void setup(void)
{
    const char *vars[] = { "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                           "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
                           "REHYDRATE_S3_BUCKET_LOOKUP" };
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
    snprintf(home, sizeof(home), "/tmp/check_s3.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(home));
    setenv("HOME", home, 1);
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", home);
    ck_assert_int_eq(system(cmd), 0);
}

static void write_file(const char *rel, const char *text)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/.aws", home);
    mkdir(p, 0700);
    snprintf(p, sizeof(p), "%s/%s", home, rel);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void keys(void)
{
    setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "SECRET", 1);
}

START_TEST(test_url_forms)
{
    keys();
    char err[512];
    s3_config c;
    ck_assert_int_eq(s3_config_from_url("s3:http://127.0.0.1:9000/bucket/a/b/", &c, err, sizeof(err)), 0);
    ck_assert(!c.https);
    ck_assert_str_eq(c.host, "127.0.0.1:9000");
    ck_assert_str_eq(c.bucket, "bucket");
    ck_assert_str_eq(c.prefix, "a/b/");
    ck_assert(c.path_style);
    ck_assert_str_eq(c.region, "us-east-1");
    ck_assert_str_eq(c.access_key, "AKID");
    ck_assert_str_eq(c.secret_key, "SECRET");
    ck_assert_ptr_null(c.session_token);
    s3_config_free(&c);

    /* restic's short form: https, AWS, virtual-host requests, the region from the host */
    ck_assert_int_eq(s3_config_from_url("s3:s3.eu-west-3.amazonaws.com/my-bucket", &c, err, sizeof(err)), 0);
    ck_assert(c.https);
    ck_assert_str_eq(c.host, "s3.eu-west-3.amazonaws.com");
    ck_assert_str_eq(c.prefix, "");
    ck_assert(!c.path_style);
    ck_assert_str_eq(c.region, "eu-west-3");
    s3_config_free(&c);

    /* a bucket with dots cannot be a TLS host name under AWS's certificate: path style */
    ck_assert_int_eq(s3_config_from_url("s3:https://s3.amazonaws.com/my.bucket//x//", &c, err, sizeof(err)), 0);
    ck_assert(c.path_style);
    ck_assert_str_eq(c.prefix, "x/");
    ck_assert_str_eq(c.region, "us-east-1");
    s3_config_free(&c);

    setenv("REHYDRATE_S3_BUCKET_LOOKUP", "dns", 1);
    setenv("AWS_DEFAULT_REGION", "garage", 1);
    setenv("AWS_SESSION_TOKEN", "TOKEN", 1);
    ck_assert_int_eq(s3_config_from_url("s3:https://s3.example.org/b", &c, err, sizeof(err)), 0);
    ck_assert(!c.path_style);
    ck_assert_str_eq(c.region, "garage");
    ck_assert_str_eq(c.session_token, "TOKEN");
    s3_config_free(&c);
}
END_TEST

START_TEST(test_url_errors)
{
    keys();
    char err[512];
    s3_config c;
    static const struct {
        const char *url, *says;
    } bad[] = {
        { "/local/store", "not an s3: URL" },
        { "s3:ftp://host/bucket", "only http:// and https://" },
        { "s3:http://host", "expected s3:" },
        { "s3:http://host/", "expected s3:" },
        { "s3:http://host//x", "expected s3:" },
        { "s3:http://key:secret@host/bucket", "do not belong in the URL" },
        { "s3:http://host/buck?et", "is not a bucket name" },
        { "s3:http://ho st/bucket", "no host name has" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        ck_assert_int_eq(s3_config_from_url(bad[i].url, &c, err, sizeof(err)), -EINVAL);
        ck_assert_msg(strstr(err, bad[i].says), "%s: \"%s\" does not say \"%s\"", bad[i].url, err, bad[i].says);
        ck_assert_ptr_null(c.host);
    }
    setenv("REHYDRATE_S3_BUCKET_LOOKUP", "sideways", 1);
    ck_assert_int_eq(s3_config_from_url("s3:http://host/b", &c, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "expected auto, path or dns"));
    unsetenv("REHYDRATE_S3_BUCKET_LOOKUP");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    ck_assert_int_eq(s3_config_from_url("s3:http://host/b", &c, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "no credentials"));
}
END_TEST

START_TEST(test_profiles)
{
    char err[512];
    s3_config c;
    write_file(".aws/credentials", "# comment\n[other]\naws_access_key_id=WRONG\n"
                                   "[default]\n  aws_access_key_id = DEFKEY  \naws_secret_access_key=DEFSECRET\r\n"
                                   "; another\n[work]\naws_access_key_id = WORKKEY\naws_secret_access_key = WS\n"
                                   "aws_session_token = WT\n");
    write_file(".aws/config", "[default]\nregion = eu-north-1\n[profile work]\nregion=ap-south-2\n"
                              "[profile cfgonly]\naws_access_key_id = CFGKEY\naws_secret_access_key = CS\n");
    ck_assert_int_eq(s3_config_from_url("s3:http://h/b", &c, err, sizeof(err)), 0);
    ck_assert_str_eq(c.access_key, "DEFKEY");
    ck_assert_str_eq(c.secret_key, "DEFSECRET");
    ck_assert_str_eq(c.region, "eu-north-1");
    s3_config_free(&c);

    setenv("AWS_PROFILE", "work", 1);
    ck_assert_int_eq(s3_config_from_url("s3:http://h/b", &c, err, sizeof(err)), 0);
    ck_assert_str_eq(c.access_key, "WORKKEY");
    ck_assert_str_eq(c.session_token, "WT");
    ck_assert_str_eq(c.region, "ap-south-2");
    s3_config_free(&c);

    /* credentials in the config file's [profile NAME] */
    setenv("AWS_PROFILE", "cfgonly", 1);
    ck_assert_int_eq(s3_config_from_url("s3:http://h/b", &c, err, sizeof(err)), 0);
    ck_assert_str_eq(c.access_key, "CFGKEY");
    ck_assert_str_eq(c.region, "us-east-1");
    s3_config_free(&c);

    /* the environment wins over the files; AWS_SHARED_CREDENTIALS_FILE moves the file */
    setenv("AWS_PROFILE", "default", 1);
    keys();
    setenv("AWS_REGION", "r2", 1);
    ck_assert_int_eq(s3_config_from_url("s3:http://h/b", &c, err, sizeof(err)), 0);
    ck_assert_str_eq(c.access_key, "AKID");
    ck_assert_str_eq(c.region, "r2");
    s3_config_free(&c);
    unsetenv("AWS_ACCESS_KEY_ID");
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials", 1);
    setenv("AWS_CONFIG_FILE", "/nonexistent/config", 1);
    ck_assert_int_eq(s3_config_from_url("s3:http://h/b", &c, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/credentials"));
}
END_TEST

/* ---- XML ---- */

struct seen {
    char keys[8][64];
    uint64_t sizes[8];
    int n;
    int stop_at; /* return 7 from the visit of this index */
};

static int visit(void *ud, const char *key, uint64_t size)
{
    struct seen *s = ud;
    ck_assert_int_lt(s->n, 8);
    snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", key);
    s->sizes[s->n] = size;
    return s->n++ == s->stop_at ? 7 : 0;
}

static int list(const char *xml, struct seen *s, bool *more, char **token)
{
    memset(s, 0, sizeof(*s));
    s->stop_at = -1;
    *token = NULL;
    return s3_xml_list(xml, strlen(xml), visit, s, more, token);
}

START_TEST(test_xml_list)
{
    struct seen s;
    bool more;
    char *token;
    const char *page =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name>"
        "<Prefix>p/snapshots/</Prefix><KeyCount>2</KeyCount><IsTruncated>true</IsTruncated>"
        "<NextContinuationToken>1a/b+c=&amp;</NextContinuationToken>"
        "<Contents><Key>p/snapshots/a &amp; b &lt;1&gt; &quot;q&quot; &apos;.snap</Key><Size>123</Size></Contents>"
        "<Contents><Key>p/snapshots/caf&#233;&#x1F600;.snap</Key><LastModified>x</LastModified>"
        "<Size>18446744073709551615</Size></Contents></ListBucketResult>";
    ck_assert_int_eq(list(page, &s, &more, &token), 0);
    ck_assert_int_eq(s.n, 2);
    ck_assert_str_eq(s.keys[0], "p/snapshots/a & b <1> \"q\" '.snap");
    ck_assert_uint_eq(s.sizes[0], 123);
    ck_assert_str_eq(s.keys[1], "p/snapshots/caf\xc3\xa9\xf0\x9f\x98\x80.snap");
    ck_assert_uint_eq(s.sizes[1], UINT64_MAX);
    ck_assert(more);
    ck_assert_str_eq(token, "1a/b+c=&");
    free(token);

    /* the last page: no token; an empty page */
    ck_assert_int_eq(list("<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>k</Key><Size>0</Size>"
                          "</Contents></ListBucketResult>", &s, &more, &token), 0);
    ck_assert(!more);
    ck_assert_ptr_null(token);
    ck_assert_int_eq(s.n, 1);
    ck_assert_int_eq(list("<ListBucketResult></ListBucketResult>", &s, &more, &token), 0);
    ck_assert_int_eq(s.n, 0);

    /* a visit that stops the listing */
    memset(&s, 0, sizeof(s));
    s.stop_at = 0;
    ck_assert_int_eq(s3_xml_list(page, strlen(page), visit, &s, &more, &token), 7);
    ck_assert_int_eq(s.n, 1);

    static const char *const corrupt[] = {
        "<Error><Code>AccessDenied</Code></Error>",                             /* not a listing */
        "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>", /* truncated, no token */
        "<ListBucketResult><Contents><Key>k</Key></Contents></ListBucketResult>",             /* no size */
        "<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>k</Key><Size>123456789012345678901</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key></Key><Size>1</Size></Contents></ListBucketResult>",  /* empty key */
        "<ListBucketResult><Contents><Key>a&#0;b</Key><Size>1</Size></Contents></ListBucketResult>", /* NUL */
        "<ListBucketResult><Contents><Key>a&bogus;</Key><Size>1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>a&#x110000;</Key><Size>1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>a&#12</Key><Size>1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>abc</Size></Contents>",
    };
    for (size_t i = 0; i < sizeof(corrupt) / sizeof(corrupt[0]); i++) {
        token = NULL;
        ck_assert_msg(list(corrupt[i], &s, &more, &token) == RH_ECORRUPT, "accepted: %s", corrupt[i]);
        ck_assert_ptr_null(token);
    }
}
END_TEST

START_TEST(test_xml_error)
{
    char code[16], msg[24];
    const char *e = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code>"
                    "<Message>The request &amp; its\nsignature</Message></Error>";
    s3_xml_error(e, strlen(e), code, sizeof(code), msg, sizeof(msg));
    ck_assert_str_eq(code, "SignatureDoesN"  "o");   /* cut to fit, terminated */
    ck_assert_str_eq(msg, "The request & its signa");  /* control characters made spaces */
    s3_xml_error("", 0, code, sizeof(code), msg, sizeof(msg));
    ck_assert_str_eq(code, "");
    ck_assert_str_eq(msg, "");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("s3");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_url_forms);
    tcase_add_test(tc, test_url_errors);
    tcase_add_test(tc, test_profiles);
    tcase_add_test(tc, test_xml_list);
    tcase_add_test(tc, test_xml_error);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
