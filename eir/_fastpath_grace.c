/* eir._fastpath: the restricted subscriber of a device (decide._grace) when the grace already runs.
 *
 * On a cloned device everyone but the owner is restricted, and so is everyone but the owner (and its
 * operator SIMs) where non-owners are restricted: decide._grace gives such a subscriber a grace per
 * (IMEI, subscriber) and then denies. The later attaches within that grace are answered with the deadline
 * the state holds and change nothing but the history: those are decided here (a new Decision, handed
 * over as eir/_outcomes.h's are: FP_MADE), as is the DENY of an unknown subscriber (no grace to give).
 * Anything that starts a grace is left to Python (0) before anything is touched; past the deadline, or
 * within the reminder window, the caller looks for a due notice first (eir/_allowed.h grace_quiet). decide_core calls it where decide calls
 * _grace, after decide's operator-SIM and pre-registry-user exceptions (eir/_allowed.h) found none.
 */
#include "_fastpath.h"

static PyObject *s_grace_deadline;

int
eir_fp_grace_init(void)
{
    s_grace_deadline = PyUnicode_InternFromString("deadline");
    return s_grace_deadline != NULL ? 0 : -1;
}

/* restricted=(GraceKind.CLONE, GraceKind.OWNERSHIP, Reason.CLONE_GRACE, Reason.OWNERSHIP_GRACE,
 * CONST[CLONE_BLOCKED], CONST[OWNERSHIP_BLOCKED]), or None. */
int
eir_fp_restricted_set(FastCheck *self, PyObject *o)
{
    for (int k = 0; k < 2; k++) {
        Py_CLEAR(self->grace_kinds[k]);
        Py_CLEAR(self->grace_reasons[k]);
        Py_CLEAR(self->blocked_decisions[k]);
    }
    if (o == Py_None)
        return 0;
    PyObject *kc, *ko, *rc, *ro, *bc, *bo;
    if (!PyArg_ParseTuple(o, "OOOOOO;restricted", &kc, &ko, &rc, &ro, &bc, &bo))
        return -1;
    self->grace_kinds[0] = Py_NewRef(kc);
    self->grace_kinds[1] = Py_NewRef(ko);
    self->grace_reasons[0] = Py_NewRef(rc);
    self->grace_reasons[1] = Py_NewRef(ro);
    self->blocked_decisions[0] = Py_NewRef(bc);
    self->blocked_decisions[1] = Py_NewRef(bo);
    return 0;
}

/* decide._grace for a restricted subscriber who is none of decide's exceptions: 1 decided (the outcome
 * kept by eir_fp_made_set), 2 the grace's deadline (*deadline) has passed or its reminder window has come
 * (the caller decides only when no notice is due: grace_quiet, eir/_allowed.h), 0 left to Python (nothing
 * touched), -1 error. clone: the device is cloned (else: a non-owner where non-owners are restricted). */
int
eir_fp_restricted(FastCheck *self, PyObject *imei_obj, int clone, long long sub, long long t, long long *deadline_out)
{
    int k = clone ? 0 : 1;
    if (self->grace_kinds[k] == NULL || self->decision_type == NULL)
        return 0; /* not configured (no restricted=, or no outcomes=) */
    if (sub == 0) {
        eir_fp_made_set_shared(self, self->blocked_decisions[k]); /* an unknown subscriber: no grace to give */
        return 1;
    }
    PyObject *sub_obj = PyLong_FromLongLong(sub);
    PyObject *key = sub_obj != NULL ? PyTuple_Pack(3, imei_obj, sub_obj, self->grace_kinds[k]) : NULL;
    Py_XDECREF(sub_obj);
    if (key == NULL)
        return -1;
    PyObject *g = PyDict_GetItemWithError(self->graces, key); /* borrowed */
    Py_DECREF(key);
    if (g == NULL)
        return PyErr_Occurred() ? -1 : 0; /* the grace starts: Python */
    PyObject *dl = PyObject_GetAttr(g, s_grace_deadline);
    if (dl == NULL)
        return -1;
    int overflow = 0;
    long long deadline = PyLong_CheckExact(dl) ? PyLong_AsLongLongAndOverflow(dl, &overflow) : 0;
    int plain = PyLong_CheckExact(dl) && !overflow && !(deadline == -1 && PyErr_Occurred()) && deadline >= 0;
    PyErr_Clear();
    Py_DECREF(dl);
    if (!plain)
        return 0; /* not a deadline eir.state makes: Python */
    if (t >= deadline || (self->reminder_before_s != 0 && t >= deadline - self->reminder_before_s)) {
        *deadline_out = deadline;
        return 2; /* denied (a notice may be due), or a GRACE_REMINDER may be */
    }
    eir_fp_made_set(self, self->grace_reasons[k], deadline);
    return 1;
}
