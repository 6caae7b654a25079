/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer target: snapshot_xml_parse() on arbitrary bytes. A document that parses must
 * format, and what it formats to must parse again: metadata we wrote is metadata we read. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "macro.h"
#include "snapshot-store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(snapshot_def_freep) SnapshotDef *def = NULL, *again = NULL;
        _cleanup_free_ char *xml = NULL;
        int r;

        r = snapshot_xml_parse((const char *) data, size, &def);
        if (r < 0)
                return 0;

        /* The formatter may refuse what the XML cannot carry, but must not crash on it. */
        r = snapshot_xml_format(def, &xml);
        if (r < 0)
                return 0;

        r = snapshot_xml_parse(xml, strlen(xml), &again);
        if (r < 0) {
                fprintf(stderr, "formatted snapshot XML does not parse again (%d):\n%s\n", r, xml);
                abort();
        }
        return 0;
}
