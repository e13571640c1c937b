/* policy — parsing egress rules and deciding by them (policy.h). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress/policy.h"
#include "util/err.h"

/* ---- names and addresses ---- */

int egress_host_normalise(char *host)
{
    size_t n = strlen(host);
    if (n > 0 && host[n - 1] == '.')
        host[--n] = '\0';
    if (n == 0 || n > EGRESS_HOST_MAX)
        return -EINVAL;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)host[i];
        if (ch == '.') {
            if (label == 0)
                return -EINVAL;
            label = 0;
            continue;
        }
        if (!isalnum(ch) && ch != '-' && ch != '_')
            return -EINVAL;
        host[i] = (char)tolower(ch);
        if (++label > 63)
            return -EINVAL;
    }
    return 0;
}

int egress_parse_address(const char *text, struct sockaddr_storage *ret)
{
    char buf[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(text);
    if (n >= 2 && text[0] == '[' && text[n - 1] == ']') {
        text++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, text, n);
    buf[n] = '\0';
    memset(ret, 0, sizeof(*ret));
    struct sockaddr_in *v4 = (struct sockaddr_in *)ret;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ret;
    if (inet_pton(AF_INET, buf, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        return 0;
    }
    return -EINVAL;
}

/* The address's bytes as rules compare them: an IPv4-mapped IPv6 address counts as IPv4. */
static int address_bytes(const struct sockaddr *a, uint8_t out[16])
{
    if (a->sa_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)a)->sin_addr, 4);
        return AF_INET;
    }
    if (a->sa_family == AF_INET6) {
        const uint8_t *b = ((const struct sockaddr_in6 *)a)->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(b, mapped, 12) == 0) {
            memcpy(out, b + 12, 4);
            return AF_INET;
        }
        memcpy(out, b, 16);
        return AF_INET6;
    }
    return 0;
}

bool egress_address_equal(const struct sockaddr *a, const struct sockaddr *b)
{
    uint8_t x[16], y[16];
    int fa = address_bytes(a, x), fb = address_bytes(b, y);
    return fa && fa == fb && memcmp(x, y, fa == AF_INET ? 4 : 16) == 0;
}

static bool prefix_match(const uint8_t *a, const uint8_t *net, int prefix)
{
    int whole = prefix / 8, rest = prefix % 8;
    if (memcmp(a, net, (size_t)whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[whole] & mask) == (net[whole] & mask);
}

struct special_range {
    const char *text; /* address/prefix */
    const char *kind;
};

/* Ranges never reached unless the operator says so (policy.h, rule 4). */
static const struct special_range special_v4[] = {
    {"0.0.0.0/8", "unspecified"}, {"10.0.0.0/8", "private"},        {"100.64.0.0/10", "private"},
    {"127.0.0.0/8", "loopback"},  {"169.254.0.0/16", "link-local"}, {"172.16.0.0/12", "private"},
    {"192.0.0.0/24", "reserved"}, {"192.168.0.0/16", "private"},    {"198.18.0.0/15", "reserved"},
    {"224.0.0.0/4", "multicast"}, {"240.0.0.0/4", "reserved"},
};
static const struct special_range special_v6[] = {
    {"::/128", "unspecified"},   {"::1/128", "loopback"},  {"fc00::/7", "private"},
    {"fe80::/10", "link-local"}, {"fec0::/10", "private"}, {"ff00::/8", "multicast"},
    {"100::/64", "reserved"},
};

static bool range_match(const struct special_range *r, int family, const uint8_t *b)
{
    char net[64];
    const char *slash = strchr(r->text, '/');
    size_t n = (size_t)(slash - r->text);
    memcpy(net, r->text, n);
    net[n] = '\0';
    uint8_t nb[16];
    if (inet_pton(family, net, nb) != 1)
        return false;
    return prefix_match(b, nb, atoi(slash + 1));
}

static const char *special_v4_kind(const uint8_t *b)
{
    for (size_t i = 0; i < sizeof(special_v4) / sizeof(special_v4[0]); i++)
        if (range_match(&special_v4[i], AF_INET, b))
            return special_v4[i].kind;
    if (b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255)
        return "reserved";
    return NULL;
}

const char *egress_address_special(const struct sockaddr *a)
{
    uint8_t b[16];
    int family = address_bytes(a, b);
    if (family == AF_INET)
        return special_v4_kind(b);
    if (family != AF_INET6)
        return "reserved";
    for (size_t i = 0; i < sizeof(special_v6) / sizeof(special_v6[0]); i++)
        if (range_match(&special_v6[i], AF_INET6, b))
            return special_v6[i].kind;
    /* Forms that carry an IPv4 address a gateway would reach: NAT64 (64:ff9b::/96),
     * IPv4-compatible (::/96), IPv4-translated (::ffff:0:0/96) and 6to4 (2002::/16). */
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t compat[12] = {0};
    static const uint8_t translated[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0};
    if (memcmp(b, nat64, 12) == 0 || memcmp(b, compat, 12) == 0 || memcmp(b, translated, 12) == 0)
        return special_v4_kind(b + 12);
    if (b[0] == 0x20 && b[1] == 0x02)
        return special_v4_kind(b + 2);
    /* The local-use NAT64 prefix (64:ff9b:1::/48): a network's own translator, which carries
     * the IPv4 address wherever the network's prefix length puts it. */
    static const uint8_t nat64_local[6] = {0, 0x64, 0xff, 0x9b, 0, 0x01};
    if (memcmp(b, nat64_local, 6) == 0)
        return "reserved";
    return NULL;
}

/* ---- rules ---- */

void egress_rule_release(struct egress_rule *r)
{
    free(r->text);
    free(r->name);
    memset(r, 0, sizeof(*r));
}

static int bad_rule(const char *text, const char *why)
{
    return err_set(-ERR_INVALID_INPUT, "network rule \"%.*s\": %s", EGRESS_RULE_MAX_LEN, text, why);
}

/* ":port" at the end of s (s holds no other colon there): *port, and s cut before it. */
static int split_port(const char *rule, char *s, int *port)
{
    char *colon = strrchr(s, ':');
    *port = 0;
    if (!colon)
        return 0;
    char *end;
    errno = 0;
    long v = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno || v < 1 || v > 65535 ||
        !isdigit((unsigned char)colon[1]))
        return bad_rule(rule, "the port must be a number from 1 to 65535");
    *port = (int)v;
    *colon = '\0';
    return 0;
}

/* "addr" or "addr/prefix" into a NET rule. */
static int parse_net(const char *rule, char *s, struct egress_rule *r)
{
    char *slash = strchr(s, '/');
    int prefix = -1;
    if (slash) {
        char *end;
        errno = 0;
        long v = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0' || errno || v < 0 || v > 128 ||
            !isdigit((unsigned char)slash[1]))
            return bad_rule(rule, "the prefix length after '/' must be a number");
        prefix = (int)v;
        *slash = '\0';
    }
    struct sockaddr_storage ss;
    if (egress_parse_address(s, &ss) < 0)
        return bad_rule(rule, "not an IPv4 or IPv6 address");
    r->family = address_bytes((struct sockaddr *)&ss, r->addr);
    int max = r->family == AF_INET ? 32 : 128;
    if (prefix > max)
        return bad_rule(rule, r->family == AF_INET ? "an IPv4 prefix length is at most 32"
                                                   : "an IPv6 prefix length is at most 128");
    r->prefix = prefix < 0 ? max : prefix;
    uint8_t masked[16];
    memcpy(masked, r->addr, 16);
    for (int bit = r->prefix; bit < max; bit++)
        masked[bit / 8] &= (uint8_t) ~(0x80 >> (bit % 8));
    if (memcmp(masked, r->addr, (size_t)max / 8) != 0)
        return bad_rule(rule, "the address has bits set past its prefix length");
    r->kind = EGRESS_RULE_NET;
    return 0;
}

int egress_rule_parse(const char *text, struct egress_rule *ret)
{
    size_t n = strlen(text);
    if (n == 0)
        return err_set(-ERR_INVALID_INPUT, "a network rule is empty");
    if (n > EGRESS_RULE_MAX_LEN)
        return bad_rule(text, "longer than 300 bytes");
    char s[EGRESS_RULE_MAX_LEN + 1];
    memcpy(s, text, n + 1);
    struct egress_rule r = {0};
    int rc;
    char *colon = strchr(s, ':');
    if (s[0] == '[') { /* [v6] or [v6/len], then :port */
        char *close = strchr(s, ']');
        if (!close)
            return bad_rule(text, "a '[' without its ']'");
        if (close[1] != '\0' && close[1] != ':')
            return bad_rule(text, "only \":port\" may follow ']'");
        if (close[1] == ':' && (rc = split_port(text, close + 1, &r.port)) < 0)
            return rc;
        *close = '\0';
        if ((rc = parse_net(text, s + 1, &r)) < 0)
            return rc;
        if (r.family != AF_INET6)
            return bad_rule(text, "brackets are for IPv6 addresses");
    } else if (colon && strchr(colon + 1, ':')) { /* a bare IPv6 address: no port */
        if ((rc = parse_net(text, s, &r)) < 0)
            return rc;
    } else {
        if ((rc = split_port(text, s, &r.port)) < 0)
            return rc;
        if (strcmp(s, "*") == 0) {
            r.kind = EGRESS_RULE_ANY;
        } else if (isdigit((unsigned char)s[0]) && strspn(s, "0123456789./") == strlen(s)) {
            if ((rc = parse_net(text, s, &r)) < 0)
                return rc;
        } else {
            bool suffix = strncmp(s, "*.", 2) == 0;
            char *host = suffix ? s + 2 : s;
            if (strchr(host, '*'))
                return bad_rule(text, "'*' is allowed only alone or as the first label (*.domain)");
            if (egress_host_normalise(host) < 0)
                return bad_rule(text, "not a host name (labels of letters, digits, '-' and '_', "
                                      "at most 63 bytes each, 253 in all)");
            r.kind = suffix ? EGRESS_RULE_SUFFIX : EGRESS_RULE_HOST;
            if (asprintf(&r.name, "%s%s", suffix ? "." : "", host) < 0) {
                r.name = NULL;
                return -ENOMEM;
            }
        }
    }
    /* The normal form: what a reader of the record and the log sees. */
    char shown[EGRESS_RULE_MAX_LEN + 64];
    char net[INET6_ADDRSTRLEN];
    switch (r.kind) {
    case EGRESS_RULE_ANY:
        snprintf(shown, sizeof(shown), "*");
        break;
    case EGRESS_RULE_HOST:
        snprintf(shown, sizeof(shown), "%s", r.name);
        break;
    case EGRESS_RULE_SUFFIX:
        snprintf(shown, sizeof(shown), "*%s", r.name);
        break;
    case EGRESS_RULE_NET:
        inet_ntop(r.family, r.addr, net, sizeof(net));
        if (r.family == AF_INET6 && r.port)
            snprintf(shown, sizeof(shown), "[%s/%d]", net, r.prefix);
        else if (r.prefix == (r.family == AF_INET ? 32 : 128))
            snprintf(shown, sizeof(shown), "%s", net);
        else
            snprintf(shown, sizeof(shown), "%s/%d", net, r.prefix);
        break;
    }
    if (r.port) {
        size_t len = strlen(shown);
        snprintf(shown + len, sizeof(shown) - len, ":%d", r.port);
    }
    if (!(r.text = strdup(shown))) {
        egress_rule_release(&r);
        return -ENOMEM;
    }
    *ret = r;
    return 0;
}

void egress_rules_release(struct egress_rules *r)
{
    for (size_t i = 0; i < r->n; i++)
        egress_rule_release(&r->v[i]);
    free(r->v);
    r->v = NULL;
    r->n = 0;
}

static int rules_add(struct egress_rules *r, const char *text)
{
    if (r->n >= EGRESS_RULES_MAX)
        return err_set(-ERR_INVALID_INPUT, "at most %d network rules in one list",
                       EGRESS_RULES_MAX);
    if (!r->v && !(r->v = calloc(EGRESS_RULES_MAX, sizeof(*r->v))))
        return -ENOMEM;
    int rc = egress_rule_parse(text, &r->v[r->n]);
    if (rc == 0)
        r->n++;
    return rc;
}

int egress_rules_parse_list(const char *list, const char *setting, struct egress_rules *ret)
{
    struct egress_rules r = {0};
    const char *p = list ? list : "";
    while (*p) {
        size_t n = strcspn(p, ",");
        const char *start = p, *end = p + n;
        while (start < end && isspace((unsigned char)*start))
            start++;
        while (end > start && isspace((unsigned char)end[-1]))
            end--;
        if (end > start) {
            char one[EGRESS_RULE_MAX_LEN + 2];
            size_t len = (size_t)(end - start);
            if (len > EGRESS_RULE_MAX_LEN + 1)
                len = EGRESS_RULE_MAX_LEN + 1;
            memcpy(one, start, len);
            one[len] = '\0';
            int rc = rules_add(&r, one);
            if (rc < 0) {
                char why[512];
                snprintf(why, sizeof(why), "%s", err_message() ? err_message() : "invalid");
                egress_rules_release(&r);
                return rc == -ENOMEM ? rc : err_set(-EINVAL, "%s: %s", setting, why);
            }
        }
        p += n;
        if (*p == ',')
            p++;
    }
    *ret = r;
    return 0;
}

int egress_rules_parse_json(const json_t *array, const char *field, struct egress_rules *ret)
{
    struct egress_rules r = {0};
    if (!json_is_array(array))
        return err_set(-ERR_INVALID_INPUT, "network.%s must be an array of rule strings", field);
    if (json_array_size(array) > EGRESS_RULES_MAX)
        return err_set(-ERR_INVALID_INPUT, "network.%s holds more than %d rules", field,
                       EGRESS_RULES_MAX);
    size_t i;
    json_t *v;
    json_array_foreach(array, i, v)
    {
        if (!json_is_string(v)) {
            egress_rules_release(&r);
            return err_set(-ERR_INVALID_INPUT, "network.%s[%zu] must be a string", field, i);
        }
        if (strlen(json_string_value(v)) != json_string_length(v)) {
            egress_rules_release(&r);
            return err_set(-ERR_INVALID_INPUT, "network.%s[%zu] holds a NUL byte", field, i);
        }
        int rc = rules_add(&r, json_string_value(v));
        if (rc < 0) {
            char why[512];
            snprintf(why, sizeof(why), "%s", err_message() ? err_message() : "invalid");
            egress_rules_release(&r);
            return rc == -ENOMEM ? rc : err_set(rc, "network.%s[%zu]: %s", field, i, why);
        }
    }
    *ret = r;
    return 0;
}

static json_t *rules_json(const struct egress_rules *r)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < r->n; i++)
        if (json_array_append_new(a, json_string(r->v[i].text)) < 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

int egress_network_parse(const json_t *network, bool *ret_on, char **ret_policy_json)
{
    if (json_is_boolean(network)) {
        *ret_on = json_is_true(network);
        *ret_policy_json = NULL;
        return 0;
    }
    if (!json_is_object(network))
        return err_set(-ERR_INVALID_INPUT,
                       "network must be false, true or an object {\"allow\": [...], "
                       "\"deny\": [...]}");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)network, key, v)
    {
        if (strcmp(key, "allow") != 0 && strcmp(key, "deny") != 0)
            return err_set(-ERR_INVALID_INPUT,
                           "network has an unknown member \"%.100s\": only \"allow\" and "
                           "\"deny\" are known",
                           key);
    }
    struct egress_rules allow = {0}, deny = {0};
    json_t *a = json_object_get(network, "allow"), *d = json_object_get(network, "deny");
    int r = 0;
    if (a && (r = egress_rules_parse_json(a, "allow", &allow)) < 0)
        return r;
    if (d && (r = egress_rules_parse_json(d, "deny", &deny)) < 0) {
        egress_rules_release(&allow);
        return r;
    }
    json_t *o = json_object();
    json_t *ja = rules_json(&allow), *jd = rules_json(&deny);
    char *text = NULL;
    if (o && ja && jd && json_object_set_new(o, "allow", ja) == 0 &&
        json_object_set_new(o, "deny", jd) == 0)
        text = json_dumps(o, JSON_COMPACT);
    else {
        json_decref(ja);
        json_decref(jd);
    }
    json_decref(o);
    egress_rules_release(&allow);
    egress_rules_release(&deny);
    if (!text)
        return -ENOMEM;
    *ret_on = true;
    *ret_policy_json = text;
    return 0;
}

/* ---- pins ---- */

void egress_pins_release(struct egress_pins *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i].host);
    free(p->v);
    p->v = NULL;
    p->n = 0;
}

int egress_pins_parse(const char *list, const char *setting, struct egress_pins *ret)
{
    struct egress_pins p = {0};
    const char *s = list ? list : "";
    while (*s) {
        size_t n = strcspn(s, ",");
        char one[EGRESS_HOST_MAX + INET6_ADDRSTRLEN + 8];
        if (n >= sizeof(one)) {
            egress_pins_release(&p);
            return err_set(-EINVAL, "%s: an entry is too long (host:address)", setting);
        }
        memcpy(one, s, n);
        one[n] = '\0';
        s += n;
        if (*s == ',')
            s++;
        char *start = one;
        while (isspace((unsigned char)*start))
            start++;
        size_t len = strlen(start);
        while (len > 0 && isspace((unsigned char)start[len - 1]))
            start[--len] = '\0';
        if (len == 0)
            continue;
        char *colon = strchr(start, ':');
        if (!colon) {
            egress_pins_release(&p);
            return err_set(-EINVAL, "%s: \"%s\" is not host:address", setting, start);
        }
        *colon = '\0';
        struct egress_pin pin = {0};
        if (egress_host_normalise(start) < 0 || egress_parse_address(colon + 1, &pin.addr) < 0) {
            egress_pins_release(&p);
            return err_set(-EINVAL,
                           "%s: \"%s:%s\" is not host:address (a host name, then an IPv4 or "
                           "IPv6 address)",
                           setting, start, colon + 1);
        }
        struct egress_pin *nv = realloc(p.v, (p.n + 1) * sizeof(*nv));
        if (!nv || !(pin.host = strdup(start))) {
            if (nv)
                p.v = nv;
            egress_pins_release(&p);
            return -ENOMEM;
        }
        p.v = nv;
        p.v[p.n++] = pin;
    }
    *ret = p;
    return 0;
}

/* ---- the policy of one exec ---- */

static int rules_copy(const struct egress_rules *from, struct egress_rules *to)
{
    memset(to, 0, sizeof(*to));
    for (size_t i = 0; i < from->n; i++) {
        int r = rules_add(to, from->v[i].text);
        if (r < 0) {
            egress_rules_release(to);
            return r;
        }
    }
    return 0;
}

int egress_policy_build(const char *policy_json, const struct egress_rules *defaults,
                        const struct egress_rules *ceiling, struct egress_policy *ret)
{
    struct egress_policy p = {.ceiling = ceiling};
    int r;
    if (!policy_json) {
        if ((r = rules_copy(defaults, &p.allow)) < 0)
            return r;
        *ret = p;
        return 0;
    }
    json_t *o = json_loads(policy_json, 0, NULL);
    if (!o)
        return -EINVAL;
    json_t *a = json_object_get(o, "allow"), *d = json_object_get(o, "deny");
    r = 0;
    if (a)
        r = egress_rules_parse_json(a, "allow", &p.allow);
    if (r == 0 && d)
        r = egress_rules_parse_json(d, "deny", &p.deny);
    json_decref(o);
    if (r < 0) {
        egress_policy_release(&p);
        return r == -ENOMEM ? r : -EINVAL;
    }
    *ret = p;
    return 0;
}

void egress_policy_release(struct egress_policy *p)
{
    egress_rules_release(&p->allow);
    egress_rules_release(&p->deny);
}

/* ---- deciding ---- */

static bool port_ok(const struct egress_rule *r, int port)
{
    return r->port == 0 || r->port == port;
}

static bool rule_matches_name(const struct egress_rule *r, const char *host, int port)
{
    if (!port_ok(r, port))
        return false;
    switch (r->kind) {
    case EGRESS_RULE_ANY:
        return true;
    case EGRESS_RULE_HOST:
        return strcmp(host, r->name) == 0;
    case EGRESS_RULE_SUFFIX: {
        size_t h = strlen(host), s = strlen(r->name);
        return h > s && strcmp(host + h - s, r->name) == 0;
    }
    default:
        return false;
    }
}

static bool rule_matches_address(const struct egress_rule *r, const struct sockaddr *a, int port,
                                 bool any_counts)
{
    if (!port_ok(r, port))
        return false;
    if (r->kind == EGRESS_RULE_ANY)
        return any_counts;
    if (r->kind != EGRESS_RULE_NET)
        return false;
    uint8_t b[16];
    int family = address_bytes(a, b);
    return family == r->family && prefix_match(b, r->addr, r->prefix);
}

static const struct egress_rule *match_name(const struct egress_rules *rs, const char *host,
                                            int port)
{
    for (size_t i = 0; host && i < rs->n; i++)
        if (rule_matches_name(&rs->v[i], host, port))
            return &rs->v[i];
    return NULL;
}

static const struct egress_rule *match_address(const struct egress_rules *rs,
                                               const struct sockaddr *a, int port, bool any_counts)
{
    for (size_t i = 0; i < rs->n; i++)
        if (rule_matches_address(&rs->v[i], a, port, any_counts))
            return &rs->v[i];
    return NULL;
}

static bool has_net_rules(const struct egress_rules *rs)
{
    for (size_t i = 0; i < rs->n; i++)
        if (rs->v[i].kind == EGRESS_RULE_NET)
            return true;
    return false;
}

static bool deny(struct egress_verdict *v, const char *why)
{
    v->allowed = false;
    snprintf(v->rule, sizeof(v->rule), "%s", why);
    return false;
}

static bool deny_rule(struct egress_verdict *v, const struct egress_rule *r)
{
    v->allowed = false;
    snprintf(v->rule, sizeof(v->rule), "deny %s", r->text);
    return false;
}

bool egress_decide_name(const struct egress_policy *p, const char *host, int port,
                        struct egress_verdict *v)
{
    const struct egress_rule *r = match_name(&p->deny, host, port);
    if (r)
        return deny_rule(v, r);
    if (!match_name(&p->allow, host, port) && !has_net_rules(&p->allow))
        return deny(v, "deny: no rule of the sandbox's policy allows it");
    if (p->ceiling && !match_name(p->ceiling, host, port) && !has_net_rules(p->ceiling))
        return deny(v, "deny: outside the server's EGRESS_ALLOW_MAX");
    v->allowed = true;
    v->rule[0] = '\0';
    return true;
}

bool egress_decide_address(const struct egress_policy *p, const char *host, int port,
                           const struct sockaddr *a, bool pinned, bool own,
                           struct egress_verdict *v)
{
    char at[INET6_ADDRSTRLEN];
    uint8_t b[16];
    int family = address_bytes(a, b);
    if (!family || !inet_ntop(family, b, at, sizeof(at)))
        return deny(v, "deny: not an IPv4 or IPv6 address");
    const struct egress_rule *r = match_name(&p->deny, host, port);
    if (!r)
        r = match_address(&p->deny, a, port, true);
    if (r)
        return deny_rule(v, r);
    /* host NULL: an address literal, which `*` matches as it matches any host */
    const struct egress_rule *allowed_by = match_name(&p->allow, host, port);
    if (!allowed_by)
        allowed_by = match_address(&p->allow, a, port, !host);
    char why[sizeof(v->rule)];
    if (!allowed_by) {
        snprintf(why, sizeof(why), "deny: no rule of the sandbox's policy allows %s", at);
        return deny(v, why);
    }
    if (p->ceiling && !match_name(p->ceiling, host, port) &&
        !match_address(p->ceiling, a, port, !host)) {
        snprintf(why, sizeof(why), "deny: %s is outside the server's EGRESS_ALLOW_MAX", at);
        return deny(v, why);
    }
    const char *kind = egress_address_special(a);
    if (kind)
        own = false;
    else if (own)
        kind = "the server's own";
    if (kind && !pinned && !(p->ceiling && match_address(p->ceiling, a, port, false))) {
        const char *article = own ? "" : kind[0] == 'u' ? "an " : "a ";
        snprintf(why, sizeof(why),
                 "deny: %s is %s%s address (never allowed unless the operator lists it)", at,
                 article, kind);
        return deny(v, why);
    }
    v->allowed = true;
    snprintf(v->rule, sizeof(v->rule), "allow %s", allowed_by->text);
    return true;
}
