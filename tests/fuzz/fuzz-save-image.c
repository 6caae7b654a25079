/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer target: save_image_read_header() on a memfd holding the input, as if it were a
 * memory image found on disk (after a crash, or planted by someone else). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "macro.h"
#include "save-image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *xml = NULL;
        SaveImageHeader h;
        uint64_t offset;
        int fd, r;

        fd = memfd_create("fuzz-save-image", MFD_CLOEXEC);
        if (fd < 0)
                abort();
        for (size_t done = 0; done < size; ) {
                ssize_t n = write(fd, data + done, size - done);

                if (n < 0)
                        abort();
                done += n;
        }

        r = save_image_read_header(fd, &h, &xml);
        if (r >= 0) {
                /* What the reader accepted must be self-consistent: the XML ends inside the data and
                 * the stream offset lies within the file. */
                if (!xml || strlen(xml) >= h.data_len)
                        abort();
                r = save_image_stream_offset(&h, &offset);
                if (r < 0 || offset > size)
                        abort();
        }

        /* The header alone (no XML wanted) takes the same checks. */
        (void) save_image_read_header(fd, &h, NULL);
        (void) close(fd);
        return 0;
}
