/* eir._replayio, the output side: count each decided row and write its JSON line (see _replayio.c).
 *
 * The line is the one eir.replay.DecisionWriter.line writes; anything unusual (an IMEI that needs JSON
 * escaping, a value out of the plain ranges) is written by that Python method itself.
 */
#include "_replayio.h"
#include "_replayio_text.h"

#include <string.h>

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

int
rio_flush(Replayer *self)
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
        return rio_flush(self);
    return 0;
}

/* The deadline of a decision: 1 with *dl (-1 for None), 0 not an int in range, -1 error. */
static int
deadline_of(PyObject *d, long long *dl)
{
    PyObject *v = PyObject_GetAttr(d, rio_s_deadline);
    if (v == NULL)
        return -1;
    int none = v == Py_None;
    Py_DECREF(v);
    if (none) {
        *dl = -1;
        return 1;
    }
    return attr_ll(d, rio_s_deadline, 0, MAX_ISO_EPOCH, dl);
}

/* A row the Python path decided: count it and write its line (the reference formatter for anything
 * unusual). imei_s/imei_n: the raw field of a split line, or NULL and imei_obj is the field as a str. */
int
rio_decided(Replayer *self, PyObject *q, PyObject *d, const char *imei_s, Py_ssize_t imei_n, PyObject *imei_obj)
{
    PyObject *reason = PyObject_GetAttr(d, rio_s_reason);
    if (reason == NULL)
        return -1;
    Py_DECREF(reason); /* kept alive by d (and by self->keep once counted) */
    PyObject *verdict = PyObject_GetAttr(d, rio_s_verdict);
    if (verdict == NULL)
        return -1;
    Py_DECREF(verdict); /* an enum member */
    PyObject *msisdn = PyObject_GetAttr(q, rio_s_msisdn);
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
        ok = attr_ll(q, rio_s_time, 0, MAX_ISO_EPOCH, &t);
    if (ok == 1)
        ok = attr_ll(q, rio_s_slot, LLONG_MIN, LLONG_MAX, &slot);
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

/* A row decide_raw decided (a common attach of plain values: it accepted the fields as they are). */
int
rio_raw_decided(Replayer *self, PyObject *d, long long t, const char *imei_s, Py_ssize_t imei_n,
            const char *msisdn_s, Py_ssize_t msisdn_n, const char *slot_s, Py_ssize_t slot_n)
{
    long long m = 0, slot = 1, dl = -1;
    int ok;
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
    ok = deadline_of(d, &dl);
    if (ok <= 0) {
        if (ok == 0)
            goto unexpected;
        return -1;
    }
    PyObject *reason = PyObject_GetAttr(d, rio_s_reason);
    if (reason == NULL)
        return -1;
    Py_DECREF(reason);
    PyObject *verdict = PyObject_GetAttr(d, rio_s_verdict);
    if (verdict == NULL)
        return -1;
    Py_DECREF(verdict);
    return emit(self, reason, verdict, m, NULL, t, slot, dl, imei_s, imei_n);
unexpected:
    PyErr_SetString(PyExc_RuntimeError, "decide_raw decided a row the replay edge cannot write");
    return -1;
}

