/* IP Insights' address vectors gathered from its embedding tables, in plain C.
 *
 * An address's vector is the sum of its prefixes' rows (prefixes.PrefixLayout): a row of the
 * head table, then a row of ip_emb per further level. numpy gathers each level into a temporary
 * (np.take) and adds it: at the IP Insights tutorial's scale, a million addresses' rows are
 * spread over 80 MB, and those gathers were 0.13 s of scoring's 0.3 s. Here each address's rows
 * are asked for a few addresses ahead (prefetch) and summed where they land, in the same order
 * as numpy's adds (head, then each level), so the sums are the same floats.
 *
 * gather_sum(out, head_table, head_rows, ip_emb, levels, start): out float32 (m, dim); head_table
 * float32 (h, dim) or None, head_rows int64 (m); ip_emb float32 (r, dim); levels int32 or int64
 * (k, n), rows of ip_emb, of which columns start .. start + m are summed. Without a head table, levels[0]
 * starts the sum. With entity_table float32 (e, dim), entity_rows int64 (m) and dots float32 (m)
 * given, each address's vector is also dotted with its pair's entity row while it is in cache
 * (lane_dot; numpy's np.take and einsum of the chunk took a fifth of scoring). The GIL is released
 * while it runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "../_mix64.h"

#define AHEAD 8 /* addresses whose rows are asked for before they are summed */
#define MAX_LEVELS 16

/* Item i of an array of 4- or 8-byte signed integers. */
static inline int64_t item(const void *p, Py_ssize_t size, Py_ssize_t i) {
    return size == 8 ? ((const int64_t *)p)[i] : ((const int32_t *)p)[i];
}

static void prefetch_row(const float *row, Py_ssize_t dim) {
    for (Py_ssize_t b = 0; b < dim * (Py_ssize_t)sizeof(float); b += 64)
        __builtin_prefetch((const char *)row + b);
}

/* The dot product of two float32 rows in ipinsights.lane_dots' order: element j added to running
 * sum j % 8, the eight sums folded pairwise ((0+4)+(2+6))+((1+5)+(3+7)); float32 throughout. */
static inline float lane_dot(const float *u, const float *v, Py_ssize_t dim) {
    float acc[8] = {0};
    Py_ssize_t j = 0;
    for (; j + 8 <= dim; j += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += u[j + l] * v[j + l];
    for (int l = 0; j < dim; j++, l++)
        acc[l] += u[j] * v[j];
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

static PyObject *gather_sum(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *head_arg, *levels_arg, *entities_arg = Py_None, *entity_rows_arg = Py_None, *dots_arg = Py_None;
    Py_buffer out, head = {0}, head_rows = {0}, emb, levels = {0}, entities = {0}, entity_rows = {0}, dots = {0};
    Py_ssize_t start;
    if (!PyArg_ParseTuple(args, "w*Oy*y*On|OOO", &out, &head_arg, &head_rows, &emb, &levels_arg, &start,
                          &entities_arg, &entity_rows_arg, &dots_arg))
        return NULL;
    PyObject *result = NULL;
    int with_head = head_arg != Py_None, have_levels = 0, dotted = 0;
    if (with_head && PyObject_GetBuffer(head_arg, &head, PyBUF_C_CONTIGUOUS) < 0) {
        with_head = -1;
        goto done;
    }
    if (PyObject_GetBuffer(levels_arg, &levels, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        goto done;
    have_levels = 1;
    if (entities_arg != Py_None) {
        if (PyObject_GetBuffer(entities_arg, &entities, PyBUF_C_CONTIGUOUS) < 0)
            goto done;
        dotted = 1;
        if (PyObject_GetBuffer(entity_rows_arg, &entity_rows, PyBUF_C_CONTIGUOUS) < 0)
            goto done;
        dotted = 2;
        if (PyObject_GetBuffer(dots_arg, &dots, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0)
            goto done;
        dotted = 3;
    }
    Py_ssize_t m = head_rows.len / 8;
    Py_ssize_t k = levels.ndim == 2 ? levels.shape[0] : -1, n = levels.ndim == 2 ? levels.shape[1] : -1;
    Py_ssize_t dim = m ? out.len / 4 / m : 0;
    Py_ssize_t size = levels.itemsize;
    int ok = out.len % 4 == 0 && head_rows.len % 8 == 0 && out.len == m * dim * 4 && (size == 4 || size == 8) &&
             levels.format != NULL && strpbrk(levels.format, size == 8 ? "lq" : "il") != NULL &&
             k >= 0 && k <= MAX_LEVELS && start >= 0 && start + m <= n && (with_head || k >= 1 || m == 0);
    ok = ok && (m == 0 || (dim > 0 && emb.len % (dim * 4) == 0 && (!with_head || head.len % (dim * 4) == 0)));
    ok = ok && (!dotted || (entity_rows.len == m * 8 && dots.len == m * 4 && (m == 0 || entities.len % (dim * 4) == 0)));
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "gather_sum() got buffers of mismatched sizes");
        goto done;
    }
    Py_ssize_t emb_rows = m ? emb.len / (dim * 4) : 0, head_count = with_head && m ? head.len / (dim * 4) : 0;
    const int64_t *hr = head_rows.buf;
    const char *lv = (const char *)levels.buf + start * size;
    for (Py_ssize_t i = 0; i < m; i++) {
        int bad = with_head && (hr[i] < 0 || hr[i] >= head_count);
        for (Py_ssize_t l = 0; l < k; l++)
            bad |= item(lv, size, l * n + i) < 0 || item(lv, size, l * n + i) >= emb_rows;
        if (bad) {
            PyErr_Format(PyExc_ValueError, "gather_sum(): address %zd has a row out of range", i);
            goto done;
        }
    }
    const int64_t *er = dotted ? entity_rows.buf : NULL;
    const float *etable = dotted ? entities.buf : NULL;
    Py_ssize_t entity_count = dotted && m ? entities.len / (dim * 4) : 0;
    for (Py_ssize_t i = 0; dotted && i < m; i++)
        if (er[i] < 0 || er[i] >= entity_count) {
            PyErr_Format(PyExc_ValueError, "gather_sum(): pair %zd has an entity row out of range", i);
            goto done;
        }
    float *dot = dotted ? dots.buf : NULL;
    float *v = out.buf;
    const float *table = with_head ? head.buf : NULL, *rows = emb.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < m; i++) {
        Py_ssize_t ahead = i + AHEAD;
        if (ahead < m) {
            if (with_head)
                prefetch_row(table + hr[ahead] * dim, dim);
            for (Py_ssize_t l = 0; l < k; l++)
                prefetch_row(rows + item(lv, size, l * n + ahead) * dim, dim);
        }
        float *vi = v + i * dim;
        const float *first = with_head ? table + hr[i] * dim : rows + item(lv, size, i) * dim;
        for (Py_ssize_t d = 0; d < dim; d++)
            vi[d] = first[d];
        for (Py_ssize_t l = with_head ? 0 : 1; l < k; l++) {
            const float *r = rows + item(lv, size, l * n + i) * dim;
            for (Py_ssize_t d = 0; d < dim; d++)
                vi[d] += r[d];
        }
        if (dotted)
            dot[i] = lane_dot(etable + er[i] * dim, vi, dim);
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&out);
    PyBuffer_Release(&head_rows);
    PyBuffer_Release(&emb);
    if (have_levels)
        PyBuffer_Release(&levels);
    if (with_head == 1)
        PyBuffer_Release(&head);
    if (dotted >= 1)
        PyBuffer_Release(&entities);
    if (dotted >= 2)
        PyBuffer_Release(&entity_rows);
    if (dotted >= 3)
        PyBuffer_Release(&dots);
    return result;
}

/* ipv4_rows(lo, head_bits, bits, offsets, sizes, salts, bucket_to_row, head_out, rows_out): for IPv4
 * addresses (lo uint64), each one's head row (its top head_bits bits; int64) and, per further level
 * (bits, offset, size and salt int64/uint64 arrays of the levels), its embedding row: the level's
 * bucket (the prefix itself for a level of at most 16 bits, else splitmix64 of prefix ^ salt
 * modulo size, plus offset) looked up in bucket_to_row (int32), into rows_out (int32 levels x n).
 * prefixes.PrefixLayout.head_rows in one pass a level, where numpy took ten (~15 ms a million
 * addresses, on IP Insights' core). */
#define ROWS_AHEAD 16 /* buckets whose rows are asked for before they are read */

static PyObject *ipv4_rows(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer lo, bits, offsets, sizes, salts, map, head, rows;
    int head_bits;
    if (!PyArg_ParseTuple(args, "y*iy*y*y*y*y*w*w*", &lo, &head_bits, &bits, &offsets, &sizes, &salts, &map, &head,
                          &rows))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = lo.len / 8, levels = bits.len / 8, buckets = map.len / 4;
    const int64_t *b = bits.buf, *off = offsets.buf, *size = sizes.buf;
    const uint64_t *salt = salts.buf, *value = lo.buf;
    const int32_t *to_row = map.buf;
    int ok = lo.len % 8 == 0 && bits.len % 8 == 0 && offsets.len == bits.len && sizes.len == bits.len &&
             salts.len == bits.len && map.len % 4 == 0 && head.len == n * 8 && rows.len == levels * n * 4 &&
             head_bits >= 0 && head_bits <= 32;
    for (Py_ssize_t l = 0; ok && l < levels; l++)
        ok = b[l] >= 1 && b[l] <= 32 && size[l] >= 1 && off[l] >= 0 && off[l] + size[l] <= buckets &&
             (b[l] > 16 || off[l] + ((int64_t)1 << b[l]) <= buckets);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "ipv4_rows() got buffers of mismatched sizes");
        goto done;
    }
    int64_t *head_out = head.buf;
    int32_t *rows_out = rows.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        head_out[i] = head_bits ? (int64_t)((value[i] & 0xFFFFFFFFu) >> (32 - head_bits)) : 0;
    for (Py_ssize_t l = 0; l < levels; l++) {
        int32_t *out = rows_out + l * n;
        unsigned shift = (unsigned)(32 - b[l]);
        uint64_t mask = (uint64_t)size[l] - 1;
        int exact = b[l] <= 16, power = (size[l] & (size[l] - 1)) == 0;
        for (Py_ssize_t i = 0; i < n; i++) { /* the buckets, then their rows */
            uint64_t prefix = (value[i] & 0xFFFFFFFFu) >> shift;
            uint64_t h = exact ? prefix : mix64(prefix ^ salt[l]);
            out[i] = (int32_t)(off[l] + (int64_t)(exact ? h : (power ? h & mask : h % (uint64_t)size[l])));
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            if (i + ROWS_AHEAD < n)
                __builtin_prefetch(&to_row[out[i + ROWS_AHEAD]]);
            out[i] = to_row[out[i]];
        }
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&lo);
    PyBuffer_Release(&bits);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&sizes);
    PyBuffer_Release(&salts);
    PyBuffer_Release(&map);
    PyBuffer_Release(&head);
    PyBuffer_Release(&rows);
    return result;
}

static PyMethodDef methods[] = {
    {"gather_sum", gather_sum, METH_VARARGS,
     "gather_sum(out, head_table, head_rows, ip_emb, levels, start): each address's prefix rows summed into out."},
    {"ipv4_rows", ipv4_rows, METH_VARARGS,
     "ipv4_rows(lo, head_bits, bits, offsets, sizes, salts, bucket_to_row, head_out, rows_out): IPv4 embedding rows."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_embedding_rows", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__embedding_rows(void) { return PyModule_Create(&module); }
