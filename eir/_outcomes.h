/* eir/_outcomes.h: two more effect-free outcomes of eir/decide.py in C (included by eir/_fastpath.c).
 *
 * A running traveler allowance (decide._traveler: TRAVELER_ALLOWANCE / ALLOWANCE_EXPIRED on an IMEI with
 * an open window) and a running activation grace (decide._activation: ACTIVATION_GRACE / NOT_ACTIVATED
 * of an unowned device with one) are decided here when they emit nothing: the window or activation exists
 * and the notice they could emit is not due (its de-duplication mark says so). Their Decision is a new
 * one (it carries the deadline), kept as (reason, deadline) by eir_fp_made_set until a caller wants it.
 * Anything that would start a window or a grace, or emit a notice, is left to Python (return 0), as is any value not of the form eir.state makes. Only the Query entry point
 * (Engine.check) uses them; the raw entry points keep to the shared OWNER / REGISTERED decisions.
 */
#ifndef EIR_OUTCOMES_H
#define EIR_OUTCOMES_H

#include "_fastpath.h"
#include "_layout.h"

static PyObject *s_period_end, *s_deadline, *k_reminder, *k_expired, *k_act_required, *k_not_activated;

static int
outcomes_ready(void)
{
    if (s_period_end != NULL)
        return 0;
    s_deadline = PyUnicode_InternFromString("deadline");
    k_reminder = PyUnicode_InternFromString("GRACE_REMINDER");
    k_expired = PyUnicode_InternFromString("ALLOWANCE_EXPIRED");
    k_act_required = PyUnicode_InternFromString("ACTIVATION_REQUIRED");
    k_not_activated = PyUnicode_InternFromString("NOT_ACTIVATED");
    s_period_end = PyUnicode_InternFromString("period_end");
    return s_deadline && k_reminder && k_expired && k_act_required && k_not_activated && s_period_end ? 0 : -1;
}

/* An int attribute of a state record: 0 (*out), 1 not a plain 64-bit int, -1 error. */
static int
attr_ll(PyObject *o, PyObject *name, long long *out)
{
    return eir_fp_steal_ll(PyObject_GetAttr(o, name), out);
}

/* The time of the mark (kind, subject, sub, deadline) (MemoryState.mark): 1 found (*time), 0 absent,
 * -1 error, 2 not a plain int (left to Python). */
static int
mark_time(FastCheck *self, PyObject *kind, long long subject, long long sub, long long deadline, long long *time)
{
    PyObject *key = Py_BuildValue("(OLLL)", kind, subject, sub, deadline);
    if (key == NULL)
        return -1;
    PyObject *v = PyDict_GetItemWithError(self->marks, key); /* borrowed */
    Py_DECREF(key);
    if (v == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyLong_CheckExact(v))
        return 2;
    int overflow;
    *time = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (*time == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 2;
    }
    return 1;
}

/* Whether decide._reminder would emit a GRACE_REMINDER: 1 yes (or undecidable here), 0 no, -1 error. */
static int
reminder_due(FastCheck *self, long long subject, long long sub, long long t, long long deadline)
{
    if (sub == 0 || self->reminder_before_s == 0 || t < deadline - self->reminder_before_s)
        return 0;
    long long last;
    int found = mark_time(self, k_reminder, subject, sub, deadline, &last);
    return found < 0 ? -1 : found != 1;
}

/* Whether decide._deny_notice would emit its notice: 1 yes (or undecidable here), 0 no, -1 error. */
static int
deny_due(FastCheck *self, PyObject *kind, long long subject, long long sub, long long t, long long deadline)
{
    if (sub == 0)
        return 0;
    long long last = 0;
    int found = mark_time(self, kind, subject, sub, deadline, &last);
    if (found < 0)
        return -1;
    return found != 1 || t - last >= self->repeat_deny_s;
}

/* decide._traveler for an IMEI with an open window and nothing to emit: 1 decided (eir_fp_made_set), 0 not
 * (Python), -1 error. */
static int
traveler_outcome(FastCheck *self, PyObject *imei_obj, long long imei, long long sub, long long t)
{
    if (outcomes_ready() < 0)
        return -1;
    PyObject *w = PyDict_GetItemWithError(self->windows, imei_obj); /* borrowed */
    if (w == NULL)
        return PyErr_Occurred() ? -1 : 0; /* no window: quota, entry record, UNREGISTERED - Python */
    if (!Py_IS_TYPE(w, (PyTypeObject *)self->window_type))
        return 0;
    Py_INCREF(w);
    long long period_end = 0, deadline = -1;
    int rc = attr_ll(w, s_period_end, &period_end);
    if (rc == 0)
        rc = attr_ll(w, s_deadline, &deadline);
    Py_DECREF(w);
    if (rc != 0 || deadline < 0)
        return rc < 0 ? -1 : 0; /* not the ints eir.state makes: Python */
    if (t >= period_end)
        return 0; /* the period is over: a new window may open - Python */
    PyObject *reason;
    if (t < deadline) {
        rc = reminder_due(self, imei, sub, t, deadline);
        reason = self->r_traveler;
    } else {
        rc = deny_due(self, k_expired, imei, sub, t, deadline);
        reason = self->r_expired;
    }
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    eir_fp_made_set(self, reason, deadline);
    return 1;
}

/* Index.device_key(dev): 0 (*key), 1 not readable here, -1 error. */
static int
device_key(FastCheck *self, Py_ssize_t dev, long long *key)
{
    if (PyDict_GET_SIZE(self->ov_imeis) != 0) {
        PyObject *d = PyLong_FromSsize_t(dev);
        if (d == NULL)
            return -1;
        PyObject *moved = PyDict_GetItemWithError(self->ov_imeis, d); /* borrowed */
        Py_DECREF(d);
        if (moved == NULL && PyErr_Occurred())
            return -1;
        if (moved != NULL)
            return 1; /* IMEIs changed by the control plane: Python */
    }
    long long off;
    if (column_ll(self->offsets, &self->offsets_col, dev, &off) < 0)
        return -1;
    return column_ll(self->imeis, &self->imeis_col, (Py_ssize_t)off, key) < 0 ? -1 : 0;
}

/* decide._activation for a device with a running activation grace and nothing to emit: 1 decided
 * (eir_fp_made_set), 0 not (Python), -1 error. */
static int
activation_outcome(FastCheck *self, Py_ssize_t dev, long long sub, long long t)
{
    if (outcomes_ready() < 0)
        return -1;
    long long dkey = 0, deadline = -1;
    int rc = device_key(self, dev, &dkey);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    PyObject *k = PyLong_FromLongLong(dkey);
    if (k == NULL)
        return -1;
    PyObject *a = PyDict_GetItemWithError(self->activations, k); /* borrowed */
    Py_DECREF(k);
    if (a == NULL)
        return PyErr_Occurred() ? -1 : 0; /* the first attach: the grace starts - Python */
    if (!Py_IS_TYPE(a, (PyTypeObject *)self->activation_type))
        return 0;
    Py_INCREF(a);
    rc = attr_ll(a, s_deadline, &deadline);
    Py_DECREF(a);
    if (rc != 0 || deadline < 0)
        return rc < 0 ? -1 : 0; /* not the int eir.state makes: Python */
    PyObject *reason;
    if (t < deadline) {
        if (sub != 0) {
            long long last;
            int found = mark_time(self, k_act_required, dkey, sub, deadline, &last);
            if (found != 1)
                return found < 0 ? -1 : 0; /* ACTIVATION_REQUIRED not sent yet (or undecidable): Python */
            rc = reminder_due(self, dkey, sub, t, deadline);
        }
        reason = self->r_act_grace;
    } else {
        rc = deny_due(self, k_not_activated, dkey, sub, t, deadline);
        reason = self->r_not_activated;
    }
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    eir_fp_made_set(self, reason, deadline);
    return 1;
}

#endif /* EIR_OUTCOMES_H */
