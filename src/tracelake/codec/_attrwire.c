/* Span attributes <-> their OTLP wire records, columnar: the block format's packed ``attributes``.
 *
 * A block stores each span's attributes as the bytes of its ``Span.attributes`` field (repeated field 9,
 * KeyValue records), so compaction moves one binary value per span instead of a list of six-field
 * structs (measured in docs/block-format.md). Readers turn the bytes back into the typed list of the
 * span table (model/schema.py ATTRIBUTE_TYPE). Python's pure fallback is codec/attributes_wire.py.
 *
 * pack:   Arrow buffers of list<struct<key, type, str, int, double, bytes>> -> (offsets, data) of a
 *         binary column. A DEDICATED placeholder takes its value from the row's dedicated column, so
 *         the bytes are the span's attributes exactly as OTLP has them.
 * unpack: the reverse. A span's first attribute with a dedicated key and that key's type becomes a
 *         DEDICATED placeholder with an empty value again (the rule of _otlpdecode.c).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { AT_EMPTY = 0, AT_STRING, AT_BOOL, AT_INT, AT_DOUBLE, AT_BYTES, AT_ARRAY, AT_KVLIST, AT_DEDICATED };

#define MAX_DEDICATED 32

typedef struct {
    char *p;
    size_t n, cap;
} Buf;

static int buf_reserve(Buf *b, size_t extra) {
    if (b->n + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_put(Buf *b, const void *src, size_t n) {
    if (buf_reserve(b, n) < 0) return -1;
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
    return 0;
}

static size_t varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static void put_varint(Buf *b, uint64_t v) { /* space reserved by the caller */
    while (v >= 0x80) {
        b->p[b->n++] = (char)(v | 0x80);
        v >>= 7;
    }
    b->p[b->n++] = (char)v;
}

static PyObject *take_bytes(Buf *b) {
    PyObject *out = PyBytes_FromStringAndSize(b->p ? b->p : "", (Py_ssize_t)b->n);
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
    return out;
}

/* The buffers as a tuple of bytes (each buffer freed and emptied), or NULL with an exception. */
static PyObject *take_all(Buf *b, int count) {
    PyObject *result = PyTuple_New(count);
    if (!result) return NULL;
    for (int i = 0; i < count; i++) {
        PyObject *bytes = take_bytes(&b[i]);
        if (!bytes) {
            Py_DECREF(result);
            return NULL;
        }
        PyTuple_SET_ITEM(result, i, bytes);
    }
    return result;
}

/* ---- pack ---------------------------------------------------------------------------------------- */

typedef struct {
    Py_buffer key;
    int type;
    Py_buffer validity; /* may be empty: all valid */
    Py_buffer a;        /* STRING: int32 offsets (n+1); INT: int64 values (n) */
    Py_buffer b;        /* STRING: data */
} PackDedicated;

typedef struct {
    const int32_t *off;
    const char *data;
} Var;

static int row_valid(const Py_buffer *validity, Py_ssize_t row) {
    if (!validity->buf || validity->len == 0) return 1;
    return (((const uint8_t *)validity->buf)[row >> 3] >> (row & 7)) & 1;
}

/* One AnyValue member: its tag, and either a varint, 8 fixed bytes or a length-delimited payload. */
typedef struct {
    int has;
    uint8_t tag;
    int kind; /* 0 varint, 1 fixed64, 2 bytes */
    uint64_t v;
    const char *p;
    size_t n;
} Member;

static size_t member_size(const Member *m) {
    if (!m->has) return 0;
    if (m->kind == 0) return 1 + varint_size(m->v);
    if (m->kind == 1) return 9;
    return 1 + varint_size(m->n) + m->n;
}

static void put_member(Buf *b, const Member *m) {
    if (!m->has) return;
    b->p[b->n++] = (char)m->tag;
    if (m->kind == 0) {
        put_varint(b, m->v);
    } else if (m->kind == 1) {
        memcpy(b->p + b->n, &m->v, 8); /* little-endian hosts only (x86-64, aarch64) */
        b->n += 8;
    } else {
        put_varint(b, m->n);
        memcpy(b->p + b->n, m->p, m->n);
        b->n += m->n;
    }
}

static PyObject *pack(PyObject *self, PyObject *args) {
    (void)self;
    Py_ssize_t n;
    Py_buffer lo, ko, kd, ty, so, sd, iv, dv, bo, bd;
    PyObject *spec;
    if (!PyArg_ParseTuple(args, "ny*y*y*y*y*y*y*y*y*y*O", &n, &lo, &ko, &kd, &ty, &so, &sd, &iv, &dv, &bo, &bd,
                          &spec))
        return NULL;
    PyObject *result = NULL;
    PackDedicated ded[MAX_DEDICATED];
    int n_ded = 0;
    Buf out_off = {0}, out = {0};
    PyObject *seq = PySequence_Fast(spec, "dedicated must be a sequence of tuples");
    if (!seq) goto done;
    if (PySequence_Fast_GET_SIZE(seq) > MAX_DEDICATED) {
        PyErr_SetString(PyExc_ValueError, "too many dedicated attributes");
        goto done;
    }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        PackDedicated *d = &ded[n_ded];
        memset(d, 0, sizeof *d);
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "y*iy*y*y*", &d->key, &d->type, &d->validity,
                              &d->a, &d->b))
            goto done;
        n_ded++;
    }
    const int32_t *list_off = lo.buf;
    Var key = {ko.buf, kd.buf}, str = {so.buf, sd.buf}, bin = {bo.buf, bd.buf};
    const uint8_t *types = ty.buf;
    const int64_t *ints = iv.buf;
    const double *doubles = dv.buf;
    Py_ssize_t m = (Py_ssize_t)(ty.len);
    if (lo.len < (Py_ssize_t)((n + 1) * 4) || ko.len < (m + 1) * 4 || so.len < (m + 1) * 4 ||
        bo.len < (m + 1) * 4 || iv.len < m * 8 || dv.len < m * 8) {
        PyErr_SetString(PyExc_ValueError, "attribute buffers are shorter than their lengths");
        goto done;
    }
    if (buf_reserve(&out_off, (size_t)(n + 1) * 4) < 0) goto done;
    int32_t zero = 0;
    buf_put(&out_off, &zero, 4);
    for (Py_ssize_t row = 0; row < n; row++) {
        int32_t first = list_off[row], last = list_off[row + 1];
        if (first < 0 || last < first || last > m) {
            PyErr_SetString(PyExc_ValueError, "attribute list offsets out of range");
            goto done;
        }
        for (int32_t e = first; e < last; e++) {
            Member v = {0};
            int type = types[e];
            if (type == AT_DEDICATED) {
                const char *kp = key.data + key.off[e];
                size_t kn = (size_t)(key.off[e + 1] - key.off[e]);
                type = AT_EMPTY;
                for (int i = 0; i < n_ded; i++) {
                    PackDedicated *d = &ded[i];
                    if ((size_t)d->key.len != kn || memcmp(d->key.buf, kp, kn) != 0) continue;
                    if (!row_valid(&d->validity, row)) break; /* no value: written as a bare key */
                    if (d->type == AT_STRING) {
                        const int32_t *off = d->a.buf;
                        v = (Member){1, 0x0A, 2, 0, (const char *)d->b.buf + off[row], (size_t)(off[row + 1] - off[row])};
                    } else {
                        v = (Member){1, 0x18, 0, (uint64_t)((const int64_t *)d->a.buf)[row], NULL, 0};
                    }
                    type = d->type;
                    break;
                }
            } else if (type == AT_STRING) {
                v = (Member){1, 0x0A, 2, 0, str.data + str.off[e], (size_t)(str.off[e + 1] - str.off[e])};
            } else if (type == AT_BOOL) {
                v = (Member){1, 0x10, 0, ints[e] != 0, NULL, 0};
            } else if (type == AT_INT) {
                v = (Member){1, 0x18, 0, (uint64_t)ints[e], NULL, 0};
            } else if (type == AT_DOUBLE) {
                uint64_t bits;
                memcpy(&bits, &doubles[e], 8);
                v = (Member){1, 0x21, 1, bits, NULL, 0};
            } else if (type == AT_BYTES || type == AT_ARRAY || type == AT_KVLIST) {
                uint8_t tag = type == AT_BYTES ? 0x3A : type == AT_ARRAY ? 0x2A : 0x32;
                v = (Member){1, tag, 2, 0, bin.data + bin.off[e], (size_t)(bin.off[e + 1] - bin.off[e])};
            } else if (type != AT_EMPTY) {
                PyErr_Format(PyExc_ValueError, "unknown attribute type %d", type);
                goto done;
            }
            size_t kn = (size_t)(key.off[e + 1] - key.off[e]);
            size_t vn = member_size(&v);
            /* an empty key is left out, as protobuf serializers do with a proto3 default */
            size_t kv = (kn ? 1 + varint_size(kn) + kn : 0) + (v.has ? 1 + varint_size(vn) + vn : 0);
            if (buf_reserve(&out, 1 + varint_size(kv) + kv) < 0) goto done;
            out.p[out.n++] = 0x4A; /* Span field 9: attributes */
            put_varint(&out, kv);
            if (kn) {
                out.p[out.n++] = 0x0A; /* KeyValue field 1: key */
                put_varint(&out, kn);
                memcpy(out.p + out.n, key.data + key.off[e], kn);
                out.n += kn;
            }
            if (v.has) {
                out.p[out.n++] = 0x12; /* KeyValue field 2: value */
                put_varint(&out, vn);
                put_member(&out, &v);
            }
        }
        if (out.n > INT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "packed attributes exceed 2 GiB in one array");
            goto done;
        }
        int32_t end = (int32_t)out.n;
        buf_put(&out_off, &end, 4);
    }
    PyObject *offsets = take_bytes(&out_off);
    PyObject *data = offsets ? take_bytes(&out) : NULL;
    if (offsets && data) result = PyTuple_Pack(2, offsets, data);
    Py_XDECREF(offsets);
    Py_XDECREF(data);
done:
    free(out_off.p);
    free(out.p);
    for (int i = 0; i < n_ded; i++) {
        PyBuffer_Release(&ded[i].key);
        PyBuffer_Release(&ded[i].validity);
        PyBuffer_Release(&ded[i].a);
        PyBuffer_Release(&ded[i].b);
    }
    Py_XDECREF(seq);
    Py_buffer *all[] = {&lo, &ko, &kd, &ty, &so, &sd, &iv, &dv, &bo, &bd};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) PyBuffer_Release(all[i]);
    return result;
}

/* ---- unpack -------------------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p, *end;
} Reader;

static int read_varint(Reader *r, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end) return -1;
        uint8_t c = *r->p++;
        v |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

static int read_len(Reader *r, Reader *inner) {
    uint64_t n;
    if (read_varint(r, &n) < 0 || n > (uint64_t)(r->end - r->p)) return -1;
    inner->p = r->p;
    inner->end = r->p + n;
    r->p += n;
    return 0;
}

static int skip_field(Reader *r, int wire) {
    uint64_t v;
    Reader skip;
    switch (wire) {
    case 0: return read_varint(r, &v);
    case 1:
        if (r->end - r->p < 8) return -1;
        r->p += 8;
        return 0;
    case 2: return read_len(r, &skip);
    case 5:
        if (r->end - r->p < 4) return -1;
        r->p += 4;
        return 0;
    default: return -1;
    }
}

typedef struct {
    int type;
    const uint8_t *s; /* STRING: str; BYTES/ARRAY/KVLIST: bytes */
    size_t sn;
    int64_t i;
    double d;
} Value;

static int read_anyvalue(Reader r, Value *v) { /* merges into v: the last member wins */
    while (r.p < r.end) {
        uint64_t tag;
        if (read_varint(&r, &tag) < 0) return -1;
        int field = (int)(tag >> 3), wire = (int)(tag & 7);
        Reader inner;
        uint64_t x;
        if (wire == 2 && (field == 1 || field == 5 || field == 6 || field == 7)) {
            if (read_len(&r, &inner) < 0) return -1;
            *v = (Value){field == 1 ? AT_STRING : field == 5 ? AT_ARRAY : field == 6 ? AT_KVLIST : AT_BYTES,
                         inner.p, (size_t)(inner.end - inner.p), 0, 0.0};
        } else if (wire == 0 && (field == 2 || field == 3)) {
            if (read_varint(&r, &x) < 0) return -1;
            *v = (Value){field == 2 ? AT_BOOL : AT_INT, NULL, 0, field == 2 ? (x != 0) : (int64_t)x, 0.0};
        } else if (wire == 1 && field == 4) {
            if (r.end - r.p < 8) return -1;
            *v = (Value){AT_DOUBLE, NULL, 0, 0, 0.0};
            memcpy(&v->d, r.p, 8);
            r.p += 8;
        } else if (field == 0 || skip_field(&r, wire) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Row ``row`` of a binary column's (offsets, data) as a reader; -1 with ValueError when the offsets
 * point outside the data. */
static int row_bytes(const Py_buffer *offsets, const Py_buffer *data, Py_ssize_t row, Reader *r) {
    const int32_t *off = offsets->buf;
    if (off[row] < 0 || off[row + 1] < off[row] || off[row + 1] > data->len) {
        PyErr_SetString(PyExc_ValueError, "packed attribute offsets out of range");
        return -1;
    }
    r->p = (const uint8_t *)data->buf + off[row];
    r->end = (const uint8_t *)data->buf + off[row + 1];
    return 0;
}

/* The next attribute record (Span field 9) of a span's bytes into *kv: 1, or 0 at the end, -1 when
 * malformed. Other fields are skipped. */
static int next_attribute(Reader *r, Reader *kv) {
    while (r->p < r->end) {
        uint64_t tag;
        if (read_varint(r, &tag) < 0) return -1;
        if (tag == 0x4A) return read_len(r, kv) < 0 ? -1 : 1;
        if ((tag >> 3) == 0 || skip_field(r, (int)(tag & 7)) < 0) return -1;
    }
    return 0;
}

/* A KeyValue's key and value (AnyValue members merge, the last wins): 0, or -1 when malformed. With
 * want, a record naming another key returns 1 as soon as its key is read (serializers write the key
 * first), its value unparsed. */
static int read_keyvalue(Reader kv, const uint8_t *want, size_t want_n, const uint8_t **kp, size_t *kn, Value *v) {
    Reader inner;
    *kp = NULL;
    *kn = 0;
    *v = (Value){AT_EMPTY, NULL, 0, 0, 0.0};
    while (kv.p < kv.end) {
        uint64_t t;
        if (read_varint(&kv, &t) < 0) return -1;
        if (t == 0x0A) {
            if (read_len(&kv, &inner) < 0) return -1;
            *kp = inner.p;
            *kn = (size_t)(inner.end - inner.p);
            if (want && (*kn != want_n || (want_n && memcmp(*kp, want, want_n) != 0))) return 1;
        } else if (t == 0x12) {
            if (read_len(&kv, &inner) < 0 || read_anyvalue(inner, v) < 0) return -1;
        } else if ((t >> 3) == 0 || skip_field(&kv, (int)(t & 7)) < 0) {
            return -1;
        }
    }
    if (want && (*kn != want_n || (want_n && memcmp(*kp, want, want_n) != 0))) return 1; /* no key */
    return 0;
}

static int put_offset(Buf *off, Buf *data) {
    if (data->n > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "attribute strings exceed 2 GiB in one array");
        return -1;
    }
    int32_t end = (int32_t)data->n;
    return buf_put(off, &end, 4);
}

enum { U_LIST, U_KEY_OFF, U_KEY, U_TYPE, U_STR_OFF, U_STR, U_INT, U_DOUBLE, U_BYTES_OFF, U_BYTES, U_COUNT };

static PyObject *unpack(PyObject *self, PyObject *args) {
    (void)self;
    Py_ssize_t n;
    Py_buffer off_buf, data_buf;
    PyObject *spec;
    if (!PyArg_ParseTuple(args, "ny*y*O", &n, &off_buf, &data_buf, &spec)) return NULL;
    PyObject *result = NULL;
    Buf b[U_COUNT];
    memset(b, 0, sizeof b);
    struct {
        const char *key;
        Py_ssize_t n;
        int type;
    } ded[MAX_DEDICATED];
    int n_ded = 0;
    PyObject *seq = PySequence_Fast(spec, "dedicated must be a sequence of (bytes, int) pairs");
    if (!seq) goto done;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq) && n_ded < MAX_DEDICATED; i++) {
        PyObject *key;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "Si", &key, &ded[n_ded].type)) goto done;
        ded[n_ded].key = PyBytes_AS_STRING(key); /* kept alive by spec for the call */
        ded[n_ded].n = PyBytes_GET_SIZE(key);
        n_ded++;
    }
    if (off_buf.len < (Py_ssize_t)((n + 1) * 4)) {
        PyErr_SetString(PyExc_ValueError, "packed attribute offsets are shorter than their length");
        goto done;
    }
    int32_t zero = 0;
    int32_t attrs = 0;
    if (buf_put(&b[U_LIST], &zero, 4) < 0 || buf_put(&b[U_KEY_OFF], &zero, 4) < 0 ||
        buf_put(&b[U_STR_OFF], &zero, 4) < 0 || buf_put(&b[U_BYTES_OFF], &zero, 4) < 0)
        goto done;
    for (Py_ssize_t row = 0; row < n; row++) {
        Reader r;
        if (row_bytes(&off_buf, &data_buf, row, &r) < 0) goto done;
        uint32_t filled = 0;
        Reader kv;
        int more;
        while ((more = next_attribute(&r, &kv)) > 0) {
            const uint8_t *kp;
            size_t kn;
            Value v;
            if (read_keyvalue(kv, NULL, 0, &kp, &kn, &v) < 0) goto malformed;
            if (v.type == AT_STRING || v.type == AT_INT) {
                for (int i = 0; i < n_ded; i++) {
                    if ((size_t)ded[i].n != kn || (kn && memcmp(ded[i].key, kp, kn) != 0)) continue;
                    if (ded[i].type == v.type && !(filled & (1u << i))) {
                        filled |= 1u << i;
                        v = (Value){AT_DEDICATED, NULL, 0, 0, 0.0};
                    }
                    break;
                }
            }
            uint8_t type = (uint8_t)v.type;
            int is_str = v.type == AT_STRING, is_bin = v.type >= AT_BYTES && v.type <= AT_KVLIST;
            if (buf_put(&b[U_KEY], kp, kn) < 0 || put_offset(&b[U_KEY_OFF], &b[U_KEY]) < 0 ||
                buf_put(&b[U_TYPE], &type, 1) < 0 || buf_put(&b[U_STR], v.s, is_str ? v.sn : 0) < 0 ||
                put_offset(&b[U_STR_OFF], &b[U_STR]) < 0 || buf_put(&b[U_INT], &v.i, 8) < 0 ||
                buf_put(&b[U_DOUBLE], &v.d, 8) < 0 || buf_put(&b[U_BYTES], v.s, is_bin ? v.sn : 0) < 0 ||
                put_offset(&b[U_BYTES_OFF], &b[U_BYTES]) < 0)
                goto done;
            if (attrs == INT32_MAX) {
                PyErr_SetString(PyExc_OverflowError, "too many attributes in one array");
                goto done;
            }
            attrs++;
        }
        if (more < 0) goto malformed;
        if (buf_put(&b[U_LIST], &attrs, 4) < 0) goto done;
        continue;
    malformed:
        PyErr_Format(PyExc_ValueError, "malformed packed attributes in row %zd", row);
        goto done;
    }
    result = take_all(b, U_COUNT);
done:
    for (int i = 0; i < U_COUNT; i++) free(b[i].p);
    Py_XDECREF(seq);
    PyBuffer_Release(&off_buf);
    PyBuffer_Release(&data_buf);
    return result;
}

/* ---- find_key: the entries of one key, for search ----------------------------------------------- */

static PyObject *find_key(PyObject *self, PyObject *args) {
    (void)self;
    Py_ssize_t n;
    Py_buffer off_buf, data_buf, key_buf;
    int dedicated_type; /* the key's dedicated type, or -1: a span's first such entry is a placeholder */
    if (!PyArg_ParseTuple(args, "ny*y*y*i", &n, &off_buf, &data_buf, &key_buf, &dedicated_type)) return NULL;
    PyObject *result = NULL;
    enum { F_ROWS, F_TYPE, F_STR_OFF, F_STR, F_INT, F_DOUBLE, F_COUNT };
    Buf b[F_COUNT];
    memset(b, 0, sizeof b);
    const uint8_t *want = key_buf.buf;
    size_t want_n = (size_t)key_buf.len;
    int32_t zero = 0;
    if (off_buf.len < (Py_ssize_t)((n + 1) * 4)) {
        PyErr_SetString(PyExc_ValueError, "packed attribute offsets are shorter than their length");
        goto done;
    }
    if (buf_put(&b[F_STR_OFF], &zero, 4) < 0) goto done;
    for (Py_ssize_t row = 0; row < n; row++) {
        Reader r;
        if (row_bytes(&off_buf, &data_buf, row, &r) < 0) goto done;
        int placeholder_seen = 0;
        Reader kv;
        int more;
        while ((more = next_attribute(&r, &kv)) > 0) {
            const uint8_t *kp;
            size_t kn;
            Value v;
            int found = read_keyvalue(kv, want, want_n, &kp, &kn, &v);
            if (found < 0) goto malformed;
            if (found > 0) continue; /* another key */
            if (v.type == dedicated_type && !placeholder_seen) {
                placeholder_seen = 1; /* its value is in the dedicated column */
                continue;
            }
            int64_t row64 = (int64_t)row;
            uint8_t type = (uint8_t)v.type;
            if (buf_put(&b[F_ROWS], &row64, 8) < 0 || buf_put(&b[F_TYPE], &type, 1) < 0 ||
                buf_put(&b[F_STR], v.s, v.type == AT_STRING ? v.sn : 0) < 0 ||
                put_offset(&b[F_STR_OFF], &b[F_STR]) < 0 || buf_put(&b[F_INT], &v.i, 8) < 0 ||
                buf_put(&b[F_DOUBLE], &v.d, 8) < 0)
                goto done;
        }
        if (more < 0) goto malformed;
        continue;
    malformed:
        PyErr_Format(PyExc_ValueError, "malformed packed attributes in row %zd", row);
        goto done;
    }
    result = take_all(b, F_COUNT);
done:
    for (int i = 0; i < F_COUNT; i++) free(b[i].p);
    PyBuffer_Release(&off_buf);
    PyBuffer_Release(&data_buf);
    PyBuffer_Release(&key_buf);
    return result;
}

static PyMethodDef methods[] = {
    {"pack", pack, METH_VARARGS,
     "pack(n, list_offsets, key_offsets, key_data, types, str_offsets, str_data, ints, doubles,\n"
     "     bytes_offsets, bytes_data, dedicated) -> (offsets, data)\n\n"
     "dedicated: (key bytes, AttrType, validity, offsets or int64 values, data) per dedicated column."},
    {"unpack", unpack, METH_VARARGS,
     "unpack(n, offsets, data, dedicated) -> (list_offsets, key_offsets, key_data, types, str_offsets,\n"
     "       str_data, ints, doubles, bytes_offsets, bytes_data)\n\n"
     "dedicated: (key bytes, AttrType) pairs."},
    {"find_key", find_key, METH_VARARGS,
     "find_key(n, offsets, data, key, dedicated_type) -> (rows int64, types, str_offsets, str_data, ints,\n"
     "         doubles) of the attributes named key; dedicated_type (or -1) marks a span's placeholder."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_attrwire", NULL, -1, methods};

PyMODINIT_FUNC PyInit__attrwire(void) { return PyModule_Create(&module); }
