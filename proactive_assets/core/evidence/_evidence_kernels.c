/* The evidence's hot loops (features.py, detector.py), in plain C with the CPython API only.
 *
 * slots: where 64-bit hash keys sit in a sorted array: numpy's searchsorted (side "left"), clipped
 * to the last slot, without sorting the queries first.
 *
 * The evidence looks every pair of a day up in a dozen sorted arrays of hash keys (features.py).
 * numpy's searchsorted is a binary search: ~21 dependent cache misses per query in a 2M-key array,
 * so the queries were argsorted first to walk the array in order (the argsort then cost more than
 * the search). The keys are 64-bit hashes, spread evenly, so a small directory by their top bits
 * (about 8 keys a bucket, built in one pass) puts each query within two cache lines of its
 * answer, and the queries go in batches whose keys are fetched together. Keys that are not spread
 * evenly give the same answers, only slower.
 *
 * slots(sorted_keys, queries, out): buffers of uint64, uint64 and int64 (out as long as queries).
 *
 * top_contributions: each pair's strongest evidence, named in daily_insights. A pair's
 * contributions to the combiner's log-odds are its features times the coefficients; per row, the
 * (at most k) largest at or above a bar, largest first, ties to the earlier feature, and as many
 * of the most negative at or below minus the bar. numpy did it a feature at a time and then
 * sorted every hit (~1 s a million pairs); here one pass over the rows.
 *
 * top_contributions(columns, weights, bar, up_codes, up_count, down_codes, down_count): columns
 * float64 features x rows (each feature's values contiguous), weights float64 per feature; out
 * int8 rows x k_up and rows x k_down feature indices, and uint8 counts per row.
 *
 * The GIL is released while they run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* The first index in [lo, hi) whose key is >= q, given keys[lo - 1] < q (or lo == 0) and
 * keys[hi] >= q (or hi == n). */
static Py_ssize_t lower_bound(const uint64_t *keys, Py_ssize_t lo, Py_ssize_t hi, uint64_t q) {
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (keys[mid] < q)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

#define BATCH 16

/* A directory of the keys by their top ``bits`` bits: bucket j's keys are keys[dir[j] .. dir[j + 1]).
 * About 8 keys a bucket (a cache line), the directory small enough to mostly stay in cache. */
static int bits_for(Py_ssize_t n) {
    int bits = 0;
    while (bits < 24 && ((Py_ssize_t)1 << (bits + 3)) < n)
        bits++;
    return bits;
}

static void build_directory(const uint64_t *keys, Py_ssize_t n, int bits, uint32_t *dir) {
    Py_ssize_t buckets = (Py_ssize_t)1 << bits;
    Py_ssize_t i = 0;
    for (Py_ssize_t j = 0; j < buckets; j++) {
        dir[j] = (uint32_t)i;
        while (i < n && (bits == 0 ? 0 : (Py_ssize_t)(keys[i] >> (64 - bits))) == j)
            i++;
    }
    dir[buckets] = (uint32_t)n;
}

static void search(const uint64_t *keys, Py_ssize_t n, const uint32_t *dir, int bits, const uint64_t *q, int64_t *out,
                   Py_ssize_t m) {
    Py_ssize_t lo[BATCH], hi[BATCH];
    for (Py_ssize_t start = 0; start < m; start += BATCH) {
        Py_ssize_t count = m - start < BATCH ? m - start : BATCH;
        /* first every query's bucket, and ask for its keys; then search them, mostly in cache */
        for (Py_ssize_t b = 0; b < count; b++) {
            Py_ssize_t j = bits == 0 ? 0 : (Py_ssize_t)(q[start + b] >> (64 - bits));
            lo[b] = dir[j];
            hi[b] = dir[j + 1];
            __builtin_prefetch(keys + lo[b]);
            __builtin_prefetch(keys + lo[b] + 8);
        }
        for (Py_ssize_t b = 0; b < count; b++) {
            Py_ssize_t s = lower_bound(keys, lo[b], hi[b], q[start + b]);
            out[start + b] = s < n ? s : n - 1;
        }
    }
}

static PyObject *slots(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer keys, queries, out;
    if (!PyArg_ParseTuple(args, "y*y*w*", &keys, &queries, &out))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = keys.len / 8, m = queries.len / 8;
    if (keys.len % 8 || queries.len % 8 || out.len != m * 8) {
        PyErr_SetString(PyExc_ValueError, "slots() takes uint64 keys, uint64 queries and an int64 output as long");
        goto done;
    }
    if (n == 0) {
        PyErr_SetString(PyExc_ValueError, "slots() needs at least one key");
        goto done;
    }
    const uint64_t *k = (const uint64_t *)keys.buf;
    const uint64_t *q = (const uint64_t *)queries.buf;
    int64_t *o = (int64_t *)out.buf;
    if (n > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "slots() takes at most 2^32 - 1 keys");
        goto done;
    }
    int bits = bits_for(n);
    uint32_t *dir = PyMem_RawMalloc((((size_t)1 << bits) + 1) * sizeof(uint32_t));
    if (dir == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    build_directory(k, n, bits, dir);
    search(k, n, dir, bits, q, o, m);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(dir);
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&keys);
    PyBuffer_Release(&queries);
    PyBuffer_Release(&out);
    return result;
}

/* Insert (value, feature) into the ``count`` kept, largest value first; an equal value stays
 * after the earlier features. Returns the new count (at most k). */
static int keep_top(double *value, int8_t *code, int count, int k, double v, int feature) {
    if (count == k && !(v > value[k - 1]))
        return count;
    int at = count < k ? count : k - 1;
    while (at > 0 && v > value[at - 1]) {
        value[at] = value[at - 1];
        code[at] = code[at - 1];
        at--;
    }
    value[at] = v;
    code[at] = (int8_t)feature;
    return count < k ? count + 1 : k;
}

static PyObject *top_contributions(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer columns, weights, up_codes, up_count, down_codes, down_count;
    double bar;
    if (!PyArg_ParseTuple(args, "y*y*dw*w*w*w*", &columns, &weights, &bar, &up_codes, &up_count, &down_codes,
                          &down_count))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t features = weights.len / 8, n = up_count.len;
    Py_ssize_t k_up = n ? up_codes.len / n : 0, k_down = n ? down_codes.len / n : 0;
    if (weights.len % 8 || columns.len != features * n * 8 || down_count.len != n || up_codes.len != k_up * n ||
        down_codes.len != k_down * n || features > 127 || k_up > 16 || k_down > 16 || (n && (!k_up || !k_down))) {
        PyErr_SetString(PyExc_ValueError, "top_contributions() got buffers of mismatched sizes");
        goto done;
    }
    const double *x = (const double *)columns.buf;
    const double *w = (const double *)weights.buf;
    int8_t *uc = (int8_t *)up_codes.buf, *dc = (int8_t *)down_codes.buf;
    uint8_t *un = (uint8_t *)up_count.buf, *dn = (uint8_t *)down_count.buf;
    Py_BEGIN_ALLOW_THREADS
    double up_value[16], down_value[16];
    for (Py_ssize_t row = 0; row < n; row++) {
        int up = 0, down = 0;
        for (Py_ssize_t i = 0; i < features; i++) {
            if (w[i] == 0.0)
                continue;
            double c = x[i * n + row] * w[i];
            if (c >= bar)
                up = keep_top(up_value, uc + row * k_up, up, (int)k_up, c, (int)i);
            else if (c <= -bar)
                down = keep_top(down_value, dc + row * k_down, down, (int)k_down, -c, (int)i);
        }
        un[row] = (uint8_t)up;
        dn[row] = (uint8_t)down;
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&columns);
    PyBuffer_Release(&weights);
    PyBuffer_Release(&up_codes);
    PyBuffer_Release(&up_count);
    PyBuffer_Release(&down_codes);
    PyBuffer_Release(&down_count);
    return result;
}

static PyMethodDef methods[] = {
    {"top_contributions", top_contributions, METH_VARARGS,
     "top_contributions(columns, weights, bar, up_codes, up_count, down_codes, down_count): each row's strongest."},
    {"slots", slots, METH_VARARGS, "slots(sorted_keys, queries, out): searchsorted of uint64 hash keys, clipped."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_evidence_kernels", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__evidence_kernels(void) { return PyModule_Create(&module); }
