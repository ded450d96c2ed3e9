/* Each IPv4 address's owner from its interval of networks.py's table: owner_fields of
 * _evidence_kernels.c, which includes this file (the module is one translation unit).
 *
 * owner_fields(slot, value, ends, provider, region, service, private_networks, private_lengths,
 * out_provider, out_region, out_service, out_private): slot int64 per address (the last interval
 * starting at or below it, -1 for none), value uint64 (the IPv4 address); ends uint64 per interval;
 * provider int16, region and service int32 per interval and one more row for 'no owner'. An
 * address before its interval's end gets that interval's fields, any other the last row's; it is
 * private when in 0.0.0.0/8 or in one of the networks (uint64 values, int64 prefix lengths). One
 * pass for what numpy did in a dozen over a day's addresses (~12 ms a million).
 */

static PyObject *owner_fields(PyObject *self, PyObject *args) {
    (void)self;
    enum { SLOT, VALUE, ENDS, PROVIDER, REGION, SERVICE, NETS, LENGTHS, OUT_PROVIDER, OUT_REGION, OUT_SERVICE,
           OUT_PRIVATE, COUNT };
    Py_buffer b[COUNT];
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*y*w*w*w*w*", &b[SLOT], &b[VALUE], &b[ENDS], &b[PROVIDER], &b[REGION],
                          &b[SERVICE], &b[NETS], &b[LENGTHS], &b[OUT_PROVIDER], &b[OUT_REGION], &b[OUT_SERVICE],
                          &b[OUT_PRIVATE]))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = b[SLOT].len / 8, intervals = b[ENDS].len / 8, nets = b[NETS].len / 8;
    int ok = b[SLOT].len % 8 == 0 && b[VALUE].len == n * 8 && b[ENDS].len % 8 == 0 &&
             b[PROVIDER].len == (intervals + 1) * 2 && b[REGION].len == (intervals + 1) * 4 &&
             b[SERVICE].len == (intervals + 1) * 4 && b[NETS].len % 8 == 0 && b[LENGTHS].len == nets * 8 &&
             nets <= 64 && b[OUT_PROVIDER].len == n * 2 && b[OUT_REGION].len == n * 4 && b[OUT_SERVICE].len == n * 4 &&
             b[OUT_PRIVATE].len == n;
    const int64_t *lengths = b[LENGTHS].buf;
    for (Py_ssize_t j = 0; ok && j < nets; j++)
        ok = lengths[j] >= 0 && lengths[j] <= 32;
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "owner_fields() got buffers of mismatched sizes");
        goto done;
    }
    const int64_t *slot = b[SLOT].buf;
    const uint64_t *value = b[VALUE].buf, *ends = b[ENDS].buf, *networks = b[NETS].buf;
    const int16_t *provider = b[PROVIDER].buf;
    const int32_t *region = b[REGION].buf, *service = b[SERVICE].buf;
    int16_t *out_provider = b[OUT_PROVIDER].buf;
    int32_t *out_region = b[OUT_REGION].buf, *out_service = b[OUT_SERVICE].buf;
    uint8_t *out_private = b[OUT_PRIVATE].buf;
    uint64_t prefix[64];
    unsigned shift[64];
    for (Py_ssize_t j = 0; j < nets; j++) {
        shift[j] = (unsigned)(32 - lengths[j]);
        prefix[j] = networks[j] >> shift[j];
    }
    Py_ssize_t bad = -1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t s = slot[i];
        uint64_t v = value[i];
        if (s < -1 || s >= intervals) {
            bad = i;
            break;
        }
        Py_ssize_t row = s >= 0 && v < ends[s] ? (Py_ssize_t)s : intervals;
        out_provider[i] = provider[row];
        out_region[i] = region[row];
        out_service[i] = service[row];
        int private = v < ((uint64_t)1 << 24);
        for (Py_ssize_t j = 0; j < nets; j++)
            private |= (v >> shift[j]) == prefix[j];
        out_private[i] = (uint8_t)private;
    }
    Py_END_ALLOW_THREADS
    if (bad >= 0) {
        PyErr_Format(PyExc_ValueError, "owner_fields(): address %zd has slot %lld of %zd intervals", bad,
                     (long long)slot[bad], intervals);
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    for (int k = 0; k < COUNT; k++)
        PyBuffer_Release(&b[k]);
    return result;
}
