/*
 * policy — what a sandbox's network egress may reach (docs/API.md "Network").
 *
 * A rule names hosts and, optionally, one port:
 *   `*`                 any host           `*:443`
 *   `pypi.org`          that name only     `github.com:443`
 *   `*.example.com`     any name below example.com (not example.com itself)
 *   `203.0.113.7`, `203.0.113.0/24`, `[2001:db8::1]`, `[2001:db8::/32]:443`, `2001:db8::/32`
 *                       addresses (an IPv6 address with a port is written in brackets)
 * Names compare case-insensitively, a trailing dot ignored. A name rule matches the name asked
 * for; an address rule matches an address literal asked for and every address a name resolves
 * to; `*` matches both.
 *
 * A connection to host H, port P is allowed when all of these hold (egress_decide):
 *   1. no deny rule of the sandbox matches H or any of its addresses;
 *   2. an allow rule of the sandbox matches H or each of its addresses;
 *   3. the server's ceiling (EGRESS_ALLOW_MAX) matches H or each of its addresses;
 *   4. no address is special (loopback, private, link-local, the unspecified, multicast or
 *      reserved ranges, the server's own addresses, and IPv6 forms embedding such an IPv4
 *      address), unless the name was pinned by the operator (EGRESS_RESOLVE) or the ceiling
 *      holds an address rule covering that address (the operator listed it explicitly).
 * Every address must pass: a name that resolves to one public and one private address is
 * refused, so that no answer of a name server can lead around a rule.
 *
 * Not thread-bound: a parsed set is read-only and may be shared.
 */
#ifndef SQLFS_EGRESS_POLICY_H
#define SQLFS_EGRESS_POLICY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Rules in one list, and the length of one rule's text. */
#define EGRESS_RULES_MAX 256
#define EGRESS_RULE_MAX_LEN 300
/* Longest host name (RFC 1035), without a trailing dot. */
#define EGRESS_HOST_MAX 253

enum egress_rule_kind {
    EGRESS_RULE_ANY = 1,    /* `*` */
    EGRESS_RULE_HOST = 2,   /* one name */
    EGRESS_RULE_SUFFIX = 3, /* names below a domain */
    EGRESS_RULE_NET = 4,    /* an address or a network */
};

struct egress_rule {
    enum egress_rule_kind kind;
    char *text;       /* the rule in its normal form (lowercase name), as shown */
    char *name;       /* HOST: the name; SUFFIX: ".domain" */
    int family;       /* NET: AF_INET or AF_INET6 */
    uint8_t addr[16]; /* NET: the network's address (4 bytes used for AF_INET) */
    int prefix;       /* NET: prefix length */
    int port;         /* 0: any port */
};

struct egress_rules {
    struct egress_rule *v;
    size_t n;
};

/* Parses one rule into *ret (release with egress_rule_release). -ERR_INVALID_INPUT with a
 * message naming the rule and what is wrong with it. */
__attribute__((warn_unused_result)) int egress_rule_parse(const char *text,
                                                          struct egress_rule *ret);
void egress_rule_release(struct egress_rule *r);

/* A comma-separated list (spaces around rules ignored, empty entries skipped) from a setting
 * named `setting`, into *ret. -EINVAL with a message naming the setting and the rule. */
__attribute__((warn_unused_result)) int
egress_rules_parse_list(const char *list, const char *setting, struct egress_rules *ret);
/* A JSON array of rule strings (at most EGRESS_RULES_MAX), from the field named `field`.
 * -ERR_INVALID_INPUT naming the field and the rule. */
__attribute__((warn_unused_result)) int
egress_rules_parse_json(const json_t *array, const char *field, struct egress_rules *ret);
void egress_rules_release(struct egress_rules *r);

/* The sandbox's own `network` value, as a request gives it: false, true or
 * {"allow": [...], "deny": [...]} (both optional, no other member). On success *ret_on says
 * whether egress is on and *ret_policy_json is NULL (false, true) or the object in its normal
 * form (malloc'd: {"allow": [...], "deny": [...]} with each rule's normal form), for the store.
 * -ERR_INVALID_INPUT naming what to fix. */
__attribute__((warn_unused_result)) int egress_network_parse(const json_t *network, bool *ret_on,
                                                             char **ret_policy_json);

/* Names pinned by the operator: EGRESS_RESOLVE "host:addr,host:addr,...". */
struct egress_pin {
    char *host;
    struct sockaddr_storage addr; /* port 0 */
};

struct egress_pins {
    struct egress_pin *v;
    size_t n;
};

__attribute__((warn_unused_result)) int egress_pins_parse(const char *list, const char *setting,
                                                          struct egress_pins *ret);
void egress_pins_release(struct egress_pins *p);

/* The rules one exec decides by: the sandbox's (or EGRESS_ALLOW's, for `network: true`) and the
 * server's ceiling (borrowed). */
struct egress_policy {
    struct egress_rules allow;
    struct egress_rules deny;
    const struct egress_rules *ceiling;
};

/* Builds the policy of a sandbox from its stored policy JSON (egress_network_parse's), or from
 * `defaults` (EGRESS_ALLOW, copied) when policy_json is NULL. -ENOMEM, -EINVAL (a stored
 * policy that does not parse). */
__attribute__((warn_unused_result)) int egress_policy_build(const char *policy_json,
                                                            const struct egress_rules *defaults,
                                                            const struct egress_rules *ceiling,
                                                            struct egress_policy *ret);
void egress_policy_release(struct egress_policy *p);

/* Whether an address is special (see above) and which kind: "loopback", "private",
 * "link-local", "unspecified", "multicast", "reserved", or NULL. The server's own addresses are
 * the caller's to check. */
const char *egress_address_special(const struct sockaddr *a);

/* True when both addresses are equal (family and bytes; ports ignored; an IPv4-mapped IPv6
 * address equals its IPv4 address). */
bool egress_address_equal(const struct sockaddr *a, const struct sockaddr *b);

/* A decision and what made it, for the client's answer and the log. */
struct egress_verdict {
    bool allowed;
    char rule[EGRESS_RULE_MAX_LEN + 64]; /* "allow pypi.org", "deny *.evil.test", ... */
};

/* Before resolving: whether the name `host` (not an address literal) can be allowed at all.
 * False: refused for sure (*v says why). True: resolve it and ask egress_decide_address for
 * every address. */
bool egress_decide_name(const struct egress_policy *p, const char *host, int port,
                        struct egress_verdict *v);

/* The decision for one address `a` of `host` (host NULL: `a` was asked for as a literal).
 * pinned: the name's addresses come from EGRESS_RESOLVE. own_kind: non-NULL when the address is
 * one of the server's own (its text for the verdict). True when allowed; *v says by which rule
 * or why not. */
bool egress_decide_address(const struct egress_policy *p, const char *host, int port,
                           const struct sockaddr *a, bool pinned, bool own,
                           struct egress_verdict *v);

/* Parses an address literal (IPv4 or IPv6, brackets allowed) into *ret (port 0). 0 or -EINVAL. */
int egress_parse_address(const char *text, struct sockaddr_storage *ret);

/* Normalises a host name in place (lowercase, trailing dot dropped) and checks its syntax
 * (labels of letters, digits, '-' and '_', 1..63 bytes, at most EGRESS_HOST_MAX in all). 0 or
 * -EINVAL. */
int egress_host_normalise(char *host);

#endif
