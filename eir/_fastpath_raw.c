/* eir._fastpath, the entry points that take an attach's values as received (see eir/_fastpath.c).
 *
 * check_raw(imei, msisdn, slot, time, imsi): one attach (eir replay, RPC check). parse_items and
 * decide_items: a check_batch (eir/transports/rpc_batch.py), whose items are all parsed before any is
 * decided, so the parse results wait in a bytearray of BatchItem; the items these functions cannot
 * take are parsed and decided by the Python callers, in order. The identifiers are parsed by
 * eir/_ident.h, the values around them (slot, time, the field bounds, the IMSI's subscriber) here, as
 * eir.query does, in eir_fp_parse_fields: the values come as RawFields, from Python objects here (field_of)
 * or from a request's msgpack bytes (parse_wire_items, eir/_fastpath_wire.c), one copy of the rules.
 */
#include <math.h>

#include "_fastpath.h"
#include "_layout.h"


/* A Python value as a RawField: an exact str of at most MAX_FIELD_CHARS ASCII characters is F_STR (longer
 * or non-ASCII strings, like other types, are F_OTHER: Python judges or refuses them), an exact int within
 * 64 bits F_INT, an exact float F_FLOAT, None F_NONE. */
static RawField
field_of(PyObject *o)
{
    RawField f = {.kind = F_OTHER};
    if (o == Py_None) {
        f.kind = F_NONE;
    } else if (PyUnicode_CheckExact(o)) {
        if (PyUnicode_IS_ASCII(o) && PyUnicode_GET_LENGTH(o) <= MAX_FIELD_CHARS) {
            f.kind = F_STR;
            f.s = (const char *)PyUnicode_1BYTE_DATA(o);
            f.n = (size_t)PyUnicode_GET_LENGTH(o);
        }
    } else if (PyLong_CheckExact(o)) {
        int overflow;
        f.v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (!overflow && !(f.v == -1 && PyErr_Occurred()))
            f.kind = F_INT;
        PyErr_Clear();
    } else if (PyFloat_CheckExact(o)) {
        f.kind = F_FLOAT;
        f.d = PyFloat_AS_DOUBLE(o);
    }
    return f;
}

/* eir.identifiers.parse_slot for None, an int and the strings "" and "1".."16"; 0 otherwise. */
static long long
raw_slot(const RawField *f)
{
    if (f->kind == F_NONE)
        return 1;
    if (f->kind == F_INT)
        return 1 <= f->v && f->v <= MAX_SLOT ? f->v : 0;
    if (f->kind != F_STR)
        return 0;
    const char *s = f->s;
    if (f->n == 0)
        return 1;
    if (f->n == 1 && s[0] >= '1' && s[0] <= '9')
        return s[0] - '0';
    if (f->n == 2 && s[0] == '1' && s[1] >= '0' && s[1] <= '6')
        return 10 + s[1] - '0';
    return 0;
}

/* eir.query.parse_time for an int or a float: epoch seconds (floored) within MIN_EPOCH..MAX_EPOCH; 0 for
 * anything else (strings, bools, out of range: Python). */
static long long
raw_time(const RawField *f)
{
    if (f->kind == F_INT)
        return MIN_EPOCH <= f->v && f->v <= MAX_EPOCH ? f->v : 0;
    if (f->kind == F_FLOAT) {
        double v = floor(f->d);
        return isfinite(v) && (double)MIN_EPOCH <= v && v <= (double)MAX_EPOCH ? (long long)v : 0;
    }
    return 0;
}

/* Index.msisdn_for_imsi: the MSISDN of the subscriber record with this IMSI (bisect_left over imsi_key, as
 * Python's: the same index even for keys out of order), 0 when there is none. 1 done (*msisdn), 0 left to
 * Python (a column it cannot read, or shorter than the keys: Python raises that error). */
static int
imsi_msisdn(FastCheck *self, long long imsi, long long *msisdn)
{
    Py_buffer kv, mv;
    if (PyObject_GetBuffer(self->imsi_key, &kv, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return 0;
    }
    if (PyObject_GetBuffer(self->imsi_msisdn, &mv, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        PyBuffer_Release(&kv);
        return 0;
    }
    const Column *kc = &self->imsi_key_col, *mc = &self->imsi_msisdn_col;
    const char *keys = (const char *)kv.buf;
    size_t lo = 0, hi = (size_t)(kv.len / kc->size);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (column_item(kc, keys + mid * (size_t)kc->size) < imsi)
            lo = mid + 1;
        else
            hi = mid;
    }
    int ok = 1;
    *msisdn = 0;
    if (lo < (size_t)(kv.len / kc->size) && column_item(kc, keys + lo * (size_t)kc->size) == imsi) {
        if ((Py_ssize_t)((lo + 1) * (size_t)mc->size) <= mv.len)
            *msisdn = column_item(mc, (const char *)mv.buf + lo * (size_t)mc->size);
        else
            ok = 0;
    }
    PyBuffer_Release(&mv);
    PyBuffer_Release(&kv);
    return ok;
}

/* None or "": a value not given */
static int
field_absent(const RawField *f)
{
    return f->kind == F_NONE || (f->kind == F_STR && f->n == 0);
}

int
eir_fp_parse_fields(FastCheck *self, const RawField *imei, const RawField *msisdn, const RawField *slot,
                    const RawField *time, long long now, const RawField *imsi, int take_imsi, RawAttach *a)
{
    if (imei->kind != F_STR)
        return 0;
    a->imei = ident_imei(imei->s, imei->n, self->deny_invalid_check_digit, self->deny_test_imeis);
    if (a->imei == IDENT_DECLINE)
        return 0;
    if ((a->slot = raw_slot(slot)) == 0)
        return 0;
    a->time = time == NULL ? now : raw_time(time);
    if (a->time == 0)
        return 0;
    a->imsi = 0;
    int imsi_home = 1;
    if (!field_absent(imsi)) {
        if (!take_imsi || self->imsi_key == NULL || imsi->kind != F_STR)
            return 0;
        int mcc = 0;
        if ((a->imsi = ident_imsi(imsi->s, imsi->n, &mcc)) == IDENT_DECLINE)
            return 0;
        imsi_home = (self->home_mcc[mcc >> 3] >> (mcc & 7)) & 1; /* str(imsi)[:3] in plan.home_mccs */
    }
    if (field_absent(msisdn)) {
        /* no MSISDN: the subscriber of a home IMSI (0 when unknown); a foreign IMSI is a roamer's; neither
         * an MSISDN nor an IMSI is an unknown subscriber */
        a->roamer = !imsi_home;
        a->sub = 0;
        return a->imsi == 0 || !imsi_home || imsi_msisdn(self, a->imsi, &a->sub);
    }
    if (msisdn->kind != F_STR || self->nml < 0)
        return 0;
    int home = 0;
    a->sub = ident_msisdn(msisdn->s, msisdn->n, self->cc, self->cc_len, (size_t)self->nml, &home);
    if (a->sub == IDENT_DECLINE)
        return 0;
    a->roamer = !(home && imsi_home);
    return 1;
}

/* Parse one attach's raw values as eir.query.build_query does, for the common forms: 1 parsed into *a,
 * 0 not (a form left to Python, or a value Python refuses: it raises the error). A NULL time is now.
 * take_imsi 0: every IMSI is left to Python (decide_raw: the replay's C edge writes a row it decided with
 * the MSISDN of the row's msisdn field, which for an IMSI-only row is not the subscriber decided on). */
static int
parse_raw(FastCheck *self, PyObject *imei, PyObject *msisdn, PyObject *slot, PyObject *time, long long now,
          PyObject *imsi, int take_imsi, RawAttach *a)
{
    RawField f[5] = {field_of(imei), field_of(msisdn), field_of(slot), {0}, field_of(imsi)};
    if (time != NULL)
        f[3] = field_of(time);
    return eir_fp_parse_fields(self, &f[0], &f[1], &f[2], time == NULL ? NULL : &f[3], now, &f[4], take_imsi,
                               a);
}

static PyObject *item_query(FastCheck *self, const RawAttach *a);

/* check_raw and decide_raw: parse the raw values and decide; an attach the common case does not cover
 * gives None, or with want_query the Query build_query would make (nothing recorded then). */
static PyObject *
raw_entry(FastCheck *self, PyObject *const *args, Py_ssize_t nargs, const char *usage, int want_query)
{
    if (nargs < 4 || nargs > 5) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    RawAttach a;
    if (!parse_raw(self, args[0], args[1], args[2], args[3], 0, nargs > 4 ? args[4] : Py_None, !want_query, &a))
        return Py_NewRef(Py_None);
    PyObject *made = NULL;
    int d = eir_fp_decide(self, a.imei, a.sub, a.slot, a.time, a.roamer, 1, &made);
    if (d == FP_ERROR)
        return NULL;
    if (d == FP_MADE)
        return made;
    if (d == FP_DECLINED)
        return want_query ? item_query(self, &a) : Py_NewRef(Py_None);
    return Py_NewRef(self->decisions[d]);
}

PyObject *
eir_fp_check_raw(FastCheck *self, PyObject *const *args, Py_ssize_t nargs)
{
    return raw_entry(self, args, nargs, "check_raw(imei, msisdn, slot, time, imsi=None)", 0);
}

/* The BatchItem array of a batch's bytearray, checked to hold n items. */
static BatchItem *
batch_items(PyObject *buf, Py_ssize_t n)
{
    if (!PyByteArray_CheckExact(buf) || PyByteArray_GET_SIZE(buf) < n * (Py_ssize_t)sizeof(BatchItem)) {
        PyErr_SetString(PyExc_ValueError, "buf: a bytearray of BATCH_ITEM_SIZE bytes per item expected");
        return NULL;
    }
    return (BatchItem *)PyByteArray_AS_STRING(buf);
}

/* [start, end) within a list of n items */
static int
batch_range(PyObject *start, PyObject *end, Py_ssize_t n, Py_ssize_t *s, Py_ssize_t *e)
{
    *s = PyLong_AsSsize_t(start);
    *e = PyLong_AsSsize_t(end);
    if ((*s == -1 || *e == -1) && PyErr_Occurred())
        return -1;
    if (*s < 0 || *s > *e || *e > n) {
        PyErr_SetString(PyExc_IndexError, "start/end outside the batch");
        return -1;
    }
    return 0;
}

/* parse_items(items, start, end, now, buf) -> i: items[start:i] parsed into buf; items[i] (i < end) is the
 * first one left to Python: not [imei, msisdn, slot?, time?, imsi?], an unusual form or a bad value. */
PyObject *
eir_fp_parse_items(FastCheck *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyList_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "parse_items(items: list, start, end, now, buf)");
        return NULL;
    }
    PyObject *items = args[0];
    Py_ssize_t i, end;
    if (batch_range(args[1], args[2], PyList_GET_SIZE(items), &i, &end) < 0)
        return NULL;
    long long now = PyLong_AsLongLong(args[3]);
    if (now == -1 && PyErr_Occurred())
        return NULL;
    BatchItem *slots = batch_items(args[4], PyList_GET_SIZE(items));
    if (slots == NULL)
        return NULL;
    /* No Python code runs in this loop: the list cannot change under it. */
    for (; i < end; i++) {
        PyObject *p = PyList_GET_ITEM(items, i);
        if (!PyList_CheckExact(p))
            break;
        Py_ssize_t k = PyList_GET_SIZE(p);
        if (k < 2 || k > 5)
            break;
        PyObject *t = k > 3 ? PyList_GET_ITEM(p, 3) : Py_None;
        BatchItem *it = &slots[i];
        if (!parse_raw(self, PyList_GET_ITEM(p, 0), PyList_GET_ITEM(p, 1), k > 2 ? PyList_GET_ITEM(p, 2) : Py_None,
                       t == Py_None ? NULL : t, now, k > 4 ? PyList_GET_ITEM(p, 4) : Py_None, 1, &it->a))
            break;
        it->kind = it->a.roamer ? ITEM_ROAMER : ITEM_HOME;
    }
    return PyLong_FromSsize_t(i);
}

/* The Query build_query makes of a parsed item: Query(time, imei, msisdn, slot, roamer, imsi). */
static PyObject *
item_query(FastCheck *self, const RawAttach *a)
{
    if (self->query_type == Py_None) {
        PyErr_SetString(PyExc_TypeError, "FastCheck built without query_type");
        return NULL;
    }
    PyObject *v[6] = {PyLong_FromLongLong(a->time), PyLong_FromLongLong(a->imei), PyLong_FromLongLong(a->sub),
                      PyLong_FromLongLong(a->slot), Py_NewRef(a->roamer ? Py_True : Py_False),
                      PyLong_FromLongLong(a->imsi)};
    PyObject *q = NULL;
    if (v[0] != NULL && v[1] != NULL && v[2] != NULL && v[3] != NULL && v[5] != NULL)
        q = PyObject_Vectorcall(self->query_type, v, 6, NULL);
    for (int j = 0; j < 6; j++)
        Py_XDECREF(v[j]);
    return q;
}

static PyObject *s_reason, *s_deadline_attr, *py_one;

/* How far ahead decide_items prefetches a batch's items (stages 1 and 2 of eir_fp_prefetch). Measured on
 * the service benchmark's batches (in process, interleaved in one process, 10 rounds): none 1.53-1.58 µs
 * an item (best of rounds), 4/2 1.39-1.45, 8/4 1.44-1.46, 16/8 1.44; 8/4 leaves room for the longer
 * misses of a larger registry. */
#define PREFETCH_FAR 8
#define PREFETCH_NEAR 4

/* The packed result of the outcome the accelerator made (the FastCheck's made_* fields, eir/_fastpath.c):
 * the packed map up to its "deadline" key (prefixes[reason]), then the deadline as msgpack.Packer packs an
 * int (the smallest form), or nil; the decision counted in counts[reason]. No Decision object is built
 * for it (a shared one is read). A new reference, NULL on error (or a deadline of another type). */
static PyObject *
made_result(FastCheck *self, PyObject *prefixes, PyObject *counts)
{
    if (py_one == NULL && ((s_reason = PyUnicode_InternFromString("reason")) == NULL
                           || (s_deadline_attr = PyUnicode_InternFromString("deadline")) == NULL
                           || (py_one = PyLong_FromLong(1)) == NULL))
        return NULL;
    PyObject *made = self->made_shared;
    PyObject *reason = made != NULL ? PyObject_GetAttr(made, s_reason) : Py_XNewRef(self->made_reason);
    if (reason == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "made_parts: no outcome made");
        return NULL;
    }
    PyObject *out = NULL;
    long long v = self->made_deadline; /* -1: nil */
    PyObject *prefix = PyDict_GetItemWithError(prefixes, reason); /* borrowed */
    if (prefix == NULL || !PyBytes_CheckExact(prefix)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_KeyError, "made_parts: no packed prefix for this reason");
        goto done;
    }
    PyObject *n = PyDict_GetItemWithError(counts, reason); /* borrowed */
    PyObject *n1 = n != NULL ? PyNumber_Add(n, py_one) : NULL;
    int err = n1 != NULL ? PyDict_SetItem(counts, reason, n1) : -1;
    Py_XDECREF(n1);
    if (err < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_KeyError, "made_parts: no counter for this reason");
        goto done;
    }
    if (made != NULL) { /* a shared Decision: its deadline */
        PyObject *dl = PyObject_GetAttr(made, s_deadline_attr);
        if (dl == NULL)
            goto done;
        int overflow = 0;
        v = dl == Py_None ? -1 : PyLong_CheckExact(dl) ? PyLong_AsLongLongAndOverflow(dl, &overflow) : -2;
        Py_DECREF(dl);
        if (v < -1 || overflow || (dl != Py_None && v < 0)) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "made_parts: a deadline that is not a non-negative int");
            goto done;
        }
    }
    unsigned char tail[9];
    size_t len;
    if (v < 0) {
        tail[0] = 0xc0;
        len = 1;
    } else {
        unsigned long long u = (unsigned long long)v;
        if (u < 128) {
            tail[0] = (unsigned char)u;
            len = 1;
        } else {
            int width = u < (1ULL << 8) ? 1 : u < (1ULL << 16) ? 2 : u < (1ULL << 32) ? 4 : 8;
            tail[0] = width == 1 ? 0xcc : width == 2 ? 0xcd : width == 4 ? 0xce : 0xcf;
            for (int k = 0; k < width; k++)
                tail[1 + k] = (unsigned char)(u >> (8 * (width - 1 - k)));
            len = 1 + (size_t)width;
        }
    }
    Py_ssize_t plen = PyBytes_GET_SIZE(prefix);
    out = PyBytes_FromStringAndSize(NULL, plen + (Py_ssize_t)len);
    if (out != NULL) {
        memcpy(PyBytes_AS_STRING(out), PyBytes_AS_STRING(prefix), (size_t)plen);
        memcpy(PyBytes_AS_STRING(out) + plen, tail, len);
    }
done:
    Py_DECREF(reason);
    return out;
}

/* decide_items(buf, queries, start, end, parts, check_one, fast_parts, made_parts) -> counts: decide items
 * start..end-1 in order and append each one's answer to parts: fast_parts[k] for an attach decided here
 * with outcome k (eir.fastpath.FAST_REASONS); for one decided here with a new Decision (it carries a
 * deadline; only when made_parts, a (prefixes, counts) pair of dicts keyed by reason, is not None) its
 * result packed here (made_result); check_one(query) for every other, with the item's Query (queries[i]
 * for the items Python parsed, built here for the others). Returns how many were decided here with each
 * of FAST_REASONS (the made ones are counted in made_parts' counts). */
PyObject *
eir_fp_decide_items(FastCheck *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8 || !PyList_CheckExact(args[1]) || !PyList_CheckExact(args[4]) || !PyTuple_CheckExact(args[6])
            || PyTuple_GET_SIZE(args[6]) != D_COUNT) {
        PyErr_SetString(PyExc_TypeError, "decide_items(buf, queries: list, start, end, parts: list, check_one, "
                                         "fast_parts: tuple, made_parts)");
        return NULL;
    }
    PyObject *prefixes = NULL, *made_counts = NULL;
    if (args[7] != Py_None && !PyArg_ParseTuple(args[7], "O!O!;made_parts", &PyDict_Type, &prefixes, &PyDict_Type,
                                                &made_counts))
        return NULL;
    PyObject *queries = args[1], *parts = args[4], *check_one = args[5];
    Py_ssize_t i, end;
    if (batch_range(args[2], args[3], PyList_GET_SIZE(queries), &i, &end) < 0)
        return NULL;
    long long counts[D_COUNT] = {0};
    for (; i < end; i++) {
        /* check_one runs Python code: the bytearray is re-read every item (it may not move, but be safe) */
        BatchItem *slots = batch_items(args[0], PyList_GET_SIZE(queries));
        if (slots == NULL)
            return NULL;
        /* software pipelining: the data of item i + PREFETCH_NEAR is on its way by the time it is decided */
        if (i + PREFETCH_FAR < end && slots[i + PREFETCH_FAR].kind != ITEM_PYTHON)
            eir_fp_prefetch(self, slots[i + PREFETCH_FAR].a.imei, 1);
        if (i + PREFETCH_NEAR < end && slots[i + PREFETCH_NEAR].kind != ITEM_PYTHON)
            eir_fp_prefetch(self, slots[i + PREFETCH_NEAR].a.imei, 2);
        BatchItem it = slots[i];
        if (it.kind != ITEM_PYTHON) {
            int d = eir_fp_decide(self, it.a.imei, it.a.sub, it.a.slot, it.a.time, it.kind == ITEM_ROAMER,
                                  prefixes != NULL, NULL);
            if (d == FP_ERROR)
                return NULL;
            if (d == FP_MADE) {
                PyObject *part = made_result(self, prefixes, made_counts);
                int err = part == NULL ? -1 : PyList_Append(parts, part);
                Py_XDECREF(part);
                if (err < 0)
                    return NULL;
                continue;
            }
            if (d != FP_DECLINED) {
                counts[d]++;
                if (PyList_Append(parts, PyTuple_GET_ITEM(args[6], d)) < 0)
                    return NULL;
                continue;
            }
        }
        PyObject *q;
        if (it.kind == ITEM_PYTHON) {
            if (i >= PyList_GET_SIZE(queries)) {
                PyErr_SetString(PyExc_IndexError, "queries changed size");
                return NULL;
            }
            q = Py_NewRef(PyList_GET_ITEM(queries, i));
        } else {
            q = item_query(self, &it.a);
            if (q == NULL)
                return NULL;
        }
        PyObject *part = PyObject_CallOneArg(check_one, q);
        Py_DECREF(q);
        if (part == NULL)
            return NULL;
        int err = PyList_Append(parts, part);
        Py_DECREF(part);
        if (err < 0)
            return NULL;
    }
    PyObject *out = PyTuple_New(D_COUNT);
    for (int k = 0; out != NULL && k < D_COUNT; k++) {
        PyObject *n = PyLong_FromLongLong(counts[k]);
        if (n == NULL)
            Py_CLEAR(out);
        else
            PyTuple_SET_ITEM(out, k, n);
    }
    return out;
}

/* decide_raw(imei, msisdn, slot, time, imsi=None): as check_raw, but for values it parses whose attach is
 * not the common one it returns the Query build_query would make of them (nothing recorded: the caller
 * runs Engine.check on it), so a replay parses each row once. None: values it does not parse. */
PyObject *
eir_fp_decide_raw(FastCheck *self, PyObject *const *args, Py_ssize_t nargs)
{
    return raw_entry(self, args, nargs, "decide_raw(imei, msisdn, slot, time, imsi=None)", 1);
}

/* --- module-level parsers, for the tests that hold them to eir.identifiers ---------------------------- */

static PyObject *
mod_parse_imei(PyObject *mod, PyObject *args)
{
    PyObject *raw;
    int deny_check, deny_test;
    if (!PyArg_ParseTuple(args, "Opp", &raw, &deny_check, &deny_test))
        return NULL;
    RawField f = field_of(raw);
    long long v = f.kind != F_STR ? IDENT_DECLINE : ident_imei(f.s, f.n, deny_check, deny_test);
    return v == IDENT_DECLINE ? Py_NewRef(Py_None) : PyLong_FromLongLong(v);
}

static PyObject *
mod_parse_msisdn(PyObject *mod, PyObject *args)
{
    PyObject *raw;
    const char *cc;
    Py_ssize_t cc_len, nml;
    if (!PyArg_ParseTuple(args, "Os#n", &raw, &cc, &cc_len, &nml))
        return NULL;
    RawField f = field_of(raw);
    int home = 0;
    long long v = f.kind != F_STR || nml < 0 ? IDENT_DECLINE
                  : ident_msisdn(f.s, f.n, cc, (size_t)cc_len, (size_t)nml, &home);
    if (v == IDENT_DECLINE)
        return Py_NewRef(Py_None);
    return Py_BuildValue("(LO)", v, home ? Py_True : Py_False);
}

static PyObject *
mod_parse_imsi(PyObject *mod, PyObject *raw)
{
    RawField f = field_of(raw);
    int mcc = 0;
    long long v = f.kind != F_STR ? IDENT_DECLINE : ident_imsi(f.s, f.n, &mcc);
    if (v == IDENT_DECLINE)
        return Py_NewRef(Py_None);
    return Py_BuildValue("(Li)", v, mcc);
}

static PyObject *
mod_parse_slot(PyObject *mod, PyObject *raw)
{
    RawField f = field_of(raw);
    long long v = raw_slot(&f);
    return v == 0 ? Py_NewRef(Py_None) : PyLong_FromLongLong(v);
}

static PyObject *
mod_parse_time(PyObject *mod, PyObject *raw)
{
    RawField f = field_of(raw);
    long long v = raw_time(&f);
    return v == 0 ? Py_NewRef(Py_None) : PyLong_FromLongLong(v);
}

PyMethodDef eir_fp_parse_methods[] = {
    {"parse_imei", mod_parse_imei, METH_VARARGS,
     "parse_imei(raw, deny_invalid_check_digit, deny_test_imeis): the core, -1 (malformed) or None (Python's)."},
    {"parse_msisdn", mod_parse_msisdn, METH_VARARGS,
     "parse_msisdn(raw, country_code, national_mobile_length): (msisdn, is_home) or None (Python's)."},
    {"parse_imsi", mod_parse_imsi, METH_O, "parse_imsi(raw): (imsi, its MCC as an int), or None (Python's)."},
    {"parse_slot", mod_parse_slot, METH_O, "parse_slot(raw): the slot, or None (Python's)."},
    {"parse_time", mod_parse_time, METH_O, "parse_time(raw): epoch seconds, or None (Python's)."},
    {NULL, NULL, 0, NULL},
};
