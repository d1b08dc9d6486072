/* eir/_histable.h: the observation histories as one open-addressing table (included by eir/_fastpath.c).
 *
 * Histories is a mapping IMEI core -> packed int | History with the values MemoryState.histories holds
 * (eir/state.py), stored in one flat array of 32-byte cells instead of a dict: a packed history lives in
 * its cell as C fields (subscriber key, first, last, count), any other value as an object reference.
 * A dict lookup of the common attach touches its index, its entry, the key object and the value object
 * (four cache misses on a table of a million IMEIs) and replaces the value by a new int; a cell is one
 * miss, updated in place, and the accelerator prefetches it before it needs it. Reading a packed cell
 * from Python builds the same int the dict held; writing an int stores its fields when it has the packed
 * layout (count >= 1, subscriber key within 64 bits), the int itself otherwise - so every reader and
 * writer of MemoryState.histories (the SQLite journal, pruning, start-up load, the tests) sees the same
 * values as with a dict. Iteration is in table order, not insertion order (nobody relies on it).
 */
#ifndef EIR_HISTABLE_H
#define EIR_HISTABLE_H

#include <string.h>
#include <sys/mman.h>

#include "_fastpath.h"

#if PY_VERSION_HEX >= 0x030D0000
#define HT_AS_BYTES(v, b, n) _PyLong_AsByteArray((PyLongObject *)(v), (b), (n), 1, 0, 1)
#else
#define HT_AS_BYTES(v, b, n) _PyLong_AsByteArray((PyLongObject *)(v), (b), (n), 1, 0)
#endif

#define HT_COUNT_MASK ((1ULL << 40) - 1)
#define HT_MIN_CAPACITY 64
/* Tables from this size on are mapped with transparent huge pages where the kernel offers them on request
 * (madvise mode): one TLB entry per 2 MB instead of per 4 kB on a randomly probed table. */
#define HT_HUGE_BYTES (4u << 20)

typedef struct {
    uint64_t key;       /* IMEI core + 1; 0: an empty cell */
    union {
        uint64_t skey;  /* packed form: msisdn << SLOT_BITS | slot */
        PyObject *obj;  /* any other value (a History), owned */
    } u;
    uint64_t count;     /* packed form: attaches (1..2**40-1); 0: the value is u.obj */
    uint32_t first, last;
} HCell;

typedef struct eir_histories {
    PyObject_HEAD
    HCell *cells;
    size_t mask;        /* capacity - 1; the capacity is a power of two */
    int shift;          /* 64 - log2(capacity): the slot is the top bits of the mixed key */
    int mapped;         /* cells come from mmap (huge), not PyMem_RawCalloc */
    Py_ssize_t used;
    Py_ssize_t objects; /* cells holding an object (GC traversal scans only when there are some) */
} Histories;

static inline size_t
ht_slot(const Histories *t, uint64_t key)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ULL) >> t->shift);
}

/* The cell of key, or the empty cell where it would go (the table always has empty cells). */
static inline HCell *
ht_find(const Histories *t, uint64_t key)
{
    size_t i = ht_slot(t, key);
    for (;;) {
        HCell *c = &t->cells[i];
        if (c->key == key || c->key == 0)
            return c;
        i = (i + 1) & t->mask;
    }
}

static inline void
ht_prefetch(const Histories *t, uint64_t key)
{
    __builtin_prefetch(&t->cells[ht_slot(t, key)], 1);
}

static inline HCell *
ht_alloc(size_t capacity, int *mapped)
{
    size_t bytes = capacity * sizeof(HCell);
#if defined(MAP_ANONYMOUS) && defined(MADV_HUGEPAGE)
    if (bytes >= HT_HUGE_BYTES) {
        void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED) {
            (void)madvise(p, bytes, MADV_HUGEPAGE); /* a hint: refused or not, the memory is usable */
            *mapped = 1;
            return (HCell *)p; /* zero-filled */
        }
    }
#endif
    *mapped = 0;
    return (HCell *)PyMem_RawCalloc(capacity, sizeof(HCell));
}

static inline void
ht_free(HCell *cells, size_t capacity, int mapped)
{
    if (cells == NULL)
        return;
#if defined(MAP_ANONYMOUS) && defined(MADV_HUGEPAGE)
    if (mapped) {
        munmap(cells, capacity * sizeof(HCell));
        return;
    }
#endif
    PyMem_RawFree(cells);
}

static inline int
ht_resize(Histories *t, size_t capacity)
{
    int mapped;
    HCell *cells = ht_alloc(capacity, &mapped);
    if (cells == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    HCell *old = t->cells;
    size_t old_cap = old == NULL ? 0 : t->mask + 1;
    int old_mapped = t->mapped;
    t->cells = cells;
    t->mask = capacity - 1;
    t->mapped = mapped;
    int bits = 0;
    while (((size_t)1 << bits) < capacity)
        bits++;
    t->shift = 64 - bits;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].key != 0)
            *ht_find(t, old[i].key) = old[i];
    ht_free(old, old_cap, old_mapped);
    return 0;
}

/* A new key's cell: grows the table first when it would be more than half full. */
static inline HCell *
ht_insert_cell(Histories *t, uint64_t key)
{
    if ((size_t)(t->used + 1) * 2 > t->mask + 1 && ht_resize(t, (t->mask + 1) * 2) < 0)
        return NULL;
    HCell *c = ht_find(t, key);
    c->key = key;
    t->used++;
    return c;
}

/* Empty cell c (linear probing without tombstones: later cells of the run move back into the gap). */
static inline void
ht_remove_cell(Histories *t, HCell *c)
{
    size_t i = (size_t)(c - t->cells), j = i;
    for (;;) {
        j = (j + 1) & t->mask;
        HCell *n = &t->cells[j];
        if (n->key == 0)
            break;
        size_t h = ht_slot(t, n->key);
        /* n stays when its home slot h lies cyclically in (i, j] */
        int stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
        if (!stays) {
            t->cells[i] = *n;
            i = j;
        }
    }
    memset(&t->cells[i], 0, sizeof(HCell));
    t->used--;
}

/* The table key of a Python key: 1 with *out set, 0 not an IMEI core (an int 0 <= k < 2**63 - 1), -1 error. */
static inline int
ht_key(PyObject *k, uint64_t *out)
{
    if (!PyLong_Check(k))
        return 0;
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(k, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow || v < 0 || v == LLONG_MAX)
        return 0;
    *out = (uint64_t)v + 1;
    return 1;
}

/* The value of a cell as Python sees it (a new reference). */
static inline PyObject *
ht_value(const HCell *c)
{
    if (c->count == 0)
        return Py_NewRef(c->u.obj);
    /* key << 104 | count << 64 | first << 32 | last, little-endian in 24 bytes */
    unsigned char b[24];
    uint64_t w0 = ((uint64_t)c->first << 32) | c->last;
    uint64_t w1 = c->count | (c->u.skey << 40);
    uint64_t w2 = c->u.skey >> 24;
    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)(w0 >> (8 * i));
        b[8 + i] = (unsigned char)(w1 >> (8 * i));
        b[16 + i] = (unsigned char)(w2 >> (8 * i));
    }
    return _PyLong_FromByteArray(b, sizeof b, 1, 0);
}

/* Store v in cell c (whose previous value, if any, the caller has released). */
static inline int
ht_store(Histories *t, HCell *c, PyObject *v)
{
    if (PyLong_CheckExact(v) && _PyLong_Sign(v) > 0) {
        unsigned char b[24];
        if (HT_AS_BYTES(v, b, sizeof b) == 0) {
            uint64_t w[3] = {0, 0, 0};
            for (int i = 0; i < 24; i++)
                w[i / 8] |= (uint64_t)b[i] << (8 * (i % 8));
            uint64_t count = w[1] & HT_COUNT_MASK;
            /* the subscriber key (bits 104..) must fit in 64 bits: bits 168.. clear */
            if (count != 0 && (w[2] >> 40) == 0) {
                c->first = (uint32_t)(w[0] >> 32);
                c->last = (uint32_t)w[0];
                c->count = count;
                c->u.skey = (w[1] >> 40) | (w[2] << 24);
                return 0;
            }
        } else if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear(); /* wider than 192 bits: kept as the int itself */
        } else {
            return -1;
        }
    }
    c->count = 0;
    c->u.obj = Py_NewRef(v);
    t->objects++;
    return 0;
}

static inline int
ht_ready(Histories *t)
{
    if (t->cells == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* --- the accelerator's use: the packed update of MemoryState.observe in place ------------------------ */

/* MemoryState.observe on a table for a packed-range attach (0 < msisdn < 2**50, 0 <= slot < 32): 0 done,
 * 1 leave it to Python (a History, another subscriber, a time beyond 32 bits, a full count), -1 error. */
static inline int
ht_observe(Histories *t, long long imei, long long msisdn, long long slot, long long t_)
{
    if (ht_ready(t) < 0)
        return -1;
    uint64_t key = (uint64_t)imei + 1, skey = ((uint64_t)msisdn << SLOT_BITS) | (uint64_t)slot;
    HCell *c = ht_find(t, key);
    if (c->key == 0) {
        if (t_ < 0 || t_ > TIME_MASK)
            return 1;
        if ((c = ht_insert_cell(t, key)) == NULL)
            return -1;
        c->u.skey = skey;
        c->count = 1;
        c->first = c->last = (uint32_t)t_;
        return 0;
    }
    if (c->count == 0 || c->u.skey != skey || t_ > TIME_MASK || c->count == HT_COUNT_MASK)
        return 1;
    c->count++;
    if (t_ > (long long)c->last)
        c->last = (uint32_t)t_;
    return 0;
}

#define MAX_OBSERVATIONS 32 /* eir.state.MAX_OBSERVATIONS_PER_IMEI (checked by eir.state) */

/* eir.state.observe_history on a History h for the attach (skey, t), when it needs no eviction (the
 * (subscriber, slot) is there, or there is room for it): 0 done, 1 leave it to Python (a full History,
 * a shape eir.state does not make), -1 error. Everything is checked before anything is changed. */
static inline int
history_observe(PyObject *h, uint64_t skey, long long t)
{
    static PyObject *s_seen, *s_last_time, *s_last_msisdn_h;
    if (s_seen == NULL && ((s_seen = PyUnicode_InternFromString("seen")) == NULL
            || (s_last_time = PyUnicode_InternFromString("last_time")) == NULL
            || (s_last_msisdn_h = PyUnicode_InternFromString("last_msisdn")) == NULL))
        return -1;
    int rc = 1;
    PyObject *seen = NULL, *lt = NULL, *key = NULL, *tv = NULL, *sub = NULL, *newrec = NULL;
    long long last_time, last = 0, count = 0;
    if ((seen = PyObject_GetAttr(h, s_seen)) == NULL || (lt = PyObject_GetAttr(h, s_last_time)) == NULL)
        goto error;
    if (!PyDict_CheckExact(seen) || !PyLong_CheckExact(lt))
        goto out;
    int overflow;
    last_time = PyLong_AsLongLongAndOverflow(lt, &overflow);
    if (overflow || (last_time == -1 && PyErr_Occurred()))
        goto out_clear;
    if ((key = PyLong_FromUnsignedLongLong(skey)) == NULL || (tv = PyLong_FromLongLong(t)) == NULL)
        goto error;
    PyObject *rec = PyDict_GetItemWithError(seen, key); /* borrowed */
    if (rec == NULL) {
        if (PyErr_Occurred())
            goto error;
        if (PyDict_GET_SIZE(seen) >= MAX_OBSERVATIONS)
            goto out; /* the oldest entry goes: Python */
    } else {
        if (!PyList_CheckExact(rec) || PyList_GET_SIZE(rec) != 3 || !PyLong_CheckExact(PyList_GET_ITEM(rec, 1))
                || !PyLong_CheckExact(PyList_GET_ITEM(rec, 2)))
            goto out;
        last = PyLong_AsLongLongAndOverflow(PyList_GET_ITEM(rec, 1), &overflow);
        if (overflow || (last == -1 && PyErr_Occurred()))
            goto out_clear;
        count = PyLong_AsLongLongAndOverflow(PyList_GET_ITEM(rec, 2), &overflow);
        if (overflow || (count == -1 && PyErr_Occurred()) || count == LLONG_MAX)
            goto out_clear;
    }
    /* checked: now change it */
    if (rec == NULL) {
        if ((newrec = PyList_New(3)) == NULL)
            goto error;
        PyList_SET_ITEM(newrec, 0, Py_NewRef(tv));
        PyList_SET_ITEM(newrec, 1, Py_NewRef(tv));
        PyList_SET_ITEM(newrec, 2, PyLong_FromLong(1));
        if (PyDict_SetItem(seen, key, newrec) < 0)
            goto error;
    } else {
        PyObject *c = PyLong_FromLongLong(count + 1);
        if (c == NULL)
            goto error;
        if (t > last)
            PyList_SetItem(rec, 1, Py_NewRef(tv));
        PyList_SetItem(rec, 2, c);
    }
    if (t >= last_time) {
        if ((sub = PyLong_FromUnsignedLongLong(skey >> SLOT_BITS)) == NULL
                || PyObject_SetAttr(h, s_last_msisdn_h, sub) < 0 || PyObject_SetAttr(h, s_last_time, tv) < 0)
            goto error;
    }
    rc = 0;
    goto out;
out_clear:
    PyErr_Clear();
    goto out;
error:
    rc = -1;
out:
    Py_XDECREF(seen);
    Py_XDECREF(lt);
    Py_XDECREF(key);
    Py_XDECREF(tv);
    Py_XDECREF(sub);
    Py_XDECREF(newrec);
    return rc;
}

/* MemoryState.observe on a table, whatever the form (packed in place, or a History of history_type
 * updated by history_observe): 0 done, 1 leave it to Python, -1 error. */
static inline int
ht_observe_any(Histories *t, long long imei, long long msisdn, long long slot, long long t_, PyObject *history_type)
{
    int rc = ht_observe(t, imei, msisdn, slot, t_);
    if (rc != 1)
        return rc;
    const HCell *c = ht_find(t, (uint64_t)imei + 1);
    if (c->key == 0 || c->count != 0 || history_type == NULL || (PyObject *)Py_TYPE(c->u.obj) != history_type)
        return 1;
    PyObject *h = Py_NewRef(c->u.obj); /* the History may leave the table while Python code runs */
    rc = history_observe(h, ((uint64_t)msisdn << SLOT_BITS) | (uint64_t)slot, t_);
    Py_DECREF(h);
    return rc;
}

#endif /* EIR_HISTABLE_H */
