/* eir._fastpath: the common attach decided and recorded in C (optional accelerator of eir.engine).
 *
 * FastCheck(...)(query) returns the shared Decision for the one effect-free outcome that makes up ~80%
 * of attaches - a registered, owned device, neither blocked nor cloned nor detected, no grace on the
 * IMEI: ALLOW OWNER, or ALLOW REGISTERED when non-owners are not restricted - after recording the attach
 * in the observation history exactly as MemoryState.observe does. For every other attach it returns None
 * without touching anything, and eir.engine runs the Python path (decide + effects + observe), which
 * remains the reference: tests/test_fastpath.py checks that both give the same decisions, events and
 * state. The logic mirrors eir/decide.py (the first rules of decide) and eir/state.py (packed history).
 *
 * Two entry points share that one decision (decide_common): calling the object with a Query, and
 * check_raw(imei, msisdn, slot, time, imsi) with the values as received, whose common forms are parsed
 * here (eir/_ident.h, as eir.query.build_query parses them); any other form, any value build_query
 * would refuse, and every attach the common case does not cover give None (tests/test_fastpath_raw.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

#include "_ident.h"

#define SLOT_BITS 5
#define TIME_BITS 32
#define TIME_MASK 0xFFFFFFFFLL
#define KEY_SHIFT 104
/* eir.query's bounds of a request value (checked against it by eir.fastpath) */
#define MAX_FIELD_CHARS 64
#define MAX_SLOT 16
#define MIN_EPOCH 946684800LL
#define MAX_EPOCH 4102444800LL

static PyObject *s_imei, *s_msisdn, *s_slot, *s_time, *s_roamer;
static PyObject *py_time_mask, *py_count_one, *py_key_shift_obj;

typedef struct {
    PyObject_HEAD
    PyObject *imei_map;     /* preshed PreshMap: imei key -> code */
    PyObject *flags;        /* array of device flags */
    PyObject *owner;        /* array of device owners (0 = none) */
    PyObject *histories;    /* dict imei -> packed int | History */
    PyObject *detections;   /* dict imei -> Detection */
    PyObject *grace_imeis;  /* dict imei -> count */
    PyObject *observe;      /* state.observe (bound), or NULL when the packed update is done here */
    PyObject *memory_observe; /* MemoryState.observe bound to the state (the History form) */
    PyObject *owner_decision;
    PyObject *registered_decision;
    long long stop_flags;   /* BLOCKED | CLONED */
    unsigned long long key_mix; /* eir.registry.KEY_MIX */
    int restrict_non_owner;
    int clone_detect;
    /* the raw entry point's parsing policy (rules [imei] and the numbering plan) */
    int deny_invalid_check_digit;
    int deny_test_imeis;
    char cc[IDENT_MAX_CC + 1];  /* the home country code */
    size_t cc_len;
    Py_ssize_t nml;             /* national mobile number length (0: none); -1: MSISDNs left to Python */
} FastCheck;

/* One attach parsed by parse_raw. */
typedef struct {
    long long imei, sub, slot, time;
    int roamer;
} RawAttach;

static void
FastCheck_dealloc(FastCheck *self)
{
    Py_XDECREF(self->imei_map);
    Py_XDECREF(self->flags);
    Py_XDECREF(self->owner);
    Py_XDECREF(self->histories);
    Py_XDECREF(self->detections);
    Py_XDECREF(self->grace_imeis);
    Py_XDECREF(self->observe);
    Py_XDECREF(self->memory_observe);
    Py_XDECREF(self->owner_decision);
    Py_XDECREF(self->registered_decision);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
FastCheck_init(FastCheck *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"imei_map", "flags", "owner", "histories", "detections", "grace_imeis",
                             "observe", "memory_observe", "owner_decision", "registered_decision",
                             "stop_flags", "key_mix", "restrict_non_owner", "clone_detect",
                             "deny_invalid_check_digit", "deny_test_imeis", "country_code",
                             "national_mobile_length", NULL};
    PyObject *imei_map, *flags, *owner, *histories, *detections, *grace_imeis, *observe, *memory_observe;
    PyObject *owner_decision, *registered_decision;
    long long stop_flags;
    unsigned long long key_mix;
    int restrict_non_owner, clone_detect, deny_check = 1, deny_test = 1;
    const char *cc = "98";
    Py_ssize_t cc_len = 2, nml = 10;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOO!O!O!OOOOLKpp|pps#n", kwlist, &imei_map, &flags, &owner,
                                     &PyDict_Type, &histories, &PyDict_Type, &detections, &PyDict_Type,
                                     &grace_imeis, &observe, &memory_observe, &owner_decision,
                                     &registered_decision, &stop_flags, &key_mix, &restrict_non_owner,
                                     &clone_detect, &deny_check, &deny_test, &cc, &cc_len, &nml))
        return -1;
    self->deny_invalid_check_digit = deny_check;
    self->deny_test_imeis = deny_test;
    /* a country code this parser cannot handle: every MSISDN goes to Python */
    int cc_ok = 0 < cc_len && cc_len <= IDENT_MAX_CC && ident_all_digits(cc, (size_t)cc_len) && nml >= 0;
    memcpy(self->cc, cc, cc_ok ? (size_t)cc_len : 0);
    self->cc[cc_ok ? cc_len : 0] = '\0';
    self->cc_len = cc_ok ? (size_t)cc_len : 0;
    self->nml = cc_ok ? nml : -1;
#define SET(field, value) do { PyObject *tmp = (PyObject *)self->field; Py_XINCREF(value); \
                               self->field = value; Py_XDECREF(tmp); } while (0)
    SET(imei_map, imei_map);
    SET(flags, flags);
    SET(owner, owner);
    SET(histories, histories);
    SET(detections, detections);
    SET(grace_imeis, grace_imeis);
    if (observe == Py_None) {
        SET(observe, (PyObject *)NULL);
    } else {
        SET(observe, observe);
    }
    SET(memory_observe, memory_observe);
    SET(owner_decision, owner_decision);
    SET(registered_decision, registered_decision);
#undef SET
    self->stop_flags = stop_flags;
    self->key_mix = key_mix;
    self->restrict_non_owner = restrict_non_owner;
    self->clone_detect = clone_detect;
    return 0;
}

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

/* array[dev] as a long long (the arrays hold non-negative 64-bit values). */
static int
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

/* The common attach, shared by every entry point. imei is the core (-1 malformed), sub the MSISDN (0: an
 * unknown subscriber) of a home (non-roamer) attach. With ints set, slot and t are the attach's slot and
 * time; without (a Query whose slot or time is not a plain int), q's own attributes are recorded.
 * Returns 1 when decided (*out: the shared Decision, borrowed; the attach recorded in the observation
 * history), 0 when not (nothing touched: the Python path decides), -1 on error. */
static int
decide_common(FastCheck *self, long long imei, long long sub, long long slot, long long t, int ints,
              PyObject *q, PyObject **out)
{
    long long code, flags, owner;
    PyObject *result;
    if (imei < 0)
        return 0; /* malformed */
    /* the IMEI map: key ((core + 2) * KEY_MIX) mod 2**64, as eir.index.imei_key */
    unsigned long long mkey = ((unsigned long long)imei + 2ULL) * self->key_mix;
    PyObject *mk = PyLong_FromUnsignedLongLong(mkey);
    if (mk == NULL)
        return -1;
    PyObject *code_obj = PyObject_GetItem(self->imei_map, mk);
    Py_DECREF(mk);
    if (code_obj == NULL)
        return -1;
    if (code_obj == Py_None) {
        Py_DECREF(code_obj);
        return 0; /* unregistered: traveler rules */
    }
    code = PyLong_AsLongLong(code_obj);
    Py_DECREF(code_obj);
    if (code == -1 && PyErr_Occurred())
        return -1;
    if (code <= 1 || (code & 1))
        return 0; /* unknown, or on the block list */
    Py_ssize_t dev = (Py_ssize_t)((code >> 1) - 1);
    if (item_ll(self->flags, dev, &flags) < 0)
        return -1;
    if (flags & self->stop_flags)
        return 0; /* blocked or cloned */
    if (item_ll(self->owner, dev, &owner) < 0)
        return -1;
    if (owner == 0)
        return 0; /* unowned: pre-registry or activation rules */
    if (sub == owner)
        result = self->owner_decision;
    else if (!self->restrict_non_owner)
        result = self->registered_decision;
    else
        return 0;
    PyObject *imei_obj = PyLong_FromLongLong(imei);
    if (imei_obj == NULL)
        return -1;
    int rc = PyDict_Contains(self->detections, imei_obj);
    if (rc != 0)
        goto done; /* detected (or error) */
    if (self->clone_detect && sub != 0) {
        PyObject *h = PyDict_GetItemWithError(self->histories, imei_obj); /* borrowed */
        if (h == NULL && PyErr_Occurred()) {
            rc = -1;
            goto done;
        }
        if (h != NULL && !PyLong_CheckExact(h)) {
            rc = 0;
            goto done; /* more than one subscriber seen: the clone check runs in Python */
        }
    }
    rc = PyDict_Contains(self->grace_imeis, imei_obj);
    if (rc != 0)
        goto done; /* graces may have to be dropped: Python */
    /* Decided: record the attach (Engine.check: a known home subscriber on a well-formed IMEI). */
    if (sub != 0) {
        int todo = 1;
        if (ints && self->observe == NULL && 0 <= slot && slot < (1 << SLOT_BITS) && 0 < sub && sub < (1LL << 50)) {
            todo = observe_packed(self, imei_obj, sub, slot, t);
            if (todo < 0) {
                rc = -1;
                goto done;
            }
        }
        if (todo) {
            /* Not the packed case (or a store that records more): the state's own observe. */
            PyObject *fn = self->observe != NULL ? self->observe : self->memory_observe;
            PyObject *sub_obj = PyLong_FromLongLong(sub);
            PyObject *sv = NULL, *tv = NULL, *r = NULL;
            if (sub_obj != NULL) {
                sv = ints ? PyLong_FromLongLong(slot) : PyObject_GetAttr(q, s_slot);
                tv = sv == NULL ? NULL : ints ? PyLong_FromLongLong(t) : PyObject_GetAttr(q, s_time);
                if (tv != NULL)
                    r = PyObject_CallFunctionObjArgs(fn, imei_obj, sub_obj, sv, tv, NULL);
            }
            Py_XDECREF(sub_obj);
            Py_XDECREF(sv);
            Py_XDECREF(tv);
            if (r == NULL) {
                rc = -1;
                goto done;
            }
            Py_DECREF(r);
        }
    }
    Py_DECREF(imei_obj);
    *out = result;
    return 1;
done:
    /* rc: -1 an error, otherwise declined (PyDict_Contains' 1, "present", included) */
    Py_DECREF(imei_obj);
    return rc < 0 ? -1 : 0;
}

static PyObject *
FastCheck_call(FastCheck *self, PyObject *args, PyObject *kwds)
{
    PyObject *q, *out = NULL;
    if (!PyArg_UnpackTuple(args, "FastCheck", 1, 1, &q))
        return NULL;
    long long imei, sub, t = 0, slot = 0;
    PyObject *roamer = PyObject_GetAttr(q, s_roamer);
    if (roamer == NULL)
        return NULL;
    int is_roamer = PyObject_IsTrue(roamer);
    Py_DECREF(roamer);
    if (is_roamer != 0)
        return is_roamer < 0 ? NULL : Py_NewRef(Py_None);
    int rc = get_ll(q, s_imei, &imei, NULL);
    if (rc == 0)
        rc = get_ll(q, s_msisdn, &sub, NULL);
    if (rc != 0)
        return rc < 0 ? NULL : Py_NewRef(Py_None); /* not plain ints: Python */
    rc = get_ll(q, s_time, &t, NULL);
    int rs = rc == 0 ? get_ll(q, s_slot, &slot, NULL) : 1;
    if (rc < 0 || rs < 0)
        return NULL;
    rc = decide_common(self, imei, sub, slot, t, rc == 0 && rs == 0, q, &out);
    if (rc < 0)
        return NULL;
    return Py_NewRef(rc ? out : Py_None);
}

/* --- the raw entry point: identifiers as received, parsed here (eir/_ident.h) ------------------------- */

/* An exact str of at most MAX_FIELD_CHARS ASCII characters: its bytes; NULL otherwise (Python parses it:
 * non-ASCII digits, over-long fields and non-strings are its to judge or refuse). */
static const char *
ascii_field(PyObject *o, size_t *n)
{
    if (!PyUnicode_CheckExact(o) || !PyUnicode_IS_ASCII(o))
        return NULL;
    Py_ssize_t len = PyUnicode_GET_LENGTH(o);
    if (len > MAX_FIELD_CHARS)
        return NULL;
    *n = (size_t)len;
    return (const char *)PyUnicode_1BYTE_DATA(o);
}

/* eir.identifiers.parse_slot for None, an int and the strings "" and "1".."16"; 0 otherwise. */
static long long
raw_slot(PyObject *o)
{
    if (o == Py_None)
        return 1;
    if (PyLong_CheckExact(o)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        return !overflow && 1 <= v && v <= MAX_SLOT ? v : 0;
    }
    size_t n;
    const char *s = ascii_field(o, &n);
    if (s == NULL)
        return 0;
    if (n == 0)
        return 1;
    if (n == 1 && s[0] >= '1' && s[0] <= '9')
        return s[0] - '0';
    if (n == 2 && s[0] == '1' && s[1] >= '0' && s[1] <= '6')
        return 10 + s[1] - '0';
    return 0;
}

/* eir.query.parse_time for an int or a float: epoch seconds (floored) within MIN_EPOCH..MAX_EPOCH; 0 for
 * anything else (strings, bools, out of range: Python). */
static long long
raw_time(PyObject *o)
{
    if (PyLong_CheckExact(o)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        return !overflow && MIN_EPOCH <= v && v <= MAX_EPOCH ? v : 0;
    }
    if (PyFloat_CheckExact(o)) {
        double v = floor(PyFloat_AS_DOUBLE(o));
        return isfinite(v) && (double)MIN_EPOCH <= v && v <= (double)MAX_EPOCH ? (long long)v : 0;
    }
    return 0;
}

/* Parse one attach's raw values as eir.query.build_query does, for the common forms: 1 parsed into
 * *a, 0 not (a form left to Python, or a value Python refuses), -1 error. */
static int
parse_raw(FastCheck *self, PyObject *imei, PyObject *msisdn, PyObject *slot, PyObject *time, PyObject *imsi,
          RawAttach *a)
{
    size_t n;
    const char *s = ascii_field(imei, &n);
    if (s == NULL)
        return 0;
    a->imei = ident_imei(s, n, self->deny_invalid_check_digit, self->deny_test_imeis);
    if (a->imei == IDENT_DECLINE)
        return 0;
    if ((a->slot = raw_slot(slot)) == 0 || (a->time = raw_time(time)) == 0)
        return 0;
    if (imsi != Py_None && !(PyUnicode_CheckExact(imsi) && PyUnicode_GET_LENGTH(imsi) == 0))
        return 0; /* an IMSI: parsed, and perhaps looked up, in Python */
    a->roamer = 0;
    if (msisdn == Py_None || (PyUnicode_CheckExact(msisdn) && PyUnicode_GET_LENGTH(msisdn) == 0)) {
        a->sub = 0; /* neither an MSISDN nor an IMSI: an unknown subscriber */
        return 1;
    }
    s = ascii_field(msisdn, &n);
    if (s == NULL || self->nml < 0)
        return 0;
    int home = 0;
    a->sub = ident_msisdn(s, n, self->cc, self->cc_len, (size_t)self->nml, &home);
    if (a->sub == IDENT_DECLINE)
        return 0;
    a->roamer = !home;
    return 1;
}

static PyObject *
FastCheck_check_raw(FastCheck *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 4 || nargs > 5) {
        PyErr_SetString(PyExc_TypeError, "check_raw(imei, msisdn, slot, time, imsi=None)");
        return NULL;
    }
    RawAttach a;
    PyObject *out = NULL;
    int rc = parse_raw(self, args[0], args[1], args[2], args[3], nargs > 4 ? args[4] : Py_None, &a);
    if (rc > 0 && !a.roamer)
        rc = decide_common(self, a.imei, a.sub, a.slot, a.time, 1, NULL, &out);
    else if (rc > 0)
        rc = 0; /* a roamer: Python */
    if (rc < 0)
        return NULL;
    return Py_NewRef(rc ? out : Py_None);
}

static PyMethodDef FastCheck_methods[] = {
    {"check_raw", (PyCFunction)(void (*)(void))FastCheck_check_raw, METH_FASTCALL,
     "check_raw(imei, msisdn, slot, time, imsi=None): the Decision of the common attach from raw values, "
     "or None (the caller builds a Query and runs the Python path)."},
    {NULL, NULL, 0, NULL},
};

/* --- module-level parsers, for the tests that hold them to eir.identifiers ---------------------------- */

static PyObject *
mod_parse_imei(PyObject *mod, PyObject *args)
{
    PyObject *raw;
    int deny_check, deny_test;
    if (!PyArg_ParseTuple(args, "Opp", &raw, &deny_check, &deny_test))
        return NULL;
    size_t n;
    const char *s = ascii_field(raw, &n);
    long long v = s == NULL ? IDENT_DECLINE : ident_imei(s, n, deny_check, deny_test);
    return v == IDENT_DECLINE ? Py_NewRef(Py_None) : PyLong_FromLongLong(v);
}

static PyObject *
mod_parse_msisdn(PyObject *mod, PyObject *args)
{
    PyObject *raw;
    const char *cc;
    Py_ssize_t cc_len, nml;
    if (!PyArg_ParseTuple(args, "Os#n", &raw, &cc, &cc_len, &nml))
        return NULL;
    size_t n;
    const char *s = ascii_field(raw, &n);
    int home = 0;
    long long v = s == NULL || nml < 0 ? IDENT_DECLINE : ident_msisdn(s, n, cc, (size_t)cc_len, (size_t)nml, &home);
    if (v == IDENT_DECLINE)
        return Py_NewRef(Py_None);
    return Py_BuildValue("(LO)", v, home ? Py_True : Py_False);
}

static PyObject *
mod_parse_slot(PyObject *mod, PyObject *raw)
{
    long long v = raw_slot(raw);
    return v == 0 ? Py_NewRef(Py_None) : PyLong_FromLongLong(v);
}

static PyObject *
mod_parse_time(PyObject *mod, PyObject *raw)
{
    long long v = raw_time(raw);
    return v == 0 ? Py_NewRef(Py_None) : PyLong_FromLongLong(v);
}

static PyMethodDef module_methods[] = {
    {"parse_imei", mod_parse_imei, METH_VARARGS,
     "parse_imei(raw, deny_invalid_check_digit, deny_test_imeis): the core, -1 (malformed) or None (Python's)."},
    {"parse_msisdn", mod_parse_msisdn, METH_VARARGS,
     "parse_msisdn(raw, country_code, national_mobile_length): (msisdn, is_home) or None (Python's)."},
    {"parse_slot", mod_parse_slot, METH_O, "parse_slot(raw): the slot, or None (Python's)."},
    {"parse_time", mod_parse_time, METH_O, "parse_time(raw): epoch seconds, or None (Python's)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject FastCheckType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "eir._fastpath.FastCheck",
    .tp_doc = "The common attach in C: a Decision, or None for the Python path (see eir.engine).",
    .tp_basicsize = sizeof(FastCheck),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FastCheck_init,
    .tp_dealloc = (destructor)FastCheck_dealloc,
    .tp_call = (ternaryfunc)FastCheck_call,
    .tp_methods = FastCheck_methods,
};

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT, "eir._fastpath", "Optional C accelerator of the common attach (eir.engine).", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__fastpath(void)
{
    if (PyType_Ready(&FastCheckType) < 0)
        return NULL;
    s_imei = PyUnicode_InternFromString("imei");
    s_msisdn = PyUnicode_InternFromString("msisdn");
    s_slot = PyUnicode_InternFromString("slot");
    s_time = PyUnicode_InternFromString("time");
    s_roamer = PyUnicode_InternFromString("roamer");
    py_time_mask = PyLong_FromLongLong(TIME_MASK);
    py_key_shift_obj = PyLong_FromLong(KEY_SHIFT);
    PyObject *one = PyLong_FromLong(1);
    PyObject *sixty_four = PyLong_FromLong(2 * TIME_BITS);
    py_count_one = (one && sixty_four) ? PyNumber_Lshift(one, sixty_four) : NULL;
    Py_XDECREF(one);
    Py_XDECREF(sixty_four);
    if (!s_imei || !s_msisdn || !s_slot || !s_time || !s_roamer || !py_time_mask || !py_key_shift_obj
            || !py_count_one)
        return NULL;
    PyObject *m = PyModule_Create(&fastpath_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&FastCheckType);
    if (PyModule_AddObject(m, "FastCheck", (PyObject *)&FastCheckType) < 0) {
        Py_DECREF(&FastCheckType);
        Py_DECREF(m);
        return NULL;
    }
    /* eir.engine checks these against eir.state before using the accelerator. */
    if (PyModule_AddIntConstant(m, "KEY_SHIFT", KEY_SHIFT) < 0 || PyModule_AddIntConstant(m, "SLOT_BITS", SLOT_BITS) < 0
            || PyModule_AddIntConstant(m, "TIME_BITS", TIME_BITS) < 0
            || PyModule_AddIntConstant(m, "MAX_FIELD_CHARS", MAX_FIELD_CHARS) < 0
            || PyModule_AddIntConstant(m, "MAX_SLOT", MAX_SLOT) < 0
            || PyModule_AddObject(m, "MIN_EPOCH", PyLong_FromLongLong(MIN_EPOCH)) < 0
            || PyModule_AddObject(m, "MAX_EPOCH", PyLong_FromLongLong(MAX_EPOCH)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
