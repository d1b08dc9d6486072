/* eir._replayio: the CSV edge of `eir replay` in C (optional; eir/replay_fast.py drives it).
 *
 * A Replayer reads CSV bytes chunk by chunk. For each well-formed line (printable ASCII, no quote, no
 * carriage return except the CRLF terminator) it splits the fields, parses the canonical UTC time
 * `YYYY-MM-DDTHH:MM:SSZ`, and hands the fields to the engine's C accelerator (eir._fastpath
 * FastCheck.decide_raw, which parses the identifiers with eir/_ident.h): it decides the common attach, or
 * returns the Query of any other that Engine.check then decides; a row whose values it does not parse
 * goes to the Python `row` callable (build_query + Engine.check, the reference). Then the edge counts the
 * decision and writes its JSON line itself (the normalised MSISDN of a row decided in the accelerator
 * comes from the same eir/_ident.h parser).
 * Everything unusual goes back to Python, which does what the pure-Python replay (eir/replay.py) does:
 *  - a line with other bytes (control, non-ASCII): `line_fallback` parses it with the csv module;
 *  - a line with a quote or a lone CR (a CSV record may span lines): feed() stops before it and sets
 *    `stopped`; the caller reads the rest of the file with the csv module;
 *  - a time in another form: passed to `row` as text (eir.replay.TimeParser);
 *  - a JSON line that needs escaping or an unusual value: `format_line` writes it.
 * tests/test_replay_fast.py checks that the output equals the pure-Python replay's, byte for byte.
 */
#include "_replayio.h"
#include "_replayio_text.h"

#include <string.h>

PyObject *rio_s_time, *rio_s_msisdn, *rio_s_slot, *rio_s_reason, *rio_s_verdict, *rio_s_deadline;

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
    if (self->decide_raw != Py_None && t >= 0 && plain_ascii(start[ci], stop[ci] - start[ci])) {
        /* The accelerator parses the fields: the common attach's Decision, or the Query of another */
        PyObject *raw[5] = {args[2], args[3], args[4], args[1], args[5]};
        res = PyObject_Vectorcall(self->decide_raw, raw, 5, NULL);
        if (res == NULL)
            goto done;
        if (Py_IS_TYPE(res, (PyTypeObject *)self->query_type)) {
            PyObject *d = PyObject_CallOneArg(self->check, res);
            if (d == NULL)
                goto done;
            rc = rio_decided(self, res, d, start[ci], stop[ci] - start[ci], args[2]);
            Py_DECREF(d);
            goto done;
        }
        if (res != Py_None) {
            rc = rio_raw_decided(self, res, t, start[ci], stop[ci] - start[ci], cm < 0 ? NULL : start[cm],
                                 cm < 0 ? 0 : stop[cm] - start[cm], cs < 0 ? NULL : start[cs],
                                 cs < 0 ? 0 : stop[cs] - start[cs]);
            goto done;
        }
        Py_CLEAR(res); /* values it does not parse: build_query's */
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
    rc = rio_decided(self, PyTuple_GET_ITEM(res, 0), PyTuple_GET_ITEM(res, 1), start[ci], stop[ci] - start[ci],
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
            rc = rio_decided(self, PyTuple_GET_ITEM(res, 1), PyTuple_GET_ITEM(res, 2), NULL, 0,
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
    if (rio_flush(self) < 0)
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
    Py_VISIT(self->decide_raw);
    Py_VISIT(self->check);
    Py_VISIT(self->query_type);
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
    Py_CLEAR(self->decide_raw);
    Py_CLEAR(self->check);
    Py_CLEAR(self->query_type);
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
                             "write", "allow", "warn", "warned", "denied", "decide_raw", "check", "query_type",
                             "country_code", "national_mobile_length", NULL};
    PyObject *columns, *row, *line_fallback, *bad_width, *format_line, *tail_of, *write, *allow, *warn;
    PyObject *warned, *denied, *decide_raw = Py_None, *check = Py_None, *query_type = Py_None;
    const char *cc = "";
    Py_ssize_t cc_len = 0, nml = 0;
    int width;
    if (self->keep != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Replayer is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!iOOOOOOOOO!O!|$OOOs#n", kwlist, &PyTuple_Type, &columns,
                                     &width, &row, &line_fallback, &bad_width, &format_line, &tail_of, &write,
                                     &allow, &warn, &PySet_Type, &warned, &PySet_Type, &denied, &decide_raw,
                                     &check, &query_type, &cc, &cc_len, &nml))
        return -1;
    if (decide_raw != Py_None && (!PyType_Check(query_type) || check == Py_None)) {
        PyErr_SetString(PyExc_TypeError, "decide_raw needs check and query_type");
        return -1;
    }
    if (cc_len > IDENT_MAX_CC || nml < 0)
        decide_raw = Py_None; /* a numbering plan eir/_ident.h does not parse: decide_raw declines anyway */
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
    self->decide_raw = Py_NewRef(decide_raw);
    self->check = Py_NewRef(check);
    self->query_type = Py_NewRef(query_type);
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
    rio_s_time = PyUnicode_InternFromString("time");
    rio_s_msisdn = PyUnicode_InternFromString("msisdn");
    rio_s_slot = PyUnicode_InternFromString("slot");
    rio_s_reason = PyUnicode_InternFromString("reason");
    rio_s_verdict = PyUnicode_InternFromString("verdict");
    rio_s_deadline = PyUnicode_InternFromString("deadline");
    if (!rio_s_time || !rio_s_msisdn || !rio_s_slot || !rio_s_reason || !rio_s_verdict || !rio_s_deadline)
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
    if (PyModule_AddIntConstant(m, "ABI", EIR_REPLAYIO_ABI) < 0
            || PyModule_AddIntConstant(m, "MIN_EPOCH", MIN_EPOCH) < 0 || PyModule_AddIntConstant(m, "MAX_EPOCH", MAX_EPOCH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
