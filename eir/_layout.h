/* eir/_layout.h: reading the index's data in place (included by eir/_fastpath.c).
 *
 * The common attach reads the IMEI's cell in the index's PreshMap and the device's flags and owner in two
 * array.array columns. Through the Python API each read allocates an int and dispatches through a
 * __getitem__; read in place, the addresses are known early enough to prefetch them (see decide_common).
 * Both readers fall back to the Python API when the object is not laid out as expected.
 */
#ifndef EIR_LAYOUT_H
#define EIR_LAYOUT_H

#include <ctype.h>
#include <string.h>
#include <sys/mman.h>

#include "_fastpath.h"

#if defined(__linux__) && defined(MADV_HUGEPAGE) && !defined(MADV_COLLAPSE)
#define MADV_COLLAPSE 25 /* Linux 6.1+; older kernels refuse it (EINVAL), which is harmless */
#endif

/* Back the 2 MB-aligned interior of [p, p + n) with transparent huge pages: the index's tables are
 * probed at random over tens of MB, so with 4 kB pages nearly every probe also misses the TLB (a page
 * walk, itself several memory reads under virtualisation). MADV_HUGEPAGE lets the kernel use huge pages
 * where the system's THP mode is "madvise"; MADV_COLLAPSE converts the pages already there. Both are
 * hints on memory the caller holds: contents and ownership do not change, and a refusal is ignored. */
static inline void
advise_huge(const void *p, size_t n)
{
#if defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1), b = ((uintptr_t)p + n) & ~(huge - 1);
    if (b <= a)
        return;
    (void)madvise((void *)a, b - a, MADV_HUGEPAGE);
#if defined(MADV_COLLAPSE)
    (void)madvise((void *)a, b - a, MADV_COLLAPSE);
#endif
#endif
}

/* advise_huge on the memory of a buffer-protocol object (an array.array column). */
static inline void
advise_huge_buffer(PyObject *o)
{
    Py_buffer v;
    if (!PyObject_CheckBuffer(o) || PyObject_GetBuffer(o, &v, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return;
    }
    advise_huge(v.buf, (size_t)v.len);
    PyBuffer_Release(&v);
}

/* preshed's PreshMap (preshed/maps.pxd), read directly: a Cython object whose MapStruct is an array of
 * (key, value) cells probed linearly from key & (length - 1), key 0 empty, 1 deleted. FastCheck_init uses
 * it only when the type, the object size and a sample of entries agree with that layout; otherwise every
 * lookup goes through PyObject_GetItem as before. */
typedef struct {
    uint64_t key;
    void *value;
} PreshCell;

typedef struct {
    PreshCell *cells;
    void *value_for_empty_key;
    void *value_for_del_key;
    uint64_t length;
    uint64_t filled;
    int is_empty_key_set;
    int is_del_key_set;
} PreshMapStruct;

typedef struct eir_presh_map {
    PyObject_HEAD
    void *vtab;
    PreshMapStruct *c_map;
    PyObject *mem;
} PreshMapObject;


/* The value of a PreshMap key (>= 2): 1 found (*value), 0 not. As preshed's _find_cell. */
static inline int
presh_get(const PreshMapObject *m, uint64_t key, uint64_t *value)
{
    const PreshMapStruct *s = m->c_map;
    uint64_t mask = s->length - 1;
    for (uint64_t i = key & mask;; i = (i + 1) & mask) {
        const PreshCell *c = &s->cells[i];
        if (c->key == key) {
            *value = (uint64_t)(uintptr_t)c->value;
            return 1;
        }
        if (c->key == 0)
            return 0;
    }
}

/* Whether m can be read with presh_get: a PreshMap of the expected size whose first entries (and a key
 * it does not hold) read the same both ways. 1 yes, 0 no, -1 error. */
static inline int
presh_direct(PyObject *m)
{
    if (strcmp(Py_TYPE(m)->tp_name, "preshed.maps.PreshMap") != 0
            || Py_TYPE(m)->tp_basicsize != (Py_ssize_t)sizeof(PreshMapObject))
        return 0;
    const PreshMapStruct *s = ((PreshMapObject *)m)->c_map;
    if (s == NULL || s->cells == NULL || s->length == 0 || (s->length & (s->length - 1)) != 0)
        return 0;
    PyObject *items = PyObject_CallMethod(m, "items", NULL);
    if (items == NULL)
        return -1;
    PyObject *it = PyObject_GetIter(items);
    Py_DECREF(items);
    if (it == NULL)
        return -1;
    int ok = 1;
    PyObject *kv;
    for (int n = 0; ok && n < 16 && (kv = PyIter_Next(it)) != NULL; n++) {
        unsigned long long k = 0, v = 0;
        uint64_t got = 0;
        ok = PyArg_ParseTuple(kv, "KK", &k, &v) && (k < 2 || (presh_get((PreshMapObject *)m, k, &got) && got == v));
        Py_DECREF(kv);
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return -1;
    /* a key that is not there (the table is at most half full: one of these is missing) */
    for (uint64_t k = 2; ok && k < 64; k++) {
        uint64_t got;
        if (presh_get((PreshMapObject *)m, k, &got))
            continue;
        PyObject *ko = PyLong_FromUnsignedLongLong(k);
        PyObject *v = ko == NULL ? NULL : PyObject_GetItem(m, ko);
        Py_XDECREF(ko);
        if (v == NULL)
            return -1;
        ok = v == Py_None;
        Py_DECREF(v);
        break;
    }
    return ok;
}

/* The buffer layout of an integer column (array.array of a fixed-size integer type), or size 0. */
static inline Column
column_of(PyObject *arr)
{
    Column c = {0, 0};
    Py_buffer v;
    if (!PyObject_CheckBuffer(arr) || PyObject_GetBuffer(arr, &v, PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        return c;
    }
    const char *f = v.format != NULL ? v.format : "B";
    if (f[0] == '@' || f[0] == '=' || f[0] == '<')
        f++;
    if (strlen(f) == 1 && strchr("bBhHiIlLqQ", f[0]) != NULL
            && (v.itemsize == 1 || v.itemsize == 2 || v.itemsize == 4 || v.itemsize == 8)) {
        c.size = (int)v.itemsize;
        c.is_signed = islower((unsigned char)f[0]) != 0;
    }
    PyBuffer_Release(&v);
    return c;
}

/* array[dev] as a long long (the arrays hold non-negative 64-bit values). */
static inline int
item_ll(PyObject *seq, Py_ssize_t i, long long *out)
{
    PyObject *v = PySequence_GetItem(seq, i);
    if (v == NULL)
        return -1;
    int overflow = 0;
    *out = PyLong_AsLongLongAndOverflow(v, &overflow);
    Py_DECREF(v);
    if (overflow) {
        *out = -1; /* beyond int64: no MSISDN is; compares unequal to any subscriber */
        return 0;
    }
    if (*out == -1 && PyErr_Occurred())
        return -1;
    return 0;
}

/* An integer column's item at p (the columns hold non-negative 64-bit values; an unsigned one beyond int64
 * reads as -1, which no MSISDN equals). */
static inline long long
column_item(const Column *col, const char *p)
{
    switch (col->size * (col->is_signed ? -1 : 1)) {
    case 1: return *(const uint8_t *)p;
    case -1: return *(const int8_t *)p;
    case 2: return *(const uint16_t *)p;
    case -2: return *(const int16_t *)p;
    case 4: return *(const uint32_t *)p;
    case -4: return *(const int32_t *)p;
    case 8: { uint64_t u = *(const uint64_t *)p; return u > (uint64_t)LLONG_MAX ? -1 : (long long)u; }
    default: return *(const int64_t *)p;
    }
}

/* The device's flags and owner: from the columns' buffers, both fetched before either is read (two
 * misses in parallel), or as items when a column is not a plain integer buffer. With flags NULL only the
 * two items are prefetched (plain buffers only; a later attach's, eir_fp_prefetch). 0 done, -1 error. */
static inline int
device_cols(PyObject *farr, const Column *fc, PyObject *oarr, const Column *oc, Py_ssize_t dev, long long *flags,
            long long *owner)
{
    if (fc->size == 0 || oc->size == 0) {
        if (flags == NULL)
            return 0;
        if (item_ll(farr, dev, flags) < 0)
            return -1;
        return item_ll(oarr, dev, owner);
    }
    Py_buffer fv, ov;
    if (PyObject_GetBuffer(farr, &fv, PyBUF_SIMPLE) < 0)
        return -1;
    if (PyObject_GetBuffer(oarr, &ov, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&fv);
        return -1;
    }
    int rc = -1;
    if (dev < 0 || (dev + 1) * fc->size > fv.len || (dev + 1) * oc->size > ov.len) {
        PyErr_SetString(PyExc_IndexError, "device id out of range");
    } else {
        const char *fp = (const char *)fv.buf + dev * fc->size, *op = (const char *)ov.buf + dev * oc->size;
        __builtin_prefetch(op);
        if (flags == NULL) {
            __builtin_prefetch(fp);
        } else {
            *flags = column_item(fc, fp);
            *owner = column_item(oc, op);
        }
        rc = 0;
    }
    PyBuffer_Release(&ov);
    PyBuffer_Release(&fv);
    return rc;
}

/* One integer column's item i (as column_item; by PySequence_GetItem when not a plain buffer). */
static inline int
column_ll(PyObject *arr, const Column *col, Py_ssize_t i, long long *out)
{
    if (col->size == 0)
        return item_ll(arr, i, out);
    Py_buffer v;
    if (PyObject_GetBuffer(arr, &v, PyBUF_SIMPLE) < 0)
        return -1;
    int rc = -1;
    if (i < 0 || (i + 1) * col->size > v.len) {
        PyErr_SetString(PyExc_IndexError, "column index out of range");
    } else {
        *out = column_item(col, (const char *)v.buf + i * col->size);
        rc = 0;
    }
    PyBuffer_Release(&v);
    return rc;
}

#endif /* EIR_LAYOUT_H */
