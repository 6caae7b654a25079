/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxml/globals.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlsave.h>

#include "xml-util.h"
#include "macro.h"

typedef struct ParseGuard {
        bool refused;           /* a DOCTYPE or an entity showed up */
} ParseGuard;

static void parse_guard_refuse(void *ctx) {
        xmlParserCtxt *ctxt = ctx;
        ParseGuard *g = ctxt->_private;

        g->refused = true;
        xmlStopParser(ctxt);
}

/* Any DOCTYPE stops the parser before its internal subset is read: entity declarations
 * (billion laughs) and external identifiers (SYSTEM "file:///...") never get a chance. */
static void guard_internal_subset(void *ctx, const xmlChar *name, const xmlChar *external_id,
                                  const xmlChar *system_id) {
        parse_guard_refuse(ctx);
}

static void guard_entity_decl(void *ctx, const xmlChar *name, int type, const xmlChar *public_id,
                              const xmlChar *system_id, xmlChar *content) {
        parse_guard_refuse(ctx);
}

static void guard_unparsed_entity_decl(void *ctx, const xmlChar *name, const xmlChar *public_id,
                                       const xmlChar *system_id, const xmlChar *notation) {
        parse_guard_refuse(ctx);
}

/* Only called for references to entities other than the five predefined ones. */
static xmlEntity *guard_get_entity(void *ctx, const xmlChar *name) {
        parse_guard_refuse(ctx);
        return NULL;
}

static void guard_reference(void *ctx, const xmlChar *name) {
        parse_guard_refuse(ctx);
}

static xmlParserInput *guard_resolve_entity(void *ctx, const xmlChar *public_id, const xmlChar *system_id) {
        parse_guard_refuse(ctx);
        return NULL;
}

static void silent_structured_error(void *user_data, xmlErrorPtr error) {
        /* Errors become our return value; the caller decides whether to log. */
}

static int tree_check(const xmlNode *n) {
        for (; n; n = n->next) {
                int r;

                switch (n->type) {
                case XML_ENTITY_REF_NODE:
                case XML_ENTITY_NODE:
                case XML_ENTITY_DECL:
                case XML_DTD_NODE:
                case XML_DOCUMENT_TYPE_NODE:
                case XML_NOTATION_NODE:
                case XML_XINCLUDE_START:
                case XML_XINCLUDE_END:
                        return -EINVAL;
                default:
                        break;
                }
                if (n->type == XML_ELEMENT_NODE) {
                        r = tree_check(n->children);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

struct XmlParser {
        xmlParserCtxt *ctxt;
        ParseGuard guard;
        int options;
};

XmlParser *xml_parser_free(XmlParser *p) {
        if (!p)
                return NULL;
        xmlFreeParserCtxt(p->ctxt);
        free(p);
        return NULL;
}

void xml_parser_init(void) {
        xmlInitParser();
}

int xml_parser_new(bool drop_blanks, XmlParser **ret) {
        XmlParser *p;

        xmlInitParser();

        p = calloc(1, sizeof(XmlParser));
        if (!p)
                return -ENOMEM;
        p->ctxt = xmlNewParserCtxt();
        if (!p->ctxt) {
                free(p);
                return -ENOMEM;
        }

        p->ctxt->_private = &p->guard;
        p->ctxt->sax->internalSubset = guard_internal_subset;
        p->ctxt->sax->externalSubset = guard_internal_subset;
        p->ctxt->sax->entityDecl = guard_entity_decl;
        p->ctxt->sax->unparsedEntityDecl = guard_unparsed_entity_decl;
        p->ctxt->sax->getEntity = guard_get_entity;
        p->ctxt->sax->getParameterEntity = guard_get_entity;
        p->ctxt->sax->reference = guard_reference;
        p->ctxt->sax->resolveEntity = guard_resolve_entity;
        p->ctxt->sax->serror = silent_structured_error;

        /* No XML_PARSE_NOENT (never substitute), no DTDLOAD/DTDATTR, no XINCLUDE, no HUGE.
         * NOBLANKS drops the indentation between elements (about half of a record's nodes;
         * an element whose only content is blanks keeps it); COMPACT stores short texts in
         * their node. Neither changes what the tree helpers below read. */
        p->options = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING;
        if (drop_blanks)
                p->options |= XML_PARSE_NOBLANKS | XML_PARSE_COMPACT;

        *ret = p;
        return 0;
}

int xml_parser_parse(XmlParser *p, const char *data, size_t size, size_t max_size, xmlDoc **ret) {
        xmlStructuredErrorFunc saved_handler;
        void *saved_context;
        xmlParserCtxt *ctxt;
        xmlDoc *doc;
        bool well_formed;
        int r;

        if (!p || !data || !ret)
                return -EINVAL;
        if (max_size > INT_MAX)
                max_size = INT_MAX;
        if (size > max_size)
                return -EFBIG;

        ctxt = p->ctxt;
        p->guard = (ParseGuard) {};
        ctxt->_private = &p->guard;

        /* The per-context handler covers the parser; errors raised without a context
         * (encoding, I/O) go to the thread's structured handler, so swap that too and
         * put it back, leaving no global state behind. */
        saved_handler = xmlStructuredError;
        saved_context = xmlStructuredErrorContext;
        xmlSetStructuredErrorFunc(NULL, silent_structured_error);

        /* Resets the context (a refused document stopped it) but keeps its dictionary, so
         * a batch of documents shares the element and attribute names. */
        doc = xmlCtxtReadMemory(ctxt, data, (int) size, NULL, NULL, p->options);
        well_formed = ctxt->wellFormed;

        xmlSetStructuredErrorFunc(saved_context, saved_handler);

        if (!doc)
                return p->guard.refused || !well_formed ? -EINVAL : -ENOMEM;
        if (p->guard.refused || !well_formed || doc->intSubset || doc->extSubset || !xmlDocGetRootElement(doc)) {
                xmlFreeDoc(doc);
                return -EINVAL;
        }
        r = tree_check(doc->children);
        if (r < 0) {
                xmlFreeDoc(doc);
                return r;
        }

        *ret = doc;
        return 0;
}

int xml_parse_safe(const char *data, size_t size, size_t max_size, xmlDoc **ret) {
        XmlParser *p = NULL;
        int r;

        if (!data || !ret)
                return -EINVAL;
        if (size > max_size || size > INT_MAX)
                return -EFBIG;
        r = xml_parser_new(false, &p);
        if (r < 0)
                return r;
        r = xml_parser_parse(p, data, size, max_size, ret);
        xml_parser_free(p);
        return r;
}

bool xml_node_is(const xmlNode *n, const char *name) {
        return n && n->type == XML_ELEMENT_NODE && !n->ns && xmlStrEqual(n->name, BAD_CAST name);
}

bool xml_node_is_ns(const xmlNode *n, const char *name, const char *ns) {
        return n && n->type == XML_ELEMENT_NODE && n->ns && n->ns->href &&
                xmlStrEqual(n->ns->href, BAD_CAST ns) && xmlStrEqual(n->name, BAD_CAST name);
}

xmlNode *xml_child(const xmlNode *parent, const char *name) {
        if (!parent)
                return NULL;
        for (xmlNode *c = parent->children; c; c = c->next)
                if (xml_node_is(c, name))
                        return c;
        return NULL;
}

xmlNode *xml_next_named(const xmlNode *n) {
        if (!n)
                return NULL;
        for (xmlNode *c = n->next; c; c = c->next)
                if (xml_node_is(c, (const char *) n->name))
                        return c;
        return NULL;
}

size_t xml_count_children(const xmlNode *parent, const char *name) {
        size_t k = 0;

        for (xmlNode *c = xml_child(parent, name); c; c = xml_next_named(c))
                k++;
        return k;
}

static int xml_strdup(xmlChar *x, char **ret) {
        char *s;

        s = strdup(x ? (const char *) x : "");
        xmlFree(x);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int xml_node_text(const xmlNode *n, char **ret) {
        if (!n)
                return -ENOENT;
        return xml_strdup(xmlNodeGetContent(n), ret);
}

int xml_child_text(const xmlNode *parent, const char *name, char **ret) {
        return xml_node_text(xml_child(parent, name), ret);
}

int xml_attr(const xmlNode *n, const char *name, char **ret) {
        xmlChar *v;

        if (!n)
                return -ENOENT;
        if (!xmlHasNsProp(n, BAD_CAST name, NULL))
                return -ENOENT;
        v = xmlGetNoNsProp(n, BAD_CAST name);
        if (!v)
                return -ENOMEM;
        return xml_strdup(v, ret);
}

int xml_parse_u64(const char *s, uint64_t *ret) {
        uint64_t v = 0;

        if (isempty(s))
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                unsigned d;

                if (*p < '0' || *p > '9')
                        return -EINVAL;
                d = *p - '0';
                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *ret = v;
        return 0;
}

bool xml_string_is_valid(const char *s) {
        const unsigned char *p = (const unsigned char *) s;

        if (!s)
                return true;
        while (*p) {
                uint32_t cp;
                size_t n;

                if (*p < 0x80) {
                        if (*p < 0x20 && !IN_SET2(*p, '\t', '\n') && *p != '\r')
                                return false;
                        p++;
                        continue;
                }
                if ((*p & 0xE0) == 0xC0) {
                        n = 1;
                        cp = *p & 0x1F;
                } else if ((*p & 0xF0) == 0xE0) {
                        n = 2;
                        cp = *p & 0x0F;
                } else if ((*p & 0xF8) == 0xF0) {
                        n = 3;
                        cp = *p & 0x07;
                } else
                        return false;
                for (size_t i = 1; i <= n; i++) {
                        if ((p[i] & 0xC0) != 0x80)
                                return false;
                        cp = (cp << 6) | (p[i] & 0x3F);
                }
                if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
                    (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF || cp == 0xFFFE || cp == 0xFFFF)
                        return false;
                p += n + 1;
        }
        return true;
}

int xml_doc_format(xmlDoc *doc, char **ret) {
        xmlBuffer *buf;
        xmlSaveCtxt *save;
        char *s = NULL;
        long k;

        buf = xmlBufferCreate();
        if (!buf)
                return -ENOMEM;
        save = xmlSaveToBuffer(buf, "UTF-8", XML_SAVE_FORMAT | XML_SAVE_NO_DECL);
        if (!save) {
                xmlBufferFree(buf);
                return -ENOMEM;
        }
        k = xmlSaveDoc(save, doc);
        /* Files end in a newline; libxml2 leaves it off without the declaration. */
        if (xmlSaveClose(save) >= 0 && k >= 0) {
                const char *c = (const char *) xmlBufferContent(buf);
                int len = xmlBufferLength(buf);

                if (asprintf(&s, "%s%s", c, len > 0 && c[len - 1] == '\n' ? "" : "\n") < 0)
                        s = NULL;
        }
        xmlBufferFree(buf);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* ---- XmlWriter ---- */

static void writer_put(XmlWriter *w, const char *s, size_t n) {
        if (w->oom)
                return;
        if (w->len + n + 1 > w->alloc) {
                size_t na = w->alloc ? w->alloc : 2048;
                char *nb;

                while (w->len + n + 1 > na)
                        na *= 2;
                nb = realloc(w->buf, na);
                if (!nb) {
                        w->oom = true;
                        return;
                }
                w->buf = nb;
                w->alloc = na;
        }
        memcpy(w->buf + w->len, s, n);
        w->len += n;
        w->buf[w->len] = 0;
}

static void writer_puts(XmlWriter *w, const char *s) {
        writer_put(w, s, strlen(s));
}

/* libxml2's escaping (xmlEscapeContent, xmlBufAttrSerializeTxtContent): runs of plain bytes
 * are copied in one go. */
static void writer_escaped(XmlWriter *w, const char *s, bool attr) {
        const char *run = s;

        for (const char *p = s; *p; p++) {
                const char *e;

                switch (*p) {
                case '&':
                        e = "&amp;";
                        break;
                case '<':
                        e = "&lt;";
                        break;
                case '>':
                        e = "&gt;";
                        break;
                case '\r':
                        e = "&#13;";
                        break;
                case '"':
                        e = attr ? "&quot;" : NULL;
                        break;
                case '\n':
                        e = attr ? "&#10;" : NULL;
                        break;
                case '\t':
                        e = attr ? "&#9;" : NULL;
                        break;
                default:
                        e = NULL;
                }
                if (!e)
                        continue;
                writer_put(w, run, p - run);
                writer_puts(w, e);
                run = p + 1;
        }
        writer_puts(w, run);
}

static void writer_tag_start(XmlWriter *w, const char *name, va_list ap) {
        const char *a;

        for (unsigned i = 0; i < w->depth; i++)
                writer_put(w, "  ", 2);
        writer_put(w, "<", 1);
        writer_puts(w, name);
        while ((a = va_arg(ap, const char *))) {
                const char *v = va_arg(ap, const char *);

                if (!v)
                        continue;
                writer_put(w, " ", 1);
                writer_puts(w, a);
                writer_put(w, "=\"", 2);
                writer_escaped(w, v, true);
                writer_put(w, "\"", 1);
        }
}

void xml_writer_open(XmlWriter *w, const char *name, ...) {
        va_list ap;

        va_start(ap, name);
        writer_tag_start(w, name, ap);
        va_end(ap);
        writer_put(w, ">\n", 2);
        w->depth++;
}

void xml_writer_close(XmlWriter *w, const char *name) {
        w->depth--;
        for (unsigned i = 0; i < w->depth; i++)
                writer_put(w, "  ", 2);
        writer_put(w, "</", 2);
        writer_puts(w, name);
        writer_put(w, ">\n", 2);
}

void xml_writer_empty(XmlWriter *w, const char *name, ...) {
        va_list ap;

        va_start(ap, name);
        writer_tag_start(w, name, ap);
        va_end(ap);
        writer_put(w, "/>\n", 3);
}

void xml_writer_text(XmlWriter *w, const char *name, const char *text, ...) {
        va_list ap;

        va_start(ap, text);
        writer_tag_start(w, name, ap);
        va_end(ap);
        writer_put(w, ">", 1);
        writer_escaped(w, text, false);
        writer_put(w, "</", 2);
        writer_puts(w, name);
        writer_put(w, ">\n", 2);
}

int xml_writer_finish(XmlWriter *w, char **ret) {
        if (w->oom || !w->buf) {
                free(w->buf);
                *w = (XmlWriter) {};
                return -ENOMEM;
        }
        *ret = w->buf;
        *w = (XmlWriter) {};
        return 0;
}

int fsync_dir(const char *dir) {
        _cleanup_close_ int fd = -1;

        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fsync(fd) < 0)
                return -errno;
        return 0;
}

int xml_file_write_temp(const char *dir, const char *data, size_t size, char **ret_tmp) {
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -1;
        int r;

        if (isempty(dir) || !data || !ret_tmp)
                return -EINVAL;
        if (asprintf(&tmp, "%s/.tmp-XXXXXX", dir) < 0)
                return -ENOMEM;

        /* mkostemp: O_CREAT|O_EXCL, mode 0600. */
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return -errno;

        for (size_t done = 0; done < size;) {
                ssize_t n = write(fd, data + done, size - done);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        goto fail;
                }
                done += n;
        }
        if (fsync(fd) < 0) {
                r = -errno;
                goto fail;
        }
        if (close(TAKE_FD(fd)) < 0) {
                r = -errno;
                goto fail;
        }
        *ret_tmp = TAKE_PTR(tmp);
        return 0;

fail:
        (void) unlink(tmp);
        return r;
}

int xml_file_write_atomic(const char *dir, const char *filename, const char *data, size_t size) {
        _cleanup_free_ char *tmp = NULL, *final = NULL;
        int r;

        if (isempty(dir) || isempty(filename) || strchr(filename, '/') || !data)
                return -EINVAL;
        if (asprintf(&final, "%s/%s", dir, filename) < 0)
                return -ENOMEM;
        r = xml_file_write_temp(dir, data, size, &tmp);
        if (r < 0)
                return r;
        if (rename(tmp, final) < 0) {
                r = -errno;
                (void) unlink(tmp);
                return r;
        }
        /* The rename is only durable once the directory is. */
        return fsync_dir(dir);
}

int xml_file_read_into(int dirfd, const char *path, size_t max_size, XmlReadBuffer *b) {
        _cleanup_close_ int fd = -1;
        struct stat st;
        size_t size = 0;

        b->size = 0;
        /* O_NONBLOCK so a FIFO planted in the directory cannot hang us before fstat(). */
        fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if ((uint64_t) st.st_size > max_size)
                return -EFBIG;

        for (;;) {
                /* Room for the size fstat() saw, one byte more (to see a file that grew) and
                 * the NUL; doubled when it did grow. */
                size_t need = (size == 0 ? (size_t) st.st_size : size) + 2, want;
                ssize_t n;

                if (b->alloc < need) {
                        size_t na = b->alloc * 2 > need ? b->alloc * 2 : need;
                        char *nb;

                        if (size > max_size)
                                return -EFBIG;
                        nb = realloc(b->data, na);
                        if (!nb)
                                return -ENOMEM;
                        b->data = nb;
                        b->alloc = na;
                }
                want = b->alloc - size - 1;
                n = read(fd, b->data + size, want);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                size += n;
                /* A short read of a regular file is its end: no second read() to see 0 (one
                 * syscall less a record, 10,000 of them at a big start-up). */
                if (n == 0 || (size_t) n < want)
                        break;
        }
        if (size > max_size)
                return -EFBIG;
        b->data[size] = 0;
        b->size = size;
        return 0;
}

void xml_read_buffer_done(XmlReadBuffer *b) {
        free(b->data);
        *b = (XmlReadBuffer) {};
}

int xml_file_read(int dirfd, const char *path, size_t max_size, char **ret, size_t *ret_size) {
        XmlReadBuffer b = {};
        int r;

        r = xml_file_read_into(dirfd, path, max_size, &b);
        if (r < 0) {
                xml_read_buffer_done(&b);
                return r;
        }
        *ret = b.data;
        if (ret_size)
                *ret_size = b.size;
        return 0;
}

int xml_file_remove(const char *dir, const char *filename) {
        _cleanup_free_ char *path = NULL;

        if (isempty(dir) || isempty(filename) || strchr(filename, '/'))
                return -EINVAL;
        if (asprintf(&path, "%s/%s", dir, filename) < 0)
                return -ENOMEM;
        if (unlink(path) < 0)
                return -errno;
        return fsync_dir(dir);
}
