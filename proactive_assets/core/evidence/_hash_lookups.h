/* Sorted arrays of 64-bit hash keys and their directories, the keys' hash, and the keys of an
 * address's levels: the lookups of _evidence_kernels.c, which includes this file (the module is
 * one translation unit).
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
 * pair_members(sorted_keys, entity, network, address, out): whether each pair's (identity,
 * network) key is among sorted_keys, the keys made as they are searched.
 *
 * sorted_counts(keys, counts, values, shift, out): each value's prefix's count among sorted 32-bit
 * keys, by a merge where the values ascend (a day's IPv4 addresses against a window's networks).
 *
 * level_keys(is6, hi, lo, bits, out): keys.level_keys' four keys per address (the address, then
 * its prefixes of bits[2k] (IPv4) or bits[2k + 1] (IPv6) bits), into out (4 x n uint64). numpy
 * spent 0.10 s a million addresses on its temporaries (here 0.016 s); the window's and the day's
 * address books each make them.
 */

#include "../_mix64.h"

/* Memory for arrays read at random: 2 MiB-aligned and, on Linux, backed by huge pages where the
 * system allows it (madvise), so the lookups miss the TLB far less than on 4 KiB pages. */
#define HUGE_PAGE ((size_t)2 << 20)
static void *random_access_alloc(size_t size) {
    void *p = NULL;
    if (size >= HUGE_PAGE) {
        size_t rounded = (size + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
        if (posix_memalign(&p, HUGE_PAGE, rounded) != 0)
            return NULL;
#ifdef MADV_HUGEPAGE
        madvise(p, rounded, MADV_HUGEPAGE);
#endif
        return p;
    }
    return malloc(size ? size : 1);
}

/* The first index in [lo, hi) whose key is >= q, given keys[lo - 1] < q (or lo == 0) and
 * keys[hi] >= q (or hi == n): for 64-bit keys (lower_bound) and 32-bit ones (lower_bound32). */
#define LOWER_BOUND(name, key_type)                                                                              \
    static Py_ssize_t name(const key_type *keys, Py_ssize_t lo, Py_ssize_t hi, uint64_t q) {                     \
        while (lo < hi) {                                                                                        \
            Py_ssize_t mid = lo + (hi - lo) / 2;                                                                 \
            if (keys[mid] < q)                                                                                   \
                lo = mid + 1;                                                                                    \
            else                                                                                                 \
                hi = mid;                                                                                        \
        }                                                                                                        \
        return lo;                                                                                               \
    }
LOWER_BOUND(lower_bound, uint64_t)
LOWER_BOUND(lower_bound32, uint32_t)

/* lower_bound in a directory's bucket: a bucket holds ~8 keys, so they are counted without a
 * branch (a binary search's branches are taken at random and each miss costs ~15 cycles). */
static inline Py_ssize_t bucket_search(const uint64_t *keys, Py_ssize_t lo, Py_ssize_t hi, uint64_t q) {
    if (hi - lo > 32)
        return lower_bound(keys, lo, hi, q);
    Py_ssize_t s = lo;
    for (Py_ssize_t k = lo; k < hi; k++)
        s += keys[k] < q;
    return s;
}

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
    memset(dir, 0, (size_t)(buckets + 1) * sizeof(uint32_t));
    /* each bucket's end, set by the last key in it (no branch a key), then the empty buckets' ends
     * from the bucket before */
    for (Py_ssize_t i = 0; i < n; i++)
        dir[(bits == 0 ? 0 : (Py_ssize_t)(keys[i] >> (64 - bits))) + 1] = (uint32_t)(i + 1);
    for (Py_ssize_t j = 1; j <= buckets; j++)
        dir[j] = dir[j] > dir[j - 1] ? dir[j] : dir[j - 1];
}

#define SEARCH_LAG 16 /* queries in flight at each stage of search() */

/* Each query's slot, as a pipeline: a query's directory entry is asked for, SEARCH_LAG queries
 * later its bucket of keys, SEARCH_LAG later it is searched; so the misses of many queries
 * overlap (a million random queries against a million keys: 21 -> 13 ms, against batches of 16
 * whose buckets were asked for once their directory entries had been read). */
static void search(const uint64_t *keys, Py_ssize_t n, const uint32_t *dir, int bits, const uint64_t *q, int64_t *out,
                   Py_ssize_t m) {
    Py_ssize_t lo[SEARCH_LAG], hi[SEARCH_LAG];
    for (Py_ssize_t i = 0; i < m + 2 * SEARCH_LAG; i++) {
        Py_ssize_t j = i - 2 * SEARCH_LAG; /* (its bucket's bounds in the slot the next stage reuses) */
        if (j >= 0) {
            Py_ssize_t s = bucket_search(keys, lo[j % SEARCH_LAG], hi[j % SEARCH_LAG], q[j]);
            out[j] = s < n ? s : n - 1;
        }
        j = i - SEARCH_LAG;
        if (j >= 0 && j < m) {
            Py_ssize_t b = bits == 0 ? 0 : (Py_ssize_t)(q[j] >> (64 - bits));
            lo[j % SEARCH_LAG] = dir[b];
            hi[j % SEARCH_LAG] = dir[b + 1];
            __builtin_prefetch(keys + dir[b]);
            __builtin_prefetch(keys + dir[b] + 7);
        }
        if (i < m)
            __builtin_prefetch(dir + (bits == 0 ? 0 : (Py_ssize_t)(q[i] >> (64 - bits))));
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

#define GOLDEN 0x9E3779B97F4A7C15ULL

/* keys.pair_key: (identity code, network key), from the identity's mix (made once per pair) */
static inline uint64_t entity_mix(int64_t entity) { return mix64((uint64_t)entity + GOLDEN); }
static inline uint64_t pair_key(uint64_t mixed, uint64_t key) { return mix64(key ^ mixed); }

#define MEMBER_CHUNK 4096

/* pair_members(sorted_keys, entity, network, address, out, site=None, sites=None, per_identity=None)
 * -> count: whether each pair's key, pair_key of its identity and its address's network key
 * (network[address[i]]), is among sorted_keys: numpy's history.member of keys.pair_key's keys,
 * without the million keys made first (~9 of ~25 ms). With site (uint64 per address), sites (uint64,
 * one a pair) and per_identity (int64, zeroed by the caller): each member pair's key of its
 * identity and site[address] goes to sites, in pair order, and its identity's count is raised
 * (build_day's siblings and known pairs, which numpy made with three gathers and a bincount);
 * count is how many sites were written (0 without them). */
static PyObject *pair_members(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer keys, entity, network, address, out, site = {0}, sites = {0}, per_identity = {0};
    PyObject *site_arg = Py_None, *sites_arg = Py_None, *per_identity_arg = Py_None;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*|OOO", &keys, &entity, &network, &address, &out, &site_arg, &sites_arg,
                          &per_identity_arg))
        return NULL;
    PyObject *result = NULL;
    uint32_t *dir = NULL;
    int with_sites = site_arg != Py_None;
    if (with_sites && (PyObject_GetBuffer(site_arg, &site, PyBUF_C_CONTIGUOUS) < 0 ||
                       PyObject_GetBuffer(sites_arg, &sites, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0 ||
                       PyObject_GetBuffer(per_identity_arg, &per_identity, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0))
        goto done;
    Py_ssize_t n = keys.len / 8, m = entity.len / 8, addresses = network.len / 8, identities = per_identity.len / 8;
    if (keys.len % 8 || entity.len % 8 || network.len % 8 || address.len != m * 8 || out.len != m || n == 0 ||
        n > UINT32_MAX ||
        (with_sites && (site.len != network.len || sites.len != m * 8 || per_identity.len % 8))) {
        PyErr_SetString(PyExc_ValueError, "pair_members() takes 1 to 2^32 - 1 uint64 keys, int64 identities, "
                                          "uint64 network keys, an int64 address per identity and a bool output "
                                          "(and uint64 site keys as many as the network keys, a uint64 output "
                                          "a pair and int64 counts an identity)");
        goto done;
    }
    const uint64_t *k = keys.buf, *net = network.buf, *site_key = site.buf;
    const int64_t *e = entity.buf, *a = address.buf;
    uint8_t *o = out.buf;
    uint64_t *site_out = sites.buf;
    int64_t *counted = per_identity.buf;
    for (Py_ssize_t i = 0; i < m; i++)
        if (a[i] < 0 || a[i] >= addresses) {
            PyErr_Format(PyExc_ValueError, "pair_members(): pair %zd has an address code out of range", i);
            goto done;
        } else if (with_sites && (e[i] < 0 || e[i] >= identities)) {
            PyErr_Format(PyExc_ValueError, "pair_members(): pair %zd has an identity code out of range", i);
            goto done;
        }
    int bits = bits_for(n);
    dir = PyMem_RawMalloc((((size_t)1 << bits) + 1) * sizeof(uint32_t));
    if (dir == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t written = 0;
    Py_BEGIN_ALLOW_THREADS
    build_directory(k, n, bits, dir);
    uint64_t q[MEMBER_CHUNK], mixed[MEMBER_CHUNK];
    int64_t slot[MEMBER_CHUNK];
    for (Py_ssize_t start = 0; start < m; start += MEMBER_CHUNK) {
        Py_ssize_t count = m - start < MEMBER_CHUNK ? m - start : MEMBER_CHUNK;
        for (Py_ssize_t j = 0; j < count; j++) {
            mixed[j] = entity_mix(e[start + j]);
            q[j] = pair_key(mixed[j], net[a[start + j]]);
        }
        search(k, n, dir, bits, q, slot, count);
        for (Py_ssize_t j = 0; j < count; j++) {
            int member = k[slot[j]] == q[j];
            o[start + j] = (uint8_t)member;
            if (with_sites && member) {
                site_out[written++] = pair_key(mixed[j], site_key[a[start + j]]);
                counted[e[start + j]]++;
            }
        }
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromSsize_t(written);
done:
    PyMem_RawFree(dir);
    if (site.obj != NULL)
        PyBuffer_Release(&site);
    if (sites.obj != NULL)
        PyBuffer_Release(&sites);
    if (per_identity.obj != NULL)
        PyBuffer_Release(&per_identity);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&entity);
    PyBuffer_Release(&network);
    PyBuffer_Release(&address);
    PyBuffer_Release(&out);
    return result;
}

/* A sorted array of distinct hash keys (with a count per key, or none) and its directory (built
 * when first needed: ``directory_ready``). */
typedef struct {
    const uint64_t *keys;
    const int64_t *counts;
    Py_ssize_t n;
    int bits;
    uint32_t *dir;
    int ready;
} Table;

/* ``t``'s directory, built on the first lookup: a scored day's window counts and seen /24s come
 * with the pairs, so their tables (~3.8M of the ~6.3M keys at the IP Insights tutorial's scale)
 * are seldom searched, and each thread judging the pairs built every directory: a call's setup
 * 13 ms, now 2.5 ms with the branchless build_directory. */
static inline void directory_ready(Table *t) {
    if (!t->ready && t->n)
        build_directory(t->keys, t->n, t->bits, t->dir);
    t->ready = 1;
}

static inline Py_ssize_t bucket_of(const Table *t, uint64_t q) { return t->bits == 0 ? 0 : (Py_ssize_t)(q >> (64 - t->bits)); }

static PyObject *level_keys(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer is6, hi, lo, bits, out;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*", &is6, &hi, &lo, &bits, &out))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = is6.len;
    if (hi.len != n * 8 || lo.len != n * 8 || bits.len != 6 * 8 || out.len != 4 * n * 8) {
        PyErr_SetString(PyExc_ValueError, "level_keys() got buffers of mismatched sizes");
        goto done;
    }
    const int64_t *b = bits.buf;
    for (int k = 0; k < 6; k++) {
        if (b[k] < 1 || b[k] > (k % 2 ? 64 : 32)) {
            PyErr_SetString(PyExc_ValueError, "level_keys() takes prefix lengths of 1-32 (IPv4) and 1-64 (IPv6) bits");
            goto done;
        }
    }
    const uint8_t *v6 = is6.buf;
    const uint64_t *h = hi.buf, *l = lo.buf;
    uint64_t *o = out.buf;
    Py_BEGIN_ALLOW_THREADS
    uint64_t tags[3][2];
    for (int level = 1; level <= 3; level++)
        for (int version = 0; version < 2; version++)
            tags[level - 1][version] = mix64((uint64_t)(level * 2 + 1) + (uint64_t)version * 16);
    for (Py_ssize_t i = 0; i < n; i++) {
        int six = v6[i] != 0;
        o[i] = mix64(mix64(h[i] ^ 0x5555) ^ l[i] ^ (uint64_t)six);
        for (int level = 1; level <= 3; level++) {
            uint64_t prefix = six ? h[i] >> (64 - b[2 * (level - 1) + 1]) : l[i] >> (32 - b[2 * (level - 1)]);
            o[level * n + i] = mix64(prefix ^ tags[level - 1][six]);
        }
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&is6);
    PyBuffer_Release(&hi);
    PyBuffer_Release(&lo);
    PyBuffer_Release(&bits);
    PyBuffer_Release(&out);
    return result;
}

/* sorted_counts(keys, counts, values, shift, out, positions=None): for each value (uint64), the
 * count beside its prefix ``value >> shift`` among ``keys`` (uint32, ascending and distinct;
 * ``counts`` int32), 0 where it is absent, into ``out`` (int64). Values in ascending order make it
 * one merge of the two arrays, read in order: each search starts where the last ended and gallops
 * forward (a value lower than the last starts afresh). With ``positions`` (int64, each below the
 * output's length), the i-th value's count goes to out[positions[i]]: a day's IPv4 addresses,
 * which coded_addresses keeps in the order the rows have them, merged in ascending order
 * (``ascending_v4``) and counted in their own places.
 * A day's addresses against a window's networks: a hash lookup per address missed the cache. */
static PyObject *sorted_counts(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer keys, counts, values, out, positions = {0};
    PyObject *positions_arg = Py_None;
    int shift;
    if (!PyArg_ParseTuple(args, "y*y*y*iw*|O", &keys, &counts, &values, &shift, &out, &positions_arg))
        return NULL;
    PyObject *result = NULL;
    if (positions_arg != Py_None && PyObject_GetBuffer(positions_arg, &positions, PyBUF_C_CONTIGUOUS) < 0)
        goto done;
    Py_ssize_t n = keys.len / 4, m = values.len / 8, places = out.len / 8;
    const int64_t *at = positions.buf; /* NULL: the counts in the values' order */
    if (keys.len % 4 || counts.len != n * 4 || values.len % 8 || out.len % 8 || shift < 0 || shift > 63 ||
        (at != NULL ? positions.len != m * 8 : places != m)) {
        PyErr_SetString(PyExc_ValueError,
                        "sorted_counts() takes uint32 keys, int32 counts as many, uint64 values, a shift below 64, "
                        "an int64 output as long as the values or int64 positions as long as them");
        goto done;
    }
    for (Py_ssize_t i = 0; at != NULL && i < m; i++)
        if (at[i] < 0 || at[i] >= places) {
            PyErr_Format(PyExc_ValueError, "sorted_counts(): position %zd is out of range", i);
            goto done;
        }
    const uint32_t *k = keys.buf;
    const int32_t *c = counts.buf;
    const uint64_t *v = values.buf;
    int64_t *o = out.buf;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t j = 0;
    uint64_t last = 0;
    for (Py_ssize_t i = 0; i < m; i++) {
        if (at != NULL && i + 16 < m)
            __builtin_prefetch(&o[at[i + 16]], 1);
        uint64_t q = v[i] >> shift;
        if (q < last) {
            j = lower_bound32(k, 0, j, q);
        } else {
            Py_ssize_t stop = j + 8 < n ? j + 8 : n; /* mostly a key or two ahead: walk there */
            while (j < stop && k[j] < q)
                j++;
            if (j == stop && j < n && k[j] < q) { /* far ahead: gallop, then search */
                Py_ssize_t lo = j, hi = j, step = 8;
                while (hi < n && k[hi] < q) {
                    lo = hi + 1;
                    hi += step;
                    step <<= 1;
                }
                j = lower_bound32(k, lo, hi < n ? hi : n, q);
            }
        }
        last = q;
        o[at != NULL ? at[i] : i] = j < n && k[j] == q ? c[j] : 0;
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&keys);
    PyBuffer_Release(&counts);
    PyBuffer_Release(&values);
    PyBuffer_Release(&out);
    if (positions.obj != NULL)
        PyBuffer_Release(&positions);
    return result;
}
