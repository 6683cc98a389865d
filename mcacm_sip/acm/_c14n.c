/* The exclusive canonical form (Exclusive XML Canonicalization 1.0, comments omitted) of one
 * element of a received document, written from the document's bytes: the text libxml2's C14N
 * writes for that element (mcacm_sip/acm/codec.py, _canonical), without building it.
 *
 * canonical(data, namespace, local) -> str | None
 *
 * ``data`` is a document the hardened parser (mcacm_sip/acm/xmlsafe.py) has accepted: UTF-8,
 * well-formed, namespace-well-formed, no DOCTYPE (so no entity but the five predefined ones).
 * The element is the one element of the document with the expanded name {namespace}local.
 * Whatever this code does not write with certainty gives None, and the caller runs libxml2:
 * an encoding other than UTF-8, XML 1.1, a CDATA section or a processing instruction inside
 * the element, no such element or more than one, a prefix not declared, a namespace name
 * outside the plain absolute form checked below (libxml2's C14N refuses relative ones and
 * writes others unescaped), a name with two colons, caps exceeded.  tests/test_acm_c14n.py
 * holds the text equal to libxml2's for generated documents.
 *
 * The rules (W3C Canonical XML 1.0 and Exclusive XML Canonicalization 1.0, as libxml2's
 * c14n.c applies them to a parsed tree):
 * - text: references expanded, line ends CRLF and CR read as LF (XML 1.0 2.11), then
 *   & < > and CR written as &amp; &lt; &gt; &#xD;; comments dropped;
 * - attributes: the value normalised (XML 1.0 3.3.3: a literal tab, LF or CR, a CRLF pair
 *   once, becomes a space; references expanded after), then & < " tab LF CR written as
 *   &amp; &lt; &quot; &#x9; &#xA; &#xD;, in double quotes; sorted: no namespace first (by
 *   local name), then by namespace name, then by local name;
 * - namespace declarations: a prefix (or the default) is written on an element that uses it
 *   (its own name or one of its attributes', "visibly utilized") unless the nearest output
 *   ancestor that used it has the same value; the default namespace's "no value" is "" and
 *   is written as xmlns="" only where an ancestor's output set another; sorted by prefix, the
 *   default first; the xml prefix never;
 * - an empty-element tag is written as a start and an end tag; white space inside tags is
 *   dropped.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <string.h>

typedef unsigned char u8;

#define MAX_DEPTH 256       /* libxml2 refuses deeper documents itself */
#define MAX_BINDINGS 512    /* namespace declarations in scope at once */
#define MAX_ATTRS 128       /* attributes and declarations on one element */

static const u8 XML_NS[] = "http://www.w3.org/XML/1998/namespace";
#define XML_NS_LEN (sizeof(XML_NS) - 1)

typedef struct {
    const u8 *p;
    size_t n;
} Span;

typedef struct {
    const u8 *p, *end;
} Cur;

typedef struct {
    Span prefix;            /* n == 0: the default namespace */
    Span uri;               /* n == 0: no namespace (xmlns="") */
    int depth;
} Binding;

typedef struct {
    Span qname, prefix, local, value;
    Span uri;               /* the attribute's namespace; p == NULL: none */
} Attr;

typedef struct {
    u8 *b;
    size_t n, cap;
} Out;

typedef struct {
    Cur c;
    Span want_ns, want_local;
    Binding scope[MAX_BINDINGS];      /* declarations in scope, innermost last */
    int nscope;
    Binding shown[MAX_BINDINGS];      /* namespaces the output ancestors used, innermost last */
    int nshown;
    Span names[MAX_DEPTH + 1];        /* the open elements' names */
    int depth;
    int inside;                       /* depth of the element written, 0 outside it */
    int found;                        /* elements with the wanted name */
    Out out;
} Scan;

/* ---------------------------------------------------------------------- output */

static int grow_slow(Out *o, size_t more) {
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->n + more) {
        if (cap > ((size_t)PY_SSIZE_T_MAX) / 2)
            return 0;
        cap *= 2;
    }
    u8 *b = PyMem_Realloc(o->b, cap);
    if (b == NULL)
        return 0;
    o->b = b;
    o->cap = cap;
    return 1;
}

#if defined(__GNUC__)
#define HOT inline __attribute__((always_inline))
#else
#define HOT inline
#endif

static HOT int grow(Out *o, size_t more) {
    return o->n + more <= o->cap || grow_slow(o, more);
}

static HOT int put(Out *o, const void *s, size_t n) {
    if (!grow(o, n))
        return 0;
    memcpy(o->b + o->n, s, n);
    o->n += n;
    return 1;
}

#define PUTS(o, lit) put((o), (lit), sizeof(lit) - 1)

static HOT int put1(Out *o, u8 c) {
    if (!grow(o, 1))
        return 0;
    o->b[o->n++] = c;
    return 1;
}

/* ---------------------------------------------------------------------- lexing */

/* Character classes, one table lookup per byte.  Every PyBytes buffer ends with a NUL, in
 * none of the classes' runs, so the loops stop there without a bounds check (a NUL in the
 * data itself is not XML: the scan gives up on it). */
enum {
    C_SPACE = 1,      /* XML white space */
    C_NAME_END = 2,   /* ends a name: white space, '=', '/', '>' */
    C_NAME_BAD = 4,   /* not in a name here: '<', quotes, '&', NUL; and ':' (looked at) */
    C_TEXT = 8,       /* written specially in text: '&', '>', CR, and '<' (ends it), NUL */
    C_ATTR = 16,      /* written specially in a value: '&', '<', '"', tab, LF, CR; "'"; NUL */
};

static u8 CLASS[256];

static void init_classes(void) {
    const char *space = " \t\n\r";
    for (const char *c = space; *c; c++)
        CLASS[(u8)*c] |= C_SPACE | C_NAME_END;
    CLASS['='] |= C_NAME_END;
    CLASS['/'] |= C_NAME_END;
    CLASS['>'] |= C_NAME_END | C_TEXT;
    CLASS['<'] |= C_NAME_BAD | C_TEXT | C_ATTR;
    CLASS['"'] |= C_NAME_BAD | C_ATTR;
    CLASS['\''] |= C_NAME_BAD | C_ATTR;
    CLASS['&'] |= C_NAME_BAD | C_TEXT | C_ATTR;
    CLASS[':'] |= C_NAME_BAD;
    CLASS['\r'] |= C_TEXT | C_ATTR;
    CLASS['\t'] |= C_ATTR;
    CLASS['\n'] |= C_ATTR;
    CLASS[0] |= C_NAME_BAD | C_TEXT | C_ATTR;
}

static inline int is_space(u8 c) {
    return c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D;
}

static inline void skip_space(Cur *c) {
    while (CLASS[*c->p] & C_SPACE)  /* (stops at the final NUL) */
        c->p++;
}

static inline int span_eq(Span a, Span b) {
    return a.n == b.n && (a.p == b.p || a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

static inline int span_is(Span a, const char *lit) {
    size_t n = strlen(lit);
    return a.n == n && memcmp(a.p, lit, n) == 0;
}

/* strcmp's order on two NUL-free strings */
static int span_cmp(Span a, Span b) {
    size_t n = a.n < b.n ? a.n : b.n;
    int c = n ? memcmp(a.p, b.p, n) : 0;
    if (c != 0)
        return c;
    return a.n < b.n ? -1 : a.n > b.n;
}

/* Find ``lit`` from s->c.p on; leaves s->c.p after it. */
static int skip_past(Cur *s, const char *lit) {
    size_t n = strlen(lit);
    while ((size_t)(s->end - s->p) >= n) {
        const u8 *q = memchr(s->p, lit[0], (size_t)(s->end - s->p) - n + 1);
        if (q == NULL)
            break;
        if (memcmp(q, lit, n) == 0) {
            s->p = q + n;
            return 1;
        }
        s->p = q + 1;
    }
    return 0;
}

/* A name, up to white space, '=', '/' or '>'; split at its one colon, if any. */
static int read_name(Cur *s, Span *qname, Span *prefix, Span *local) {
    const u8 *start = s->p, *q = s->p, *colon = NULL;
    for (;;) {
        while (!(CLASS[*q] & (C_NAME_END | C_NAME_BAD)))
            q++;
        if (*q != ':' || colon != NULL || q >= s->end)
            break;
        colon = q++;
    }
    s->p = q;
    if (q >= s->end || q == start || !(CLASS[*q] & C_NAME_END))
        return 0;
    qname->p = start;
    qname->n = (size_t)(q - start);
    if (colon == NULL) {
        prefix->p = start;
        prefix->n = 0;
        *local = *qname;
    } else {
        if (colon == start || colon + 1 == q)
            return 0;
        prefix->p = start;
        prefix->n = (size_t)(colon - start);
        local->p = colon + 1;
        local->n = (size_t)(q - colon - 1);
    }
    return 1;
}

/* A reference after its '&' (s->p at the character after '&'): its character's UTF-8 bytes
 * into ``u`` (returns their count), 0 for anything but a character reference to an XML Char
 * or one of the five predefined entities. */
static int read_reference(Cur *s, u8 u[4]) {
    const u8 *q = s->p;
    unsigned long cp = 0;
    if (q < s->end && *q == '#') {
        q++;
        int hex = q < s->end && *q == 'x';
        int digits = 0;
        if (hex)
            q++;
        while (q < s->end && *q != ';') {
            u8 c = *q;
            int d;
            if (c >= '0' && c <= '9')
                d = c - '0';
            else if (hex && c >= 'a' && c <= 'f')
                d = c - 'a' + 10;
            else if (hex && c >= 'A' && c <= 'F')
                d = c - 'A' + 10;
            else
                return 0;
            if (++digits > 8)
                return 0;
            cp = cp * (hex ? 16 : 10) + (unsigned long)d;
            q++;
        }
        if (q == s->end || digits == 0)
            return 0;
        if (!(cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF)
              || (cp >= 0xE000 && cp <= 0xFFFD) || (cp >= 0x10000 && cp <= 0x10FFFF)))
            return 0;
        s->p = q + 1;
        if (cp < 0x80) {
            u[0] = (u8)cp;
            return 1;
        }
        if (cp < 0x800) {
            u[0] = (u8)(0xC0 | (cp >> 6));
            u[1] = (u8)(0x80 | (cp & 0x3F));
            return 2;
        }
        if (cp < 0x10000) {
            u[0] = (u8)(0xE0 | (cp >> 12));
            u[1] = (u8)(0x80 | ((cp >> 6) & 0x3F));
            u[2] = (u8)(0x80 | (cp & 0x3F));
            return 3;
        }
        u[0] = (u8)(0xF0 | (cp >> 18));
        u[1] = (u8)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (u8)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (u8)(0x80 | (cp & 0x3F));
        return 4;
    }
    static const struct { const char *name; u8 c; } predefined[] = {
        {"amp;", '&'}, {"lt;", '<'}, {"gt;", '>'}, {"quot;", '"'}, {"apos;", '\''}};
    for (size_t i = 0; i < sizeof(predefined) / sizeof(predefined[0]); i++) {
        size_t n = strlen(predefined[i].name);
        if ((size_t)(s->end - q) >= n && memcmp(q, predefined[i].name, n) == 0) {
            s->p = q + n;
            u[0] = predefined[i].c;
            return 1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------- namespaces */

/* A namespace name libxml2's C14N takes as absolute and writes as it is (it refuses a
 * relative one, and writes &, < and " unescaped): RFC 3986's scheme ":" then either "//"
 * host [":" port] and a path, or a path not starting with "//"; host [A-Za-z0-9.-]+; path
 * of pchar and "/", then optionally "?" query and "#" fragment of pchar, "/" and "?" (pchar
 * without percent-encoding, "&" and "'").  Anything else goes to libxml2. */
static int plain_uri(Span u) {
    const u8 *p = u.p, *end = u.p + u.n;
    if (p == end || !((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
        return 0;
    while (p < end && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                       || (*p >= '0' && *p <= '9') || *p == '+' || *p == '-' || *p == '.'))
        p++;
    if (p == end || *p != ':')
        return 0;
    p++;
    if (end - p >= 2 && p[0] == '/' && p[1] == '/') {
        p += 2;
        const u8 *host = p;
        while (p < end && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                           || (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'))
            p++;
        if (p == host)
            return 0;
        if (p < end && *p == ':') {
            const u8 *port = ++p;
            while (p < end && *p >= '0' && *p <= '9')
                p++;
            if (p == port || p - port > 5)
                return 0;
        }
        if (p < end && *p != '/')
            return 0;
    }
    int part = 0;  /* 0 path, 1 query, 2 fragment */
    for (; p < end; p++) {
        u8 c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            continue;
        if (c == '?' && part == 0)
            part = 1;
        else if (c == '#' && part < 2)
            part = 2;
        else if (c == 0 || strchr(part ? "-._~!$()*+,;=:@/?" : "-._~!$()*+,;=:@/", c) == NULL)
            return 0;
    }
    return 1;
}

/* The value a prefix (n == 0: the default) is bound to at this point; NULL if unbound. */
static const Binding *bound(const Binding *stack, int n, Span prefix) {
    for (int i = n - 1; i >= 0; i--)
        if (span_eq(stack[i].prefix, prefix))
            return &stack[i];
    return NULL;
}

/* ---------------------------------------------------------------------- the element */

static int write_attr_value(Out *o, Span v) {
    Cur sub;
    u8 u[4];
    sub.p = v.p;
    sub.end = v.p + v.n;
    while (sub.p < sub.end) {
        const u8 *run = sub.p;
        while (!(CLASS[*sub.p] & C_ATTR))
            sub.p++;
        if (sub.p > sub.end)
            sub.p = sub.end;  /* (the value's closing quote is in the class) */
        if (!put(o, run, (size_t)(sub.p - run)))
            return -1;
        if (sub.p == sub.end)
            break;
        u8 c = *sub.p++;
        int n = 1;
        if (c == '&') {
            n = read_reference(&sub, u);
            if (n == 0)
                return 0;
        } else if (c == '<') {
            return 0;  /* not well-formed: the parser took something else */
        } else if (c == '\t' || c == '\n' || c == '\r') {
            /* attribute-value normalisation: literal white space is a space, CRLF one */
            if (c == '\r' && sub.p < sub.end && *sub.p == '\n')
                sub.p++;
            u[0] = ' ';
        } else if (c == 0) {
            return 0;
        } else {
            u[0] = c;  /* a quote inside the other quotes */
        }
        for (int i = 0; i < n; i++) {
            int ok;
            switch (u[i]) {
            case '&': ok = PUTS(o, "&amp;"); break;
            case '<': ok = PUTS(o, "&lt;"); break;
            case '"': ok = PUTS(o, "&quot;"); break;
            case '\t': ok = PUTS(o, "&#x9;"); break;
            case '\n': ok = PUTS(o, "&#xA;"); break;
            case '\r': ok = PUTS(o, "&#xD;"); break;
            default: ok = put1(o, u[i]);
            }
            if (!ok)
                return -1;
        }
    }
    return 1;
}

static int attr_cmp(const Attr *a, const Attr *b) {
    if (a->uri.p == NULL || b->uri.p == NULL) {
        if (a->uri.p != NULL)
            return 1;
        if (b->uri.p != NULL)
            return -1;
        return span_cmp(a->local, b->local);
    }
    int c = span_cmp(a->uri, b->uri);
    return c != 0 ? c : span_cmp(a->local, b->local);
}

/* Mark ``prefix``/``uri`` used by the element at ``depth``: 1 when it must be declared there
 * (no output ancestor used the prefix with this value), 0 when not, -1 past the cap. */
static int use_namespace(Scan *s, Span prefix, Span uri, int depth) {
    const Binding *was = bound(s->shown, s->nshown, prefix);
    int declare;
    if (was == NULL)
        declare = !(prefix.n == 0 && uri.n == 0);  /* the default starts as "no namespace" */
    else
        declare = !span_eq(was->uri, uri);
    if (!declare)
        return 0;  /* (what the descendants see is already on the stack) */
    if (s->nshown == MAX_BINDINGS)
        return -1;
    s->shown[s->nshown].prefix = prefix;
    s->shown[s->nshown].uri = uri;
    s->shown[s->nshown].depth = depth;
    s->nshown++;
    return declare;
}

/* A start tag after its '<'.  Returns 1 on success, 0 to give up. */
static int start_tag(Scan *s) {
    Attr attrs[MAX_ATTRS];
    int nattrs = 0;
    Span qname, prefix, local;
    if (!read_name(&s->c, &qname, &prefix, &local))
        return 0;
    if (s->depth == MAX_DEPTH)
        return 0;
    int depth = ++s->depth;
    s->names[depth] = qname;
    int empty = 0;
    for (;;) {
        const u8 *before = s->c.p;
        skip_space(&s->c);
        if (s->c.p == s->c.end)
            return 0;
        if (*s->c.p == '>') {
            s->c.p++;
            break;
        }
        if (*s->c.p == '/') {
            if (s->c.end - s->c.p < 2 || s->c.p[1] != '>')
                return 0;
            s->c.p += 2;
            empty = 1;
            break;
        }
        if (s->c.p == before || nattrs == MAX_ATTRS)
            return 0;
        Attr *a = &attrs[nattrs++];
        if (!read_name(&s->c, &a->qname, &a->prefix, &a->local))
            return 0;
        skip_space(&s->c);
        if (s->c.p == s->c.end || *s->c.p != '=')
            return 0;
        s->c.p++;
        skip_space(&s->c);
        if (s->c.p == s->c.end || (*s->c.p != '"' && *s->c.p != '\''))
            return 0;
        u8 quote = *s->c.p++;
        const u8 *q = memchr(s->c.p, quote, (size_t)(s->c.end - s->c.p));
        if (q == NULL)
            return 0;
        a->value.p = s->c.p;
        a->value.n = (size_t)(q - s->c.p);
        a->uri.p = NULL;
        a->uri.n = 0;
        s->c.p = q + 1;
        /* a namespace declaration: in scope from this element on */
        Span declared;
        if (a->prefix.n == 0 && span_is(a->local, "xmlns")) {
            declared.p = a->local.p;
            declared.n = 0;
        } else if (span_is(a->prefix, "xmlns")) {
            declared = a->local;
            if (span_is(declared, "xml") || span_is(declared, "xmlns") || a->value.n == 0)
                return 0;
        } else {
            continue;
        }
        if (a->value.n != 0 && !plain_uri(a->value))
            return 0;
        if (a->value.n == XML_NS_LEN && memcmp(a->value.p, XML_NS, XML_NS_LEN) == 0)
            return 0;
        if (s->nscope == MAX_BINDINGS)
            return 0;
        s->scope[s->nscope].prefix = declared;
        s->scope[s->nscope].uri = a->value;
        s->scope[s->nscope].depth = depth;
        s->nscope++;
        a->qname.n = 0;  /* not an attribute */
    }

    /* the element's namespace */
    Span uri = {NULL, 0};
    if (span_is(prefix, "xml") || span_is(prefix, "xmlns"))
        return 0;
    const Binding *b = bound(s->scope, s->nscope, prefix);
    if (b != NULL)
        uri = b->uri;
    else if (prefix.n != 0)
        return 0;  /* an undeclared prefix */
    if (uri.n != 0 && span_eq(local, s->want_local) && span_eq(uri, s->want_ns)) {
        if (++s->found > 1)
            return 0;
        s->inside = depth;
        s->nshown = 0;
        s->out.n = 0;
    }
    if (s->inside == 0) {
        for (int i = 0; i < nattrs; i++)
            if (attrs[i].qname.n != 0 && attrs[i].prefix.n != 0
                && !span_is(attrs[i].prefix, "xml")
                && bound(s->scope, s->nscope, attrs[i].prefix) == NULL)
                return 0;
        return empty ? 2 : 1;
    }

    /* inside the element written: its start tag */
    Span declare[MAX_ATTRS + 1];
    Span declare_uri[MAX_ATTRS + 1];
    int ndeclare = 0;
    int r = use_namespace(s, prefix, uri, depth);
    if (r < 0)
        return 0;
    if (r) {
        declare[ndeclare] = prefix;
        declare_uri[ndeclare++] = uri;
    }
    int n = 0;
    for (int i = 0; i < nattrs; i++) {
        Attr *a = &attrs[i];
        if (a->qname.n == 0)
            continue;
        if (a->prefix.n != 0) {
            if (span_is(a->prefix, "xmlns"))
                return 0;
            if (span_is(a->prefix, "xml")) {
                a->uri.p = XML_NS;
                a->uri.n = XML_NS_LEN;
            } else {
                const Binding *ab = bound(s->scope, s->nscope, a->prefix);
                if (ab == NULL || ab->uri.n == 0)
                    return 0;
                a->uri = ab->uri;
                r = use_namespace(s, a->prefix, a->uri, depth);
                if (r < 0)
                    return 0;
                if (r) {
                    declare[ndeclare] = a->prefix;
                    declare_uri[ndeclare++] = a->uri;
                }
            }
        }
        attrs[n++] = *a;
    }
    /* declarations by prefix, the default first; attributes by namespace name, local name */
    for (int i = 1; i < ndeclare; i++)
        for (int j = i; j > 0 && span_cmp(declare[j - 1], declare[j]) > 0; j--) {
            Span t = declare[j]; declare[j] = declare[j - 1]; declare[j - 1] = t;
            t = declare_uri[j]; declare_uri[j] = declare_uri[j - 1]; declare_uri[j - 1] = t;
        }
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0; j--) {
            int c = attr_cmp(&attrs[j - 1], &attrs[j]);
            if (c == 0)
                return 0;  /* one expanded name twice */
            if (c < 0)
                break;
            Attr t = attrs[j]; attrs[j] = attrs[j - 1]; attrs[j - 1] = t;
        }
    Out *o = &s->out;
    if (!put1(o, '<') || !put(o, qname.p, qname.n))
        return -1;
    for (int i = 0; i < ndeclare; i++) {
        if (declare[i].n == 0) {
            if (!PUTS(o, " xmlns=\""))
                return -1;
        } else if (!PUTS(o, " xmlns:") || !put(o, declare[i].p, declare[i].n) || !PUTS(o, "=\"")) {
            return -1;
        }
        if (!put(o, declare_uri[i].p, declare_uri[i].n) || !PUTS(o, "\""))
            return -1;
    }
    for (int i = 0; i < n; i++) {
        if (!PUTS(o, " ") || !put(o, attrs[i].qname.p, attrs[i].qname.n) || !PUTS(o, "=\""))
            return -1;
        int w = write_attr_value(o, attrs[i].value);
        if (w <= 0)
            return w;
        if (!PUTS(o, "\""))
            return -1;
    }
    if (!put1(o, '>'))
        return -1;
    if (empty) {
        if (!PUTS(o, "</") || !put(o, qname.p, qname.n) || !PUTS(o, ">"))
            return -1;
    }
    return empty ? 2 : 1;
}

/* Leave the element at s->depth: its declarations go out of scope. */
static void end_element(Scan *s) {
    int depth = s->depth;
    while (s->nscope > 0 && s->scope[s->nscope - 1].depth >= depth)
        s->nscope--;
    while (s->nshown > 0 && s->shown[s->nshown - 1].depth >= depth)
        s->nshown--;
    if (s->inside == depth)
        s->inside = 0;
    s->depth--;
}

/* Character data up to the next '<', written when inside the element. */
static int text(Scan *s) {
    if (s->inside == 0) {
        const u8 *stop = memchr(s->c.p, '<', (size_t)(s->c.end - s->c.p));
        s->c.p = stop == NULL ? s->c.end : stop;
        return 1;
    }
    Out *o = &s->out;
    u8 u[4];
    for (;;) {
        const u8 *run = s->c.p;
        while (!(CLASS[*s->c.p] & C_TEXT))
            s->c.p++;
        if (!put(o, run, (size_t)(s->c.p - run)))
            return -1;
        u8 c = *s->c.p;
        if (c == '<' || c == 0)
            break;  /* the next markup, or the end (a NUL: gives up in the scan) */
        s->c.p++;
        int n = 1;
        if (c == '&') {
            Cur sub = {s->c.p, s->c.end};
            n = read_reference(&sub, u);
            if (n == 0)
                return 0;
            s->c.p = sub.p;
        } else if (c == '\r') {
            /* XML 1.0 2.11: CRLF and a lone CR are read as LF */
            if (*s->c.p == '\n')
                s->c.p++;
            u[0] = '\n';
        } else {
            u[0] = c;
        }
        for (int i = 0; i < n; i++) {
            int ok;
            switch (u[i]) {
            case '&': ok = PUTS(o, "&amp;"); break;
            case '<': ok = PUTS(o, "&lt;"); break;
            case '>': ok = PUTS(o, "&gt;"); break;
            case '\r': ok = PUTS(o, "&#xD;"); break;
            default: ok = put1(o, u[i]);
            }
            if (!ok)
                return -1;
        }
    }
    return *s->c.p == 0 && s->c.p < s->c.end ? 0 : 1;  /* a NUL in the data: not XML */
}

/* The XML declaration's pseudo-attributes: version 1.0, encoding UTF-8 if any. */
static int declaration(Cur *c) {
    const u8 *close = NULL;
    for (const u8 *q = c->p; q + 1 < c->end; q++)
        if (q[0] == '?' && q[1] == '>') {
            close = q;
            break;
        }
    if (close == NULL)
        return 0;
    Cur sub = {c->p, close};
    int version = 0;
    for (;;) {
        skip_space(&sub);
        if (sub.p == sub.end)
            break;
        const u8 *name = sub.p;
        while (sub.p < sub.end && *sub.p >= 'a' && *sub.p <= 'z')
            sub.p++;
        Span key = {name, (size_t)(sub.p - name)};
        skip_space(&sub);
        if (sub.p == sub.end || *sub.p != '=')
            return 0;
        sub.p++;
        skip_space(&sub);
        if (sub.p == sub.end || (*sub.p != '"' && *sub.p != '\''))
            return 0;
        u8 quote = *sub.p++;
        const u8 *q = memchr(sub.p, quote, (size_t)(sub.end - sub.p));
        if (q == NULL)
            return 0;
        Span value = {sub.p, (size_t)(q - sub.p)};
        sub.p = q + 1;
        if (span_is(key, "version")) {
            if (!span_is(value, "1.0"))
                return 0;
            version = 1;
        } else if (span_is(key, "encoding")) {
            if (value.n != 5 || PyOS_strnicmp((const char *)value.p, "utf-8", 5) != 0)
                return 0;
        } else if (!span_is(key, "standalone")) {
            return 0;
        }
    }
    c->p = close + 2;
    return version;
}

/* 1: written into s->out; 0: not taken (the caller runs libxml2); -1: out of memory. */
static int scan(Scan *s) {
    if (s->c.end - s->c.p >= 3 && memcmp(s->c.p, "\xef\xbb\xbf", 3) == 0)
        s->c.p += 3;
    if (s->c.end - s->c.p >= 6 && memcmp(s->c.p, "<?xml", 5) == 0 && is_space(s->c.p[5])) {
        s->c.p += 6;
        if (!declaration(&s->c))
            return 0;
    }
    int done = 0;  /* the root element closed */
    while (s->c.p < s->c.end) {
        if (*s->c.p != '<') {
            if (s->depth == 0) {
                if (!is_space(*s->c.p))
                    return 0;
                s->c.p++;
                continue;
            }
            int r = text(s);
            if (r <= 0)
                return r;
            continue;
        }
        s->c.p++;
        if (s->c.p == s->c.end)
            return 0;
        u8 c = *s->c.p;
        if (c == '!') {
            if (s->c.end - s->c.p >= 3 && s->c.p[1] == '-' && s->c.p[2] == '-') {
                s->c.p += 3;
                if (!skip_past(&s->c, "-->"))
                    return 0;
            } else if (s->inside == 0 && s->depth > 0 && s->c.end - s->c.p >= 8
                       && memcmp(s->c.p, "![CDATA[", 8) == 0) {
                s->c.p += 8;
                if (!skip_past(&s->c, "]]>"))
                    return 0;
            } else {
                return 0;  /* a DOCTYPE, or CDATA inside the element */
            }
        } else if (c == '?') {
            if (s->inside != 0)
                return 0;
            s->c.p++;
            if (!skip_past(&s->c, "?>"))
                return 0;
        } else if (c == '/') {
            s->c.p++;
            if (s->depth == 0)
                return 0;
            /* the open element's name, then white space or '>' */
            Span qname = s->names[s->depth];
            if ((size_t)(s->c.end - s->c.p) <= qname.n || memcmp(s->c.p, qname.p, qname.n) != 0
                || !(CLASS[s->c.p[qname.n]] & C_NAME_END))
                return 0;
            s->c.p += qname.n;
            skip_space(&s->c);
            if (s->c.p == s->c.end || *s->c.p != '>')
                return 0;
            s->c.p++;
            if (s->inside != 0) {
                Out *o = &s->out;
                if (!PUTS(o, "</") || !put(o, qname.p, qname.n) || !PUTS(o, ">"))
                    return -1;
            }
            end_element(s);
            if (s->depth == 0)
                done = 1;
        } else {
            if (done)
                return 0;
            int r = start_tag(s);
            if (r <= 0)
                return r;
            if (r == 2)
                end_element(s);
            if (s->depth == 0)
                done = 1;
        }
    }
    return done && s->depth == 0 && s->found == 1 ? 1 : 0;
}

static PyObject *canonical(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "canonical() takes data, namespace and local name");
        return NULL;
    }
    for (int i = 0; i < 3; i++)
        if (!PyBytes_Check(args[i])) {
            PyErr_SetString(PyExc_TypeError, "canonical() takes bytes");
            return NULL;
        }
    Scan *s = PyMem_Malloc(sizeof(Scan));
    if (s == NULL)
        return PyErr_NoMemory();
    s->c.p = (const u8 *)PyBytes_AS_STRING(args[0]);
    s->c.end = s->c.p + PyBytes_GET_SIZE(args[0]);
    s->want_ns.p = (const u8 *)PyBytes_AS_STRING(args[1]);
    s->want_ns.n = (size_t)PyBytes_GET_SIZE(args[1]);
    s->want_local.p = (const u8 *)PyBytes_AS_STRING(args[2]);
    s->want_local.n = (size_t)PyBytes_GET_SIZE(args[2]);
    s->nscope = s->nshown = s->depth = s->inside = s->found = 0;
    s->out.n = 0;
    s->out.cap = (size_t)PyBytes_GET_SIZE(args[0]) + 256;
    s->out.b = PyMem_Malloc(s->out.cap);
    if (s->out.b == NULL) {
        PyMem_Free(s);
        return PyErr_NoMemory();
    }
    PyObject *result;
    int r = s->want_ns.n == 0 ? 0 : scan(s);
    if (r < 0) {
        result = PyErr_NoMemory();
    } else if (r == 0) {
        result = Py_NewRef(Py_None);
    } else {
        result = PyUnicode_DecodeUTF8((const char *)s->out.b, (Py_ssize_t)s->out.n, "strict");
        if (result == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            result = Py_NewRef(Py_None);
        }
    }
    PyMem_Free(s->out.b);
    PyMem_Free(s);
    return result;
}

/* ---------------------------------------------------------------------- request parts */

/* request_parts(data, acm_ns, profile_ns, profile_local) -> tuple | None
 *
 * What codec._tree_parts reads from the tree of a schema-valid profile-update-request, read
 * from the document's bytes instead (no element proxy, no tag string per element): the
 * transaction id's text, the URI text of each identity (requester, its functional alias,
 * target, its functional alias, migrated user), the additional information's text, each
 * None where the element is absent; the texts as lxml's ``.text`` gives them (references
 * expanded, line ends read as LF), not stripped.  None (the caller reads the tree) for
 * anything this code does not read with certainty: an identity that is not a clear <uri>
 * (a type other than Normal written plainly, another first child), a CDATA section, comment
 * or processing instruction inside an element read, the profile's first element not
 * {profile_ns}profile_local, caps exceeded, and whatever the canonical scan gives up on.
 * Only elements are recorded that the tree reader looks at: the root's first six children,
 * the first two children of those, and the first child of these.  The element names are the
 * schema's (schemas/acm.xsd); the data a document the hardened parser accepted.
 */

#define MAX_RECORDS 32

typedef struct {
    Span uri, local;
    int type_attr;          /* 0: none; 1: "Normal" written plainly; 2: anything else */
    int children;           /* element children */
    int child[2];           /* the records of the first two, -1: none recorded */
    size_t text_at, text_n; /* its character data in the text buffer (a leaf's only) */
    int text_ok;            /* no CDATA, comment or processing instruction inside */
} Rec;

typedef struct {
    Cur c;
    Binding scope[MAX_BINDINGS];
    int nscope;
    Span names[MAX_DEPTH + 1];
    int rec_of[MAX_DEPTH + 1];   /* the record of the open element at each depth, -1: none */
    int kids[MAX_DEPTH + 1];     /* element children met so far of the open element */
    int depth;
    Span root_uri, root_local;
    int roots;                   /* root children recorded (the first six) */
    int root_child[6];
    Rec recs[MAX_RECORDS];
    int nrecs;
    Out text;
} Outline;

/* A start tag after its '<': 1 (2: an empty-element tag), 0 to give up, -1 on an error. */
static int outline_start(Outline *o) {
    Span qname, prefix, local;
    if (!read_name(&o->c, &qname, &prefix, &local) || o->depth == MAX_DEPTH)
        return 0;
    int depth = ++o->depth;
    o->names[depth] = qname;
    int type_attr = 0, empty = 0, nprefixed = 0;
    Span prefixed[MAX_ATTRS];
    for (;;) {
        const u8 *before = o->c.p;
        skip_space(&o->c);
        if (o->c.p == o->c.end)
            return 0;
        if (*o->c.p == '>') {
            o->c.p++;
            break;
        }
        if (*o->c.p == '/') {
            if (o->c.end - o->c.p < 2 || o->c.p[1] != '>')
                return 0;
            o->c.p += 2;
            empty = 1;
            break;
        }
        if (o->c.p == before)
            return 0;
        Span aq, ap, al;
        if (!read_name(&o->c, &aq, &ap, &al))
            return 0;
        skip_space(&o->c);
        if (o->c.p == o->c.end || *o->c.p != '=')
            return 0;
        o->c.p++;
        skip_space(&o->c);
        if (o->c.p == o->c.end || (*o->c.p != '"' && *o->c.p != '\''))
            return 0;
        u8 quote = *o->c.p++;
        const u8 *q = memchr(o->c.p, quote, (size_t)(o->c.end - o->c.p));
        if (q == NULL)
            return 0;
        Span value = {o->c.p, (size_t)(q - o->c.p)};
        o->c.p = q + 1;
        Span declared;
        if (ap.n == 0 && span_is(al, "xmlns")) {
            declared.p = al.p;
            declared.n = 0;
        } else if (span_is(ap, "xmlns")) {
            declared = al;
        } else {
            if (ap.n == 0 && span_is(al, "type"))
                type_attr = span_is(value, "Normal") ? 1 : 2;
            else if (ap.n != 0 && !span_is(ap, "xml")) {
                if (nprefixed == MAX_ATTRS)
                    return 0;
                prefixed[nprefixed++] = ap;  /* (bound? once the tag's declarations are read) */
            }
            continue;
        }
        /* a namespace name compared as written: only the plain form, which no reference,
         * white space or normalisation can make another name */
        if (!plain_uri(value) || o->nscope == MAX_BINDINGS)
            return 0;
        o->scope[o->nscope].prefix = declared;
        o->scope[o->nscope].uri = value;
        o->scope[o->nscope].depth = depth;
        o->nscope++;
    }
    for (int i = 0; i < nprefixed; i++)
        if (bound(o->scope, o->nscope, prefixed[i]) == NULL)
            return 0;  /* an undeclared prefix */
    Span uri = {NULL, 0};
    if (span_is(prefix, "xml") || span_is(prefix, "xmlns"))
        return 0;
    const Binding *b = bound(o->scope, o->nscope, prefix);
    if (b != NULL)
        uri = b->uri;
    else if (prefix.n != 0)
        return 0;  /* an undeclared prefix */
    o->kids[depth] = 0;
    o->rec_of[depth] = -1;
    if (depth == 1) {
        o->root_uri = uri;
        o->root_local = local;
        return empty ? 2 : 1;
    }
    int index = o->kids[depth - 1]++;
    int parent = o->rec_of[depth - 1];
    if (parent >= 0)
        o->recs[parent].children++;
    int wanted = depth == 2 ? index < 6 : (parent >= 0 && index < (depth == 3 ? 2 : 1));
    if (!wanted || depth > 4)
        return empty ? 2 : 1;
    if (o->nrecs == MAX_RECORDS)
        return 0;
    int at = o->nrecs++;
    Rec *r = &o->recs[at];
    r->uri = uri;
    r->local = local;
    r->type_attr = type_attr;
    r->children = 0;
    r->child[0] = r->child[1] = -1;
    r->text_at = o->text.n;
    r->text_n = 0;
    r->text_ok = 1;
    if (depth == 2)
        o->root_child[o->roots++] = at;
    else if (index < 2)
        o->recs[parent].child[index] = at;
    o->rec_of[depth] = at;
    return empty ? 2 : 1;
}

/* Character data up to the next '<': kept for a recorded element without children, as
 * lxml's .text reads it.  1, 0 to give up, -1 on an error. */
static int outline_text(Outline *o) {
    int at = o->rec_of[o->depth];
    if (at < 0 || o->recs[at].children != 0) {
        const u8 *stop = memchr(o->c.p, '<', (size_t)(o->c.end - o->c.p));
        o->c.p = stop == NULL ? o->c.end : stop;
        return 1;
    }
    Out *out = &o->text;
    size_t start = out->n;
    u8 u[4];
    for (;;) {
        const u8 *run = o->c.p;
        while (!(CLASS[*o->c.p] & C_TEXT))
            o->c.p++;
        if (!put(out, run, (size_t)(o->c.p - run)))
            return -1;
        u8 c = *o->c.p;
        if (c == '<' || c == 0)
            break;
        o->c.p++;
        int n = 1;
        if (c == '&') {
            Cur sub = {o->c.p, o->c.end};
            n = read_reference(&sub, u);
            if (n == 0)
                return 0;
            o->c.p = sub.p;
        } else if (c == '\r') {
            if (*o->c.p == '\n')
                o->c.p++;
            u[0] = '\n';
        } else {
            u[0] = c;
        }
        if (!put(out, u, (size_t)n))
            return -1;
    }
    o->recs[at].text_n += out->n - start;
    return *o->c.p == 0 && o->c.p < o->c.end ? 0 : 1;
}

static void outline_end(Outline *o) {
    int depth = o->depth;
    while (o->nscope > 0 && o->scope[o->nscope - 1].depth >= depth)
        o->nscope--;
    o->depth--;
}

/* The document's outline into ``o``: 1, 0 to give up, -1 on an error. */
static int outline_scan(Outline *o) {
    if (o->c.end - o->c.p >= 3 && memcmp(o->c.p, "\xef\xbb\xbf", 3) == 0)
        o->c.p += 3;
    if (o->c.end - o->c.p >= 6 && memcmp(o->c.p, "<?xml", 5) == 0 && is_space(o->c.p[5])) {
        o->c.p += 6;
        if (!declaration(&o->c))
            return 0;
    }
    int done = 0;
    while (o->c.p < o->c.end) {
        if (*o->c.p != '<') {
            if (o->depth == 0) {
                if (!is_space(*o->c.p))
                    return 0;
                o->c.p++;
                continue;
            }
            int r = outline_text(o);
            if (r <= 0)
                return r;
            continue;
        }
        o->c.p++;
        if (o->c.p == o->c.end)
            return 0;
        u8 c = *o->c.p;
        if (c == '!' || c == '?') {
            if (o->depth > 0 && o->rec_of[o->depth] >= 0)
                o->recs[o->rec_of[o->depth]].text_ok = 0;
            if (c == '?') {
                if (!skip_past(&o->c, "?>"))
                    return 0;
            } else if (o->c.end - o->c.p >= 3 && o->c.p[1] == '-' && o->c.p[2] == '-') {
                o->c.p += 3;
                if (!skip_past(&o->c, "-->"))
                    return 0;
            } else if (o->depth > 0 && o->c.end - o->c.p >= 8
                       && memcmp(o->c.p, "![CDATA[", 8) == 0) {
                o->c.p += 8;
                if (!skip_past(&o->c, "]]>"))
                    return 0;
            } else {
                return 0;  /* a DOCTYPE */
            }
        } else if (c == '/') {
            o->c.p++;
            if (o->depth == 0)
                return 0;
            Span qname = o->names[o->depth];
            if ((size_t)(o->c.end - o->c.p) <= qname.n || memcmp(o->c.p, qname.p, qname.n) != 0
                || !(CLASS[o->c.p[qname.n]] & C_NAME_END))
                return 0;
            o->c.p += qname.n;
            skip_space(&o->c);
            if (o->c.p == o->c.end || *o->c.p != '>')
                return 0;
            o->c.p++;
            outline_end(o);
            if (o->depth == 0)
                done = 1;
        } else {
            if (done)
                return 0;
            int r = outline_start(o);
            if (r <= 0)
                return r;
            if (r == 2)
                outline_end(o);
            if (o->depth == 0)
                done = 1;
        }
    }
    return done && o->depth == 0 ? 1 : 0;
}

static int rec_is(const Rec *r, Span ns, const char *local) {
    return r->uri.p != NULL && span_eq(r->uri, ns) && span_is(r->local, local);
}

/* A recorded leaf's text as a str; NULL with no exception: not readable here. */
static PyObject *rec_text(const Outline *o, int at) {
    const Rec *r = &o->recs[at];
    if (r->children != 0 || !r->text_ok)
        return NULL;
    return PyUnicode_DecodeUTF8((const char *)o->text.b + r->text_at, (Py_ssize_t)r->text_n,
                                "strict");
}

/* The URI text of the identity recorded at ``at`` when it is a clear <uri>; NULL otherwise
 * (an exception set only on an error). */
static PyObject *clear_uri(const Outline *o, int at, Span ns) {
    const Rec *r = &o->recs[at];
    if (r->type_attr == 2 || r->child[0] < 0 || !rec_is(&o->recs[r->child[0]], ns, "uri"))
        return NULL;
    return rec_text(o, r->child[0]);
}

static PyObject *request_parts(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "request_parts() takes data, namespace, profile namespace and local name");
        return NULL;
    }
    for (int i = 0; i < 4; i++)
        if (!PyBytes_Check(args[i])) {
            PyErr_SetString(PyExc_TypeError, "request_parts() takes bytes");
            return NULL;
        }
    Outline *o = PyMem_Malloc(sizeof(Outline));
    if (o == NULL)
        return PyErr_NoMemory();
    o->c.p = (const u8 *)PyBytes_AS_STRING(args[0]);
    o->c.end = o->c.p + PyBytes_GET_SIZE(args[0]);
    o->nscope = o->depth = o->roots = o->nrecs = 0;
    o->kids[0] = 0;
    o->rec_of[0] = -1;
    o->root_uri.p = NULL;
    o->root_uri.n = 0;
    o->text.n = 0;
    o->text.cap = 256;
    o->text.b = PyMem_Malloc(o->text.cap);
    if (o->text.b == NULL) {
        PyMem_Free(o);
        return PyErr_NoMemory();
    }
    Span ns = {(const u8 *)PyBytes_AS_STRING(args[1]), (size_t)PyBytes_GET_SIZE(args[1])};
    Span pns = {(const u8 *)PyBytes_AS_STRING(args[2]), (size_t)PyBytes_GET_SIZE(args[2])};
    Span plocal = {(const u8 *)PyBytes_AS_STRING(args[3]), (size_t)PyBytes_GET_SIZE(args[3])};
    PyObject *result = NULL, *parts[7] = {NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    int r = ns.n == 0 ? 0 : outline_scan(o);
    if (r < 0) {
        PyErr_NoMemory();
        goto out;
    }
    const int *c = o->root_child;
    if (r == 0 || o->roots < 5 || o->root_uri.p == NULL || !span_eq(o->root_uri, ns)
            || !span_is(o->root_local, "profile-update-request"))
        goto none;
    /* the profile's first element: the user profile's root */
    const Rec *profile = &o->recs[c[4]];
    if (profile->child[0] < 0) goto none;
    const Rec *top = &o->recs[profile->child[0]];
    if (top->uri.p == NULL || !span_eq(top->uri, pns) || !span_eq(top->local, plocal))
        goto none;
    if ((parts[0] = rec_text(o, c[0])) == NULL) goto none;
    const Rec *requester = &o->recs[c[1]], *target = &o->recs[c[2]];
    if (requester->child[0] < 0 || (parts[1] = clear_uri(o, requester->child[0], ns)) == NULL)
        goto none;
    if (requester->child[1] >= 0 && rec_is(&o->recs[requester->child[1]], ns, "functional-alias")
            && (parts[2] = clear_uri(o, requester->child[1], ns)) == NULL)
        goto none;
    if (target->child[0] < 0) goto none;
    if (rec_is(&o->recs[target->child[0]], ns, "mc-service-id")) {
        if ((parts[3] = clear_uri(o, target->child[0], ns)) == NULL) goto none;
        if (target->child[1] >= 0 && rec_is(&o->recs[target->child[1]], ns, "functional-alias")
                && (parts[4] = clear_uri(o, target->child[1], ns)) == NULL)
            goto none;
    } else if ((parts[4] = clear_uri(o, target->child[0], ns)) == NULL) {
        goto none;
    }
    if ((parts[5] = clear_uri(o, c[3], ns)) == NULL) goto none;
    if (o->roots > 5 && rec_is(&o->recs[c[5]], ns, "additional-info")
            && (parts[6] = rec_text(o, c[5])) == NULL)
        goto none;
    if ((result = PyTuple_New(7)) == NULL) goto out;
    for (int i = 0; i < 7; i++) {
        PyTuple_SET_ITEM(result, i, parts[i] == NULL ? Py_NewRef(Py_None) : parts[i]);
        parts[i] = NULL;
    }
    goto out;
none:
    if (PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) goto out;
        PyErr_Clear();
    }
    result = Py_NewRef(Py_None);
out:
    for (int i = 0; i < 7; i++) Py_XDECREF(parts[i]);
    PyMem_Free(o->text.b);
    PyMem_Free(o);
    return result;
}

/* ---------------------------------------------------------------------- the parser's marks */

/* The declarations xmlsafe._check_prolog's fast path knows, in its order. */
static const char *const COMMON_DECLARATIONS[] = {
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
    "<?xml version='1.0' encoding='UTF-8'?>",
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>",
    "<?xml version=\"1.0\"?>",
    "",
};

/* prolog_marks(data) -> (plain, end_tags, equals): xmlsafe.parse's two counts
 * (data.count(b"</"), data.count(b"=")) in one call, and whether the prolog is one
 * xmlsafe._check_prolog's fast path takes (a usual declaration or none, at most one LF, then
 * the root element's start tag). */
static PyObject *prolog_marks(PyObject *module, PyObject *arg) {
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "prolog_marks() takes bytes");
        return NULL;
    }
    const char *p = PyBytes_AS_STRING(arg), *end = p + PyBytes_GET_SIZE(arg), *q;
    size_t n = (size_t)PyBytes_GET_SIZE(arg);
    int plain = 0;
    for (size_t i = 0; i < sizeof COMMON_DECLARATIONS / sizeof COMMON_DECLARATIONS[0]; i++) {
        size_t k = strlen(COMMON_DECLARATIONS[i]);
        if (n < k || memcmp(p, COMMON_DECLARATIONS[i], k) != 0)
            continue;
        if (k < n && p[k] == '\n')
            k++;
        /* (the bytes object's final NUL stands for the end: neither '!' nor '?') */
        plain = k + 1 < n && p[k] == '<' && p[k + 1] != '!' && p[k + 1] != '?';
        break;
    }
    Py_ssize_t ends = 0, equals = 0;
    for (q = p; (q = memchr(q, '<', (size_t)(end - q))) != NULL; )
        if (++q < end && *q == '/')
            ends++;
    for (q = p; (q = memchr(q, '=', (size_t)(end - q))) != NULL; q++)
        equals++;
    return Py_BuildValue("Nnn", PyBool_FromLong(plain), ends, equals);
}

/* iso_text(value) -> value.isoformat(): written here for an exact datetime in UTC
 * (datetime.timezone.utc), "YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00" as datetime's own C code
 * writes it (the six fraction digits only when there are microseconds); any other value's
 * own isoformat() is called.  datetime's writer formats through PyUnicode_FromFormat and asks
 * the tzinfo for its offset (about 10 k instructions); the codec's templates write the
 * indication's expiry with this (tests/test_acm_proof.py holds the texts equal). */
static void put_digits(char *at, long v, int n) {
    while (n-- > 0) {
        at[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

static PyObject *iso_text(PyObject *module, PyObject *value) {
    if (PyDateTimeAPI == NULL || !PyDateTime_CheckExact(value)
            || PyDateTime_DATE_GET_TZINFO(value) != PyDateTime_TimeZone_UTC)
        return PyObject_CallMethod(value, "isoformat", NULL);
    char b[32];  /* 19 + 7 + 6 */
    int us = PyDateTime_DATE_GET_MICROSECOND(value), n = 19;
    put_digits(b, PyDateTime_GET_YEAR(value), 4);
    b[4] = '-';
    put_digits(b + 5, PyDateTime_GET_MONTH(value), 2);
    b[7] = '-';
    put_digits(b + 8, PyDateTime_GET_DAY(value), 2);
    b[10] = 'T';
    put_digits(b + 11, PyDateTime_DATE_GET_HOUR(value), 2);
    b[13] = ':';
    put_digits(b + 14, PyDateTime_DATE_GET_MINUTE(value), 2);
    b[16] = ':';
    put_digits(b + 17, PyDateTime_DATE_GET_SECOND(value), 2);
    if (us) {
        b[n++] = '.';
        put_digits(b + n, us, 6);
        n += 6;
    }
    memcpy(b + n, "+00:00", 6);
    PyObject *text = PyUnicode_New(n + 6, 127);
    if (text != NULL) memcpy(PyUnicode_1BYTE_DATA(text), b, (size_t)n + 6);
    return text;
}

static PyMethodDef methods[] = {
    {"canonical", (PyCFunction)(void (*)(void))canonical, METH_FASTCALL,
     "canonical(data, namespace, local, /) -> str | None\n\n"
     "The exclusive canonical XML (1.0, no comments) of the one element {namespace}local of\n"
     "the UTF-8 document ``data``, as libxml2 writes it; None where this code does not\n"
     "write it (the caller then runs libxml2)."},
    {"prolog_marks", (PyCFunction)prolog_marks, METH_O,
     "prolog_marks(data, /) -> (plain, end_tags, equals)\n\n"
     "Whether the prolog is one xmlsafe._check_prolog's fast path takes, and the counts of\n"
     "b'</' and b'=' in data (xmlsafe.parse's caps)."},
    {"request_parts", (PyCFunction)(void (*)(void))request_parts, METH_FASTCALL,
     "request_parts(data, namespace, profile_namespace, profile_local, /) -> tuple | None\n\n"
     "What codec._tree_parts reads from a schema-valid profile-update-request, read from\n"
     "its bytes; None where this code does not read it (the caller reads the tree)."},
    {"iso_text", (PyCFunction)iso_text, METH_O,
     "iso_text(value, /) -> str\n\n"
     "value.isoformat(), written here for an exact datetime in UTC."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_c14n",
    "The exclusive canonical form of a received element, from the document's bytes "
    "(mcacm_sip/acm/codec.py).", 0, methods, slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__c14n(void) {
    init_classes();
    PyDateTime_IMPORT;  /* (NULL: iso_text calls isoformat()) */
    if (PyDateTimeAPI == NULL) PyErr_Clear();
    return PyModuleDef_Init(&module);
}
