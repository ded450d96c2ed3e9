/* Each pair's strongest evidence, and its names as Arrow lists: the naming of
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

/* name_lists(codes, counts, name_offsets, name_data): each row's first counts[row] codes (a row of
 * ``codes`` holds k) as an Arrow list of strings, as (list offsets, string offsets, string data)
 * bytes: Judged.named's columns in one pass, not a mask, a gather and a take. A code outside the
 * names, or data past 2 GiB (Arrow's 32-bit offsets), is a ValueError. */
#define NAME_SLOT 32
static PyObject *name_lists(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer codes, counts, name_offsets, name_data;
    if (!PyArg_ParseTuple(args, "y*y*y*y*", &codes, &counts, &name_offsets, &name_data))
        return NULL;
    PyObject *result = NULL, *lists = NULL, *offsets = NULL, *data = NULL;
    Py_ssize_t n = counts.len, k = n ? codes.len / n : 0, names = name_offsets.len / 4 - 1;
    const int8_t *code = codes.buf;
    const uint8_t *count = counts.buf;
    const int32_t *name_at = name_offsets.buf;
    if (codes.len != k * n || name_offsets.len % 4 || names < 1 || names > 127) {
        PyErr_SetString(PyExc_ValueError, "name_lists() got buffers of mismatched sizes");
        goto done;
    }
    for (Py_ssize_t i = 0; i <= names; i++)
        if (name_at[i] < 0 || name_at[i] > name_data.len || (i && name_at[i] < name_at[i - 1])) {
            PyErr_SetString(PyExc_ValueError, "name_lists() got name offsets out of order");
            goto done;
        }
    Py_ssize_t items = 0, bytes = 0, bad_row = -1;
    int bad_code = 0;
    Py_BEGIN_ALLOW_THREADS /* the sizes, and a check of every code, without the GIL */
    for (Py_ssize_t row = 0; row < n && bad_row < 0; row++) {
        if (count[row] > k) {
            bad_row = row;
            break;
        }
        for (int j = 0; j < count[row]; j++) {
            int c = code[row * k + j];
            if (c < 0 || c >= names) {
                bad_row = row;
                bad_code = 1;
                break;
            }
            bytes += name_at[c + 1] - name_at[c];
        }
        items += count[row];
    }
    Py_END_ALLOW_THREADS
    if (bad_row >= 0 && !bad_code) {
        PyErr_Format(PyExc_ValueError, "name_lists(): row %zd names %d of at most %zd", bad_row, count[bad_row], k);
        goto done;
    }
    if (bad_row >= 0) {
        for (int j = 0; j < count[bad_row]; j++)
            if (code[bad_row * k + j] < 0 || code[bad_row * k + j] >= names) {
                PyErr_Format(PyExc_ValueError, "name_lists(): row %zd has code %d of %zd names", bad_row,
                             code[bad_row * k + j], names);
                break;
            }
        goto done;
    }
    if (bytes > INT32_MAX || items > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "name_lists(): more than 32-bit offsets hold");
        goto done;
    }
    /* names of up to NAME_SLOT bytes are copied NAME_SLOT bytes at a time (two vector moves, not a
     * call), from a padded copy, into data with NAME_SLOT bytes to spare past its end */
    char padded[128][NAME_SLOT];
    int fixed = 1;
    for (Py_ssize_t c = 0; c < names; c++) {
        int32_t length = name_at[c + 1] - name_at[c];
        fixed &= length <= NAME_SLOT;
        memset(padded[c], 0, NAME_SLOT);
        memcpy(padded[c], (const char *)name_data.buf + name_at[c], length < NAME_SLOT ? (size_t)length : NAME_SLOT);
    }
    lists = PyBytes_FromStringAndSize(NULL, (n + 1) * 4);
    offsets = PyBytes_FromStringAndSize(NULL, (items + 1) * 4);
    data = PyBytes_FromStringAndSize(NULL, bytes + NAME_SLOT);
    if (lists == NULL || offsets == NULL || data == NULL)
        goto done;
    int32_t *list_at = (int32_t *)PyBytes_AS_STRING(lists), *value_at = (int32_t *)PyBytes_AS_STRING(offsets);
    char *out = PyBytes_AS_STRING(data);
    const char *text = name_data.buf;
    Py_BEGIN_ALLOW_THREADS
    int32_t item = 0, at = 0;
    list_at[0] = 0;
    value_at[0] = 0;
    for (Py_ssize_t row = 0; row < n; row++) {
        for (int j = 0; j < count[row]; j++) {
            int c = code[row * k + j];
            int32_t length = name_at[c + 1] - name_at[c];
            if (fixed)
                memcpy(out + at, padded[c], NAME_SLOT);
            else
                memcpy(out + at, text + name_at[c], (size_t)length);
            at += length;
            value_at[++item] = at;
        }
        list_at[row + 1] = item;
    }
    memset(out + at, 0, NAME_SLOT);
    Py_END_ALLOW_THREADS
    result = PyTuple_Pack(3, lists, offsets, data);
done:
    Py_XDECREF(lists);
    Py_XDECREF(offsets);
    Py_XDECREF(data);
    PyBuffer_Release(&codes);
    PyBuffer_Release(&counts);
    PyBuffer_Release(&name_offsets);
    PyBuffer_Release(&name_data);
    return result;
}
