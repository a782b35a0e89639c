/*
 * tbx.converters._wbscan: the C kernel of the .wandb reader's fast path.
 *
 * Three loops that numpy and the json module do too slowly on a big run
 * (millions of history and summary items), each with a pure-Python twin in
 * tbx/converters/wandb_fastpath.py that must return identical bytes (the
 * tests compare them):
 *
 *   crc32_chunks  zlib's CRC-32 of each chunk's type byte and data;
 *   scan_items    the items (key, value_json) of History/SummaryRecords,
 *                 with every distinct key given a code in order of first
 *                 appearance;
 *   json_numbers  value_json texts that are plain JSON numbers, as doubles,
 *                 rounded exactly as Python's float() rounds them.
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

static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t n)
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

/* crc32_chunks(data, starts, stops, kinds) -> bytearray of uint32: crc32(kind byte + data[start:stop]) */
static PyObject *py_crc32_chunks(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "crc32_chunks(data, starts, stops, kinds) takes 4 arguments");
        return NULL;
    }
    Py_buffer data = {0}, starts = {0}, stops = {0}, kinds = {0};
    PyObject *out = NULL;
    uint32_t *crc = NULL;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) return NULL;
    if (column(args[1], &starts, 8, "starts") < 0) goto fail_data;
    if (column(args[2], &stops, 8, "stops") < 0) goto fail_starts;
    if (column(args[3], &kinds, 1, "kinds") < 0) goto fail_stops;
    Py_ssize_t n = starts.len / 8;
    if (stops.len / 8 != n || kinds.len != n) {
        PyErr_SetString(PyExc_ValueError, "crc32_chunks: starts, stops and kinds differ in length");
        goto done;
    }
    const int64_t *s = starts.buf, *e = stops.buf;
    for (Py_ssize_t i = 0; i < n; i++)
        if (s[i] < 0 || e[i] < s[i] || e[i] > data.len) {
            PyErr_Format(PyExc_ValueError, "crc32_chunks: chunk %zd [%lld, %lld) is outside the %zd-byte data",
                         i, (long long)s[i], (long long)e[i], data.len);
            goto done;
        }
    crc = PyMem_RawMalloc((size_t)(n ? n : 1) * 4);
    if (!crc) {
        PyErr_NoMemory();
        goto done;
    }
    const uint8_t *b = data.buf, *k = kinds.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t c = crc_update(0xFFFFFFFFu, &k[i], 1);
        crc[i] = ~crc_update(c, b + s[i], (size_t)(e[i] - s[i]));
    }
    Py_END_ALLOW_THREADS
    out = bytes_of(crc, (size_t)n, 4);
done:
    PyMem_RawFree(crc);
    PyBuffer_Release(&kinds);
fail_stops:
    PyBuffer_Release(&stops);
fail_starts:
    PyBuffer_Release(&starts);
fail_data:
    PyBuffer_Release(&data);
    return out;
}

/* ------------------------------------------------------------ growable int64 arrays */

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
    if (a->n == a->cap && vec_reserve(a, a->cap ? a->cap * 2 : 1024) < 0) return -1;
    a->v[a->n++] = x;
    return 0;
}

/* Equal short byte strings (keys); avoids a libc call per item. */
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

typedef struct {
    uint64_t hash;
    int64_t code; /* -1: empty */
} slot;

typedef struct {
    slot *slots;
    size_t mask, used;
    vec head, end; /* per code: the first key's bytes data[head:end] */
} keytab;

static uint64_t key_hash(const uint8_t *p, size_t n)
{
    uint64_t h = (uint64_t)n * 0x9E3779B97F4A7C15ull;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0x100000001B3ull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, p, n);
        h = (h ^ w) * 0x100000001B3ull;
        h ^= h >> 29;
    }
    return h * 0xFF51AFD7ED558CCDull;
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
    }
    t->slots = s;
    t->mask = cap - 1;
    return 0;
}

/* The code of the key data[head:end] (a new one if unseen); -1 if out of memory. */
static int64_t keytab_code(keytab *t, const uint8_t *b, int64_t head, int64_t end)
{
    size_t n = (size_t)(end - head);
    uint64_t h = key_hash(b + head, n);
    size_t j = h & t->mask;
    for (;; j = (j + 1) & t->mask) {
        slot *s = &t->slots[j];
        if (s->code < 0) break;
        if (s->hash == h) {
            int64_t c = s->code;
            if ((size_t)(t->end.v[c] - t->head.v[c]) == n && same_bytes(b + t->head.v[c], b + head, n)) return c;
        }
    }
    int64_t c = (int64_t)t->head.n;
    if (vec_push(&t->head, head) < 0 || vec_push(&t->end, end) < 0) return -1;
    t->slots[j].hash = h;
    t->slots[j].code = c;
    if (++t->used * 2 > t->mask + 1 && keytab_grow(t) < 0) return -1;
    return c;
}

#define PREDICT 64 /* item positions whose last key is remembered */

/*
 * scan_items(data, starts, ends, tag_pos, whole, slow) ->
 *     (slow, rec, code, value_start, value_end, key_head, key_end)
 *
 * For each record r (data[starts[r]:ends[r]], its record_type tag at tag_pos[r]):
 * the items of the History/SummaryRecord there, or slow[r] = 1 when the
 * record has another shape (see wandb_fastpath.scan). slow (None or one byte
 * per record) marks records already known to be slow. Per item of the other
 * records, in record order: rec, the key's code, the value_json's bounds;
 * per code: the bounds of its first key (the part headers included).
 */
static PyObject *py_scan_items(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "scan_items(data, starts, ends, tag_pos, whole, slow) takes 6 arguments");
        return NULL;
    }
    Py_buffer data = {0}, starts = {0}, ends = {0}, tags = {0}, slow_in = {0};
    int got_slow = 0;
    PyObject *result = NULL;
    uint8_t *slow = NULL;
    vec rec = {0}, code = {0}, vstart = {0}, vend = {0};
    keytab t = {0};
    int64_t predicted[PREDICT];
    int whole = PyObject_IsTrue(args[4]);
    if (whole < 0) return NULL;
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
    slow = PyMem_RawCalloc((size_t)(nrec ? nrec : 1), 1);
    if (!slow || keytab_grow(&t) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    for (int i = 0; i < PREDICT; i++) predicted[i] = -1;
    const uint8_t *b = data.buf;
    const int64_t len = data.len;
    const int64_t *rs = starts.buf, *re = ends.buf, *tp = tags.buf;
    /* Every item takes at least 8 bytes of its record ("\x0a" len "\x0a" len key "\x82\x01" len value):
     * reserve that many once (pages never written are never touched). */
    size_t bound = 1024;
    for (Py_ssize_t r = 0; r < nrec; r++)
        if (re[r] > tp[r]) bound += (size_t)(re[r] - tp[r]) / 8;
    if (vec_reserve(&rec, bound) < 0 || vec_reserve(&code, bound) < 0 || vec_reserve(&vstart, bound) < 0 ||
        vec_reserve(&vend, bound) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    const uint8_t *si = got_slow ? slow_in.buf : NULL;
    int oom = 0;
    for (Py_ssize_t r = 0; r < nrec && !oom; r++) {
        if (si && si[r]) {
            slow[r] = 1;
            continue;
        }
        int64_t sub_len, sub_start, sub_end;
        int size = short_varint(b, len, tp[r] + 1, &sub_len);
        sub_start = tp[r] + 1 + size;
        sub_end = sub_start + sub_len;
        if (size == 0 || sub_end > re[r] || sub_start - rs[r] < 3) {
            slow[r] = 1;
            continue;
        }
        size_t first_item = rec.n;
        int ok = 1, k = 0;
        int64_t cur = sub_start;
        while (cur + 1 < sub_end && AT(cur) == 0x0A) {
            int64_t item_len, value_len;
            int s = short_varint(b, len, cur + 1, &item_len);
            if (!s) {
                ok = 0;
                break;
            }
            int64_t head = cur + 1 + s, item_end = head + item_len;
            cur = item_end;
            /* the key: one "\x0a len text" (key) or "\x12 len text" parts (nested_key), each under 128 bytes */
            int tag = AT(head), part = AT(head + 1);
            if (!((tag == 0x12 || tag == 0x0A) && head + 1 < item_end && part < 0x80)) {
                ok = 0;
                break;
            }
            int64_t key_end = head + 2 + part;
            if (tag == 0x12) {
                int parts = 1;
                while (AT(key_end) == 0x12 && key_end + 1 < item_end) {
                    part = AT(key_end + 1);
                    if (parts == 16 || part >= 0x80) {
                        ok = 0;
                        break;
                    }
                    key_end += 2 + part;
                    parts++;
                }
                if (!ok) break;
            }
            /* the value: "\x82\x01 len json", ending the item */
            s = AT(key_end) == 0x82 && AT(key_end + 1) == 0x01 ? short_varint(b, len, key_end + 2, &value_len) : 0;
            int64_t value_start = key_end + 2 + s;
            if (!s || value_len <= 0 || value_start + value_len != item_end) {
                ok = 0;
                break;
            }
            int64_t c = k < PREDICT ? predicted[k] : -1;
            if (c < 0 || t.end.v[c] - t.head.v[c] != key_end - head ||
                !same_bytes(b + t.head.v[c], b + head, (size_t)(key_end - head))) {
                c = keytab_code(&t, b, head, key_end);
                if (c < 0) {
                    oom = 1;
                    break;
                }
                if (k < PREDICT) predicted[k] = c;
            }
            if (vec_push(&rec, r) < 0 || vec_push(&code, c) < 0 || vec_push(&vstart, value_start) < 0 ||
                vec_push(&vend, item_end) < 0) {
                oom = 1;
                break;
            }
            k++;
        }
        if (oom) break;
        if (ok) {
            int64_t rest = sub_end - cur;
            if (whole)
                ok = rest == 0;
            else if (rest != 0) /* only HistoryRecord.step (field 2) may follow the items */
                ok = AT(cur) == 0x12 && AT(cur + 1) < 0x80 && rest == 2 + AT(cur + 1);
        }
        if (!ok) {
            slow[r] = 1;
            rec.n = code.n = vstart.n = vend.n = first_item;
        }
    }
    if (oom) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_BuildValue("(NNNNNNN)", bytes_of(slow, (size_t)nrec, 1), bytes_of(rec.v, rec.n, 8),
                           bytes_of(code.v, code.n, 8), bytes_of(vstart.v, vstart.n, 8), bytes_of(vend.v, vend.n, 8),
                           bytes_of(t.head.v, t.head.n, 8), bytes_of(t.end.v, t.end.n, 8));
done:
    PyMem_RawFree(slow);
    PyMem_RawFree(rec.v);
    PyMem_RawFree(code.v);
    PyMem_RawFree(vstart.v);
    PyMem_RawFree(vend.v);
    PyMem_RawFree(t.slots);
    PyMem_RawFree(t.head.v);
    PyMem_RawFree(t.end.v);
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

#undef AT

/* ------------------------------------------------------------ json_numbers */

enum { NOT_NUMBER = 0, FLOAT = 1, INTEGER = 2 };
#define MAX_EXACT_INT 9007199254740992ull /* 2**53 */

#ifdef __SIZEOF_INT128__
typedef unsigned __int128 u128;

static int bitlen128(u128 x)
{
    uint64_t hi = (uint64_t)(x >> 64), lo = (uint64_t)x;
    return hi ? 128 - __builtin_clzll(hi) : (lo ? 64 - __builtin_clzll(lo) : 0);
}

/* q * 2**scale rounded to the nearest double (ties to even), with sticky set if q
 * stands for a value a little above it; q has at least 54 bits when sticky is set. */
static double round_to_double(u128 q, int sticky, int scale)
{
    int bits = bitlen128(q);
    if (bits <= 53) return ldexp((double)(uint64_t)q, scale);
    int shift = bits - 53;
    uint64_t mant = (uint64_t)(q >> shift);
    u128 rem = q & (((u128)1 << shift) - 1), half = (u128)1 << (shift - 1);
    if (rem > half || (rem == half && (sticky || (mant & 1)))) mant++;
    return ldexp((double)mant, shift + scale);
}

/* w * 10**e10 correctly rounded, for w < 2**64, w > 0; 0 when it cannot be done here. */
static int exact_decimal(uint64_t w, int64_t e10, double *out)
{
    u128 p10 = 1;
    if (e10 >= 0) {
        if (e10 > 19) return 0;
        for (int64_t i = 0; i < e10; i++) p10 *= 10;
        *out = round_to_double((u128)w * p10, 0, 0);
        return 1;
    }
    if (e10 < -22) return 0; /* 10**22 < 2**74: the quotient below keeps at least 54 bits */
    for (int64_t i = 0; i < -e10; i++) p10 *= 10;
    int s = 128 - bitlen128((u128)w);
    u128 n = (u128)w << s;
    u128 q = n / p10;
    *out = round_to_double(q, n % p10 != 0, -s);
    return 1;
}
#else
static int exact_decimal(uint64_t w, int64_t e10, double *out) { return 0; }
#endif

/* The JSON text s[0:n] as Python's json.loads reads it, if it is a plain number. */
static int parse_number(const uint8_t *s, size_t n, double *out)
{
    *out = 0.0;
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
        char buf[64];
        if (n >= sizeof buf) return NOT_NUMBER;
        memcpy(buf, s, n);
        buf[n] = '\0';
        v = PyOS_string_to_double(buf, NULL, NULL);
        if (v == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return NOT_NUMBER;
        }
        *out = v;
        return FLOAT;
    }
    *out = neg ? -v : v;
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
    PyObject *result = NULL;
    double *value = NULL;
    uint8_t *kind = NULL;
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
    value = PyMem_RawMalloc((size_t)(n ? n : 1) * sizeof(double));
    kind = PyMem_RawMalloc((size_t)(n ? n : 1));
    if (!value || !kind) {
        PyErr_NoMemory();
        goto done;
    }
    const uint8_t *b = data.buf;
    for (Py_ssize_t i = 0; i < n; i++) kind[i] = (uint8_t)parse_number(b + s[i], (size_t)(e[i] - s[i]), &value[i]);
    result = Py_BuildValue("(NN)", bytes_of(value, (size_t)n, 8), bytes_of(kind, (size_t)n, 1));
done:
    PyMem_RawFree(value);
    PyMem_RawFree(kind);
    PyBuffer_Release(&ends);
fail_starts:
    PyBuffer_Release(&starts);
fail_data:
    PyBuffer_Release(&data);
    return result;
}

/* ------------------------------------------------------------ module */

static PyMethodDef wbscan_methods[] = {
    {"crc32_chunks", (PyCFunction)(void (*)(void))py_crc32_chunks, METH_FASTCALL,
     "crc32_chunks(data, starts, stops, kinds, /) -> bytearray: uint32 zlib.crc32 of each kind byte + chunk."},
    {"scan_items", (PyCFunction)(void (*)(void))py_scan_items, METH_FASTCALL,
     "scan_items(data, starts, ends, tag_pos, whole, slow, /) -> (slow, rec, code, value_start, value_end, "
     "key_head, key_end)."},
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
    return PyModule_Create(&wbscan_module);
}
