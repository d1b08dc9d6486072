/* eir/_replayio_text.h: the text pieces of the replay edge in plain C (no Python API).
 *
 * The canonical UTC time `YYYY-MM-DDTHH:MM:SSZ` both ways (parse: as eir.query.parse_time within its
 * range; format: as eir.events.iso_utc), decimal integers, and the test for a JSON string that needs no
 * escaping. tests/test_replay_fast.py holds them to the Python functions.
 */
#ifndef EIR_REPLAYIO_TEXT_H
#define EIR_REPLAYIO_TEXT_H

#define MIN_EPOCH 946684800LL   /* eir.query.MIN_EPOCH */
#define MAX_EPOCH 4102444800LL  /* eir.query.MAX_EPOCH */
#define MAX_ISO_EPOCH 253402300799LL /* 9999-12-31T23:59:59Z */

/* --- time ------------------------------------------------------------------------------------- */

static inline int
two(const char *s, int *out)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
        return -1;
    *out = (s[0] - '0') * 10 + (s[1] - '0');
    return 0;
}

/* days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil) */
static inline long long
days_from_civil(long long y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static inline void
civil_from_days(long long z, long long *y, int *m, int *d)
{
    z += 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static inline int
is_leap(long long y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Epoch seconds of a canonical `YYYY-MM-DDTHH:MM:SSZ` within eir.query's range, or -1 (anything else,
 * valid or not, is eir.query.parse_time's to judge). */
static inline long long
parse_canonical(const char *s, Py_ssize_t n)
{
    int c, yy, mo, d, h, mi, se;
    if (n != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != 'Z')
        return -1;
    if (two(s, &c) || two(s + 2, &yy) || two(s + 5, &mo) || two(s + 8, &d) || two(s + 11, &h)
            || two(s + 14, &mi) || two(s + 17, &se))
        return -1;
    long long y = c * 100 + yy;
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || se > 59)
        return -1;
    if (d > mdays[mo - 1] + (mo == 2 && is_leap(y)))
        return -1;
    long long t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
    if (t < MIN_EPOCH || t > MAX_EPOCH)
        return -1;
    return t;
}

/* `YYYY-MM-DDTHH:MM:SSZ` of epoch seconds in [0, MAX_ISO_EPOCH] (20 bytes, no terminator). */
static inline void
format_iso(long long t, char *o)
{
    long long days = t / 86400, y;
    int sod = (int)(t % 86400), m, d;
    civil_from_days(days, &y, &m, &d);
    int h = sod / 3600, mi = sod / 60 % 60, se = sod % 60;
    o[0] = (char)('0' + y / 1000);
    o[1] = (char)('0' + y / 100 % 10);
    o[2] = (char)('0' + y / 10 % 10);
    o[3] = (char)('0' + y % 10);
    o[4] = '-';
    o[5] = (char)('0' + m / 10);
    o[6] = (char)('0' + m % 10);
    o[7] = '-';
    o[8] = (char)('0' + d / 10);
    o[9] = (char)('0' + d % 10);
    o[10] = 'T';
    o[11] = (char)('0' + h / 10);
    o[12] = (char)('0' + h % 10);
    o[13] = ':';
    o[14] = (char)('0' + mi / 10);
    o[15] = (char)('0' + mi % 10);
    o[16] = ':';
    o[17] = (char)('0' + se / 10);
    o[18] = (char)('0' + se % 10);
    o[19] = 'Z';
}

/* Decimal digits of v at o; returns the end. */
static inline char *
put_ll(char *o, long long v)
{
    char tmp[24];
    int n = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *o++ = '-';
    while (n)
        *o++ = tmp[--n];
    return o;
}

/* imei as given: quoted as is when no JSON escaping is needed (printable ASCII, no quote or backslash). */
static inline int
plain_ascii(const char *s, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            return 0;
    }
    return 1;
}

#endif /* EIR_REPLAYIO_TEXT_H */
