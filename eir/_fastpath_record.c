/* eir._fastpath: recording an attach in the observation history, as Engine.check does after a decision
 * (MemoryState.observe), for the outcomes decided in C (eir/_fastpath.c).
 *
 * With the C table of histories (eir/_histable.h) the update is done in the table; over a dict of histories
 * (MemoryState(histories={})) the packed form (eir.state.packed_history) is updated here; anything else - a
 * History that needs an eviction, another subscriber on a packed history, a state that records more (the
 * SQLite journal) - calls the state's own observe.
 */
#include "_fastpath.h"

#include "_histable.h"

static PyObject *s_rec_slot, *s_rec_time, *py_time_mask, *py_count_one, *py_key_shift_obj;

/* The names and numbers recording uses (eir_fp_decide_init calls it). */
int
eir_fp_record_init(void)
{
    s_rec_slot = PyUnicode_InternFromString("slot");
    s_rec_time = PyUnicode_InternFromString("time");
    py_time_mask = PyLong_FromLongLong(TIME_MASK);
    py_key_shift_obj = PyLong_FromLong(KEY_SHIFT);
    PyObject *one = PyLong_FromLong(1);
    PyObject *sixty_four = PyLong_FromLong(2 * TIME_BITS);
    py_count_one = (one && sixty_four) ? PyNumber_Lshift(one, sixty_four) : NULL;
    Py_XDECREF(one);
    Py_XDECREF(sixty_four);
    return s_rec_slot && s_rec_time && py_time_mask && py_key_shift_obj && py_count_one ? 0 : -1;
}

/* MemoryState.observe for the packed form: 0 done, 1 leave it to Python, -1 error. */
static int
observe_packed(FastCheck *self, PyObject *imei_obj, long long msisdn, long long slot, long long t)
{
    PyObject *hs = self->histories;
    PyObject *v = PyDict_GetItemWithError(hs, imei_obj); /* borrowed */
    if (v == NULL && PyErr_Occurred())
        return -1;
    long long key = (msisdn << SLOT_BITS) | slot;
    PyObject *key_obj = PyLong_FromLongLong(key);
    if (key_obj == NULL)
        return -1;
    PyObject *nv = NULL;
    int rc = 1;
    if (v == NULL) {
        if (0 <= t && t <= TIME_MASK) {
            /* key << KEY_SHIFT | 1 << COUNT_SHIFT | t << TIME_BITS | t */
            PyObject *hi = PyNumber_Lshift(key_obj, py_key_shift_obj);
            if (hi == NULL)
                goto done_err;
            unsigned long long low = ((unsigned long long)t << TIME_BITS) | (unsigned long long)t;
            PyObject *lo = PyLong_FromUnsignedLongLong(low);
            if (lo == NULL) {
                Py_DECREF(hi);
                goto done_err;
            }
            PyObject *a = PyNumber_Or(hi, py_count_one);
            Py_DECREF(hi);
            if (a == NULL) {
                Py_DECREF(lo);
                goto done_err;
            }
            nv = PyNumber_Or(a, lo);
            Py_DECREF(a);
            Py_DECREF(lo);
            if (nv == NULL)
                goto done_err;
            rc = 0;
        }
    } else if (PyLong_CheckExact(v) && t <= TIME_MASK) {
        PyObject *vk = PyNumber_Rshift(v, py_key_shift_obj);
        if (vk == NULL)
            goto done_err;
        int same = PyObject_RichCompareBool(vk, key_obj, Py_EQ);
        Py_DECREF(vk);
        if (same < 0)
            goto done_err;
        if (same) {
            PyObject *lastobj = PyNumber_And(v, py_time_mask);
            if (lastobj == NULL)
                goto done_err;
            long long last = PyLong_AsLongLong(lastobj);
            Py_DECREF(lastobj);
            if (last == -1 && PyErr_Occurred())
                goto done_err;
            PyObject *a = PyNumber_Add(v, py_count_one);
            if (a == NULL)
                goto done_err;
            if (t > last) {
                PyObject *d = PyLong_FromLongLong(t - last);
                if (d == NULL) {
                    Py_DECREF(a);
                    goto done_err;
                }
                nv = PyNumber_Add(a, d);
                Py_DECREF(a);
                Py_DECREF(d);
                if (nv == NULL)
                    goto done_err;
            } else {
                nv = a;
            }
            rc = 0;
        }
    }
    if (rc == 0) {
        int err = PyDict_SetItem(hs, imei_obj, nv);
        Py_DECREF(nv);
        Py_DECREF(key_obj);
        return err < 0 ? -1 : 0;
    }
    Py_DECREF(key_obj);
    return 1;
done_err:
    Py_DECREF(key_obj);
    return -1;
}

/* Record the attach as Engine.check does (a known home subscriber on a well-formed IMEI): the packed
 * history updated here, or the state's own observe. 0 done, -1 error. */
int
eir_fp_record(FastCheck *self, PyObject *imei_obj, long long imei, long long sub, long long slot, long long t,
              int ints, PyObject *q)
{
    Histories *table = self->table;
    if (ints && self->observe == NULL && 0 <= slot && slot < (1 << SLOT_BITS) && 0 < sub && sub < (1LL << 50)) {
        int todo = table != NULL ? ht_observe_any(table, imei, sub, slot, t, self->history_type)
                                 : observe_packed(self, imei_obj, sub, slot, t);
        if (todo <= 0)
            return todo;
    }
    /* Not done above (a History that needs an eviction, another subscriber on a packed history, a store that
     * records more): the state's own observe. */
    PyObject *fn = self->observe != NULL ? self->observe : self->memory_observe;
    PyObject *sub_obj = PyLong_FromLongLong(sub);
    PyObject *sv = NULL, *tv = NULL, *r = NULL;
    if (sub_obj != NULL) {
        sv = ints ? PyLong_FromLongLong(slot) : PyObject_GetAttr(q, s_rec_slot);
        tv = sv == NULL ? NULL : ints ? PyLong_FromLongLong(t) : PyObject_GetAttr(q, s_rec_time);
        if (tv != NULL)
            r = PyObject_CallFunctionObjArgs(fn, imei_obj, sub_obj, sv, tv, NULL);
    }
    Py_XDECREF(sub_obj);
    Py_XDECREF(sv);
    Py_XDECREF(tv);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}
