/* Sorting 64-bit integer keys by their bits (LSD radix sort), in plain C with the CPython API only.
 *
 * The pipeline's joins are sorts of 64-bit keys: hash keys of (identity, network) pairs, values
 * packed above their row numbers. numpy's sort of a million uint64 took 52 ms on the 2-core host
 * (a comparison sort); this takes 12-14: one pass counts all eight 8-bit digits, then a stable
 * pass per digit moves the keys, skipping each digit that every key has the same (the top bits of
 * small values, the rows above the last one). Keys come back in the same order numpy gives.
 * (11-bit digits, three passes fewer, took twice as long: 2,048 places written at once miss the
 * TLB far more than 256.)
 *
 * sort(keys, out, signed, in_order=0): keys a buffer of 64-bit integers, out a writable one as
 * long (it may be keys itself); signed: the keys are int64 (their sign bit is flipped for the
 * digits only); in_order: how many of the lowest digits the keys already come ascending in (row
 * numbers packed below values: a stable sort by the digits above leaves them in order).
 *
 * numbered_in_row_order(keys, number, distinct, ascending) -> count: sorting.numbered_in_row_order
 * of unsigned 32- or 64-bit keys, each packed above its row number in whole digits (so the rows'
 * digits need no pass: 4 passes for 32-bit keys, not 7) and the numbering made in three passes
 * over the sorted keys and the rows (numpy took a dozen): number (int64, one a key) gets each
 * key's index among the distinct keys in the order the rows first have them, distinct (int64, as
 * many) those keys in that order, ascending (int64, as many) their indices in ascending key order;
 * count is how many there are (the first count of distinct and ascending are written).
 *
 * The GIL is released while either runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define DIGIT_BITS 8
#define BUCKETS (1 << DIGIT_BITS)
#define DIGITS (64 / DIGIT_BITS)

static inline size_t key_digit(uint64_t key, int d) { return (size_t)((key >> (DIGIT_BITS * d)) & (BUCKETS - 1)); }

/* Sorts n keys of ``in`` into ``out`` (which may be ``in``), with ``tmp`` (n keys) and ``count``
 * (DIGITS x BUCKETS) as scratch; ``flip`` is XORed into each key for its digits. */
static void radix_passes(const uint64_t *in, uint64_t *out, uint64_t *tmp, size_t *count, size_t n, uint64_t flip,
                         int in_order);

static void radix_sort(const uint64_t *in, uint64_t *out, uint64_t *tmp, size_t *count, size_t n, uint64_t flip,
                       int in_order) {
    memset(count, 0, sizeof(size_t) * DIGITS * BUCKETS);
    for (size_t i = 0; i < n; i++) {
        uint64_t k = in[i] ^ flip;
        for (int d = 0; d < DIGITS; d++)
            count[d * BUCKETS + key_digit(k, d)]++;
    }
    radix_passes(in, out, tmp, count, n, flip, in_order);
}

/* radix_sort's passes, given ``count`` filled for the digits from ``in_order`` up. */
static void radix_passes(const uint64_t *in, uint64_t *out, uint64_t *tmp, size_t *count, size_t n, uint64_t flip,
                         int in_order) {
    int active[DIGITS], passes = 0;
    for (int d = in_order; d < DIGITS; d++) { /* a digit all keys share moves nothing */
        size_t *c = count + d * BUCKETS;
        if (c[key_digit(in[0] ^ flip, d)] != n)
            active[passes++] = d;
    }
    if (passes == 0) {
        if (out != in)
            memcpy(out, in, n * sizeof(uint64_t));
        return;
    }
    /* the passes alternate between out and tmp, ending in out; when sorting in place the first
     * cannot write to out, so they start in tmp and the last one's keys are copied back if needed */
    const uint64_t *src = in;
    for (int p = 0; p < passes; p++) {
        uint64_t *dst;
        if (in == out)
            dst = p % 2 == 0 ? tmp : out;
        else
            dst = (passes - 1 - p) % 2 == 0 ? out : tmp;
        int d = active[p];
        size_t *c = count + d * BUCKETS, at = 0;
        for (size_t b = 0; b < BUCKETS; b++) {
            size_t m = c[b];
            c[b] = at;
            at += m;
        }
        for (size_t i = 0; i < n; i++) {
            uint64_t k = src[i];
            dst[c[key_digit(k ^ flip, d)]++] = k;
        }
        src = dst;
    }
    if (src != out)
        memcpy(out, src, n * sizeof(uint64_t));
}

static PyObject *sort(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer keys, out;
    int is_signed, in_order = 0;
    if (!PyArg_ParseTuple(args, "y*w*p|i", &keys, &out, &is_signed, &in_order))
        return NULL;
    PyObject *result = NULL;
    if (keys.len % 8 || out.len != keys.len || in_order < 0 || in_order > DIGITS) {
        PyErr_SetString(PyExc_ValueError, "sort() takes 64-bit keys, an output as long and 0-8 digits in order");
        goto done;
    }
    size_t n = (size_t)keys.len / 8;
    if (n == 0) {
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    uint64_t *tmp = PyMem_RawMalloc(n * sizeof(uint64_t));
    size_t *count = PyMem_RawMalloc(sizeof(size_t) * DIGITS * BUCKETS);
    if (tmp == NULL || count == NULL) {
        PyMem_RawFree(tmp);
        PyMem_RawFree(count);
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    radix_sort(keys.buf, out.buf, tmp, count, n, is_signed ? (uint64_t)1 << 63 : 0, in_order);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(tmp);
    PyMem_RawFree(count);
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&keys);
    PyBuffer_Release(&out);
    return result;
}

#define AHEAD 64

/* The numbering of keys[0..n) (itemsize 4 or 8, unsigned) into the caller's buffers; the count of
 * distinct keys, or -1 where a key does not fit above the rows' bits, -2 where memory ran out. */
static Py_ssize_t number_in_row_order(const void *keys, int itemsize, size_t n, int64_t *number, int64_t *distinct,
                                      int64_t *ascending) {
    int row_digits = 0;
    while (row_digits < DIGITS && ((uint64_t)(n - 1) >> (DIGIT_BITS * row_digits)) != 0)
        row_digits++;
    const int row_bits = DIGIT_BITS * row_digits;
    const uint64_t row_mask = row_bits ? ((uint64_t)1 << row_bits) - 1 : 0;
    const uint64_t key_limit = row_bits ? (uint64_t)1 << (64 - row_bits) : 0; /* 0: any key fits */
    uint64_t *packed = PyMem_RawMalloc(n * sizeof(uint64_t)), *tmp = PyMem_RawMalloc(n * sizeof(uint64_t));
    size_t *count = PyMem_RawCalloc(DIGITS * BUCKETS, sizeof(size_t));
    uint8_t *first = PyMem_RawCalloc(n, 1);
    Py_ssize_t found = -2;
    if (packed == NULL || tmp == NULL || count == NULL || first == NULL)
        goto done;
    found = -1;
    for (size_t i = 0; i < n; i++) { /* each key above its row, and the digits above the rows counted */
        uint64_t key = itemsize == 4 ? ((const uint32_t *)keys)[i] : ((const uint64_t *)keys)[i];
        if (key_limit && key >= key_limit)
            goto done;
        uint64_t k = row_bits < 64 ? key << row_bits | i : i;
        packed[i] = k;
        for (int d = 0; d < DIGITS; d++) /* (all of them: a loop of constant length, unrolled) */
            count[d * BUCKETS + key_digit(k, d)]++;
    }
    radix_passes(packed, packed, tmp, count, n, 0, row_digits);
    /* each distinct key's first row (the least of its rows: they come ascending) marked; then the
     * marked rows numbered in row order (their keys listed so), each number kept at its row in
     * ``number`` for now */
    for (size_t i = 0; i < n; i++)
        if (i == 0 || (packed[i] >> row_bits) != (packed[i - 1] >> row_bits))
            first[packed[i] & row_mask] = 1;
    int64_t met = 0;
    for (size_t r = 0; r < n; r++)
        if (first[r]) {
            distinct[met] = (int64_t)(itemsize == 4 ? ((const uint32_t *)keys)[r] : ((const uint64_t *)keys)[r]);
            number[r] = met++;
        }
    /* then each key's rows given the number of its first row (read before any of them is written;
     * the rows come in no useful order: each asked for AHEAD keys ahead) */
    int64_t d = -1, at = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + AHEAD < n)
            __builtin_prefetch(&number[packed[i + AHEAD] & row_mask], 1);
        size_t row = (size_t)(packed[i] & row_mask);
        if (i == 0 || (packed[i] >> row_bits) != (packed[i - 1] >> row_bits)) {
            at = number[row];
            ascending[++d] = at;
        }
        number[row] = at;
    }
    found = (Py_ssize_t)met;
done:
    PyMem_RawFree(packed);
    PyMem_RawFree(tmp);
    PyMem_RawFree(count);
    PyMem_RawFree(first);
    return found;
}

static PyObject *numbered_in_row_order(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer keys, number, distinct, ascending;
    if (!PyArg_ParseTuple(args, "y*w*w*w*", &keys, &number, &distinct, &ascending))
        return NULL;
    PyObject *result = NULL;
    int itemsize = (int)keys.itemsize;
    size_t n = (size_t)(keys.len / (itemsize ? itemsize : 1));
    if ((itemsize != 4 && itemsize != 8) || keys.len % itemsize || number.len != (Py_ssize_t)(n * 8) ||
        distinct.len != number.len || ascending.len != number.len) {
        PyErr_SetString(PyExc_ValueError,
                        "numbered_in_row_order() takes 32- or 64-bit keys and three int64 outputs as long");
        goto done;
    }
    Py_ssize_t found = 0;
    if (n) {
        Py_BEGIN_ALLOW_THREADS
        found = number_in_row_order(keys.buf, itemsize, n, number.buf, distinct.buf, ascending.buf);
        Py_END_ALLOW_THREADS
    }
    if (found == -2)
        PyErr_NoMemory();
    else if (found == -1)
        PyErr_SetString(PyExc_ValueError, "numbered_in_row_order(): a key does not fit above the rows' bits");
    else
        result = PyLong_FromSsize_t(found);
done:
    PyBuffer_Release(&keys);
    PyBuffer_Release(&number);
    PyBuffer_Release(&distinct);
    PyBuffer_Release(&ascending);
    return result;
}

static PyMethodDef methods[] = {
    {"sort", sort, METH_VARARGS,
     "sort(keys, out, signed, in_order=0): 64-bit integer keys sorted into out (may be keys)."},
    {"numbered_in_row_order", numbered_in_row_order, METH_VARARGS,
     "numbered_in_row_order(keys, number, distinct, ascending) -> count of distinct keys."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_radix_sort", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__radix_sort(void) { return PyModule_Create(&module); }
