/*
 * tbx._native: the C kernel of tbx's record layer.
 *
 * Kept deliberately small: masked CRC32C (hardware instructions when the CPU
 * has them, chosen at import; a slicing-by-8 table otherwise), TFRecord
 * framing of one payload or many, encoding whole framed scalar Events
 * without building protobuf objects, and the reader kernels (splitting a
 * buffer into records, decoding scalar points, finding a record boundary). tbx/_pure.py is its twin and
 * must produce byte-identical results; tbx/_native.pyi documents the contract.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TBX_X86_CRC 1
#include <nmmintrin.h>
#endif
#if defined(__aarch64__) && defined(__ARM_FEATURE_CRC32)
#define TBX_ARM_CRC 1
#include <arm_acle.h>
#endif

#define CRC_POLY 0x82F63B78u
#define MASK_DELTA 0xA282EAD8u
#define GIL_RELEASE_BYTES (64 * 1024)

/* ------------------------------------------------------------------ CRC32C */

static uint32_t crc_table[8][256];
static const char *crc_path = "table";

static inline uint64_t load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline void store_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

static inline void store_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Raw register update (no pre/post inversion), table driven. */
static uint32_t crc_sw(uint32_t crc, const uint8_t *p, size_t n)
{
    while (n && ((uintptr_t)p & 7)) {
        crc = crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
        n--;
    }
    while (n >= 8) {
        uint64_t w = load_le64(p) ^ crc;
        crc = crc_table[7][w & 0xFF] ^ crc_table[6][(w >> 8) & 0xFF] ^
              crc_table[5][(w >> 16) & 0xFF] ^ crc_table[4][(w >> 24) & 0xFF] ^
              crc_table[3][(w >> 32) & 0xFF] ^ crc_table[2][(w >> 40) & 0xFF] ^
              crc_table[1][(w >> 48) & 0xFF] ^ crc_table[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) crc = crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
}

/* Multiply two polynomials modulo the CRC polynomial, reflected bit order
 * (bit 31 is the coefficient of x^0). */
static uint32_t gf2_mul(uint32_t a, uint32_t b)
{
    uint32_t product = 0;
    for (int i = 0; i < 32; i++) {
        if (a & (0x80000000u >> i)) product ^= b;
        b = (b & 1) ? (b >> 1) ^ CRC_POLY : b >> 1;
    }
    return product;
}

/* x^(8*nbytes) mod P: the operator that advances a register over nbytes zeros. */
static uint32_t zeros_operator(size_t nbytes)
{
    uint64_t e = 8 * (uint64_t)nbytes;
    uint32_t result = 0x80000000u, base = 0x40000000u; /* x^0, x^1 */
    while (e) {
        if (e & 1) result = gf2_mul(result, base);
        base = gf2_mul(base, base);
        e >>= 1;
    }
    return result;
}

#if defined(TBX_X86_CRC) || defined(TBX_ARM_CRC)
/* Three independent streams over adjacent blocks, recombined by advancing
 * each partial register over the following block(s) with a table lookup. */
#define LONG_BLOCK 8192
#define SHORT_BLOCK 256
static uint32_t long_shift[4][256], short_shift[4][256];

static void make_shift_table(uint32_t table[4][256], size_t nbytes)
{
    uint32_t op = zeros_operator(nbytes);
    for (int k = 0; k < 4; k++)
        for (uint32_t b = 0; b < 256; b++) table[k][b] = gf2_mul(b << (8 * k), op);
}

static inline uint32_t shift_crc(uint32_t table[4][256], uint32_t crc)
{
    return table[0][crc & 0xFF] ^ table[1][(crc >> 8) & 0xFF] ^
           table[2][(crc >> 16) & 0xFF] ^ table[3][crc >> 24];
}
#endif

#if defined(TBX_X86_CRC)
#define HW_TARGET __attribute__((target("sse4.2")))
#define HW_CRC64(c, p) ((uint32_t)_mm_crc32_u64((c), load_le64(p)))
#define HW_CRC8(c, b) _mm_crc32_u8((c), (b))
#elif defined(TBX_ARM_CRC)
#define HW_TARGET
#define HW_CRC64(c, p) __crc32cd((c), load_le64(p))
#define HW_CRC8(c, b) __crc32cb((c), (b))
#endif

#ifdef HW_TARGET
HW_TARGET static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t n)
{
    while (n && ((uintptr_t)p & 7)) {
        crc = HW_CRC8(crc, *p++);
        n--;
    }
    while (n >= 3 * LONG_BLOCK) {
        uint32_t c1 = 0, c2 = 0;
        const uint8_t *end = p + LONG_BLOCK;
        do {
            crc = HW_CRC64(crc, p);
            c1 = HW_CRC64(c1, p + LONG_BLOCK);
            c2 = HW_CRC64(c2, p + 2 * LONG_BLOCK);
            p += 8;
        } while (p < end);
        crc = shift_crc(long_shift, crc) ^ c1;
        crc = shift_crc(long_shift, crc) ^ c2;
        p += 2 * LONG_BLOCK;
        n -= 3 * LONG_BLOCK;
    }
    while (n >= 3 * SHORT_BLOCK) {
        uint32_t c1 = 0, c2 = 0;
        const uint8_t *end = p + SHORT_BLOCK;
        do {
            crc = HW_CRC64(crc, p);
            c1 = HW_CRC64(c1, p + SHORT_BLOCK);
            c2 = HW_CRC64(c2, p + 2 * SHORT_BLOCK);
            p += 8;
        } while (p < end);
        crc = shift_crc(short_shift, crc) ^ c1;
        crc = shift_crc(short_shift, crc) ^ c2;
        p += 2 * SHORT_BLOCK;
        n -= 3 * SHORT_BLOCK;
    }
    while (n >= 8) {
        crc = HW_CRC64(crc, p);
        p += 8;
        n -= 8;
    }
    while (n--) crc = HW_CRC8(crc, *p++);
    return crc;
}
#endif

static uint32_t (*crc_update)(uint32_t, const uint8_t *, size_t) = crc_sw;

static void crc_init(void)
{
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ CRC_POLY : c >> 1;
        crc_table[0][b] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int b = 0; b < 256; b++)
            crc_table[t][b] = (crc_table[t - 1][b] >> 8) ^ crc_table[0][crc_table[t - 1][b] & 0xFF];

    const char *force = getenv("TBX_CRC");
    if (force && strcmp(force, "table") == 0) return;
#ifdef HW_TARGET
    make_shift_table(long_shift, LONG_BLOCK);
    make_shift_table(short_shift, SHORT_BLOCK);
#if defined(TBX_X86_CRC)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) {
        crc_update = crc_hw;
        crc_path = "sse4.2";
    }
#else
    crc_update = crc_hw;
    crc_path = "armv8-crc";
#endif
#endif
}

static inline uint32_t crc32c_buf(uint32_t value, const uint8_t *p, size_t n)
{
    return ~crc_update(~value, p, n);
}

static inline uint32_t mask_crc(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + MASK_DELTA;
}

static inline uint32_t masked_crc32c_buf(const uint8_t *p, size_t n)
{
    return mask_crc(crc32c_buf(0, p, n));
}

static uint32_t crc32c_maybe_nogil(uint32_t value, const uint8_t *p, size_t n)
{
    uint32_t crc;
    if (n >= GIL_RELEASE_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        crc = crc32c_buf(value, p, n);
        Py_END_ALLOW_THREADS
    } else {
        crc = crc32c_buf(value, p, n);
    }
    return crc;
}

static PyObject *py_crc32c(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "crc32c(data, value=0): expected 1 or 2 arguments");
        return NULL;
    }
    uint32_t value = 0;
    if (nargs == 2) {
        unsigned long long v = PyLong_AsUnsignedLongLongMask(args[1]);
        if (v == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
        value = (uint32_t)v;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    uint32_t crc = crc32c_maybe_nogil(value, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(crc);
}

static PyObject *py_masked_crc32c(PyObject *self, PyObject *data)
{
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return NULL;
    uint32_t crc = mask_crc(crc32c_maybe_nogil(0, view.buf, (size_t)view.len));
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(crc);
}

/* ----------------------------------------------------------------- framing */

/* Write one framed record into out (len + 16 bytes). */
static void write_frame(uint8_t *out, const uint8_t *payload, size_t len)
{
    store_le64(out, (uint64_t)len);
    store_le32(out + 8, masked_crc32c_buf(out, 8));
    memcpy(out + 12, payload, len);
    store_le32(out + 12 + len, masked_crc32c_buf(out + 12, len));
}

static PyObject *py_frame(PyObject *self, PyObject *payload)
{
    Py_buffer view;
    if (PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, view.len + 16);
    if (out) {
        uint8_t *dst = (uint8_t *)PyBytes_AS_STRING(out);
        if (view.len >= GIL_RELEASE_BYTES) {
            Py_BEGIN_ALLOW_THREADS
            write_frame(dst, view.buf, (size_t)view.len);
            Py_END_ALLOW_THREADS
        } else {
            write_frame(dst, view.buf, (size_t)view.len);
        }
    }
    PyBuffer_Release(&view);
    return out;
}

static PyObject *py_frame_many(PyObject *self, PyObject *payloads)
{
    PyObject *seq = PySequence_Fast(payloads, "frame_many() expects a sequence of bytes-like payloads");
    if (!seq) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    Py_buffer *views = PyMem_Calloc(count ? (size_t)count : 1, sizeof(Py_buffer));
    PyObject *out = NULL;
    Py_ssize_t got = 0, total = 0;
    if (!views) {
        PyErr_NoMemory();
        goto done;
    }
    for (; got < count; got++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, got), &views[got], PyBUF_SIMPLE) < 0) goto done;
        total += views[got].len + 16;
    }
    out = PyBytes_FromStringAndSize(NULL, total);
    if (out) {
        uint8_t *dst = (uint8_t *)PyBytes_AS_STRING(out);
        for (Py_ssize_t i = 0; i < count; i++) {
            write_frame(dst, views[i].buf, (size_t)views[i].len);
            dst += views[i].len + 16;
        }
    }
done:
    for (Py_ssize_t i = 0; i < got; i++) PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    Py_DECREF(seq);
    return out;
}

/* ------------------------------------------------------ scalar event encoder */

static inline size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static inline uint8_t *put_float(uint8_t *p, float f)
{
    uint32_t bits;
    memcpy(&bits, &f, 4);
    store_le32(p, bits);
    return p + 4;
}

/* The parts of a scalar point that vary: the Event's size depends on them. */
typedef struct {
    const char *tag;
    size_t tag_len;
    int has_md;
    const uint8_t *md; /* serialized SummaryMetadata */
    size_t md_len;
    int legacy;
} scalar_form;

/* Size of the framed Event of one point. */
static size_t scalar_record_size(const scalar_form *f, int with_md, long long step, uint64_t wall_bits,
                                 size_t *value_len, size_t *summary_len)
{
    size_t v = 0;
    if (f->tag_len) v += 1 + varint_size((uint64_t)f->tag_len) + f->tag_len;
    v += f->legacy ? 5 : 12;
    if (with_md) v += 1 + varint_size((uint64_t)f->md_len) + f->md_len;
    size_t s = 1 + varint_size(v) + v;
    *value_len = v;
    *summary_len = s;
    return 16 + (wall_bits ? 9 : 0) + (step ? 1 + varint_size((uint64_t)step) : 0) + 1 + varint_size(s) + s;
}

/* Write one framed Event{wall_time, step, summary{value{tag, simple_value | tensor, metadata}}} at rec;
 * returns its size. */
static size_t put_scalar(uint8_t *rec, const scalar_form *f, int with_md, double value, long long step,
                         double wall_time)
{
    uint64_t wall_bits;
    memcpy(&wall_bits, &wall_time, 8);
    size_t value_len, summary_len;
    size_t size = scalar_record_size(f, with_md, step, wall_bits, &value_len, &summary_len);
    uint8_t *p = rec + 12;
    if (wall_bits) {
        *p++ = 0x09;
        store_le64(p, wall_bits);
        p += 8;
    }
    if (step) {
        *p++ = 0x10;
        p = put_varint(p, (uint64_t)step);
    }
    *p++ = 0x2a;
    p = put_varint(p, summary_len);
    *p++ = 0x0a;
    p = put_varint(p, value_len);
    if (f->tag_len) {
        *p++ = 0x0a;
        p = put_varint(p, (uint64_t)f->tag_len);
        memcpy(p, f->tag, f->tag_len);
        p += f->tag_len;
    }
    if (f->legacy) {
        *p++ = 0x15;
        p = put_float(p, (float)value);
    } else {
        static const uint8_t tensor_head[] = {0x42, 0x0a, 0x08, 0x01, 0x12, 0x00, 0x2a, 0x04};
        memcpy(p, tensor_head, sizeof tensor_head);
        p = put_float(p + sizeof tensor_head, (float)value);
    }
    if (with_md) {
        *p++ = 0x4a;
        p = put_varint(p, (uint64_t)f->md_len);
        memcpy(p, f->md, f->md_len);
        p += f->md_len;
    }
    store_le64(rec, (uint64_t)(size - 16));
    store_le32(rec + 8, masked_crc32c_buf(rec, 8));
    store_le32(p, masked_crc32c_buf(rec + 12, size - 16));
    return size;
}

/* The tag, metadata and legacy arguments of both encoders; md is released by the caller when held. */
static int scalar_form_args(PyObject *tag, PyObject *metadata, PyObject *legacy, scalar_form *f, Py_buffer *md)
{
    if (!PyUnicode_Check(tag)) {
        PyErr_Format(PyExc_TypeError, "tag must be str, got %.100s", Py_TYPE(tag)->tp_name);
        return -1;
    }
    Py_ssize_t tag_len;
    f->tag = PyUnicode_AsUTF8AndSize(tag, &tag_len);
    if (!f->tag) return -1;
    f->tag_len = (size_t)tag_len;
    f->legacy = PyObject_IsTrue(legacy);
    if (f->legacy < 0) return -1;
    f->has_md = metadata != Py_None;
    f->md = NULL;
    f->md_len = 0;
    if (f->has_md) {
        if (PyObject_GetBuffer(metadata, md, PyBUF_SIMPLE) < 0) {
            f->has_md = 0;
            return -1;
        }
        f->md = md->buf;
        f->md_len = (size_t)md->len;
    }
    return 0;
}

/* encode_scalar(tag, value, step, wall_time, metadata, legacy) -> framed Event */
static PyObject *py_encode_scalar(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "encode_scalar(tag, value, step, wall_time, metadata, legacy) takes 6 arguments");
        return NULL;
    }
    if (!PyUnicode_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "tag must be str, got %.100s", Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    if (PyUnicode_Check(args[1]) || PyBytes_Check(args[1]) || PyByteArray_Check(args[1])) {
        PyErr_Format(PyExc_TypeError, "value must be a real number, got %.100s", Py_TYPE(args[1])->tp_name);
        return NULL;
    }
    double value = PyFloat_AsDouble(args[1]);
    if (value == -1.0 && PyErr_Occurred()) return NULL;
    long long step = PyLong_AsLongLong(args[2]);
    if (step == -1 && PyErr_Occurred()) return NULL;
    double wall_time = PyFloat_AsDouble(args[3]);
    if (wall_time == -1.0 && PyErr_Occurred()) return NULL;
    scalar_form f;
    Py_buffer md = {0};
    if (scalar_form_args(args[0], args[4], args[5], &f, &md) < 0) return NULL;
    uint64_t wall_bits;
    memcpy(&wall_bits, &wall_time, 8);
    size_t value_len, summary_len;
    size_t size = scalar_record_size(&f, f.has_md, step, wall_bits, &value_len, &summary_len);
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (out) put_scalar((uint8_t *)PyBytes_AS_STRING(out), &f, f.has_md, value, step, wall_time);
    if (f.has_md) PyBuffer_Release(&md);
    return out;
}

/* A column argument of encode_scalars: a C-contiguous buffer of 8-byte items of the given kind
 * ('d': float64, 'q': int64), native byte order. */
static int column_arg(PyObject *obj, Py_buffer *view, char kind, const char *name)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_FORMAT | PyBUF_STRIDES) < 0) return -1;
    const char *fmt = view->format ? view->format : "B";
    int little = 1;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    little = 0;
#endif
    if (*fmt == '@' || *fmt == '=' || (*fmt == '<' && little)) fmt++;
    int ok = PyBuffer_IsContiguous(view, 'C') && view->itemsize == 8 && fmt[1] == '\0' &&
             (kind == 'd' ? fmt[0] == 'd' : (fmt[0] == 'q' || (fmt[0] == 'l' && sizeof(long) == 8)));
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous buffer of %s, got format '%s' (item size %zd)",
                     name, kind == 'd' ? "float64" : "int64", view->format ? view->format : "B",
                     view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* encode_scalars(tag, values, steps, wall_times, metadata, legacy) -> framed Events of every point */
static PyObject *py_encode_scalars(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "encode_scalars(tag, values, steps, wall_times, metadata, legacy) takes 6 arguments");
        return NULL;
    }
    Py_buffer cols[3] = {{0}};
    Py_buffer md = {0};
    scalar_form f = {0};
    int got = 0;
    PyObject *out = NULL;
    static const char kinds[3] = {'d', 'q', 'd'};
    static const char *names[3] = {"values", "steps", "wall_times"};
    for (; got < 3; got++)
        if (column_arg(args[1 + got], &cols[got], kinds[got], names[got]) < 0) goto done;
    Py_ssize_t n = cols[0].len / 8;
    if (cols[1].len / 8 != n || cols[2].len / 8 != n) {
        PyErr_Format(PyExc_ValueError, "encode_scalars: values, steps and wall_times differ in length (%zd, %zd, %zd)",
                     n, cols[1].len / 8, cols[2].len / 8);
        goto done;
    }
    if (scalar_form_args(args[0], args[4], args[5], &f, &md) < 0) goto done;
    const double *values = cols[0].buf, *walls = cols[2].buf;
    const long long *steps = cols[1].buf;
    size_t total = 0, value_len, summary_len;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t wall_bits;
        memcpy(&wall_bits, &walls[i], 8);
        total += scalar_record_size(&f, i == 0 && f.has_md, steps[i], wall_bits, &value_len, &summary_len);
    }
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (out) {
        uint8_t *p = (uint8_t *)PyBytes_AS_STRING(out);
        if (total >= GIL_RELEASE_BYTES) {
            Py_BEGIN_ALLOW_THREADS  /* only C data from here on */
            for (Py_ssize_t i = 0; i < n; i++) p += put_scalar(p, &f, i == 0 && f.has_md, values[i], steps[i], walls[i]);
            Py_END_ALLOW_THREADS
        } else {
            for (Py_ssize_t i = 0; i < n; i++) p += put_scalar(p, &f, i == 0 && f.has_md, values[i], steps[i], walls[i]);
        }
    }
done:
    if (f.has_md) PyBuffer_Release(&md);
    for (int i = 0; i < got; i++) PyBuffer_Release(&cols[i]);
    return out;
}

/* ------------------------------------------------------------------ reading */

enum { REC_NONE = 0, REC_OK = 1 };

/* Locate the record at pos. Returns REC_OK with payload, len and next set, or
 * REC_NONE with *status 0 (incomplete or empty), 1 (bad length crc) or 2
 * (bad payload crc). */
static int next_record(const uint8_t *buf, size_t n, size_t pos, int verify,
                       const uint8_t **payload, size_t *len, size_t *next, int *status)
{
    *status = 0;
    if (n - pos < 12) return REC_NONE;
    uint64_t length = load_le64(buf + pos);
    uint32_t stored;
    if (verify) {
        stored = (uint32_t)buf[pos + 8] | (uint32_t)buf[pos + 9] << 8 |
                 (uint32_t)buf[pos + 10] << 16 | (uint32_t)buf[pos + 11] << 24;
        if (masked_crc32c_buf(buf + pos, 8) != stored) {
            *status = 1;
            return REC_NONE;
        }
    }
    if (length > (uint64_t)(n - pos - 16) || n - pos < 16) return REC_NONE;
    const uint8_t *start = buf + pos + 12;
    if (verify) {
        const uint8_t *c = start + length;
        stored = (uint32_t)c[0] | (uint32_t)c[1] << 8 | (uint32_t)c[2] << 16 | (uint32_t)c[3] << 24;
        if (masked_crc32c_buf(start, (size_t)length) != stored) {
            *status = 2;
            return REC_NONE;
        }
    }
    *payload = start;
    *len = (size_t)length;
    *next = pos + 12 + (size_t)length + 4;
    return REC_OK;
}

static int parse_offset(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t len,
                        Py_ssize_t *offset, int *verify)
{
    *offset = 0;
    *verify = 1;
    if (nargs >= 2) {
        *offset = PyLong_AsSsize_t(args[1]);
        if (*offset == -1 && PyErr_Occurred()) return -1;
        if (*offset < 0 || *offset > len) {
            PyErr_Format(PyExc_ValueError, "offset %zd is outside the buffer (0..%zd)", *offset, len);
            return -1;
        }
    }
    if (nargs >= 3) {
        *verify = PyObject_IsTrue(args[2]);
        if (*verify < 0) return -1;
    }
    return 0;
}

static PyObject *py_split_records(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "split_records(buf, offset=0, verify=True)");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    Py_ssize_t offset;
    int verify, status = 0;
    PyObject *list = NULL, *result = NULL;
    if (parse_offset(args, nargs, view.len, &offset, &verify) < 0) goto done;
    list = PyList_New(0);
    if (!list) goto done;
    size_t pos = (size_t)offset, next, len;
    const uint8_t *payload;
    while (next_record(view.buf, (size_t)view.len, pos, verify, &payload, &len, &next, &status) == REC_OK) {
        PyObject *item = PyBytes_FromStringAndSize((const char *)payload, (Py_ssize_t)len);
        if (!item || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            goto done;
        }
        Py_DECREF(item);
        pos = next;
    }
    result = Py_BuildValue("(Oni)", list, (Py_ssize_t)pos, status);
done:
    Py_XDECREF(list);
    PyBuffer_Release(&view);
    return result;
}

/* seek_record(buf, offset, target) -> the offset of the first record at or after target, walking
 * record lengths from offset (each length's checksum checked, payloads not); -1 if a length
 * checksum fails or the records run past the end of buf first. */
static PyObject *py_seek_record(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "seek_record(buf, offset, target) takes 3 arguments");
        return NULL;
    }
    Py_buffer view;
    Py_ssize_t target = PyLong_AsSsize_t(args[2]);
    if (target == -1 && PyErr_Occurred()) return NULL;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    Py_ssize_t offset;
    int verify;
    if (parse_offset(args, 2, view.len, &offset, &verify) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const uint8_t *buf = view.buf;
    size_t n = (size_t)view.len, pos = (size_t)offset;
    Py_ssize_t found = -1;
    Py_BEGIN_ALLOW_THREADS
    while (1) {
        if ((Py_ssize_t)pos >= target) {
            found = (Py_ssize_t)pos;
            break;
        }
        if (n - pos < 16) break;
        uint64_t length = load_le64(buf + pos);
        uint32_t stored = (uint32_t)buf[pos + 8] | (uint32_t)buf[pos + 9] << 8 | (uint32_t)buf[pos + 10] << 16 |
                          (uint32_t)buf[pos + 11] << 24;
        if (masked_crc32c_buf(buf + pos, 8) != stored || length > (uint64_t)(n - pos - 16)) break;
        pos += 16 + (size_t)length;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(found);
}

/* Minimal protobuf wire reader. Every function returns -1 on malformed input. */
typedef struct {
    uint32_t field;
    int wire;
    uint64_t value;          /* varint value */
    const uint8_t *start;    /* fixed/LEN payload */
    const uint8_t *stop;
} pb_field;

static int read_varint(const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
    const uint8_t *p = *pp;
    uint64_t result = 0;
    for (int shift = 0; shift <= 63; shift += 7) {
        if (p >= end) return -1;
        uint8_t b = *p++;
        result |= (uint64_t)(b & 0x7F) << shift;
        if (b < 0x80) {
            *out = result;
            *pp = p;
            return 0;
        }
    }
    return -1;
}

/* 1 = field read, 0 = end of message, -1 = malformed */
static int next_field(const uint8_t **pp, const uint8_t *end, pb_field *f)
{
    if (*pp >= end) return 0;
    uint64_t key, len;
    if (read_varint(pp, end, &key) < 0) return -1;
    if ((key >> 3) == 0) return -1;
    f->field = (key >> 3) > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)(key >> 3);
    f->wire = (int)(key & 7);
    switch (f->wire) {
    case 0:
        if (read_varint(pp, end, &f->value) < 0) return -1;
        f->start = f->stop = *pp;
        return 1;
    case 1:
        if (end - *pp < 8) return -1;
        f->start = *pp;
        f->stop = *pp += 8;
        return 1;
    case 5:
        if (end - *pp < 4) return -1;
        f->start = *pp;
        f->stop = *pp += 4;
        return 1;
    case 2:
        if (read_varint(pp, end, &len) < 0) return -1;
        if (len > (uint64_t)(end - *pp)) return -1;
        f->start = *pp;
        f->stop = *pp += len;
        return 1;
    default:
        return -1;
    }
}

static inline float load_f32(const uint8_t *p)
{
    uint32_t bits = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline double load_f64(const uint8_t *p)
{
    uint64_t bits = load_le64(p);
    double d;
    memcpy(&d, &bits, 8);
    return d;
}

/* plugin_name of a SummaryMetadata ("" when absent). */
static int metadata_plugin(const uint8_t *p, const uint8_t *end, const uint8_t **name, size_t *name_len)
{
    pb_field f, g;
    int r;
    *name = NULL;
    *name_len = 0;
    while ((r = next_field(&p, end, &f)) == 1) {
        if (f.field != 1 || f.wire != 2) continue;
        const uint8_t *q = f.start;
        while ((r = next_field(&q, f.stop, &g)) == 1)
            if (g.field == 1 && g.wire == 2) {
                *name = g.start;
                *name_len = (size_t)(g.stop - g.start);
            }
        if (r < 0) return -1;
    }
    return r;
}

/* Rank-0 DT_FLOAT/DT_DOUBLE tensor value. Returns 1 with *out, 0 if not a
 * scalar tensor, -1 if malformed. */
static int tensor_scalar(const uint8_t *p, const uint8_t *end, double *out)
{
    pb_field f, g;
    int r;
    uint64_t dtype = 0;
    size_t rank = 0, n_float = 0, n_double = 0;
    const uint8_t *content = NULL, *first_float = NULL, *first_double = NULL;
    size_t content_len = 0;
    while ((r = next_field(&p, end, &f)) == 1) {
        if (f.field == 1 && f.wire == 0) {
            dtype = f.value;
        } else if (f.field == 2 && f.wire == 2) {
            const uint8_t *q = f.start;
            rank = 0;
            while ((r = next_field(&q, f.stop, &g)) == 1)
                if (g.field == 2) rank++;
            if (r < 0) return -1;
        } else if (f.field == 4 && f.wire == 2) {
            content = f.start;
            content_len = (size_t)(f.stop - f.start);
        } else if (f.field == 5 && (f.wire == 2 || f.wire == 5)) {
            size_t len = (size_t)(f.stop - f.start);
            if (f.wire == 2 && len % 4) return -1;
            if (!n_float && len) first_float = f.start;
            n_float += len / 4;
        } else if (f.field == 6 && (f.wire == 2 || f.wire == 1)) {
            size_t len = (size_t)(f.stop - f.start);
            if (f.wire == 2 && len % 8) return -1;
            if (!n_double && len) first_double = f.start;
            n_double += len / 8;
        }
    }
    if (r < 0) return -1;
    if (rank) return 0;
    if (dtype == 1) {
        if (content && content_len == 4) { *out = (double)load_f32(content); return 1; }
        if (!content && n_float == 1) { *out = (double)load_f32(first_float); return 1; }
    } else if (dtype == 2) {
        if (content && content_len == 8) { *out = load_f64(content); return 1; }
        if (!content && n_double == 1) { *out = load_f64(first_double); return 1; }
    }
    return 0;
}

typedef struct {
    const uint8_t *tag;
    size_t tag_len;
    const uint8_t *plugin; /* valid when has_plugin */
    size_t plugin_len;
    int has_plugin;
    int has_point;
    int simple;
    double value;
} pending_point;

typedef struct {
    const uint8_t *tag;
    size_t len;
    int32_t index;
} tag_slot;

typedef struct {
    /* tags, in order of first appearance */
    const uint8_t **tag_ptr;
    size_t *tag_len;
    const uint8_t **plugin_ptr;
    size_t *plugin_len;
    int *plugin_state; /* 0 none, 1 explicit, 2 "scalars" (legacy simple_value) */
    size_t n_tags, cap_tags;
    tag_slot *slots;
    size_t n_slots;
    /* points */
    int32_t *idx;
    int64_t *step;
    double *wall;
    double *value;
    size_t n_points, cap_points;
    /* per-event scratch */
    pending_point *pending;
    size_t n_pending, cap_pending;
    /* the tag of the last point */
    const uint8_t *last_tag;
    size_t last_len;
    int32_t last_index;
} scalar_sink;

static void sink_free(scalar_sink *s)
{
    free(s->tag_ptr); free(s->tag_len); free(s->plugin_ptr); free(s->plugin_len);
    free(s->plugin_state); free(s->slots); free(s->idx); free(s->step);
    free(s->wall); free(s->value); free(s->pending);
}

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static int grow(void **ptr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t cap2 = *cap ? *cap : 64;
    while (cap2 < need) cap2 *= 2;
    void *p = realloc(*ptr, cap2 * elem);
    if (!p) return -1;
    *ptr = p;
    *cap = cap2;
    return 0;
}

static int sink_rehash(scalar_sink *s)
{
    size_t n_slots = s->n_slots ? s->n_slots * 2 : 64;
    tag_slot *slots = calloc(n_slots, sizeof(tag_slot));
    if (!slots) return -1;
    for (size_t i = 0; i < s->n_tags; i++) {
        size_t h = (size_t)hash_bytes(s->tag_ptr[i], s->tag_len[i]) & (n_slots - 1);
        while (slots[h].tag) h = (h + 1) & (n_slots - 1);
        slots[h].tag = s->tag_ptr[i];
        slots[h].len = s->tag_len[i];
        slots[h].index = (int32_t)i;
    }
    free(s->slots);
    s->slots = slots;
    s->n_slots = n_slots;
    return 0;
}

static int32_t sink_tag_lookup(scalar_sink *s, const uint8_t *tag, size_t len);

/* Index of tag, adding it if new; -1 on allocation failure. */
static int32_t sink_tag(scalar_sink *s, const uint8_t *tag, size_t len)
{
    /* points come in runs of one tag: try the last tag first */
    if (s->n_tags && s->last_len == len && !memcmp(s->last_tag, tag, len)) return s->last_index;
    int32_t i = sink_tag_lookup(s, tag, len);
    if (i >= 0) {
        s->last_tag = tag;
        s->last_len = len;
        s->last_index = i;
    }
    return i;
}

static int32_t sink_tag_lookup(scalar_sink *s, const uint8_t *tag, size_t len)
{
    if ((s->n_tags + 1) * 2 > s->n_slots && sink_rehash(s) < 0) return -1;
    size_t h = (size_t)hash_bytes(tag, len) & (s->n_slots - 1);
    while (s->slots[h].tag) {
        if (s->slots[h].len == len && memcmp(s->slots[h].tag, tag, len) == 0) return s->slots[h].index;
        h = (h + 1) & (s->n_slots - 1);
    }
    size_t cap = s->cap_tags;
    if (grow((void **)&s->tag_ptr, &cap, s->n_tags + 1, sizeof(void *)) < 0) return -1;
    cap = s->cap_tags;
    if (grow((void **)&s->tag_len, &cap, s->n_tags + 1, sizeof(size_t)) < 0) return -1;
    cap = s->cap_tags;
    if (grow((void **)&s->plugin_ptr, &cap, s->n_tags + 1, sizeof(void *)) < 0) return -1;
    cap = s->cap_tags;
    if (grow((void **)&s->plugin_len, &cap, s->n_tags + 1, sizeof(size_t)) < 0) return -1;
    cap = s->cap_tags;
    if (grow((void **)&s->plugin_state, &cap, s->n_tags + 1, sizeof(int)) < 0) return -1;
    s->cap_tags = cap;
    size_t i = s->n_tags++;
    s->tag_ptr[i] = tag;
    s->tag_len[i] = len;
    s->plugin_ptr[i] = NULL;
    s->plugin_len[i] = 0;
    s->plugin_state[i] = 0;
    s->slots[h].tag = tag;
    s->slots[h].len = len;
    s->slots[h].index = (int32_t)i;
    return (int32_t)i;
}

/* Parse one Summary.Value into *pt. */
static int parse_value(const uint8_t *p, const uint8_t *end, pending_point *pt)
{
    pb_field f;
    int r;
    memset(pt, 0, sizeof *pt);
    pt->tag = p; /* empty tag unless field 1 is present */
    while ((r = next_field(&p, end, &f)) == 1) {
        if (f.field == 1 && f.wire == 2) {
            pt->tag = f.start;
            pt->tag_len = (size_t)(f.stop - f.start);
        } else if (f.field == 2 && f.wire == 5) {
            pt->value = (double)load_f32(f.start);
            pt->has_point = 1;
            pt->simple = 1;
        } else if (f.field == 8 && f.wire == 2) {
            int t = tensor_scalar(f.start, f.stop, &pt->value);
            if (t < 0) return -1;
            pt->has_point = t;
            pt->simple = 0;
        } else if (f.field >= 3 && f.field <= 6) {
            pt->has_point = 0;
            pt->simple = 0;
        } else if (f.field == 9 && f.wire == 2) {
            if (metadata_plugin(f.start, f.stop, &pt->plugin, &pt->plugin_len) < 0) return -1;
            pt->has_plugin = 1;
        }
    }
    return r;
}

/* Parse an Event; on success append its points to the sink. 0 ok/skipped, -1 no memory. */
/* The Event of one scalar point exactly as the encoders above lay it out (wall_time, step, a
 * Summary of one Value: tag, then simple_value or the rank-0 DT_FLOAT tensor, no metadata),
 * read at fixed places; 0 for any other layout, which the general parser then reads (to the
 * same result where both apply). */
static int encoded_scalar(const uint8_t *p, const uint8_t *end, double *wall, int64_t *step, pending_point *pt)
{
    static const uint8_t tensor_head[] = {0x42, 0x0a, 0x08, 0x01, 0x12, 0x00, 0x2a, 0x04};
    if (p < end && *p == 0x09) {
        if (end - p < 9) return 0;
        *wall = load_f64(p + 1);
        p += 9;
    }
    if (p < end && *p == 0x10) {
        uint64_t v;
        p++;
        if (read_varint(&p, end, &v) < 0) return 0;
        *step = (int64_t)v;
    }
    /* Summary (field 5) holding one Value (field 1), both to the end of the event */
    if (end - p < 4 || p[0] != 0x2a || p[1] >= 0x80 || p + 2 + p[1] != end || p[2] != 0x0a || p[3] >= 0x80 ||
        p + 4 + p[3] != end)
        return 0;
    p += 4;
    memset(pt, 0, sizeof *pt);
    pt->tag = p;
    if (end - p >= 2 && p[0] == 0x0a) {
        if (p[1] >= 0x80 || end - p < 2 + p[1]) return 0;
        pt->tag = p + 2;
        pt->tag_len = p[1];
        p += 2 + p[1];
    }
    if (end - p == 5 && p[0] == 0x15) {
        pt->value = (double)load_f32(p + 1);
        pt->simple = 1;
    } else if (end - p == 12 && !memcmp(p, tensor_head, sizeof tensor_head)) {
        pt->value = (double)load_f32(p + 8);
    } else {
        return 0;
    }
    pt->has_point = 1;
    return 1;
}

static int decode_event(scalar_sink *s, const uint8_t *p, size_t len)
{
    const uint8_t *end = p + len;
    pb_field f, g;
    int r = 0;
    double wall = 0.0;
    int64_t step = 0;
    s->n_pending = 0;
    if (grow((void **)&s->pending, &s->cap_pending, 1, sizeof(pending_point)) < 0) return -1;
    if (encoded_scalar(p, end, &wall, &step, &s->pending[0])) {
        s->n_pending = 1;
        p = end;
    } else {
        wall = 0.0;
        step = 0;
    }
    while (p < end && (r = next_field(&p, end, &f)) == 1) {
        if (f.field == 1 && f.wire == 1) {
            wall = load_f64(f.start);
        } else if (f.field == 2 && f.wire == 0) {
            step = (int64_t)f.value;
        } else if (f.field == 5 && f.wire == 2) {
            const uint8_t *q = f.start;
            while ((r = next_field(&q, f.stop, &g)) == 1) {
                if (g.field != 1 || g.wire != 2) continue;
                if (grow((void **)&s->pending, &s->cap_pending, s->n_pending + 1, sizeof(pending_point)) < 0)
                    return -1;
                if (parse_value(g.start, g.stop, &s->pending[s->n_pending]) < 0) return 0;
                s->n_pending++;
            }
            if (r < 0) return 0;
        }
    }
    if (r < 0) return 0;
    for (size_t k = 0; k < s->n_pending; k++) {
        pending_point *pt = &s->pending[k];
        if (!pt->tag_len) continue;
        int32_t i = sink_tag(s, pt->tag, pt->tag_len);
        if (i < 0) return -1;
        if (s->plugin_state[i] == 0) {
            if (pt->has_plugin) {
                s->plugin_state[i] = 1;
                s->plugin_ptr[i] = pt->plugin;
                s->plugin_len[i] = pt->plugin_len;
            } else if (pt->simple) {
                s->plugin_state[i] = 2;
            }
        }
        if (!pt->has_point) continue;
        size_t n = s->n_points, cap;
        if (n == s->cap_points) {
            cap = s->cap_points;
            if (grow((void **)&s->idx, &cap, n + 1, sizeof(int32_t)) < 0) return -1;
            cap = s->cap_points;
            if (grow((void **)&s->step, &cap, n + 1, sizeof(int64_t)) < 0) return -1;
            cap = s->cap_points;
            if (grow((void **)&s->wall, &cap, n + 1, sizeof(double)) < 0) return -1;
            cap = s->cap_points;
            if (grow((void **)&s->value, &cap, n + 1, sizeof(double)) < 0) return -1;
            s->cap_points = cap;
        }
        s->idx[n] = i;
        s->step[n] = step;
        s->wall[n] = wall;
        s->value[n] = pt->value;
        s->n_points = n + 1;
    }
    return 0;
}

static PyObject *le_bytes(const void *data, size_t count, size_t width)
{
    PyObject *out = PyBytes_FromStringAndSize(data, (Py_ssize_t)(count * width));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    if (out) {
        uint8_t *b = (uint8_t *)PyBytes_AS_STRING(out);
        for (size_t i = 0; i < count; i++)
            for (size_t j = 0; j < width / 2; j++) {
                uint8_t t = b[i * width + j];
                b[i * width + j] = b[i * width + width - 1 - j];
                b[i * width + width - 1 - j] = t;
            }
    }
#endif
    return out;
}

static PyObject *py_decode_scalars(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "decode_scalars(buf, offset=0, verify=True)");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    Py_ssize_t offset;
    int verify, status = 0, oom = 0;
    Py_ssize_t records = 0;
    scalar_sink s;
    memset(&s, 0, sizeof s);
    PyObject *result = NULL, *tags = NULL, *seen = NULL;
    if (parse_offset(args, nargs, view.len, &offset, &verify) < 0) goto done;
    /* Room for a point per record (a record takes at least 16 bytes) from the start, so the
     * columns never move; pages not written are never touched. */
    size_t room = (size_t)(view.len - offset) / 16 + 1, cap;
    if (room > 4096) {
        cap = 0;
        if (grow((void **)&s.idx, &cap, room, sizeof(int32_t)) < 0) oom = 1;
        cap = 0;
        if (!oom && grow((void **)&s.step, &cap, room, sizeof(int64_t)) < 0) oom = 1;
        cap = 0;
        if (!oom && grow((void **)&s.wall, &cap, room, sizeof(double)) < 0) oom = 1;
        cap = 0;
        if (!oom && grow((void **)&s.value, &cap, room, sizeof(double)) < 0) oom = 1;
        if (oom) {
            PyErr_NoMemory();
            goto done;
        }
        s.cap_points = cap;
    }
    size_t pos = (size_t)offset, next, len;
    const uint8_t *payload;
    Py_BEGIN_ALLOW_THREADS
    while (next_record(view.buf, (size_t)view.len, pos, verify, &payload, &len, &next, &status) == REC_OK) {
        if (decode_event(&s, payload, len) < 0) {
            oom = 1;
            break;
        }
        records++;
        pos = next;
    }
    Py_END_ALLOW_THREADS
    if (oom) {
        PyErr_NoMemory();
        goto done;
    }
    /* Tags are interned by raw bytes; merge any that decode to the same str. */
    tags = PyList_New(0);
    seen = PyDict_New();
    if (!tags || !seen) goto done;
    int32_t *remap = PyMem_Malloc((s.n_tags ? s.n_tags : 1) * sizeof(int32_t));
    if (!remap) {
        PyErr_NoMemory();
        goto done;
    }
    int merged = 0, failed = 0;
    for (size_t i = 0; i < s.n_tags && !failed; i++) {
        PyObject *name = PyUnicode_DecodeUTF8((const char *)s.tag_ptr[i], (Py_ssize_t)s.tag_len[i], "replace");
        if (!name) { failed = 1; break; }
        PyObject *known = PyDict_GetItemWithError(seen, name);
        if (known) {
            remap[i] = (int32_t)PyLong_AsLong(known);
            merged = 1;
            Py_DECREF(name);
            continue;
        }
        if (PyErr_Occurred()) { Py_DECREF(name); failed = 1; break; }
        PyObject *plugin;
        if (s.plugin_state[i] == 1)
            plugin = PyUnicode_DecodeUTF8((const char *)s.plugin_ptr[i], (Py_ssize_t)s.plugin_len[i], "replace");
        else if (s.plugin_state[i] == 2)
            plugin = PyUnicode_FromString("scalars");
        else
            plugin = Py_NewRef(Py_None);
        PyObject *index = PyLong_FromSsize_t(PyList_GET_SIZE(tags));
        PyObject *pair = plugin ? PyTuple_Pack(2, name, plugin) : NULL;
        if (!pair || !index || PyDict_SetItem(seen, name, index) < 0 || PyList_Append(tags, pair) < 0) failed = 1;
        remap[i] = (int32_t)(PyList_GET_SIZE(tags) - 1);
        Py_XDECREF(pair);
        Py_XDECREF(index);
        Py_XDECREF(plugin);
        Py_DECREF(name);
    }
    if (!failed && merged)
        for (size_t k = 0; k < s.n_points; k++) s.idx[k] = remap[s.idx[k]];
    PyMem_Free(remap);
    if (failed) goto done;
    PyObject *cols[4] = {
        le_bytes(s.idx, s.n_points, 4), le_bytes(s.step, s.n_points, 8),
        le_bytes(s.wall, s.n_points, 8), le_bytes(s.value, s.n_points, 8),
    };
    if (cols[0] && cols[1] && cols[2] && cols[3])
        result = Py_BuildValue("(niOOOOOn)", (Py_ssize_t)pos, status, tags, cols[0], cols[1], cols[2], cols[3],
                               records);
    for (int k = 0; k < 4; k++) Py_XDECREF(cols[k]);
done:
    Py_XDECREF(tags);
    Py_XDECREF(seen);
    sink_free(&s);
    PyBuffer_Release(&view);
    return result;
}

/* ------------------------------------------------------------------ module */

static PyMethodDef native_methods[] = {
    {"crc32c", (PyCFunction)(void (*)(void))py_crc32c, METH_FASTCALL,
     "crc32c(data, value=0, /) -> int: CRC32C of data, continuing from value."},
    {"masked_crc32c", py_masked_crc32c, METH_O,
     "masked_crc32c(data, /) -> int: TFRecord-masked CRC32C of data."},
    {"frame", py_frame, METH_O, "frame(payload, /) -> bytes: one TFRecord."},
    {"frame_many", py_frame_many, METH_O, "frame_many(payloads, /) -> bytes: many TFRecords in one buffer."},
    {"encode_scalar", (PyCFunction)(void (*)(void))py_encode_scalar, METH_FASTCALL,
     "encode_scalar(tag, value, step, wall_time, metadata, legacy, /) -> bytes: a framed scalar Event."},
    {"encode_scalars", (PyCFunction)(void (*)(void))py_encode_scalars, METH_FASTCALL,
     "encode_scalars(tag, values, steps, wall_times, metadata, legacy, /) -> bytes: framed scalar Events."},
    {"split_records", (PyCFunction)(void (*)(void))py_split_records, METH_FASTCALL,
     "split_records(buf, offset=0, verify=True, /) -> (payloads, end, status)."},
    {"seek_record", (PyCFunction)(void (*)(void))py_seek_record, METH_FASTCALL,
     "seek_record(buf, offset, target, /) -> offset of the first record at or after target, or -1."},
    {"decode_scalars", (PyCFunction)(void (*)(void))py_decode_scalars, METH_FASTCALL,
     "decode_scalars(buf, offset=0, verify=True, /) -> (end, status, tags, index, steps, walls, values, records)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "tbx._native",
    "C kernel of tbx: CRC32C, TFRecord framing, scalar encoding and decoding.", -1, native_methods,
};

PyMODINIT_FUNC PyInit__native(void)
{
    crc_init();
    PyObject *m = PyModule_Create(&native_module);
    if (!m) return NULL;
    if (PyModule_AddStringConstant(m, "IMPLEMENTATION", "native") < 0 ||
        PyModule_AddStringConstant(m, "CRC_PATH", crc_path) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
