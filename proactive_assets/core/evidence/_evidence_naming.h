/* Each pair's strongest evidence, and its codes as Arrow lists: the naming of
 * _evidence_kernels.c, which includes this file (the module is one translation unit).
 *
 * top_contributions: each pair's strongest evidence, named in daily_insights. A pair's
 * contributions to the combiner's log-odds are its features times the coefficients; per row, the
 * (at most k) largest at or above a bar, largest first, ties to the earlier feature, and as many
 * of the most negative at or below minus the bar. numpy did it a feature at a time and then
 * sorted every hit (~1 s a million pairs); here one pass over the rows.
 *
 * top_contributions(features, weights, bar, up_codes, up_count, down_codes, down_count): features
 * float64 rows x features (as pair_features writes them), weights float64 per feature; out int8
 * rows x k_up and rows x k_down feature indices, and uint8 counts per row.
 */

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

/* The features of weight other than 0, in order (a feature of weight 0 contributes nothing, and
 * is never named): out gets their indices, the count is returned. */
static int named_features(const double *w, int features, int *out) {
    int count = 0;
    for (int i = 0; i < features; i++)
        if (w[i] != 0.0)
            out[count++] = i;
    return count;
}

/* One row's strongest contributions (``top_contributions``, per row), from its contributions
 * ``c`` (features x weights) of the ``named`` features. */
static inline void top_of_contributions(const double *c, const int *named, int n_named, double bar, int8_t *up_codes,
                                        uint8_t *up_count, int k_up, int8_t *down_codes, uint8_t *down_count,
                                        int k_down) {
    double up_value[16], down_value[16];
    int up = 0, down = 0;
    for (int k = 0; k < n_named; k++) {
        int i = named[k];
        if (c[i] >= bar)
            up = keep_top(up_value, up_codes, up, k_up, c[i], i);
        else if (c[i] <= -bar)
            down = keep_top(down_value, down_codes, down, k_down, -c[i], i);
    }
    *up_count = (uint8_t)up;
    *down_count = (uint8_t)down;
}

static inline void top_of_row(const double *x, const double *w, int features, const int *named, int n_named,
                              double bar, int8_t *up_codes, uint8_t *up_count, int k_up, int8_t *down_codes,
                              uint8_t *down_count, int k_down) {
    double c[128];
    for (int i = 0; i < features; i++)
        c[i] = x[i] * w[i];
    top_of_contributions(c, named, n_named, bar, up_codes, up_count, k_up, down_codes, down_count, k_down);
}

static PyObject *top_contributions(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer matrix, weights, up_codes, up_count, down_codes, down_count;
    double bar;
    if (!PyArg_ParseTuple(args, "y*y*dw*w*w*w*", &matrix, &weights, &bar, &up_codes, &up_count, &down_codes,
                          &down_count))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t features = weights.len / 8, n = up_count.len;
    Py_ssize_t k_up = n ? up_codes.len / n : 0, k_down = n ? down_codes.len / n : 0;
    if (weights.len % 8 || matrix.len != features * n * 8 || down_count.len != n || up_codes.len != k_up * n ||
        down_codes.len != k_down * n || features > 127 || k_up > 16 || k_down > 16 || (n && (!k_up || !k_down))) {
        PyErr_SetString(PyExc_ValueError, "top_contributions() got buffers of mismatched sizes");
        goto done;
    }
    const double *x = (const double *)matrix.buf;
    const double *w = (const double *)weights.buf;
    int8_t *uc = (int8_t *)up_codes.buf, *dc = (int8_t *)down_codes.buf;
    uint8_t *un = (uint8_t *)up_count.buf, *dn = (uint8_t *)down_count.buf;
    int named[128];
    int n_named = named_features(w, (int)features, named);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t row = 0; row < n; row++)
        top_of_row(x + row * features, w, (int)features, named, n_named, bar, uc + row * k_up, un + row, (int)k_up,
                   dc + row * k_down, dn + row, (int)k_down);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&matrix);
    PyBuffer_Release(&weights);
    PyBuffer_Release(&up_codes);
    PyBuffer_Release(&up_count);
    PyBuffer_Release(&down_codes);
    PyBuffer_Release(&down_count);
    return result;
}

/* named_codes' pass, always inlined with k constant where it is the usual 4 (a loop over k codes,
 * and a memcpy of k bytes, of variable length took 5 ns a row): each row's k codes copied (of
 * which its count are kept; at most k, whatever the count says) and its list's end written; 1 if a
 * kept code is outside the names or a count above k. */
static inline __attribute__((always_inline)) int named_lists(const int8_t *code, const uint8_t *count, Py_ssize_t n,
                                                             const Py_ssize_t k, Py_ssize_t names, int32_t *list_at,
                                                             int8_t *out) {
    int bad = 0;
    Py_ssize_t item = 0;
    list_at[0] = 0;
    for (Py_ssize_t row = 0; row < n; row++) {
        int c = count[row];
        for (Py_ssize_t j = 0; j < k; j++)
            bad |= (j < c) & ((uint8_t)code[row * k + j] >= names); /* (a negative code is >= names as uint8) */
        bad |= c > k;
        memcpy(out + item, code + row * k, (size_t)k);
        item += c < k ? c : k;
        list_at[row + 1] = (int32_t)item;
    }
    return bad;
}

/* named_codes(codes, counts, names): each row's first counts[row] codes (a row of ``codes`` holds
 * k) as an Arrow list's (offsets, values) bytes, int32 and int8: Judged.named's columns, whose
 * values are codes into the ``names`` feature names (a dictionary), in one pass, not a mask and a
 * gather (writing every name's text cost ~25 ms a million pairs). A code outside the names, or a
 * count above k, is a ValueError. */
static PyObject *named_codes(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer codes, counts;
    Py_ssize_t names;
    if (!PyArg_ParseTuple(args, "y*y*n", &codes, &counts, &names))
        return NULL;
    PyObject *result = NULL, *lists = NULL, *values = NULL;
    Py_ssize_t n = counts.len, k = n ? codes.len / n : 0;
    const int8_t *code = codes.buf;
    const uint8_t *count = counts.buf;
    if (codes.len != k * n || names < 1 || names > 127) {
        PyErr_SetString(PyExc_ValueError, "named_codes() got buffers of mismatched sizes");
        goto done;
    }
    if (n * k >= INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "named_codes(): more than 32-bit offsets hold");
        goto done;
    }
    lists = PyBytes_FromStringAndSize(NULL, (n + 1) * 4);
    values = PyBytes_FromStringAndSize(NULL, n * k + 1); /* (room for every row's k codes: one pass) */
    if (lists == NULL || values == NULL)
        goto done;
    int32_t *list_at = (int32_t *)PyBytes_AS_STRING(lists);
    int8_t *out = (int8_t *)PyBytes_AS_STRING(values);
    Py_ssize_t bad_row = -1;
    int bad_code = 0;
    Py_BEGIN_ALLOW_THREADS /* the lists, and a check of every code, without the GIL (no branch a row) */
    int bad = k == 4 ? named_lists(code, count, n, 4, names, list_at, out)
                     : named_lists(code, count, n, k, names, list_at, out);
    for (Py_ssize_t row = 0; bad && row < n; row++) { /* which row, only if one is bad */
        for (int j = 0; j < count[row] && j < k; j++)
            bad_code |= code[row * k + j] < 0 || code[row * k + j] >= names;
        if (bad_code || count[row] > k) {
            bad_row = row;
            break;
        }
    }
    Py_END_ALLOW_THREADS
    if (bad_row >= 0 && !bad_code) {
        PyErr_Format(PyExc_ValueError, "named_codes(): row %zd names %d of at most %zd", bad_row, count[bad_row], k);
        goto done;
    }
    if (bad_row >= 0) {
        for (int j = 0; j < count[bad_row]; j++)
            if (code[bad_row * k + j] < 0 || code[bad_row * k + j] >= names) {
                PyErr_Format(PyExc_ValueError, "named_codes(): row %zd has code %d of %zd names", bad_row,
                             code[bad_row * k + j], names);
                break;
            }
        goto done;
    }
    result = Py_BuildValue("(OO)", lists, values);
done:
    Py_XDECREF(lists);
    Py_XDECREF(values);
    PyBuffer_Release(&codes);
    PyBuffer_Release(&counts);
    return result;
}
