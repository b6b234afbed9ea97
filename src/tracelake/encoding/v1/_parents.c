/* Each span's parent row within its trace, for rows sorted by trace: the kernel of
 * layout.resolve_parents (the numpy fallback there gives the same answers).
 *
 * A block stores a span's parent as the parent's row within the trace (``parent_index``) when the
 * trace holds it. Finding it is a lookup of the parent span id among the trace's span ids: traces of a
 * few dozen spans are scanned, larger ones get an open-addressing table of their span ids. The first
 * row with a span id wins, as Arrow's ``index_in`` does in the fallback. Linear in the rows, with no
 * 24-byte keys built and hashed (trace id + span id) as the fallback must.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SCAN_LIMIT 32 /* traces up to this many rows are scanned, larger ones hashed */

static uint64_t load_u64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v); /* ids come from Arrow buffers: no alignment is assumed */
    return v;
}

static size_t hash_slot(uint64_t key, int bits) {
    return (size_t)((key * 0x9E3779B97F4A7C15ULL) >> (64 - bits));
}

/* parent_rows(new_trace, span_ids, parent_ids, has_parent, out):
 *   new_trace:  n bytes, nonzero where a trace begins (row 0 must begin one)
 *   span_ids:   n x 8 bytes
 *   parent_ids: n x 8 bytes (meaningful where has_parent)
 *   has_parent: n bytes
 *   out:        n x int32, written: the parent's row within the trace, or -1 */
static PyObject *parent_rows(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer starts, spans, parents, has, out;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*", &starts, &spans, &parents, &has, &out)) return NULL;
    PyObject *result = NULL;
    int32_t *table = NULL;
    Py_ssize_t n = starts.len;
    if (spans.len != n * 8 || parents.len != n * 8 || has.len != n || out.len != n * 4 ||
        (n > 0 && !((const unsigned char *)starts.buf)[0])) {
        PyErr_SetString(PyExc_ValueError, "parent_rows: arrays of different lengths, or row 0 begins no trace");
        goto done;
    }
    if (n > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "parent_rows: more rows than an int32 index holds");
        goto done;
    }
    const unsigned char *start = starts.buf, *span = spans.buf, *parent = parents.buf, *with = has.buf;
    int32_t *row_of = out.buf;
    int table_bits = 0;
    Py_ssize_t begin = 0;
    Py_BEGIN_ALLOW_THREADS;
    while (begin < n) {
        Py_ssize_t end = begin + 1;
        while (end < n && !start[end]) end++;
        Py_ssize_t size = end - begin;
        if (size <= SCAN_LIMIT) {
            for (Py_ssize_t i = begin; i < end; i++) {
                row_of[i] = -1;
                if (!with[i]) continue;
                uint64_t want = load_u64(parent + 8 * i);
                for (Py_ssize_t j = begin; j < end; j++) {
                    if (load_u64(span + 8 * j) == want) {
                        row_of[i] = (int32_t)(j - begin);
                        break;
                    }
                }
            }
        } else {
            int bits = 1;
            while (((Py_ssize_t)1 << bits) < 2 * size) bits++;
            if (bits > table_bits) {
                free(table);
                table = malloc(sizeof(int32_t) << bits);
                table_bits = table ? bits : 0;
            }
            if (!table) break; /* reported below, with the GIL */
            size_t mask = ((size_t)1 << bits) - 1;
            memset(table, 0xff, sizeof(int32_t) << bits); /* -1: empty */
            for (Py_ssize_t j = begin; j < end; j++) {
                uint64_t key = load_u64(span + 8 * j);
                size_t slot = hash_slot(key, bits);
                while (table[slot] >= 0 && load_u64(span + 8 * ((Py_ssize_t)table[slot] + begin)) != key)
                    slot = (slot + 1) & mask;
                if (table[slot] < 0) table[slot] = (int32_t)(j - begin); /* the first row wins */
            }
            for (Py_ssize_t i = begin; i < end; i++) {
                row_of[i] = -1;
                if (!with[i]) continue;
                uint64_t want = load_u64(parent + 8 * i);
                size_t slot = hash_slot(want, bits);
                while (table[slot] >= 0) {
                    if (load_u64(span + 8 * ((Py_ssize_t)table[slot] + begin)) == want) {
                        row_of[i] = table[slot];
                        break;
                    }
                    slot = (slot + 1) & mask;
                }
            }
        }
        begin = end;
    }
    Py_END_ALLOW_THREADS;
    if (n > 0 && begin < n) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    free(table);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&spans);
    PyBuffer_Release(&parents);
    PyBuffer_Release(&has);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"parent_rows", parent_rows, METH_VARARGS,
     "parent_rows(new_trace, span_ids, parent_ids, has_parent, out) -> None\n\n"
     "Rows sorted by trace; out (n int32) gets each row's parent row within its trace, or -1."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_parents", NULL, -1, methods};

PyMODINIT_FUNC PyInit__parents(void) { return PyModule_Create(&module); }
