/* The tail of a log line (mcacm_sip/cli/logs.py): the console's escaped message and fields,
 * the JSON document's "msg" and fields.  The same text as logs.py's Python code, which stays
 * the reference: every character this code does not copy itself (a console piece that is not
 * printable ASCII without a backslash, a JSON string needing an escape, a JSON value that is
 * not a str or an int) is made by the Python function configure() was given, and a call it
 * does not take (a key that is not a str, fields that are not a dict ...) returns None, for
 * the Python code to make the line.  tests/test_log_lines.py: the same lines over both.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *printable_fn;   /* mcacm_sip.text.printable */
static PyObject *json_string_fn; /* json.encoder.encode_basestring */
static PyObject *json_value_fn;  /* the document's encoding of any other value */
static PyObject *event_key, *open_fields, *close_fields, *eq, *space, *quote, *colon, *comma,
    *close_doc, *true_text, *false_text, *after_name, *open_doc, *own_keys[4];

/* Printable ASCII without a backslash: what printable() leaves as it is. */
static int console_clean(PyObject *s) {
    if (!PyUnicode_IS_ASCII(s)) return 0;
    const Py_UCS1 *p = PyUnicode_1BYTE_DATA(s);
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    for (Py_ssize_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] == 0x7f || p[i] == '\\') return 0;
    return 1;
}

/* ASCII without a control character, a quote or a backslash: what encode_basestring (with
 * ensure_ascii=False) only puts between quotes. */
static int json_clean(PyObject *s) {
    if (!PyUnicode_IS_ASCII(s)) return 0;
    const Py_UCS1 *p = PyUnicode_1BYTE_DATA(s);
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    for (Py_ssize_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] == '"' || p[i] == '\\') return 0;
    return 1;
}

/* The pieces of one line, joined once at the end (each held by a reference). */
#define MAX_PIECES 160
typedef struct {
    PyObject *items[MAX_PIECES];
    Py_ssize_t count, length;
    Py_UCS4 maxchar;
} Pieces;

/* 0, or -1 with an exception set, or 1: too many pieces (the Python code makes the line). */
static int append_new(Pieces *b, PyObject *piece) {  /* steals ``piece`` */
    if (b->count == MAX_PIECES) {
        Py_DECREF(piece);
        return 1;
    }
    b->items[b->count++] = piece;
    b->length += PyUnicode_GET_LENGTH(piece);
    Py_UCS4 max = PyUnicode_MAX_CHAR_VALUE(piece);
    if (max > b->maxchar) b->maxchar = max;
    return 0;
}

static int append(Pieces *b, PyObject *piece) {
    Py_INCREF(piece);
    return append_new(b, piece);
}

static void release(Pieces *b) {
    for (Py_ssize_t i = 0; i < b->count; i++) Py_DECREF(b->items[i]);
    b->count = 0;
}

static PyObject *joined(Pieces *b) {
    PyObject *line = PyUnicode_New(b->length, b->maxchar);
    if (line != NULL) {
        Py_ssize_t at = 0;
        int narrow = PyUnicode_KIND(line) == PyUnicode_1BYTE_KIND;
        for (Py_ssize_t i = 0; i < b->count; i++) {
            PyObject *piece = b->items[i];
            Py_ssize_t n = PyUnicode_GET_LENGTH(piece);
            if (narrow) {
                memcpy(PyUnicode_1BYTE_DATA(line) + at, PyUnicode_1BYTE_DATA(piece), n);
            } else if (PyUnicode_CopyCharacters(line, at, piece, 0, n) < 0) {
                Py_CLEAR(line);
                break;
            }
            at += n;
        }
    }
    release(b);
    return line;
}

/* Append what the Python function ``fn`` (named ``what``) makes of ``s``, a str. */
static int append_made_by(Pieces *b, PyObject *fn, PyObject *s, const char *what) {
    PyObject *text = PyObject_CallOneArg(fn, s);
    if (text == NULL) return -1;
    if (!PyUnicode_Check(text)) {
        Py_DECREF(text);
        PyErr_Format(PyExc_TypeError, "%s did not return a str", what);
        return -1;
    }
    return append_new(b, text);
}

/* Append ``s`` as printable() writes it. */
static int append_printable(Pieces *b, PyObject *s) {
    if (console_clean(s)) return append(b, s);
    return append_made_by(b, printable_fn, s, "printable()");
}

/* Append ``s`` as a JSON string. */
static int append_json_string(Pieces *b, PyObject *s) {
    int rc;
    if (json_clean(s)) {
        if ((rc = append(b, quote)) != 0 || (rc = append(b, s)) != 0) return rc;
        return append(b, quote);
    }
    return append_made_by(b, json_string_fn, s, "the JSON string encoder");
}

/* Whether ``needle`` (``n`` bytes, n > 0) is in ``hay`` (``size`` bytes): memchr for its first
 * byte, then a compare (short texts: quicker than the library's memmem). */
static int has_bytes(const char *hay, Py_ssize_t size, const char *needle, Py_ssize_t n) {
    const char *end = hay + size - n + 1, *at = hay;
    while (at < end && (at = memchr(at, needle[0], end - at)) != NULL) {
        if (memcmp(at + 1, needle + 1, n - 1) == 0) return 1;
        at++;
    }
    return 0;
}

/* ``needle in haystack`` (both str). */
static int contains(PyObject *haystack, PyObject *needle) {
    if (PyUnicode_KIND(haystack) == PyUnicode_1BYTE_KIND
            && PyUnicode_KIND(needle) == PyUnicode_1BYTE_KIND) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(needle);
        return n == 0 || has_bytes((const char *)PyUnicode_1BYTE_DATA(haystack),
                                   PyUnicode_GET_LENGTH(haystack),
                                   (const char *)PyUnicode_1BYTE_DATA(needle), n);
    }
    return PyUnicode_Contains(haystack, needle);
}

static int configured(void) {
    if (printable_fn != NULL) return 1;
    PyErr_SetString(PyExc_RuntimeError, "mcacm_sip.cli._logline: configure() not called");
    return 0;
}

/* The common line: every piece ASCII and copied as it is, written into one buffer.  A piece
 * that is not (it needs an escape, or is not ASCII) ends the attempt and the line is made from
 * pieces (Pieces above). */
typedef struct {
    char *data;
    Py_ssize_t length, capacity;
    char stack[1024];
} Ascii;

static void ascii_init(Ascii *a) {
    a->data = a->stack;
    a->length = 0;
    a->capacity = sizeof a->stack;
}

static void ascii_free(Ascii *a) {
    if (a->data != a->stack) PyMem_Free(a->data);
}

/* Room for ``n`` more bytes: 0, or -1 with MemoryError set. */
static int ascii_room(Ascii *a, Py_ssize_t n) {
    if (a->length + n <= a->capacity) return 0;
    Py_ssize_t capacity = (a->length + n) * 2;
    char *data = PyMem_Malloc(capacity);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(data, a->data, a->length);
    ascii_free(a);
    a->data = data;
    a->capacity = capacity;
    return 0;
}

/* 0: written; 1: not ASCII or not clean for ``table`` (nothing written); -1: error. */
static int ascii_put(Ascii *a, PyObject *s, const unsigned char *table) {
    if (!PyUnicode_IS_ASCII(s)) return 1;
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (ascii_room(a, n) < 0) return -1;
    const Py_UCS1 *p = PyUnicode_1BYTE_DATA(s);
    unsigned char bad = 0;
    char *out = a->data + a->length;
    for (Py_ssize_t i = 0; i < n; i++) {
        bad |= table[p[i]];
        out[i] = (char)p[i];
    }
    if (bad) return 1;
    a->length += n;
    return 0;
}

static int ascii_text(Ascii *a, const char *text, Py_ssize_t n) {
    if (ascii_room(a, n) < 0) return -1;
    memcpy(a->data + a->length, text, n);
    a->length += n;
    return 0;
}

static PyObject *ascii_line(Ascii *a) {
    PyObject *line = PyUnicode_New(a->length, 127);
    if (line != NULL) memcpy(PyUnicode_1BYTE_DATA(line), a->data, a->length);
    return line;
}

static unsigned char console_bad[256], json_bad[256];

static void init_tables(void) {
    for (int c = 0; c < 256; c++) {
        console_bad[c] = c < 0x20 || c >= 0x7f || c == '\\';
        json_bad[c] = c < 0x20 || c >= 0x80 || c == '"' || c == '\\';
    }
}

/* The console line into ``a``: 0, 1 (not the common line) or -1. */
static int console_ascii(Ascii *a, PyObject *stamp, long ms, PyObject *levelname,
                         PyObject *name, PyObject *message, PyObject *fields) {
    int rc;
    char millis_text[6] = {'.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10),
                           (char)('0' + ms % 10), ' ', 0};
    if ((rc = ascii_put(a, stamp, console_bad)) != 0) return rc;
    if ((rc = ascii_text(a, millis_text, 5)) != 0) return rc;
    if (!PyUnicode_IS_ASCII(levelname) || !PyUnicode_IS_ASCII(name)) return 1;
    char initial[2] = {(char)PyUnicode_1BYTE_DATA(levelname)[0], ' '};
    if ((rc = ascii_text(a, initial, 2)) != 0) return rc;
    /* (the head is not escaped: any ASCII is copied) */
    if ((rc = ascii_room(a, PyUnicode_GET_LENGTH(name) + 2)) != 0) return rc;
    if ((rc = ascii_text(a, (const char *)PyUnicode_1BYTE_DATA(name), PyUnicode_GET_LENGTH(name))) != 0
            || (rc = ascii_text(a, ": ", 2)) != 0
            || (rc = ascii_put(a, message, console_bad)) != 0)
        return rc;
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    int shown = 0;
    while (PyDict_Next(fields, &pos, &k, &v)) {
        if (v == Py_None) continue;
        if (!PyUnicode_CheckExact(k)) return 1;
        if (k == event_key || (PyUnicode_GET_LENGTH(k) == 5 && PyUnicode_Compare(k, event_key) == 0))
            continue;
        /* (the message is printable ASCII here) */
        const char *text;
        Py_ssize_t n;
        char digits[32];
        if (PyUnicode_CheckExact(v)) {
            if (!PyUnicode_IS_ASCII(v)) return 1;
            text = (const char *)PyUnicode_1BYTE_DATA(v);
            n = PyUnicode_GET_LENGTH(v);
        } else if (PyLong_CheckExact(v)) {  /* str() of an int: its digits */
            int overflow;
            long long number = PyLong_AsLongLongAndOverflow(v, &overflow);
            if (overflow || (number == -1 && PyErr_Occurred())) {
                PyErr_Clear();
                return 1;
            }
            text = digits;
            n = snprintf(digits, sizeof digits, "%lld", number);
        } else {
            return 1;  /* (str() may run Python code) */
        }
        if (n == 0 || has_bytes((const char *)PyUnicode_1BYTE_DATA(message),
                                PyUnicode_GET_LENGTH(message), text, n))
            continue;
        unsigned char bad = 0;
        for (Py_ssize_t i = 0; i < n; i++) bad |= console_bad[(unsigned char)text[i]];
        if (bad) return 1;
        if ((rc = ascii_text(a, shown ? " " : "  [", shown ? 1 : 3)) != 0
                || (rc = ascii_put(a, k, console_bad)) != 0 || (rc = ascii_text(a, "=", 1)) != 0
                || (rc = ascii_text(a, text, n)) != 0)
            return rc;
        shown = 1;
    }
    return shown ? ascii_text(a, "]", 1) : 0;
}

/* Whether ``k`` (a str) names one of the document's own members: a field of that name is
 * the Python code's to write (it replaces "ts" or is written twice, as json.dumps would). */
static int own_key(PyObject *k) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(k);
    for (int i = 0; i < 4; i++)
        if (PyUnicode_GET_LENGTH(own_keys[i]) == n && PyUnicode_Compare(k, own_keys[i]) == 0)
            return 1;
    return 0;
}

/* The JSON members of ``fields`` into ``a``: 0, 1 (not the common line) or -1. */
static int json_ascii(Ascii *a, PyObject *fields) {
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    int rc;
    while (PyDict_Next(fields, &pos, &k, &v)) {
        if (!PyUnicode_CheckExact(k) || own_key(k)) return 1;
        if (v == Py_None) continue;
        if ((rc = ascii_text(a, ", \"", 3)) != 0 || (rc = ascii_put(a, k, json_bad)) != 0
                || (rc = ascii_text(a, "\": ", 3)) != 0)
            return rc;
        if (PyUnicode_CheckExact(v)) {
            if ((rc = ascii_text(a, "\"", 1)) != 0 || (rc = ascii_put(a, v, json_bad)) != 0
                    || (rc = ascii_text(a, "\"", 1)) != 0)
                return rc;
        } else if (PyLong_CheckExact(v)) {
            int overflow;
            long long n = PyLong_AsLongLongAndOverflow(v, &overflow);
            if (overflow || (n == -1 && PyErr_Occurred())) {
                PyErr_Clear();
                return 1;
            }
            char digits[32];
            int len = snprintf(digits, sizeof digits, "%lld", n);
            if ((rc = ascii_text(a, digits, len)) != 0) return rc;
        } else {
            return 1;
        }
    }
    return ascii_text(a, "}", 1);
}

/* ".000 " to ".999 ": the milliseconds of a console line (made on first use). */
static PyObject *millis[1000];

static PyObject *millis_text(long ms) {
    if (millis[ms] == NULL) {
        char text[6] = {'.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10),
                        (char)('0' + ms % 10), ' ', 0};
        millis[ms] = PyUnicode_InternFromString(text);
    }
    return millis[ms];
}

/* The field loop of a console line: 0, -1 (exception set) or 1 (the Python code decides). */
static int console_fields(Pieces *b, PyObject *message, PyObject *fields) {
    Py_ssize_t pos = 0, size = PyDict_GET_SIZE(fields);
    PyObject *k, *v;
    int shown = 0, rc;
    while (PyDict_Next(fields, &pos, &k, &v)) {
        if (v == Py_None) continue;
        if (!PyUnicode_CheckExact(k)) return 1;
        if (k == event_key || (PyUnicode_GET_LENGTH(k) == 5 && PyUnicode_Compare(k, event_key) == 0))
            continue;
        PyObject *text;
        Py_INCREF(k);
        Py_INCREF(v);
        text = PyUnicode_CheckExact(v) ? (Py_INCREF(v), v) : PyObject_Str(v);  /* may run Python */
        Py_DECREF(v);
        if (text == NULL) {
            Py_DECREF(k);
            return -1;
        }
        rc = 0;
        if (PyDict_GET_SIZE(fields) != size || !PyUnicode_CheckExact(text)) {
            rc = 1;  /* changed while read, or an odd str(): the Python code decides */
        } else {
            int found = contains(message, text);
            if (found < 0) {
                rc = -1;
            } else if (!found) {
                if ((rc = append(b, shown ? space : open_fields)) == 0
                        && (rc = append_printable(b, k)) == 0 && (rc = append(b, eq)) == 0)
                    rc = append_printable(b, text);
                shown = 1;
            }
        }
        Py_DECREF(k);
        Py_DECREF(text);
        if (rc != 0) return rc;
    }
    return shown ? append(b, close_fields) : 0;
}

static PyObject *console_line(PyObject *stamp, long ms, PyObject *levelname, PyObject *name,
                              PyObject *message, PyObject *fields);

/* console(stamp, msecs, levelname, name, message, fields) -> the line
 * f"{stamp}.{int(msecs):03d} {levelname[0]} {name}: " + printable(message + "  [k=v ...]"),
 * the fields shown those not None, not "event" and whose text the message does not hold;
 * None: the Python code makes it. */
static PyObject *console(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "console(stamp, msecs, levelname, name, message, fields)");
        return NULL;
    }
    if (!configured()) return NULL;
    PyObject *stamp = args[0], *msecs = args[1], *levelname = args[2], *name = args[3],
        *message = args[4], *fields = args[5];
    if (!PyUnicode_CheckExact(stamp) || !PyUnicode_CheckExact(levelname)
            || PyUnicode_GET_LENGTH(levelname) == 0 || !PyUnicode_CheckExact(name)
            || !PyUnicode_CheckExact(message) || !PyDict_CheckExact(fields))
        Py_RETURN_NONE;
    long ms;
    if (PyLong_CheckExact(msecs)) {
        ms = PyLong_AsLong(msecs);
        if (ms == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
    } else if (PyFloat_CheckExact(msecs) && PyFloat_AS_DOUBLE(msecs) >= 0
               && PyFloat_AS_DOUBLE(msecs) < 1000) {
        ms = (long)PyFloat_AS_DOUBLE(msecs);
    } else {
        Py_RETURN_NONE;
    }
    if (ms < 0 || ms > 999) Py_RETURN_NONE;
    return console_line(stamp, ms, levelname, name, message, fields);
}

/* console() once its arguments are checked: str stamp, levelname (not empty), name and
 * message, 0 <= ms <= 999, a dict of fields. */
static PyObject *console_line(PyObject *stamp, long ms, PyObject *levelname, PyObject *name,
                              PyObject *message, PyObject *fields) {
    Ascii a;
    ascii_init(&a);
    int common = console_ascii(&a, stamp, ms, levelname, name, message, fields);
    PyObject *done = common == 0 ? ascii_line(&a) : NULL;
    ascii_free(&a);
    if (common <= 0) return done;
    PyObject *millis_piece = millis_text(ms);
    if (millis_piece == NULL) return NULL;
    Pieces b = {.count = 0, .length = 0, .maxchar = 127};
    PyObject *initial = PyUnicode_Substring(levelname, 0, 1);
    if (initial == NULL) return NULL;
    int rc;
    if ((rc = append(&b, stamp)) != 0 || (rc = append(&b, millis_piece)) != 0
            || (rc = append_new(&b, initial)) != 0 || (rc = append(&b, space)) != 0
            || (rc = append(&b, name)) != 0 || (rc = append(&b, after_name)) != 0
            || (rc = append_printable(&b, message)) != 0
            || (rc = console_fields(&b, message, fields)) != 0) {
        release(&b);
        if (rc < 0) return NULL;
        Py_RETURN_NONE;
    }
    return joined(&b);
}

/* json(created, head, message, fields) -> the line
 * f'{{"ts": {created:.6f}, ' + head + the JSON string of message, then ", " and the fields
 * not None as the document's members, then "}"; None: the Python code makes it (also when a
 * field is named "ts", "level", "logger" or "msg"). */
static PyObject *json(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "json(created, head, message, fields)");
        return NULL;
    }
    if (!configured()) return NULL;
    PyObject *created = args[0], *head = args[1], *message = args[2], *fields = args[3];
    if (!PyFloat_CheckExact(created) || !PyUnicode_CheckExact(head) || !PyUnicode_Check(message)
            || !PyDict_CheckExact(fields))
        Py_RETURN_NONE;
    /* as format(created, ".6f") */
    char *ts = PyOS_double_to_string(PyFloat_AS_DOUBLE(created), 'f', 6, 0, NULL);
    if (ts == NULL) return NULL;
    Ascii a;
    ascii_init(&a);
    int common;
    if ((common = ascii_text(&a, "{\"ts\": ", 7)) == 0
            && (common = ascii_text(&a, ts, (Py_ssize_t)strlen(ts))) == 0
            && (common = ascii_text(&a, ", ", 2)) == 0
            && (common = ascii_put(&a, head, console_bad)) == 0
            && (common = PyUnicode_CheckExact(message) ? 0 : 1) == 0
            && (common = ascii_text(&a, "\"", 1)) == 0
            && (common = ascii_put(&a, message, json_bad)) == 0
            && (common = ascii_text(&a, "\"", 1)) == 0)
        common = json_ascii(&a, fields);
    PyObject *done = common == 0 ? ascii_line(&a) : NULL;
    ascii_free(&a);
    if (common <= 0) {
        PyMem_Free(ts);
        return done;
    }
    PyObject *ts_text = PyUnicode_FromString(ts);
    PyMem_Free(ts);
    if (ts_text == NULL) return NULL;
    Pieces b = {.count = 0, .length = 0, .maxchar = 127};
    int rc;
    if ((rc = append(&b, open_doc)) != 0 || (rc = append_new(&b, ts_text)) != 0
            || (rc = append(&b, comma)) != 0 || (rc = append(&b, head)) != 0
            || (rc = append_json_string(&b, message)) != 0)
        goto out;
    Py_ssize_t pos = 0, size = PyDict_GET_SIZE(fields);
    PyObject *k, *v;
    while (PyDict_Next(fields, &pos, &k, &v)) {
        if (!PyUnicode_CheckExact(k) || own_key(k)) {
            rc = 1;
            goto out;
        }
        if (v == Py_None) continue;
        if ((rc = append(&b, comma)) != 0 || (rc = append_json_string(&b, k)) != 0
                || (rc = append(&b, colon)) != 0)
            goto out;
        if (PyUnicode_Check(v)) {
            rc = append_json_string(&b, v);
        } else if (v == Py_True || v == Py_False) {
            rc = append(&b, v == Py_True ? true_text : false_text);
        } else if (PyLong_Check(v)) {
            PyObject *text = PyLong_Type.tp_repr(v);  /* as the json module writes an int */
            rc = text == NULL ? -1 : append_new(&b, text);
        } else {
            Py_INCREF(k);
            Py_INCREF(v);
            PyObject *text = PyObject_CallOneArg(json_value_fn, v);  /* may run Python */
            Py_DECREF(v);
            Py_DECREF(k);
            if (text == NULL) {
                rc = -1;
            } else if (!PyUnicode_Check(text)) {
                Py_DECREF(text);
                PyErr_SetString(PyExc_TypeError, "the JSON value encoder did not return a str");
                rc = -1;
            } else {
                rc = append_new(&b, text);
                if (rc == 0 && PyDict_GET_SIZE(fields) != size) rc = 1;
            }
        }
        if (rc != 0) goto out;
    }
    if ((rc = append(&b, close_doc)) == 0) return joined(&b);
out:
    release(&b);
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}


/* ------------------------------------------------------------------ _FastLogger.info's path
 * info(logger, msg, args, extra): what logs.py's _FastLogger.info does after its call, for
 * the common call only: True when done (INFO is off for the logger, or the line is held for
 * its loop iteration), the line (str) for the caller to hand to the sink's put(), or None:
 * nothing was done and the Python code decides (any other call: another handler, a filter,
 * a formatter that is not exactly ConsoleFormatter or JsonFormatter, an argument that is not
 * a str, int or float, a message that does not format, a new second of the console's time
 * text, a JSON head not made yet ...).  logs.py's Python code stays the reference
 * (tests/test_log_lines.py: the same lines and held lines over both). */

static PyObject *logs_globals;  /* the logs module's namespace: _sink, _HOLD_MAX */
static PyObject *console_cls, *json_cls, *time_module, *running_loop_fn, *reserved_keys;
static PyObject *info_level, *info_name, *s_cache, *s_disabled, *s_filters, *s_level,
    *s_formatter, *s_handlers, *s_propagate, *s_parent, *s_name, *s_time, *s_second, *s_stamp,
    *s_heads, *s_held, *s_due, *s_sink, *s_hold_max;

/* getattr(obj, name) as a new reference, or NULL with an exception set. */
#define GET(obj, name) PyObject_GetAttr((obj), (name))

/* 1: ``value`` is true, 0: false, -1: an exception. */
static int truth_of(PyObject *obj, PyObject *name) {
    PyObject *value = GET(obj, name);
    if (value == NULL) return -1;
    int t = PyObject_IsTrue(value);
    Py_DECREF(value);
    return t;
}

/* The held-or-written part: 1 if the sink alone would handle a record of ``logger`` (the
 * walk of Logger.callHandlers), 0 if not, -1 on an exception. */
static int reaches_only(PyObject *logger, PyObject *sink) {
    PyObject *at = logger, *handlers = NULL;
    Py_INCREF(at);
    for (;;) {
        handlers = GET(at, s_handlers);
        if (handlers == NULL) goto fail;
        if (!PyList_CheckExact(handlers)) goto no;
        if (PyList_GET_SIZE(handlers) != 0) break;
        int propagate = truth_of(at, s_propagate);
        if (propagate < 0) goto fail;
        if (!propagate) break;
        Py_CLEAR(handlers);
        PyObject *parent = GET(at, s_parent);
        if (parent == NULL) goto fail;
        Py_DECREF(at);
        at = parent;
        if (at == Py_None) goto no;
    }
    int only = PyList_GET_SIZE(handlers) == 1 && PyList_GET_ITEM(handlers, 0) == sink;
    Py_DECREF(handlers);
    Py_DECREF(at);
    return only;
no:
    Py_XDECREF(handlers);
    Py_DECREF(at);
    return 0;
fail:
    Py_XDECREF(handlers);
    Py_DECREF(at);
    return -1;
}

/* ``msg % args`` for the common message, ASCII whose every directive is ``%s`` or ``%d``
 * (or ``%%``) and as many arguments, each an exact str or int for ``%s``, an exact int for
 * ``%d`` (``%s`` and ``%d`` of an exact int: its str()): the pieces copied once into the
 * result; None for any other (str's % formats it), NULL on an error. */
#define MAX_PLAIN 16
static PyObject *plain_format(PyObject *msg, PyObject *args) {
    Py_ssize_t n = PyTuple_GET_SIZE(args), size = PyUnicode_GET_LENGTH(msg);
    if (n > MAX_PLAIN || !PyUnicode_IS_ASCII(msg)) Py_RETURN_NONE;
    const char *text = (const char *)PyUnicode_1BYTE_DATA(msg);
    PyObject *made[MAX_PLAIN];
    char directive[MAX_PLAIN];
    Py_ssize_t used = 0, length = 0, percent = 0;
    Py_UCS4 maxchar = 127;
    for (Py_ssize_t i = 0; i < size; i++) {  /* count and check the directives first */
        if (text[i] != '%') continue;
        if (i + 1 < size && text[i + 1] == '%') {
            percent++;
            i++;
        } else if (i + 1 < size && (text[i + 1] == 's' || text[i + 1] == 'd') && used < n) {
            directive[used++] = text[i + 1];
            i++;
        } else {
            Py_RETURN_NONE;  /* another directive, a lone %, more %s than arguments */
        }
    }
    if (used != n) Py_RETURN_NONE;  /* (str's %: not all arguments converted) */
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *arg = PyTuple_GET_ITEM(args, k);
        if (PyUnicode_CheckExact(arg) && directive[k] == 's') {
            made[k] = Py_NewRef(arg);
        } else if (PyLong_CheckExact(arg)) {
            if ((made[k] = PyObject_Str(arg)) == NULL) {
                while (k-- > 0) Py_DECREF(made[k]);
                return NULL;
            }
        } else {
            while (k-- > 0) Py_DECREF(made[k]);
            Py_RETURN_NONE;
        }
        length += PyUnicode_GET_LENGTH(made[k]);
        if (PyUnicode_MAX_CHAR_VALUE(made[k]) > maxchar) maxchar = PyUnicode_MAX_CHAR_VALUE(made[k]);
    }
    length += size - 2 * n - percent;
    PyObject *out = PyUnicode_New(length, maxchar);
    if (out != NULL) {
        Py_ssize_t at = 0, k = 0, start = 0;
        int kind = PyUnicode_KIND(out);
        void *data = PyUnicode_DATA(out);
        for (Py_ssize_t i = 0; i <= size; i++) {
            if (i < size && text[i] != '%') continue;
            if (kind == PyUnicode_1BYTE_KIND) {  /* (the common line: a copy of each run) */
                memcpy((Py_UCS1 *)data + at, text + start, (size_t)(i - start));
                at += i - start;
            } else {
                for (Py_ssize_t j = start; j < i; j++)
                    PyUnicode_WRITE(kind, data, at++, (Py_UCS1)text[j]);
            }
            if (i == size) break;
            if (text[i + 1] == '%') {
                PyUnicode_WRITE(kind, data, at++, '%');
            } else if (kind == PyUnicode_1BYTE_KIND) {  /* (every piece is 1-byte then) */
                Py_ssize_t m = PyUnicode_GET_LENGTH(made[k]);
                memcpy((Py_UCS1 *)data + at, PyUnicode_1BYTE_DATA(made[k]), (size_t)m);
                at += m;
                k++;
            } else {
                Py_ssize_t m = PyUnicode_GET_LENGTH(made[k]);
                if (PyUnicode_CopyCharacters(out, at, made[k], 0, m) < 0) {
                    Py_CLEAR(out);
                    break;
                }
                at += m;
                k++;
            }
            i++;
            start = i + 1;
        }
    }
    for (Py_ssize_t k = 0; k < n; k++) Py_DECREF(made[k]);
    return out;
}

/* The message of the call: ``msg % args`` (``msg`` when no args); NULL: none (no exception
 * left set: the Python code makes it, or reports why not). */
static PyObject *message_of(PyObject *msg, PyObject *args) {
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (n == 0) return Py_NewRef(msg);
    for (Py_ssize_t i = 0; i < n; i++) {  /* (% of these runs no Python code) */
        PyObject *arg = PyTuple_GET_ITEM(args, i);
        if (!PyUnicode_CheckExact(arg) && !PyLong_CheckExact(arg) && !PyFloat_CheckExact(arg))
            return NULL;
    }
    PyObject *message = plain_format(msg, args);
    if (message == Py_None) {  /* not a message of plain %s: str's % formats it */
        Py_DECREF(message);
        message = PyUnicode_Format(msg, args);
    }
    if (message == NULL) PyErr_Clear();  /* the Python code formats it again and reports */
    else if (!PyUnicode_CheckExact(message)) Py_CLEAR(message);
    return message;
}

static PyObject *info_line(PyObject *logger, PyObject *formatter, PyObject *msg,
                           PyObject *args, PyObject *fields);

static PyObject *info_of(PyObject *logger, PyObject *msg, PyObject *args, PyObject *extra);

static PyObject *info(PyObject *self, PyObject *const *argv, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "info(logger, msg, args, extra)");
        return NULL;
    }
    if (logs_globals == NULL) Py_RETURN_NONE;
    return info_of(argv[0], argv[1], argv[2], argv[3]);
}

static PyObject *info_of(PyObject *logger, PyObject *msg, PyObject *args, PyObject *extra) {
    PyObject *result = NULL, *cache = NULL, *sink = NULL, *formatter = NULL, *fields = NULL;
    int t;
    /* isEnabledFor's cache (a level not in it: the Python code asks isEnabledFor) */
    if ((cache = GET(logger, s_cache)) == NULL) return NULL;
    if (!PyDict_CheckExact(cache)) goto python;
    PyObject *enabled = PyDict_GetItemWithError(cache, info_level);  /* borrowed */
    if (enabled == NULL) {
        if (PyErr_Occurred()) goto done;
        goto python;
    }
    if ((t = PyObject_IsTrue(enabled)) < 0) goto done;
    if (!t) {
        result = Py_NewRef(Py_True);
        goto done;
    }
    /* the checks of _FastLogger.info, in its order */
    sink = PyDict_GetItemWithError(logs_globals, s_sink);
    if (sink == NULL) {
        if (PyErr_Occurred()) goto done;
        goto python;
    }
    Py_INCREF(sink);
    if (sink == Py_None || !PyUnicode_CheckExact(msg) || !PyTuple_CheckExact(args)
            || (extra != Py_None && !PyDict_CheckExact(extra)))
        goto python;
    if ((t = truth_of(logger, s_disabled)) != 0) goto check;
    if ((t = truth_of(logger, s_filters)) != 0) goto check;
    if ((t = truth_of(sink, s_filters)) != 0) goto check;
    PyObject *level = GET(sink, s_level);
    if (level == NULL) goto done;
    long lv = PyLong_CheckExact(level) ? PyLong_AsLong(level) : 21;
    Py_DECREF(level);
    if (lv == -1 && PyErr_Occurred()) goto done;
    if (lv > 20) goto python;
    if ((formatter = GET(sink, s_formatter)) == NULL) goto done;
    if (Py_TYPE(formatter) != (PyTypeObject *)console_cls
            && Py_TYPE(formatter) != (PyTypeObject *)json_cls)
        goto python;
    if (extra != Py_None) {  /* a key a record refuses; keys only str (their == is str's) */
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(extra, &pos, &k, &v)) {
            if (!PyUnicode_CheckExact(k)) goto python;
            if ((t = PySet_Contains(reserved_keys, k)) != 0) goto check;
        }
    }
    if (PyTuple_GET_SIZE(args) == 1) {  /* (a single mapping is the Python code's) */
        PyObject *arg = PyTuple_GET_ITEM(args, 0);
        if (!PyUnicode_CheckExact(arg) && !PyLong_CheckExact(arg) && !PyFloat_CheckExact(arg))
            goto python;
    }
    if ((t = reaches_only(logger, sink)) <= 0) goto check;
    if (extra == Py_None || PyDict_GET_SIZE(extra) == 0) {  /* (extra or {}) */
        if ((fields = PyDict_New()) == NULL) goto done;
    } else {
        fields = Py_NewRef(extra);
    }
    PyObject *line = info_line(logger, formatter, msg, args, fields);
    if (line == NULL) {
        if (PyErr_Occurred()) goto done;
        goto python;
    }
    /* held for the write of its loop iteration (_Sink.put's common case), else the caller
     * hands it to put() */
    PyObject *held = GET(sink, s_held), *due = held == NULL ? NULL : GET(sink, s_due);
    PyObject *hold_max = PyDict_GetItemWithError(logs_globals, s_hold_max);
    if (due == NULL || (hold_max == NULL && PyErr_Occurred())) {
        Py_XDECREF(held);
        Py_XDECREF(due);
        Py_DECREF(line);
        goto done;
    }
    long most = hold_max != NULL && PyLong_CheckExact(hold_max) ? PyLong_AsLong(hold_max) : 0;
    if (most == -1 && PyErr_Occurred()) PyErr_Clear();
    result = line;
    if (due != Py_None && PyList_CheckExact(held) && PyList_GET_SIZE(held) < most - 1) {
        PyObject *loop = PyObject_CallNoArgs(running_loop_fn);
        if (loop == NULL) {
            Py_CLEAR(result);
        } else {
            if (loop == due) {
                if (PyList_Append(held, line) < 0) {
                    Py_CLEAR(result);
                } else {
                    Py_DECREF(line);
                    result = Py_NewRef(Py_True);
                }
            }
            Py_DECREF(loop);
        }
    }
    Py_DECREF(held);
    Py_DECREF(due);
    goto done;
check:  /* t: 1, the Python code decides; -1, an exception */
    if (t < 0) goto done;
python:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(cache);
    Py_XDECREF(sink);
    Py_XDECREF(formatter);
    Py_XDECREF(fields);
    return result;
}

/* The line of the call (the formatter's line()), or NULL: with an exception set, or without
 * one when it is the Python code's to make. */
static PyObject *info_line(PyObject *logger, PyObject *formatter, PyObject *msg,
                           PyObject *args, PyObject *fields) {
    PyObject *name = GET(logger, s_name), *line = NULL, *message = NULL, *now = NULL;
    if (name == NULL) return NULL;
    if (!PyUnicode_CheckExact(name)) goto out;
    PyObject *clock = GET(time_module, s_time);  /* time.time(), as the Python code calls it */
    if (clock == NULL) goto out;
    now = PyObject_CallNoArgs(clock);
    Py_DECREF(clock);
    if (now == NULL || !PyFloat_CheckExact(now)) goto out;
    double created = PyFloat_AS_DOUBLE(now);
    if (!(created >= 0 && created < 9e15)) goto out;
    if ((message = message_of(msg, args)) == NULL) goto out;
    long long second = (long long)created;  /* int(created) */
    if (Py_TYPE(formatter) == (PyTypeObject *)console_cls) {
        /* int((created - int(created)) * 1000) */
        long ms = (long)((created - (double)second) * 1000);
        PyObject *known = GET(formatter, s_second);
        if (known == NULL) goto out;
        int same = PyLong_CheckExact(known) && PyLong_AsLongLong(known) == second;
        Py_DECREF(known);
        if (PyErr_Occurred()) goto out;
        if (!same || ms < 0 || ms > 999) goto out;  /* a new second: the Python code's */
        PyObject *stamp = GET(formatter, s_stamp);
        if (stamp == NULL) goto out;
        if (PyUnicode_CheckExact(stamp)) {
            line = console_line(stamp, ms, info_name, name, message, fields);
            if (line == Py_None) Py_CLEAR(line);
        }
        Py_DECREF(stamp);
    } else {
        PyObject *heads = GET(formatter, s_heads);
        if (heads == NULL) goto out;
        PyObject *key = PyDict_CheckExact(heads) ? PyTuple_Pack(2, info_name, name) : NULL;
        PyObject *head = key == NULL ? NULL : PyDict_GetItemWithError(heads, key);
        Py_XDECREF(key);
        if (head != NULL && PyUnicode_CheckExact(head)) {
            Py_INCREF(head);
            PyObject *parts[4] = {now, head, message, fields};
            line = json(NULL, parts, 4);
            Py_DECREF(head);
            if (line == Py_None) Py_CLEAR(line);
        }
        Py_DECREF(heads);
    }
out:
    Py_DECREF(name);
    Py_XDECREF(message);
    Py_XDECREF(now);
    return line;
}

/* _FastLogger.info itself (a method descriptor of the class, made by info_method()): the
 * Python method's common call, log.info(msg, *args) or log.info(msg, *args, extra=...),
 * without its frame, the packing of its keywords and the call of info(): info_of()'s answer
 * handled as the Python method handles info()'s (True: done; a line: _put(); None:
 * _general_info()).  Any other call (another keyword, no msg, logs._info set to None) is the
 * Python method's own, with the call's arguments.  The frames a record's caller lookup
 * walks are the Python method's less its own: _put() is given stacklevel 0 and
 * _general_info() 1 (the Python method gives them 1 and 2). */
static PyObject *general_info;  /* the Python method (_FastLogger.info) */
static PyObject *s_info, *s_put, *s_general, *s_extra, *zero, *one;

/* fn(self, *args, **kwnames' values): a call made to the method descriptor, passed on. */
static PyObject *call_with_self(PyObject *fn, PyObject *self, PyObject *const *args,
                                Py_ssize_t nargs, PyObject *kwnames) {
    Py_ssize_t n = nargs + (kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames));
    PyObject *small[16], **all = n + 1 <= 16 ? small : PyMem_New(PyObject *, (size_t)n + 1);
    if (all == NULL) return PyErr_NoMemory();
    all[0] = self;
    for (Py_ssize_t i = 0; i < n; i++) all[i + 1] = args[i];
    PyObject *r = PyObject_Vectorcall(fn, all, (size_t)nargs + 1, kwnames);
    if (all != small) PyMem_Free(all);
    return r;
}

static PyObject *python_info(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames) {
    return call_with_self(general_info, self, args, nargs, kwnames);
}

static PyObject *info_call(PyObject *self, PyObject *const *args, size_t nargsf,
                           PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *extra = Py_None, *fast;
    if (general_info == NULL || logs_globals == NULL || nargs < 1)
        return python_info(self, args, nargs, kwnames);
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, 0);
        if (PyTuple_GET_SIZE(kwnames) != 1
                || (k != s_extra && !(PyUnicode_Check(k) && PyUnicode_Compare(k, s_extra) == 0)))
            return python_info(self, args, nargs, kwnames);
        extra = args[nargs];
    }
    /* logs._info: None turns the compiled path off (the tests' switch), as in the method */
    if ((fast = PyDict_GetItemWithError(logs_globals, s_info)) == NULL) {
        if (PyErr_Occurred()) return NULL;
        return python_info(self, args, nargs, kwnames);
    }
    if (fast == Py_None) return python_info(self, args, nargs, kwnames);
    PyObject *msg = args[0], *rest = PyTuple_New(nargs - 1), *done, *r = NULL;
    if (rest == NULL) return NULL;
    for (Py_ssize_t i = 1; i < nargs; i++) PyTuple_SET_ITEM(rest, i - 1, Py_NewRef(args[i]));
    if ((done = info_of(self, msg, rest, extra)) == NULL) goto out;
    if (done == Py_True) {
        r = Py_NewRef(Py_None);
        goto out;
    }
    if (PyUnicode_CheckExact(done)) {
        PyObject *sink = PyDict_GetItemWithError(logs_globals, s_sink);  /* borrowed */
        if (sink == NULL && PyErr_Occurred()) goto out;
        if (sink != NULL && sink != Py_None) {
            PyObject *call[7] = {self, sink, done, msg, rest, zero, extra};
            r = PyObject_VectorcallMethod(s_put, call, 7, NULL);
            goto out;
        }
    }
    PyObject *call[7] = {self, msg, rest, Py_None, Py_False, one, extra};
    r = PyObject_VectorcallMethod(s_general, call, 7, NULL);
out:
    Py_XDECREF(done);
    Py_DECREF(rest);
    if (r != NULL && r != Py_None) Py_SETREF(r, Py_NewRef(Py_None));  /* (the method's) */
    return r;
}

static PyMethodDef info_def = {
    "info", (PyCFunction)(void (*)(void))info_call, METH_FASTCALL | METH_KEYWORDS,
    "Log msg % args at INFO (logging.Logger.info): the compiled common call of "
    "mcacm_sip.cli.logs._FastLogger.info.",
};

/* info_method(cls, python_info) -> the method descriptor of cls named info (info_call). */
static PyObject *info_method(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyType_Check(args[0]) || !PyCallable_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "info_method(cls, python_info)");
        return NULL;
    }
    Py_XSETREF(general_info, Py_NewRef(args[1]));
    return PyDescr_NewMethod((PyTypeObject *)args[0], &info_def);
}

static PyObject *configure_info(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6 || !PyDict_Check(args[0]) || !PyType_Check(args[1]) || !PyType_Check(args[2])
            || !PyCallable_Check(args[4]) || !PyAnySet_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "configure_info(logs_globals, ConsoleFormatter, "
                        "JsonFormatter, time_module, running_loop, reserved_keys)");
        return NULL;
    }
    PyObject **slots[6] = {&logs_globals, &console_cls, &json_cls, &time_module,
                           &running_loop_fn, &reserved_keys};
    for (int i = 0; i < 6; i++) Py_XSETREF(*slots[i], Py_NewRef(args[i]));
    Py_RETURN_NONE;
}

static PyObject *configure(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "configure(printable, json_string, json_value)");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < 3; i++)
        if (!PyCallable_Check(args[i])) {
            PyErr_SetString(PyExc_TypeError, "configure() takes three callables");
            return NULL;
        }
    Py_INCREF(args[0]);
    Py_INCREF(args[1]);
    Py_INCREF(args[2]);
    Py_XSETREF(printable_fn, args[0]);
    Py_XSETREF(json_string_fn, args[1]);
    Py_XSETREF(json_value_fn, args[2]);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"console", (PyCFunction)(void (*)(void))console, METH_FASTCALL,
     "console(stamp, msecs, levelname, name, message, fields): the console line, or None for the Python code to make"},
    {"json", (PyCFunction)(void (*)(void))json, METH_FASTCALL,
     "json(created, head, message, fields): the JSON line, or None for the Python code to make"},
    {"info", (PyCFunction)(void (*)(void))info, METH_FASTCALL,
     "info(logger, msg, args, extra): _FastLogger.info's common path; True (done), the line to put(), or None for the Python code"},
    {"info_method", (PyCFunction)(void (*)(void))info_method, METH_FASTCALL,
     "info_method(cls, python_info): _FastLogger.info's compiled method (a descriptor of cls); its other calls go to python_info"},
    {"configure_info", (PyCFunction)(void (*)(void))configure_info, METH_FASTCALL,
     "configure_info(logs_globals, ConsoleFormatter, JsonFormatter, time_module, running_loop, reserved_keys)"},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_FASTCALL,
     "configure(printable, json_string, json_value): the Python functions for the rest"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "mcacm_sip.cli._logline", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__logline(void) {
    init_tables();
    struct { PyObject **slot; const char *text; } texts[] = {
        {&own_keys[0], "ts"}, {&own_keys[1], "level"}, {&own_keys[2], "logger"},
        {&own_keys[3], "msg"}, {&after_name, ": "}, {&open_doc, "{\"ts\": "}, {&event_key, "event"}, {&open_fields, "  ["}, {&close_fields, "]"},
        {&eq, "="}, {&space, " "}, {&quote, "\""}, {&colon, ": "}, {&comma, ", "},
        {&close_doc, "}"}, {&true_text, "true"}, {&false_text, "false"},
        {&info_name, "INFO"}, {&s_cache, "_cache"}, {&s_disabled, "disabled"},
        {&s_filters, "filters"}, {&s_level, "level"}, {&s_formatter, "formatter"},
        {&s_handlers, "handlers"}, {&s_propagate, "propagate"}, {&s_parent, "parent"},
        {&s_name, "name"}, {&s_time, "time"}, {&s_second, "_second"}, {&s_stamp, "_stamp"},
        {&s_heads, "_heads"}, {&s_held, "held"}, {&s_due, "due"}, {&s_sink, "_sink"},
        {&s_hold_max, "_HOLD_MAX"}, {&s_info, "_info"}, {&s_put, "_put"},
        {&s_general, "_general_info"}, {&s_extra, "extra"},
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        if (*texts[i].slot == NULL && (*texts[i].slot = PyUnicode_InternFromString(texts[i].text)) == NULL)
            return NULL;
    if (info_level == NULL && (info_level = PyLong_FromLong(20)) == NULL) return NULL;
    if (zero == NULL && (zero = PyLong_FromLong(0)) == NULL) return NULL;
    if (one == NULL && (one = PyLong_FromLong(1)) == NULL) return NULL;
    return PyModule_Create(&module);
}
