/* eir._replayio: the CSV edge of `eir replay` in C (optional; eir/replay_fast.py drives it).
 *
 * A Replayer reads CSV bytes chunk by chunk. For each well-formed line (printable ASCII, no quote, no
 * carriage return except the CRLF terminator) it splits the fields, parses the canonical UTC time
 * `YYYY-MM-DDTHH:MM:SSZ`, and asks the engine's C accelerator (eir._fastpath FastCheck.check_raw, which
 * parses the identifiers with eir/_ident.h) for the common attach; any row it declines goes to the Python
 * `row` callable (build_query + Engine.check, the reference). Then it counts the decision and writes its
 * JSON line itself (the normalised MSISDN of a check_raw row comes from the same eir/_ident.h parser).
 * Everything unusual goes back to Python, which does what the pure-Python replay (eir/replay.py) does:
 *  - a line with other bytes (control, non-ASCII): `line_fallback` parses it with the csv module;
 *  - a line with a quote or a lone CR (a CSV record may span lines): feed() stops before it and sets
 *    `stopped`; the caller reads the rest of the file with the csv module;
 *  - a time in another form: passed to `row` as text (eir.replay.TimeParser);
 *  - a JSON line that needs escaping or an unusual value: `format_line` writes it.
 * tests/test_replay_fast.py checks that the output equals the pure-Python replay's, byte for byte.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "_ident.h"

#define MIN_EPOCH 946684800LL   /* eir.query.MIN_EPOCH */
#define MAX_EPOCH 4102444800LL  /* eir.query.MAX_EPOCH */
#define MAX_ISO_EPOCH 253402300799LL /* 9999-12-31T23:59:59Z */
#define MAX_WIDTH 64
#define MAX_FAST_LINE 4096 /* longer lines: the csv module (its field size limit is the reference) */
#define MAX_REASONS 64
#define FLUSH_BYTES (1 << 20)

static PyObject *s_time, *s_msisdn, *s_slot, *s_reason, *s_verdict, *s_deadline;

typedef struct {
    PyObject *reason; /* borrowed identity key, kept alive by `tail` owner dict below */
    PyObject *tail;   /* bytes: ,"verdict":..,"reason":..,"deadline": */
    Py_ssize_t n;
} ReasonSlot;

typedef struct {
    PyObject_HEAD
    int cols[5];            /* time, imei, msisdn, slot, imsi: column index or -1 */
    int width;
    PyObject *row;          /* (n, time, imei, msisdn, slot, imsi) -> (query, decision) | None */
    PyObject *line_fallback; /* (n, line bytes) -> (imei, query, decision) | None */
    PyObject *bad_width;    /* (n, columns) -> None: reports the bad row */
    PyObject *format_line;  /* (imei, query, decision) -> str: the reference line */
    PyObject *tail_of;      /* reason -> bytes */
    PyObject *write;        /* file.write, or None: no decision file */
    PyObject *allow, *warn; /* eir.model.Verdict members */
    PyObject *warned, *denied; /* sets of MSISDNs */
    PyObject *keep;         /* list holding the reasons seen (their slots borrow them) */
    PyObject *check_raw;    /* FastCheck.check_raw of the engine, or None */
    char cc[IDENT_MAX_CC + 1]; /* the numbering plan, for the MSISDN of a check_raw row */
    size_t cc_len;
    Py_ssize_t nml;
    long long line;         /* last line number read (the header is line 1) */
    long long rows;         /* rows decided */
    int stopped;            /* feed() stopped before a line that needs the csv module */
    ReasonSlot slots[MAX_REASONS];
    int n_slots;
    char *buf;
    Py_ssize_t len, cap;
} Replayer;

/* --- output buffer ---------------------------------------------------------------------------- */

static int
reserve(Replayer *self, Py_ssize_t extra)
{
    if (self->len + extra <= self->cap)
        return 0;
    Py_ssize_t cap = self->cap ? self->cap : (FLUSH_BYTES + 4096);
    while (cap < self->len + extra)
        cap *= 2;
    char *nb = PyMem_Realloc(self->buf, (size_t)cap);
    if (nb == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->buf = nb;
    self->cap = cap;
    return 0;
}

static int
put(Replayer *self, const char *s, Py_ssize_t n)
{
    if (reserve(self, n) < 0)
        return -1;
    memcpy(self->buf + self->len, s, (size_t)n);
    self->len += n;
    return 0;
}

static int
flush_out(Replayer *self)
{
    if (self->len == 0 || self->write == Py_None) {
        self->len = 0;
        return 0;
    }
    PyObject *b = PyBytes_FromStringAndSize(self->buf, self->len);
    if (b == NULL)
        return -1;
    self->len = 0;
    PyObject *r = PyObject_CallOneArg(self->write, b);
    Py_DECREF(b);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* --- time ------------------------------------------------------------------------------------- */

static int
two(const char *s, int *out)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
        return -1;
    *out = (s[0] - '0') * 10 + (s[1] - '0');
    return 0;
}

/* days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil) */
static long long
days_from_civil(long long y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void
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

static int
is_leap(long long y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Epoch seconds of a canonical `YYYY-MM-DDTHH:MM:SSZ` within eir.query's range, or -1 (anything else,
 * valid or not, is eir.query.parse_time's to judge). */
static long long
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
static void
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
static char *
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

/* --- one decided row -------------------------------------------------------------------------- */

static ReasonSlot *
slot_of(Replayer *self, PyObject *reason)
{
    for (int i = 0; i < self->n_slots; i++)
        if (self->slots[i].reason == reason)
            return &self->slots[i];
    if (self->n_slots == MAX_REASONS) {
        PyErr_SetString(PyExc_RuntimeError, "more distinct reasons than the replay edge counts");
        return NULL;
    }
    PyObject *tail = PyObject_CallOneArg(self->tail_of, reason);
    if (tail == NULL)
        return NULL;
    if (!PyBytes_Check(tail)) {
        Py_DECREF(tail);
        PyErr_SetString(PyExc_TypeError, "tail_of must return bytes");
        return NULL;
    }
    if (PyList_Append(self->keep, reason) < 0) {
        Py_DECREF(tail);
        return NULL;
    }
    ReasonSlot *s = &self->slots[self->n_slots++];
    s->reason = reason;
    s->tail = tail;
    s->n = 0;
    return s;
}

/* A plain int attribute in [lo, hi] as a C long long: 1 yes, 0 no (also not an int), -1 error. */
static int
attr_ll(PyObject *o, PyObject *name, long long lo, long long hi, long long *out)
{
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL)
        return -1;
    int ok = 0;
    if (PyLong_CheckExact(v)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (x == -1 && PyErr_Occurred()) {
            Py_DECREF(v);
            return -1;
        }
        if (!overflow && lo <= x && x <= hi) {
            *out = x;
            ok = 1;
        }
    }
    Py_DECREF(v);
    return ok;
}

/* imei as given: quoted as is when no JSON escaping is needed (printable ASCII, no quote or backslash). */
static int
plain_ascii(const char *s, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            return 0;
    }
    return 1;
}

static int
write_reference(Replayer *self, PyObject *imei, PyObject *q, PyObject *d)
{
    PyObject *line = PyObject_CallFunctionObjArgs(self->format_line, imei, q, d, NULL);
    if (line == NULL)
        return -1;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(line, &n);
    int rc = s == NULL ? -1 : put(self, s, n);
    Py_DECREF(line);
    return rc;
}

/* Count one decided row and write its line from plain values: m is the normalised MSISDN (0: none),
 * msisdn its int object or NULL (made when needed), dl the deadline (-1: none). */
static int
emit(Replayer *self, PyObject *reason, PyObject *verdict, long long m, PyObject *msisdn, long long t,
     long long slot, long long dl, const char *imei_s, Py_ssize_t imei_n)
{
    ReasonSlot *rs = slot_of(self, reason);
    if (rs == NULL)
        return -1;
    rs->n++;
    self->rows++;
    if (verdict != self->allow && m != 0) {
        PyObject *tmp = msisdn != NULL ? Py_NewRef(msisdn) : PyLong_FromLongLong(m);
        if (tmp == NULL)
            return -1;
        int err = PySet_Add(verdict == self->warn ? self->warned : self->denied, tmp);
        Py_DECREF(tmp);
        if (err < 0)
            return -1;
    }
    if (self->write == Py_None)
        return 0;
    Py_ssize_t tail_n = PyBytes_GET_SIZE(rs->tail);
    if (reserve(self, 9 + 20 + 10 + imei_n + 12 + 24 + 9 + 24 + tail_n + 24 + 4) < 0)
        return -1;
    char *o = self->buf + self->len;
    memcpy(o, "{\"time\":\"", 9);
    o += 9;
    format_iso(t, o);
    o += 20;
    memcpy(o, "\",\"imei\":\"", 10);
    o += 10;
    memcpy(o, imei_s, (size_t)imei_n);
    o += imei_n;
    memcpy(o, "\",\"msisdn\":", 11);
    o += 11;
    if (m == 0) {
        memcpy(o, "null", 4);
        o += 4;
    } else {
        *o++ = '"';
        o = put_ll(o, m);
        *o++ = '"';
    }
    memcpy(o, ",\"slot\":", 8);
    o += 8;
    o = put_ll(o, slot);
    memcpy(o, PyBytes_AS_STRING(rs->tail), (size_t)tail_n);
    o += tail_n;
    if (dl < 0) {
        memcpy(o, "null}\n", 6);
        o += 6;
    } else {
        *o++ = '"';
        format_iso(dl, o);
        o += 20;
        memcpy(o, "\"}\n", 3);
        o += 3;
    }
    self->len = o - self->buf;
    if (self->len >= FLUSH_BYTES)
        return flush_out(self);
    return 0;
}

/* The deadline of a decision: 1 with *dl (-1 for None), 0 not an int in range, -1 error. */
static int
deadline_of(PyObject *d, long long *dl)
{
    PyObject *v = PyObject_GetAttr(d, s_deadline);
    if (v == NULL)
        return -1;
    int none = v == Py_None;
    Py_DECREF(v);
    if (none) {
        *dl = -1;
        return 1;
    }
    return attr_ll(d, s_deadline, 0, MAX_ISO_EPOCH, dl);
}

/* A row the Python path decided: count it and write its line (the reference formatter for anything
 * unusual). imei_s/imei_n: the raw field of a split line, or NULL and imei_obj is the field as a str. */
static int
decided(Replayer *self, PyObject *q, PyObject *d, const char *imei_s, Py_ssize_t imei_n, PyObject *imei_obj)
{
    PyObject *reason = PyObject_GetAttr(d, s_reason);
    if (reason == NULL)
        return -1;
    Py_DECREF(reason); /* kept alive by d (and by self->keep once counted) */
    PyObject *verdict = PyObject_GetAttr(d, s_verdict);
    if (verdict == NULL)
        return -1;
    Py_DECREF(verdict); /* an enum member */
    PyObject *msisdn = PyObject_GetAttr(q, s_msisdn);
    if (msisdn == NULL)
        return -1;
    long long t = 0, slot = 0, m = 0, dl = -1;
    int ok = 1, rc;
    if (PyLong_CheckExact(msisdn)) {
        int overflow = 0;
        m = PyLong_AsLongLongAndOverflow(msisdn, &overflow);
        if (m == -1 && PyErr_Occurred())
            ok = -1;
        else if (overflow || m < 0)
            ok = 0;
    } else {
        ok = 0;
    }
    if (ok == 1)
        ok = attr_ll(q, s_time, 0, MAX_ISO_EPOCH, &t);
    if (ok == 1)
        ok = attr_ll(q, s_slot, LLONG_MIN, LLONG_MAX, &slot);
    if (ok == 1)
        ok = deadline_of(d, &dl);
    if (ok == 1 && imei_s == NULL && (imei_s = PyUnicode_AsUTF8AndSize(imei_obj, &imei_n)) == NULL)
        ok = -1;
    if (ok == 1 && !plain_ascii(imei_s, imei_n))
        ok = 0;
    if (ok == 1) {
        rc = emit(self, reason, verdict, m, msisdn, t, slot, dl, imei_s, imei_n);
        Py_DECREF(msisdn);
        return rc;
    }
    if (ok < 0) {
        Py_DECREF(msisdn);
        return -1;
    }
    /* Unusual values or an IMEI that needs escaping: count as ever, the reference formatter writes. */
    ReasonSlot *rs = slot_of(self, reason);
    if (rs == NULL) {
        Py_DECREF(msisdn);
        return -1;
    }
    rs->n++;
    self->rows++;
    if (verdict != self->allow) {
        int truthy = PyObject_IsTrue(msisdn);
        if (truthy < 0 || (truthy && PySet_Add(verdict == self->warn ? self->warned : self->denied, msisdn) < 0)) {
            Py_DECREF(msisdn);
            return -1;
        }
    }
    Py_DECREF(msisdn);
    if (self->write == Py_None)
        return 0;
    PyObject *tmp = imei_obj;
    if (tmp == NULL && (tmp = PyUnicode_FromStringAndSize(imei_s, imei_n)) == NULL)
        return -1;
    rc = write_reference(self, tmp, q, d);
    if (imei_obj == NULL)
        Py_DECREF(tmp);
    return rc;
}

/* A row check_raw decided (a common attach of plain values: it accepted the fields as they are). */
static int
raw_decided(Replayer *self, PyObject *d, long long t, const char *imei_s, Py_ssize_t imei_n,
            const char *msisdn_s, Py_ssize_t msisdn_n, const char *slot_s, Py_ssize_t slot_n)
{
    long long m = 0, slot = 1, dl = -1;
    if (msisdn_s != NULL && msisdn_n > 0) {
        int home = 0;
        m = ident_msisdn(msisdn_s, (size_t)msisdn_n, self->cc, self->cc_len, (size_t)self->nml, &home);
        if (m <= 0)
            goto unexpected;
    }
    if (slot_s != NULL && slot_n > 0) {
        if (slot_n > 2 || !ident_all_digits(slot_s, (size_t)slot_n))
            goto unexpected;
        slot = slot_n == 1 ? slot_s[0] - '0' : (slot_s[0] - '0') * 10 + (slot_s[1] - '0');
    }
    int ok = deadline_of(d, &dl);
    if (ok <= 0) {
        if (ok == 0)
            goto unexpected;
        return -1;
    }
    PyObject *reason = PyObject_GetAttr(d, s_reason);
    if (reason == NULL)
        return -1;
    Py_DECREF(reason);
    PyObject *verdict = PyObject_GetAttr(d, s_verdict);
    if (verdict == NULL)
        return -1;
    Py_DECREF(verdict);
    return emit(self, reason, verdict, m, NULL, t, slot, dl, imei_s, imei_n);
unexpected:
    PyErr_SetString(PyExc_RuntimeError, "check_raw decided a row the replay edge cannot write");
    return -1;
}

/* --- the loop --------------------------------------------------------------------------------- */

static PyObject *
field_str(const char *s, Py_ssize_t n)
{
    if (n <= 1)
        return PyUnicode_FromStringAndSize(s, n); /* the shared empty and one-character strings */
    PyObject *u = PyUnicode_New(n, 127);
    if (u != NULL)
        memcpy(PyUnicode_DATA(u), s, (size_t)n);
    return u;
}

/* A simple line: fields split at its commas. 0 done, -1 error. */
static int
simple_line(Replayer *self, const char *p, const char *le, int commas)
{
    if (commas + 1 != self->width) {
        PyObject *r = PyObject_CallFunction(self->bad_width, "Li", self->line, commas + 1);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
        return 0;
    }
    const char *start[MAX_WIDTH], *stop[MAX_WIDTH];
    int k = 0;
    start[0] = p;
    for (const char *c = p; c < le; c++) {
        if (*c == ',') {
            stop[k++] = c;
            start[k] = c + 1;
        }
    }
    stop[k] = le;
    /* args: line, time, imei, msisdn, slot, imsi (the row callable's order) */
    PyObject *args[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    int rc = -1;
    PyObject *res = NULL;
    int ct = self->cols[0], ci = self->cols[1], cm = self->cols[2], cs = self->cols[3];
    long long t = parse_canonical(start[ct], stop[ct] - start[ct]);
    args[1] = t >= 0 ? PyLong_FromLongLong(t) : field_str(start[ct], stop[ct] - start[ct]);
    if (args[1] == NULL)
        goto done;
    for (int i = 1; i < 5; i++) {
        int c = self->cols[i];
        args[i + 1] = c < 0 ? Py_NewRef(Py_None) : field_str(start[c], stop[c] - start[c]);
        if (args[i + 1] == NULL)
            goto done;
    }
    if (self->check_raw != Py_None && t >= 0 && plain_ascii(start[ci], stop[ci] - start[ci])) {
        PyObject *raw[5] = {args[2], args[3], args[4], args[1], args[5]};
        res = PyObject_Vectorcall(self->check_raw, raw, 5, NULL);
        if (res == NULL)
            goto done;
        if (res != Py_None) {
            rc = raw_decided(self, res, t, start[ci], stop[ci] - start[ci], cm < 0 ? NULL : start[cm],
                             cm < 0 ? 0 : stop[cm] - start[cm], cs < 0 ? NULL : start[cs],
                             cs < 0 ? 0 : stop[cs] - start[cs]);
            goto done;
        }
        Py_CLEAR(res);
    }
    args[0] = PyLong_FromLongLong(self->line);
    if (args[0] == NULL)
        goto done;
    res = PyObject_Vectorcall(self->row, args, 6, NULL);
    if (res == NULL)
        goto done;
    if (res == Py_None) {
        rc = 0;
        goto done;
    }
    if (!PyTuple_CheckExact(res) || PyTuple_GET_SIZE(res) != 2) {
        PyErr_SetString(PyExc_TypeError, "row must return (query, decision) or None");
        goto done;
    }
    rc = decided(self, PyTuple_GET_ITEM(res, 0), PyTuple_GET_ITEM(res, 1), start[ci], stop[ci] - start[ci],
                 args[2]);
done:
    Py_XDECREF(res);
    for (int i = 0; i < 6; i++)
        Py_XDECREF(args[i]);
    return rc;
}

static int
other_line(Replayer *self, const char *p, const char *next)
{
    PyObject *res = PyObject_CallFunction(self->line_fallback, "Ly#", self->line, p, (Py_ssize_t)(next - p));
    if (res == NULL)
        return -1;
    int rc = 0;
    if (res != Py_None) {
        if (!PyTuple_CheckExact(res) || PyTuple_GET_SIZE(res) != 3 || !PyUnicode_Check(PyTuple_GET_ITEM(res, 0))) {
            PyErr_SetString(PyExc_TypeError, "line_fallback must return (imei, query, decision) or None");
            rc = -1;
        } else {
            rc = decided(self, PyTuple_GET_ITEM(res, 1), PyTuple_GET_ITEM(res, 2), NULL, 0,
                         PyTuple_GET_ITEM(res, 0));
        }
    }
    Py_DECREF(res);
    return rc;
}

static PyObject *
Replayer_feed(Replayer *self, PyObject *args)
{
    Py_buffer view;
    int final;
    if (!PyArg_ParseTuple(args, "y*p", &view, &final))
        return NULL;
    const char *data = view.buf, *p = data, *end = data + view.len;
    while (p < end && !self->stopped) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL && !final)
            break; /* an incomplete line: the caller sends it again with more bytes */
        const char *next = nl != NULL ? nl + 1 : end;
        const char *le = nl != NULL ? nl : end;
        if (le > p && le[-1] == '\r')
            le--; /* CRLF (or a final CR): the csv module strips it as a line end */
        int commas = 0, other = 0, csv_only = 0;
        for (const char *c = p; c < le; c++) {
            unsigned char ch = (unsigned char)*c;
            if (ch == ',')
                commas++;
            else if (ch == '"' || ch == '\r')
                csv_only = 1;
            else if (ch < 0x20 || ch >= 0x7f)
                other = 1;
        }
        if (csv_only) {
            self->stopped = 1; /* quoted fields may span lines: the rest is the csv module's */
            break;
        }
        self->line++;
        int rc = 0;
        if (le == p)
            ; /* a blank line: the csv module yields no row */
        else if (other || commas >= MAX_WIDTH || le - p > MAX_FAST_LINE)
            rc = other_line(self, p, next);
        else
            rc = simple_line(self, p, le, commas);
        if (rc < 0) {
            PyBuffer_Release(&view);
            return NULL;
        }
        p = next;
    }
    Py_ssize_t used = p - data;
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(used);
}

static PyObject *
Replayer_flush(Replayer *self, PyObject *Py_UNUSED(ignored))
{
    if (flush_out(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Replayer_counts(Replayer *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *out = PyList_New(self->n_slots);
    if (out == NULL)
        return NULL;
    for (int i = 0; i < self->n_slots; i++) {
        PyObject *item = Py_BuildValue("(On)", self->slots[i].reason, self->slots[i].n);
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, item);
    }
    return out;
}

/* --- type plumbing ---------------------------------------------------------------------------- */

static int
Replayer_traverse(Replayer *self, visitproc visit, void *arg)
{
    Py_VISIT(self->row);
    Py_VISIT(self->line_fallback);
    Py_VISIT(self->bad_width);
    Py_VISIT(self->format_line);
    Py_VISIT(self->tail_of);
    Py_VISIT(self->write);
    Py_VISIT(self->allow);
    Py_VISIT(self->warn);
    Py_VISIT(self->warned);
    Py_VISIT(self->denied);
    Py_VISIT(self->keep);
    Py_VISIT(self->check_raw);
    return 0;
}

static int
Replayer_clear(Replayer *self)
{
    Py_CLEAR(self->row);
    Py_CLEAR(self->line_fallback);
    Py_CLEAR(self->bad_width);
    Py_CLEAR(self->format_line);
    Py_CLEAR(self->tail_of);
    Py_CLEAR(self->write);
    Py_CLEAR(self->allow);
    Py_CLEAR(self->warn);
    Py_CLEAR(self->warned);
    Py_CLEAR(self->denied);
    for (int i = 0; i < self->n_slots; i++)
        Py_CLEAR(self->slots[i].tail);
    self->n_slots = 0;
    Py_CLEAR(self->keep);
    Py_CLEAR(self->check_raw);
    return 0;
}

static void
Replayer_dealloc(Replayer *self)
{
    PyObject_GC_UnTrack(self);
    Replayer_clear(self);
    PyMem_Free(self->buf);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
Replayer_init(Replayer *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"columns", "width", "row", "line_fallback", "bad_width", "format_line", "tail_of",
                             "write", "allow", "warn", "warned", "denied", "check_raw", "country_code",
                             "national_mobile_length", NULL};
    PyObject *columns, *row, *line_fallback, *bad_width, *format_line, *tail_of, *write, *allow, *warn;
    PyObject *warned, *denied, *check_raw = Py_None;
    const char *cc = "";
    Py_ssize_t cc_len = 0, nml = 0;
    int width;
    if (self->keep != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Replayer is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!iOOOOOOOOO!O!|$Os#n", kwlist, &PyTuple_Type, &columns, &width,
                                     &row, &line_fallback, &bad_width, &format_line, &tail_of, &write, &allow,
                                     &warn, &PySet_Type, &warned, &PySet_Type, &denied, &check_raw, &cc, &cc_len,
                                     &nml))
        return -1;
    if (check_raw != Py_None && (cc_len > IDENT_MAX_CC || nml < 0)) {
        check_raw = Py_None; /* a numbering plan eir/_ident.h does not parse: check_raw declines anyway */
    }
    if (PyTuple_GET_SIZE(columns) != 5 || width < 1 || width > MAX_WIDTH) {
        PyErr_SetString(PyExc_ValueError, "columns: 5 indexes; width: 1..64");
        return -1;
    }
    for (int i = 0; i < 5; i++) {
        long c = PyLong_AsLong(PyTuple_GET_ITEM(columns, i));
        if (c == -1 && PyErr_Occurred())
            return -1;
        if (c < -1 || c >= width || (i < 2 && c < 0)) {
            PyErr_SetString(PyExc_ValueError, "column index out of range");
            return -1;
        }
        self->cols[i] = (int)c;
    }
    self->width = width;
    self->row = Py_NewRef(row);
    self->line_fallback = Py_NewRef(line_fallback);
    self->bad_width = Py_NewRef(bad_width);
    self->format_line = Py_NewRef(format_line);
    self->tail_of = Py_NewRef(tail_of);
    self->write = Py_NewRef(write);
    self->allow = Py_NewRef(allow);
    self->warn = Py_NewRef(warn);
    self->warned = Py_NewRef(warned);
    self->denied = Py_NewRef(denied);
    self->check_raw = Py_NewRef(check_raw);
    memcpy(self->cc, cc, (size_t)(cc_len > IDENT_MAX_CC ? 0 : cc_len));
    self->cc_len = (size_t)(cc_len > IDENT_MAX_CC ? 0 : cc_len);
    self->nml = nml;
    self->keep = PyList_New(0);
    self->line = 1;
    return self->keep == NULL ? -1 : 0;
}

static PyObject *
Replayer_get_line(Replayer *self, void *closure)
{
    return PyLong_FromLongLong(self->line);
}

static PyObject *
Replayer_get_rows(Replayer *self, void *closure)
{
    return PyLong_FromLongLong(self->rows);
}

static PyObject *
Replayer_get_stopped(Replayer *self, void *closure)
{
    return PyBool_FromLong(self->stopped);
}

static PyGetSetDef Replayer_getset[] = {
    {"line", (getter)Replayer_get_line, NULL, "Number of the last line read (the header is line 1).", NULL},
    {"rows", (getter)Replayer_get_rows, NULL, "Rows decided.", NULL},
    {"stopped", (getter)Replayer_get_stopped, NULL, "feed() stopped before a line for the csv module.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef Replayer_methods[] = {
    {"feed", (PyCFunction)Replayer_feed, METH_VARARGS,
     "feed(data, final) -> bytes used: decide the complete lines of data (all of it when final)."},
    {"flush", (PyCFunction)Replayer_flush, METH_NOARGS, "Write the pending decision lines."},
    {"counts", (PyCFunction)Replayer_counts, METH_NOARGS, "[(reason, rows)] decided so far."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReplayerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "eir._replayio.Replayer",
    .tp_doc = "The CSV replay edge in C (see eir/replay_fast.py).",
    .tp_basicsize = sizeof(Replayer),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Replayer_init,
    .tp_dealloc = (destructor)Replayer_dealloc,
    .tp_traverse = (traverseproc)Replayer_traverse,
    .tp_clear = (inquiry)Replayer_clear,
    .tp_methods = Replayer_methods,
    .tp_getset = Replayer_getset,
};

/* parse_time's canonical fast path alone (tests compare it with eir.query.parse_time). */
static PyObject *
py_parse_canonical(PyObject *mod, PyObject *arg)
{
    const char *s;
    Py_ssize_t n;
    if (PyBytes_Check(arg)) {
        s = PyBytes_AS_STRING(arg);
        n = PyBytes_GET_SIZE(arg);
    } else {
        PyErr_SetString(PyExc_TypeError, "bytes expected");
        return NULL;
    }
    long long t = parse_canonical(s, n);
    if (t < 0)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(t);
}

/* format_iso alone (tests compare it with eir.events.iso_utc). */
static PyObject *
py_format_iso(PyObject *mod, PyObject *arg)
{
    long long t = PyLong_AsLongLong(arg);
    if (t == -1 && PyErr_Occurred())
        return NULL;
    if (t < 0 || t > MAX_ISO_EPOCH) {
        PyErr_SetString(PyExc_ValueError, "outside 1970..9999");
        return NULL;
    }
    char o[20];
    format_iso(t, o);
    return PyUnicode_FromStringAndSize(o, 20);
}

static PyMethodDef module_methods[] = {
    {"parse_canonical", py_parse_canonical, METH_O, "Epoch seconds of b'YYYY-MM-DDTHH:MM:SSZ' in range, or None."},
    {"format_iso", py_format_iso, METH_O, "'YYYY-MM-DDTHH:MM:SSZ' of epoch seconds."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef replayio_module = {
    PyModuleDef_HEAD_INIT, "eir._replayio", "Optional C edge of eir replay (CSV in, JSON lines out).", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__replayio(void)
{
    if (PyType_Ready(&ReplayerType) < 0)
        return NULL;
    s_time = PyUnicode_InternFromString("time");
    s_msisdn = PyUnicode_InternFromString("msisdn");
    s_slot = PyUnicode_InternFromString("slot");
    s_reason = PyUnicode_InternFromString("reason");
    s_verdict = PyUnicode_InternFromString("verdict");
    s_deadline = PyUnicode_InternFromString("deadline");
    if (!s_time || !s_msisdn || !s_slot || !s_reason || !s_verdict || !s_deadline)
        return NULL;
    PyObject *m = PyModule_Create(&replayio_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ReplayerType);
    if (PyModule_AddObject(m, "Replayer", (PyObject *)&ReplayerType) < 0) {
        Py_DECREF(&ReplayerType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "MIN_EPOCH", MIN_EPOCH) < 0 || PyModule_AddIntConstant(m, "MAX_EPOCH", MAX_EPOCH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
