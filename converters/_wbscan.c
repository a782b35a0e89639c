/*
 * tbx.converters._wbscan: the C kernel of the .wandb reader's fast path.
 *
 * The loops that numpy and the json module do too slowly on a big run
 * (hundreds of thousands of records, millions of history and summary
 * items), each with a pure-Python twin (in wandb_framing.py and
 * wandb_fastpath.py) that must return identical bytes (the tests compare
 * them):
 *
 *   walk_chunks    the chunks of a range of blocks, each checked against its
 *                  CRC-32 (zlib's, of the type byte and the data);
 *   record_fields  where each Record's record_type field is, and its number;
 *   scan_items     the items (key, value_json) of History/SummaryRecords,
 *                  with every distinct key given a code in order of first
 *                  appearance (or only the last item of each key);
 *   json_numbers   value_json texts that are plain JSON numbers, as doubles,
 *                  rounded exactly as Python's float() rounds them.
 *
 * The record layout it expects is documented in wandb_fastpath.py; anything
 * else marks the record "slow" and is left to protobuf.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ arguments */

/* A C-contiguous buffer of items of one size (8: int64 columns, 1: masks and kinds). */
static int column(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, const char *name)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    if (view->itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous buffer of %zd-byte items, got item size %zd",
                     name, itemsize, view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* A bytearray of n bytes, uninitialised (pages never written are never touched). */
static PyObject *new_bytearray(Py_ssize_t n) { return PyByteArray_FromStringAndSize(NULL, n); }

static PyObject *bytes_of(const void *p, size_t count, size_t width)
{
    return PyByteArray_FromStringAndSize((const char *)p, (Py_ssize_t)(count * width));
}

/* ------------------------------------------------------------ CRC-32 (IEEE, zlib's) */

static uint32_t crc_table[8][256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
        crc_table[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define WBSCAN_CLMUL 1
#include <immintrin.h>

/*
 * CRC-32 by carry-less multiplication (PCLMULQDQ), the folding method of Intel's white paper
 * "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ Instruction" (2009), in the
 * bit-reflected domain of zlib's CRC: four 128-bit lanes are folded 64 bytes at a time, then
 * into one lane, 16 bytes at a time; the last 128 bits are reduced to 64, to 32, and by
 * Barrett reduction to the CRC. The constants are powers of x modulo the polynomial 0x104C11DB7,
 * reflected, as the paper gives them. crc is the raw register (no inversions); n is a multiple
 * of 16, at least 64.
 */
__attribute__((target("pclmul,sse4.1"))) static uint32_t crc_clmul(uint32_t crc, const uint8_t *p, size_t n)
{
    const __m128i fold4 = _mm_set_epi64x(0x1c6e41596LL, 0x154442bd4LL); /* x^(512-32), x^(512+32) */
    const __m128i fold1 = _mm_set_epi64x(0x0ccaa009eLL, 0x1751997d0LL); /* x^(128-32), x^(128+32) */
    const __m128i to32 = _mm_set_epi64x(0, 0x163cd6124LL);              /* x^64 */
    const __m128i barrett = _mm_set_epi64x(0x1f7011641LL, 0x1db710641LL); /* mu, P */
    const __m128i low32 = _mm_setr_epi32(-1, 0, -1, 0);
    __m128i a = _mm_xor_si128(_mm_loadu_si128((const __m128i *)p), _mm_cvtsi32_si128((int)crc));
    __m128i b = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i c = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i d = _mm_loadu_si128((const __m128i *)(p + 48));
    p += 64;
    n -= 64;
#define FOLD(x, k, next) \
    _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128((x), (k), 0x00), _mm_clmulepi64_si128((x), (k), 0x11)), (next))
    for (; n >= 64; p += 64, n -= 64) {
        a = FOLD(a, fold4, _mm_loadu_si128((const __m128i *)p));
        b = FOLD(b, fold4, _mm_loadu_si128((const __m128i *)(p + 16)));
        c = FOLD(c, fold4, _mm_loadu_si128((const __m128i *)(p + 32)));
        d = FOLD(d, fold4, _mm_loadu_si128((const __m128i *)(p + 48)));
    }
    a = FOLD(a, fold1, b);
    a = FOLD(a, fold1, c);
    a = FOLD(a, fold1, d);
    for (; n >= 16; p += 16, n -= 16) a = FOLD(a, fold1, _mm_loadu_si128((const __m128i *)p));
#undef FOLD
    /* 128 bits to 64: the low half times x^(128-32), added to the high half */
    a = _mm_xor_si128(_mm_srli_si128(a, 8), _mm_clmulepi64_si128(a, fold1, 0x10));
    /* 64 bits to 32 */
    a = _mm_xor_si128(_mm_srli_si128(a, 4), _mm_clmulepi64_si128(_mm_and_si128(a, low32), to32, 0x00));
    /* Barrett reduction */
    __m128i t = _mm_and_si128(_mm_clmulepi64_si128(_mm_and_si128(a, low32), barrett, 0x10), low32);
    a = _mm_xor_si128(a, _mm_clmulepi64_si128(t, barrett, 0x00));
    return (uint32_t)_mm_extract_epi32(a, 1);
}

static int have_clmul;
#endif

static uint32_t crc_table_update(uint32_t crc, const uint8_t *p, size_t n);

static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t n)
{
#ifdef WBSCAN_CLMUL
    if (have_clmul && n >= 64) {
        size_t m = n & ~(size_t)15;
        crc = crc_clmul(crc, p, m);
        p += m;
        n -= m;
    }
#endif
    return crc_table_update(crc, p, n);
}

static uint32_t crc_table_update(uint32_t crc, const uint8_t *p, size_t n)
{
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        lo = __builtin_bswap32(lo);
        hi = __builtin_bswap32(hi);
#endif
        lo ^= crc;
        crc = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^ crc_table[5][(lo >> 16) & 0xFF] ^
              crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF] ^
              crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) crc = crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
}

/* ------------------------------------------------------------ int64 columns */

/* A column of int64 results, written straight into the bytearray returned (no copy at the end). */
typedef struct {
    PyObject *ba;
    int64_t *v;
    size_t n, cap;
} column64;

static int col_open(column64 *c, size_t cap)
{
    c->ba = new_bytearray((Py_ssize_t)(cap * 8));
    if (!c->ba) return -1;
    c->v = (int64_t *)PyByteArray_AS_STRING(c->ba);
    c->n = 0;
    c->cap = cap;
    return 0;
}

/* The bytearray, cut to what was written (a new reference; the column is emptied). */
static PyObject *col_close(column64 *c)
{
    PyObject *ba = c->ba;
    c->ba = NULL;
    if (ba && PyByteArray_Resize(ba, (Py_ssize_t)(c->n * 8)) < 0) Py_CLEAR(ba);
    return ba;
}

/* Scratch arrays in C memory. */
typedef struct {
    int64_t *v;
    size_t n, cap;
} vec;

static int vec_reserve(vec *a, size_t cap)
{
    if (cap <= a->cap) return 0;
    int64_t *v = PyMem_RawRealloc(a->v, cap * sizeof(int64_t));
    if (!v) return -1;
    a->v = v;
    a->cap = cap;
    return 0;
}

static inline int vec_push(vec *a, int64_t x)
{
    if (a->n == a->cap && vec_reserve(a, a->cap ? a->cap * 2 : 64) < 0) return -1;
    a->v[a->n++] = x;
    return 0;
}

/* Equal short byte strings (keys), without a libc call per item. */
static inline int same_bytes(const uint8_t *a, const uint8_t *b, size_t n)
{
    while (n >= 8) {
        uint64_t x, y;
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if (x != y) return 0;
        a += 8;
        b += 8;
        n -= 8;
    }
    while (n--)
        if (*a++ != *b++) return 0;
    return 1;
}

/* ------------------------------------------------------------ scan_items */

/* A byte of the data; 0 outside it. */
#define AT(p) ((p) >= 0 && (p) < len ? b[(p)] : 0)

/* A one- or two-byte varint at p: its size (0: longer), value in *v. */
static inline int short_varint(const uint8_t *b, int64_t len, int64_t p, int64_t *v)
{
    int64_t b0 = AT(p);
    if (b0 < 0x80) {
        *v = b0;
        return 1;
    }
    int64_t b1 = AT(p + 1);
    *v = (b0 & 0x7F) | b1 << 7;
    return b1 < 0x80 ? 2 : 0;
}

/* The distinct keys met so far: an open-addressing table of codes, and per code its first
 * key's bounds in the data; a small direct-mapped cache in front (keys repeat, in any order). */
typedef struct {
    uint64_t hash;
    int64_t code; /* -1: empty */
} slot;

#define CACHE 256

typedef struct {
    slot *slots;
    size_t mask, used;
    vec head, end;
    int64_t cache[CACHE];
} keytab;

static inline uint64_t key_hash(const uint8_t *p, size_t n)
{
    uint64_t h = (uint64_t)n * 0x9E3779B97F4A7C15ull;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, p, n);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
    }
    return h ^ (h >> 32);
}

static int keytab_grow(keytab *t)
{
    size_t cap = t->slots ? (t->mask + 1) * 2 : 256;
    slot *s = PyMem_RawMalloc(cap * sizeof(slot));
    if (!s) return -1;
    for (size_t i = 0; i < cap; i++) s[i].code = -1;
    if (t->slots) {
        for (size_t i = 0; i <= t->mask; i++) {
            if (t->slots[i].code < 0) continue;
            size_t j = t->slots[i].hash & (cap - 1);
            while (s[j].code >= 0) j = (j + 1) & (cap - 1);
            s[j] = t->slots[i];
        }
        PyMem_RawFree(t->slots);
    } else {
        for (int i = 0; i < CACHE; i++) t->cache[i] = -1;
    }
    t->slots = s;
    t->mask = cap - 1;
    return 0;
}

static void keytab_free(keytab *t)
{
    PyMem_RawFree(t->slots);
    PyMem_RawFree(t->head.v);
    PyMem_RawFree(t->end.v);
}

/* The code of the key data[head:end] (a new one if unseen); -1 if out of memory. */
static int64_t keytab_code(keytab *t, const uint8_t *b, int64_t head, int64_t end)
{
    size_t n = (size_t)(end - head);
    uint64_t h = key_hash(b + head, n);
    int64_t *cached = &t->cache[h & (CACHE - 1)];
    int64_t c = *cached;
    if (c >= 0 && (size_t)(t->end.v[c] - t->head.v[c]) == n && same_bytes(b + t->head.v[c], b + head, n)) return c;
    size_t j = h & t->mask;
    for (;; j = (j + 1) & t->mask) {
        slot *s = &t->slots[j];
        if (s->code < 0) break;
        c = s->code;
        if (s->hash == h && (size_t)(t->end.v[c] - t->head.v[c]) == n && same_bytes(b + t->head.v[c], b + head, n)) {
            *cached = c;
            return c;
        }
    }
    c = (int64_t)t->head.n;
    if (vec_push(&t->head, head) < 0 || vec_push(&t->end, end) < 0) return -1;
    t->slots[j].hash = h;
    t->slots[j].code = c;
    *cached = c;
    if (++t->used * 2 > t->mask + 1 && keytab_grow(t) < 0) return -1;
    return c;
}

/* Parse the items of one record into code/vs/ve (emptied first). 1: the record has the
 * expected shape; 0: it is slow; -1: out of memory. */
static int record_items(const uint8_t *b, int64_t len, int64_t rstart, int64_t rend, int64_t tag_pos, int whole,
                        keytab *t, vec *code, vec *vs, vec *ve)
{
    code->n = vs->n = ve->n = 0;
    int64_t sub_len;
    int size = short_varint(b, len, tag_pos + 1, &sub_len);
    int64_t sub_start = tag_pos + 1 + size, sub_end = sub_start + sub_len;
    if (size == 0 || sub_end > rend || sub_start - rstart < 3) return 0;
    int64_t cur = sub_start;
    while (cur + 1 < sub_end && AT(cur) == 0x0A) {
        int64_t item_len, value_len;
        int s = short_varint(b, len, cur + 1, &item_len);
        if (!s) return 0;
        int64_t head = cur + 1 + s, item_end = head + item_len;
        cur = item_end;
        /* the key: one "\x0a len text" (key) or "\x12 len text" parts (nested_key), each under 128 bytes */
        int tag = AT(head), part = AT(head + 1);
        if (!((tag == 0x12 || tag == 0x0A) && head + 1 < item_end && part < 0x80)) return 0;
        int64_t key_end = head + 2 + part;
        if (tag == 0x12) {
            int parts = 1;
            while (AT(key_end) == 0x12 && key_end + 1 < item_end) {
                part = AT(key_end + 1);
                if (parts == 16 || part >= 0x80) return 0;
                key_end += 2 + part;
                parts++;
            }
        }
        /* the value: "\x82\x01 len json", ending the item */
        s = AT(key_end) == 0x82 && AT(key_end + 1) == 0x01 ? short_varint(b, len, key_end + 2, &value_len) : 0;
        int64_t value_start = key_end + 2 + s;
        if (!s || value_len <= 0 || value_start + value_len != item_end) return 0;
        /* code holds the key's bounds until the record is known to be fast */
        if (vec_push(code, head) < 0 || vec_push(code, key_end) < 0 || vec_push(vs, value_start) < 0 ||
            vec_push(ve, item_end) < 0)
            return -1;
    }
    int64_t rest = sub_end - cur;
    /* only HistoryRecord.step (field 2) may follow the items, and not if whole */
    if (whole ? rest != 0 : !(rest == 0 || (AT(cur) == 0x12 && AT(cur + 1) < 0x80 && rest == 2 + AT(cur + 1))))
        return 0;
    /* Codes only for the keys of a fast record. A key's identity is its bytes after the first
     * tag: "key" and a one-part "nested_key" are one path. */
    for (size_t i = 0; i < vs->n; i++) {
        int64_t c = keytab_code(t, b, code->v[2 * i] + 1, code->v[2 * i + 1]);
        if (c < 0) return -1;
        code->v[i] = c;
    }
    code->n = vs->n;
    return 1;
}

#undef AT

/* The last item of each code in the current segment, by code, and the codes in order of first appearance. */
typedef struct {
    vec stamp, rec, vs, ve; /* per code: segment it was last met in (+1), and its last item */
    vec order;              /* codes of the current segment, by first appearance */
    int64_t segment;
} lastitems;

static int last_flush(lastitems *l, column64 *rec, column64 *code, column64 *vs, column64 *ve)
{
    for (size_t i = 0; i < l->order.n; i++) {
        int64_t c = l->order.v[i];
        rec->v[rec->n++] = l->rec.v[c];
        code->v[code->n++] = c;
        vs->v[vs->n++] = l->vs.v[c];
        ve->v[ve->n++] = l->ve.v[c];
    }
    l->order.n = 0;
    l->segment++;
    return 0;
}

static int last_take(lastitems *l, int64_t r, const vec *code, const vec *vs, const vec *ve)
{
    for (size_t i = 0; i < code->n; i++) {
        int64_t c = code->v[i];
        while ((size_t)c >= l->stamp.n)
            if (vec_push(&l->stamp, 0) < 0 || vec_push(&l->rec, 0) < 0 || vec_push(&l->vs, 0) < 0 ||
                vec_push(&l->ve, 0) < 0)
                return -1;
        if (l->stamp.v[c] != l->segment + 1) {
            l->stamp.v[c] = l->segment + 1;
            if (vec_push(&l->order, c) < 0) return -1;
        }
        l->rec.v[c] = r;
        l->vs.v[c] = vs->v[i];
        l->ve.v[c] = ve->v[i];
    }
    return 0;
}

/* Records are read in file order but lie far apart (other records between them), too far for
 * the hardware to fetch them ahead: ask for the one PREFETCH records on, each of its cache lines. */
#define PREFETCH 4

static inline void prefetch_record(const uint8_t *b, int64_t len, int64_t start, int64_t end)
{
#if defined(__GNUC__) || defined(__clang__)
    if (end > len) end = len;
    for (int64_t p = start; p < end; p += 64) __builtin_prefetch(b + p);
    if (end > start) __builtin_prefetch(b + end - 1);
#endif
}

/* Kinds of value: parse_number gives HARD_FLOAT for a float it leaves to slow_float. */
enum { NOT_NUMBER = 0, FLOAT = 1, INTEGER = 2, HARD_FLOAT = 3 };
static int parse_number(const uint8_t *s, size_t n, double *out);
static int slow_float(const uint8_t *s, size_t n, double *out);

/*
 * scan_items(data, starts, ends, tag_pos, whole, slow, last, numbers) ->
 *     (slow, rec, code, value_start, value_end, key_head, key_end, number, kind)
 *
 * For each record r (data[starts[r]:ends[r]], its record_type tag at tag_pos[r]):
 * the items of the History/SummaryRecord there, or slow[r] = 1 when the
 * record has another shape (see wandb_fastpath.scan). slow (None or one byte
 * per record) marks records already known to be slow. Per item of the other
 * records, in record order: rec, the key's code (codes are numbered in order
 * of first appearance; "key" and a one-part "nested_key" of the same text
 * share one), the value_json's bounds; per code: the bounds of its first key
 * (the part headers included).
 *
 * With last true, only the last item of each key in each segment (the
 * records between two slow ones) is given, a segment's keys in order of
 * first appearance: what applying a summary's updates needs.
 *
 * With numbers true (and last false), each item's value_json is also read
 * as json_numbers reads it (number: float64, kind: uint8), while its bytes
 * are in the cache; otherwise those two are empty.
 */
static PyObject *py_scan_items(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "scan_items(data, starts, ends, tag_pos, whole, slow, last, numbers) takes 8 arguments");
        return NULL;
    }
    Py_buffer data = {0}, starts = {0}, ends = {0}, tags = {0}, slow_in = {0};
    int got_slow = 0, oom = 0;
    PyObject *result = NULL, *slow = NULL, *nums = NULL, *kinds = NULL;
    column64 out[4] = {{0}};
    vec code = {0}, vs = {0}, ve = {0};
    lastitems l = {{0}};
    keytab t;
    memset(&t, 0, sizeof t);
    int whole = PyObject_IsTrue(args[4]), last = PyObject_IsTrue(args[6]), numbers = PyObject_IsTrue(args[7]);
    if (whole < 0 || last < 0 || numbers < 0) return NULL;
    numbers = numbers && !last;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) return NULL;
    if (column(args[1], &starts, 8, "starts") < 0) goto fail_data;
    if (column(args[2], &ends, 8, "ends") < 0) goto fail_starts;
    if (column(args[3], &tags, 8, "tag_pos") < 0) goto fail_ends;
    if (args[5] != Py_None) {
        if (column(args[5], &slow_in, 1, "slow") < 0) goto fail_tags;
        got_slow = 1;
    }
    Py_ssize_t nrec = starts.len / 8;
    if (ends.len / 8 != nrec || tags.len / 8 != nrec || (got_slow && slow_in.len != nrec)) {
        PyErr_SetString(PyExc_ValueError, "scan_items: starts, ends, tag_pos and slow differ in length");
        goto done;
    }
    const uint8_t *b = data.buf;
    const int64_t len = data.len;
    const int64_t *rs = starts.buf, *re = ends.buf, *tp = tags.buf;
    const uint8_t *si = got_slow ? slow_in.buf : NULL;
    /* Every item takes at least 8 bytes of its record ("\x0a" len "\x0a" len key "\x82\x01" len value):
     * room for that many (pages never written are never touched). */
    size_t bound = 0;
    for (Py_ssize_t r = 0; r < nrec; r++)
        if (re[r] > tp[r]) bound += (size_t)(re[r] - tp[r]) / 8;
    slow = PyByteArray_FromStringAndSize(NULL, nrec);
    if (!slow) goto done;
    uint8_t *sl = (uint8_t *)PyByteArray_AS_STRING(slow);
    for (int i = 0; i < 4; i++)
        if (col_open(&out[i], bound) < 0) goto done;
    nums = new_bytearray(numbers ? (Py_ssize_t)bound * 8 : 0);
    kinds = new_bytearray(numbers ? (Py_ssize_t)bound : 0);
    if (!nums || !kinds) goto done;
    double *num = (double *)PyByteArray_AS_STRING(nums);
    uint8_t *kind = (uint8_t *)PyByteArray_AS_STRING(kinds);
    if (keytab_grow(&t) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS /* C memory only (PyMem_Raw*) until the loop ends */
    for (Py_ssize_t r = 0; r < nrec; r++) {
        if (r + PREFETCH < nrec) prefetch_record(b, len, rs[r + PREFETCH], re[r + PREFETCH]);
        int ok = si && si[r] ? 0 : record_items(b, len, rs[r], re[r], tp[r], whole, &t, &code, &vs, &ve);
        if (ok < 0) {
            oom = 1;
            break;
        }
        sl[r] = !ok;
        if (!ok) {
            if (last) last_flush(&l, &out[0], &out[1], &out[2], &out[3]);
            continue;
        }
        if (last) {
            if (last_take(&l, r, &code, &vs, &ve) < 0) {
                oom = 1;
                break;
            }
            continue;
        }
        for (size_t i = 0; i < code.n; i++) {
            if (numbers) {
                size_t at = out[0].n;
                kind[at] = (uint8_t)parse_number(b + vs.v[i], (size_t)(ve.v[i] - vs.v[i]), &num[at]);
            }
            out[0].v[out[0].n++] = r;
            out[1].v[out[1].n++] = code.v[i];
            out[2].v[out[2].n++] = vs.v[i];
            out[3].v[out[3].n++] = ve.v[i];
        }
    }
    Py_END_ALLOW_THREADS
    if (oom) {
        PyErr_NoMemory();
        goto done;
    }
    if (numbers)
        for (size_t i = 0; i < out[0].n; i++)
            if (kind[i] == HARD_FLOAT)
                kind[i] = (uint8_t)slow_float(b + out[2].v[i], (size_t)(out[3].v[i] - out[2].v[i]), &num[i]);
    if (last) last_flush(&l, &out[0], &out[1], &out[2], &out[3]);
    PyObject *cols[4];
    for (int i = 0; i < 4; i++) cols[i] = col_close(&out[i]);
    for (size_t i = 0; i < t.head.n; i++) t.head.v[i]--; /* back to the first tag */
    size_t items = numbers ? out[0].n : 0;
    if (cols[0] && cols[1] && cols[2] && cols[3] && PyByteArray_Resize(nums, (Py_ssize_t)items * 8) == 0 &&
        PyByteArray_Resize(kinds, (Py_ssize_t)items) == 0)
        result = Py_BuildValue("(ONNNNNNOO)", slow, cols[0], cols[1], cols[2], cols[3],
                               PyByteArray_FromStringAndSize((const char *)t.head.v, (Py_ssize_t)(t.head.n * 8)),
                               PyByteArray_FromStringAndSize((const char *)t.end.v, (Py_ssize_t)(t.end.n * 8)),
                               nums, kinds);
    else
        for (int i = 0; i < 4; i++) Py_XDECREF(cols[i]);
done:
    Py_XDECREF(slow);
    Py_XDECREF(nums);
    Py_XDECREF(kinds);
    for (int i = 0; i < 4; i++) Py_XDECREF(out[i].ba);
    PyMem_RawFree(code.v);
    PyMem_RawFree(vs.v);
    PyMem_RawFree(ve.v);
    PyMem_RawFree(l.stamp.v);
    PyMem_RawFree(l.rec.v);
    PyMem_RawFree(l.vs.v);
    PyMem_RawFree(l.ve.v);
    PyMem_RawFree(l.order.v);
    keytab_free(&t);
    if (got_slow) PyBuffer_Release(&slow_in);
fail_tags:
    PyBuffer_Release(&tags);
fail_ends:
    PyBuffer_Release(&ends);
fail_starts:
    PyBuffer_Release(&starts);
fail_data:
    PyBuffer_Release(&data);
    return result;
}

/* ------------------------------------------------------------ walk_chunks */

#define BLOCK 32768
#define CHUNK_HEADER 7
#define LOG_HEADER 7
enum { STOP_CUT = 0, STOP_ZEROED = 1, STOP_BAD_TYPE = 2, STOP_TOO_LONG = 3 };

static int all_zero(const uint8_t *p, size_t n)
{
    while (n--)
        if (*p++) return 0;
    return 1;
}

/*
 * walk_chunks(data, block_lo, block_hi) -> (off, length, kind, crc_ok, stop_off, stop_why, stop_value)
 *
 * The chunks of blocks block_lo .. block_hi-1 of a .wandb file (32 KiB blocks
 * counted from the start of the file, the first after the 7-byte header), in
 * order: file offset of the header, data length, type, and whether the
 * stored CRC-32 (of the type byte and the data) matches. A block is walked
 * until a chunk header makes no sense; each such place is a stop, with why
 * (STOP_*) and a value (the type or length at fault).
 */
static PyObject *py_walk_chunks(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "walk_chunks(data, block_lo, block_hi) takes 3 arguments");
        return NULL;
    }
    Py_buffer data = {0};
    Py_ssize_t lo = PyLong_AsSsize_t(args[1]), hi = PyLong_AsSsize_t(args[2]);
    if (PyErr_Occurred()) return NULL;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *result = NULL, *kinds = NULL, *oks = NULL;
    column64 off = {0}, length = {0};
    vec stop_off = {0}, stop_why = {0}, stop_value = {0};
    const int64_t n = data.len;
    const int64_t nblocks = (n + BLOCK - 1) / BLOCK;
    if (lo < 0) lo = 0;
    if (hi > nblocks) hi = nblocks;
    if (hi < lo) hi = lo;
    int64_t span = (hi > lo ? (hi - lo) * (int64_t)BLOCK : 0);
    size_t bound = (size_t)(span / CHUNK_HEADER) + 1;
    if (col_open(&off, bound) < 0 || col_open(&length, bound) < 0) goto done;
    kinds = new_bytearray((Py_ssize_t)bound);
    oks = new_bytearray((Py_ssize_t)bound);
    if (!kinds || !oks) goto done;
    uint8_t *kd = (uint8_t *)PyByteArray_AS_STRING(kinds), *ok = (uint8_t *)PyByteArray_AS_STRING(oks);
    const uint8_t *b = data.buf;
    int oom = 0;
    Py_BEGIN_ALLOW_THREADS
    for (int64_t blk = lo; blk < hi && !oom; blk++) {
        int64_t p = blk ? blk * (int64_t)BLOCK : LOG_HEADER;
        int64_t e = (blk + 1) * (int64_t)BLOCK < n ? (blk + 1) * (int64_t)BLOCK : n;
        for (;;) {
            int64_t room = e - p;
            int why = -1;
            int64_t value = 0;
            if (room < CHUNK_HEADER) {
                if (room > 0 && e == n) why = STOP_CUT; /* a chunk header being written */
                if (why < 0) break;                     /* block padding */
            } else {
                int64_t len = b[p + 4] | (int64_t)b[p + 5] << 8;
                int kind = b[p + 6];
                int64_t next = p + CHUNK_HEADER + len;
                int good_kind = kind >= 1 && kind <= 4;
                if (next <= e && good_kind) {
                    uint8_t k8 = (uint8_t)kind;
                    uint32_t c = ~crc_update(crc_update(0xFFFFFFFFu, &k8, 1), b + p + CHUNK_HEADER, (size_t)len);
                    uint32_t stored = b[p] | (uint32_t)b[p + 1] << 8 | (uint32_t)b[p + 2] << 16 | (uint32_t)b[p + 3] << 24;
                    off.v[off.n++] = p;
                    length.v[length.n++] = len;
                    kd[off.n - 1] = k8;
                    ok[off.n - 1] = c == stored;
                    p = next;
                    continue;
                }
                if (next > e && e == n && good_kind) {
                    why = STOP_CUT;
                } else if (kind == 0 && len == 0 && all_zero(b + p, 4)) {
                    /* zeros up to the end of the file: space the writer never filled */
                    why = e == n && all_zero(b + p, (size_t)(n - p)) ? STOP_CUT : STOP_ZEROED;
                } else if (!good_kind) {
                    why = STOP_BAD_TYPE;
                    value = kind;
                } else {
                    why = STOP_TOO_LONG;
                    value = len;
                }
            }
            if (vec_push(&stop_off, p) < 0 || vec_push(&stop_why, why) < 0 || vec_push(&stop_value, value) < 0)
                oom = 1;
            break;
        }
    }
    Py_END_ALLOW_THREADS
    if (oom) {
        PyErr_NoMemory();
        goto done;
    }
    size_t count = off.n;
    PyObject *o = col_close(&off), *l = col_close(&length);
    if (o && l && PyByteArray_Resize(kinds, (Py_ssize_t)count) == 0 && PyByteArray_Resize(oks, (Py_ssize_t)count) == 0) {
        uint8_t *why8 = PyMem_RawMalloc(stop_why.n ? stop_why.n : 1);
        if (why8) {
            for (size_t i = 0; i < stop_why.n; i++) why8[i] = (uint8_t)stop_why.v[i];
            result = Py_BuildValue("(NNOONNN)", o, l, kinds, oks, bytes_of(stop_off.v, stop_off.n, 8),
                                   bytes_of(why8, stop_why.n, 1), bytes_of(stop_value.v, stop_value.n, 8));
            o = l = NULL;
            PyMem_RawFree(why8);
        } else {
            PyErr_NoMemory();
        }
    }
    Py_XDECREF(o);
    Py_XDECREF(l);
done:
    Py_XDECREF(off.ba);
    Py_XDECREF(length.ba);
    Py_XDECREF(kinds);
    Py_XDECREF(oks);
    PyMem_RawFree(stop_off.v);
    PyMem_RawFree(stop_why.v);
    PyMem_RawFree(stop_value.v);
    PyBuffer_Release(&data);
    return result;
}

/* ------------------------------------------------------------ record_fields */

/* A varint at p (at most 10 bytes, within end): its value, or -1 with *next = end. */
static int64_t uvarint(const uint8_t *b, int64_t p, int64_t end, int64_t *next)
{
    uint64_t v = 0;
    for (int shift = 0; p < end && shift < 64; shift += 7) {
        uint8_t c = b[p++];
        v |= (uint64_t)(c & 0x7F) << shift;
        if (c < 0x80) {
            *next = p;
            return (int64_t)(v & 0x7FFFFFFFFFFFFFFFull);
        }
    }
    *next = end;
    return -1;
}

static int leading_field(int64_t f) { return f == 1 || f == 16 || f == 19 || f == 200; }

/* Where a Record's record_type field starts and its number, scanning past the leading fields. */
static void oneof_field(const uint8_t *b, int64_t p, int64_t end, int64_t *pos, int64_t *field)
{
    while (p < end) {
        int64_t q, tag = uvarint(b, p, end, &q);
        if (tag < 0) break;
        int64_t f = tag >> 3, wire = tag & 7;
        if (!leading_field(f)) {
            *pos = p;
            *field = f;
            return;
        }
        if (wire == 0) {
            uvarint(b, q, end, &p);
        } else if (wire == 2) {
            int64_t length = uvarint(b, q, end, &q);
            if (length < 0 || length > end - q) break;
            p = q + length;
        } else if (wire == 1 || wire == 5) {
            p = q + (wire == 1 ? 8 : 4);
        } else {
            break;
        }
    }
    *pos = end;
    *field = 0;
}

/* record_fields(data, starts, ends) -> (tag_pos, field): see wandb_fastpath.record_fields */
static PyObject *py_record_fields(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "record_fields(data, starts, ends) takes 3 arguments");
        return NULL;
    }
    Py_buffer data = {0}, starts = {0}, ends = {0};
    PyObject *result = NULL;
    column64 pos = {0}, field = {0};
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) return NULL;
    if (column(args[1], &starts, 8, "starts") < 0) goto fail_data;
    if (column(args[2], &ends, 8, "ends") < 0) goto fail_starts;
    Py_ssize_t n = starts.len / 8;
    const int64_t *s = starts.buf, *e = ends.buf;
    const int64_t len = data.len;
    if (ends.len / 8 != n) {
        PyErr_SetString(PyExc_ValueError, "record_fields: starts and ends differ in length");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (s[i] < 0 || e[i] < s[i] || e[i] > len) {
            PyErr_Format(PyExc_ValueError, "record_fields: record %zd [%lld, %lld) is outside the %zd-byte data",
                         i, (long long)s[i], (long long)e[i], data.len);
            goto done;
        }
    if (col_open(&pos, (size_t)n) < 0 || col_open(&field, (size_t)n) < 0) goto done;
    const uint8_t *b = data.buf;
#define BYTE(p) ((p) < len ? b[(p)] : len ? b[len - 1] : 0)
    for (Py_ssize_t i = 0; i < n; i++) {
        /* the common shape: num (a varint of at most 10 bytes), then a one-byte tag */
        int has_num = e[i] > s[i] && BYTE(s[i]) == 0x08;
        int64_t p = s[i] + has_num;
        if (has_num) {
            for (int k = 0; k < 10 && (BYTE(p) & 0x80); k++) p++;
            p++;
        }
        int tag = p < e[i] ? BYTE(p) : 0;
        if (!has_num || tag >= 0x80 || p >= e[i]) {
            oneof_field(b, s[i], e[i], &pos.v[i], &field.v[i]);
        } else {
            pos.v[i] = p;
            field.v[i] = tag >> 3;
        }
    }
#undef BYTE
    pos.n = field.n = (size_t)n;
    PyObject *p = col_close(&pos), *f = col_close(&field);
    if (p && f) result = Py_BuildValue("(NN)", p, f);
    else {
        Py_XDECREF(p);
        Py_XDECREF(f);
    }
done:
    Py_XDECREF(pos.ba);
    Py_XDECREF(field.ba);
    PyBuffer_Release(&ends);
fail_starts:
    PyBuffer_Release(&starts);
fail_data:
    PyBuffer_Release(&data);
    return result;
}

/* ------------------------------------------------------------ json_numbers */

#define MAX_EXACT_INT 9007199254740992ull /* 2**53 */

#ifdef __SIZEOF_INT128__
typedef unsigned __int128 u128;

static int bitlen128(u128 x)
{
    uint64_t hi = (uint64_t)(x >> 64), lo = (uint64_t)x;
    return hi ? 128 - __builtin_clzll(hi) : (lo ? 64 - __builtin_clzll(lo) : 0);
}

/* mant * 2**scale for 2**52 <= mant <= 2**53 (exact), built from its bits when it is a normal double. */
static inline double make_double(uint64_t mant, int scale)
{
    if (mant >> 53) {
        mant >>= 1;
        scale++;
    }
    int64_t biased = (int64_t)scale + 52 + 1023;
    if (biased < 1 || biased > 2046) return ldexp((double)mant, scale);
    uint64_t bits = (uint64_t)biased << 52 | (mant & ((1ull << 52) - 1));
    double d;
    memcpy(&d, &bits, 8);
    return d;
}

/* q * 2**scale rounded to the nearest double (ties to even), with sticky set if q
 * stands for a value a little above it; q has at least 54 bits when sticky is set. */
static double round_to_double(u128 q, int sticky, int scale)
{
    int bits = bitlen128(q);
    if (bits <= 53) return scale ? ldexp((double)(uint64_t)q, scale) : (double)(uint64_t)q;
    int shift = bits - 53;
    uint64_t mant = (uint64_t)(q >> shift);
    u128 rem = q & (((u128)1 << shift) - 1), half = (u128)1 << (shift - 1);
    if (rem > half || (rem == half && (sticky || (mant & 1)))) mant++;
    return make_double(mant, shift + scale);
}

/* Reciprocals of 10**k, k = 1..MAX_K: recip[k] = floor(2**(127 + bits(10**k)) / 10**k), a 128-bit
 * number with its top bit set, found by long division at import (10**38 < 2**127 keeps it in u128). */
#define MAX_K 38
static u128 recip[MAX_K + 1];
static int recip_bits[MAX_K + 1];

static void recip_init(void)
{
    u128 d = 1;
    for (int k = 1; k <= MAX_K; k++) {
        d *= 10;
        int L = bitlen128(d), top = 127 + L;
        u128 q = 0, rem = 0;
        for (int i = top; i >= 0; i--) {
            rem = (rem << 1) | (u128)(i == top);
            if (rem >= d) {
                rem -= d;
                if (i < 128) q |= (u128)1 << i;
            }
        }
        recip[k] = q;
        recip_bits[k] = L;
    }
}

/* w / 10**k correctly rounded, by exact division (slow: a 128-bit division). */
static double divide_exact(uint64_t w, u128 p10)
{
    int s = 128 - bitlen128((u128)w);
    u128 n = (u128)w << s;
    return round_to_double(n / p10, n % p10 != 0, -s);
}

/* w * 10**e10 correctly rounded, for 0 < w < 2**64; 0 when it cannot be done here.
 *
 * For e10 < 0 the quotient w / 10**k is w * recip[k] (a 192-bit product P)
 * scaled by a power of two; recip[k] is 10**-k rounded down, so the true
 * product lies in [P, P + 2**64). The top 53 bits of P are the double's;
 * when no value of that interval can cross the half-way point between two
 * doubles or the next double, P decides the rounding. Otherwise (about one
 * value in 2**70) the exact division does. */
static int exact_decimal(uint64_t w, int64_t e10, double *out)
{
    if (e10 >= 0) {
        if (e10 > 19) return 0;
        u128 p10 = 1;
        for (int64_t i = 0; i < e10; i++) p10 *= 10;
        *out = round_to_double((u128)w * p10, 0, 0);
        return 1;
    }
    int k = (int)-e10;
    if (k > MAX_K) return 0;
    int lz = __builtin_clzll(w);
    uint64_t wn = w << lz;
    u128 r = recip[k];
    u128 lo = (u128)wn * (uint64_t)r, hi = (u128)wn * (uint64_t)(r >> 64);
    u128 mid = (lo >> 64) + (uint64_t)hi;
    uint64_t p2 = (uint64_t)(hi >> 64) + (uint64_t)(mid >> 64), p1 = (uint64_t)mid;
    /* P = p2:p1:(low word) lies in [2**190, 2**192); the mantissa is its top 53 bits. */
    int shift = (p2 >> 63) ? 139 : 138;
    uint64_t mant = p2 >> (shift - 128);
    /* X: the bits of P between bit 64 and the mantissa; the half-way point is at X == half. */
    u128 x = ((u128)(p2 & ((1ull << (shift - 128)) - 1)) << 64) | p1;
    u128 half = (u128)1 << (shift - 65);
    int scale = shift - lz - 127 - recip_bits[k];
    if (x + 2 <= half) {
        *out = make_double(mant, scale);
    } else if (x > half && x + 2 <= 2 * half) {
        *out = make_double(mant + 1, scale);
    } else {
        u128 p10 = 1;
        for (int i = 0; i < k; i++) p10 *= 10;
        *out = divide_exact(w, p10);
    }
    return 1;
}
#else
static void recip_init(void) {}
static int exact_decimal(uint64_t w, int64_t e10, double *out) { return 0; }
#endif

/* The value of the eight ASCII digits at p, or -1 if they are not all digits (SWAR). */
static inline int64_t eight_digits(const uint8_t *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    x = __builtin_bswap64(x);
#endif
    const uint64_t high = 0xF0F0F0F0F0F0F0F0ull;
    if (((x & high) | (((x + 0x0606060606060606ull) & high) >> 4)) != 0x3333333333333333ull) return -1;
    x -= 0x3030303030303030ull;                               /* one digit per byte, the first lowest */
    x = (x * 10 + (x >> 8)) & 0x00FF00FF00FF00FFull;          /* two per 16 bits */
    x = (x * 100 + (x >> 16)) & 0x0000FFFF0000FFFFull;        /* four per 32 bits */
    return (int64_t)((x * 10000 + (x >> 32)) & 0xFFFFFFFFull); /* eight */
}

/* The JSON text s[0:n] as Python's json.loads reads it, if it is a plain number (no GIL needed). */
static int parse_number(const uint8_t *s, size_t n, double *out)
{
    *out = 0.0;
    if (n && (s[0] == 'N' || s[0] == 'I' || (s[0] == '-' && n > 1 && s[1] == 'I'))) {
        if (n == 3 && !memcmp(s, "NaN", 3)) {
            *out = Py_NAN;
            return FLOAT;
        }
        if (n == 8 && !memcmp(s, "Infinity", 8)) {
            *out = Py_HUGE_VAL;
            return FLOAT;
        }
        if (n == 9 && !memcmp(s, "-Infinity", 9)) {
            *out = -Py_HUGE_VAL;
            return FLOAT;
        }
        return NOT_NUMBER;
    }
    size_t p = 0;
    int neg = 0, is_int = 1, digits = 0, inexact = 0;
    uint64_t w = 0;
    int64_t e10 = 0;
    if (p < n && s[p] == '-') {
        neg = 1;
        p++;
    }
    if (p >= n || s[p] < '0' || s[p] > '9') return NOT_NUMBER;
    if (s[p] == '0') {
        p++;
    } else {
        for (; p < n && s[p] >= '0' && s[p] <= '9'; p++) {
            if (digits < 19) {
                w = w * 10 + (uint64_t)(s[p] - '0');
                digits++;
            } else {
                inexact = 1;
                e10++;
            }
        }
    }
    if (p < n && s[p] == '.') {
        is_int = 0;
        p++;
        size_t first = p;
        for (; p < n && s[p] >= '0' && s[p] <= '9'; p++) {
            if (w && digits <= 11 && p + 8 <= n) { /* eight digits at once */
                int64_t eight = eight_digits(s + p);
                if (eight >= 0) {
                    w = w * 100000000u + (uint64_t)eight;
                    digits += 8;
                    e10 -= 8;
                    p += 7;
                    continue;
                }
            }
            if (w == 0 && s[p] == '0') {
                e10--;
            } else if (digits < 19) {
                w = w * 10 + (uint64_t)(s[p] - '0');
                digits++;
                e10--;
            } else {
                inexact = 1;
            }
        }
        if (p == first) return NOT_NUMBER;
    }
    if (p < n && (s[p] == 'e' || s[p] == 'E')) {
        is_int = 0;
        p++;
        int eneg = 0;
        if (p < n && (s[p] == '+' || s[p] == '-')) eneg = s[p++] == '-';
        size_t first = p;
        int64_t e = 0;
        for (; p < n && s[p] >= '0' && s[p] <= '9'; p++)
            if (e < 100000) e = e * 10 + (s[p] - '0');
        if (p == first) return NOT_NUMBER;
        e10 += eneg ? -e : e;
    }
    if (p != n) return NOT_NUMBER;
    if (is_int) {
        if (inexact || w > MAX_EXACT_INT) return NOT_NUMBER; /* a Python int beyond float64 */
        *out = w ? (neg ? -(double)w : (double)w) : 0.0;
        return INTEGER;
    }
    double v;
    if (w == 0 && !inexact) {
        v = 0.0;
    } else if (inexact || !exact_decimal(w, e10, &v)) {
        return HARD_FLOAT; /* a valid JSON float, for slow_float */
    }
    *out = neg ? -v : v;
    return FLOAT;
}

/* A float parse_number left (HARD_FLOAT), by Python's own conversion; needs the GIL. */
static int slow_float(const uint8_t *s, size_t n, double *out)
{
    char small[64], *buf = n < sizeof small ? small : PyMem_Malloc(n + 1);
    *out = 0.0;
    if (!buf) {
        PyErr_Clear();
        return NOT_NUMBER; /* json.loads gets to say */
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    double v = PyOS_string_to_double(buf, NULL, NULL);
    if (buf != small) PyMem_Free(buf);
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return NOT_NUMBER;
    }
    *out = v;
    return FLOAT;
}

/* json_numbers(data, starts, ends) -> (float64 bytearray, kind bytearray): see parse_number */
static PyObject *py_json_numbers(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "json_numbers(data, starts, ends) takes 3 arguments");
        return NULL;
    }
    Py_buffer data = {0}, starts = {0}, ends = {0};
    PyObject *result = NULL, *values = NULL, *kinds = NULL;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) return NULL;
    if (column(args[1], &starts, 8, "starts") < 0) goto fail_data;
    if (column(args[2], &ends, 8, "ends") < 0) goto fail_starts;
    Py_ssize_t n = starts.len / 8;
    const int64_t *s = starts.buf, *e = ends.buf;
    if (ends.len / 8 != n) {
        PyErr_SetString(PyExc_ValueError, "json_numbers: starts and ends differ in length");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (s[i] < 0 || e[i] < s[i] || e[i] > data.len) {
            PyErr_Format(PyExc_ValueError, "json_numbers: text %zd [%lld, %lld) is outside the %zd-byte data",
                         i, (long long)s[i], (long long)e[i], data.len);
            goto done;
        }
    values = new_bytearray(n * (Py_ssize_t)sizeof(double));
    kinds = new_bytearray(n);
    if (!values || !kinds) goto done;
    double *value = (double *)PyByteArray_AS_STRING(values);
    uint8_t *kind = (uint8_t *)PyByteArray_AS_STRING(kinds);
    const uint8_t *b = data.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        kind[i] = (uint8_t)parse_number(b + s[i], (size_t)(e[i] - s[i]), &value[i]);
        if (kind[i] == HARD_FLOAT) kind[i] = (uint8_t)slow_float(b + s[i], (size_t)(e[i] - s[i]), &value[i]);
    }
    result = PyTuple_Pack(2, values, kinds);
done:
    Py_XDECREF(values);
    Py_XDECREF(kinds);
    PyBuffer_Release(&ends);
fail_starts:
    PyBuffer_Release(&starts);
fail_data:
    PyBuffer_Release(&data);
    return result;
}

/* ------------------------------------------------------------ module */

static PyMethodDef wbscan_methods[] = {
    {"walk_chunks", (PyCFunction)(void (*)(void))py_walk_chunks, METH_FASTCALL,
     "walk_chunks(data, block_lo, block_hi, /) -> (off, length, kind, crc_ok, stop_off, stop_why, stop_value)."},
    {"record_fields", (PyCFunction)(void (*)(void))py_record_fields, METH_FASTCALL,
     "record_fields(data, starts, ends, /) -> (tag_pos, field): where each Record's record_type field is."},
    {"scan_items", (PyCFunction)(void (*)(void))py_scan_items, METH_FASTCALL,
     "scan_items(data, starts, ends, tag_pos, whole, slow, last, numbers, /) -> (slow, rec, code, value_start, "
     "value_end, key_head, key_end, number, kind)."},
    {"json_numbers", (PyCFunction)(void (*)(void))py_json_numbers, METH_FASTCALL,
     "json_numbers(data, starts, ends, /) -> (float64 values, uint8 kinds: 0 other, 1 float, 2 exact int)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef wbscan_module = {
    PyModuleDef_HEAD_INIT, "tbx.converters._wbscan",
    "C kernel of the .wandb reader's fast path; tbx.converters.wandb_fastpath holds its pure-Python twin.", -1,
    wbscan_methods,
};

PyMODINIT_FUNC PyInit__wbscan(void)
{
    crc_init();
#ifdef WBSCAN_CLMUL
    __builtin_cpu_init();
    have_clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1") &&
                 !getenv("TBX_CRC_TABLE"); /* TBX_CRC_TABLE: the table path, for tests */
#endif
    recip_init();
    return PyModule_Create(&wbscan_module);
}
