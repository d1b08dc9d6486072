/* Internal header of eir._fastpath (eir/_fastpath_module.c: the object and the module; eir/_fastpath.c: the
 * common attach; eir/_fastpath_raw.c: the entry points that take raw values; eir/_fastpath_grace.c: the
 * restricted subscriber's running grace; eir/_fastpath_record.c: the attach recorded). Not a public API. */
#ifndef EIR_FASTPATH_H
#define EIR_FASTPATH_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_ident.h"

/* Raised whenever the interface with eir/fastpath.py or eir/state.py changes (eir.native.FASTPATH_ABI). */
#define EIR_FASTPATH_ABI 6
#define SLOT_BITS 5
#define TIME_BITS 32
#define TIME_MASK 0xFFFFFFFFLL
#define KEY_SHIFT 104
/* eir.query's bounds of a request value (checked against it by eir.fastpath) */
#define MAX_FIELD_CHARS 64
#define MAX_SLOT 16
#define MIN_EPOCH 946684800LL
#define MAX_EPOCH 4102444800LL

/* v as a C long long, consuming the reference: 0 done (*out), 1 not a plain int within 64 bits (left to
 * Python), -1 v is NULL (the error of the call that made it is set). */
static inline int
eir_fp_steal_ll(PyObject *v, long long *out)
{
    if (v == NULL)
        return -1;
    int rc = 1;
    if (PyLong_CheckExact(v)) {
        int overflow = 0;
        *out = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow || (*out == -1 && PyErr_Occurred()))
            PyErr_Clear();
        else
            rc = 0;
    }
    Py_DECREF(v);
    return rc;
}

/* A device column (array.array) read through the buffer protocol (eir/_layout.h): item size, signedness. */
typedef struct {
    int size;   /* 1, 2, 4 or 8; 0: not a buffer of plain integers (read with PySequence_GetItem) */
    int is_signed;
} Column;

struct eir_presh_map;   /* preshed's PreshMap object, read in place (eir/_layout.h) */
struct eir_histories;   /* the C table of histories (eir/_histable.h) */

/* The outcomes decided here with a shared Decision (eir.fastpath.FAST_REASONS, in this order), and what
 * eir_fp_decide_common answers otherwise. */
enum {
    D_OWNER, D_REGISTERED, D_ROAMER, D_MALFORMED, D_OPERATOR_SIM, D_PRE_REGISTRY_USER, D_BLACKLISTED, D_UNREGISTERED,
    D_COUNT
};
#define FP_DECLINED (-1) /* not decided here, nothing touched: the Python path decides */
#define FP_ERROR (-2)    /* a Python exception is set */
#define FP_MADE (-3)     /* decided with a new Decision (a deadline), left in FastCheck.made (eir/_outcomes.h) */

typedef struct {
    PyObject_HEAD
    PyObject *imei_map;     /* preshed PreshMap: imei key -> code */
    PyObject *flags;        /* array of device flags */
    PyObject *owner;        /* array of device owners (0 = none) */
    PyObject *histories;    /* dict or Histories table: imei -> packed int | History */
    PyObject *detections;   /* dict or Histories table: imei -> Detection */
    PyObject *grace_imeis;  /* dict or Histories table: imei -> count */
    PyObject *graces;       /* dict (imei, msisdn, kind) -> Grace */
    PyObject *observe;      /* state.observe (bound), or NULL when the packed update is done here */
    PyObject *memory_observe; /* MemoryState.observe bound to the state (the History form) */
    PyObject *decisions[D_COUNT]; /* the shared Decision of each outcome decided here */
    PyObject *query_type;   /* eir.model.Query: built for the batch items the common case does not cover */
    long long blocked_flag, cloned_flag; /* eir.registry device flags */
    unsigned long long key_mix; /* eir.registry.KEY_MIX */
    int restrict_non_owner;
    int clone_detect;
    long long clone_window_s; /* rules [clone] window (0: every possible switch-back left to Python) */
    int roamers_exempt;
    /* the raw entry point's parsing policy (rules [imei] and the numbering plan) */
    int deny_invalid_check_digit;
    int deny_test_imeis;
    char cc[IDENT_MAX_CC + 1];  /* the home country code */
    size_t cc_len;
    Py_ssize_t nml;             /* national mobile number length (0: none); -1: MSISDNs left to Python */
    /* more of the common case: unowned devices of this origin are REGISTERED (mask 0: none), and a
     * History (eir.state.History; NULL: every History declined) whose last subscriber is this one */
    long long origin_mask, pre_registry;
    PyObject *history_type;
    /* the memory layout of the common attach's data (see eir_fp_decide_common) */
    struct eir_presh_map *pmap; /* imei_map when read in place, else NULL */
    struct eir_histories *table; /* histories when it is a Histories table, else NULL (a dict) */
    struct eir_histories *det_table, *gi_table; /* detections, grace_imeis when Histories tables, else NULL */
    Column flags_col, owner_col;
    /* the Query's slots (imei, msisdn, slot, time, roamer) as offsets in a query_type instance; 0: unknown */
    Py_ssize_t q_off[5];
    vectorcallfunc vectorcall; /* FastCheck_vectorcall: fast(q) without an argument tuple */
    /* the running-window / running-activation outcomes (eir/_outcomes.h); marks NULL: not used */
    PyObject *marks, *windows, *activations, *ov_imeis;  /* MemoryState's dicts, Index._ov_imeis */
    PyObject *decision_type, *window_type, *activation_type;
    PyObject *r_traveler, *r_expired, *r_act_grace, *r_not_activated;
    PyObject *offsets, *imeis;  /* Index columns: a device's first IMEI (device_key) */
    Column offsets_col, imeis_col;
    long long reminder_before_s, repeat_deny_s;
    /* the last FP_MADE outcome, until its caller takes it: its reason and deadline (-1: none), or a shared
     * Decision (made_shared). The RPC batch packs the answer from these; a Decision object is built only
     * for a caller that wants one (eir_fp_made_decision). */
    PyObject *made_reason, *made_shared;
    long long made_deadline;
    /* the restricted subscriber's running grace (eir/_fastpath_grace.c); grace_kinds NULL: not used */
    PyObject *grace_kinds[2], *grace_reasons[2], *blocked_decisions[2]; /* [0] clone, [1] ownership */
    /* a restricted subscriber's exceptions (eir/_allowed.h); opsims NULL: not used (such attaches declined) */
    PyObject *opsims;                    /* Index._opsims: device -> operator SIM MSISDN per slot - 1 */
    PyObject *prereg_dev, *prereg_msisdn; /* Index columns: pre-registry users sorted by (device, MSISDN) */
    Column prereg_dev_col, prereg_msisdn_col;
    long long operator_sims_flag, pre_registry_users_flag;
    /* an unregistered IMEI's UNREGISTERED (eir/_unregistered.h); quotas NULL: a known subscriber declined */
    PyObject *quotas;                          /* MemoryState.quotas: identity -> start of its last window */
    PyObject *msisdn_key, *msisdn_row, *sub_nid; /* Index columns: MSISDN -> subscriber row -> national id */
    Column msisdn_key_col, msisdn_row_col, sub_nid_col;
    long long traveler_period_s;
    /* IMSIs (eir.identifiers.parse_imsi / imsi_is_home, Index.msisdn_for_imsi); imsi_key NULL: every IMSI
     * is left to Python */
    unsigned char home_mcc[125]; /* bit m set: the MCC m (a 3-digit member of the plan's home_mccs) is home */
    PyObject *imsi_key, *imsi_msisdn; /* the Index's IMSIs (sorted) and each one's MSISDN, read in place */
    Column imsi_key_col, imsi_msisdn_col;
} FastCheck;

/* One attach's values, parsed (parse_raw in eir/_fastpath_raw.c); imsi 0: none given. */
typedef struct {
    long long imei, sub, slot, time, imsi;
    int roamer;
} RawAttach;

/* A request value as received, from a Python object (eir/_fastpath_raw.c) or from msgpack bytes
 * (eir/_fastpath_wire.c), for eir_fp_parse_fields. */
enum { F_NONE, F_STR, F_INT, F_FLOAT, F_OTHER };
typedef struct {
    int kind;      /* F_NONE: None/nil; F_STR: ASCII, at most MAX_FIELD_CHARS; F_OTHER: any other value */
    const char *s; /* F_STR: its bytes */
    size_t n;
    long long v;   /* F_INT */
    double d;      /* F_FLOAT */
} RawField;

/* One attach's fields parsed as eir.query.build_query does, for the common forms: 1 parsed into *a, 0 not
 * (a form left to Python, or a value Python refuses: it raises the error). A NULL time is now; take_imsi 0
 * leaves every IMSI to Python (see parse_raw in eir/_fastpath_raw.c). */
int eir_fp_parse_fields(FastCheck *self, const RawField *imei, const RawField *msisdn, const RawField *slot,
                        const RawField *time, long long now, const RawField *imsi, int take_imsi, RawAttach *a);

/* A check_batch item after eir_fp_parse_items (its slot in the batch's bytearray). */
enum { ITEM_PYTHON = 0, ITEM_HOME = 1, ITEM_ROAMER = 2 };
typedef struct {
    RawAttach a;
    long long kind; /* ITEM_PYTHON (zeroed: parsed by Python, its Query in the queries list), HOME, ROAMER */
} BatchItem;

int eir_fp_decide_common(FastCheck *self, long long imei, long long sub, long long slot, long long t, int roamer,
                         int ints, PyObject *q);
/* As eir_fp_decide_common, and with more set also the outcomes with a new Decision (FP_MADE: its Decision
 * in *made when made is not NULL, else left in the FastCheck's made_* fields). */
int eir_fp_decide(FastCheck *self, long long imei, long long sub, long long slot, long long t, int roamer, int more,
                  PyObject **made);
/* Prefetch a later attach's data (stage 1: map and history cells; 2: the device's columns). */
void eir_fp_prefetch(FastCheck *self, long long imei, int stage);
/* The decision's interned names and numbers, made once at module init (eir/_fastpath.c). */
int eir_fp_decide_init(void);
/* eir/_fastpath_record.c: the attach recorded as Engine.check records it (imei_obj: the IMEI as an int; q: the
 * Query, read for its slot and time when ints is 0). 0 done, -1 error. */
int eir_fp_record_init(void);
int eir_fp_record(FastCheck *self, PyObject *imei_obj, long long imei, long long sub, long long slot, long long t,
                  int ints, PyObject *q);
/* fast(q) without an argument tuple: FastCheck's vectorcall (eir/_fastpath.c). */
PyObject *eir_fp_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames);
/* eir/_fastpath_grace.c */
int eir_fp_grace_init(void);
int eir_fp_restricted_set(FastCheck *self, PyObject *o);
int eir_fp_restricted(FastCheck *self, PyObject *imei_obj, int clone, long long sub, long long t,
                      long long *deadline);
/* The outcome of an FP_MADE (eir/_fastpath.c): made_set keeps (reason, deadline), made_set_shared a shared
 * Decision; eir_fp_made_decision returns it as a Decision (a new reference, NULL on error). */
void eir_fp_made_set(FastCheck *self, PyObject *reason, long long deadline);
void eir_fp_made_set_shared(FastCheck *self, PyObject *decision);
PyObject *eir_fp_made_decision(FastCheck *self);
PyObject *eir_fp_check_raw(FastCheck *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *eir_fp_decide_raw(FastCheck *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *eir_fp_parse_items(FastCheck *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *eir_fp_parse_wire_items(FastCheck *self, PyObject *const *args, Py_ssize_t nargs); /* _fastpath_wire.c */
PyObject *eir_fp_decide_items(FastCheck *self, PyObject *const *args, Py_ssize_t nargs);
extern PyMethodDef eir_fp_parse_methods[];
extern PyMethodDef eir_fp_wire_methods[]; /* eir/_fastpath_wire.c */

#endif /* EIR_FASTPATH_H */
