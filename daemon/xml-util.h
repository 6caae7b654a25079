/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The one way snapshotd reads XML: bounded size, no DTD, no entities, no network, no
 * output on stderr. Plus small tree helpers and the atomic file write both stores share.
 * Never logs. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <libxml/tree.h>

/* Include this (or libxml/tree.h) before macro.h: macro.h then provides xmlFreeDocp. */

/* Parses data[0..size) into a tree. -EFBIG when size > max_size; -EINVAL when the document
 * is not well-formed, has a DOCTYPE (internal or external subset), declares or references
 * an entity other than the five predefined ones, or needs the network. -ENOMEM on OOM.
 * Parser messages never reach stderr. */
int xml_parse_safe(const char *data, size_t size, size_t max_size, xmlDoc **ret);

/* The same for a batch of documents (a directory of records): one parser context, reset
 * between documents, whose name dictionary the documents share; much cheaper than a
 * context per document. drop_blanks: leave out the whitespace-only text between elements
 * (an element whose only content is whitespace keeps it). Not for documents from callers
 * in a long-lived parser: the dictionary only grows while the parser lives. */
typedef struct XmlParser XmlParser;
/* libxml2's one-time set-up; call it on the main thread before parsing on others. */
void xml_parser_init(void);
int xml_parser_new(bool drop_blanks, XmlParser **ret);
XmlParser *xml_parser_free(XmlParser *p);
static inline void xml_parser_freep(XmlParser **p) {
        xml_parser_free(*p);
}
int xml_parser_parse(XmlParser *p, const char *data, size_t size, size_t max_size, xmlDoc **ret);

/* True when n is an element named name in no namespace. */
bool xml_node_is(const xmlNode *n, const char *name);
/* True when n is an element named name in namespace ns. */
bool xml_node_is_ns(const xmlNode *n, const char *name, const char *ns);

/* First element child of parent named name (no namespace), or NULL. */
xmlNode *xml_child(const xmlNode *parent, const char *name);
/* Next element sibling after n with the same name (no namespace), or NULL. For
 * "for (xmlNode *d = xml_child(p, "disk"); d; d = xml_next_named(d))". */
xmlNode *xml_next_named(const xmlNode *n);
/* Number of element children of parent named name (to refuse duplicates). */
size_t xml_count_children(const xmlNode *parent, const char *name);

/* Text content of an element (all text below it, concatenated), malloc()ed. */
int xml_node_text(const xmlNode *n, char **ret);
/* Text of the first child element named name: -ENOENT when there is no such child. */
int xml_child_text(const xmlNode *parent, const char *name, char **ret);
/* Attribute value (no namespace), malloc()ed: -ENOENT when absent. */
int xml_attr(const xmlNode *n, const char *name, char **ret);
/* Decimal unsigned integer without sign, spaces or junk: -EINVAL / -ERANGE. */
int xml_parse_u64(const char *s, uint64_t *ret);

/* True when s is valid UTF-8 made only of characters XML 1.0 can carry (no control
 * characters other than tab, newline and carriage return). Formatters refuse other strings
 * with -EINVAL, since the document would not parse back. NULL is valid. */
bool xml_string_is_valid(const char *s);

/* Serializes doc (indented, UTF-8, no XML declaration) into a NUL-terminated malloc()ed
 * string. */
int xml_doc_format(xmlDoc *doc, char **ret);

/* Writes a document straight as text, byte for byte what xml_doc_format() prints for the
 * same tree (two-space indent, text escaped as libxml2 does: &amp; &lt; &gt; &#13; and in
 * attributes also &quot; &#10; &#9;, UTF-8 kept), without building the tree: formatting a
 * snapshot record this way costs a few microseconds instead of ~25. Attributes are given
 * as name, value pairs ending in NULL; a pair whose value is NULL is left out. Strings
 * must be valid (xml_string_is_valid()). Out of memory is remembered and reported by
 * xml_writer_finish(). */
typedef struct XmlWriter {
        char *buf;
        size_t len, alloc;
        unsigned depth;
        bool oom;
} XmlWriter;

/* <name attrs>, then children one level deeper until xml_writer_close(). */
void xml_writer_open(XmlWriter *w, const char *name, ...) __attribute__((sentinel));
void xml_writer_close(XmlWriter *w, const char *name);
/* <name attrs/> */
void xml_writer_empty(XmlWriter *w, const char *name, ...) __attribute__((sentinel));
/* <name attrs>text</name> */
void xml_writer_text(XmlWriter *w, const char *name, const char *text, ...) __attribute__((sentinel));
/* The document (ending in a newline) or -ENOMEM; the writer is emptied either way. */
int xml_writer_finish(XmlWriter *w, char **ret);

/* Writes data into dir/filename atomically: a 0600 temporary file created with O_EXCL in
 * dir (named ".tmp-XXXXXX", so directory loaders skip it), write, fsync, rename, fsync dir.
 * dir must exist. */
int xml_file_write_atomic(const char *dir, const char *filename, const char *data, size_t size);
/* The first half of that: the data in a new ".tmp-XXXXXX" file in dir, written and fsynced;
 * *ret_tmp is its path, for the caller to rename (then fsync_dir()) or unlink. */
int xml_file_write_temp(const char *dir, const char *data, size_t size, char **ret_tmp);
/* fsync of a directory, which makes the renames and unlinks in it durable. */
int fsync_dir(const char *dir);
/* Reads a regular file (not following a symlink in the last component) relative to dirfd
 * (AT_FDCWD allowed). -EFBIG when it holds more than max_size bytes. The buffer is
 * NUL-terminated; *ret_size excludes the NUL. */
int xml_file_read(int dirfd, const char *path, size_t max_size, char **ret, size_t *ret_size);
/* A buffer xml_file_read_into() reuses from file to file: a start-up reading thousands of
 * records allocates it once, instead of a block per file (whose malloc, after the parser's
 * small frees, consolidated the heap every time). */
typedef struct XmlReadBuffer {
        char *data;             /* NUL-terminated after a successful read */
        size_t size;            /* bytes read, the NUL excluded */
        size_t alloc;
} XmlReadBuffer;
/* xml_file_read() into *b, grown as needed and kept for the next file. */
int xml_file_read_into(int dirfd, const char *path, size_t max_size, XmlReadBuffer *b);
void xml_read_buffer_done(XmlReadBuffer *b);
/* Unlinks dir/filename and fsyncs dir. -ENOENT when it does not exist. */
int xml_file_remove(const char *dir, const char *filename);
