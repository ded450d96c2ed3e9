/*
 * _cloudtrail_scan: pull the dozen fields the pipeline uses out of CloudTrail log objects.
 *
 * Why this exists: a CloudTrail record is mostly requestParameters/responseElements that nothing
 * downstream reads, and a general JSON reader (pyarrow's, orjson, simdjson proxies) spends ~75% of
 * ingest time building values for them. This scanner validates every byte as strict JSON (grammar,
 * UTF-8, escapes, control characters) but only copies the wanted strings, straight into Arrow string
 * buffers (int32 offsets, data, one validity byte per row).
 *
 * scan(docs) -> (rows, doc_index, record_valid, identity_valid, columns, failed)
 *   docs            sequence of bytes-like objects, each one {"Records": [...]} document
 *   rows            number of records found in the documents that scanned cleanly
 *   doc_index       int64 per record: index in docs of the record's document
 *   record_valid    uint8 per record: 0 when the record is not a JSON object
 *   identity_valid  uint8 per record: 0 when userIdentity is absent, null or not an object
 *   columns         one (offsets int32[rows+1], data, valid uint8[rows]) per name in FIELDS
 *   (every array is a read-only buffer-protocol object that owns its memory: no copy into bytes)
 *   failed          indices of docs that are not clean CloudTrail JSON; their records are left
 *                   out. The caller parses those with an exact (slow) reader to say what is wrong.
 *
 * A wanted field that holds a non-string value comes back as "\0mistyped:<python type name>", as
 * the Python fallback reader does, so the normaliser reports it by field name. JSON null counts as
 * absent. Duplicate keys: the last one wins (as json.loads). Anything unusual that would need more
 * code to get exactly right (escaped keys, duplicate "Records", lone surrogates, NaN) sends the
 * document to the slow reader instead of guessing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 512
#define N_TOP 9
#define N_IDENTITY 4
#define N_FIELDS (N_TOP + N_IDENTITY)

static const char *const FIELD_NAMES[N_FIELDS] = {
    "eventTime", "eventName", "eventSource", "awsRegion", "sourceIPAddress", "userAgent", "errorCode",
    "eventID", "recipientAccountId", "userIdentity.type", "userIdentity.arn", "userIdentity.accountId",
    "userIdentity.invokedBy",
};
static const char *const TOP_KEYS[N_TOP] = {
    "eventTime", "eventName", "eventSource", "awsRegion", "sourceIPAddress",
    "userAgent", "errorCode", "eventID", "recipientAccountId",
};
static const char *const IDENTITY_KEYS[N_IDENTITY] = {"type", "arn", "accountId", "invokedBy"};
static size_t TOP_LENS[N_TOP], IDENTITY_LENS[N_IDENTITY];

/* What a value turned out to be. STRING_PLAIN/STRING_ESCAPED are copied; the others are markers. */
enum kind { ABSENT = 0, STRING_PLAIN, STRING_ESCAPED, K_INT, K_FLOAT, K_BOOL, K_DICT, K_LIST };
static const char *const MISTYPED[] = {NULL, NULL, NULL, "int", "float", "bool", "dict", "list"};

typedef struct {
    char *p;
    size_t len, cap;
} buf_t;

static int buf_reserve(buf_t *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_append(buf_t *b, const void *src, size_t n) {
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

typedef struct {
    buf_t offsets, data, valid;
} column_t;

typedef struct {
    const unsigned char *start;
    size_t len;
    enum kind kind;
} slot_t;

typedef struct {
    column_t columns[N_FIELDS];
    buf_t doc_index, record_valid, identity_valid;
    size_t rows;
} out_t;

typedef struct {
    const unsigned char *p, *end;
    int depth;
} cur_t;

/* 1 for bytes that can sit in a JSON string with no further thought: printable ASCII but " and \ */
static unsigned char PLAIN[256];

static void init_tables(void) {
    for (int c = 0x20; c < 0x80; c++) PLAIN[c] = 1;
    PLAIN['"'] = 0;
    PLAIN['\\'] = 0;
    for (int i = 0; i < N_TOP; i++) TOP_LENS[i] = strlen(TOP_KEYS[i]);
    for (int i = 0; i < N_IDENTITY; i++) IDENTITY_LENS[i] = strlen(IDENTITY_KEYS[i]);
}

static inline void skip_ws(cur_t *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t')) c->p++;
}

static inline int hexval(unsigned char h) {
    if (h >= '0' && h <= '9') return h - '0';
    if (h >= 'a' && h <= 'f') return h - 'a' + 10;
    if (h >= 'A' && h <= 'F') return h - 'A' + 10;
    return -1;
}

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0 if it is not valid. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end) {
    unsigned char b = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) n = 2;
    else if (b >= 0xE0 && b <= 0xEF) {
        n = 3;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        n = 4;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
    } else return 0;
    if ((size_t)(end - p) < n) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return n;
}

/* Where in the 8 bytes at p the first byte that needs a look is: a ", a \, a control character or
 * a non-ASCII byte; 8 if none. Most of a CloudTrail object is string contents, so this
 * word-at-a-time search is the hot loop. (v - ones) & ~v sets the high bit of the first zero byte
 * of v exactly (borrows only run upwards), so the lowest flagged byte is the first special one. */
static inline unsigned first_special8(const unsigned char *p) {
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t x, quote, backslash;
    memcpy(&x, p, 8);
    quote = x ^ (ones * '"');
    backslash = x ^ (ones * '\\');
    uint64_t special = ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash);
    special |= (x - ones * 0x20) & ~x; /* a byte below 0x20 */
    special |= x;                      /* a byte at or above 0x80 */
    special &= highs;
    return special ? (unsigned)__builtin_ctzll(special) >> 3 : 8;
#else
    for (unsigned i = 0; i < 8; i++)
        if (!PLAIN[p[i]]) return i;
    return 8;
#endif
}

/* c->p at the opening quote. Leaves c->p after the closing quote; the contents are [*start, +*len). */
static int scan_string(cur_t *c, const unsigned char **start, size_t *len, int *escaped) {
    const unsigned char *p = c->p + 1, *end = c->end;
    *start = p;
    *escaped = 0;
    for (;;) {
        unsigned skip = 8;
        while (end - p >= 8 && (skip = first_special8(p)) == 8) p += 8;
        if (skip < 8) p += skip;
        else {
            while (p < end && PLAIN[*p]) p++;
            if (p >= end) return -1;
        }
        unsigned char b = *p;
        if (b == '"') break;
        if (b == '\\') {
            *escaped = 1;
            if (end - p < 2) return -1;
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                break;
            case 'u':
                if (end - p < 6) return -1;
                for (int i = 2; i < 6; i++)
                    if (hexval(p[i]) < 0) return -1;
                p += 6;
                break;
            default:
                return -1;
            }
        } else if (b < 0x20) {
            return -1;
        } else {
            size_t n = utf8_len(p, end);
            if (n == 0) return -1;
            p += n;
        }
    }
    *len = (size_t)(p - *start);
    c->p = p + 1;
    return 0;
}

static int literal(cur_t *c, const char *word, size_t n) {
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return -1;
    c->p += n;
    return 0;
}

static inline int is_digit(const cur_t *c) { return c->p < c->end && *c->p >= '0' && *c->p <= '9'; }

static int number(cur_t *c, enum kind *kind) {
    *kind = K_INT;
    if (c->p < c->end && *c->p == '-') c->p++;
    if (!is_digit(c)) return -1;
    if (*c->p == '0') c->p++;
    else
        while (is_digit(c)) c->p++;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        *kind = K_FLOAT;
        if (!is_digit(c)) return -1;
        while (is_digit(c)) c->p++;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        *kind = K_FLOAT;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) c->p++;
        if (!is_digit(c)) return -1;
        while (is_digit(c)) c->p++;
    }
    return 0;
}

static int skip_value(cur_t *c, enum kind *kind);

/* At a '{' or '[': 1 if the container has items (cursor at the first), 0 if it is empty (consumed). */
static int open_container(cur_t *c, unsigned char close) {
    if (++c->depth > MAX_DEPTH) return -1;
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        c->depth--;
        return 0;
    }
    return 1;
}

/* After an item: 1 if a ',' and another item follow, 0 at the closing byte (consumed), -1 else. */
static int next_item(cur_t *c, unsigned char close) {
    skip_ws(c);
    if (c->p >= c->end) return -1;
    if (*c->p == ',') {
        c->p++;
        skip_ws(c);
        return 1;
    }
    if (*c->p != close) return -1;
    c->p++;
    c->depth--;
    return 0;
}

/* Calls on_member(cursor at value, key, ..., ctx) for each member of the object at c->p. */
typedef int (*member_fn)(cur_t *c, const unsigned char *key, size_t key_len, int key_escaped, void *ctx);

static int object(cur_t *c, member_fn on_member, void *ctx) {
    int more = open_container(c, '}');
    while (more > 0) {
        const unsigned char *key;
        size_t key_len;
        int escaped;
        if (c->p >= c->end || *c->p != '"' || scan_string(c, &key, &key_len, &escaped) < 0) return -1;
        skip_ws(c);
        if (c->p >= c->end || *c->p != ':') return -1;
        c->p++;
        skip_ws(c);
        if (on_member(c, key, key_len, escaped, ctx) < 0) return -1;
        more = next_item(c, '}');
    }
    return more;
}

/* Calls on_element(cursor at element, ctx) for each element of the array at c->p. */
typedef int (*element_fn)(cur_t *c, void *ctx);

static int array(cur_t *c, element_fn on_element, void *ctx) {
    int more = open_container(c, ']');
    while (more > 0) {
        if (on_element(c, ctx) < 0) return -1;
        more = next_item(c, ']');
    }
    return more;
}

static int skip_element(cur_t *c, void *ctx) {
    (void)ctx;
    enum kind ignored;
    return skip_value(c, &ignored);
}

static int skip_member(cur_t *c, const unsigned char *key, size_t key_len, int key_escaped, void *ctx) {
    (void)key, (void)key_len, (void)key_escaped;
    return skip_element(c, ctx);
}

static int skip_value(cur_t *c, enum kind *kind) {
    if (c->p >= c->end) return -1;
    const unsigned char *s;
    size_t n;
    int e;
    switch (*c->p) {
    case '"':
        *kind = STRING_PLAIN;
        return scan_string(c, &s, &n, &e);
    case '{':
        *kind = K_DICT;
        return object(c, skip_member, NULL);
    case '[':
        *kind = K_LIST;
        return array(c, skip_element, NULL);
    case 't':
        *kind = K_BOOL;
        return literal(c, "true", 4);
    case 'f':
        *kind = K_BOOL;
        return literal(c, "false", 5);
    case 'n':
        *kind = ABSENT;
        return literal(c, "null", 4);
    default:
        return number(c, kind);
    }
}

/* Index of key in names (exact bytes), -1 if none. */
static int key_index(const unsigned char *key, size_t len, const char *const *names, const size_t *lens, int count) {
    for (int i = 0; i < count; i++)
        if (lens[i] == len && memcmp(names[i], key, len) == 0) return i;
    return -1;
}

/* A wanted field's value: remember where its string is, or what it is instead. */
static int field_value(cur_t *c, slot_t *slot) {
    if (c->p < c->end && *c->p == '"') {
        int escaped;
        if (scan_string(c, &slot->start, &slot->len, &escaped) < 0) return -1;
        slot->kind = escaped ? STRING_ESCAPED : STRING_PLAIN;
        return 0;
    }
    return skip_value(c, &slot->kind);
}

typedef struct {
    slot_t slots[N_FIELDS];
    int identity_valid;
} record_t;

static int identity_member(cur_t *c, const unsigned char *key, size_t key_len, int key_escaped, void *ctx) {
    record_t *r = ctx;
    if (key_escaped) return -1;
    int i = key_index(key, key_len, IDENTITY_KEYS, IDENTITY_LENS, N_IDENTITY);
    if (i < 0) return skip_member(c, key, key_len, key_escaped, NULL);
    return field_value(c, &r->slots[N_TOP + i]);
}

static int record_member(cur_t *c, const unsigned char *key, size_t key_len, int key_escaped, void *ctx) {
    record_t *r = ctx;
    if (key_escaped) return -1;
    if (key_len == 12 && memcmp(key, "userIdentity", 12) == 0) {
        memset(&r->slots[N_TOP], 0, sizeof(slot_t) * N_IDENTITY); /* a repeated key replaces the first */
        r->identity_valid = c->p < c->end && *c->p == '{';
        return r->identity_valid ? object(c, identity_member, r) : skip_element(c, NULL);
    }
    int i = key_index(key, key_len, TOP_KEYS, TOP_LENS, N_TOP);
    if (i < 0) return skip_member(c, key, key_len, key_escaped, NULL);
    return field_value(c, &r->slots[i]);
}

/* Decode a JSON string body with escapes into out (UTF-8). -1 on a lone surrogate. */
static int decode_escaped(const unsigned char *s, size_t n, buf_t *out) {
    if (buf_reserve(out, n) < 0) return -2; /* decoded text is never longer than its escaped form */
    char *o = out->p + out->len;
    const unsigned char *end = s + n;
    while (s < end) {
        if (*s != '\\') {
            *o++ = (char)*s++;
            continue;
        }
        unsigned char e = s[1];
        s += 2;
        switch (e) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            uint32_t cp = 0;
            for (int i = 0; i < 4; i++) cp = (cp << 4) | (uint32_t)hexval(s[i]);
            s += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - s < 6 || s[0] != '\\' || s[1] != 'u') return -1;
                uint32_t lo = 0;
                for (int i = 2; i < 6; i++) lo = (lo << 4) | (uint32_t)hexval(s[i]);
                if (lo < 0xDC00 || lo > 0xDFFF) return -1;
                s += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return -1;
            }
            if (cp < 0x80) *o++ = (char)cp;
            else if (cp < 0x800) {
                *o++ = (char)(0xC0 | (cp >> 6));
                *o++ = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                *o++ = (char)(0xE0 | (cp >> 12));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (char)(0x80 | (cp & 0x3F));
            } else {
                *o++ = (char)(0xF0 | (cp >> 18));
                *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: *o++ = (char)e; break; /* " \ / */
        }
    }
    out->len = (size_t)(o - out->p);
    return 0;
}

/* Append one record's slots as a row. -1: needs the slow reader; -2: out of memory or too big. */
static int append_record(out_t *out, const record_t *r, int record_valid, int64_t doc) {
    for (int f = 0; f < N_FIELDS; f++) {
        column_t *col = &out->columns[f];
        const slot_t *s = &r->slots[f];
        unsigned char valid = s->kind != ABSENT;
        int rc = 0;
        if (s->kind == STRING_PLAIN) rc = buf_append(&col->data, s->start, s->len) < 0 ? -2 : 0;
        else if (s->kind == STRING_ESCAPED) rc = decode_escaped(s->start, s->len, &col->data);
        else if (valid) {
            char marker[32];
            int n = snprintf(marker, sizeof marker, "%cmistyped:%s", 0, MISTYPED[s->kind]);
            rc = buf_append(&col->data, marker, (size_t)n) < 0 ? -2 : 0;
        }
        if (rc < 0) return rc;
        if (col->data.len > INT32_MAX) return -2;
        int32_t offset = (int32_t)col->data.len;
        if (buf_append(&col->offsets, &offset, sizeof offset) < 0 || buf_append(&col->valid, &valid, 1) < 0)
            return -2;
    }
    unsigned char rv = (unsigned char)record_valid, iv = (unsigned char)r->identity_valid;
    if (buf_append(&out->doc_index, &doc, sizeof doc) < 0 || buf_append(&out->record_valid, &rv, 1) < 0 ||
        buf_append(&out->identity_valid, &iv, 1) < 0)
        return -2;
    out->rows++;
    return 0;
}

typedef struct {
    out_t *out;
    int64_t doc;
    int seen_records;
    int status; /* -2 when out of memory: stop everything, not just this document */
} doc_ctx_t;

static int record_element(cur_t *c, void *ctx) {
    doc_ctx_t *d = ctx;
    record_t r;
    memset(&r, 0, sizeof r);
    int valid = c->p < c->end && *c->p == '{';
    if ((valid ? object(c, record_member, &r) : skip_element(c, NULL)) < 0) return -1;
    int rc = append_record(d->out, &r, valid, d->doc);
    if (rc == -2) d->status = -2;
    return rc < 0 ? -1 : 0;
}

static int doc_member(cur_t *c, const unsigned char *key, size_t key_len, int key_escaped, void *ctx) {
    doc_ctx_t *d = ctx;
    if (key_escaped) return -1;
    if (key_len == 7 && memcmp(key, "Records", 7) == 0) {
        if (d->seen_records++ || c->p >= c->end || *c->p != '[') return -1;
        return array(c, record_element, d);
    }
    return skip_member(c, key, key_len, key_escaped, NULL);
}

static int scan_doc(out_t *out, const unsigned char *p, size_t n, int64_t doc) {
    cur_t c = {p, p + n, 0};
    doc_ctx_t d = {out, doc, 0, 0};
    skip_ws(&c);
    int rc = -1;
    if (c.p < c.end && *c.p == '{' && object(&c, doc_member, &d) == 0) {
        skip_ws(&c);
        rc = (c.p == c.end && d.seen_records) ? 0 : -1;
    }
    return d.status == -2 ? -2 : rc;
}

/* Undo a failed document's rows. */
typedef struct {
    size_t rows, doc_index, record_valid, identity_valid;
    size_t offsets[N_FIELDS], data[N_FIELDS], valid[N_FIELDS];
} mark_t;

static void mark(const out_t *o, mark_t *m) {
    m->rows = o->rows;
    m->doc_index = o->doc_index.len;
    m->record_valid = o->record_valid.len;
    m->identity_valid = o->identity_valid.len;
    for (int f = 0; f < N_FIELDS; f++) {
        m->offsets[f] = o->columns[f].offsets.len;
        m->data[f] = o->columns[f].data.len;
        m->valid[f] = o->columns[f].valid.len;
    }
}

static void rewind_to(out_t *o, const mark_t *m) {
    o->rows = m->rows;
    o->doc_index.len = m->doc_index;
    o->record_valid.len = m->record_valid;
    o->identity_valid.len = m->identity_valid;
    for (int f = 0; f < N_FIELDS; f++) {
        o->columns[f].offsets.len = m->offsets[f];
        o->columns[f].data.len = m->data[f];
        o->columns[f].valid.len = m->valid[f];
    }
}

static void free_out(out_t *o) {
    for (int f = 0; f < N_FIELDS; f++) {
        free(o->columns[f].offsets.p);
        free(o->columns[f].data.p);
        free(o->columns[f].valid.p);
    }
    free(o->doc_index.p);
    free(o->record_valid.p);
    free(o->identity_valid.p);
}

/* A read-only buffer that owns a buf_t's memory: handed to Arrow (pa.py_buffer) without a copy. */
typedef struct {
    PyObject_HEAD
    char *p;
    Py_ssize_t len;
} Buffer;

static int buffer_get(PyObject *self, Py_buffer *view, int flags) {
    Buffer *b = (Buffer *)self;
    return PyBuffer_FillInfo(view, self, b->p, b->len, 1, flags);
}

static void buffer_dealloc(PyObject *self) {
    free(((Buffer *)self)->p);
    Py_TYPE(self)->tp_free(self);
}

static PyBufferProcs BUFFER_PROCS = {buffer_get, NULL};

static PyTypeObject BufferType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_cloudtrail_scan.Buffer",
    .tp_basicsize = sizeof(Buffer),
    .tp_dealloc = buffer_dealloc,
    .tp_as_buffer = &BUFFER_PROCS,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Memory filled by scan(), exposed through the buffer protocol.",
};

/* Move b's memory into a new Buffer (b is left empty). */
static PyObject *as_buffer(buf_t *b) {
    if (b->p == NULL && buf_reserve(b, 1) < 0) return PyErr_NoMemory();
    Buffer *out = PyObject_New(Buffer, &BufferType);
    if (out == NULL) return NULL;
    out->p = b->p;
    out->len = (Py_ssize_t)b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return (PyObject *)out;
}

static PyObject *scan(PyObject *self, PyObject *arg) {
    (void)self;
    PyObject *seq = PySequence_Fast(arg, "scan() expects a sequence of bytes-like objects");
    if (seq == NULL) return NULL;
    out_t out;
    memset(&out, 0, sizeof out);
    PyObject *failed = PyList_New(0), *result = NULL;
    int32_t zero = 0;
    int oom = failed == NULL;
    for (int f = 0; f < N_FIELDS && !oom; f++) oom = buf_append(&out.columns[f].offsets, &zero, sizeof zero) < 0;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < count && !oom; i++) {
        Py_buffer view;
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, i), &view, PyBUF_SIMPLE) < 0) goto done;
        mark_t m;
        mark(&out, &m);
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = scan_doc(&out, view.buf, (size_t)view.len, (int64_t)i);
        Py_END_ALLOW_THREADS
        PyBuffer_Release(&view);
        if (rc == -2) oom = 1;
        else if (rc < 0) {
            rewind_to(&out, &m);
            PyObject *index = PyLong_FromSsize_t(i);
            if (index == NULL || PyList_Append(failed, index) < 0) {
                Py_XDECREF(index);
                goto done;
            }
            Py_DECREF(index);
        }
    }
    if (oom) {
        PyErr_SetString(PyExc_MemoryError, "scan(): out of memory, or a column over 2 GiB (scan fewer documents)");
        goto done;
    }
    PyObject *columns = PyTuple_New(N_FIELDS);
    if (columns == NULL) goto done;
    for (int f = 0; f < N_FIELDS; f++) {
        PyObject *col = Py_BuildValue("(NNN)", as_buffer(&out.columns[f].offsets), as_buffer(&out.columns[f].data),
                                      as_buffer(&out.columns[f].valid));
        if (col == NULL) {
            Py_DECREF(columns);
            goto done;
        }
        PyTuple_SET_ITEM(columns, f, col);
    }
    result = Py_BuildValue("(nNNNNO)", (Py_ssize_t)out.rows, as_buffer(&out.doc_index), as_buffer(&out.record_valid),
                           as_buffer(&out.identity_valid), columns, failed);
done:
    free_out(&out);
    Py_XDECREF(failed);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef METHODS[] = {
    {"scan", scan, METH_O, "scan(docs) -> (rows, doc_index, record_valid, identity_valid, columns, failed)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {
    PyModuleDef_HEAD_INIT, "_cloudtrail_scan", "Extract CloudTrail fields into Arrow string buffers.", -1, METHODS,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__cloudtrail_scan(void) {
    init_tables();
    if (PyType_Ready(&BufferType) < 0) return NULL;
    PyObject *m = PyModule_Create(&MODULE);
    if (m == NULL) return NULL;
    PyObject *names = PyTuple_New(N_FIELDS);
    if (names == NULL) goto fail;
    for (int f = 0; f < N_FIELDS; f++) {
        PyObject *s = PyUnicode_FromString(FIELD_NAMES[f]);
        if (s == NULL) {
            Py_DECREF(names);
            goto fail;
        }
        PyTuple_SET_ITEM(names, f, s);
    }
    if (PyModule_AddObject(m, "FIELDS", names) < 0) {
        Py_DECREF(names);
        goto fail;
    }
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
