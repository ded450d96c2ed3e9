/* The evidence's hot loops (features.py, detector.py), in plain C with the CPython API only.
 *
 * pair_features: the evidence matrix of features.py's pair_features, in one pass over the pairs.
 * numpy built it from ~60 whole-array operations and 13 separate searches (1.3 s a million pairs
 * at the IP Insights tutorial's scale; here 0.6 s). A chunk of pairs at a time: their addresses'
 * keys gathered, their lookups done a table at a time (one table's directory stays in cache;
 * 13 do not) as a pipeline whose stages fetch ahead, lookups with a known answer skipped, then each
 * pair's row of features written. PAIR_FEATURES names the matrix columns in order; features.py
 * uses the kernel only when they are its FEATURES.
 *
 * pair_features(pairs, addresses, identities, tables, aws_category, out, judge=None, claim=None):
 * four tuples of buffers (see the comments at their enums below) and a float64 output of pairs x
 * features (a pair's features contiguous: written a pair at a time, 43 rows of feature values cost
 * 3x as much). With ``claim`` (see next_chunk) calls on several threads share the pairs' chunks.
 * With ``judge`` (see Judge; then out is None) no matrix is written: each pair's row is judged
 * while it is in cache (its insight, its named evidence as top_contributions names it, and the
 * features daily_insights shows). The matrix of a million pairs is 344 MB; writing it and reading
 * it back a column at a time cost more than building it.
 *
 * slots, sorted_counts and level_keys are in _hash_lookups.h, top_contributions and named_codes in
 * _evidence_naming.h, owner_fields in _owner_fields.h, identities_by_code in _day_counts.h, all included
 * here. The GIL is released while they run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

#include "_hash_lookups.h"
#include "_evidence_naming.h"
#include "_owner_fields.h"
#include "_day_counts.h"

/* ---- pair_features ---- */

/* log1p of the small whole numbers that most of the features' counts are (libm's log1p costs
 * ~30 ns, and a pair takes a dozen); the same values log1p gives, from a table filled at import. */
#define LOG1P_TABLE 4096
static double LOG1P[LOG1P_TABLE];

static inline double log1p_count(int64_t c) { return c < LOG1P_TABLE ? LOG1P[c] : log1p((double)c); }

static inline double log1p_value(double v) {
    if (v >= 0 && v < LOG1P_TABLE) {
        int64_t c = (int64_t)v;
        if ((double)c == v)
            return LOG1P[c];
    }
    return log1p(v);
}

/* The matrix rows, in features.py's FEATURES order. */
enum {
    F_NOVEL_24, F_NOVEL_16, F_NOVEL_12, F_NOVEL_NETWORK, F_NEW_IDENTITY, F_HISTORY_DAYS, F_CHURN_24, F_CHURN_16,
    F_NETWORKS_16, F_OTHERS_ADDRESS_WINDOW, F_OTHERS_24_WINDOW, F_OTHERS_16_WINDOW, F_OTHERS_12_WINDOW,
    F_OTHERS_ADDRESS_TODAY, F_OTHERS_24_TODAY, F_KNOWN_NETWORK_TODAY, F_SIBLING_KNOWN_TODAY, F_PERSON_ADDRESS,
    F_PERSON_24, F_AWS_ADDRESS, F_CLOUD_ADDRESS, F_PRIVATE_ADDRESS, F_AWS_SHARE, F_CLOUD_SHARE, F_PROVIDER_NEW,
    F_OFF_PROVIDER, F_AWS_REGION_NEW, F_FAMILY_NEW, F_IP_INSIGHTS, F_IP_INSIGHTS_MISSING, F_NEW_ACTIONS,
    F_NEW_USER_AGENT, F_EVENTS, F_NOVEL_X_CHURN_24, F_NOVEL_X_CHURN_16, F_NOVEL_X_KNOWN_TODAY,
    F_NOVEL_X_OTHERS_WINDOW, F_NOVEL_X_OTHERS_TODAY, F_NOVEL_X_PROVIDER_NEW, F_NOVEL_X_IP_INSIGHTS,
    F_OFF_PROVIDER_X_OTHERS, F_NOVEL_X_NEW_ACTIONS, F_NOVEL_X_NEW_USER_AGENT, F_COUNT
};

static const char *FEATURE_NAMES[F_COUNT] = {
    "novel_24", "novel_16", "novel_12", "novel_network", "new_identity", "history_days", "churn_24", "churn_16",
    "networks_16", "others_address_window", "others_24_window", "others_16_window", "others_12_window",
    "others_address_today", "others_24_today", "known_network_today", "sibling_known_today", "person_address",
    "person_24", "aws_address", "cloud_address", "private_address", "aws_share", "cloud_share", "provider_new",
    "off_provider", "aws_region_new", "family_new", "ip_insights", "ip_insights_missing", "new_actions",
    "new_user_agent", "events", "novel_x_churn_24", "novel_x_churn_16", "novel_x_known_today",
    "novel_x_others_window", "novel_x_others_today", "novel_x_provider_new", "novel_x_ip_insights",
    "off_provider_x_others", "novel_x_new_actions", "novel_x_new_user_agent",
};

/* A bound on the size of each feature as the rows below write it (0: none known), for judging:
 * a feature whose weight times its bound is under the bar for named evidence is never named, and
 * is not tested for it (naming a row's evidence is ~40% of judging it). The bounded ones are the
 * flags the row writes as 0 or 1, their products with the 0/1 novelty, and IP Insights' log-odds,
 * of an insight clipped to [1e-4, 1 - 1e-4], over 5 (at most log(9999) / 5 = 1.8421). Features
 * read from the caller's arrays (shares, churn) have none: the kernel does not check them. */
#define IP_INSIGHTS_BOUND 1.85
static const double F_BOUND[F_COUNT] = {
    [F_NOVEL_24] = 1, [F_NOVEL_16] = 1, [F_NOVEL_12] = 1, [F_NOVEL_NETWORK] = 1, [F_NEW_IDENTITY] = 1,
    [F_KNOWN_NETWORK_TODAY] = 1, [F_SIBLING_KNOWN_TODAY] = 1, [F_PERSON_ADDRESS] = 1, [F_PERSON_24] = 1,
    [F_AWS_ADDRESS] = 1, [F_CLOUD_ADDRESS] = 1, [F_PRIVATE_ADDRESS] = 1, [F_PROVIDER_NEW] = 1,
    [F_AWS_REGION_NEW] = 1, [F_FAMILY_NEW] = 1, [F_IP_INSIGHTS] = IP_INSIGHTS_BOUND, [F_IP_INSIGHTS_MISSING] = 1,
    [F_NOVEL_X_KNOWN_TODAY] = 1, [F_NOVEL_X_PROVIDER_NEW] = 1, [F_NOVEL_X_IP_INSIGHTS] = IP_INSIGHTS_BOUND,
};

/* named_features of w, without the features the bounds above keep under ``bar``. */
static int judged_features(const double *w, double bar, int *out) {
    int named[F_COUNT], count = 0;
    int n = named_features(w, F_COUNT, named);
    for (int k = 0; k < n; k++)
        if (F_BOUND[named[k]] == 0 || fabs(w[named[k]]) * F_BOUND[named[k]] >= bar)
            out[count++] = named[k];
    return count;
}

/* The buffers of a tuple, each checked for its item size; ``lengths`` gets each one's item count. */
static int get_buffers(PyObject *tuple, const char *what, Py_ssize_t count, const int *itemsize, Py_buffer *out,
                       Py_ssize_t *lengths) {
    if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) != count) {
        PyErr_Format(PyExc_ValueError, "pair_features() takes %zd buffers of %s", count, what);
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(tuple, i), &out[i], PyBUF_C_CONTIGUOUS) < 0) {
            for (Py_ssize_t j = 0; j < i; j++)
                PyBuffer_Release(&out[j]);
            return -1;
        }
        if (out[i].len % itemsize[i]) {
            PyErr_Format(PyExc_ValueError, "pair_features(): %s buffer %zd is not of %d-byte items", what, i,
                         itemsize[i]);
            for (Py_ssize_t j = 0; j <= i; j++)
                PyBuffer_Release(&out[j]);
            return -1;
        }
        lengths[i] = out[i].len / itemsize[i];
    }
    return 0;
}

static void release_buffers(Py_buffer *buffers, Py_ssize_t count) {
    for (Py_ssize_t i = 0; i < count; i++)
        PyBuffer_Release(&buffers[i]);
}

/* pairs: entity int64, address int64, ip_insights float64, real bool, person_address bool,
 * person_24 bool (before masking by the pair's own history), new_actions float64, new_agents
 * float64, has_agents bool, events float64; and seen_24 bool, whether the identity used the pair's
 * /24 (/64) in the window, where the caller has looked it up already (scoring a day: build_day
 * did), else empty (the kernel looks it up). */
enum { P_ENTITY, P_ADDRESS, P_IPI, P_REAL, P_PERSON_ADDRESS, P_PERSON_24, P_NEW_ACTIONS, P_NEW_AGENTS, P_HAS_AGENTS,
       P_EVENTS, P_SEEN_24, P_COUNT };
static const int P_SIZES[P_COUNT] = {8, 8, 8, 1, 1, 1, 8, 8, 1, 8, 1};
/* addresses: the level keys (address, /24, /16, /12) uint64, provider category int64, AWS region
 * code as uint64, is-IPv6 bool; and, where the caller has them (else empty), how many identities
 * used each address's network in the window at the 4 levels and today at 2 (int64, -1 where not
 * known: the kernel looks those up): what the T_ORG and T_TODAY tables would answer, read with
 * the address's keys instead of looked up a pair at a time (scoring a day: ``window.py``). */
enum { A_KEY0, A_KEY1, A_KEY2, A_KEY3, A_CATEGORY, A_REGION, A_IS6, A_ORG0, A_ORG1, A_ORG2, A_ORG3, A_TODAY0,
       A_TODAY1, A_COUNT };
static const int A_SIZES[A_COUNT] = {8, 8, 8, 8, 8, 8, 1, 8, 8, 8, 8, 8, 8};
/* identities: known bool, days float64, churn_24 float64, churn_16 float64, networks_16 float64,
 * aws_share float64, cloud_share float64, families int64, has_agents bool, known pairs today float64. */
enum { I_KNOWN, I_DAYS, I_CHURN_24, I_CHURN_16, I_NETWORKS_16, I_AWS_SHARE, I_CLOUD_SHARE, I_FAMILIES,
       I_HAS_AGENTS, I_KNOWN_PAIRS, I_COUNT };
static const int I_SIZES[I_COUNT] = {1, 8, 8, 8, 8, 8, 8, 8, 1, 8};
/* tables, each sorted distinct uint64 keys (then its int64 counts where it has them): seen at the
 * 4 levels; the window's keys and counts at the 4 levels; today's at 2 levels; today's siblings;
 * the identities' providers; their AWS regions. */
enum { T_SEEN0, T_SEEN1, T_SEEN2, T_SEEN3, T_ORG0, T_ORG1, T_ORG2, T_ORG3, T_TODAY0, T_TODAY1, T_SIBLINGS,
       T_PROVIDERS, T_REGIONS, T_COUNT };
static const int T_COUNTED[T_COUNT] = {0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0};

/* Pairs are judged a chunk at a time: their keys gathered, then looked up a table at a time (13
 * tables of up to millions of keys do not share the cache; one does), then their rows written. */
#define PAIR_CHUNK 4096

/* What a chunk's pair's lookups need, one cache line a pair: its address's keys and owner,
 * gathered from the per-address arrays once (the addresses' codes come in no useful order: a
 * miss in each array, asked for RECORD_AHEAD pairs ahead), then read in order by every table's
 * lookups; and its identity's hash. (Gathering a record per address first cost as much and
 * wrote 64 bytes an address on each thread.) */
typedef struct {
    uint64_t level[4], category, region, is6, entity_mix;
} PairKeys;

#define LAG 8 /* lookups in flight at each stage of lookup_chunk */
#define RECORD_AHEAD 16 /* addresses asked for this many pairs ahead */

typedef struct {
    PairKeys keys[PAIR_CHUNK];
    int64_t found[T_COUNT][PAIR_CHUNK]; /* per table: the key's count (1 where it has none), or 0 */
    uint64_t q[PAIR_CHUNK];
    uint32_t pos[PAIR_CHUNK], lo[PAIR_CHUNK], hi[PAIR_CHUNK];
    int64_t slot[PAIR_CHUNK];
} Scratch;

static inline uint64_t query(int table, const PairKeys *a) {
    switch (table) {
    case T_SEEN0: case T_SEEN1: case T_SEEN2: case T_SEEN3:
        return pair_key(a->entity_mix, a->level[table - T_SEEN0]);
    case T_ORG0: case T_ORG1: case T_ORG2: case T_ORG3:
        return a->level[table - T_ORG0];
    case T_TODAY0: case T_TODAY1:
        return a->level[table - T_TODAY0];
    case T_SIBLINGS:
        return pair_key(a->entity_mix, a->level[2]);
    case T_PROVIDERS:
        return pair_key(a->entity_mix, a->category);
    default:
        return pair_key(a->entity_mix, a->region);
    }
}

/* The chunk's keys looked up in one table, as a pipeline: a key's directory entry is asked for,
 * LAG keys later its bucket of keys, LAG later it is searched (and its count asked for), LAG later
 * the count is read; so each stage's cache misses overlap with the others'. */
static inline __attribute__((always_inline)) void lookup_chunk(const Table *t, int table, const PairKeys *keys,
                                                               const uint32_t *pos, Py_ssize_t count,
                         Scratch *w, int64_t *found) {
    if (t->n == 0) {
        for (Py_ssize_t j = 0; j < count; j++)
            found[pos[j]] = 0;
        return;
    }
    for (Py_ssize_t i = 0; i < count + 3 * LAG; i++) {
        Py_ssize_t j = i;
        if (j < count) {
            w->q[j] = query(table, &keys[pos[j]]);
            __builtin_prefetch(t->dir + bucket_of(t, w->q[j]));
        }
        j = i - LAG;
        if (j >= 0 && j < count) {
            Py_ssize_t b = bucket_of(t, w->q[j]);
            w->lo[j] = t->dir[b];
            w->hi[j] = t->dir[b + 1];
            __builtin_prefetch(t->keys + w->lo[j]);
            __builtin_prefetch(t->keys + w->lo[j] + 7);
        }
        j = i - 2 * LAG;
        if (j >= 0 && j < count) {
            Py_ssize_t s = bucket_search(t->keys, w->lo[j], w->hi[j], w->q[j]);
            w->slot[j] = s < (Py_ssize_t)w->hi[j] && t->keys[s] == w->q[j] ? s : -1;
            if (t->counts && w->slot[j] >= 0)
                __builtin_prefetch(t->counts + w->slot[j]);
        }
        j = i - 3 * LAG;
        if (j >= 0 && j < count)
            found[pos[j]] = w->slot[j] < 0 ? 0 : (t->counts ? t->counts[w->slot[j]] : 1);
    }
}

/* What table ``t`` would answer for pair k when its answer is already known or never used, else
 * -1 (look it up). A network no identity of the window used holds no address any of them used,
 * and no identity's pair (most of a day's addresses are new to the window: their seen lookups,
 * in the largest tables, are skipped); an identity the window never saw has no pairs; an
 * identity that used an address used its /24, /16 and /12; an address is shared today only
 * on a /24 shared today; the siblings matter only on a new /24; the providers only for a known
 * identity; the AWS regions only for an AWS address of a known identity that has used AWS
 * addresses. */
static inline int64_t needless(int t, const Scratch *w, Py_ssize_t k, int known, int has_aws, long long aws_category) {
    switch (t) {
    case T_ORG0: case T_ORG1: case T_ORG2:
        return w->found[t + 1][k] ? -1 : 0;
    case T_SEEN0:
        return known && w->found[T_ORG0][k] ? -1 : 0;
    case T_SEEN1: case T_SEEN2: case T_SEEN3:
        if (!known || !w->found[T_ORG0 + (t - T_SEEN0)][k])
            return 0;
        return w->found[t - 1][k] ? 1 : -1;
    case T_TODAY0:
        return w->found[T_TODAY1][k] ? -1 : 0;
    case T_SIBLINGS:
        return w->found[T_SEEN1][k] ? 0 : -1;
    case T_PROVIDERS:
        return known ? -1 : 1;
    case T_REGIONS:
        return known && has_aws && (long long)w->keys[k].category == aws_category ? -1 : 1;
    default:
        return -1;
    }
}

/* One table's lookups for a chunk's pairs: those needless() leaves. Always inlined with a constant
 * table (chunk_lookups), so each table gets its own loop without the per-pair switches of query()
 * and needless(). */
static inline __attribute__((always_inline)) void table_lookups(const int t, Table *table, Scratch *w,
                                                                Py_ssize_t count, const int64_t *entity,
                                                                const uint8_t *known_in, const double *aws_share,
                                                                long long aws_category, int given) {
    Py_ssize_t m = 0;
    for (Py_ssize_t k = 0; k < count; k++) {
        if (given && w->found[t][k] >= 0) /* the caller's answer (the chunk's keys were gathered with it) */
            continue;
        int64_t e = entity[k];
        int64_t skipped = needless(t, w, k, known_in[e] != 0, aws_share[e] > 0, aws_category);
        if (skipped < 0)
            w->pos[m++] = (uint32_t)k;
        else
            w->found[t][k] = skipped;
    }
    if (m)
        directory_ready(table);
    lookup_chunk(table, t, w->keys, w->pos, m, w, w->found[t]);
}

/* A chunk's lookups, a table at a time (its directory stays in cache), in the order needless()
 * relies on (the window's networks from the widest down, then each level's seen table after the
 * one below it; today's /24s before their addresses). The seen /24s the caller has (``seen_24``,
 * the chunk's, or NULL) are the answers the lookups would give; so are the window's and today's
 * counts the chunk's keys were gathered with (``given[t]``: found[t] holds them, -1 to look up). */
static void chunk_lookups(Table *tables, Scratch *w, Py_ssize_t count, const int64_t *entity,
                          const uint8_t *seen_24, const uint8_t *known_in, const double *aws_share,
                          long long aws_category, const int *given) {
#define TABLE(T) table_lookups(T, &tables[T], w, count, entity, known_in, aws_share, aws_category, given[T])
    TABLE(T_ORG3);
    TABLE(T_ORG2);
    TABLE(T_ORG1);
    TABLE(T_ORG0);
    TABLE(T_SEEN0);
    if (seen_24 != NULL)
        for (Py_ssize_t k = 0; k < count; k++)
            w->found[T_SEEN1][k] = seen_24[k] != 0;
    else
        TABLE(T_SEEN1);
    TABLE(T_SEEN2);
    TABLE(T_SEEN3);
    TABLE(T_TODAY1);
    TABLE(T_TODAY0);
    TABLE(T_SIBLINGS);
    TABLE(T_PROVIDERS);
    TABLE(T_REGIONS);
#undef TABLE
}

/* The first pair of the next chunk after the one at ``start``: in order, or, with ``claim`` (one
 * counter shared by the calls on other threads that judge the same pairs), the next one no call has
 * claimed yet, so a call on a core that runs slower (another process on it, a cache it shares) does
 * fewer chunks instead of holding the others up (halves fixed in advance finished up to 0.1 s apart
 * at a million pairs). */
static inline Py_ssize_t next_chunk(int64_t *claim, Py_ssize_t start) {
    if (claim == NULL)
        return start + PAIR_CHUNK;
    return (Py_ssize_t)__atomic_fetch_add(claim, (int64_t)PAIR_CHUNK, __ATOMIC_RELAXED);
}

/* What judging the pairs needs (pair_features' ``judge``): the combiner's weights (per feature) and
 * intercept, the bar for named evidence; and where each pair's insight, named evidence
 * (top_contributions' codes and counts) and shown evidence go. */
enum { J_WEIGHTS, J_INSIGHT, J_UP_CODES, J_UP_COUNT, J_DOWN_CODES, J_DOWN_COUNT, J_COUNT };
/* The shown evidence (judgement.SHOWN, in its order): novelty int8 (an index into NOVELTY), the
 * counts of other identities on the address in the window and today and on its /24 in the window
 * int64, the identity's churn float64, known network today bool. */
enum { S_NOVELTY, S_OTHERS_ADDRESS_WINDOW, S_OTHERS_ADDRESS_TODAY, S_OTHERS_24_WINDOW, S_CHURN, S_KNOWN_TODAY, S_COUNT };
static const int S_SIZES[S_COUNT] = {1, 8, 8, 8, 8, 1};
typedef struct {
    const double *w;
    int named[F_COUNT], n_named; /* judged_features of w */
    double intercept, bar;
    double *insight;
    int8_t *up_codes, *down_codes;
    uint8_t *up_count, *down_count;
    int k_up, k_down;
    int8_t *novelty;
    int64_t *others[3]; /* address in the window, address today, /24 in the window */
    double *churn;
    uint8_t *known_today;
} Judge;

/* A pair's row judged: its insight (the combiner's logistic, as combiner.py's _sigmoid), its named
 * evidence and its shown evidence (``others``: the counts the row has the log1p of). */
static inline void judge_row(const Judge *j, const double *row, const int64_t *others, Py_ssize_t i) {
    double c[F_COUNT], z[4] = {0.0, 0.0, 0.0, 0.0}; /* four sums, not one chain of 43 dependent adds */
    for (int f = 0; f < F_COUNT; f++)
        c[f] = row[f] * j->w[f];
    int f = 0;
    for (; f + 4 <= F_COUNT; f += 4)
        for (int k = 0; k < 4; k++)
            z[k] += c[f + k];
    for (; f < F_COUNT; f++)
        z[0] += c[f];
    /* combiner.py's _sigmoid, 0.5 (1 + tanh(z / 2)), as 1 / (1 + exp(-z)): equal to an ulp or two
     * (closer for the smallest insights), in half libm's time */
    j->insight[i] = 1.0 / (1.0 + exp(-(j->intercept + ((z[0] + z[1]) + (z[2] + z[3])))));
    top_of_contributions(c, j->named, j->n_named, j->bar, j->up_codes + i * j->k_up, j->up_count + i, j->k_up,
                         j->down_codes + i * j->k_down, j->down_count + i, j->k_down);
    j->novelty[i] = row[F_NEW_IDENTITY] > 0    ? 5
                    : row[F_NOVEL_NETWORK] > 0 ? 4
                    : row[F_NOVEL_12] > 0      ? 3
                    : row[F_NOVEL_16] > 0      ? 2
                    : row[F_NOVEL_24] > 0      ? 1
                                               : 0;
    for (int k = 0; k < 3; k++)
        j->others[k][i] = others[k];
    j->churn[i] = row[F_CHURN_24];
    j->known_today[i] = row[F_KNOWN_NETWORK_TODAY] > 0;
}

/* judge's buffers, checked against n pairs; 0, or -1 with an exception set and nothing held. */
static int get_judge(PyObject *judge, Py_ssize_t n, Judge *j, Py_buffer *jb, Py_buffer *sb) {
    PyObject *shown_out;
    if (!PyArg_ParseTuple(judge, "y*ddw*w*w*w*w*O", &jb[J_WEIGHTS], &j->intercept, &j->bar, &jb[J_INSIGHT],
                          &jb[J_UP_CODES], &jb[J_UP_COUNT], &jb[J_DOWN_CODES], &jb[J_DOWN_COUNT], &shown_out))
        return -1;
    j->k_up = n ? (int)(jb[J_UP_CODES].len / n) : 1;
    j->k_down = n ? (int)(jb[J_DOWN_CODES].len / n) : 1;
    int ok = jb[J_WEIGHTS].len == F_COUNT * 8 && jb[J_INSIGHT].len == n * 8 && jb[J_UP_COUNT].len == n &&
             jb[J_DOWN_COUNT].len == n && jb[J_UP_CODES].len == (Py_ssize_t)j->k_up * n &&
             jb[J_DOWN_CODES].len == (Py_ssize_t)j->k_down * n && j->k_up >= 1 && j->k_up <= 16 && j->k_down >= 1 &&
             j->k_down <= 16;
    Py_ssize_t lengths[S_COUNT];
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "pair_features() got judge buffers of mismatched sizes");
    } else if (get_buffers(shown_out, "shown evidence", S_COUNT, S_SIZES, sb, lengths) == 0) {
        for (int s = 0; s < S_COUNT; s++)
            ok &= lengths[s] == n;
        if (ok) {
            j->w = jb[J_WEIGHTS].buf;
            j->n_named = judged_features(j->w, j->bar, j->named);
            j->insight = jb[J_INSIGHT].buf;
            j->up_codes = jb[J_UP_CODES].buf;
            j->up_count = jb[J_UP_COUNT].buf;
            j->down_codes = jb[J_DOWN_CODES].buf;
            j->down_count = jb[J_DOWN_COUNT].buf;
            j->novelty = sb[S_NOVELTY].buf;
            for (int k = 0; k < 3; k++)
                j->others[k] = sb[S_OTHERS_ADDRESS_WINDOW + k].buf;
            j->churn = sb[S_CHURN].buf;
            j->known_today = sb[S_KNOWN_TODAY].buf;
            return 0;
        }
        release_buffers(sb, S_COUNT);
        PyErr_SetString(PyExc_ValueError, "pair_features() got shown-evidence buffers of mismatched sizes");
    }
    release_buffers(jb, J_COUNT);
    return -1;
}

static PyObject *pair_features(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *pairs_arg, *addresses_arg, *identities_arg, *tables_arg, *out_arg, *judge_arg = Py_None,
             *claim_arg = Py_None;
    long long aws_category;
    if (!PyArg_ParseTuple(args, "OOOOLO|OO", &pairs_arg, &addresses_arg, &identities_arg, &tables_arg, &aws_category,
                          &out_arg, &judge_arg, &claim_arg))
        return NULL;
    int judging = judge_arg != Py_None;
    Py_buffer out = {0}, jb[J_COUNT], sb[S_COUNT], cb = {0};
    Judge judge = {0};
    int have_out = 0, have_judge = 0, have_claim = 0;
    PyObject *result = NULL;
    Py_buffer pb[P_COUNT], ab[A_COUNT], ib[I_COUNT], tb[2 * T_COUNT];
    Py_ssize_t pl[P_COUNT], al[A_COUNT], il[I_COUNT], tl[2 * T_COUNT];
    int t_sizes[2 * T_COUNT];
    Py_ssize_t t_buffers = 0;
    for (int t = 0; t < T_COUNT; t++) {
        t_sizes[t_buffers++] = 8;
        if (T_COUNTED[t])
            t_sizes[t_buffers++] = 8;
    }
    struct {
        PyObject *arg;
        const char *what;
        Py_ssize_t count;
        const int *sizes;
        Py_buffer *buffers;
        Py_ssize_t *lengths;
    } groups[4] = {
        {pairs_arg, "pairs", P_COUNT, P_SIZES, pb, pl},
        {addresses_arg, "addresses", A_COUNT, A_SIZES, ab, al},
        {identities_arg, "identities", I_COUNT, I_SIZES, ib, il},
        {tables_arg, "tables", t_buffers, t_sizes, tb, tl},
    };
    int got = 0; /* groups whose buffers are held */
    for (; got < 4; got++)
        if (get_buffers(groups[got].arg, groups[got].what, groups[got].count, groups[got].sizes, groups[got].buffers,
                        groups[got].lengths) < 0)
            goto release;

    Py_ssize_t n = pl[0], n_addresses = al[0], n_identities = il[0];
    int64_t *claim = NULL; /* the next chunk's first pair, shared by the calls that split the pairs */
    if (claim_arg != Py_None) {
        if (PyObject_GetBuffer(claim_arg, &cb, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
            goto release;
        have_claim = 1;
        if (cb.len != 8 || (uintptr_t)cb.buf % 8) {
            PyErr_SetString(PyExc_ValueError, "pair_features(): claim must be one aligned int64");
            goto release;
        }
        claim = cb.buf;
    }
    if (judging) {
        if (get_judge(judge_arg, n, &judge, jb, sb) < 0)
            goto release;
        have_judge = 1;
    } else {
        if (PyObject_GetBuffer(out_arg, &out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
            goto release;
        have_out = 1;
    }
    int sizes_ok = judging || out.len == (Py_ssize_t)F_COUNT * n * 8;
    for (int i = 0; i < P_COUNT; i++)
        sizes_ok &= pl[i] == n || (i == P_SEEN_24 && pl[i] == 0);
    for (int i = 0; i < A_COUNT; i++)
        sizes_ok &= al[i] == n_addresses || (i >= A_ORG0 && al[i] == 0);
    for (int i = 0; i < I_COUNT; i++)
        sizes_ok &= il[i] == n_identities;
    Table tables[T_COUNT];
    Py_ssize_t b = 0;
    for (int t = 0; t < T_COUNT; t++) {
        tables[t].keys = (const uint64_t *)tb[b].buf;
        tables[t].n = tl[b];
        tables[t].counts = NULL;
        tables[t].dir = NULL;
        tables[t].ready = 0;
        b++;
        if (T_COUNTED[t]) {
            tables[t].counts = (const int64_t *)tb[b].buf;
            sizes_ok &= tl[b] == tables[t].n;
            b++;
        }
        sizes_ok &= tables[t].n <= (Py_ssize_t)UINT32_MAX;
    }
    if (!sizes_ok) {
        PyErr_SetString(PyExc_ValueError, "pair_features() got buffers of mismatched sizes");
        goto release;
    }
    Scratch *scratch = random_access_alloc(sizeof(Scratch));
    int memory_ok = scratch != NULL;
    for (int t = 0; t < T_COUNT; t++) {
        tables[t].bits = bits_for(tables[t].n);
        tables[t].dir = random_access_alloc((((size_t)1 << tables[t].bits) + 1) * sizeof(uint32_t));
        memory_ok &= tables[t].dir != NULL;
    }
    const int64_t *entity = pb[P_ENTITY].buf, *address = pb[P_ADDRESS].buf;
    const double *ipi_in = pb[P_IPI].buf, *new_actions_in = pb[P_NEW_ACTIONS].buf, *new_agents_in = pb[P_NEW_AGENTS].buf,
                 *events_in = pb[P_EVENTS].buf;
    const uint8_t *real_in = pb[P_REAL].buf, *person_address_in = pb[P_PERSON_ADDRESS].buf,
                  *person_24_in = pb[P_PERSON_24].buf, *has_agents_in = pb[P_HAS_AGENTS].buf,
                  *seen_24 = pl[P_SEEN_24] ? pb[P_SEEN_24].buf : NULL;
    const uint64_t *level[4] = {ab[A_KEY0].buf, ab[A_KEY1].buf, ab[A_KEY2].buf, ab[A_KEY3].buf};
    const int64_t *category = ab[A_CATEGORY].buf;
    const uint64_t *region = ab[A_REGION].buf;
    const uint8_t *is6 = ab[A_IS6].buf;
    /* the counts the caller gives per address, by the table they answer for (NULL: none given) */
    const int64_t *counted[T_COUNT] = {0};
    int given[T_COUNT] = {0};
    for (int l = 0; l < 4; l++)
        counted[T_ORG0 + l] = al[A_ORG0 + l] ? ab[A_ORG0 + l].buf : NULL;
    for (int l = 0; l < 2; l++)
        counted[T_TODAY0 + l] = al[A_TODAY0 + l] ? ab[A_TODAY0 + l].buf : NULL;
    for (int t = 0; t < T_COUNT; t++)
        given[t] = counted[t] != NULL;
    const uint8_t *known_in = ib[I_KNOWN].buf, *history_agents = ib[I_HAS_AGENTS].buf;
    const double *days = ib[I_DAYS].buf, *churn_24_in = ib[I_CHURN_24].buf, *churn_16_in = ib[I_CHURN_16].buf,
                 *networks_16 = ib[I_NETWORKS_16].buf, *aws_share = ib[I_AWS_SHARE].buf,
                 *cloud_share = ib[I_CLOUD_SHARE].buf, *known_pairs = ib[I_KNOWN_PAIRS].buf;
    const int64_t *families = ib[I_FAMILIES].buf;
    double *x = out.buf, judged_row[F_COUNT];
    Py_ssize_t bad_row = -1;
    if (memory_ok) {
        Py_BEGIN_ALLOW_THREADS
        const double days_scale = log1p(14.0), nets_scale = log1p(16.0), events_scale = log(1001.0);
        for (Py_ssize_t start = next_chunk(claim, -PAIR_CHUNK); start < n && bad_row < 0;
             start = next_chunk(claim, start)) {
            Py_ssize_t count = n - start < PAIR_CHUNK ? n - start : PAIR_CHUNK;
            for (Py_ssize_t k = 0; k < count; k++) { /* the chunk's keys */
                Py_ssize_t i = start + k;
                int64_t e = entity[i], a = address[i];
                if (e < 0 || e >= n_identities || a < 0 || a >= n_addresses) {
                    bad_row = i;
                    break;
                }
                if (i + RECORD_AHEAD < n) {
                    int64_t ahead = address[i + RECORD_AHEAD];
                    if (ahead >= 0 && ahead < n_addresses) {
                        for (int l = 0; l < 4; l++)
                            __builtin_prefetch(&level[l][ahead]);
                        __builtin_prefetch(&category[ahead]);
                        __builtin_prefetch(&region[ahead]);
                        __builtin_prefetch(&is6[ahead]);
                        for (int t = T_ORG0; t <= T_TODAY1; t++)
                            if (given[t])
                                __builtin_prefetch(&counted[t][ahead]);
                    }
                }
                PairKeys *p = &scratch->keys[k];
                for (int l = 0; l < 4; l++)
                    p->level[l] = level[l][a];
                p->category = (uint64_t)category[a];
                p->region = region[a];
                p->is6 = is6[a];
                p->entity_mix = entity_mix(e);
                for (int t = T_ORG0; t <= T_TODAY1; t++)
                    if (given[t])
                        scratch->found[t][k] = counted[t][a];
            }
            if (bad_row >= 0)
                break;
            chunk_lookups(tables, scratch, count, entity + start, seen_24 != NULL ? seen_24 + start : NULL, known_in,
                          aws_share, aws_category, given);
            for (Py_ssize_t k = 0; k < count; k++) {
                Py_ssize_t i = start + k;
                int64_t e = entity[i];
                int seen[4];
                for (int l = 0; l < 4; l++)
                    seen[l] = scratch->found[T_SEEN0 + l][k] != 0;
                int known = known_in[e] != 0, real = real_in[i] != 0;
                double novel = seen[0] ? 0.0 : 1.0;
                double window[4], today[2];
                int64_t window_count[4], today_count[2];
                for (int l = 0; l < 4; l++) {
                    int64_t c = scratch->found[T_ORG0 + l][k] - seen[l];
                    window_count[l] = c > 0 ? c : 0;
                    window[l] = log1p_count(window_count[l]);
                }
                for (int l = 0; l < 2; l++) {
                    int64_t c = scratch->found[T_TODAY0 + l][k] - real;
                    today_count[l] = c > 0 ? c : 0;
                    today[l] = log1p_count(today_count[l]);
                }
                double own_known_24 = (real && seen[1]) ? 1.0 : 0.0;
                double known_today = (known_pairs[e] - own_known_24) > 0 ? 1.0 : 0.0;
                double siblings = (double)scratch->found[T_SIBLINGS][k] - own_known_24;
                int64_t cat = (int64_t)scratch->keys[k].category;
                double provider_new = known && !scratch->found[T_PROVIDERS][k] ? 1.0 : 0.0;
                double concentration = aws_share[e] > cloud_share[e] ? aws_share[e] : cloud_share[e];
                double off_provider = concentration >= 0.9 ? provider_new * concentration : 0.0;
                int aws = cat == aws_category;
                int region_new = aws && known && aws_share[e] > 0 && !scratch->found[T_REGIONS][k];
                int64_t family_bit = scratch->keys[k].is6 ? 2 : 1;
                double raw = ipi_in[i];
                int missing = !isfinite(raw);
                double clipped = missing ? 0.5 : raw;
                clipped = clipped < 1e-4 ? 1e-4 : (clipped > 1 - 1e-4 ? 1 - 1e-4 : clipped);
                double ipi = log(clipped / (1 - clipped)) / 5.0;
                double others_window = window[0] + 0.5 * window[1];
                double others_today = today[0] + 0.5 * today[1];
                double churn_24 = known ? churn_24_in[e] : 0.0, churn_16 = known ? churn_16_in[e] : 0.0;
                double new_actions = known ? new_actions_in[i] : 0.0;
                double new_agents = known && has_agents_in[i] && history_agents[e] ? new_agents_in[i] : 0.0;
                double *row = judging ? judged_row : x + i * F_COUNT;
#define SET(feature, value) row[feature] = (value)
                SET(F_NOVEL_24, !seen[0] && seen[1]);
                SET(F_NOVEL_16, !seen[1] && seen[2]);
                SET(F_NOVEL_12, !seen[2] && seen[3]);
                SET(F_NOVEL_NETWORK, known && !seen[3]);
                SET(F_NEW_IDENTITY, !known);
                SET(F_HISTORY_DAYS, log1p_value(days[e]) / days_scale);
                SET(F_CHURN_24, churn_24);
                SET(F_CHURN_16, churn_16);
                SET(F_NETWORKS_16, log1p_value(networks_16[e]) / nets_scale);
                SET(F_OTHERS_ADDRESS_WINDOW, window[0]);
                SET(F_OTHERS_24_WINDOW, window[1]);
                SET(F_OTHERS_16_WINDOW, window[2]);
                SET(F_OTHERS_12_WINDOW, window[3]);
                SET(F_OTHERS_ADDRESS_TODAY, today[0]);
                SET(F_OTHERS_24_TODAY, today[1]);
                SET(F_KNOWN_NETWORK_TODAY, known_today);
                SET(F_SIBLING_KNOWN_TODAY, !seen[1] && siblings > 0);
                SET(F_PERSON_ADDRESS, person_address_in[i] && !seen[0]);
                SET(F_PERSON_24, person_24_in[i] && !seen[1]);
                SET(F_AWS_ADDRESS, aws);
                SET(F_CLOUD_ADDRESS, cat >= 2);
                SET(F_PRIVATE_ADDRESS, cat == 0);
                SET(F_AWS_SHARE, aws_share[e]);
                SET(F_CLOUD_SHARE, cloud_share[e]);
                SET(F_PROVIDER_NEW, provider_new);
                SET(F_OFF_PROVIDER, off_provider);
                SET(F_AWS_REGION_NEW, region_new);
                SET(F_FAMILY_NEW, known && (families[e] & family_bit) == 0);
                SET(F_IP_INSIGHTS, ipi);
                SET(F_IP_INSIGHTS_MISSING, missing);
                SET(F_NEW_ACTIONS, new_actions);
                SET(F_NEW_USER_AGENT, new_agents);
                SET(F_EVENTS, log1p_value(events_in[i]) / events_scale);
                SET(F_NOVEL_X_CHURN_24, novel * churn_24);
                SET(F_NOVEL_X_CHURN_16, novel * churn_16);
                SET(F_NOVEL_X_KNOWN_TODAY, novel * known_today);
                SET(F_NOVEL_X_OTHERS_WINDOW, novel * others_window);
                SET(F_NOVEL_X_OTHERS_TODAY, novel * others_today);
                SET(F_NOVEL_X_PROVIDER_NEW, novel * provider_new);
                SET(F_NOVEL_X_IP_INSIGHTS, novel * ipi);
                SET(F_OFF_PROVIDER_X_OTHERS, off_provider * (others_window + others_today));
                SET(F_NOVEL_X_NEW_ACTIONS, novel * new_actions);
                SET(F_NOVEL_X_NEW_USER_AGENT, novel * new_agents);
#undef SET
                if (judging) {
                    const int64_t others[3] = {window_count[0], today_count[0], window_count[1]};
                    judge_row(&judge, row, others, i);
                }
            }
        }
        Py_END_ALLOW_THREADS
    }
    for (int t = 0; t < T_COUNT; t++)
        free(tables[t].dir);
    free(scratch);
    if (!memory_ok) {
        PyErr_NoMemory();
        goto release;
    }
    if (bad_row >= 0) {
        PyErr_Format(PyExc_ValueError, "pair_features(): pair %zd has an identity or address code out of range",
                     bad_row);
        goto release;
    }
    result = Py_None;
    Py_INCREF(result);
release:
    while (got > 0) {
        got--;
        release_buffers(groups[got].buffers, groups[got].count);
    }
    if (have_out)
        PyBuffer_Release(&out);
    if (have_claim)
        PyBuffer_Release(&cb);
    if (have_judge) {
        release_buffers(jb, J_COUNT);
        release_buffers(sb, S_COUNT);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"top_contributions", top_contributions, METH_VARARGS,
     "top_contributions(features, weights, bar, up_codes, up_count, down_codes, down_count): each row's strongest."},
    {"named_codes", named_codes, METH_VARARGS,
     "named_codes(codes, counts, names): (list offsets, values) of each row's named codes."},
    {"slots", slots, METH_VARARGS, "slots(sorted_keys, queries, out): searchsorted of uint64 hash keys, clipped."},
    {"pair_members", pair_members, METH_VARARGS,
     "pair_members(sorted_keys, entity, network, address, out, site=None, sites=None, per_identity=None) -> count: "
     "whether each pair's key is among sorted keys (and the members' site keys and counts per identity)."},
    {"level_keys", level_keys, METH_VARARGS, "level_keys(is6, hi, lo, bits, out): the four level keys per address."},
    {"identities_by_code", identities_by_code, METH_VARARGS,
     "identities_by_code(entity, code, identities, out): distinct identities per code, for pairs grouped by identity."},
    {"owner_fields", owner_fields, METH_VARARGS,
     "owner_fields(slot, value, ends, provider, region, service, private_networks, private_lengths, out_provider, "
     "out_region, out_service, out_private): each IPv4 address's owner and whether it is private."},
    {"sorted_counts", sorted_counts, METH_VARARGS,
     "sorted_counts(keys, counts, values, shift, out, positions=None): the count beside each value's prefix among "
     "sorted keys."},
    {"pair_features", pair_features, METH_VARARGS,
     "pair_features(pairs, addresses, identities, tables, aws_category, out, judge=None, claim=None): the evidence "
     "matrix, or each pair judged; with claim (an int64 counter at 0) calls on several threads share the chunks."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_evidence_kernels", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__evidence_kernels(void) {
    for (int i = 0; i < LOG1P_TABLE; i++)
        LOG1P[i] = log1p((double)i);
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    PyObject *names = PyTuple_New(F_COUNT);
    if (names == NULL) {
        Py_DECREF(m);
        return NULL;
    }
    for (int i = 0; i < F_COUNT; i++) {
        PyObject *name = PyUnicode_FromString(FEATURE_NAMES[i]);
        if (name == NULL) {
            Py_DECREF(names);
            Py_DECREF(m);
            return NULL;
        }
        PyTuple_SET_ITEM(names, i, name);
    }
    if (PyModule_AddObject(m, "PAIR_FEATURES", names) < 0) {
        Py_DECREF(names);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
