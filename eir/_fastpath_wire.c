/* eir._fastpath, a check_batch request read from its msgpack bytes (eir/transports/rpc_wire.py).
 *
 * wire_head and wire_scan split a message into (msgid, item bytes) without making a Python object per
 * item; parse_wire_items parses the items of such a message into a batch's BatchItem array as
 * parse_items does for decoded lists (eir/_fastpath_raw.c). The msgpack library stays the reference
 * decoder: these functions only recognise
 *
 *     [0, msgid (uint32), "check_batch" (fixstr), [[item, ...]]]
 *
 * whose items are each a "safe" msgpack value: a scalar, or an array of at most 15 scalars, the scalars
 * being nil, a bool, an int, a float, or an ASCII str of at most 255 bytes. msgpack decodes every such
 * value without an error (no UTF-8 to refuse, no nesting, no map keys, no extension types), to the
 * same object whatever surrounds it, so a message made only of them decodes to the Request msgpack
 * would give. Anything else is declined: the caller hands the whole message to msgpack, which then
 * decodes it or raises exactly what it raised before.
 *
 * Bounds: every read is checked against the buffer's length; nothing recurses (items are one level
 * deep); a partial message is resumed where the last call stopped (the state is the position, the items
 * left and the elements left in the current item), so bytes that arrive one at a time cost a constant
 * each (the only re-read is the header of an element still incomplete, or the <= 24 header bytes).
 */
#include "_fastpath.h"

#define WIRE_MAX_STR 255 /* str8 */

typedef const unsigned char *bytes_t;

static unsigned long long
be(bytes_t p, int width)
{
    unsigned long long v = 0;
    for (int k = 0; k < width; k++)
        v = (v << 8) | p[k];
    return v;
}

/* What one scalar is: its length in bytes (> 0), 0 not complete in avail bytes, -1 not a safe scalar.
 * *plain says it is nil, a positive int or an ASCII str of at most MAX_FIELD_CHARS bytes: the forms
 * parse_wire_items reads (*str and *n then give a str's bytes). */
static inline __attribute__((always_inline)) Py_ssize_t
scalar(bytes_t p, Py_ssize_t avail, int *plain)
{
    if (avail < 1)
        return 0;
    unsigned char h = p[0];
    *plain = 1;
    if (h <= 0x7f || h == 0xc0)
        return 1;
    if (h >= 0xcc && h <= 0xcf) { /* uint 8..64 */
        Py_ssize_t len = 1 + (1 << (h - 0xcc));
        return avail >= len ? len : 0;
    }
    Py_ssize_t n, head;
    if (h >= 0xa0 && h <= 0xbf) {
        n = h & 0x1f;
        head = 1;
    } else if (h == 0xd9) {
        if (avail < 2)
            return 0;
        n = p[1];
        head = 2;
    } else {
        *plain = 0;
        if (h >= 0xe0 || h == 0xc2 || h == 0xc3) /* negative fixint, false, true */
            return 1;
        if (h >= 0xd0 && h <= 0xd3) { /* int 8..64 */
            Py_ssize_t len = 1 + (1 << (h - 0xd0));
            return avail >= len ? len : 0;
        }
        if (h == 0xca || h == 0xcb) /* float 32, 64 */
            return avail >= (h == 0xca ? 5 : 9) ? (h == 0xca ? 5 : 9) : 0;
        return -1;
    }
    if (avail < head + n)
        return 0;
    /* ASCII, 8 bytes at a time (the last word overlapping the one before); otherwise msgpack's UTF-8 decoder
     * judges it */
    bytes_t s = p + head;
    unsigned long long acc = 0, w;
    if (n >= 8) {
        for (Py_ssize_t k = 0; k + 8 < n; k += 8) {
            memcpy(&w, s + k, 8);
            acc |= w;
        }
        memcpy(&w, s + n - 8, 8);
        acc |= w;
    } else {
        for (Py_ssize_t k = 0; k < n; k++)
            acc |= s[k];
    }
    if (acc & 0x8080808080808080ULL)
        return -1;
    *plain = n <= MAX_FIELD_CHARS;
    return head + n;
}

static int
get_buffer(PyObject *o, Py_buffer *view)
{
    return PyObject_GetBuffer(o, view, PyBUF_SIMPLE);
}

/* wire_head(data, pos, max_items) -> (msgid, n, items_pos) when data[pos:] starts with a complete
 * check_batch header of at most max_items items; 0 when the bytes so far could still be one; -1 when
 * they cannot (the message is msgpack's). */
static PyObject *
wire_head(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t pos, max_items;
    if (nargs != 3 || (pos = PyLong_AsSsize_t(args[1])) < 0 || (max_items = PyLong_AsSsize_t(args[2])) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "wire_head(data, pos >= 0, max_items >= 0)");
        return NULL;
    }
    Py_buffer view;
    if (get_buffer(args[0], &view) < 0)
        return NULL;
    static const unsigned char method[] = "\xab" "check_batch";
    bytes_t p = (bytes_t)view.buf;
    Py_ssize_t end = view.len, i = pos;
    long verdict = 0; /* 0 need more, -1 declined */
    unsigned long long msgid = 0, n = 0;
    if (i >= end)
        goto out;
    if (p[i++] != 0x94)
        goto declined;
    if (i >= end)
        goto out;
    if (p[i++] != 0x00)
        goto declined;
    if (i >= end)
        goto out;
    unsigned char h = p[i++];
    if (h <= 0x7f) {
        msgid = h;
    } else if (h >= 0xcc && h <= 0xce) {
        int width = 1 << (h - 0xcc);
        if (end - i < width)
            goto out;
        msgid = be(p + i, width);
        i += width;
    } else {
        goto declined;
    }
    for (size_t k = 0; k < sizeof method - 1; k++) {
        if (i >= end)
            goto out;
        if (p[i++] != method[k])
            goto declined;
    }
    if (i >= end)
        goto out;
    if (p[i++] != 0x91)
        goto declined;
    if (i >= end)
        goto out;
    h = p[i++];
    if (h >= 0x90 && h <= 0x9f) {
        n = h & 0x0f;
    } else if (h == 0xdc || h == 0xdd) {
        int width = h == 0xdc ? 2 : 4;
        if (end - i < width)
            goto out;
        n = be(p + i, width);
        i += width;
    } else {
        goto declined;
    }
    if (n > (unsigned long long)max_items)
        goto declined; /* msgpack's own bound (max_array_len) or the batch limit: its error */
    PyBuffer_Release(&view);
    return Py_BuildValue("(KKn)", msgid, n, i);
declined:
    verdict = -1;
out:
    PyBuffer_Release(&view);
    return PyLong_FromLong(verdict);
}

/* wire_scan(data, pos, items_left, elems_left) -> (pos, items_left, elems_left): go over the items of a
 * check_batch from data[pos:] (elems_left: elements still to read of the item pos is in, 0 at an item's
 * start) until they are all read (items_left == elems_left == 0) or the bytes end (a resumable state);
 * items_left -1: an item that is not a safe value (the message is msgpack's). */
static PyObject *
wire_scan(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t pos, left, elems;
    if (nargs != 4 || (pos = PyLong_AsSsize_t(args[1])) < 0 || (left = PyLong_AsSsize_t(args[2])) < 0
            || (elems = PyLong_AsSsize_t(args[3])) < 0 || elems > 15 || (elems > 0 && left == 0)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "wire_scan(data, pos, items_left, elems_left): not a scan state");
        return NULL;
    }
    Py_buffer view;
    if (get_buffer(args[0], &view) < 0)
        return NULL;
    bytes_t p = (bytes_t)view.buf;
    Py_ssize_t end = view.len;
    int plain;
    while (pos < end && (left > 0 || elems > 0)) {
        if (elems == 0) { /* an item's start: left counts it until its last element is read */
            unsigned char h = p[pos];
            if (h >= 0x90 && h <= 0x9f) {
                pos++;
                elems = h & 0x0f;
                if (elems == 0)
                    left--;
                continue;
            }
        }
        Py_ssize_t len = scalar(p + pos, end - pos, &plain);
        if (len < 0) {
            left = -1;
            break;
        }
        if (len == 0)
            break; /* resumed at this scalar's start */
        pos += len;
        if (elems == 0 || --elems == 0)
            left--;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(nnn)", pos, left, left < 0 ? 0 : elems);
}

/* The plain scalar at p (its length, from scalar()) as a RawField. */
static RawField
wire_field(bytes_t p, Py_ssize_t len)
{
    RawField f = {.kind = F_OTHER};
    unsigned char h = p[0];
    if (h == 0xc0) {
        f.kind = F_NONE;
    } else if (h <= 0x7f || (h >= 0xcc && h <= 0xcf)) {
        unsigned long long v = h <= 0x7f ? h : be(p + 1, (int)len - 1);
        if (v <= (unsigned long long)LLONG_MAX) {
            f.kind = F_INT;
            f.v = (long long)v;
        }
    } else { /* an ASCII str of at most MAX_FIELD_CHARS bytes */
        Py_ssize_t head = h == 0xd9 ? 2 : 1;
        f.kind = F_STR;
        f.s = (const char *)p + head;
        f.n = (size_t)(len - head);
    }
    return f;
}

/* parse_wire_items(data, pos, start, end, now, buf) -> (i, pos, stop): parse the check_batch items
 * start..end-1 whose bytes begin at data[pos] (a bytes object wire_scan read) into buf, as parse_items
 * does: stops at the first item i < end it leaves to Python, which is data[pos:stop] (an unusual form, an
 * IMSI, or an error Python raises); i == end when all are parsed (then pos == stop). */
PyObject *
eir_fp_parse_wire_items(FastCheck *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t pos, i, end;
    long long now;
    if (nargs != 6 || !PyBytes_CheckExact(args[0]) || !PyByteArray_CheckExact(args[5])) {
        PyErr_SetString(PyExc_TypeError, "parse_wire_items(data: bytes, pos, start, end, now, buf: bytearray)");
        return NULL;
    }
    /* one at a time: a conversion must not run with the previous one's error set, and none may be skipped */
    if (((pos = PyLong_AsSsize_t(args[1])) == -1 && PyErr_Occurred())
            || ((i = PyLong_AsSsize_t(args[2])) == -1 && PyErr_Occurred())
            || ((end = PyLong_AsSsize_t(args[3])) == -1 && PyErr_Occurred())
            || ((now = PyLong_AsLongLong(args[4])) == -1 && PyErr_Occurred()))
        return NULL;
    bytes_t p = (bytes_t)PyBytes_AS_STRING(args[0]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    if (pos < 0 || pos > size || i < 0 || i > end
            || PyByteArray_GET_SIZE(args[5]) < end * (Py_ssize_t)sizeof(BatchItem)) {
        PyErr_SetString(PyExc_ValueError, "parse_wire_items: pos, start/end or buf outside the batch");
        return NULL;
    }
    /* No Python code runs in this loop: data and buf cannot change under it. */
    BatchItem *slots = (BatchItem *)PyByteArray_AS_STRING(args[5]);
    Py_ssize_t stop = pos;
    for (; i < end; i++, pos = stop) {
        RawField f[5] = {{.kind = F_NONE}, {.kind = F_NONE}, {.kind = F_NONE}, {.kind = F_NONE}, {.kind = F_NONE}};
        int plain = 0, all_plain = 1, k = 0;
        stop = pos;
        if (stop < size && p[stop] >= 0x90 && p[stop] <= 0x9f) {
            k = p[stop++] & 0x0f;
            for (int j = 0; j < k; j++) {
                Py_ssize_t len = scalar(p + stop, size - stop, &plain);
                if (len <= 0)
                    goto not_read;
                if (plain && j < 5)
                    f[j] = wire_field(p + stop, len);
                all_plain &= plain;
                stop += len;
            }
        } else {
            Py_ssize_t len = scalar(p + stop, size - stop, &plain);
            if (len <= 0)
                goto not_read;
            stop += len;
            all_plain = 0; /* not a list: not a query */
        }
        BatchItem *it = &slots[i];
        if (!all_plain || k < 2 || k > 5
                || !eir_fp_parse_fields(self, &f[0], &f[1], &f[2], f[3].kind == F_NONE ? NULL : &f[3], now, &f[4],
                                        1, &it->a))
            return Py_BuildValue("(nnn)", i, pos, stop);
        it->kind = it->a.roamer ? ITEM_ROAMER : ITEM_HOME;
    }
    return Py_BuildValue("(nnn)", i, pos, pos);
not_read:
    PyErr_SetString(PyExc_ValueError, "parse_wire_items: not items wire_scan read");
    return NULL;
}

PyMethodDef eir_fp_wire_methods[] = {
    {"wire_head", (PyCFunction)(void (*)(void))wire_head, METH_FASTCALL,
     "wire_head(data, pos, max_items) -> (msgid, n, items_pos), 0 (need more) or -1 (not a check_batch "
     "this module reads)."},
    {"wire_scan", (PyCFunction)(void (*)(void))wire_scan, METH_FASTCALL,
     "wire_scan(data, pos, items_left, elems_left) -> the same state after the bytes there (items_left -1: "
     "an item this module does not read)."},
    {NULL, NULL, 0, NULL},
};
