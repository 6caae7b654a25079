/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer target: domain_config_parse() on arbitrary bytes, then a round trip through
 * domain_config_format(): a config RegisterDomain saved must load again after a restart. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "domain-config.h"
#include "macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(domain_config_freep) DomainConfig *c = NULL, *again = NULL;
        _cleanup_free_ char *xml = NULL;
        int r;

        r = domain_config_parse((const char *) data, size, &c);
        if (r < 0)
                return 0;

        r = domain_config_format(c, &xml);
        if (r < 0)
                return 0;

        r = domain_config_parse(xml, strlen(xml), &again);
        if (r < 0) {
                fprintf(stderr, "formatted domain config does not parse again (%d):\n%s\n", r, xml);
                abort();
        }
        if (!streq_ptr(c->name, again->name) || !streq_ptr(c->qmp_socket, again->qmp_socket) ||
            !streq_ptr(c->agent_socket, again->agent_socket) || !streq_ptr(c->images_dir, again->images_dir) ||
            !c->qemu != !again->qemu) {
                fprintf(stderr, "domain config changed in a round trip:\n%s\n", xml);
                abort();
        }
        return 0;
}
