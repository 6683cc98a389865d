/* mcacm_sip.sip._cparse: the header-line splitting of mcacm_sip/sip/message.py in C.
 *
 * Optional: message.py uses it when it was built (setup.py, optional=True) and runs its own
 * pure-Python _py_parse_headers otherwise or with MCACM_SIP_PARSER=python (docs/sip-layer.md).
 * parse_headers() returns exactly what _py_parse_headers returns for the same arguments
 * (tests/test_sip_parser_c.py checks it over generated and mutated messages).  It does only
 * the mechanical part, for a header block of ASCII bytes: CRLF -> LF, RFC 3261 7.3.1 unfolding,
 * one "name: value" per line, names stripped, lower-cased and expanded from their compact form
 * (the table is message.py's), values stripped, comma lists of the multi-value headers split.
 * Anything else is left to the Python code: a header block with a byte above 0x7f (UTF-8 or
 * not) is handed to _py_parse_headers whole, and a comma list with quotes or <...> to the
 * splitter message.py passes in.  So every rule stays written once, in Python.
 *
 * Hostile input: every read is bounded by the bytes object's length (embedded NULs are plain
 * bytes here), the one scratch buffer is as long as the header block and freed on every path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static PyObject *compact_map;   /* dict: one-letter lower-case name -> long lower-case name */
static PyObject *multi_names;   /* set: lower-case names whose values are comma lists */
static PyObject *split_multi;   /* callable: comma list with quotes or <...> -> list[str] */
static PyObject *fallback;      /* callable: message._py_parse_headers (non-ASCII blocks) */

/* Header names as written before the colon -> (key, name as kept), as message._NAMES: the few
 * names peers write are normalised and hashed once.  A slot is filled once and never replaced,
 * so made-up names cannot grow it or evict the usual ones (they are just not cached). */
#define NAME_SLOTS 256
#define NAME_MAX_CACHED 40
typedef struct {
    Py_ssize_t len;              /* 0: empty slot */
    char raw[NAME_MAX_CACHED];
    PyObject *key;
    PyObject *kept;
} name_slot;
static name_slot names[NAME_SLOTS];

static unsigned int
name_hash(const char *s, Py_ssize_t n)
{
    unsigned int h = 2166136261u;  /* FNV-1a */
    for (Py_ssize_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h % NAME_SLOTS;
}

static void
clear_names(void)
{
    for (int i = 0; i < NAME_SLOTS; i++) {
        Py_CLEAR(names[i].key);
        Py_CLEAR(names[i].kept);
        names[i].len = 0;
    }
}

/* str.isspace() of an ASCII character: what str.strip() removes */
static inline int
is_space(unsigned char c)
{
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
}

static void
strip(const char *s, Py_ssize_t *a, Py_ssize_t *b)
{
    while (*a < *b && is_space((unsigned char)s[*a]))
        (*a)++;
    while (*b > *a && is_space((unsigned char)s[*b - 1]))
        (*b)--;
}

/* a str of n ASCII bytes (the caller checked there is none above 0x7f) */
static PyObject *
ascii_str(const char *s, Py_ssize_t n)
{
    PyObject *o = PyUnicode_New(n, 127);
    if (o != NULL)
        memcpy(PyUnicode_1BYTE_DATA(o), s, (size_t)n);
    return o;
}

static PyObject *
ascii_lower(const char *s, Py_ssize_t n)
{
    PyObject *o = PyUnicode_New(n, 127);
    if (o != NULL) {
        Py_UCS1 *d = PyUnicode_1BYTE_DATA(o);
        for (Py_ssize_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            d[i] = (c >= 'A' && c <= 'Z') ? (Py_UCS1)(c + 32) : (Py_UCS1)c;
        }
    }
    return o;
}

static int
is_ascii(const char *s, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ULL)
            return 0;
    }
    for (; i < n; i++)
        if ((unsigned char)s[i] & 0x80)
            return 0;
    return 1;
}

static int
append_str(PyObject *list, const char *s, Py_ssize_t n)
{
    PyObject *v = ascii_str(s, n);
    if (v == NULL)
        return -1;
    int r = PyList_Append(list, v);
    Py_DECREF(v);
    return r;
}

/* One line (no LF in it): 1 added, 0 not "name: value", -1 error. */
static int
add_line(const char *line, Py_ssize_t n, PyObject *store, PyObject *repeated,
         PyObject *original)
{
    const char *colon = memchr(line, ':', (size_t)n);
    if (colon == NULL)
        return 0;
    Py_ssize_t raw_len = colon - line;
    name_slot *slot = NULL;
    PyObject *key, *name;  /* lower-case key, name as kept (for ``original``) */
    if (raw_len > 0 && raw_len <= NAME_MAX_CACHED) {
        slot = &names[name_hash(line, raw_len)];
        if (slot->len == raw_len && memcmp(slot->raw, line, (size_t)raw_len) == 0) {
            key = slot->key;
            name = slot->kept;
            Py_INCREF(key);
            Py_INCREF(name);
            goto have_name;
        }
        if (slot->len != 0)
            slot = NULL;  /* taken by another name */
    }
    Py_ssize_t na = 0, nb = raw_len;
    strip(line, &na, &nb);
    if (nb == na)
        return 0;
    if ((key = ascii_lower(line + na, nb - na)) == NULL)
        return -1;
    if (nb - na == 1) {
        PyObject *expanded = PyDict_GetItemWithError(compact_map, key);
        if (expanded != NULL) {
            Py_INCREF(expanded);
            Py_SETREF(key, expanded);
        } else if (PyErr_Occurred()) {
            Py_DECREF(key);
            return -1;
        }
        name = key;
        Py_INCREF(name);
    } else if ((name = ascii_str(line + na, nb - na)) == NULL) {
        Py_DECREF(key);
        return -1;
    }
    if (slot != NULL) {
        PyUnicode_InternInPlace(&key);
        memcpy(slot->raw, line, (size_t)raw_len);
        slot->len = raw_len;
        Py_INCREF(key);
        slot->key = key;
        Py_INCREF(name);
        slot->kept = name;
    }
have_name:;
    Py_ssize_t va = colon + 1 - line, vb = n;
    strip(line, &va, &vb);
    const char *value = line + va;
    Py_ssize_t vn = vb - va;

    int ret = -1;
    PyObject *values = PyDict_GetItemWithError(store, key);  /* borrowed */
    if (values == NULL) {
        if (PyErr_Occurred())
            goto done;
        PyObject *fresh = PyList_New(0);
        if (fresh == NULL)
            goto done;
        if (PyDict_SetItem(store, key, fresh) < 0) {
            Py_DECREF(fresh);
            goto done;
        }
        values = fresh;
        Py_DECREF(fresh);  /* the store holds it */
        if (original != Py_None && PyDict_SetItem(original, key, name) < 0)
            goto done;
    } else if (repeated != Py_None) {
        if (PySet_Add(repeated, key) < 0)
            goto done;
    }

    if (vn > 0 && memchr(value, ',', (size_t)vn) != NULL) {
        int multi = PySet_Contains(multi_names, key);
        if (multi < 0)
            goto done;
        if (multi) {
            if (memchr(value, '"', (size_t)vn) != NULL || memchr(value, '<', (size_t)vn) != NULL) {
                PyObject *v = ascii_str(value, vn);
                if (v == NULL)
                    goto done;
                PyObject *parts = PyObject_CallOneArg(split_multi, v);
                Py_DECREF(v);
                if (parts == NULL)
                    goto done;
                Py_ssize_t end = PyList_GET_SIZE(values);
                int r = PyList_SetSlice(values, end, end, parts);
                Py_DECREF(parts);
                if (r < 0)
                    goto done;
            } else {
                Py_ssize_t a = 0;
                while (a <= vn) {
                    const char *comma = memchr(value + a, ',', (size_t)(vn - a));
                    Py_ssize_t b = comma != NULL ? comma - value : vn;
                    Py_ssize_t pa = a, pb = b;
                    strip(value, &pa, &pb);
                    if (pb > pa && append_str(values, value + pa, pb - pa) < 0)
                        goto done;
                    a = b + 1;
                }
            }
            ret = 1;
            goto done;
        }
    }
    ret = append_str(values, value, vn) < 0 ? -1 : 1;
done:
    Py_DECREF(name);
    Py_DECREF(key);
    return ret;
}

static PyObject *
parse_headers(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2 || nargs > 4) {
        PyErr_SetString(PyExc_TypeError, "parse_headers(head, first_nl, repeated=None, "
                        "original=None)");
        return NULL;
    }
    if (fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_cparse.configure() was not called");
        return NULL;
    }
    PyObject *head = args[0];
    PyObject *repeated = nargs > 2 ? args[2] : Py_None;
    PyObject *original = nargs > 3 ? args[3] : Py_None;
    if (!PyBytes_Check(head)) {
        PyErr_SetString(PyExc_TypeError, "head must be bytes");
        return NULL;
    }
    if (repeated != Py_None && !PySet_Check(repeated)) {
        PyErr_SetString(PyExc_TypeError, "repeated must be a set or None");
        return NULL;
    }
    if (original != Py_None && !PyDict_Check(original)) {
        PyErr_SetString(PyExc_TypeError, "original must be a dict or None");
        return NULL;
    }
    Py_ssize_t first_nl = PyLong_AsSsize_t(args[1]);
    if (first_nl == -1 && PyErr_Occurred())
        return NULL;
    const char *h = PyBytes_AS_STRING(head);
    Py_ssize_t len = PyBytes_GET_SIZE(head);
    if (first_nl < 0 || first_nl + 1 >= len)
        return PyDict_New();  /* no header lines */
    Py_ssize_t start = first_nl + 1;
    if (!is_ascii(h + start, len - start))  /* decoding and Unicode rules: Python's */
        return PyObject_Vectorcall(fallback, args, (size_t)nargs, NULL);

    /* A bare CR: a line that is not "name: value" (RFC 3261 7.3.1); Python finds it before
     * reading any line, so before anything is added to ``repeated`` or ``original``. */
    for (const char *p = h + start; (p = memchr(p, '\r', (size_t)(h + len - p))) != NULL; p++) {
        if (p + 1 == h + len || p[1] != '\n')
            Py_RETURN_NONE;
    }
    /* The common block: no folded line.  Lines are read in place (the CR before an LF is the
     * CRLF's: there is no other). */
    int folded = 0;
    for (const char *p = h + start; (p = memchr(p, '\n', (size_t)(h + len - p))) != NULL; p++) {
        if (p + 1 < h + len && (p[1] == ' ' || p[1] == '\t')) {
            folded = 1;
            break;
        }
    }
    if (!folded) {
        PyObject *store = PyDict_New();
        if (store == NULL)
            return NULL;
        Py_ssize_t a = start;
        while (a <= len) {
            const char *nl = memchr(h + a, '\n', (size_t)(len - a));
            Py_ssize_t b = nl != NULL ? nl - h : len;
            Py_ssize_t e = (nl != NULL && b > a && h[b - 1] == '\r') ? b - 1 : b;
            int r = add_line(h + a, e - a, store, repeated, original);
            if (r < 0) {
                Py_DECREF(store);
                return NULL;
            }
            if (r == 0) {  /* a line that is not "name: value" (RFC 3261 7.3.1) */
                Py_DECREF(store);
                Py_RETURN_NONE;
            }
            a = b + 1;
        }
        return store;
    }

    /* A folded block: the text in a scratch buffer, CRLF -> LF (every CR is a CRLF's here),
     * then each LF followed by a run of SP/HT -> one SP (RFC 3261 7.3.1), as _FOLD does. */
    Py_ssize_t n = len - start;
    char *buf = PyMem_Malloc((size_t)n);
    if (buf == NULL)
        return PyErr_NoMemory();
    Py_ssize_t m = 0;
    for (Py_ssize_t i = start; i < len; i++) {
        if (h[i] != '\r')
            buf[m++] = h[i];
    }
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < m; i++) {
        if (buf[i] == '\n' && i + 1 < m && (buf[i + 1] == ' ' || buf[i + 1] == '\t')) {
            i++;
            while (i + 1 < m && (buf[i + 1] == ' ' || buf[i + 1] == '\t'))
                i++;
            buf[k++] = ' ';
        } else {
            buf[k++] = buf[i];
        }
    }
    PyObject *store = PyDict_New();
    if (store == NULL)
        goto fail;
    Py_ssize_t a = 0;
    while (a <= k) {
        const char *nl = memchr(buf + a, '\n', (size_t)(k - a));
        Py_ssize_t b = nl != NULL ? nl - buf : k;
        int r = add_line(buf + a, b - a, store, repeated, original);
        if (r < 0)
            goto fail;
        if (r == 0) {  /* a line that is not "name: value" (RFC 3261 7.3.1) */
            Py_DECREF(store);
            PyMem_Free(buf);
            Py_RETURN_NONE;
        }
        a = b + 1;
    }
    PyMem_Free(buf);
    return store;
fail:
    Py_XDECREF(store);
    PyMem_Free(buf);
    return NULL;
}

/* ---- own_parts: message._py_own_parts in C (a response to one of our own requests) ----
 * The same reading, rule for rule (tests/test_sip_own_response.py compares the two over
 * generated and mutated responses); the header lines are split by parse_headers above.  None
 * for anything else: message.parse then reads the response with every rule. */

static int
all_digits(const char *s, Py_ssize_t n)
{
    if (n == 0)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* the first value of store[key] when it has one (borrowed; ``exactly_one``: and no other),
 * an ASCII str; NULL without an error: none */
static PyObject *
first_value(PyObject *store, const char *key, int exactly_one)
{
    PyObject *values = PyDict_GetItemString(store, key);  /* borrowed; str keys: no error */
    if (values == NULL || !PyList_Check(values) || PyList_GET_SIZE(values) < 1
            || (exactly_one && PyList_GET_SIZE(values) != 1))
        return NULL;
    PyObject *v = PyList_GET_ITEM(values, 0);
    if (!PyUnicode_Check(v) || PyUnicode_KIND(v) != PyUnicode_1BYTE_KIND)
        return NULL;
    return v;
}

/* message._PARAMS_COMMON.fullmatch: (";" 1*name-char ["=" 1*value-char])*, a name-char one
 * of [a-z0-9.!%*_+`'~-], a value-char anything but ; , " and white space */
static int
params_common(const char *p, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    while (i < n) {
        if (p[i] != ';')
            return 0;
        Py_ssize_t a = ++i;
        while (i < n && p[i] != '\0' && ((p[i] >= 'a' && p[i] <= 'z')
                                         || (p[i] >= '0' && p[i] <= '9')
                                         || strchr(".!%*_+`'~-", p[i]) != NULL))
            i++;
        if (i == a)
            return 0;
        if (i < n && p[i] == '=') {
            Py_ssize_t b = ++i;
            while (i < n && p[i] != ';' && p[i] != ',' && p[i] != '"'
                   && !is_space((unsigned char)p[i]))
                i++;
            if (i == b)
                return 0;
        }
    }
    return 1;
}

/* The common header block of a message in ``d`` (n bytes), read as message.parse reads it:
 * ended by the first CRLF CRLF (no LF LF before it, as message.head_end), ASCII, no NUL, a
 * start line, within the caps (caps[0] header bytes, caps[1] lines).  0: not of that form.
 * Sets the block's end, its first LF and the start line's stripped span [sa, sb). */
static int
common_head(const char *d, Py_ssize_t n, const Py_ssize_t *caps, Py_ssize_t *end_out,
            Py_ssize_t *first_nl_out, Py_ssize_t *sa_out, Py_ssize_t *sb_out)
{
    Py_ssize_t end = -1;
    for (const char *p = d; (p = memchr(p, '\r', (size_t)(d + n - p))) != NULL; p++) {
        if (d + n - p >= 4 && p[1] == '\n' && p[2] == '\r' && p[3] == '\n') {
            end = p - d;
            break;
        }
    }
    if (end < 0 || end > caps[0])
        return 0;
    const char *nl = memchr(d, '\n', (size_t)end);
    if (nl == NULL || !is_ascii(d, end) || memchr(d, '\0', (size_t)end) != NULL)
        return 0;
    Py_ssize_t first_nl = nl - d;
    /* as message.head_end: an LF LF before the CRLF CRLF ends the block there */
    for (const char *p = nl; (p = memchr(p, '\n', (size_t)(d + end - p))) != NULL; p++) {
        if (p + 1 < d + end && p[1] == '\n')
            return 0;
    }
    if (end > caps[1]) {
        Py_ssize_t lines = 0;
        for (const char *p = d; (p = memchr(p, '\n', (size_t)(d + end - p))) != NULL; p++)
            lines++;
        if (lines > caps[1])
            return 0;
    }
    Py_ssize_t sa = 0, sb = first_nl;  /* bytes.strip(): ASCII white space, not 0x1c-0x1f */
    while (sa < sb && (d[sa] == ' ' || (d[sa] >= 0x09 && d[sa] <= 0x0d)))
        sa++;
    while (sb > sa && (d[sb - 1] == ' ' || (d[sb - 1] >= 0x09 && d[sb - 1] <= 0x0d)))
        sb--;
    *end_out = end;
    *first_nl_out = first_nl;
    *sa_out = sa;
    *sb_out = sb;
    return 1;
}

/* The arguments of own_parts and request_parts, (data: bytes, max_header_bytes,
 * max_headers, max_body_bytes), and common_head of the data: 1 (its caps, block end, first
 * LF and start line set), 0 (not of the common form), -1 with an exception. */
static int
parts_head(PyObject *const *args, Py_ssize_t nargs, const char *name, Py_ssize_t *caps,
           Py_ssize_t *end, Py_ssize_t *first_nl, Py_ssize_t *sa, Py_ssize_t *sb)
{
    if (nargs != 4 || !PyBytes_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "%s(data: bytes, max_header_bytes, max_headers, "
                     "max_body_bytes)", name);
        return -1;
    }
    if (fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_cparse.configure() was not called");
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        caps[i] = PyLong_AsSsize_t(args[i + 1]);
        if (caps[i] == -1 && PyErr_Occurred())
            return -1;
    }
    return common_head(PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]), caps, end,
                       first_nl, sa, sb);
}

/* The header lines of the block d[0:end] (its first LF at first_nl) split by parse_headers:
 * the store, or None (a new reference) when a line is not "name: value" or a header is on
 * two lines; NULL with an exception.  *head_out: the block as bytes (a new reference; NULL
 * with the exception). */
static PyObject *
split_store(PyObject *self, const char *d, Py_ssize_t end, Py_ssize_t first_nl,
            PyObject **head_out)
{
    PyObject *store = NULL;
    PyObject *head = PyBytes_FromStringAndSize(d, end);
    PyObject *first = PyLong_FromSsize_t(first_nl);
    PyObject *repeated = PySet_New(NULL);
    if (head != NULL && first != NULL && repeated != NULL) {
        PyObject *split_args[3] = {head, first, repeated};
        store = parse_headers(self, split_args, 3);
        if (store != NULL && store != Py_None && PySet_GET_SIZE(repeated) != 0) {
            Py_SETREF(store, Py_None);
            Py_INCREF(store);
        }
    }
    Py_XDECREF(first);
    Py_XDECREF(repeated);
    if (store == NULL)
        Py_CLEAR(head);
    *head_out = head;
    return store;
}

typedef struct {
    PyObject *via, *call_id, *cseq, *length;  /* borrowed from the store */
} fields;

/* The first values of the headers both readings need, ASCII str (``one_via``: and a single
 * Via value): 1; 0 when one is missing, From, To or the Call-ID is empty, or From or To holds
 * a quote (message.parse's quote check is left to it). */
static int
common_fields(PyObject *store, int one_via, fields *f)
{
    PyObject *frm = first_value(store, "from", 0), *to = first_value(store, "to", 0);
    f->via = first_value(store, "via", one_via);
    f->call_id = first_value(store, "call-id", 0);
    f->cseq = first_value(store, "cseq", 0);
    f->length = first_value(store, "content-length", 0);
    return !(f->via == NULL || frm == NULL || to == NULL || f->call_id == NULL
             || f->cseq == NULL || f->length == NULL || PyUnicode_GET_LENGTH(frm) == 0
             || PyUnicode_GET_LENGTH(to) == 0 || PyUnicode_GET_LENGTH(f->call_id) == 0
             || memchr(PyUnicode_1BYTE_DATA(frm), '"', (size_t)PyUnicode_GET_LENGTH(frm))
             || memchr(PyUnicode_1BYTE_DATA(to), '"', (size_t)PyUnicode_GET_LENGTH(to)));
}

/* The value of the first "branch" parameter of the Via text v[i:vn] (i just after a ";"),
 * as message.parse finds it: [*ba, *bb); *ba = *bb = -1 when there is none. */
static void
branch_of(const char *v, Py_ssize_t i, Py_ssize_t vn, Py_ssize_t *ba, Py_ssize_t *bb)
{
    *ba = *bb = -1;
    while (i <= vn) {
        const char *next = memchr(v + i, ';', (size_t)(vn - i));
        Py_ssize_t item_end = next != NULL ? next - v : vn;
        const char *eq = memchr(v + i, '=', (size_t)(item_end - i));
        Py_ssize_t key_end = eq != NULL ? eq - v : item_end;
        if (key_end - i == 6 && memcmp(v + i, "branch", 6) == 0) {
            *ba = eq != NULL ? key_end + 1 : item_end;
            *bb = item_end;
            return;
        }
        i = item_end + 1;
    }
}

/* A tuple of the n items (new references, which it takes: each set to NULL), or NULL when
 * one is NULL (an error while making it) or with the tuple's own error. */
static PyObject *
tuple_of(PyObject **items, int n)
{
    for (int i = 0; i < n; i++)
        if (items[i] == NULL)
            return NULL;
    PyObject *out = PyTuple_New(n);
    if (out == NULL)
        return NULL;
    for (int i = 0; i < n; i++) {
        PyTuple_SET_ITEM(out, i, items[i]);
        items[i] = NULL;
    }
    return out;
}

static PyObject *
own_parts(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t caps[3], end, first_nl, sa, sb;
    int common = parts_head(args, nargs, "own_parts", caps, &end, &first_nl, &sa, &sb);
    if (common <= 0)
        return common < 0 ? NULL : Py_NewRef(Py_None);
    const char *d = PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    const char *s = d + sa;
    Py_ssize_t sn = sb - sa;
    /* RFC 3261 7.2: Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF */
    if (sn < 12 || memcmp(s, "SIP/2.0 ", 8) != 0 || s[11] != ' ' || !all_digits(s + 8, 3))
        Py_RETURN_NONE;
    long status = (s[8] - '0') * 100 + (s[9] - '0') * 10 + (s[10] - '0');

    PyObject *head = NULL, *out = NULL;
    PyObject *items[11] = {NULL};
    PyObject *store = split_store(self, d, end, first_nl, &head);
    if (store == NULL)
        goto done;
    fields f;
    if (store == Py_None || status < 100 || status > 699 || !common_fields(store, 1, &f))
        goto none;
    PyObject *via = f.via, *call_id = f.call_id, *cseq = f.cseq, *length = f.length;
    const char *c = (const char *)PyUnicode_1BYTE_DATA(cseq);
    Py_ssize_t cn = PyUnicode_GET_LENGTH(cseq);
    const char *sp = memchr(c, ' ', (size_t)cn);
    Py_ssize_t number_len = sp != NULL ? sp - c : cn;
    const char *l = (const char *)PyUnicode_1BYTE_DATA(length);
    Py_ssize_t ln = PyUnicode_GET_LENGTH(length);
    if (!all_digits(c, number_len) || number_len > 9 || !all_digits(l, ln) || ln > 9)
        goto none;
    const char *v = (const char *)PyUnicode_1BYTE_DATA(via);
    Py_ssize_t vn = PyUnicode_GET_LENGTH(via);
    const char *semi = memchr(v, ';', (size_t)vn);
    if (semi == NULL)
        goto none;
    Py_ssize_t semi_at = semi - v;
    Py_ssize_t ba, bb;  /* the branch's value */
    branch_of(v, semi_at + 1, vn, &ba, &bb);
    if (ba < 0 || bb == ba || !params_common(v + semi_at, vn - semi_at))
        goto none;
    Py_ssize_t body_at = end + 4;
    Py_ssize_t body_len = n - body_at;
    long declared = strtol(l, NULL, 10);  /* 1 to 9 digits: no overflow */
    if (body_len > caps[2] || declared > body_len)
        goto none;
    if (sp == NULL)  /* no method: not "number METHOD" */
        goto none;
    items[0] = PyLong_FromLong(status);
    items[1] = ascii_str(s + 12, sn - 12);
    items[2] = store;
    Py_INCREF(store);
    items[3] = head;
    Py_INCREF(head);
    items[4] = PyUnicode_Substring(via, ba, bb);
    items[5] = PyUnicode_Substring(via, 0, semi_at);
    items[6] = PyUnicode_Substring(via, semi_at, vn);
    items[7] = PyLong_FromLong(strtol(c, NULL, 10));
    items[8] = PyUnicode_Substring(cseq, number_len + 1, cn);
    items[9] = call_id;
    Py_INCREF(call_id);
    items[10] = PyBytes_FromStringAndSize(d + body_at, (Py_ssize_t)declared);
    out = tuple_of(items, 11);
    goto done;
none:
    out = Py_None;
    Py_INCREF(out);
done:
    for (int i = 0; i < 11; i++)
        Py_XDECREF(items[i]);
    Py_XDECREF(store);
    Py_XDECREF(head);
    return out;
}

/* ---- request_parts: message.parse of a request of the common form ----
 * What message.parse makes of a request whose header block is common_head's, whose start
 * line is "METHOD SP Request-URI SP SIP/2.0" (a token method, a URI starting with a scheme
 * and ":", no other space), with no header on two lines, Via, From, To, Call-ID and CSeq
 * present and not empty, no quote in From or To, a CSeq of 1 to 9 digits, one space and the
 * request's method, a Content-Length of 1 to 9 digits no larger than the body, and a top Via
 * of message._VIA_COMMON's form (port 1-65535): (method, uri, store, head, transport, host,
 * port, parameter text, branch, CSeq number, Call-ID, body).  None for any other message:
 * message.parse then reads it with every rule, so every refusal and every other form is the
 * general code's (tests/test_sip_request_parts.py: parse with and without this reading). */

static int
is_token_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
        || (c != '\0' && strchr("!%'*+-._`~", c) != NULL);
}

static PyObject *
request_parts(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t caps[3], end, first_nl, sa, sb;
    int common = parts_head(args, nargs, "request_parts", caps, &end, &first_nl, &sa, &sb);
    if (common <= 0)
        return common < 0 ? NULL : Py_NewRef(Py_None);
    const char *d = PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    Py_ssize_t body_at = end + 4, body_len = n - body_at;
    if (body_len > caps[2])
        Py_RETURN_NONE;
    /* the request line: method (a token), one space, the URI, one space, "SIP/2.0" */
    const char *s = d + sa;
    Py_ssize_t sn = sb - sa;
    if (sn >= 4 && memcmp(s, "SIP/", 4) == 0)
        Py_RETURN_NONE;  /* a response */
    const char *sp1 = memchr(s, ' ', (size_t)sn);
    if (sp1 == NULL || sp1 == s)
        Py_RETURN_NONE;
    Py_ssize_t mn = sp1 - s;
    for (Py_ssize_t i = 0; i < mn; i++)
        if (!is_token_char((unsigned char)s[i]))
            Py_RETURN_NONE;
    const char *u = sp1 + 1;
    const char *sp2 = memchr(u, ' ', (size_t)(s + sn - u));
    if (sp2 == NULL || sp2 == u || s + sn - (sp2 + 1) != 7 || memcmp(sp2 + 1, "SIP/2.0", 7) != 0)
        Py_RETURN_NONE;
    Py_ssize_t un = sp2 - u;
    /* uri.uri_scheme: [A-Za-z][A-Za-z0-9+.-]* before the first ":" */
    const char *colon = memchr(u, ':', (size_t)un);
    if (colon == NULL || colon == u || !((u[0] >= 'a' && u[0] <= 'z') || (u[0] >= 'A' && u[0] <= 'Z')))
        Py_RETURN_NONE;
    for (const char *p = u + 1; p < colon; p++) {
        unsigned char c = (unsigned char)*p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '+' || c == '.' || c == '-'))
            Py_RETURN_NONE;
    }

    PyObject *head = NULL, *out = NULL;
    PyObject *items[12] = {NULL};
    PyObject *store = split_store(self, d, end, first_nl, &head);
    if (store == NULL)
        goto done;
    fields f;
    if (store == Py_None || !common_fields(store, 0, &f))  /* (an empty Via: not SIP/2.0/) */
        goto none;
    PyObject *via = f.via, *call_id = f.call_id, *cseq = f.cseq, *length = f.length;
    /* CSeq: 1 to 9 digits (below 2**31), one space, the request's method */
    const char *c = (const char *)PyUnicode_1BYTE_DATA(cseq);
    Py_ssize_t cn = PyUnicode_GET_LENGTH(cseq);
    const char *csp = memchr(c, ' ', (size_t)cn);
    if (csp == NULL)
        goto none;
    Py_ssize_t number_len = csp - c;
    if (!all_digits(c, number_len) || number_len > 9 || cn - number_len - 1 != mn
            || memcmp(csp + 1, s, (size_t)mn) != 0)
        goto none;
    const char *l = (const char *)PyUnicode_1BYTE_DATA(length);
    Py_ssize_t ln = PyUnicode_GET_LENGTH(length);
    if (!all_digits(l, ln) || ln > 9)
        goto none;
    long declared = strtol(l, NULL, 10);  /* 1 to 9 digits: no overflow */
    if (declared > body_len)
        goto none;
    /* the top Via: message._VIA_COMMON, "SIP/2.0/" transport SP host ":" port params */
    const char *v = (const char *)PyUnicode_1BYTE_DATA(via);
    Py_ssize_t vn = PyUnicode_GET_LENGTH(via);
    if (vn < 8 || memcmp(v, "SIP/2.0/", 8) != 0)
        goto none;
    Py_ssize_t ta = 8, tb = ta;
    while (tb < vn && ((v[tb] >= 'a' && v[tb] <= 'z') || (v[tb] >= 'A' && v[tb] <= 'Z')))
        tb++;
    if (tb == ta || tb >= vn || v[tb] != ' ')
        goto none;
    Py_ssize_t ha = tb + 1, hb = ha;
    while (hb < vn && ((v[hb] >= 'a' && v[hb] <= 'z') || (v[hb] >= 'A' && v[hb] <= 'Z')
                       || (v[hb] >= '0' && v[hb] <= '9') || v[hb] == '.' || v[hb] == '-'
                       || v[hb] == '_'))
        hb++;
    if (hb == ha || hb >= vn || v[hb] != ':')
        goto none;
    Py_ssize_t pa = hb + 1, pb = pa;
    while (pb < vn && v[pb] >= '0' && v[pb] <= '9')
        pb++;
    if (pb == pa || pb - pa > 5)
        goto none;
    long port = strtol(v + pa, NULL, 10);
    if (port < 1 || port > 65535 || !params_common(v + pb, vn - pb))
        goto none;
    Py_ssize_t ba, bb;  /* the branch's value ("" when none) */
    branch_of(v, pb + 1, vn, &ba, &bb);
    if (ba < 0)
        ba = bb = pb;
    items[0] = ascii_str(s, mn);
    items[1] = ascii_str(u, un);
    items[2] = store;
    Py_INCREF(store);
    items[3] = head;
    Py_INCREF(head);
    items[4] = PyUnicode_Substring(via, ta, tb);
    items[5] = PyUnicode_Substring(via, ha, hb);
    items[6] = PyLong_FromLong(port);
    items[7] = PyUnicode_Substring(via, pb, vn);
    items[8] = PyUnicode_Substring(via, ba, bb);
    items[9] = PyLong_FromLong(strtol(c, NULL, 10));
    items[10] = call_id;
    Py_INCREF(call_id);
    items[11] = PyBytes_FromStringAndSize(d + body_at, (Py_ssize_t)declared);
    out = tuple_of(items, 12);
    goto done;
none:
    out = Py_None;
    Py_INCREF(out);
done:
    for (int i = 0; i < 12; i++)
        Py_XDECREF(items[i]);
    Py_XDECREF(store);
    Py_XDECREF(head);
    return out;
}

static PyObject *
configure(PyObject *self, PyObject *args)
{
    PyObject *compact, *multi, *splitter, *py;
    if (!PyArg_ParseTuple(args, "O!OOO:configure", &PyDict_Type, &compact, &multi, &splitter,
                          &py))
        return NULL;
    if (!PyAnySet_Check(multi) || !PyCallable_Check(splitter) || !PyCallable_Check(py)) {
        PyErr_SetString(PyExc_TypeError, "configure(dict, set, callable, callable)");
        return NULL;
    }
    Py_INCREF(compact);
    Py_XSETREF(compact_map, compact);
    Py_INCREF(multi);
    Py_XSETREF(multi_names, multi);
    Py_INCREF(splitter);
    Py_XSETREF(split_multi, splitter);
    Py_INCREF(py);
    Py_XSETREF(fallback, py);
    clear_names();  /* keys expanded with the old table */
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"parse_headers", (PyCFunction)(void (*)(void))parse_headers, METH_FASTCALL,
     "parse_headers(head, first_nl, repeated=None, original=None): as "
     "message._py_parse_headers."},
    {"own_parts", (PyCFunction)(void (*)(void))own_parts, METH_FASTCALL,
     "own_parts(data, max_header_bytes, max_headers, max_body_bytes): as "
     "message._py_own_parts."},
    {"request_parts", (PyCFunction)(void (*)(void))request_parts, METH_FASTCALL,
     "request_parts(data, max_header_bytes, max_headers, max_body_bytes): message.parse of "
     "a request of the common form, as parts, or None."},
    {"configure", configure, METH_VARARGS,
     "configure(compact, multi_names, split_multi, fallback): message.py's tables."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cparse",
    "The header splitting of mcacm_sip.sip.message in C (optional).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__cparse(void)
{
    return PyModule_Create(&module);
}
