/* eir/_unregistered.h: an unregistered IMEI's UNREGISTERED without effects (included by eir/_fastpath.c).
 *
 * decide._traveler answers an IMEI the registry does not know, with no running traveler window, with
 * UNREGISTERED unless the subscriber may start a window; its UNREGISTERED_DEVICE notice goes out at most
 * once per repeat_deny_notice_days. When no window would start - an unknown subscriber, or one whose
 * identity (national id, else MSISDN: Index.national_id's columns read in place) used its quota within
 * the period - and the notice is not due (its mark says so), the outcome is the shared Decision, decided
 * here. A window that would start, a notice that may be due, a rule set that requires an entry record
 * (Index.has_traveler_entry is not read here), and any value not of the form eir.state makes are left to
 * Python before anything is touched.
 */
#ifndef EIR_UNREGISTERED_H
#define EIR_UNREGISTERED_H

#include <stdio.h>

#include "_allowed.h"
#include "_fastpath.h"
#include "_layout.h"
#include "_outcomes.h"

static PyObject *k_unregistered_device;

/* Index.national_id(sub) as the int the snapshot keeps (int("1" + digits); 0: none): 0 done (*nid), 1 not
 * readable here, -1 error. */
static int
national_id_of(FastCheck *self, long long sub, long long *nid)
{
    const Column *kc = &self->msisdn_key_col;
    if (kc->size == 0 || self->msisdn_row_col.size == 0 || self->sub_nid_col.size == 0)
        return 1;
    Py_buffer kv;
    if (PyObject_GetBuffer(self->msisdn_key, &kv, PyBUF_SIMPLE) < 0)
        return -1;
    Py_ssize_t n = kv.len / kc->size;
    Py_ssize_t i = column_bisect(kc, (const char *)kv.buf, 0, n, sub, 0);
    int found = i < n && column_item(kc, (const char *)kv.buf + i * kc->size) == sub;
    PyBuffer_Release(&kv);
    *nid = 0;
    if (!found)
        return 0; /* not a subscriber of the registry: no national id */
    long long row;
    if (column_ll(self->msisdn_row, &self->msisdn_row_col, i, &row) < 0)
        return -1;
    return column_ll(self->sub_nid, &self->sub_nid_col, (Py_ssize_t)row, nid) < 0 ? -1 : 0;
}

/* Whether the subscriber's traveler quota was used within the period (decide._traveler: no window then):
 * 1 yes, 0 no (a window would start: Python) or not known here, -1 error. */
static int
quota_used(FastCheck *self, long long sub, long long t)
{
    long long nid;
    int rc = national_id_of(self, sub, &nid);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    /* identity: "nid:" + the national id (its digits after the leading 1), else "msisdn:" + the MSISDN */
    char digits[32];
    snprintf(digits, sizeof digits, "%lld", nid);
    PyObject *identity = nid != 0 ? PyUnicode_FromFormat("nid:%s", digits + 1)
                                  : PyUnicode_FromFormat("msisdn:%lld", sub);
    if (identity == NULL)
        return -1;
    PyObject *last_obj = PyDict_GetItemWithError(self->quotas, identity); /* borrowed */
    Py_DECREF(identity);
    if (last_obj == NULL)
        return PyErr_Occurred() ? -1 : 0; /* no quota used: a window starts */
    long long last;
    if (eir_fp_steal_ll(Py_NewRef(last_obj), &last) != 0)
        return 0;
    return t - last < self->traveler_period_s;
}

/* Whether decide._traveler answers UNREGISTERED without effects (the caller records the attach, not for a
 * roamer: it declines those): 1 yes, 0 no or not known here (Python), -1 error. */
static int
unregistered_quiet(FastCheck *self, PyObject *imei_obj, long long imei, long long sub, long long t)
{
    if (outcomes_ready() < 0)
        return -1;
    PyObject *w = PyDict_GetItemWithError(self->windows, imei_obj); /* borrowed */
    if (w == NULL && PyErr_Occurred())
        return -1;
    if (w != NULL) {
        /* a window whose period runs is traveler_outcome's (or Python's); one whose period is over is not */
        if (!Py_IS_TYPE(w, (PyTypeObject *)self->window_type))
            return 0;
        Py_INCREF(w);
        long long period_end = 0;
        int rc = attr_ll(w, s_period_end, &period_end);
        Py_DECREF(w);
        if (rc != 0 || t < period_end)
            return rc < 0 ? -1 : 0;
    }
    if (sub == 0)
        return 1; /* an unknown subscriber: no window, no notice */
    if (self->quotas == NULL)
        return 0; /* not configured (a state that keeps quotas elsewhere, an entry record required) */
    int rc = quota_used(self, sub, t);
    if (rc <= 0)
        return rc; /* a window starts (Python) */
    if (k_unregistered_device == NULL
            && (k_unregistered_device = PyUnicode_InternFromString("UNREGISTERED_DEVICE")) == NULL)
        return -1;
    rc = deny_due(self, k_unregistered_device, imei, sub, t, 0);
    return rc < 0 ? -1 : !rc;
}

#endif /* EIR_UNREGISTERED_H */
