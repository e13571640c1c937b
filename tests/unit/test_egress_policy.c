/* egress policy: rule syntax (normal forms and the errors that name a rule), the special
 * address ranges, and decisions by name and by address under a sandbox policy and the server's
 * ceiling, pins and the server's own addresses included. */
#include "unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <jansson.h>

#include "egress/policy.h"
#include "util/err.h"

static void rule_is(const char *text, const char *shown)
{
    struct egress_rule r;
    int rc = egress_rule_parse(text, &r);
    if (rc != 0)
        fail_msg("rule \"%s\" refused: %s", text, err_message());
    assert_string_equal(r.text, shown);
    egress_rule_release(&r);
}

static void rule_bad(const char *text, const char *needle)
{
    struct egress_rule r;
    err_clear();
    assert_int_equal(egress_rule_parse(text, &r), -ERR_INVALID_INPUT);
    assert_non_null(err_message());
    if (!strstr(err_message(), needle))
        fail_msg("message for \"%s\" lacks \"%s\": %s", text, needle, err_message());
    err_clear();
}

static void test_rule_syntax(void **state)
{
    (void)state;
    rule_is("*", "*");
    rule_is("*:443", "*:443");
    rule_is("PyPI.org", "pypi.org");
    rule_is("pypi.org.", "pypi.org");
    rule_is("*.pythonhosted.org", "*.pythonhosted.org");
    rule_is("github.com:443", "github.com:443");
    rule_is("203.0.113.0/24", "203.0.113.0/24");
    rule_is("203.0.113.7", "203.0.113.7");
    rule_is("203.0.113.7:8080", "203.0.113.7:8080");
    rule_is("2001:db8::/32", "2001:db8::/32");
    rule_is("[2001:db8::1]", "2001:db8::1");
    rule_is("[2001:db8::1]:443", "[2001:db8::1/128]:443");
    rule_is("[2001:db8::/32]:443", "[2001:db8::/32]:443");
    rule_bad("", "empty");
    rule_bad("pypi.org:0", "port");
    rule_bad("pypi.org:65536", "port");
    rule_bad("pypi.org:http", "port");
    rule_bad("py*pi.org", "'*'");
    rule_bad("*.*.org", "'*'");
    rule_bad("bad host.org", "not a host name");
    rule_bad("a..b", "not a host name");
    rule_bad("10.0.0.1/33", "at most 32");
    rule_bad("10.0.0.1/24", "bits set past");
    rule_bad("300.1.1.1", "not an IPv4");
    rule_bad("[10.0.0.1]", "brackets");
    rule_bad("[2001:db8::1", "']'");
    char longname[400];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    rule_bad(longname, "longer than");
}

static void addr(const char *text, struct sockaddr_storage *ss)
{
    assert_int_equal(egress_parse_address(text, ss), 0);
}

static const char *special(const char *text)
{
    struct sockaddr_storage ss;
    addr(text, &ss);
    return egress_address_special((struct sockaddr *)&ss);
}

static void test_special_addresses(void **state)
{
    (void)state;
    assert_string_equal(special("127.0.0.1"), "loopback");
    assert_string_equal(special("127.255.1.2"), "loopback");
    assert_string_equal(special("::1"), "loopback");
    assert_string_equal(special("169.254.169.254"), "link-local");
    assert_string_equal(special("fe80::1"), "link-local");
    assert_string_equal(special("10.1.2.3"), "private");
    assert_string_equal(special("172.16.0.1"), "private");
    assert_string_equal(special("172.31.255.255"), "private");
    assert_string_equal(special("192.168.1.1"), "private");
    assert_string_equal(special("100.64.0.1"), "private");
    assert_string_equal(special("fd00::1"), "private");
    assert_string_equal(special("0.0.0.0"), "unspecified");
    assert_string_equal(special("::"), "unspecified");
    assert_string_equal(special("224.0.0.1"), "multicast");
    assert_string_equal(special("255.255.255.255"), "reserved");
    /* IPv6 forms that carry an IPv4 address */
    assert_string_equal(special("::ffff:127.0.0.1"), "loopback");
    assert_string_equal(special("::ffff:169.254.169.254"), "link-local");
    assert_string_equal(special("64:ff9b::10.0.0.1"), "private");
    assert_string_equal(special("2002:7f00:1::"), "loopback");
    assert_string_equal(special("::ffff:0:127.0.0.1"), "loopback");
    assert_string_equal(special("::ffff:0:a9fe:a9fe"), "link-local");
    assert_string_equal(special("64:ff9b:1::7f00:1"), "reserved");
    assert_string_equal(special("64:ff9b:1:7f00:1::"), "reserved");
    assert_null(special("172.32.0.1"));
    assert_null(special("8.8.8.8"));
    assert_null(special("203.0.113.9"));
    assert_null(special("2606:4700::1111"));
    assert_null(special("::ffff:8.8.8.8"));
    assert_null(special("::ffff:0:8.8.8.8"));
    assert_null(special("64:ff9b:2::1"));
}

/* A policy from JSON rule lists (NULL: none) under a ceiling list. */
struct fixture {
    struct egress_policy p;
    struct egress_rules ceiling;
};

static void make(struct fixture *f, const char *allow, const char *deny, const char *ceiling)
{
    memset(f, 0, sizeof(*f));
    assert_int_equal(egress_rules_parse_list(ceiling, "EGRESS_ALLOW_MAX", &f->ceiling), 0);
    f->p.ceiling = &f->ceiling;
    if (allow)
        assert_int_equal(egress_rules_parse_list(allow, "allow", &f->p.allow), 0);
    if (deny)
        assert_int_equal(egress_rules_parse_list(deny, "deny", &f->p.deny), 0);
}

static void release(struct fixture *f)
{
    egress_policy_release(&f->p);
    egress_rules_release(&f->ceiling);
}

/* The whole decision for host (a name, with its addresses, or a literal). */
static bool decide(struct fixture *f, const char *host, int port, const char *addrs, bool pinned,
                   char *rule_out)
{
    struct egress_verdict v;
    struct sockaddr_storage ss;
    bool literal = egress_parse_address(host, &ss) == 0;
    if (literal) {
        bool ok =
            egress_decide_address(&f->p, NULL, port, (struct sockaddr *)&ss, false, false, &v);
        strcpy(rule_out, v.rule);
        return ok;
    }
    if (!egress_decide_name(&f->p, host, port, &v)) {
        strcpy(rule_out, v.rule);
        return false;
    }
    char list[256];
    snprintf(list, sizeof(list), "%s", addrs);
    bool first = true;
    for (char *a = strtok(list, ","); a; a = strtok(NULL, ",")) {
        addr(a, &ss);
        if (!egress_decide_address(&f->p, host, port, (struct sockaddr *)&ss, pinned, false, &v)) {
            strcpy(rule_out, v.rule);
            return false;
        }
        if (first)
            strcpy(rule_out, v.rule);
        first = false;
    }
    return true;
}

static void test_decisions(void **state)
{
    (void)state;
    char rule[512];
    struct fixture f;

    make(&f, "pypi.org,*.pythonhosted.org,github.com:443,203.0.113.0/24", "evil.pypi.org", "*");
    assert_true(decide(&f, "pypi.org", 443, "151.101.0.223", false, rule));
    assert_string_equal(rule, "allow pypi.org");
    assert_true(decide(&f, "files.pythonhosted.org", 443, "151.101.1.63", false, rule));
    assert_string_equal(rule, "allow *.pythonhosted.org");
    /* a suffix rule does not match the domain itself */
    assert_false(decide(&f, "pythonhosted.org", 443, "151.101.1.63", false, rule));
    assert_true(decide(&f, "github.com", 443, "140.82.112.3", false, rule));
    assert_false(decide(&f, "github.com", 80, "140.82.112.3", false, rule));
    assert_non_null(strstr(rule, "no rule"));
    /* an address rule matches what a name resolves to, and a literal */
    assert_true(decide(&f, "mirror.example", 80, "203.0.113.5", false, rule));
    assert_string_equal(rule, "allow 203.0.113.0/24");
    assert_true(decide(&f, "203.0.113.9", 8080, "", false, rule));
    assert_false(decide(&f, "198.51.100.1", 80, "", false, rule));
    /* deny wins */
    assert_false(decide(&f, "evil.pypi.org", 443, "151.101.0.1", false, rule));
    assert_string_equal(rule, "deny evil.pypi.org");
    /* with an address rule, a name not listed may still resolve into it: it is resolved */
    struct egress_verdict v;
    assert_true(egress_decide_name(&f.p, "example.com", 443, &v));
    /* a listed name that resolves to loopback, private or link-local addresses is refused, and
     * so is one with any such address among public ones */
    assert_false(decide(&f, "pypi.org", 443, "127.0.0.1", false, rule));
    assert_non_null(strstr(rule, "loopback"));
    assert_false(decide(&f, "pypi.org", 443, "151.101.0.223,10.0.0.5", false, rule));
    assert_non_null(strstr(rule, "private"));
    assert_false(decide(&f, "pypi.org", 443, "169.254.169.254", false, rule));
    assert_non_null(strstr(rule, "link-local"));
    /* unless the name was pinned by the operator */
    assert_true(decide(&f, "pypi.org", 443, "127.0.0.1", true, rule));
    release(&f);

    /* with name rules only, a name not listed is refused before it is resolved */
    make(&f, "pypi.org", NULL, "*");
    assert_false(egress_decide_name(&f.p, "example.com", 443, &v));
    assert_non_null(strstr(v.rule, "no rule"));
    release(&f);

    /* `*` allows any public host, never a special address asked for by literal */
    make(&f, "*", NULL, "*");
    assert_true(decide(&f, "example.com", 443, "93.184.216.34", false, rule));
    assert_true(decide(&f, "93.184.216.34", 443, "", false, rule));
    assert_false(decide(&f, "127.0.0.1", 80, "", false, rule));
    assert_false(decide(&f, "169.254.169.254", 80, "", false, rule));
    assert_false(decide(&f, "::ffff:127.0.0.1", 80, "", false, rule));
    assert_false(decide(&f, "10.0.0.1", 80, "", false, rule));
    /* the server's own address */
    struct sockaddr_storage ss;
    addr("93.184.216.34", &ss);
    assert_false(egress_decide_address(&f.p, NULL, 80, (struct sockaddr *)&ss, false, true, &v));
    assert_non_null(strstr(v.rule, "server's own"));
    release(&f);

    /* the ceiling narrows every sandbox; it alone can open a private range */
    make(&f, "*", NULL, "pypi.org,10.1.0.0/16");
    assert_true(decide(&f, "pypi.org", 443, "151.101.0.223", false, rule));
    assert_false(decide(&f, "example.com", 443, "93.184.216.34", false, rule));
    assert_non_null(strstr(rule, "EGRESS_ALLOW_MAX"));
    assert_true(decide(&f, "10.1.2.3", 3128, "", false, rule));
    assert_false(decide(&f, "10.2.0.1", 80, "", false, rule));
    release(&f);

    /* a sandbox that lists a private range gets nothing the ceiling does not list */
    make(&f, "10.0.0.0/8", NULL, "*");
    assert_false(decide(&f, "10.1.2.3", 80, "", false, rule));
    release(&f);

    /* nothing allowed: everything refused */
    make(&f, NULL, NULL, "*");
    assert_false(decide(&f, "pypi.org", 443, "151.101.0.223", false, rule));
    release(&f);
}

static void test_network_json(void **state)
{
    (void)state;
    bool on;
    char *text = NULL;
    json_t *j = json_loads("{\"allow\":[\"PyPI.org\",\"*.x.test:443\"],\"deny\":[\"10.0.0.0/8\"]}",
                           0, NULL);
    assert_int_equal(egress_network_parse(j, &on, &text), 0);
    assert_true(on);
    assert_string_equal(text,
                        "{\"allow\":[\"pypi.org\",\"*.x.test:443\"],\"deny\":[\"10.0.0.0/8\"]}");
    free(text);
    json_decref(j);

    j = json_true();
    assert_int_equal(egress_network_parse(j, &on, &text), 0);
    assert_true(on);
    assert_null(text);
    j = json_false();
    assert_int_equal(egress_network_parse(j, &on, &text), 0);
    assert_false(on);

    const char *bad[][2] = {
        {"\"yes\"", "network must be"},
        {"{\"allow\":\"pypi.org\"}", "must be an array"},
        {"{\"allow\":[1]}", "network.allow[0] must be a string"},
        {"{\"allow\":[\"ok.org\",\"bad host\"]}", "network.allow[1]"},
        {"{\"deny\":[\"10.0.0.1/40\"]}", "network.deny[0]"},
        {"{\"allowed\":[]}", "unknown member"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        j = json_loads(bad[i][0], JSON_DECODE_ANY, NULL);
        assert_non_null(j);
        err_clear();
        assert_int_equal(egress_network_parse(j, &on, &text), -ERR_INVALID_INPUT);
        if (!strstr(err_message(), bad[i][1]))
            fail_msg("%s: message lacks \"%s\": %s", bad[i][0], bad[i][1], err_message());
        json_decref(j);
    }
    err_clear();
}

static void test_settings(void **state)
{
    (void)state;
    struct egress_rules r;
    assert_int_equal(egress_rules_parse_list(" pypi.org , ,*.npmjs.org ", "EGRESS_ALLOW", &r), 0);
    assert_int_equal(r.n, 2);
    egress_rules_release(&r);
    err_clear();
    assert_int_equal(egress_rules_parse_list("pypi.org,bad host", "EGRESS_ALLOW", &r), -EINVAL);
    assert_non_null(strstr(err_message(), "EGRESS_ALLOW"));
    assert_non_null(strstr(err_message(), "bad host"));

    struct egress_pins p;
    assert_int_equal(egress_pins_parse("pkgs.test:127.0.0.1, v6.test:::1", "EGRESS_RESOLVE", &p),
                     0);
    assert_int_equal(p.n, 2);
    assert_string_equal(p.v[1].host, "v6.test");
    assert_int_equal(p.v[1].addr.ss_family, AF_INET6);
    egress_pins_release(&p);
    err_clear();
    assert_int_equal(egress_pins_parse("pkgs.test", "EGRESS_RESOLVE", &p), -EINVAL);
    assert_int_equal(egress_pins_parse("pkgs.test:nope", "EGRESS_RESOLVE", &p), -EINVAL);
    err_clear();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule_syntax), cmocka_unit_test(test_special_addresses),
        cmocka_unit_test(test_decisions),   cmocka_unit_test(test_network_json),
        cmocka_unit_test(test_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
