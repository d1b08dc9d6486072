/* eir/_replayio.h: the Replayer of eir._replayio, shared by _replayio.c (reading) and _replayio_out.c
 * (counting and writing the decisions). */
#ifndef EIR_REPLAYIO_H
#define EIR_REPLAYIO_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_ident.h"

/* Raised whenever the interface with eir/replay_fast.py changes (eir.native.REPLAYIO_ABI). */
#define EIR_REPLAYIO_ABI 1
#define MAX_WIDTH 64
#define MAX_FAST_LINE 4096 /* longer lines: the csv module (its field size limit is the reference) */
#define MAX_REASONS 64
#define FLUSH_BYTES (1 << 20)

/* interned attribute names, set at module init */
extern PyObject *rio_s_time, *rio_s_msisdn, *rio_s_slot, *rio_s_reason, *rio_s_verdict, *rio_s_deadline;

typedef struct {
    PyObject *reason; /* identity key, kept alive by Replayer.keep */
    PyObject *tail;   /* bytes: ,"verdict":..,"reason":..,"deadline": */
    Py_ssize_t n;
} ReasonSlot;

typedef struct {
    PyObject_HEAD
    int cols[5];            /* time, imei, msisdn, slot, imsi: column index or -1 */
    int width;
    PyObject *row;          /* (n, time, imei, msisdn, slot, imsi) -> (query, decision) | None */
    PyObject *line_fallback; /* (n, line bytes) -> (imei, query, decision) | None */
    PyObject *bad_width;    /* (n, columns) -> None: reports the bad row */
    PyObject *format_line;  /* (imei, query, decision) -> str: the reference line */
    PyObject *tail_of;      /* reason -> bytes */
    PyObject *write;        /* file.write, or None: no decision file */
    PyObject *allow, *warn; /* eir.model.Verdict members */
    PyObject *warned, *denied; /* sets of MSISDNs */
    PyObject *keep;         /* list holding the reasons seen (their slots borrow them) */
    PyObject *decide_raw;   /* FastCheck.decide_raw of the engine, or None */
    PyObject *check;        /* Engine.check, for the Query decide_raw returns */
    PyObject *query_type;   /* eir.model.Query */
    char cc[IDENT_MAX_CC + 1]; /* the numbering plan, for the MSISDN of a decide_raw row */
    size_t cc_len;
    Py_ssize_t nml;
    long long line;         /* last line number read (the header is line 1) */
    long long rows;         /* rows decided */
    int stopped;            /* feed() stopped before a line that needs the csv module */
    ReasonSlot slots[MAX_REASONS];
    int n_slots;
    char *buf;
    Py_ssize_t len, cap;
} Replayer;

/* _replayio_out.c */
int rio_flush(Replayer *self);
int rio_decided(Replayer *self, PyObject *q, PyObject *d, const char *imei_s, Py_ssize_t imei_n,
                PyObject *imei_obj);
int rio_raw_decided(Replayer *self, PyObject *d, long long t, const char *imei_s, Py_ssize_t imei_n,
                    const char *msisdn_s, Py_ssize_t msisdn_n, const char *slot_s, Py_ssize_t slot_n);

#endif /* EIR_REPLAYIO_H */
