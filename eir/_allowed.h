/* eir/_allowed.h: decide's exceptions for a restricted subscriber, and a blocked device seen again
 * (included by eir/_fastpath.c).
 *
 * On a cloned device (and on an owned one where non-owners are restricted) decide lets a device's operator
 * SIM through (OPERATOR_SIM), and on a cloned unowned pre-registry device its pre-registry users
 * (PRE_REGISTRY_USER); a blocked device is BLACKLISTED, with a BLACKLISTED_DEVICE_SEEN notice only at
 * the first attach of each subscriber. Those outcomes without effects are shared Decisions, decided here
 * from the index's data read as Index reads them: the operator SIMs from Index._opsims, the very dict
 * the control plane changes (Index.set_operator_sim), so the C reading sees each change as
 * Index.operator_sim does; the pre-registry users from their two columns, which nothing changes after
 * the snapshot is loaded. Anything not of the form Index makes is left to Python. Past a running grace's
 * deadline, or within its reminder window, grace_quiet decides when the notice is not due; where decide's
 * clone check runs but cannot find a switch-back, seen_within_window says so.
 */
#ifndef EIR_ALLOWED_H
#define EIR_ALLOWED_H

#include "_fastpath.h"
#include "_layout.h"
#include "_outcomes.h"

static PyObject *k_blacklisted_seen;

/* Index.operator_sim(dev, slot) == sub: 1 yes, 0 no, 2 not readable here (Python), -1 error. */
static int
is_operator_sim(FastCheck *self, Py_ssize_t dev, long long slot, long long sub)
{
    PyObject *d = PyLong_FromSsize_t(dev);
    if (d == NULL)
        return -1;
    PyObject *sims = PyDict_GetItemWithError(self->opsims, d); /* borrowed */
    Py_DECREF(d);
    if (sims == NULL)
        return PyErr_Occurred() ? -1 : 0; /* none: operator_sim is 0, which no subscriber here is */
    if (!PyTuple_CheckExact(sims))
        return 2;
    if (slot < 1 || slot > PyTuple_GET_SIZE(sims))
        return 0;
    long long m;
    if (eir_fp_steal_ll(Py_NewRef(PyTuple_GET_ITEM(sims, slot - 1)), &m) != 0)
        return 2;
    return m == sub;
}

/* The first i in [lo, hi) whose item is >= v (or > v with after set), in a sorted integer column. */
static inline Py_ssize_t
column_bisect(const Column *col, const char *buf, Py_ssize_t lo, Py_ssize_t hi, long long v, int after)
{
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        long long x = column_item(col, buf + mid * col->size);
        if (x < v || (after && x == v))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Index.is_pre_registry_user(dev, sub) for a device with HAS_PRE_REGISTRY_USERS: 1 yes, 0 no, 2 not
 * readable here, -1 error. The columns are sorted by (device, MSISDN), as Index bisects them. */
static int
is_pre_registry_user(FastCheck *self, Py_ssize_t dev, long long sub)
{
    const Column *dc = &self->prereg_dev_col, *mc = &self->prereg_msisdn_col;
    if (dc->size == 0 || mc->size == 0)
        return 2;
    Py_buffer dv, mv;
    if (PyObject_GetBuffer(self->prereg_dev, &dv, PyBUF_SIMPLE) < 0)
        return -1;
    if (PyObject_GetBuffer(self->prereg_msisdn, &mv, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&dv);
        return -1;
    }
    Py_ssize_t n = dv.len / dc->size;
    int rc = 2;
    if (mv.len / mc->size == n) {
        const char *db = (const char *)dv.buf, *mb = (const char *)mv.buf;
        Py_ssize_t lo = column_bisect(dc, db, 0, n, (long long)dev, 0);
        Py_ssize_t hi = column_bisect(dc, db, lo, n, (long long)dev, 1);
        Py_ssize_t i = column_bisect(mc, mb, lo, hi, sub, 0);
        rc = i < hi && column_item(mc, mb + i * mc->size) == sub;
    }
    PyBuffer_Release(&mv);
    PyBuffer_Release(&dv);
    return rc;
}

/* decide's exceptions for a restricted subscriber sub (not the owner) of device dev: 1 one of them (*d:
 * D_OPERATOR_SIM or D_PRE_REGISTRY_USER), 0 none (the grace rules), 2 not decidable here, -1 error.
 * clone: the device counts as cloned. ints: slot is the attach's (else unknown: a Query's odd slot). */
static int
restricted_exception(FastCheck *self, int clone, Py_ssize_t dev, long long flags, long long owner, long long sub,
                     long long slot, int ints, int *d)
{
    if (sub == 0)
        return 0; /* an unknown subscriber is neither */
    if (self->opsims == NULL)
        return 2; /* not configured: either might be */
    if (flags & self->operator_sims_flag) {
        int rc = ints ? is_operator_sim(self, dev, slot, sub) : 2;
        if (rc != 0) {
            *d = D_OPERATOR_SIM;
            return rc;
        }
    }
    if (clone && owner == 0 && (flags & self->pre_registry_users_flag)) {
        if (self->origin_mask == 0)
            return 2; /* the origin is not known here */
        if ((flags & self->origin_mask) != self->pre_registry)
            return 0;
        *d = D_PRE_REGISTRY_USER;
        return is_pre_registry_user(self, dev, sub);
    }
    return 0;
}

/* Whether decide._blocked emits nothing for subscriber sub (not 0): BLACKLISTED_DEVICE_SEEN was sent for
 * this IMEI and subscriber already (its mark exists). 1 yes, 0 no or not known here (Python), -1 error. */
static int
blocked_seen(FastCheck *self, long long imei, long long sub)
{
    if (self->marks == NULL)
        return 0; /* the state's marks are not MemoryState's dict */
    if (k_blacklisted_seen == NULL && (k_blacklisted_seen = PyUnicode_InternFromString("BLACKLISTED_DEVICE_SEEN"))
                                          == NULL)
        return -1;
    long long last;
    int found = mark_time(self, k_blacklisted_seen, imei, sub, 0, &last);
    return found < 0 ? -1 : found == 1;
}

/* decide._grace past the deadline (DENY, with its *_BLOCKED notice at most once per repeat_deny_notice_days)
 * or within the reminder window (WARN, with one GRACE_REMINDER) of a grace that runs: 1 decided when the
 * notice is not due (eir_fp_made_set), 0 it may be (Python), -1 error. k: 0 clone, 1 ownership. */
static int
grace_quiet(FastCheck *self, int k, long long imei, long long sub, long long t, long long deadline)
{
    static PyObject *blocked_kinds[2], *s_reason;
    if (outcomes_ready() < 0)
        return -1;
    if (s_reason == NULL) {
        blocked_kinds[0] = PyUnicode_InternFromString("CLONE_BLOCKED");
        blocked_kinds[1] = PyUnicode_InternFromString("OWNERSHIP_BLOCKED");
        s_reason = PyUnicode_InternFromString("reason");
        if (blocked_kinds[0] == NULL || blocked_kinds[1] == NULL || s_reason == NULL)
            return -1;
    }
    if (t < deadline) {
        int rc = reminder_due(self, imei, sub, t, deadline);
        if (rc == 0)
            eir_fp_made_set(self, self->grace_reasons[k], deadline);
        return rc < 0 ? -1 : !rc;
    }
    int rc = deny_due(self, blocked_kinds[k], imei, sub, t, deadline);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    PyObject *reason = PyObject_GetAttr(self->blocked_decisions[k], s_reason); /* the shared DENY's reason */
    if (reason == NULL)
        return -1;
    eir_fp_made_set(self, reason, deadline);
    Py_DECREF(reason);
    return 1;
}

/* decide._detect_clone's first test, for a History h whose last subscriber is not sub: whether sub attached
 * this IMEI within the clone window (History.last_seen(sub) > t - clone_window_s), the only case in which
 * the clone check can have effects (a switch-back). 1 yes or not known here (Python), 0 no, -1 error. */
static int
seen_within_window(FastCheck *self, PyObject *h, long long sub, long long t)
{
    static PyObject *s_seen;
    if (self->clone_window_s <= 0)
        return 1; /* not configured */
    if (s_seen == NULL && (s_seen = PyUnicode_InternFromString("seen")) == NULL)
        return -1;
    PyObject *seen = PyObject_GetAttr(h, s_seen);
    if (seen == NULL)
        return -1;
    int rc = PyDict_CheckExact(seen) ? 0 : 1;
    long long best = 0;
    Py_ssize_t pos = 0;
    PyObject *k, *v; /* borrowed */
    while (rc == 0 && PyDict_Next(seen, &pos, &k, &v)) {
        long long key, last;
        /* History.seen: msisdn << SLOT_BITS | slot -> [first, last, count] */
        if (eir_fp_steal_ll(Py_NewRef(k), &key) != 0 || !PyList_CheckExact(v) || PyList_GET_SIZE(v) < 2) {
            rc = 1;
        } else if (key >> SLOT_BITS == sub) {
            if (eir_fp_steal_ll(Py_NewRef(PyList_GET_ITEM(v, 1)), &last) != 0)
                rc = 1;
            else if (last > best)
                best = last;
        }
    }
    Py_DECREF(seen);
    return rc != 0 ? rc : best != 0 && best > t - self->clone_window_s;
}

#endif /* EIR_ALLOWED_H */
