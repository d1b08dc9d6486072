/* eir._fastpath: the common attach decided and recorded in C (optional accelerator of eir.engine).
 *
 * FastCheck(...)(query) returns the shared Decision of the outcomes without effects or deadline that make
 * up ~80% of attaches (decide_core: ALLOW OWNER / REGISTERED on a registered or pre-registry device,
 * ROAMER_EXEMPT, MALFORMED_IMEI; decide's exceptions OPERATOR_SIM / PRE_REGISTRY_USER and a BLACKLISTED
 * without notice, eir/_allowed.h; UNREGISTERED without effects, eir/_unregistered.h), or a new one with a
 * deadline (eir/_outcomes.h, eir/_fastpath_grace.c), after recording the attach in the observation history
 * exactly as Engine.check does (eir/_fastpath_record.c). For every other attach it returns None without touching anything, and eir.engine
 * runs the Python path (decide + effects + observe), which remains the reference: tests/test_fastpath.py
 * checks that both give the same decisions, events and state. The logic mirrors eir/decide.py (the rules
 * of decide that end without effects) and eir/state.py (packed history).
 *
 * Two entry points share that one decision (eir_fp_decide_common): calling the object with a Query, and
 * check_raw(imei, msisdn, slot, time, imsi) with the values as received, whose common forms are parsed
 * here (eir/_ident.h, as eir.query.build_query parses them); any other form, any value build_query
 * would refuse, and every attach the common case does not cover give None (tests/test_fastpath_raw.py).
 *
 * The data it reads are read in place where their layout allows (eir/_layout.h: the index's PreshMap and
 * device columns; eir/_histable.h: MemoryState's histories when they are the C table of eir/_histype.h),
 * so that the few cache misses of an attach can be prefetched and overlap (see eir_fp_decide_common).
 */
#include <stdint.h>

#include "_fastpath.h"

#include "_allowed.h"
#include "_histable.h"
#include "_layout.h"
#include "_outcomes.h"
#include "_unregistered.h"

static PyObject *s_imei, *s_msisdn, *s_slot, *s_time, *s_roamer, *s_last_msisdn, *s_enforced;

/* An int attribute of the query as a C long long: 0 done (a new reference in *obj when obj is given),
 * 1 not a plain int within 64 bits (left to Python), -1 error. */
static int
get_ll(PyObject *q, PyObject *name, long long *out, PyObject **obj)
{
    if (obj != NULL)
        *obj = NULL;
    PyObject *v = PyObject_GetAttr(q, name);
    if (v == NULL)
        return -1;
    if (!PyLong_CheckExact(v)) {
        Py_DECREF(v);
        return 1; /* not a plain int: leave it to Python */
    }
    int overflow = 0;
    *out = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (*out == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        Py_DECREF(v);
        return 1;
    }
    if (obj != NULL)
        *obj = v;
    else
        Py_DECREF(v);
    return 0;
}

enum { Q_IMEI, Q_MSISDN, Q_SLOT, Q_TIME, Q_ROAMER };

/* Attribute i of the query (a new reference): straight from its slot when q is a query_type instance
 * whose slot is set, else by name (which also raises the AttributeError of an unset slot). */
static inline PyObject *
q_attr(FastCheck *self, PyObject *q, int i, PyObject *name)
{
    Py_ssize_t off = self->q_off[i];
    if (off != 0 && (PyObject *)Py_TYPE(q) == self->query_type) {
        PyObject *v = *(PyObject **)((char *)q + off);
        if (v != NULL)
            return Py_NewRef(v);
    }
    return PyObject_GetAttr(q, name);
}

/* As get_ll, for attribute i of the query (q_attr). */
static int
q_ll(FastCheck *self, PyObject *q, int i, PyObject *name, long long *out)
{
    return eir_fp_steal_ll(q_attr(self, q, i, name), out);
}

/* The code of an IMEI in the index's map (eir.index.Index.lookup): 0 done (*code; 0 when absent), -1 error. */
static inline int
imei_code(FastCheck *self, unsigned long long mkey, long long *code)
{
    if (self->pmap != NULL && mkey > 1) {
        uint64_t v;
        *code = presh_get(self->pmap, mkey, &v) ? (long long)v : 0;
        return 0;
    }
    PyObject *mk = PyLong_FromUnsignedLongLong(mkey);
    if (mk == NULL)
        return -1;
    PyObject *code_obj = PyObject_GetItem(self->imei_map, mk);
    Py_DECREF(mk);
    if (code_obj == NULL)
        return -1;
    if (code_obj == Py_None) {
        Py_DECREF(code_obj);
        *code = 0;
        return 0;
    }
    *code = PyLong_AsLongLong(code_obj);
    Py_DECREF(code_obj);
    return *code == -1 && PyErr_Occurred() ? -1 : 0;
}

/* What a mapping keyed by IMEI core (a Histories table, or the dict it replaces when table is NULL) holds
 * for imei: 1 an object (*out, borrowed), 2 a packed int of the table, 0 nothing, -1 error. */
static int
imei_value(Histories *table, PyObject *dict, PyObject *imei_obj, long long imei, PyObject **out)
{
    if (table != NULL) {
        if (ht_ready(table) < 0)
            return -1;
        const HCell *c = ht_find(table, (uint64_t)imei + 1);
        if (c->key == 0)
            return 0;
        if (c->count != 0)
            return 2;
        *out = c->u.obj;
        return 1;
    }
    *out = PyDict_GetItemWithError(dict, imei_obj);
    return *out != NULL ? 1 : PyErr_Occurred() ? -1 : 0;
}

/* Whether the subscriber holds a grace on the IMEI (eir.decide._allowed then drops it: Python). */
static int
has_grace(FastCheck *self, PyObject *imei_obj, long long imei, long long sub)
{
    PyObject *count; /* borrowed: only its presence matters */
    int rc = imei_value(self->gi_table, self->grace_imeis, imei_obj, imei, &count);
    if (rc <= 0)
        return rc;
    PyObject *sub_obj = PyLong_FromLongLong(sub);
    if (sub_obj == NULL)
        return -1;
    rc = 0;
    for (long kind = 1; kind <= 2 && rc == 0; kind++) { /* eir.model.GraceKind CLONE, OWNERSHIP */
        PyObject *k = PyLong_FromLong(kind);
        PyObject *key = k != NULL ? PyTuple_Pack(3, imei_obj, sub_obj, k) : NULL;
        rc = key != NULL ? PyDict_Contains(self->graces, key) : -1;
        Py_XDECREF(key);
        Py_XDECREF(k);
    }
    Py_DECREF(sub_obj);
    return rc;
}

/* Whether the IMEI has an enforced clone detection (eir.decide then treats the device as cloned). */
static int
is_detected(FastCheck *self, PyObject *imei_obj, long long imei)
{
    PyObject *det; /* borrowed */
    int rc = imei_value(self->det_table, self->detections, imei_obj, imei, &det);
    if (rc <= 0)
        return rc;
    if (rc == 2) {
        PyErr_SetString(PyExc_TypeError, "detections: an int where a Detection was expected");
        return -1;
    }
    PyObject *enforced = PyObject_GetAttr(det, s_enforced);
    if (enforced == NULL)
        return -1;
    rc = PyObject_IsTrue(enforced);
    Py_DECREF(enforced);
    return rc;
}

/* Whether eir.decide's clone check (decide._detect_clone) may find a switch-back: the history is a History
 * (a packed one has a single subscriber, the last) whose last subscriber is another one, and this one
 * attached within the clone window (seen_within_window, eir/_allowed.h). 1 also for a value that is not a
 * History as eir.state makes them (Python judges it). */
static int
may_switch_back(FastCheck *self, PyObject *imei_obj, long long imei, long long sub, long long t)
{
    PyObject *h = NULL; /* borrowed */
    int rc = imei_value(self->table, self->histories, imei_obj, imei, &h);
    if (rc < 0)
        return -1;
    if (rc != 1 || PyLong_CheckExact(h))
        return 0; /* none, or a packed history (a single subscriber: no switch-back) */
    long long last = -1;
    rc = Py_IS_TYPE(h, (PyTypeObject *)self->history_type) ? get_ll(h, s_last_msisdn, &last, NULL) : 1;
    if (rc != 0)
        return rc;
    if (last == 0 || last == sub)
        return 0;
    Py_INCREF(h);
    rc = seen_within_window(self, h, sub, t);
    Py_DECREF(h);
    return rc;
}

void
eir_fp_made_set(FastCheck *self, PyObject *reason, long long deadline)
{
    Py_XSETREF(self->made_reason, Py_NewRef(reason));
    Py_CLEAR(self->made_shared);
    self->made_deadline = deadline;
}

void
eir_fp_made_set_shared(FastCheck *self, PyObject *decision)
{
    Py_CLEAR(self->made_reason);
    Py_XSETREF(self->made_shared, Py_NewRef(decision));
    self->made_deadline = -1;
}

/* The last FP_MADE as a Decision: the shared one, or Decision(reason, deadline). Only the callers that hand
 * a Decision on build one (Engine.check, check_raw); the RPC batch packs its answer from the fields. */
PyObject *
eir_fp_made_decision(FastCheck *self)
{
    if (self->made_shared != NULL)
        return Py_NewRef(self->made_shared);
    if (self->made_reason == NULL || self->decision_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "no outcome made");
        return NULL;
    }
    PyObject *dl = PyLong_FromLongLong(self->made_deadline);
    if (dl == NULL)
        return NULL;
    PyObject *args[2] = {self->made_reason, dl};
    PyObject *d = PyObject_Vectorcall(self->decision_type, args, 2, NULL);
    Py_DECREF(dl);
    return d;
}

/* The end of an outcome that makes a new Decision: rc 1 made (kept by eir_fp_made_set), 0 declined, -1
 * error. A made outcome is recorded as Engine.check records it. Consumes imei_obj. Returns FP_MADE,
 * FP_DECLINED or FP_ERROR. */
static int
take_made(FastCheck *self, int rc, PyObject *imei_obj, long long imei, long long sub, long long slot, long long t,
          int ints, PyObject *q)
{
    if (rc > 0 && sub != 0 && eir_fp_record(self, imei_obj, imei, sub, slot, t, ints, q) < 0)
        rc = -1;
    Py_DECREF(imei_obj);
    if (rc <= 0)
        return rc < 0 ? FP_ERROR : FP_DECLINED;
    return FP_MADE;
}

/* A running activation grace of device dev with nothing to emit (eir/_outcomes.h), recorded as
 * Engine.check records it: FP_MADE (the new Decision in the made_* fields), FP_DECLINED or FP_ERROR.
 * Consumes imei_obj. */
static int
activation_made(FastCheck *self, PyObject *imei_obj, long long imei, long long sub, long long slot, long long t,
                int ints, PyObject *q, Py_ssize_t dev)
{
    return take_made(self, activation_outcome(self, dev, sub, t), imei_obj, imei, sub, slot, t, ints, q);
}

/* decide._blocked (rule 2) when it emits nothing - no subscriber, or one whose BLACKLISTED_DEVICE_SEEN was
 * sent already - recorded as Engine.check records it (a roamer is not): D_BLACKLISTED, FP_DECLINED (the
 * notice may be due: Python) or FP_ERROR. */
static int
blocked_outcome(FastCheck *self, long long imei, long long sub, long long slot, long long t, int roamer, int ints,
                PyObject *q)
{
    if (sub == 0)
        return D_BLACKLISTED;
    int rc = blocked_seen(self, imei, sub);
    if (rc <= 0)
        return rc < 0 ? FP_ERROR : FP_DECLINED;
    if (roamer)
        return D_BLACKLISTED;
    PyObject *imei_obj = PyLong_FromLongLong(imei);
    if (imei_obj == NULL)
        return FP_ERROR;
    rc = eir_fp_record(self, imei_obj, imei, sub, slot, t, ints, q);
    Py_DECREF(imei_obj);
    return rc < 0 ? FP_ERROR : D_BLACKLISTED;
}

/* The common attach, shared by every entry point: eir.decide.decide + Engine.check for the outcomes
 * without effects or deadline - a malformed IMEI; an exempt roamer on a device that is not blocked; a
 * blocked device that emits nothing (blocked_outcome); a registered device (not blocked) attached by its
 * owner, even when cloned or detected; attached by anyone when non-owners are unrestricted and the device
 * is neither cloned nor detected nor possibly switched back to; an unowned pre-registry device; a
 * restricted subscriber who is one of decide's exceptions (eir/_allowed.h: an operator SIM, a
 * pre-registry user) - in each case but the blocked one only when the subscriber holds no grace on the
 * IMEI (decide._allowed would drop it). imei is the core (-1 malformed), sub the MSISDN (0: an unknown
 * subscriber). With ints set, slot and t are the attach's slot and time; without (a Query whose slot or
 * time is not a plain int), q's own attributes are recorded. Returns the outcome (D_*: the attach
 * recorded as Engine.check records it), FP_DECLINED (nothing touched) or FP_ERROR; with more (and the
 * outcomes configured) also FP_MADE, an outcome with a deadline (eir/_outcomes.h, eir/_fastpath_grace.c).
 *
 * On a registry of a million devices the attach is bound by cache misses, not by work: the IMEI's map
 * cell, its history cell and the device's flags and owner are each a miss. The map and history cells
 * are prefetched together as soon as the IMEI is known, the flags and owner as soon as the device is, so
 * the misses overlap instead of following one another. */
static int
decide_core(FastCheck *self, long long imei, long long sub, long long slot, long long t, int roamer, int ints,
            int more, PyObject *q)
{
    long long code, flags, owner;
    int result = FP_MADE, activation = 0, restricted = 0; /* restricted: 1 clone, 2 ownership */
    more = more && self->marks != NULL;
    if (imei < 0)
        return D_MALFORMED; /* not recorded */
    int exempt = roamer && self->roamers_exempt;
    Histories *table = self->table;
    if (table != NULL && table->cells != NULL && !roamer)
        ht_prefetch(table, (uint64_t)imei + 1);
    /* the IMEI map: key ((core + 2) * KEY_MIX) mod 2**64, as eir.index.imei_key */
    unsigned long long mkey = ((unsigned long long)imei + 2ULL) * self->key_mix;
    if (self->pmap != NULL) {
        const PreshMapStruct *ms = self->pmap->c_map;
        __builtin_prefetch(&ms->cells[mkey & (ms->length - 1)]);
    }
    if (imei_code(self, mkey, &code) < 0)
        return FP_ERROR;
    if (code == 0) {
        if (exempt)
            return D_ROAMER;
        if (roamer || self->marks == NULL)
            return FP_DECLINED; /* traveler rules */
        PyObject *imei_obj = PyLong_FromLongLong(imei);
        if (imei_obj == NULL)
            return FP_ERROR;
        /* a running window (FP_MADE), else UNREGISTERED without effects (eir/_unregistered.h) */
        int rc = more ? traveler_outcome(self, imei_obj, imei, sub, t) : 0;
        if (rc != 0)
            return take_made(self, rc, imei_obj, imei, sub, slot, t, ints, q);
        rc = unregistered_quiet(self, imei_obj, imei, sub, t);
        if (rc > 0 && sub != 0 && eir_fp_record(self, imei_obj, imei, sub, slot, t, ints, q) < 0)
            rc = -1;
        Py_DECREF(imei_obj);
        return rc < 0 ? FP_ERROR : rc == 0 ? FP_DECLINED : D_UNREGISTERED;
    }
    if (code & 1)
        return blocked_outcome(self, imei, sub, slot, t, roamer, ints, q); /* on the block list */
    Py_ssize_t dev = (Py_ssize_t)((code >> 1) - 1);
    if (device_cols(self->flags, &self->flags_col, self->owner, &self->owner_col, dev, &flags, &owner) < 0)
        return FP_ERROR;
    if (flags & self->blocked_flag)
        return blocked_outcome(self, imei, sub, slot, t, roamer, ints, q);
    if (roamer)
        return exempt ? D_ROAMER : FP_DECLINED; /* an exempt roamer is not recorded */
    int cloned = (flags & self->cloned_flag) != 0;
    if (cloned) {
        if (sub != 0 && sub == owner)
            result = D_OWNER;
        else
            restricted = 1; /* an exception, or the clone grace, after the checks below */
    } else if (owner != 0) {
        if (sub == owner)
            result = D_OWNER;
        else if (!self->restrict_non_owner)
            result = D_REGISTERED;
        else
            restricted = 2; /* an exception, or the ownership grace, after the checks below */
    } else if (self->origin_mask != 0 && (flags & self->origin_mask) == self->pre_registry) {
        result = D_REGISTERED; /* unowned pre-registry device */
    } else if (more) {
        activation = 1; /* unowned: a running activation grace, after the checks below */
    } else {
        return FP_DECLINED; /* unowned: activation rules */
    }
    if (restricted && !more && (sub == 0 || !(flags & (self->operator_sims_flag | self->pre_registry_users_flag))))
        return FP_DECLINED; /* no exception can apply: the grace rules */
    PyObject *imei_obj = PyLong_FromLongLong(imei);
    if (imei_obj == NULL)
        return FP_ERROR;
    int rc = 0;
    if (!cloned) {
        /* An enforced clone detection makes the device cloned; otherwise the clone check may run. */
        rc = is_detected(self, imei_obj, imei);
        if (rc > 0) {
            /* cloned after all: the owner is allowed, anyone else restricted */
            activation = 0, rc = 0;
            if (sub != 0 && sub == owner)
                restricted = 0, result = D_OWNER;
            else
                restricted = 1, result = FP_MADE;
        } else if (rc == 0 && self->clone_detect && sub != 0) {
            rc = may_switch_back(self, imei_obj, imei, sub, t);
        }
    }
    if (rc == 0 && restricted) {
        int d = FP_MADE;
        rc = restricted_exception(self, restricted == 1, dev, flags, owner, sub, slot, ints, &d);
        if (rc == 1) {
            restricted = 0, result = d, rc = 0; /* ALLOW as decide._allowed: no grace held, checked below */
        } else if (rc == 0 && more) {
            long long deadline = 0;
            rc = eir_fp_restricted(self, imei_obj, restricted == 1, sub, t, &deadline);
            if (rc == 2)
                rc = grace_quiet(self, restricted == 1 ? 0 : 1, imei, sub, t, deadline);
            return take_made(self, rc, imei_obj, imei, sub, slot, t, ints, q);
        } else if (rc >= 0) {
            rc = 1; /* the grace rules without the outcomes, or undecidable here: Python */
        }
    }
    if (rc == 0 && sub != 0)
        rc = has_grace(self, imei_obj, imei, sub);
    if (rc == 0 && activation)
        return activation_made(self, imei_obj, imei, sub, slot, t, ints, q, dev);
    if (rc == 0 && sub != 0)
        rc = eir_fp_record(self, imei_obj, imei, sub, slot, t, ints, q);
    Py_DECREF(imei_obj);
    return rc < 0 ? FP_ERROR : rc > 0 ? FP_DECLINED : result;
}

/* A batch's later attach, prefetched while earlier ones are decided (eir_fp_decide_items): its misses then
 * overlap the work of the attaches before it instead of stalling its own. Stage 1 (well ahead) fetches
 * the IMEI's map, history, detection and grace cells; stage 2 (nearer) reads the map cell, by then in
 * cache, and fetches the device's flags and owner. Only hints: nothing is read that decide_core would not read, nothing
 * changes, and a stale guess costs nothing but the fetch. */
void
eir_fp_prefetch(FastCheck *self, long long imei, int stage)
{
    if (imei < 0 || self->pmap == NULL)
        return;
    unsigned long long mkey = ((unsigned long long)imei + 2ULL) * self->key_mix;
    const PreshMapStruct *ms = self->pmap->c_map;
    if (stage == 1) {
        __builtin_prefetch(&ms->cells[mkey & (ms->length - 1)]);
        Histories *table = self->table;
        if (table != NULL && table->cells != NULL)
            ht_prefetch(table, (uint64_t)imei + 1);
        if (self->det_table != NULL && self->det_table->cells != NULL)
            ht_prefetch(self->det_table, (uint64_t)imei + 1);
        if (self->gi_table != NULL && self->gi_table->cells != NULL)
            ht_prefetch(self->gi_table, (uint64_t)imei + 1);
        return;
    }
    uint64_t code;
    if (mkey <= 1 || !presh_get(self->pmap, mkey, &code) || code <= 1 || (code & 1))
        return;
    Py_ssize_t dev = (Py_ssize_t)((code >> 1) - 1);
    if (device_cols(self->flags, &self->flags_col, self->owner, &self->owner_col, dev, NULL, NULL) < 0)
        PyErr_Clear(); /* a hint only: the decision itself reports what is wrong */
}

/* The common attach for the raw entry points: the shared decisions only (their callers answer those with
 * pre-built replies), never FP_MADE. */
int
eir_fp_decide_common(FastCheck *self, long long imei, long long sub, long long slot, long long t, int roamer,
                     int ints, PyObject *q)
{
    return decide_core(self, imei, sub, slot, t, roamer, ints, 0, q);
}

/* The raw entry points: with more, also the outcomes with a new Decision (FP_MADE: *made, a new reference,
 * when made is not NULL; else the outcome stays in the made_* fields for the caller to read). */
int
eir_fp_decide(FastCheck *self, long long imei, long long sub, long long slot, long long t, int roamer, int more,
              PyObject **made)
{
    int d = decide_core(self, imei, sub, slot, t, roamer, 1, more, NULL);
    if (d == FP_MADE && made != NULL && (*made = eir_fp_made_decision(self)) == NULL)
        return FP_ERROR;
    return d;
}

/* fast(q): the shared Decision of an outcome decided here (recorded), else None (nothing touched). */
static PyObject *
fast_check(FastCheck *self, PyObject *q)
{
    long long imei, sub, t = 0, slot = 0;
    PyObject *roamer = q_attr(self, q, Q_ROAMER, s_roamer);
    if (roamer == NULL)
        return NULL;
    int is_roamer = roamer == Py_False ? 0 : PyObject_IsTrue(roamer);
    Py_DECREF(roamer);
    if (is_roamer < 0)
        return NULL;
    int rc = q_ll(self, q, Q_IMEI, s_imei, &imei);
    if (rc == 0)
        rc = q_ll(self, q, Q_MSISDN, s_msisdn, &sub);
    if (rc != 0)
        return rc < 0 ? NULL : Py_NewRef(Py_None); /* not plain ints: Python */
    rc = q_ll(self, q, Q_TIME, s_time, &t);
    int rs = rc == 0 ? q_ll(self, q, Q_SLOT, s_slot, &slot) : 1;
    if (rc < 0 || rs < 0)
        return NULL;
    int d = decide_core(self, imei, sub, slot, t, is_roamer, rc == 0 && rs == 0, 1, q);
    if (d == FP_ERROR)
        return NULL;
    if (d == FP_MADE)
        return eir_fp_made_decision(self);
    return Py_NewRef(d == FP_DECLINED ? Py_None : self->decisions[d]);
}

PyObject *
eir_fp_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_SetString(PyExc_TypeError, "FastCheck takes exactly one Query");
        return NULL;
    }
    return fast_check((FastCheck *)callable, args[0]);
}

/* The strings and numbers the decision reads attributes and values with (PyInit__fastpath calls it). */
int
eir_fp_decide_init(void)
{
    s_imei = PyUnicode_InternFromString("imei");
    s_msisdn = PyUnicode_InternFromString("msisdn");
    s_slot = PyUnicode_InternFromString("slot");
    s_time = PyUnicode_InternFromString("time");
    s_roamer = PyUnicode_InternFromString("roamer");
    s_last_msisdn = PyUnicode_InternFromString("last_msisdn");
    s_enforced = PyUnicode_InternFromString("enforced");
    if (!s_imei || !s_msisdn || !s_slot || !s_time || !s_roamer || !s_last_msisdn || !s_enforced)
        return -1;
    return eir_fp_record_init();
}
