/* libFuzzer target for sharedsock/_headscan.c (run_fuzz.sh builds and runs it under
 * AddressSanitizer). Besides memory errors it checks what the scanner promises: an
 * accepted head is inside the buffer and in the grammar _headscan.h states. The first
 * input byte picks small or default limits, so the limit checks are reached too. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../sharedsock/_headscan.h"

#define CAP 16

static int is_token(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
        || (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hs_limits small = {40, 4, 40}, large = {8190, 100, 8190};
    hs_field fields[CAP];
    hs_head head;
    unsigned char *buf;
    size_t i, j;
    if (size < 1)
        return 0;
    /* A copy of exactly the input's size, so ASan sees any read past its end. */
    buf = malloc(size - 1 ? size - 1 : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data + 1, size - 1);
    if (hs_scan(buf, size - 1, (data[0] & 1) ? &small : &large, fields, CAP, &head)) {
        const hs_limits *lim = (data[0] & 1) ? &small : &large;
        size_t len = size - 1;
        check(len >= 4 && memcmp(buf + len - 4, "\r\n\r\n", 4) == 0);
        check(head.method_len >= 3 && head.method_len <= 7 && buf[head.method_len] == ' ');
        check(head.target == head.method_len + 1 && head.target_len >= 1);
        check(head.target + head.target_len + 11 <= len && buf[head.target] == '/');
        check(head.method_len + head.target_len + 10 <= lim->request_line);
        check(head.minor == 0 || head.minor == 1);
        check(head.nfields <= CAP && head.nfields <= lim->request_fields);
        check(head.host < (long)head.nfields);
        for (i = 0; i < head.nfields; i++) {
            const hs_field *f = &fields[i];
            check(f->name_len >= 1 && f->name + f->name_len < len && buf[f->name + f->name_len] == ':');
            check(f->name_len + f->value_len + 2 <= lim->request_field_size);
            for (j = 0; j < f->name_len; j++)
                check(is_token(buf[f->name + j]));
            check(f->value + f->value_len + 2 <= len);
            for (j = 0; j < f->value_len; j++)
                check(buf[f->value + j] >= 0x20 ? buf[f->value + j] < 0x7f : buf[f->value + j] == '\t');
            if (f->value_len)
                check(buf[f->value] > ' ' && buf[f->value + f->value_len - 1] > ' ');
        }
    }
    free(buf);
    return 0;
}
