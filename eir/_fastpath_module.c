/* eir._fastpath, the object and the module: FastCheck's construction from the engine's bundle and state
 * (eir.fastpath.accelerator passes them), its methods, and the module with the Histories table type.
 * The decision itself is in eir/_fastpath.c, the raw entry points in eir/_fastpath_raw.c, the restricted
 * subscriber's running grace in eir/_fastpath_grace.c, the recording of an attach in eir/_fastpath_record.c.
 */
#include "_fastpath.h"
#include <structmember.h>

#include "_histype.h"
#include "_layout.h"

static void outcomes_clear(FastCheck *self);
static void exceptions_clear(FastCheck *self);
static void unregistered_clear(FastCheck *self);
static void imsi_clear(FastCheck *self);

static void
FastCheck_dealloc(FastCheck *self)
{
    Py_XDECREF(self->imei_map);
    Py_XDECREF(self->flags);
    Py_XDECREF(self->owner);
    Py_XDECREF(self->histories);
    Py_XDECREF(self->detections);
    Py_XDECREF(self->grace_imeis);
    Py_XDECREF(self->graces);
    Py_XDECREF(self->observe);
    Py_XDECREF(self->memory_observe);
    for (int k = 0; k < D_COUNT; k++)
        Py_XDECREF(self->decisions[k]);
    Py_XDECREF(self->query_type);
    Py_XDECREF(self->history_type);
    outcomes_clear(self);
    eir_fp_restricted_set(self, Py_None);
    exceptions_clear(self);
    unregistered_clear(self);
    imsi_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Where query_type keeps each attribute fast_check reads: the offset of its __slots__ member (an object
 * slot), or 0 when the type does not keep it so (the attribute is then read by name). */
static void
query_offsets(FastCheck *self)
{
    static const char *names[5] = {"imei", "msisdn", "slot", "time", "roamer"};
    for (int i = 0; i < 5; i++) {
        self->q_off[i] = 0;
        if (self->query_type == NULL || !PyType_Check(self->query_type))
            continue;
        PyObject *d = PyDict_GetItemString(((PyTypeObject *)self->query_type)->tp_dict, names[i]); /* borrowed */
        if (d != NULL && Py_IS_TYPE(d, &PyMemberDescr_Type)) {
            PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
            if (m->type == T_OBJECT_EX && !(m->flags & READONLY))
                self->q_off[i] = m->offset;
        }
    }
}

static void
outcomes_clear(FastCheck *self)
{
    Py_CLEAR(self->marks);
    Py_CLEAR(self->windows);
    Py_CLEAR(self->activations);
    Py_CLEAR(self->ov_imeis);
    Py_CLEAR(self->decision_type);
    Py_CLEAR(self->window_type);
    Py_CLEAR(self->activation_type);
    Py_CLEAR(self->r_traveler);
    Py_CLEAR(self->r_expired);
    Py_CLEAR(self->r_act_grace);
    Py_CLEAR(self->r_not_activated);
    Py_CLEAR(self->offsets);
    Py_CLEAR(self->imeis);
    Py_CLEAR(self->made_reason);
    Py_CLEAR(self->made_shared);
}

/* outcomes=(marks, windows, activations, Decision, TravelerWindow, Activation, TRAVELER_ALLOWANCE,
 * ALLOWANCE_EXPIRED, ACTIVATION_GRACE, NOT_ACTIVATED, reminder_before_s, repeat_deny_notice_s,
 * Index offsets column, Index imeis column, Index._ov_imeis), or None (eir/_outcomes.h not used). */
static int
outcomes_set(FastCheck *self, PyObject *o)
{
    outcomes_clear(self);
    if (o == Py_None)
        return 0;
    PyObject *marks, *windows, *activations, *decision_type, *window_type, *activation_type;
    PyObject *r1, *r2, *r3, *r4, *offsets, *imeis, *ov_imeis;
    long long reminder_before_s, repeat_deny_s;
    if (!PyArg_ParseTuple(o, "O!O!O!OO!O!OOOOLLOOO!;outcomes", &PyDict_Type, &marks, &PyDict_Type, &windows,
                          &PyDict_Type, &activations, &decision_type, &PyType_Type, &window_type, &PyType_Type,
                          &activation_type, &r1, &r2, &r3, &r4, &reminder_before_s, &repeat_deny_s, &offsets,
                          &imeis, &PyDict_Type, &ov_imeis))
        return -1;
    self->marks = Py_NewRef(marks);
    self->windows = Py_NewRef(windows);
    self->activations = Py_NewRef(activations);
    self->ov_imeis = Py_NewRef(ov_imeis);
    self->decision_type = Py_NewRef(decision_type);
    self->window_type = Py_NewRef(window_type);
    self->activation_type = Py_NewRef(activation_type);
    self->r_traveler = Py_NewRef(r1);
    self->r_expired = Py_NewRef(r2);
    self->r_act_grace = Py_NewRef(r3);
    self->r_not_activated = Py_NewRef(r4);
    self->offsets = Py_NewRef(offsets);
    self->imeis = Py_NewRef(imeis);
    self->offsets_col = column_of(offsets);
    self->imeis_col = column_of(imeis);
    self->reminder_before_s = reminder_before_s;
    self->repeat_deny_s = repeat_deny_s;
    return 0;
}

static void
exceptions_clear(FastCheck *self)
{
    Py_CLEAR(self->opsims);
    Py_CLEAR(self->prereg_dev);
    Py_CLEAR(self->prereg_msisdn);
    self->operator_sims_flag = self->pre_registry_users_flag = 0;
}

/* exceptions=(Index._opsims, the prereg_dev column, the prereg_msisdn column, HAS_OPERATOR_SIMS,
 * HAS_PRE_REGISTRY_USERS) (eir.index.Index.exception_data), or None (eir/_allowed.h: every restricted
 * subscriber who might be an exception is left to Python). */
static int
exceptions_set(FastCheck *self, PyObject *o)
{
    exceptions_clear(self);
    if (o == Py_None)
        return 0;
    PyObject *opsims, *dev, *msisdn;
    long long ops, pre_users;
    if (!PyArg_ParseTuple(o, "O!OOLL;exceptions", &PyDict_Type, &opsims, &dev, &msisdn, &ops, &pre_users))
        return -1;
    if (ops == 0 || pre_users == 0) {
        PyErr_SetString(PyExc_ValueError, "exceptions: device flags must be non-zero");
        return -1;
    }
    self->opsims = Py_NewRef(opsims);
    self->prereg_dev = Py_NewRef(dev);
    self->prereg_msisdn = Py_NewRef(msisdn);
    self->prereg_dev_col = column_of(dev);
    self->prereg_msisdn_col = column_of(msisdn);
    self->operator_sims_flag = ops;
    self->pre_registry_users_flag = pre_users;
    return 0;
}

static void
unregistered_clear(FastCheck *self)
{
    Py_CLEAR(self->quotas);
    Py_CLEAR(self->msisdn_key);
    Py_CLEAR(self->msisdn_row);
    Py_CLEAR(self->sub_nid);
    self->traveler_period_s = 0;
}

/* unregistered=(MemoryState.quotas, the msisdn_key, msisdn_row and sub_national_id columns
 * (eir.index.Index.national_id_columns), traveler_period_s), or None (eir/_unregistered.h: a known
 * subscriber's attach of an unregistered IMEI is left to Python). */
static int
unregistered_set(FastCheck *self, PyObject *o)
{
    unregistered_clear(self);
    if (o == Py_None)
        return 0;
    PyObject *quotas, *key, *row, *nid;
    long long period;
    if (!PyArg_ParseTuple(o, "O!OOOL;unregistered", &PyDict_Type, &quotas, &key, &row, &nid, &period))
        return -1;
    self->quotas = Py_NewRef(quotas);
    self->msisdn_key = Py_NewRef(key);
    self->msisdn_row = Py_NewRef(row);
    self->sub_nid = Py_NewRef(nid);
    self->msisdn_key_col = column_of(key);
    self->msisdn_row_col = column_of(row);
    self->sub_nid_col = column_of(nid);
    self->traveler_period_s = period;
    return 0;
}

static void
imsi_clear(FastCheck *self)
{
    Py_CLEAR(self->imsi_key);
    Py_CLEAR(self->imsi_msisdn);
    memset(self->home_mcc, 0, sizeof self->home_mcc);
}

/* imsi=(home_mccs, imsi_key, imsi_msisdn): the numbering plan's home MCCs (an iterable of str) and the
 * Index's IMSI columns (imsi_columns()), or None: IMSIs are then left to Python, as they are when a column
 * is not a buffer of integers that read as the Python ints do (an unsigned 64-bit one may not). */
static int
imsi_set(FastCheck *self, PyObject *o)
{
    imsi_clear(self);
    if (o == Py_None)
        return 0;
    PyObject *mccs, *keys, *msisdns;
    if (!PyArg_ParseTuple(o, "OOO;imsi", &mccs, &keys, &msisdns))
        return -1;
    PyObject *it = PyObject_GetIter(mccs);
    if (it == NULL)
        return -1;
    PyObject *m;
    while ((m = PyIter_Next(it)) != NULL) {
        /* an IMSI's MCC is str(imsi)[:3], three ASCII digits: no other member can equal it */
        if (PyUnicode_Check(m) && PyUnicode_IS_ASCII(m) && PyUnicode_GET_LENGTH(m) == 3
                && ident_all_digits((const char *)PyUnicode_1BYTE_DATA(m), 3)) {
            const char *d = (const char *)PyUnicode_1BYTE_DATA(m);
            int mcc = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
            self->home_mcc[mcc >> 3] |= (unsigned char)(1 << (mcc & 7));
        }
        Py_DECREF(m);
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return -1;
    Column kc = column_of(keys), mc = column_of(msisdns);
    if (kc.size == 0 || mc.size == 0 || (kc.size == 8 && !kc.is_signed) || (mc.size == 8 && !mc.is_signed))
        return 0;
    self->imsi_key = Py_NewRef(keys);
    self->imsi_msisdn = Py_NewRef(msisdns);
    self->imsi_key_col = kc;
    self->imsi_msisdn_col = mc;
    return 0;
}

static int
FastCheck_init(FastCheck *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"imei_map", "flags", "owner", "histories", "detections", "grace_imeis", "graces",
                             "observe", "memory_observe", "decisions", "blocked_flag", "cloned_flag", "key_mix",
                             "restrict_non_owner", "clone_detect", "roamers_exempt", "deny_invalid_check_digit",
                             "deny_test_imeis", "country_code", "national_mobile_length", "query_type",
                             "origin_mask", "pre_registry_origin", "history_type", "outcomes", "restricted",
                             "exceptions", "unregistered", "imsi", "clone_window_s", NULL};
    PyObject *imei_map, *flags, *owner, *histories, *detections, *grace_imeis, *graces, *observe, *memory_observe;
    PyObject *decisions, *query_type = Py_None;
    long long blocked, cloned;
    unsigned long long key_mix;
    int restrict_non_owner, clone_detect, roamers_exempt, deny_check = 1, deny_test = 1;
    const char *cc = "98";
    Py_ssize_t cc_len = 2, nml = 10;
    long long origin_mask = 0, pre_registry = 0;
    PyObject *history_type = NULL, *outcomes = Py_None, *restricted = Py_None, *exceptions = Py_None;
    PyObject *unregistered = Py_None, *imsi = Py_None;
    long long clone_window_s = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOOO!OOO!LLKppp|pps#nOLLO!OOOOOL", kwlist, &imei_map, &flags,
                                     &owner, &histories, &detections, &grace_imeis,
                                     &PyDict_Type, &graces, &observe, &memory_observe, &PyTuple_Type, &decisions,
                                     &blocked, &cloned, &key_mix, &restrict_non_owner, &clone_detect,
                                     &roamers_exempt, &deny_check, &deny_test, &cc, &cc_len, &nml, &query_type,
                                     &origin_mask, &pre_registry, &PyType_Type, &history_type, &outcomes,
                                     &restricted, &exceptions, &unregistered, &imsi, &clone_window_s))
        return -1;
    if (outcomes_set(self, outcomes) < 0 || eir_fp_restricted_set(self, restricted) < 0
            || exceptions_set(self, exceptions) < 0 || unregistered_set(self, unregistered) < 0
            || imsi_set(self, imsi) < 0)
        return -1;
    if (PyTuple_GET_SIZE(decisions) != D_COUNT) {
        PyErr_SetString(PyExc_ValueError, "decisions: one per eir.fastpath.FAST_REASONS");
        return -1;
    }
    if (!PyDict_CheckExact(histories) && !Py_IS_TYPE(histories, &HistoriesType)) {
        PyErr_SetString(PyExc_TypeError, "histories must be a dict or a Histories table");
        return -1;
    }
    /* MemoryState keys these by IMEI core too: the same table when the accelerator is built (eir.state) */
    if ((!PyDict_CheckExact(detections) && !Py_IS_TYPE(detections, &HistoriesType))
            || (!PyDict_CheckExact(grace_imeis) && !Py_IS_TYPE(grace_imeis, &HistoriesType))) {
        PyErr_SetString(PyExc_TypeError, "detections and grace_imeis must be dicts or Histories tables");
        return -1;
    }
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
    SET(graces, graces);
    if (observe == Py_None) {
        SET(observe, (PyObject *)NULL);
    } else {
        SET(observe, observe);
    }
    SET(memory_observe, memory_observe);
    for (int k = 0; k < D_COUNT; k++)
        SET(decisions[k], PyTuple_GET_ITEM(decisions, k));
    SET(query_type, query_type);
    SET(history_type, history_type);
#undef SET
    self->blocked_flag = blocked;
    self->cloned_flag = cloned;
    self->roamers_exempt = roamers_exempt;
    self->key_mix = key_mix;
    self->restrict_non_owner = restrict_non_owner;
    self->clone_detect = clone_detect;
    self->clone_window_s = clone_window_s;
    self->origin_mask = origin_mask;
    self->pre_registry = pre_registry;
    self->table = Py_IS_TYPE(histories, &HistoriesType) ? (Histories *)histories : NULL;
    self->det_table = Py_IS_TYPE(detections, &HistoriesType) ? (Histories *)detections : NULL;
    self->gi_table = Py_IS_TYPE(grace_imeis, &HistoriesType) ? (Histories *)grace_imeis : NULL;
    self->flags_col = column_of(flags);
    self->owner_col = column_of(owner);
    int direct = presh_direct(imei_map);
    if (direct < 0)
        return -1;
    self->pmap = direct ? (PreshMapObject *)imei_map : NULL;
    query_offsets(self);
    self->vectorcall = eir_fp_vectorcall;
    if (self->pmap != NULL)
        advise_huge(self->pmap->c_map->cells, (size_t)self->pmap->c_map->length * sizeof(PreshCell));
    advise_huge_buffer(flags);
    advise_huge_buffer(owner);
    return 0;
}

static PyMethodDef FastCheck_methods[] = {
    {"check_raw", (PyCFunction)(void (*)(void))eir_fp_check_raw, METH_FASTCALL,
     "check_raw(imei, msisdn, slot, time, imsi=None): the Decision of the common attach from raw values, "
     "or None (the caller builds a Query and runs the Python path)."},
    {"decide_raw", (PyCFunction)(void (*)(void))eir_fp_decide_raw, METH_FASTCALL,
     "decide_raw(imei, msisdn, slot, time, imsi=None): as check_raw, but the Query of values it parses whose "
     "attach is not the common one (for Engine.check); None for values it does not parse."},
    {"parse_items", (PyCFunction)(void (*)(void))eir_fp_parse_items, METH_FASTCALL,
     "parse_items(items, start, end, now, buf) -> i: parse check_batch items start.. into buf until the "
     "first one left to Python (i), or end."},
    {"parse_wire_items", (PyCFunction)(void (*)(void))eir_fp_parse_wire_items, METH_FASTCALL,
     "parse_wire_items(data, pos, start, end, now, buf) -> (i, pos, stop): as parse_items, for the items of a "
     "check_batch read from its bytes (eir/transports/rpc_wire.py); data[pos:stop] is item i, left to Python."},
    {"decide_items", (PyCFunction)(void (*)(void))eir_fp_decide_items, METH_FASTCALL,
     "decide_items(buf, queries, start, end, parts, check_one, fast_parts, made_parts) -> counts: decide "
     "parsed items in order, appending each answer part (fast_parts[k] for FAST_REASONS[k]); check_one(query) "
     "answers the others."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject FastCheckType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "eir._fastpath.FastCheck",
    .tp_doc = "The common attach in C: a Decision, or None for the Python path (see eir.engine).",
    .tp_basicsize = sizeof(FastCheck),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FastCheck_init,
    .tp_dealloc = (destructor)FastCheck_dealloc,
    .tp_vectorcall_offset = offsetof(FastCheck, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_methods = FastCheck_methods,
};

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT, "eir._fastpath", "Optional C accelerator of the common attach (eir.engine).", -1,
    eir_fp_parse_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__fastpath(void)
{
    if (PyType_Ready(&FastCheckType) < 0 || PyType_Ready(&HistoriesType) < 0 || eir_fp_grace_init() < 0
            || eir_fp_decide_init() < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastpath_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddFunctions(m, eir_fp_wire_methods) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&FastCheckType);
    if (PyModule_AddObject(m, "FastCheck", (PyObject *)&FastCheckType) < 0) {
        Py_DECREF(&FastCheckType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&HistoriesType);
    if (PyModule_AddObject(m, "Histories", (PyObject *)&HistoriesType) < 0) {
        Py_DECREF(&HistoriesType);
        Py_DECREF(m);
        return NULL;
    }
    /* eir.engine checks these against eir.state before using the accelerator. */
    if (PyModule_AddIntConstant(m, "ABI", EIR_FASTPATH_ABI) < 0
            || PyModule_AddIntConstant(m, "KEY_SHIFT", KEY_SHIFT) < 0 || PyModule_AddIntConstant(m, "SLOT_BITS", SLOT_BITS) < 0
            || PyModule_AddIntConstant(m, "TIME_BITS", TIME_BITS) < 0
            || PyModule_AddIntConstant(m, "MAX_FIELD_CHARS", MAX_FIELD_CHARS) < 0
            || PyModule_AddIntConstant(m, "MAX_SLOT", MAX_SLOT) < 0
            || PyModule_AddIntConstant(m, "MAX_OBSERVATIONS", MAX_OBSERVATIONS) < 0
            || PyModule_AddIntConstant(m, "BATCH_ITEM_SIZE", (long)sizeof(BatchItem)) < 0
            || PyModule_AddObject(m, "MIN_EPOCH", PyLong_FromLongLong(MIN_EPOCH)) < 0
            || PyModule_AddObject(m, "MAX_EPOCH", PyLong_FromLongLong(MAX_EPOCH)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
