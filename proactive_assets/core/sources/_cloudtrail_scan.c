/*
 * _cloudtrail_scan: pull the fields the pipeline uses out of CloudTrail log objects.
 *
 * Why this exists: a CloudTrail record is mostly requestParameters/responseElements that nothing
 * downstream reads, and a general JSON reader (pyarrow's, orjson, simdjson proxies) spends ~75% of
 * ingest time building values for them. This scanner validates every byte as strict JSON (grammar,
 * UTF-8, escapes, control characters) but only copies the wanted strings, straight into Arrow string
 * buffers (int32 offsets, data, one byte per row saying what the value was).
 *
 * It is the exact reader for every document: nothing is handed to another parser, so what a
 * hostile document costs is bounded here (memory in proportion to the document, no recursion past
 * MAX_DEPTH). The Python reader in cloudtrail_records.py implements the same rules with json and
 * is the reference the tests hold this scanner to.
 *
 * scan(docs, sample) -> (rows, doc_index, record_index, columns, read_only, event_ms, outcomes)
 *   docs          sequence of bytes-like objects, each one {"Records": [...]} document
 *   sample        how many rejected records to name per document (all of them are counted)
 *   rows          number of records kept as rows
 *   doc_index     int64 per row: index in docs of the row's document
 *   record_index  int64 per row: the record's index in its document (records of a repeated
 *                 "Records" array are numbered on, in document order: every array is read)
 *   columns       one (offsets int32[rows+1], data, kind uint8[rows]) per name in FIELDS; kind is
 *                 0 (absent or null), 1 (a string: the row's data) or the KINDS code of the JSON
 *                 type it has instead. A mistyped value is flagged out of band, never written as
 *                 a marker string that data could imitate.
 *   read_only     uint8 per row: 0 absent or null, 1 false, 2 true, 3 anything else ("true" and
 *                 "false" as strings, in any ASCII case, count as the booleans)
 *   event_ms      int64 per row: eventTime in milliseconds since the epoch where it is written as
 *                 CloudTrail writes it (YYYY-MM-DDTHH:MM:SSZ, a real date, unescaped), else INT64_MIN
 *                 (the caller parses those rows its own way). Parsed here, without the GIL, as
 *                 the string is copied: the day's millions of times cost no pass of their own.
 *   outcomes      per document: (status, error_offset, error_code, records, counts, sampled)
 *                 status is 0 or the STATUSES code of why the whole document was rejected (its
 *                 rows are then left out); error_offset/error_code locate a syntax error;
 *                 records: how many records the document holds; counts: records rejected before
 *                 becoming rows, by REASONS code; sampled: the first `sample` of them as
 *                 (record_index, reason) pairs.
 *   (every array is a read-only buffer-protocol object that owns its memory: no copy into bytes)
 *
 * Scanner(sample) does the same one document at a time: add(doc) scans it at once (so that it is
 * read while the inflater's output is still in the CPU's cache) and returns its outcome, or None
 * for the usual document (read whole, no record rejected: no tuple built for it);
 * finish() returns (rows, doc_index, record_index, columns, read_only, event_ms) for the documents added.
 * Both release the GIL while they scan a document: threads scan in parallel.
 *
 * A record is rejected before it becomes a row, with the first reason that applies: nested past
 * MAX_DEPTH, text that is not valid (a byte that is not UTF-8, a raw control character or a lone
 * surrogate escape, anywhere in the record), not an object, no userIdentity object, no eventTime,
 * no eventName, no sourceIPAddress. Such a record costs a count, not a row, however many there
 * are. A document is rejected when it is not JSON, or is nested too deep or holds invalid text
 * outside its records, or is not an object with "Records" arrays. Duplicate keys in a record: the
 * last one wins (as json.loads). A leading UTF-8 byte order mark is skipped.
 *
 * Memory comes from PyMem_Raw* (safe without the GIL, and visible to tracemalloc).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define MAX_DEPTH 512
#define N_TOP 9
#define N_IDENTITY 4
#define N_FIELDS (N_TOP + N_IDENTITY)
/* Escaped keys and readOnly strings are decoded into a buffer this size; a longer one matches nothing. */
#define SMALL 192

static const char *const FIELD_NAMES[N_FIELDS] = {
    "eventTime", "eventName", "eventSource", "awsRegion", "sourceIPAddress", "userAgent", "errorCode",
    "eventID", "recipientAccountId", "userIdentity.type", "userIdentity.arn", "userIdentity.accountId",
    "userIdentity.invokedBy",
};
enum { F_TIME = 0, F_NAME = 1, F_SOURCE = 4 };

/* What a value is. ABSENT (absent or null) and STRING are data; the others are a wrong type. */
enum kind { ABSENT = 0, STRING, K_INT, K_FLOAT, K_BOOL, K_OBJECT, K_ARRAY, N_KINDS };
static const char *const KIND_NAMES[N_KINDS] = {"absent", "string", "int", "float", "bool", "object", "array"};

/* Why a record is rejected before it becomes a row, in order of precedence. */
enum reason { R_TOO_DEEP = 0, R_BAD_TEXT, R_NOT_OBJECT, R_NO_IDENTITY, R_NO_TIME, R_NO_NAME, R_NO_SOURCE, N_REASONS };
static const char *const REASON_NAMES[N_REASONS] = {
    "too_deep", "bad_text", "not_object", "no_identity", "no_event_time", "no_event_name", "no_source",
};

/* Why a whole document is rejected (0: it is not). */
enum status { S_OK = 0, S_NOT_JSON, S_TOO_DEEP, S_BAD_TEXT, S_NOT_CLOUDTRAIL, N_STATUSES };
static const char *const STATUS_NAMES[N_STATUSES] = {"ok", "not_json", "too_deep", "bad_text", "not_cloudtrail"};

/* Where a syntax error is. */
enum error { E_NONE = 0, E_SYNTAX, E_EXTRA, E_EMPTY, N_ERRORS };
static const char *const ERROR_NAMES[N_ERRORS] = {"none", "syntax", "extra", "empty"};

enum read_only { RO_ABSENT = 0, RO_FALSE, RO_TRUE, RO_OTHER };

typedef struct {
    char *p;
    size_t len, cap;
} buf_t;

static int buf_grow(buf_t *b, size_t extra) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) {
        if (cap > SIZE_MAX / 2) return -1;
        cap *= 2;
    }
    char *p = PyMem_RawRealloc(b->p, cap);
    if (p == NULL) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline int buf_reserve(buf_t *b, size_t extra) {
    if (b->len + extra <= b->cap && b->p != NULL) return 0;
    return buf_grow(b, extra);
}

static int buf_append(buf_t *b, const void *src, size_t n) {
    if (n == 0) return 0; /* memcpy with a NULL destination is undefined even for 0 bytes */
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

typedef struct {
    buf_t offsets, data, kind;
} column_t;

typedef struct {
    column_t columns[N_FIELDS];
    buf_t doc_index, record_index, read_only, event_ms;
    size_t rows;
} out_t;

typedef struct {
    const unsigned char *p, *end;
    int depth;
    int bad_text, too_deep;        /* seen since the caller last cleared them */
    int oom;                       /* out of memory: stop everything */
    const unsigned char *error_at; /* first syntax error */
} cur_t;

/* Record a syntax error at the cursor (the first one wins) and fail. */
static int fail(cur_t *c) {
    if (c->error_at == NULL) c->error_at = c->p;
    return -1;
}

/* 1 for bytes that can sit in a JSON string with no further thought: printable ASCII but " and \ */
static unsigned char PLAIN[256];

static void init_tables(void) {
    for (int c = 0x20; c < 0x80; c++) PLAIN[c] = 1;
    PLAIN['"'] = 0;
    PLAIN['\\'] = 0;
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

/* The code unit of the 4 hex digits at p (p + 4 <= end), or -1. */
static int hex4(const unsigned char *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0) return -1;
        v = (v << 4) | h;
    }
    return v;
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

#if defined(__SSE2__)
/* The same search 16 bytes at a time (SSE2 is part of every x86-64 CPU): one signed compare with
 * 0x20 flags both the control characters and the bytes at or above 0x80 (negative as signed). */
#define SPAN 16
static inline unsigned first_special(const unsigned char *p) {
    __m128i x = _mm_loadu_si128((const __m128i *)p);
    __m128i special = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('"')), _mm_cmpeq_epi8(x, _mm_set1_epi8('\\'))),
                                   _mm_cmplt_epi8(x, _mm_set1_epi8(0x20)));
    unsigned mask = (unsigned)_mm_movemask_epi8(special);
    return mask ? (unsigned)__builtin_ctz(mask) : SPAN;
}
#else
#define SPAN 8
#define first_special first_special8
#endif

/* c->p at the opening quote. Leaves c->p after the closing quote; the contents are [*start, +*len).
 * Text that is not valid (a byte that is not UTF-8, a raw control character, a lone surrogate
 * escape) sets c->bad_text and is stepped over: where the string ends stays certain, since a quote
 * byte is never part of a multi-byte sequence. A malformed escape is a syntax error. */
static int scan_string_rest(cur_t *c, const unsigned char *p, const unsigned char **start, size_t *len,
                            int *escaped);

/* The usual string (no escape, ASCII only) in a few instructions, inlined where it is read; any
 * other string goes on in scan_string_rest from where this stopped. */
static inline int scan_string(cur_t *c, const unsigned char **start, size_t *len, int *escaped) {
    const unsigned char *p = c->p + 1, *end = c->end;
    unsigned skip = SPAN;
    while (end - p >= SPAN && (skip = first_special(p)) == SPAN) p += SPAN;
    if (skip < SPAN && p[skip] == '"') {
        *start = c->p + 1;
        *len = (size_t)(p + skip - *start);
        *escaped = 0;
        c->p = p + skip + 1;
        return 0;
    }
    return scan_string_rest(c, p, start, len, escaped);
}

static int scan_string_rest(cur_t *c, const unsigned char *p, const unsigned char **start, size_t *len,
                            int *escaped) {
    const unsigned char *end = c->end;
    *start = c->p + 1;
    *escaped = 0;
    for (;;) {
        unsigned skip = SPAN;
        while (end - p >= SPAN && (skip = first_special(p)) == SPAN) p += SPAN;
        if (skip < SPAN) p += skip;
        else
            while (p < end && PLAIN[*p]) p++;
        if (p >= end) {
            c->p = end;
            return fail(c); /* unterminated */
        }
        unsigned char b = *p;
        if (b == '"') break;
        if (b == '\\') {
            *escaped = 1;
            if (end - p < 2) {
                c->p = p;
                return fail(c);
            }
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                break;
            case 'u': {
                int unit = end - p >= 6 ? hex4(p + 2) : -1;
                if (unit < 0) {
                    c->p = p;
                    return fail(c);
                }
                p += 6;
                if (unit >= 0xD800 && unit <= 0xDBFF) {
                    int low = (end - p >= 6 && p[0] == '\\' && p[1] == 'u') ? hex4(p + 2) : -1;
                    if (low >= 0xDC00 && low <= 0xDFFF) p += 6;
                    else c->bad_text = 1; /* a following escape is read on its own, as json does */
                } else if (unit >= 0xDC00 && unit <= 0xDFFF) {
                    c->bad_text = 1;
                }
                break;
            }
            default:
                c->p = p;
                return fail(c);
            }
        } else if (b < 0x20) {
            c->bad_text = 1;
            p++;
        } else {
            size_t n = utf8_len(p, end);
            if (n == 0) {
                c->bad_text = 1;
                n = 1;
            }
            p += n;
        }
    }
    *len = (size_t)(p - *start);
    c->p = p + 1;
    return 0;
}

/* Decode a JSON string body (escapes checked by scan_string) into o, which has room for n bytes
 * (decoded text is never longer than its escaped form). Returns the decoded length. A lone
 * surrogate becomes U+FFFD; records holding one are rejected as bad text before this runs. */
static size_t decode_into(const unsigned char *s, size_t n, char *o) {
    char *start = o;
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
            uint32_t cp = (uint32_t)hex4(s);
            s += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                int low = (end - s >= 6 && s[0] == '\\' && s[1] == 'u') ? hex4(s + 2) : -1;
                if (low >= 0xDC00 && low <= 0xDFFF) {
                    s += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)low - 0xDC00);
                } else cp = 0xFFFD;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) cp = 0xFFFD;
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
    return (size_t)(o - start);
}

/* The decoded text of a short string into small[SMALL]; its length, or SMALL + 1 when longer. */
static size_t small_text(const unsigned char *s, size_t n, int escaped, char *small) {
    if (n > SMALL) return SMALL + 1;
    if (!escaped) {
        memcpy(small, s, n);
        return n;
    }
    return decode_into(s, n, small);
}

static int literal(cur_t *c, const char *word, size_t n) {
    for (size_t i = 0; i < n; i++, c->p++)
        if (c->p >= c->end || *c->p != (unsigned char)word[i]) return fail(c);
    return 0;
}

static inline int is_digit(const cur_t *c) { return c->p < c->end && *c->p >= '0' && *c->p <= '9'; }

static int number(cur_t *c, enum kind *kind) {
    *kind = K_INT;
    if (c->p < c->end && *c->p == '-') c->p++;
    if (!is_digit(c)) return fail(c);
    if (*c->p == '0') c->p++;
    else
        while (is_digit(c)) c->p++;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        *kind = K_FLOAT;
        if (!is_digit(c)) return fail(c);
        while (is_digit(c)) c->p++;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        *kind = K_FLOAT;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) c->p++;
        if (!is_digit(c)) return fail(c);
        while (is_digit(c)) c->p++;
    }
    return 0;
}

static int skip_value(cur_t *c, enum kind *kind);

/* At a '{' or '[': 1 if the container has items (cursor at the first), 0 if it is empty (consumed). */
static int open_container(cur_t *c, unsigned char close) {
    if (++c->depth > MAX_DEPTH) return fail(c); /* callers go to skip_deep first: cannot happen */
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
    if (c->p >= c->end) return fail(c);
    if (*c->p == ',') {
        c->p++;
        skip_ws(c);
        return 1;
    }
    if (*c->p != close) return fail(c);
    c->p++;
    c->depth--;
    return 0;
}

/* At a key: scan it and the ':' after it; the cursor ends at the value. */
static inline int member_key(cur_t *c, const unsigned char **key, size_t *key_len, int *escaped) {
    if (c->p >= c->end || *c->p != '"') return fail(c);
    if (scan_string(c, key, key_len, escaped) < 0) return -1;
    skip_ws(c);
    if (c->p >= c->end || *c->p != ':') return fail(c);
    c->p++;
    skip_ws(c);
    return 0;
}

/* A member's key and its ':', validated and passed over (the skipping readers need not the key). */
static inline int skip_member_key(cur_t *c) {
    const unsigned char *key;
    size_t key_len;
    int escaped;
    return member_key(c, &key, &key_len, &escaped);
}

/* Calls on_member(cursor at value, key, ..., ctx) for each member of the object at c->p. */
typedef int (*member_fn)(cur_t *c, const unsigned char *key, size_t key_len, int key_escaped, void *ctx);

static int object(cur_t *c, member_fn on_member, void *ctx) {
    int more = open_container(c, '}');
    while (more > 0) {
        const unsigned char *key;
        size_t key_len;
        int escaped;
        if (member_key(c, &key, &key_len, &escaped) < 0) return -1;
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

/* A container that would sit deeper than MAX_DEPTH, at c->p: validated without recursion (a stack
 * of the brackets still to close, one byte a level), its strings checked as anywhere else. */
static int skip_deep(cur_t *c) {
    buf_t stack = {NULL, 0, 0};
    int rc = -1;
    c->too_deep = 1;
    for (;;) {
        /* a value starts at c->p */
        if (c->p >= c->end) {
            fail(c);
            break;
        }
        unsigned char b = *c->p;
        if (b == '{' || b == '[') {
            unsigned char close = b == '{' ? '}' : ']';
            if (buf_append(&stack, &close, 1) < 0) {
                c->oom = 1;
                break;
            }
            c->p++;
            skip_ws(c);
            if (c->p < c->end && *c->p == close) {
                c->p++;
                stack.len--;
            } else {
                if (close == '}' && skip_member_key(c) < 0) break;
                continue;
            }
        } else {
            enum kind ignored;
            if (skip_value(c, &ignored) < 0) break; /* a scalar: no recursion */
        }
        /* after a value: close what ends here, or go on after a ',' */
        int next = 0;
        while (stack.len > 0) {
            skip_ws(c);
            if (c->p >= c->end) {
                next = -1;
                break;
            }
            unsigned char close = (unsigned char)stack.p[stack.len - 1];
            if (*c->p == ',') {
                c->p++;
                skip_ws(c);
                next = close == '}' && skip_member_key(c) < 0 ? -1 : 1;
                break;
            }
            if (*c->p != close) {
                next = -1;
                break;
            }
            c->p++;
            stack.len--;
        }
        if (next < 0) {
            fail(c);
            break;
        }
        if (next == 0) {
            rc = 0;
            break;
        }
    }
    PyMem_RawFree(stack.p);
    return rc;
}

/* The scalar (string, number or literal) at c->p. */
static inline int skip_scalar(cur_t *c) {
    const unsigned char *s;
    size_t n;
    int e;
    enum kind kind;
    switch (*c->p) {
    case '"': return scan_string(c, &s, &n, &e);
    case 't': return literal(c, "true", 4);
    case 'f': return literal(c, "false", 5);
    case 'n': return literal(c, "null", 4);
    default: return number(c, &kind);
    }
}

/* The object or array at c->p, skipped: every byte validated as anywhere else, but in one loop
 * with a stack of the brackets to close (no recursion, no callback per member). Most of a record
 * (requestParameters, responseElements, sessionContext...) is read here. A container that would
 * sit deeper than MAX_DEPTH goes to skip_deep, as it would from object() and array(). */
static int skip_container(cur_t *c) {
    unsigned char closers[MAX_DEPTH];
    int top = 0;
    for (;;) {
        /* a value starts at c->p */
        if (c->p >= c->end) return fail(c);
        unsigned char b = *c->p;
        if (b == '{' || b == '[') {
            if (c->depth + top >= MAX_DEPTH) {
                if (skip_deep(c) < 0) return -1;
            } else {
                unsigned char close = b == '{' ? '}' : ']';
                c->p++;
                skip_ws(c);
                if (c->p < c->end && *c->p == close) {
                    c->p++;
                } else {
                    closers[top++] = close;
                    if (close == '}' && skip_member_key(c) < 0) return -1;
                    continue;
                }
            }
        } else if (skip_scalar(c) < 0) {
            return -1;
        }
        /* after a value: close what ends here, or go on after a ',' */
        for (;;) {
            if (top == 0) return 0;
            skip_ws(c);
            if (c->p >= c->end) return fail(c);
            unsigned char close = closers[top - 1];
            if (*c->p == ',') {
                c->p++;
                skip_ws(c);
                if (close == '}' && skip_member_key(c) < 0) return -1;
                break;
            }
            if (*c->p != close) return fail(c);
            c->p++;
            top--;
        }
    }
}

static int skip_value(cur_t *c, enum kind *kind) {
    if (c->p >= c->end) return fail(c);
    const unsigned char *s;
    size_t n;
    int e;
    switch (*c->p) {
    case '"':
        *kind = STRING;
        return scan_string(c, &s, &n, &e);
    case '{':
        *kind = K_OBJECT;
        return skip_container(c);
    case '[':
        *kind = K_ARRAY;
        return skip_container(c);
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

/* Index of key (decoded when escaped) in names, -1 if none. */
static int key_index(const unsigned char *key, size_t len, int escaped, const char *const *names, const size_t *lens,
                     int count) {
    char small[SMALL];
    if (escaped) {
        len = small_text(key, len, 1, small);
        if (len > SMALL) return -1;
        key = (const unsigned char *)small;
    }
    for (int i = 0; i < count; i++)
        if (lens[i] == len && memcmp(names[i], key, len) == 0) return i;
    return -1;
}

/* key (of len bytes, decoded when escaped) is name (of n bytes). */
static inline int key_is(const unsigned char *key, size_t len, int escaped, const char *name, size_t n) {
    if (!escaped) return len == n && memcmp(key, name, n) == 0;
    return key_index(key, len, escaped, &name, &n, 1) == 0;
}

typedef struct {
    const unsigned char *start;
    size_t len;
    unsigned char kind, escaped;
} slot_t;

typedef struct {
    slot_t slots[N_FIELDS];
    int identity_valid;
    unsigned char read_only;
} record_t;

/* A wanted field's value: remember where its string is, or what it is instead. */
static int field_value(cur_t *c, slot_t *slot) {
    enum kind kind;
    if (c->p < c->end && *c->p == '"') {
        int escaped;
        if (scan_string(c, &slot->start, &slot->len, &escaped) < 0) return -1;
        slot->kind = STRING;
        slot->escaped = (unsigned char)escaped;
        return 0;
    }
    if (skip_value(c, &kind) < 0) return -1;
    slot->kind = (unsigned char)kind;
    return 0;
}

static int ascii_equal_ci(const char *text, size_t len, const char *word) {
    size_t n = strlen(word);
    if (len != n) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (ch >= 'A' && ch <= 'Z') ch = (unsigned char)(ch - 'A' + 'a');
        if (ch != (unsigned char)word[i]) return 0;
    }
    return 1;
}

/* readOnly: true/false (booleans, or those words as strings); null is absent; anything else OTHER. */
static int read_only_value(cur_t *c, unsigned char *out) {
    if (c->p >= c->end) return fail(c);
    switch (*c->p) {
    case 't':
        *out = RO_TRUE;
        return literal(c, "true", 4);
    case 'f':
        *out = RO_FALSE;
        return literal(c, "false", 5);
    case 'n':
        *out = RO_ABSENT;
        return literal(c, "null", 4);
    case '"': {
        const unsigned char *s;
        size_t n;
        int escaped;
        char small[SMALL];
        if (scan_string(c, &s, &n, &escaped) < 0) return -1;
        n = small_text(s, n, escaped, small);
        *out = ascii_equal_ci(small, n, "true") ? RO_TRUE : ascii_equal_ci(small, n, "false") ? RO_FALSE : RO_OTHER;
        return 0;
    }
    default: {
        enum kind ignored;
        *out = RO_OTHER;
        return skip_value(c, &ignored);
    }
    }
}

/* Keys of a record or of its userIdentity: the index of the field they fill, or one of these. */
enum { KEY_OTHER = -1, KEY_IDENTITY = -2, KEY_READ_ONLY = -3 };

#define KEY_IS(word) (memcmp(key, word, sizeof(word) - 1) == 0) /* constant length: compiled inline */

/* A record key (already decoded) as a field index (FIELD_NAMES order), KEY_IDENTITY, KEY_READ_ONLY or
 * KEY_OTHER: one switch on the length, then fixed-length compares (most keys are not wanted). */
static inline int record_key(const unsigned char *key, size_t len) {
    switch (len) {
    case 7: return KEY_IS("eventID") ? 7 : KEY_OTHER;
    case 8: return KEY_IS("readOnly") ? KEY_READ_ONLY : KEY_OTHER;
    case 9:
        if (key[0] == 'e') return KEY_IS("eventTime") ? 0 : KEY_IS("eventName") ? 1 : KEY_IS("errorCode") ? 6 : KEY_OTHER;
        return KEY_IS("awsRegion") ? 3 : KEY_IS("userAgent") ? 5 : KEY_OTHER;
    case 11: return KEY_IS("eventSource") ? 2 : KEY_OTHER;
    case 12: return KEY_IS("userIdentity") ? KEY_IDENTITY : KEY_OTHER;
    case 15: return KEY_IS("sourceIPAddress") ? 4 : KEY_OTHER;
    case 18: return KEY_IS("recipientAccountId") ? 8 : KEY_OTHER;
    default: return KEY_OTHER;
    }
}

/* A userIdentity key as an index among FIELD_NAMES' userIdentity fields, or KEY_OTHER. */
static inline int identity_key(const unsigned char *key, size_t len) {
    switch (len) {
    case 3: return KEY_IS("arn") ? 1 : KEY_OTHER;
    case 4: return KEY_IS("type") ? 0 : KEY_OTHER;
    case 9: return KEY_IS("accountId") ? 2 : KEY_IS("invokedBy") ? 3 : KEY_OTHER;
    default: return KEY_OTHER;
    }
}

#undef KEY_IS

/* An escaped key decoded into small[SMALL]; its length, or SMALL + 1 (matches nothing) when longer. */
static size_t decoded_key(const unsigned char **key, size_t len, char *small) {
    len = small_text(*key, len, 1, small);
    *key = (const unsigned char *)small;
    return len;
}

static int identity_member(cur_t *c, const unsigned char *key, size_t key_len, int key_escaped, void *ctx) {
    record_t *r = ctx;
    char small[SMALL];
    if (key_escaped) key_len = decoded_key(&key, key_len, small);
    int i = identity_key(key, key_len);
    if (i < 0) return skip_member(c, key, key_len, key_escaped, NULL);
    return field_value(c, &r->slots[N_TOP + i]);
}

static int record_member(cur_t *c, const unsigned char *key, size_t key_len, int key_escaped, void *ctx) {
    record_t *r = ctx;
    char small[SMALL];
    if (key_escaped) key_len = decoded_key(&key, key_len, small);
    int i = record_key(key, key_len);
    if (i == KEY_IDENTITY) {
        memset(&r->slots[N_TOP], 0, sizeof(slot_t) * N_IDENTITY); /* a repeated key replaces the first */
        r->identity_valid = c->p < c->end && *c->p == '{';
        return r->identity_valid ? object(c, identity_member, r) : skip_element(c, NULL);
    }
    if (i == KEY_READ_ONLY) return read_only_value(c, &r->read_only);
    if (i < 0) return skip_member(c, key, key_len, key_escaped, NULL);
    return field_value(c, &r->slots[i]);
}

#define NO_TIME INT64_MIN

static inline int digits(const unsigned char *p, int n, int *value) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return 0;
        v = v * 10 + (p[i] - '0');
    }
    *value = v;
    return 1;
}

/* Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* eventTime as CloudTrail writes it (exactly YYYY-MM-DDTHH:MM:SSZ, a date that exists, hours < 24,
 * minutes and seconds < 60) in ms since the epoch; NO_TIME for anything else. */
static int64_t cloudtrail_time(const slot_t *s) {
    static const int MONTH_DAYS[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const unsigned char *t = s->start;
    int y, mo, d, h, mi, se;
    if (s->kind != STRING || s->escaped || s->len != 20 || t[4] != '-' || t[7] != '-' || t[10] != 'T' ||
        t[13] != ':' || t[16] != ':' || t[19] != 'Z')
        return NO_TIME;
    if (!digits(t, 4, &y) || !digits(t + 5, 2, &mo) || !digits(t + 8, 2, &d) || !digits(t + 11, 2, &h) ||
        !digits(t + 14, 2, &mi) || !digits(t + 17, 2, &se))
        return NO_TIME;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > MONTH_DAYS[mo] || h > 23 || mi > 59 || se > 59) return NO_TIME;
    if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))) return NO_TIME;
    return ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60000 + (int64_t)se * 1000;
}

/* Append one record's slots as a row (end: the end of its document). -1: out of memory, or a column
 * over 2 GiB. Each buffer is reserved once and written in place: the scanner's most frequent writes. */
static int append_record(out_t *out, const record_t *r, int64_t doc, int64_t index, const unsigned char *end) {
    for (int f = 0; f < N_FIELDS; f++) {
        column_t *col = &out->columns[f];
        const slot_t *s = &r->slots[f];
        if (s->kind == STRING) {
            if (buf_reserve(&col->data, s->len + 32) < 0) return -1;
            char *to = col->data.p + col->data.len;
            if (s->escaped) col->data.len += decode_into(s->start, s->len, to);
            else {
                /* most values are short: a fixed-size copy (inlined, the buffer has the slack) where
                 * the document has the bytes to read, else memcpy */
                if (s->len <= 16 && end - s->start >= 16) memcpy(to, s->start, 16);
                else if (s->len <= 32 && end - s->start >= 32) memcpy(to, s->start, 32);
                else memcpy(to, s->start, s->len);
                col->data.len += s->len;
            }
        }
        if (col->data.len > INT32_MAX) return -1;
        if (buf_reserve(&col->offsets, sizeof(int32_t)) < 0 || buf_reserve(&col->kind, 1) < 0) return -1;
        int32_t offset = (int32_t)col->data.len;
        memcpy(col->offsets.p + col->offsets.len, &offset, sizeof offset);
        col->offsets.len += sizeof offset;
        col->kind.p[col->kind.len++] = (char)s->kind;
    }
    int64_t ms = cloudtrail_time(&r->slots[F_TIME]);
    if (buf_reserve(&out->doc_index, sizeof doc) < 0 || buf_reserve(&out->record_index, sizeof index) < 0 ||
        buf_reserve(&out->read_only, 1) < 0 || buf_reserve(&out->event_ms, sizeof ms) < 0)
        return -1;
    memcpy(out->event_ms.p + out->event_ms.len, &ms, sizeof ms);
    out->event_ms.len += sizeof ms;
    memcpy(out->doc_index.p + out->doc_index.len, &doc, sizeof doc);
    out->doc_index.len += sizeof doc;
    memcpy(out->record_index.p + out->record_index.len, &index, sizeof index);
    out->record_index.len += sizeof index;
    out->read_only.p[out->read_only.len++] = (char)r->read_only;
    out->rows++;
    return 0;
}

typedef struct {
    out_t *out;
    int64_t doc, records;
    int seen_records, records_not_array;
    int64_t counts[N_REASONS];
    buf_t sampled; /* (int64 record index, int64 reason) pairs */
    size_t sample;
} doc_ctx_t;

static int record_element(cur_t *c, void *ctx) {
    doc_ctx_t *d = ctx;
    record_t r; /* a slot's start/len/escaped are read only when its kind is STRING */
    for (int f = 0; f < N_FIELDS; f++) r.slots[f].kind = ABSENT;
    r.identity_valid = 0;
    r.read_only = RO_ABSENT;
    int outer_bad = c->bad_text, outer_deep = c->too_deep;
    c->bad_text = c->too_deep = 0;
    int is_object = c->p < c->end && *c->p == '{';
    if ((is_object ? object(c, record_member, &r) : skip_element(c, NULL)) < 0) return -1;
    int reason = -1;
    if (c->too_deep) reason = R_TOO_DEEP;
    else if (c->bad_text) reason = R_BAD_TEXT;
    else if (!is_object) reason = R_NOT_OBJECT;
    else if (!r.identity_valid) reason = R_NO_IDENTITY;
    else if (r.slots[F_TIME].kind == ABSENT) reason = R_NO_TIME;
    else if (r.slots[F_NAME].kind == ABSENT) reason = R_NO_NAME;
    else if (r.slots[F_SOURCE].kind == ABSENT) reason = R_NO_SOURCE;
    c->bad_text = outer_bad;
    c->too_deep = outer_deep;
    int64_t index = d->records++;
    if (reason < 0) {
        if (append_record(d->out, &r, d->doc, index, c->end) < 0) {
            c->oom = 1;
            return -1;
        }
        return 0;
    }
    d->counts[reason]++;
    if (d->sampled.len < d->sample * 2 * sizeof(int64_t)) {
        int64_t pair[2] = {index, reason};
        if (buf_append(&d->sampled, pair, sizeof pair) < 0) {
            c->oom = 1;
            return -1;
        }
    }
    return 0;
}

static int doc_member(cur_t *c, const unsigned char *key, size_t key_len, int key_escaped, void *ctx) {
    doc_ctx_t *d = ctx;
    if (key_is(key, key_len, key_escaped, "Records", 7)) { /* once a document: the general path */
        d->seen_records = 1;
        if (c->p < c->end && *c->p == '[') return array(c, record_element, d);
        d->records_not_array = 1;
    }
    return skip_member(c, key, key_len, key_escaped, NULL);
}

typedef struct {
    int status, error;
    int64_t error_offset;
} outcome_t;

static outcome_t scan_doc(cur_t *c, doc_ctx_t *d) {
    const unsigned char *start = c->p;
    outcome_t o = {S_OK, E_NONE, -1};
    if (c->end - c->p >= 3 && memcmp(c->p, "\xEF\xBB\xBF", 3) == 0) c->p += 3; /* a byte order mark */
    skip_ws(c);
    if (c->p >= c->end) {
        o.status = S_NOT_JSON;
        o.error = E_EMPTY;
        o.error_offset = c->p - start;
        return o;
    }
    int is_object = *c->p == '{', rc;
    if (is_object) rc = object(c, doc_member, d);
    else {
        enum kind ignored;
        rc = skip_value(c, &ignored);
    }
    if (rc < 0 || c->oom) {
        o.status = S_NOT_JSON;
        o.error = E_SYNTAX;
        o.error_offset = (c->error_at ? c->error_at : c->p) - start;
        return o;
    }
    skip_ws(c);
    if (c->p != c->end) {
        o.status = S_NOT_JSON;
        o.error = E_EXTRA;
        o.error_offset = c->p - start;
    } else if (c->too_deep) o.status = S_TOO_DEEP;
    else if (c->bad_text) o.status = S_BAD_TEXT;
    else if (!is_object || !d->seen_records || d->records_not_array) o.status = S_NOT_CLOUDTRAIL;
    return o;
}

/* Undo a rejected document's rows. */
typedef struct {
    size_t rows, doc_index, record_index, read_only, event_ms;
    size_t offsets[N_FIELDS], data[N_FIELDS], kind[N_FIELDS];
} mark_t;

static void mark(const out_t *o, mark_t *m) {
    m->rows = o->rows;
    m->doc_index = o->doc_index.len;
    m->record_index = o->record_index.len;
    m->read_only = o->read_only.len;
    m->event_ms = o->event_ms.len;
    for (int f = 0; f < N_FIELDS; f++) {
        m->offsets[f] = o->columns[f].offsets.len;
        m->data[f] = o->columns[f].data.len;
        m->kind[f] = o->columns[f].kind.len;
    }
}

static void rewind_to(out_t *o, const mark_t *m) {
    o->rows = m->rows;
    o->doc_index.len = m->doc_index;
    o->record_index.len = m->record_index;
    o->read_only.len = m->read_only;
    o->event_ms.len = m->event_ms;
    for (int f = 0; f < N_FIELDS; f++) {
        o->columns[f].offsets.len = m->offsets[f];
        o->columns[f].data.len = m->data[f];
        o->columns[f].kind.len = m->kind[f];
    }
}

static void free_out(out_t *o) {
    for (int f = 0; f < N_FIELDS; f++) {
        PyMem_RawFree(o->columns[f].offsets.p);
        PyMem_RawFree(o->columns[f].data.p);
        PyMem_RawFree(o->columns[f].kind.p);
    }
    PyMem_RawFree(o->doc_index.p);
    PyMem_RawFree(o->record_index.p);
    PyMem_RawFree(o->read_only.p);
    PyMem_RawFree(o->event_ms.p);
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
    PyMem_RawFree(((Buffer *)self)->p);
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

/* (status, error_offset, error_code, records, counts, sampled) for one document. */
static PyObject *outcome_tuple(const outcome_t *o, const doc_ctx_t *d) {
    PyObject *counts = PyTuple_New(N_REASONS);
    if (counts == NULL) return NULL;
    for (int r = 0; r < N_REASONS; r++) {
        PyObject *n = PyLong_FromLongLong(o->status == S_OK ? d->counts[r] : 0);
        if (n == NULL) {
            Py_DECREF(counts);
            return NULL;
        }
        PyTuple_SET_ITEM(counts, r, n);
    }
    size_t pairs = o->status == S_OK ? d->sampled.len / (2 * sizeof(int64_t)) : 0;
    PyObject *sampled = PyList_New((Py_ssize_t)pairs);
    if (sampled == NULL) {
        Py_DECREF(counts);
        return NULL;
    }
    for (size_t i = 0; i < pairs; i++) {
        int64_t pair[2];
        memcpy(pair, d->sampled.p + i * sizeof pair, sizeof pair);
        PyObject *item = Py_BuildValue("(LL)", (long long)pair[0], (long long)pair[1]);
        if (item == NULL) {
            Py_DECREF(counts);
            Py_DECREF(sampled);
            return NULL;
        }
        PyList_SET_ITEM(sampled, (Py_ssize_t)i, item);
    }
    return Py_BuildValue("(iLiLNN)", o->status, (long long)o->error_offset, o->error,
                         (long long)(o->status == S_OK ? d->records : 0), counts, sampled);
}

/* The zero offset every column starts with. -1: out of memory. */
static int out_init(out_t *out) {
    memset(out, 0, sizeof *out);
    int32_t zero = 0;
    for (int f = 0; f < N_FIELDS; f++)
        if (buf_append(&out->columns[f].offsets, &zero, sizeof zero) < 0) return -1;
    return 0;
}

/* Scan one document (doc is its index) into out, the GIL released while it runs. Returns its
 * outcome tuple (None for a clean document when clean_as_none); NULL with MemoryError (its rows
 * taken back) when out of memory. */
static PyObject *scan_one(out_t *out, PyObject *doc, int64_t index, size_t sample, int clean_as_none) {
    Py_buffer view;
    if (PyObject_GetBuffer(doc, &view, PyBUF_SIMPLE) < 0) return NULL;
    mark_t m;
    mark(out, &m);
    doc_ctx_t d;
    memset(&d, 0, sizeof d);
    d.out = out;
    d.doc = index;
    d.sample = sample;
    cur_t c = {view.buf, (const unsigned char *)view.buf + view.len, 0, 0, 0, 0, NULL};
    outcome_t o;
    Py_BEGIN_ALLOW_THREADS
    o = scan_doc(&c, &d);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (o.status != S_OK || c.oom) rewind_to(out, &m);
    int clean = o.status == S_OK && d.sampled.len == 0;
    for (int r = 0; clean && r < N_REASONS; r++) clean = d.counts[r] == 0;
    PyObject *item = c.oom ? NULL : (clean && clean_as_none) ? Py_NewRef(Py_None) : outcome_tuple(&o, &d);
    PyMem_RawFree(d.sampled.p);
    if (c.oom)
        PyErr_SetString(PyExc_MemoryError, "scan(): out of memory, or a column over 2 GiB (scan fewer documents)");
    return item;
}

/* (rows, doc_index, record_index, columns, read_only, event_ms): out's buffers moved into Buffer objects. */
static PyObject *out_result(out_t *out) {
    PyObject *columns = PyTuple_New(N_FIELDS);
    if (columns == NULL) return NULL;
    for (int f = 0; f < N_FIELDS; f++) {
        PyObject *col = Py_BuildValue("(NNN)", as_buffer(&out->columns[f].offsets), as_buffer(&out->columns[f].data),
                                      as_buffer(&out->columns[f].kind));
        if (col == NULL) {
            Py_DECREF(columns);
            return NULL;
        }
        PyTuple_SET_ITEM(columns, f, col);
    }
    return Py_BuildValue("(nNNNNN)", (Py_ssize_t)out->rows, as_buffer(&out->doc_index),
                         as_buffer(&out->record_index), columns, as_buffer(&out->read_only), as_buffer(&out->event_ms));
}

static PyObject *scan(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *docs;
    Py_ssize_t sample;
    if (!PyArg_ParseTuple(args, "On", &docs, &sample)) return NULL;
    if (sample < 0) {
        PyErr_SetString(PyExc_ValueError, "scan(): sample must be >= 0");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(docs, "scan() expects a sequence of bytes-like objects");
    if (seq == NULL) return NULL;
    out_t out;
    memset(&out, 0, sizeof out);
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    PyObject *outcomes = PyList_New(count), *columns = NULL, *result = NULL;
    if (outcomes == NULL) goto done;
    if (out_init(&out) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = scan_one(&out, PySequence_Fast_GET_ITEM(seq, i), (int64_t)i, (size_t)sample, 0);
        if (item == NULL) goto done;
        PyList_SET_ITEM(outcomes, i, item);
    }
    columns = out_result(&out);
    if (columns != NULL) /* (rows, doc_index, record_index, columns, read_only, event_ms) + (outcomes,) */
        result = Py_BuildValue("(OOOOOOO)", PyTuple_GET_ITEM(columns, 0), PyTuple_GET_ITEM(columns, 1),
                               PyTuple_GET_ITEM(columns, 2), PyTuple_GET_ITEM(columns, 3), PyTuple_GET_ITEM(columns, 4),
                               PyTuple_GET_ITEM(columns, 5), outcomes);
done:
    free_out(&out);
    Py_XDECREF(columns);
    Py_XDECREF(outcomes);
    Py_DECREF(seq);
    return result;
}

/* Scanner: the same scan one document at a time, so that each is scanned while the inflater's
 * output is still in the CPU's cache; finish() hands the rows over. One thread at a time. */
typedef struct {
    PyObject_HEAD
    out_t out;
    Py_ssize_t sample, docs;
    int busy;
} Scanner;

static PyObject *scanner_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    Py_ssize_t sample;
    static char *names[] = {"sample", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "n", names, &sample)) return NULL;
    if (sample < 0) {
        PyErr_SetString(PyExc_ValueError, "Scanner(): sample must be >= 0");
        return NULL;
    }
    Scanner *self = (Scanner *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->sample = sample;
    if (out_init(&self->out) < 0) {
        free_out(&self->out);
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static void scanner_dealloc(PyObject *self) {
    free_out(&((Scanner *)self)->out);
    Py_TYPE(self)->tp_free(self);
}

static int scanner_enter(Scanner *self) {
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Scanner is in use by another thread");
        return -1;
    }
    self->busy = 1;
    return 0;
}

static PyObject *scanner_add(PyObject *op, PyObject *doc) {
    Scanner *self = (Scanner *)op;
    if (scanner_enter(self) < 0) return NULL;
    PyObject *item = scan_one(&self->out, doc, (int64_t)self->docs, (size_t)self->sample, 1);
    if (item != NULL) self->docs++;
    self->busy = 0;
    return item;
}

static PyObject *scanner_finish(PyObject *op, PyObject *Py_UNUSED(ignored)) {
    Scanner *self = (Scanner *)op;
    if (scanner_enter(self) < 0) return NULL;
    PyObject *result = out_result(&self->out);
    free_out(&self->out);
    if (out_init(&self->out) < 0 && result != NULL) {
        Py_CLEAR(result);
        PyErr_NoMemory();
    }
    self->docs = 0;
    self->busy = 0;
    return result;
}

static PyMethodDef SCANNER_METHODS[] = {
    {"add", scanner_add, METH_O,
     "add(doc) -> outcome, or None for a clean document: scan one more (its index is the number added before it)"},
    {"finish", scanner_finish, METH_NOARGS,
     "finish() -> (rows, doc_index, record_index, columns, read_only, event_ms) of the documents added; starts afresh"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_cloudtrail_scan.Scanner",
    .tp_basicsize = sizeof(Scanner),
    .tp_dealloc = scanner_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Scanner(sample): scan(docs, sample) one document at a time (add), then finish().",
    .tp_methods = SCANNER_METHODS,
    .tp_new = scanner_new,
};

static PyMethodDef METHODS[] = {
    {"scan", scan, METH_VARARGS,
     "scan(docs, sample) -> (rows, doc_index, record_index, columns, read_only, event_ms, outcomes)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {
    PyModuleDef_HEAD_INIT, "_cloudtrail_scan", "Extract CloudTrail fields into Arrow string buffers.", -1, METHODS,
    NULL, NULL, NULL, NULL,
};

static int add_names(PyObject *m, const char *name, const char *const *names, int count) {
    PyObject *tuple = PyTuple_New(count);
    if (tuple == NULL) return -1;
    for (int i = 0; i < count; i++) {
        PyObject *s = PyUnicode_FromString(names[i]);
        if (s == NULL) {
            Py_DECREF(tuple);
            return -1;
        }
        PyTuple_SET_ITEM(tuple, i, s);
    }
    if (PyModule_AddObject(m, name, tuple) < 0) {
        Py_DECREF(tuple);
        return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__cloudtrail_scan(void) {
    init_tables();
    if (PyType_Ready(&BufferType) < 0 || PyType_Ready(&ScannerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&MODULE);
    if (m == NULL) return NULL;
    if (add_names(m, "FIELDS", FIELD_NAMES, N_FIELDS) < 0 || add_names(m, "KINDS", KIND_NAMES, N_KINDS) < 0 ||
        add_names(m, "REASONS", REASON_NAMES, N_REASONS) < 0 || add_names(m, "STATUSES", STATUS_NAMES, N_STATUSES) < 0 ||
        add_names(m, "ERRORS", ERROR_NAMES, N_ERRORS) < 0 || PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH) < 0 ||
        PyModule_AddObjectRef(m, "Scanner", (PyObject *)&ScannerType) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
