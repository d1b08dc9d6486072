/* eir/_histype.h: the Python mapping type over the table of eir/_histable.h (included by eir/_fastpath.c).
 *
 * eir._fastpath.Histories behaves as the dict MemoryState.histories was (tests/test_histable.py holds it to
 * one): get / [] / in / len / del / pop / keys / values / items / clear / == against a mapping. keys,
 * values and items return lists (snapshots): the store's pruning changes the table while it walks them.
 */
#ifndef EIR_HISTYPE_H
#define EIR_HISTYPE_H

#include "_histable.h"

static PyTypeObject HistoriesType;

static PyObject *
Histories_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (!_PyArg_NoKeywords("Histories", kwds) || !_PyArg_NoPositional("Histories", args))
        return NULL;
    Histories *t = (Histories *)type->tp_alloc(type, 0);
    if (t == NULL)
        return NULL;
    if (ht_resize(t, HT_MIN_CAPACITY) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    return (PyObject *)t;
}

static int
Histories_traverse(Histories *t, visitproc visit, void *arg)
{
    if (t->objects == 0 || t->cells == NULL)
        return 0;
    for (size_t i = 0; i <= t->mask; i++) {
        HCell *c = &t->cells[i];
        if (c->key != 0 && c->count == 0)
            Py_VISIT(c->u.obj);
    }
    return 0;
}

static void
ht_clear_all(Histories *t)
{
    if (t->cells == NULL)
        return;
    /* Drop the references only after the table is consistent (a History's finalizer could run code). */
    size_t cap = t->mask + 1;
    HCell *old = t->cells;
    int old_mapped = t->mapped;
    Py_ssize_t objects = t->objects;
    t->cells = NULL;
    t->used = 0;
    t->objects = 0;
    if (ht_resize(t, HT_MIN_CAPACITY) < 0)
        PyErr_Clear(); /* cells stay NULL: every operation below refuses with MemoryError */
    for (size_t i = 0; objects && i < cap; i++)
        if (old[i].key != 0 && old[i].count == 0) {
            Py_DECREF(old[i].u.obj);
            objects--;
        }
    ht_free(old, cap, old_mapped);
}

static int
Histories_tp_clear(Histories *t)
{
    ht_clear_all(t);
    return 0;
}

static void
Histories_dealloc(Histories *t)
{
    PyObject_GC_UnTrack(t);
    if (t->cells != NULL) {
        for (size_t i = 0; t->objects && i <= t->mask; i++)
            if (t->cells[i].key != 0 && t->cells[i].count == 0) {
                Py_DECREF(t->cells[i].u.obj);
                t->objects--;
            }
        ht_free(t->cells, t->mask + 1, t->mapped);
    }
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static Py_ssize_t
Histories_len(Histories *t)
{
    return t->used;
}

/* The cell of a Python key, or NULL (not present: no error set unless rc < 0). */
static HCell *
ht_lookup(Histories *t, PyObject *k, int *rc)
{
    uint64_t key;
    *rc = ht_key(k, &key);
    if (*rc <= 0 || t->cells == NULL)
        return NULL;
    HCell *c = ht_find(t, key);
    return c->key == 0 ? NULL : c;
}

static PyObject *
Histories_subscript(Histories *t, PyObject *k)
{
    int rc;
    HCell *c = ht_lookup(t, k, &rc);
    if (c == NULL) {
        if (rc >= 0)
            PyErr_SetObject(PyExc_KeyError, k);
        return NULL;
    }
    return ht_value(c);
}

static int
Histories_ass_subscript(Histories *t, PyObject *k, PyObject *v)
{
    uint64_t key;
    int rc = ht_key(k, &key);
    if (rc < 0 || ht_ready(t) < 0)
        return -1;
    HCell *c = rc ? ht_find(t, key) : NULL;
    if (v == NULL) {
        if (c == NULL || c->key == 0) {
            PyErr_SetObject(PyExc_KeyError, k);
            return -1;
        }
        PyObject *old = c->count == 0 ? c->u.obj : NULL;
        if (old != NULL)
            t->objects--;
        ht_remove_cell(t, c);
        Py_XDECREF(old); /* after the table is consistent */
        return 0;
    }
    if (c == NULL) {
        PyErr_Format(PyExc_TypeError, "Histories keys are IMEI cores (ints >= 0), not %R", k);
        return -1;
    }
    PyObject *old = NULL;
    if (c->key == 0) {
        if ((c = ht_insert_cell(t, key)) == NULL)
            return -1;
    } else if (c->count == 0) {
        old = c->u.obj;
        t->objects--;
    }
    int err = ht_store(t, c, v);
    if (err < 0) {
        /* keep the table consistent: the cell holds None rather than a stale reference */
        c->count = 0;
        c->u.obj = Py_NewRef(Py_None);
        t->objects++;
    }
    Py_XDECREF(old);
    return err;
}

static int
Histories_contains(Histories *t, PyObject *k)
{
    int rc;
    HCell *c = ht_lookup(t, k, &rc);
    return rc < 0 ? -1 : c != NULL;
}

static PyObject *
Histories_get(Histories *t, PyObject *const *args, Py_ssize_t nargs)
{
    if (!_PyArg_CheckPositional("get", nargs, 1, 2))
        return NULL;
    int rc;
    HCell *c = ht_lookup(t, args[0], &rc);
    if (c != NULL)
        return ht_value(c);
    if (rc < 0)
        return NULL;
    return Py_NewRef(nargs > 1 ? args[1] : Py_None);
}

static PyObject *
Histories_pop(Histories *t, PyObject *const *args, Py_ssize_t nargs)
{
    if (!_PyArg_CheckPositional("pop", nargs, 1, 2))
        return NULL;
    int rc;
    HCell *c = ht_lookup(t, args[0], &rc);
    if (c == NULL) {
        if (rc < 0)
            return NULL;
        if (nargs > 1)
            return Py_NewRef(args[1]);
        PyErr_SetObject(PyExc_KeyError, args[0]);
        return NULL;
    }
    PyObject *v = ht_value(c);
    if (v == NULL)
        return NULL;
    if (c->count == 0) {
        Py_DECREF(c->u.obj); /* v holds it */
        t->objects--;
    }
    ht_remove_cell(t, c);
    return v;
}

/* keys (what 0), values (1) or items (2), as a list: a snapshot, safe to change the table while iterating. */
static PyObject *
ht_list(Histories *t, int what)
{
    PyObject *out = PyList_New(t->used);
    if (out == NULL)
        return NULL;
    Py_ssize_t n = 0;
    for (size_t i = 0; t->cells != NULL && i <= t->mask && n < t->used; i++) {
        HCell *c = &t->cells[i];
        if (c->key == 0)
            continue;
        PyObject *k = NULL, *v = NULL, *o;
        if (what != 1 && (k = PyLong_FromUnsignedLongLong(c->key - 1)) == NULL)
            goto error;
        if (what != 0 && (v = ht_value(c)) == NULL) {
            Py_XDECREF(k);
            goto error;
        }
        if (what == 2) {
            o = PyTuple_Pack(2, k, v);
            Py_DECREF(k);
            Py_DECREF(v);
            if (o == NULL)
                goto error;
        } else {
            o = what == 0 ? k : v;
        }
        PyList_SET_ITEM(out, n++, o);
    }
    return out;
error:
    /* the unfilled items are NULL, which list deallocation skips */
    Py_DECREF(out);
    return NULL;
}

static PyObject *
Histories_keys(Histories *t, PyObject *unused)
{
    return ht_list(t, 0);
}

static PyObject *
Histories_values(Histories *t, PyObject *unused)
{
    return ht_list(t, 1);
}

static PyObject *
Histories_items(Histories *t, PyObject *unused)
{
    return ht_list(t, 2);
}

static PyObject *
Histories_iter(Histories *t)
{
    PyObject *keys = ht_list(t, 0);
    if (keys == NULL)
        return NULL;
    PyObject *it = PyObject_GetIter(keys);
    Py_DECREF(keys);
    return it;
}

static PyObject *
Histories_clear(Histories *t, PyObject *unused)
{
    ht_clear_all(t);
    if (ht_ready(t) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* The table as a dict (a new reference). */
static PyObject *
ht_dict(Histories *t)
{
    PyObject *items = ht_list(t, 2);
    if (items == NULL)
        return NULL;
    PyObject *d = PyDict_New();
    for (Py_ssize_t i = 0; d != NULL && i < PyList_GET_SIZE(items); i++) {
        PyObject *kv = PyList_GET_ITEM(items, i);
        if (PyDict_SetItem(d, PyTuple_GET_ITEM(kv, 0), PyTuple_GET_ITEM(kv, 1)) < 0)
            Py_CLEAR(d);
    }
    Py_DECREF(items);
    return d;
}

/* == and != as a dict of the same items compares (the tests compare histories with dicts). */
static PyObject *
Histories_richcompare(Histories *t, PyObject *other, int op)
{
    if (op != Py_EQ && op != Py_NE)
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *d = ht_dict(t);
    if (d == NULL)
        return NULL;
    PyObject *o = Py_IS_TYPE(other, &HistoriesType) ? ht_dict((Histories *)other) : Py_NewRef(other);
    PyObject *r = o == NULL ? NULL : PyObject_RichCompare(d, o, op);
    Py_XDECREF(o);
    Py_DECREF(d);
    return r;
}

static PyObject *
Histories_sizeof(Histories *t, PyObject *unused)
{
    size_t cells = t->cells == NULL ? 0 : (t->mask + 1) * sizeof(HCell);
    return PyLong_FromSize_t(sizeof(Histories) + cells);
}

/* observe(imei, msisdn, slot, t, History): MemoryState.observe done here when it can be (see
 * ht_observe_any); False when the caller must do it (nothing changed then). */
static PyObject *
Histories_observe(Histories *t, PyObject *const *args, Py_ssize_t nargs)
{
    if (!_PyArg_CheckPositional("observe", nargs, 5, 5))
        return NULL;
    long long v[4];
    for (int i = 0; i < 4; i++) {
        int overflow;
        if (!PyLong_CheckExact(args[i]))
            Py_RETURN_FALSE;
        v[i] = PyLong_AsLongLongAndOverflow(args[i], &overflow);
        if (overflow || (v[i] == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            Py_RETURN_FALSE;
        }
    }
    if (v[0] < 0 || v[0] == LLONG_MAX || v[1] <= 0 || v[1] >= (1LL << 50) || v[2] < 0 || v[2] >= (1 << SLOT_BITS))
        Py_RETURN_FALSE;
    int rc = ht_observe_any(t, v[0], v[1], v[2], v[3], args[4]);
    if (rc < 0)
        return NULL;
    return PyBool_FromLong(rc == 0);
}

static PyMethodDef Histories_methods[] = {
    {"observe", (PyCFunction)(void (*)(void))Histories_observe, METH_FASTCALL,
     "observe(imei, msisdn, slot, t, History): MemoryState.observe when done here, else False (untouched)."},
    {"get", (PyCFunction)(void (*)(void))Histories_get, METH_FASTCALL, "get(imei, default=None)"},
    {"pop", (PyCFunction)(void (*)(void))Histories_pop, METH_FASTCALL, "pop(imei[, default])"},
    {"keys", (PyCFunction)Histories_keys, METH_NOARGS, "The IMEI cores (a list, in table order)."},
    {"values", (PyCFunction)Histories_values, METH_NOARGS, "The values (a list, in table order)."},
    {"items", (PyCFunction)Histories_items, METH_NOARGS, "(imei, value) pairs (a list, in table order)."},
    {"clear", (PyCFunction)Histories_clear, METH_NOARGS, "Remove everything."},
    {"__sizeof__", (PyCFunction)Histories_sizeof, METH_NOARGS, "Bytes used, cells included."},
    {NULL, NULL, 0, NULL},
};

static PyMappingMethods Histories_as_mapping = {
    .mp_length = (lenfunc)Histories_len,
    .mp_subscript = (binaryfunc)Histories_subscript,
    .mp_ass_subscript = (objobjargproc)Histories_ass_subscript,
};

static PySequenceMethods Histories_as_sequence = {
    .sq_contains = (objobjproc)Histories_contains,
};

static PyTypeObject HistoriesType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "eir._fastpath.Histories",
    .tp_doc = "Observation histories (IMEI core -> packed int | History) in one C table (eir.state).",
    .tp_basicsize = sizeof(Histories),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = Histories_new,
    .tp_dealloc = (destructor)Histories_dealloc,
    .tp_traverse = (traverseproc)Histories_traverse,
    .tp_clear = (inquiry)Histories_tp_clear,
    .tp_iter = (getiterfunc)Histories_iter,
    .tp_richcompare = (richcmpfunc)Histories_richcompare,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_methods = Histories_methods,
    .tp_as_mapping = &Histories_as_mapping,
    .tp_as_sequence = &Histories_as_sequence,
};

#endif /* EIR_HISTYPE_H */
