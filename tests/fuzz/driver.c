/* A stand-in for libFuzzer's main, so the suite can run fuzz_headscan.c under
 * AddressSanitizer with gcc alone: every seed file given, then random mutations of
 * them (a fixed seed, so a failure repeats).
 *   driver ITERATIONS SEED_FILE... */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_INPUT 8192

static uint64_t state = 88172645463325252ULL;

static uint32_t next(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (uint32_t)(state >> 16);
}

int main(int argc, char **argv)
{
    static const char *const pieces[] = {"\r\n", "\n", "\r", " ", "\t", ":", "\x00", "\x7f", "\xe9",
                                         "Host: x\r\n", "Content-Length: 5\r\n", "Connection: close\r\n",
                                         "Transfer-Encoding: chunked\r\n", "HTTP/1.1", "\r\n\r\n"};
    unsigned char *seeds[4096];
    size_t lengths[4096], nseeds = 0, i;
    long iterations;
    unsigned char buf[MAX_INPUT];
    if (argc < 3)
        return 2;
    iterations = atol(argv[1]);
    for (i = 2; i < (size_t)argc && nseeds < 4096; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (f == NULL)
            return 2;
        seeds[nseeds] = malloc(MAX_INPUT);
        lengths[nseeds] = fread(seeds[nseeds], 1, MAX_INPUT / 2, f);
        fclose(f);
        LLVMFuzzerTestOneInput(seeds[nseeds], lengths[nseeds]);
        nseeds++;
    }
    for (; iterations > 0; iterations--) {
        size_t k = next() % nseeds, len = lengths[k], edits = 1 + next() % 4;
        memcpy(buf, seeds[k], len);
        while (edits--) {
            size_t at = len ? next() % (len + 1) : 0;
            uint32_t choice = next() % 3;
            if (choice == 0 && at < len) {
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
            } else if (choice == 1) {
                const char *p = pieces[next() % (sizeof(pieces) / sizeof(pieces[0]))];
                size_t n = strlen(p) ? strlen(p) : 1;
                if (len + n < MAX_INPUT) {
                    memmove(buf + at + n, buf + at, len - at);
                    memcpy(buf + at, p, n);
                    len += n;
                }
            } else if (at < len) {
                buf[at] = (unsigned char)next();
            }
        }
        LLVMFuzzerTestOneInput(buf, len);
    }
    for (i = 0; i < nseeds; i++)
        free(seeds[i]);
    printf("ran %zu seeds and %s mutations\n", nseeds, argv[1]);
    return 0;
}
