/*
 * _otlpdecode: a serialized OTLP ExportTraceServiceRequest / TracesData -> column buffers.
 *
 * One pass over the protobuf wire bytes, with the GIL released, filling plain C arrays; no Python
 * object is made per span or per attribute. Python objects are only built at the end: one bytes object
 * per column buffer plus one per ResourceSpans/ScopeSpans. The result must be byte-identical to
 * tracelake.codec.pydecode.decode_request_py for canonical input (see raw.py for the column contract).
 *
 * Protobuf semantics followed (as upb parses them):
 *   - scalar and string fields: the last occurrence wins; a field seen with an unexpected wire type is
 *     an unknown field and is skipped, like any unknown field (wire types 0, 1, 2, 5);
 *   - singular sub-messages merge: Status fields persist across occurrences, Resource/Scope payloads
 *     are concatenated, and a repeated KeyValue.value merges into one AnyValue;
 *   - the AnyValue oneof: a later member replaces an earlier one, except that array_value/kvlist_value
 *     following the same member merge (their payloads are concatenated);
 *   - groups (wire types 3/4), wire types 6/7, field number 0, tags above 2^32, varints longer than
 *     10 bytes and lengths past the end of the enclosing message are errors.
 * UTF-8 and id lengths are not checked here (assembly validates the columns), except for schema URLs,
 * which become str objects.
 *
 * Dedicated span attributes (schema.DEDICATED_SPAN_ATTRIBUTES, passed in as (key bytes, AttrType) pairs)
 * are pulled out during the walk, so assembly needs no per-key pass: a span's first attribute with that
 * key and that type (known only once its KeyValue is fully read, since the AnyValue's last member wins)
 * goes to the key's column and stays in the list as a DEDICATED placeholder with an empty value.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "_otlpdecode writes native arrays as little-endian columns; use the pure-Python decoder here"
#endif

/* Inputs at least this large are walked with the GIL released (smaller ones finish before a switch). */
#define GIL_RELEASE_THRESHOLD 4096

/* AttrType codes (tracelake.model.schema.AttrType). */
enum {
    AT_EMPTY = 0, AT_STRING = 1, AT_BOOL = 2, AT_INT = 3, AT_DOUBLE = 4, AT_BYTES = 5, AT_ARRAY = 6, AT_KVLIST = 7,
    AT_DEDICATED = 8
};

/* Dedicated attributes: at most 32 (a span's filled ones are a uint32 bit mask), keys copied inline. */
#define MAX_DEDICATED 32
#define MAX_DEDICATED_KEY 128
typedef struct {
    size_t n;
    int type; /* AT_STRING or AT_INT */
    char key[MAX_DEDICATED_KEY];
} DedKey;

/* Var columns, in raw.VAR_COLUMNS order. */
enum {
    V_TRACE_ID, V_SPAN_ID, V_PARENT_SPAN_ID, V_TRACE_STATE, V_NAME, V_STATUS_MESSAGE, V_EVENTS, V_LINKS,
    V_ATTR_KEY, V_ATTR_STR, V_ATTR_BYTES, N_VAR
};
#define N_SPAN_VAR 8 /* the first 8 var columns have one entry per span, the rest one per attribute */
static const char *const VAR_NAMES[N_VAR] = {
    "trace_id", "span_id", "parent_span_id", "trace_state", "name", "status_message", "events", "links",
    "attr_key", "attr_str", "attr_bytes",
};

/* Per-span arrays (fixed columns, then the offsets of the span var columns); all share one capacity. */
enum {
    S_FLAGS, S_KIND, S_START, S_END, S_STATUS_CODE, S_DROPPED_ATTRS, S_DROPPED_EVENTS, S_DROPPED_LINKS,
    S_RESOURCE_INDEX, S_SCOPE_INDEX, S_ATTR_OFFSETS, S_VAR_OFF0, N_SCOL = S_VAR_OFF0 + N_SPAN_VAR
};
static const size_t SCOL_SIZE[N_SCOL] = {4, 4, 8, 8, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4};

/* Per-attribute arrays. */
enum { A_TYPE, A_INT, A_DOUBLE, A_VAR_OFF0, N_ACOL = A_VAR_OFF0 + (N_VAR - N_SPAN_VAR) };
static const size_t ACOL_SIZE[N_ACOL] = {1, 8, 8, 4, 4, 4};

/* Fixed columns, in raw.FIXED_COLUMNS order: (group, index) with group 0 = span, 1 = attribute. */
#define N_FIXED 14
static const char *const FIXED_NAMES[N_FIXED] = {
    "flags", "kind", "start_time_unix_nano", "end_time_unix_nano", "status_code",
    "dropped_attributes_count", "dropped_events_count", "dropped_links_count", "resource_index",
    "scope_index", "attr_offsets", "attr_type", "attr_int", "attr_double",
};
static const int FIXED_SRC[N_FIXED][2] = {
    {0, S_FLAGS}, {0, S_KIND}, {0, S_START}, {0, S_END}, {0, S_STATUS_CODE}, {0, S_DROPPED_ATTRS},
    {0, S_DROPPED_EVENTS}, {0, S_DROPPED_LINKS}, {0, S_RESOURCE_INDEX}, {0, S_SCOPE_INDEX},
    {0, S_ATTR_OFFSETS}, {1, A_TYPE}, {1, A_INT}, {1, A_DOUBLE},
};

#define WT_VARINT 0
#define WT_I64 1
#define WT_LEN 2
#define WT_I32 5
#define TAG(field, wt) ((uint32_t)(((field) << 3) | (wt)))

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

typedef struct {
    const uint8_t *p;
    size_t n;
} Slice;

/* One "list of byte strings" (resources or scopes): concatenated data, int32 end offsets, and the
 * schema URL of each entry as (offset into the input, length) pairs of uint32. */
typedef struct {
    size_t n;
    Buf data, ends, urls;
} Entries;

typedef struct {
    const uint8_t *base;
    size_t err_pos;
    const char *err_msg;
    char err_buf[128];
    int oom;

    size_t n_spans, span_cap;
    char *scol[N_SCOL];
    size_t n_attrs, attr_cap;
    char *acol[N_ACOL];
    Buf vdata[N_VAR];
    Entries resources, scopes;

    /* dedicated columns: dcol[i] holds int32 offsets (n+1, into ddata[i]) for a STRING key or int64
     * values for an INT key; dcol[n_ded] holds each span's uint32 mask of filled columns */
    int n_ded;
    DedKey ded[MAX_DEDICATED];
    size_t ded_cap;
    size_t dsize[MAX_DEDICATED + 1];
    char *dcol[MAX_DEDICATED + 1];
    Buf ddata[MAX_DEDICATED];
} Decoder;

/* A span's dedicated values while its attributes are walked (slices point into the input). */
typedef struct {
    uint32_t filled;
    Slice str[MAX_DEDICATED];
    uint64_t integer[MAX_DEDICATED];
} SpanDed;

/* ------------------------------------------------------------------------------------------------ */
/* buffers */

static int buf_grow(Buf *b, size_t need) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) return -1;
    b->p = q;
    b->cap = cap;
    return 0;
}

static inline int buf_put(Decoder *d, Buf *b, const void *src, size_t n) {
    if (b->len + n > b->cap && buf_grow(b, b->len + n) < 0) {
        d->oom = 1;
        return -1;
    }
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

static inline int buf_put_u32(Decoder *d, Buf *b, uint32_t v) { return buf_put(d, b, &v, sizeof v); }

/* Grow every array of a group to hold need (+1 for offsets) entries. */
static int group_grow(char **cols, const size_t *sizes, int ncols, size_t *cap, size_t need) {
    size_t nc = *cap ? *cap : 16;
    while (nc < need) nc *= 2;
    for (int i = 0; i < ncols; i++) {
        char *q = realloc(cols[i], (nc + 1) * sizes[i]);
        if (!q) return -1;
        cols[i] = q;
    }
    *cap = nc;
    return 0;
}

static void decoder_free(Decoder *d) {
    for (int i = 0; i < N_SCOL; i++) free(d->scol[i]);
    for (int i = 0; i < N_ACOL; i++) free(d->acol[i]);
    for (int i = 0; i < N_VAR; i++) free(d->vdata[i].p);
    for (int i = 0; i <= d->n_ded; i++) free(d->dcol[i]);
    for (int i = 0; i < d->n_ded; i++) free(d->ddata[i].p);
    Entries *es[2] = {&d->resources, &d->scopes};
    for (int i = 0; i < 2; i++) {
        free(es[i]->data.p);
        free(es[i]->ends.p);
        free(es[i]->urls.p);
    }
    free(d);
}

static Decoder *decoder_new(size_t input_len, const DedKey *ded, int n_ded) {
    Decoder *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->n_ded = n_ded;
    for (int i = 0; i < n_ded; i++) {
        d->ded[i] = ded[i];
        d->dsize[i] = ded[i].type == AT_STRING ? 4 : 8;
    }
    d->dsize[n_ded] = 4;
    /* Guess from the input size (~300 B/span, ~30 B/attribute in typical requests), then grow. */
    if (group_grow(d->scol, SCOL_SIZE, N_SCOL, &d->span_cap, input_len / 256 + 16) < 0 ||
        group_grow(d->acol, ACOL_SIZE, N_ACOL, &d->attr_cap, input_len / 32 + 16) < 0 ||
        group_grow(d->dcol, d->dsize, n_ded + 1, &d->ded_cap, input_len / 256 + 16) < 0) {
        decoder_free(d);
        return NULL;
    }
    for (int i = 0; i < n_ded; i++)
        if (ded[i].type == AT_STRING) ((int32_t *)d->dcol[i])[0] = 0;
    ((int32_t *)d->scol[S_ATTR_OFFSETS])[0] = 0;
    for (int i = 0; i < N_SPAN_VAR; i++) ((int32_t *)d->scol[S_VAR_OFF0 + i])[0] = 0;
    for (int i = 0; i < N_VAR - N_SPAN_VAR; i++) ((int32_t *)d->acol[A_VAR_OFF0 + i])[0] = 0;
    Entries *es[2] = {&d->resources, &d->scopes};
    for (int i = 0; i < 2; i++) {
        if (buf_put_u32(d, &es[i]->ends, 0) < 0) {
            decoder_free(d);
            return NULL;
        }
    }
    return d;
}

/* ------------------------------------------------------------------------------------------------ */
/* wire primitives: each returns the position after what it read, or NULL after recording an error */

static int fail(Decoder *d, const uint8_t *at, const char *msg) {
    d->err_pos = (size_t)(at - d->base);
    d->err_msg = msg;
    return -1;
}

static const uint8_t *fail_p(Decoder *d, const uint8_t *at, const char *msg) {
    fail(d, at, msg);
    return NULL;
}

static const uint8_t *varint_slow(Decoder *d, const uint8_t *p, const uint8_t *end, uint64_t *out) {
    const uint8_t *start = p;
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (p >= end) return fail_p(d, start, "truncated varint");
        uint8_t b = *p++;
        v |= (uint64_t)(b & 0x7f) << shift; /* bits past 64 are dropped, as protobuf does */
        if (!(b & 0x80)) {
            *out = v;
            return p;
        }
    }
    return fail_p(d, start, "varint longer than 10 bytes");
}

static inline const uint8_t *rd_varint(Decoder *d, const uint8_t *p, const uint8_t *end, uint64_t *out) {
    if (p < end && *p < 0x80) {
        *out = *p;
        return p + 1;
    }
    return varint_slow(d, p, end, out);
}

/* A field's tag. Field number 0 and tags that do not fit 32 bits are malformed. */
static inline const uint8_t *rd_tag(Decoder *d, const uint8_t *p, const uint8_t *end, uint32_t *tag) {
    uint64_t v;
    const uint8_t *q = rd_varint(d, p, end, &v);
    if (!q) return NULL;
    if (v > UINT32_MAX) return fail_p(d, p, "tag out of range");
    if ((v >> 3) == 0) return fail_p(d, p, "invalid field number 0");
    *tag = (uint32_t)v;
    return q;
}

/* A length-delimited payload: returns its start and sets *pend to its end. */
static inline const uint8_t *rd_len(Decoder *d, const uint8_t *p, const uint8_t *end, const uint8_t **pend) {
    uint64_t n;
    const uint8_t *q = rd_varint(d, p, end, &n);
    if (!q) return NULL;
    if (n > (uint64_t)(end - q)) {
        snprintf(d->err_buf, sizeof d->err_buf, "length %llu runs past the end (%llu bytes left)",
                 (unsigned long long)n, (unsigned long long)(end - q));
        return fail_p(d, p, d->err_buf);
    }
    *pend = q + n;
    return q;
}

static inline const uint8_t *rd_fixed64(Decoder *d, const uint8_t *p, const uint8_t *end, uint64_t *out) {
    if (end - p < 8) return fail_p(d, p, "truncated fixed64");
    memcpy(out, p, 8);
    return p + 8;
}

static inline const uint8_t *rd_fixed32(Decoder *d, const uint8_t *p, const uint8_t *end, uint32_t *out) {
    if (end - p < 4) return fail_p(d, p, "truncated fixed32");
    memcpy(out, p, 4);
    return p + 4;
}

/* Skip the value of an unknown field (or of a known field with an unexpected wire type). */
static const uint8_t *skip_field(Decoder *d, const uint8_t *p, const uint8_t *end, uint32_t tag,
                                 const uint8_t *field_start) {
    uint64_t v;
    const uint8_t *pend;
    switch (tag & 7) {
    case WT_VARINT:
        return rd_varint(d, p, end, &v);
    case WT_I64:
        return rd_fixed64(d, p, end, &v);
    case WT_LEN:
        return rd_len(d, p, end, &pend) ? pend : NULL;
    case WT_I32: {
        uint32_t w;
        return rd_fixed32(d, p, end, &w);
    }
    case 3:
    case 4:
        snprintf(d->err_buf, sizeof d->err_buf, "unsupported group wire type %u (field %u)", tag & 7,
                 tag >> 3);
        return fail_p(d, field_start, d->err_buf);
    default:
        snprintf(d->err_buf, sizeof d->err_buf, "invalid wire type %u (field %u)", tag & 7, tag >> 3);
        return fail_p(d, field_start, d->err_buf);
    }
}

/* Loop helpers shared by every message walker. */
#define FIELD_LOOP_BEGIN                                                                               \
    while (p < end) {                                                                                  \
        const uint8_t *fstart = p;                                                                     \
        uint32_t tag;                                                                                  \
        if (!(p = rd_tag(d, p, end, &tag))) return -1;                                                 \
        switch (tag) {
#define FIELD_LOOP_END                                                                                 \
        default:                                                                                       \
            if (!(p = skip_field(d, p, end, tag, fstart))) return -1;                                  \
        }                                                                                              \
    }
#define READ_LEN(payload, payload_end)                                                                 \
    if (!((payload) = rd_len(d, p, end, &(payload_end)))) return -1;                                  \
    p = (payload_end)
#define READ_VARINT(v)                                                                                 \
    if (!(p = rd_varint(d, p, end, &(v)))) return -1
#define READ_FIXED64(v)                                                                                \
    if (!(p = rd_fixed64(d, p, end, &(v)))) return -1
#define READ_FIXED32(v)                                                                                \
    if (!(p = rd_fixed32(d, p, end, &(v)))) return -1

/* ------------------------------------------------------------------------------------------------ */
/* message walkers */

typedef struct {
    int type;
    Slice str;
    uint64_t integer; /* BOOL/INT value */
    uint64_t dbits;   /* DOUBLE value, as its bits */
    size_t raw_start; /* where this attribute's attr_bytes entry starts */
} AnyState;

static int walk_anyvalue(Decoder *d, const uint8_t *p, const uint8_t *end, AnyState *s) {
    Buf *raw = &d->vdata[V_ATTR_BYTES];
    const uint8_t *q, *qend;
    uint64_t v;
    FIELD_LOOP_BEGIN
    case TAG(1, WT_LEN): /* string_value */
        READ_LEN(q, qend);
        s->type = AT_STRING;
        s->str.p = q;
        s->str.n = (size_t)(qend - q);
        break;
    case TAG(2, WT_VARINT): /* bool_value */
        READ_VARINT(v);
        s->type = AT_BOOL;
        s->integer = v != 0;
        break;
    case TAG(3, WT_VARINT): /* int_value */
        READ_VARINT(v);
        s->type = AT_INT;
        s->integer = v;
        break;
    case TAG(4, WT_I64): /* double_value */
        READ_FIXED64(v);
        s->type = AT_DOUBLE;
        s->dbits = v;
        break;
    case TAG(5, WT_LEN):   /* array_value: merges into a preceding array_value */
    case TAG(6, WT_LEN): { /* kvlist_value: likewise */
        int type = tag == TAG(5, WT_LEN) ? AT_ARRAY : AT_KVLIST;
        READ_LEN(q, qend);
        if (s->type != type) raw->len = s->raw_start;
        s->type = type;
        if (buf_put(d, raw, q, (size_t)(qend - q)) < 0) return -1;
        break;
    }
    case TAG(7, WT_LEN): /* bytes_value */
        READ_LEN(q, qend);
        raw->len = s->raw_start;
        s->type = AT_BYTES;
        if (buf_put(d, raw, q, (size_t)(qend - q)) < 0) return -1;
        break;
    case TAG(8, WT_VARINT): /* string_value_strindex: a oneof member the columns do not carry */
        READ_VARINT(v);
        s->type = AT_EMPTY;
        break;
    FIELD_LOOP_END
    return 0;
}

static int walk_keyvalue(Decoder *d, const uint8_t *p, const uint8_t *end, SpanDed *sd) {
    if (d->n_attrs >= d->attr_cap &&
        group_grow(d->acol, ACOL_SIZE, N_ACOL, &d->attr_cap, d->n_attrs + 1) < 0) {
        d->oom = 1;
        return -1;
    }
    Buf *raw = &d->vdata[V_ATTR_BYTES];
    AnyState s = {AT_EMPTY, {NULL, 0}, 0, 0, raw->len};
    Slice key = {NULL, 0};
    const uint8_t *q, *qend;
    FIELD_LOOP_BEGIN
    case TAG(1, WT_LEN): /* key */
        READ_LEN(q, qend);
        key.p = q;
        key.n = (size_t)(qend - q);
        break;
    case TAG(2, WT_LEN): /* value: repeated occurrences merge into one AnyValue */
        READ_LEN(q, qend);
        if (walk_anyvalue(d, q, qend, &s) < 0) return -1;
        break;
    FIELD_LOOP_END

    if (s.type == AT_STRING || s.type == AT_INT) { /* the final type decides: now it is known */
        for (int i = 0; i < d->n_ded; i++) {
            const DedKey *k = &d->ded[i];
            if (k->n != key.n || (key.n && memcmp(k->key, key.p, key.n) != 0)) continue;
            if (k->type == s.type && !(sd->filled & (1u << i))) { /* only a span's first one */
                sd->filled |= 1u << i;
                sd->str[i] = s.str;
                sd->integer[i] = s.integer;
                s.type = AT_DEDICATED; /* the placeholder keeps its key; its value fields stay empty */
            }
            break;
        }
    }

    size_t a = d->n_attrs;
    if (s.type != AT_BYTES && s.type != AT_ARRAY && s.type != AT_KVLIST) raw->len = s.raw_start;
    if (buf_put(d, &d->vdata[V_ATTR_KEY], key.p, key.n) < 0) return -1;
    if (s.type == AT_STRING && buf_put(d, &d->vdata[V_ATTR_STR], s.str.p, s.str.n) < 0) return -1;
    ((uint8_t *)d->acol[A_TYPE])[a] = (uint8_t)s.type;
    ((uint64_t *)d->acol[A_INT])[a] = (s.type == AT_BOOL || s.type == AT_INT) ? s.integer : 0;
    ((uint64_t *)d->acol[A_DOUBLE])[a] = s.type == AT_DOUBLE ? s.dbits : 0;
    for (int i = 0; i < N_VAR - N_SPAN_VAR; i++)
        ((int32_t *)d->acol[A_VAR_OFF0 + i])[a + 1] = (int32_t)d->vdata[N_SPAN_VAR + i].len;
    d->n_attrs = a + 1;
    return 0;
}

static int walk_status(Decoder *d, const uint8_t *p, const uint8_t *end, Slice *message, int32_t *code) {
    const uint8_t *q, *qend;
    uint64_t v;
    FIELD_LOOP_BEGIN
    case TAG(2, WT_LEN): /* message */
        READ_LEN(q, qend);
        message->p = q;
        message->n = (size_t)(qend - q);
        break;
    case TAG(3, WT_VARINT): /* code */
        READ_VARINT(v);
        *code = (int32_t)(uint32_t)v;
        break;
    FIELD_LOOP_END
    return 0;
}

static int walk_span(Decoder *d, const uint8_t *p, const uint8_t *end, int32_t resource_index,
                     int32_t scope_index) {
    /* the span var columns that hold one value (last one wins), indexed by V_* */
    Slice var[V_STATUS_MESSAGE + 1];
    memset(var, 0, sizeof var);
    uint32_t flags = 0, dropped_attrs = 0, dropped_events = 0, dropped_links = 0;
    int32_t kind = 0, status_code = 0;
    uint64_t start = 0, stop = 0, v;
    const uint8_t *q, *qend;
    Slice *target;
    SpanDed sd;
    sd.filled = 0;

    FIELD_LOOP_BEGIN
    case TAG(1, WT_LEN):
        target = &var[V_TRACE_ID];
        goto slice;
    case TAG(2, WT_LEN):
        target = &var[V_SPAN_ID];
        goto slice;
    case TAG(3, WT_LEN):
        target = &var[V_TRACE_STATE];
        goto slice;
    case TAG(4, WT_LEN):
        target = &var[V_PARENT_SPAN_ID];
        goto slice;
    case TAG(5, WT_LEN):
        target = &var[V_NAME];
    slice:
        READ_LEN(q, qend);
        target->p = q;
        target->n = (size_t)(qend - q);
        break;
    case TAG(6, WT_VARINT):
        READ_VARINT(v);
        kind = (int32_t)(uint32_t)v;
        break;
    case TAG(7, WT_I64):
        READ_FIXED64(start);
        break;
    case TAG(8, WT_I64):
        READ_FIXED64(stop);
        break;
    case TAG(9, WT_LEN):
        READ_LEN(q, qend);
        if (walk_keyvalue(d, q, qend, &sd) < 0) return -1;
        break;
    case TAG(10, WT_VARINT):
        READ_VARINT(v);
        dropped_attrs = (uint32_t)v;
        break;
    case TAG(11, WT_LEN): /* events: keep the whole wire record */
        READ_LEN(q, qend);
        if (buf_put(d, &d->vdata[V_EVENTS], fstart, (size_t)(qend - fstart)) < 0) return -1;
        break;
    case TAG(12, WT_VARINT):
        READ_VARINT(v);
        dropped_events = (uint32_t)v;
        break;
    case TAG(13, WT_LEN): /* links: keep the whole wire record */
        READ_LEN(q, qend);
        if (buf_put(d, &d->vdata[V_LINKS], fstart, (size_t)(qend - fstart)) < 0) return -1;
        break;
    case TAG(14, WT_VARINT):
        READ_VARINT(v);
        dropped_links = (uint32_t)v;
        break;
    case TAG(15, WT_LEN):
        READ_LEN(q, qend);
        if (walk_status(d, q, qend, &var[V_STATUS_MESSAGE], &status_code) < 0) return -1;
        break;
    case TAG(16, WT_I32):
        READ_FIXED32(flags);
        break;
    FIELD_LOOP_END

    if (d->n_spans >= d->span_cap &&
        group_grow(d->scol, SCOL_SIZE, N_SCOL, &d->span_cap, d->n_spans + 1) < 0) {
        d->oom = 1;
        return -1;
    }
    size_t n = d->n_spans;
    for (int i = 0; i <= V_STATUS_MESSAGE; i++)
        if (buf_put(d, &d->vdata[i], var[i].p, var[i].n) < 0) return -1;
    char **c = d->scol;
    ((uint32_t *)c[S_FLAGS])[n] = flags;
    ((int32_t *)c[S_KIND])[n] = kind;
    ((uint64_t *)c[S_START])[n] = start;
    ((uint64_t *)c[S_END])[n] = stop;
    ((int32_t *)c[S_STATUS_CODE])[n] = status_code;
    ((uint32_t *)c[S_DROPPED_ATTRS])[n] = dropped_attrs;
    ((uint32_t *)c[S_DROPPED_EVENTS])[n] = dropped_events;
    ((uint32_t *)c[S_DROPPED_LINKS])[n] = dropped_links;
    ((int32_t *)c[S_RESOURCE_INDEX])[n] = resource_index;
    ((int32_t *)c[S_SCOPE_INDEX])[n] = scope_index;
    ((int32_t *)c[S_ATTR_OFFSETS])[n + 1] = (int32_t)d->n_attrs;
    for (int i = 0; i < N_SPAN_VAR; i++)
        ((int32_t *)c[S_VAR_OFF0 + i])[n + 1] = (int32_t)d->vdata[i].len;
    if (d->n_ded) {
        if (n >= d->ded_cap && group_grow(d->dcol, d->dsize, d->n_ded + 1, &d->ded_cap, n + 1) < 0) {
            d->oom = 1;
            return -1;
        }
        for (int i = 0; i < d->n_ded; i++) {
            int filled = (sd.filled >> i) & 1;
            if (d->ded[i].type == AT_STRING) { /* a null repeats the previous offset */
                if (filled && buf_put(d, &d->ddata[i], sd.str[i].p, sd.str[i].n) < 0) return -1;
                ((int32_t *)d->dcol[i])[n + 1] = (int32_t)d->ddata[i].len;
            } else {
                ((uint64_t *)d->dcol[i])[n] = filled ? sd.integer[i] : 0;
            }
        }
        ((uint32_t *)d->dcol[d->n_ded])[n] = sd.filled;
    }
    d->n_spans = n + 1;
    return 0;
}

/* Close the current entry of a resources/scopes list. */
static int entries_push(Decoder *d, Entries *e, Slice url) {
    if (buf_put_u32(d, &e->ends, (uint32_t)e->data.len) < 0 ||
        buf_put_u32(d, &e->urls, (uint32_t)(url.p ? url.p - d->base : 0)) < 0 ||
        buf_put_u32(d, &e->urls, (uint32_t)url.n) < 0)
        return -1;
    e->n++;
    return 0;
}

static int walk_scope_spans(Decoder *d, const uint8_t *p, const uint8_t *end, int32_t resource_index) {
    Entries *e = &d->scopes;
    int32_t scope_index = (int32_t)e->n;
    Slice url = {NULL, 0};
    const uint8_t *q, *qend;
    FIELD_LOOP_BEGIN
    case TAG(1, WT_LEN): /* scope: occurrences merge, i.e. their payloads concatenate */
        READ_LEN(q, qend);
        if (buf_put(d, &e->data, q, (size_t)(qend - q)) < 0) return -1;
        break;
    case TAG(2, WT_LEN): /* spans */
        READ_LEN(q, qend);
        if (walk_span(d, q, qend, resource_index, scope_index) < 0) return -1;
        break;
    case TAG(3, WT_LEN): /* schema_url */
        READ_LEN(q, qend);
        url.p = q;
        url.n = (size_t)(qend - q);
        break;
    FIELD_LOOP_END
    return entries_push(d, e, url);
}

static int walk_resource_spans(Decoder *d, const uint8_t *p, const uint8_t *end) {
    Entries *e = &d->resources;
    int32_t resource_index = (int32_t)e->n;
    Slice url = {NULL, 0};
    const uint8_t *q, *qend;
    FIELD_LOOP_BEGIN
    case TAG(1, WT_LEN): /* resource: occurrences merge, i.e. their payloads concatenate */
        READ_LEN(q, qend);
        if (buf_put(d, &e->data, q, (size_t)(qend - q)) < 0) return -1;
        break;
    case TAG(2, WT_LEN): /* scope_spans */
        READ_LEN(q, qend);
        if (walk_scope_spans(d, q, qend, resource_index) < 0) return -1;
        break;
    case TAG(3, WT_LEN): /* schema_url */
        READ_LEN(q, qend);
        url.p = q;
        url.n = (size_t)(qend - q);
        break;
    FIELD_LOOP_END
    return entries_push(d, e, url);
}

static int walk_request(Decoder *d, const uint8_t *p, const uint8_t *end) {
    const uint8_t *q, *qend;
    FIELD_LOOP_BEGIN
    case TAG(1, WT_LEN): /* resource_spans */
        READ_LEN(q, qend);
        if (walk_resource_spans(d, q, qend) < 0) return -1;
        break;
    FIELD_LOOP_END
    return 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* results */

static PyObject *bytes_of(const void *p, size_t n) {
    return PyBytes_FromStringAndSize(n ? (const char *)p : NULL, (Py_ssize_t)n);
}

/* (list of bytes, list of str) for a resources/scopes list. */
static int build_entries(Decoder *d, Entries *e, PyObject **blobs, PyObject **urls) {
    *blobs = PyList_New((Py_ssize_t)e->n);
    *urls = PyList_New((Py_ssize_t)e->n);
    if (!*blobs || !*urls) return -1;
    const uint32_t *ends = (const uint32_t *)e->ends.p;
    const uint32_t *u = (const uint32_t *)e->urls.p;
    for (size_t i = 0; i < e->n; i++) {
        PyObject *b = bytes_of(e->data.p + ends[i], ends[i + 1] - ends[i]);
        if (!b) return -1;
        PyList_SET_ITEM(*blobs, (Py_ssize_t)i, b);
        PyObject *s = PyUnicode_DecodeUTF8((const char *)d->base + u[2 * i], (Py_ssize_t)u[2 * i + 1],
                                           "strict");
        if (!s) {
            if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_ValueError, "malformed OTLP protobuf at byte %u: schema_url is not UTF-8",
                             u[2 * i]);
            }
            return -1;
        }
        PyList_SET_ITEM(*urls, (Py_ssize_t)i, s);
    }
    return 0;
}

/* One tuple per dedicated key: (validity bitmap, offsets, data) for STRING, (validity bitmap, int64
 * values) for INT. Bitmaps are Arrow's: bit i (LSB first) set when span i has a value, padding zero. */
static PyObject *build_dedicated(Decoder *d) {
    size_t n = d->n_spans, nbytes = (n + 7) / 8;
    const uint32_t *mask = (const uint32_t *)d->dcol[d->n_ded];
    PyObject *out = PyTuple_New(d->n_ded);
    if (!out) return NULL;
    for (int i = 0; i < d->n_ded; i++) {
        PyObject *bitmap = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)nbytes);
        if (!bitmap) goto error;
        uint8_t *bits = (uint8_t *)PyBytes_AS_STRING(bitmap);
        memset(bits, 0, nbytes);
        for (size_t s = 0; s < n; s++)
            bits[s >> 3] |= (uint8_t)(((mask[s] >> i) & 1u) << (s & 7));
        PyObject *entry;
        if (d->ded[i].type == AT_STRING)
            entry = Py_BuildValue("(NNN)", bitmap, bytes_of(d->dcol[i], (n + 1) * 4),
                                  bytes_of(d->ddata[i].p, d->ddata[i].len));
        else
            entry = Py_BuildValue("(NN)", bitmap, bytes_of(d->dcol[i], n * 8));
        if (!entry) goto error;
        PyTuple_SET_ITEM(out, i, entry);
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

static PyObject *build_result(Decoder *d) {
    PyObject *var = NULL, *fixed = NULL, *res = NULL, *res_urls = NULL, *scopes = NULL, *scope_urls = NULL;
    PyObject *dedicated = NULL;
    if (!(var = PyTuple_New(N_VAR)) || !(fixed = PyTuple_New(N_FIXED))) goto error;
    for (int i = 0; i < N_VAR; i++) {
        int per_span = i < N_SPAN_VAR;
        const char *offsets = per_span ? d->scol[S_VAR_OFF0 + i] : d->acol[A_VAR_OFF0 + i - N_SPAN_VAR];
        size_t count = (per_span ? d->n_spans : d->n_attrs) + 1;
        PyObject *pair = Py_BuildValue("(NN)", bytes_of(offsets, count * 4),
                                       bytes_of(d->vdata[i].p, d->vdata[i].len));
        if (!pair) goto error;
        PyTuple_SET_ITEM(var, i, pair);
    }
    for (int i = 0; i < N_FIXED; i++) {
        int group = FIXED_SRC[i][0], col = FIXED_SRC[i][1];
        size_t count = group == 0 ? d->n_spans : d->n_attrs;
        if (group == 0 && col == S_ATTR_OFFSETS) count += 1;
        const char *p = group == 0 ? d->scol[col] : d->acol[col];
        size_t size = group == 0 ? SCOL_SIZE[col] : ACOL_SIZE[col];
        PyObject *b = bytes_of(p, count * size);
        if (!b) goto error;
        PyTuple_SET_ITEM(fixed, i, b);
    }
    if (build_entries(d, &d->resources, &res, &res_urls) < 0) goto error;
    if (build_entries(d, &d->scopes, &scopes, &scope_urls) < 0) goto error;
    if (!(dedicated = build_dedicated(d))) goto error;
    return Py_BuildValue("(nnNNNNNNN)", (Py_ssize_t)d->n_spans, (Py_ssize_t)d->n_attrs, var, fixed, res,
                         res_urls, scopes, scope_urls, dedicated);
error:
    Py_XDECREF(dedicated);
    Py_XDECREF(var);
    Py_XDECREF(fixed);
    Py_XDECREF(res);
    Py_XDECREF(res_urls);
    Py_XDECREF(scopes);
    Py_XDECREF(scope_urls);
    return NULL;
}

PyDoc_STRVAR(decode_doc,
             "decode(data, dedicated=()) -> (n_spans, n_attrs, var, fixed, resources, resource_schema_urls,\n"
             "                               scopes, scope_schema_urls, dedicated_columns)\n\n"
             "Decode a serialized ExportTraceServiceRequest/TracesData (any contiguous bytes-like object).\n"
             "var: one (offsets, data) pair of bytes per VAR_COLUMNS name, in that order; fixed: one bytes\n"
             "per FIXED_COLUMNS name, in that order; resources/scopes: lists of bytes; the schema URLs:\n"
             "lists of str. dedicated: (key bytes, AttrType STRING=1 or INT=3) pairs; dedicated_columns\n"
             "has one entry per pair: (validity bitmap, offsets, data) or (validity bitmap, int64 values).\n"
             "Raises ValueError('malformed OTLP protobuf at byte N: ...') on bad input.");

/* The (key, type) pairs, copied so the walk needs no Python object (and the GIL) to read them. */
static int parse_dedicated(PyObject *spec, DedKey *out, int *n_out) {
    *n_out = 0;
    if (!spec) return 0;
    PyObject *seq = PySequence_Fast(spec, "dedicated must be a sequence of (bytes, int) pairs");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > MAX_DEDICATED) {
        PyErr_Format(PyExc_ValueError, "at most %d dedicated attributes", MAX_DEDICATED);
        goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        const char *key;
        Py_ssize_t key_len;
        long type;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_SetString(PyExc_TypeError, "dedicated must be a sequence of (bytes, int) pairs");
            goto error;
        }
        if (PyBytes_AsStringAndSize(PyTuple_GET_ITEM(item, 0), (char **)&key, &key_len) < 0) goto error;
        type = PyLong_AsLong(PyTuple_GET_ITEM(item, 1));
        if (type == -1 && PyErr_Occurred()) goto error;
        if (type != AT_STRING && type != AT_INT) {
            PyErr_Format(PyExc_ValueError, "dedicated attribute type must be STRING or INT, not %ld", type);
            goto error;
        }
        if (key_len > MAX_DEDICATED_KEY) {
            PyErr_Format(PyExc_ValueError, "dedicated key longer than %d bytes", MAX_DEDICATED_KEY);
            goto error;
        }
        out[i].n = (size_t)key_len;
        out[i].type = (int)type;
        memcpy(out[i].key, key, (size_t)key_len);
    }
    Py_DECREF(seq);
    *n_out = (int)n;
    return 0;
error:
    Py_DECREF(seq);
    return -1;
}

static PyObject *decode(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *arg, *spec = NULL;
    DedKey ded[MAX_DEDICATED];
    int n_ded;
    if (!PyArg_ParseTuple(args, "O|O:decode", &arg, &spec)) return NULL;
    if (parse_dedicated(spec, ded, &n_ded) < 0) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *result = NULL;
    /* Every byte of the input lands in at most one column, so int32 offsets cannot overflow. */
    if (view.len > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "OTLP request too large: over 2 GiB");
        goto done;
    }
    size_t len = (size_t)view.len;
    Decoder *d = decoder_new(len, ded, n_ded);
    if (!d) {
        PyErr_NoMemory();
        goto done;
    }
    d->base = (const uint8_t *)view.buf;
    int rc;
    if (len >= GIL_RELEASE_THRESHOLD) {
        Py_BEGIN_ALLOW_THREADS
        rc = walk_request(d, d->base, d->base + len);
        Py_END_ALLOW_THREADS
    } else {
        rc = walk_request(d, d->base, d->base + len);
    }
    if (rc < 0) {
        if (d->oom)
            PyErr_NoMemory();
        else
            PyErr_Format(PyExc_ValueError, "malformed OTLP protobuf at byte %zu: %s", d->err_pos, d->err_msg);
    } else {
        result = build_result(d);
    }
    decoder_free(d);
done:
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"decode", decode, METH_VARARGS, decode_doc},
    {NULL, NULL, 0, NULL},
};

static int module_exec(PyObject *m) {
    PyObject *var = PyTuple_New(N_VAR), *fixed = PyTuple_New(N_FIXED);
    if (!var || !fixed) goto error;
    for (int i = 0; i < N_VAR; i++) {
        PyObject *s = PyUnicode_FromString(VAR_NAMES[i]);
        if (!s) goto error;
        PyTuple_SET_ITEM(var, i, s);
    }
    for (int i = 0; i < N_FIXED; i++) {
        PyObject *s = PyUnicode_FromString(FIXED_NAMES[i]);
        if (!s) goto error;
        PyTuple_SET_ITEM(fixed, i, s);
    }
    if (PyModule_AddObject(m, "VAR_COLUMNS", var) < 0) goto error;
    var = NULL;
    if (PyModule_AddObject(m, "FIXED_COLUMNS", fixed) < 0) goto error;
    fixed = NULL;
    if (PyModule_AddIntConstant(m, "MAX_DEDICATED", MAX_DEDICATED) < 0) goto error;
    return 0;
error:
    Py_XDECREF(var);
    Py_XDECREF(fixed);
    return -1;
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    "tracelake.codec._otlpdecode",
    "Serialized OTLP trace requests -> column buffers, in one C pass over the wire bytes.",
    0,
    methods,
    slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__otlpdecode(void) { return PyModuleDef_Init(&moduledef); }
