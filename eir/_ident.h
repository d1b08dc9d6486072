/* eir/_ident.h: the common forms of the SPEC §2 identifiers parsed in plain C (no Python API).
 *
 * The one C copy of eir/identifiers.py's IMEI, MSISDN and IMSI rules, used by eir/_fastpath.c (the raw entry
 * point FastCheck.check_raw and the RPC batch loop). Each parser handles the forms the network actually
 * sends and answers IDENT_DECLINE for anything unusual (non-ASCII, blanks at the ends, rare prefixes,
 * numbers Python would refuse): the caller then runs eir.identifiers, which stays the reference and
 * produces the errors. tests/test_fastpath_raw.py compares both on every accepted and rejected form.
 */
#ifndef EIR_IDENT_H
#define EIR_IDENT_H

#include <stddef.h>
#include <string.h>

#define IDENT_MALFORMED (-1LL) /* eir.identifiers.MALFORMED: a decision (DENY MALFORMED_IMEI) */
#define IDENT_DECLINE (-2LL)   /* not decided here: eir.identifiers parses it */
#define IDENT_MAX_CC 4          /* longest country code handled here (E.164 codes have 1-3 digits) */

static inline int
ident_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* str.isspace() for an ASCII character: what str.strip() would remove. */
static inline int
ident_is_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

static inline int
ident_all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!ident_is_digit(s[i]))
            return 0;
    return 1;
}

static inline int
ident_prefix_ci(const char *s, size_t n, const char *lower_prefix)
{
    size_t k = strlen(lower_prefix);
    if (n < k)
        return 0;
    for (size_t i = 0; i < k; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != lower_prefix[i])
            return 0;
    }
    return 1;
}

/* GSMA TS.06 check digit of a 14-digit core (eir.identifiers.luhn_check_digit). */
static inline int
ident_luhn(const char *core14)
{
    int total = 0;
    for (int i = 0; i < 14; i++) {
        int d = core14[i] - '0';
        if (i & 1) { /* from the right, the rightmost digit and every second one are doubled */
            d *= 2;
            if (d > 9)
                d -= 9;
        }
        total += d;
    }
    return (10 - total % 10) % 10;
}

/* eir.identifiers.parse_imei of an ASCII string s[0..n): the core, IDENT_MALFORMED or IDENT_DECLINE. */
static inline long long
ident_imei(const char *s, size_t n, int deny_invalid_check_digit, int deny_test_imeis)
{
    if (n > 0 && (ident_is_space((unsigned char)s[0]) || ident_is_space((unsigned char)s[n - 1])))
        return IDENT_DECLINE; /* strip() and what follows: Python */
    if (ident_prefix_ci(s, n, "imeisv-")) {
        s += 7;
        n -= 7;
    } else if (ident_prefix_ci(s, n, "imei-")) {
        s += 5;
        n -= 5;
    }
    if (n < 14 || n > 16 || !ident_all_digits(s, n))
        return IDENT_MALFORMED;
    if (n == 15 && deny_invalid_check_digit && ident_luhn(s) != s[14] - '0')
        return IDENT_MALFORMED;
    long long core = 0;
    int same = 1;
    for (int i = 0; i < 14; i++) {
        core = core * 10 + (s[i] - '0');
        same &= s[i] == s[0];
    }
    if (deny_test_imeis && same)
        return IDENT_MALFORMED;
    return core;
}

/* eir.identifiers.parse_msisdn of an ASCII string s[0..n) for the home country code cc (digits) whose
 * national mobile numbers have nml digits (0: none): the E.164 number (>0) with *home set, or
 * IDENT_DECLINE for every other form and for every number Python refuses (it raises the error). */
static inline long long
ident_msisdn(const char *s, size_t n, const char *cc, size_t cc_len, size_t nml, int *home)
{
    char buf[16 + IDENT_MAX_CC];
    size_t len;
    if (n == 0 || n > 16 || cc_len > IDENT_MAX_CC)
        return IDENT_DECLINE;
    if (s[0] == '+') { /* +<E.164 digits> */
        if (!ident_all_digits(s + 1, n - 1))
            return IDENT_DECLINE;
        memcpy(buf, s + 1, n - 1);
        len = n - 1;
    } else {
        if (!ident_all_digits(s, n))
            return IDENT_DECLINE; /* blanks, "msisdn-": Python */
        if (s[0] == '0') {
            if (n >= 2 && s[1] == '0') { /* 00<E.164 digits> */
                memcpy(buf, s + 2, n - 2);
                len = n - 2;
            } else { /* 0<national number>: the trunk prefix */
                memcpy(buf, cc, cc_len);
                memcpy(buf + cc_len, s + 1, n - 1);
                len = cc_len + n - 1;
            }
        } else if (nml != 0 && n == nml && s[0] == '9') { /* national mobile number without the 0 */
            memcpy(buf, cc, cc_len);
            memcpy(buf + cc_len, s, n);
            len = cc_len + n;
        } else {
            memcpy(buf, s, n);
            len = n;
        }
    }
    if (len < 8 || len > 15 || buf[0] == '0')
        return IDENT_DECLINE; /* not an E.164 number: Python raises the error */
    long long v = 0;
    for (size_t i = 0; i < len; i++)
        v = v * 10 + (buf[i] - '0');
    *home = len >= cc_len && memcmp(buf, cc, cc_len) == 0;
    return v;
}

/* eir.identifiers.parse_imsi of an ASCII string s[0..n): the IMSI (6-15 digits, the first not 0: > 0) with
 * its first three digits (the MCC, str(imsi)[:3]) in *mcc, or IDENT_DECLINE for every other form and for
 * every value Python refuses (it raises the error). An empty s is no IMSI: the caller's to see first. */
static inline long long
ident_imsi(const char *s, size_t n, int *mcc)
{
    if (n > 0 && (ident_is_space((unsigned char)s[0]) || ident_is_space((unsigned char)s[n - 1])))
        return IDENT_DECLINE; /* strip() and what follows: Python */
    if (ident_prefix_ci(s, n, "imsi-")) {
        s += 5;
        n -= 5;
    }
    if (n < 6 || n > 15 || !ident_all_digits(s, n) || s[0] == '0')
        return IDENT_DECLINE;
    long long v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    /* no leading zero: str(int(s)) is s, and its first three characters are these */
    *mcc = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    return v;
}

#endif /* EIR_IDENT_H */
