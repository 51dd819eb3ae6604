/* A strict scanner for the common request head, with no Python in it (so it can be
 * fuzzed on its own). It accepts a subset of what sharedsock's llhttp path accepts and
 * declines the rest, which then takes that path: it never refuses a request itself. */

#ifndef SHAREDSOCK_HEADSCAN_H
#define SHAREDSOCK_HEADSCAN_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    size_t request_line;      /* --limit-request-line */
    size_t request_fields;    /* --limit-request-fields */
    size_t request_field_size;  /* --limit-request-field_size */
} hs_limits;

typedef struct {
    size_t name, name_len;    /* offsets into the head */
    size_t value, value_len;  /* without leading or trailing SP / HTAB */
} hs_field;

enum { HS_CONNECTION_NONE = 0, HS_CONNECTION_CLOSE = 1, HS_CONNECTION_KEEP_ALIVE = 2 };

typedef struct {
    size_t method_len;        /* the method starts the head */
    size_t target, target_len;
    int minor;                /* HTTP/1.<minor>: 0 or 1 */
    size_t nfields;
    int connection;           /* HS_CONNECTION_* */
    long host;                /* index of the Host field, -1 if none */
    int64_t content_length;   /* -1 if none */
} hs_head;

/* Fill the byte class tables; call once before hs_scan can run in two threads at once. */
void hs_init(void);

/* Scan the whole head in buf[0:len], which must end with the CRLF CRLF that ends it.
 * Returns 1 and fills *head and fields[0:head->nfields] if the head is in the grammar
 * below, 0 otherwise (nothing in *head is then meaningful). At most cap fields are
 * stored; a head with more is declined.
 *
 *   method SP origin-form-target SP "HTTP/1." ("0" / "1") CRLF
 *   *( token ":" *(SP / HTAB) *( %x21-7E / SP / HTAB ) CRLF )
 *   CRLF
 *
 * method is one of GET HEAD POST PUT DELETE PATCH OPTIONS; the target starts with "/"
 * and holds only unreserved, sub-delims, ":", "@", "/", "?" and "%". Declined as well:
 * any limit reached, a second Host, Content-Length or Connection; a Content-Length
 * that is not 1 to 18 digits; a Connection that is not exactly "close" or
 * "keep-alive"; any Transfer-Encoding, Upgrade, Expect or Proxy-Connection field. */
int hs_scan(const unsigned char *buf, size_t len, const hs_limits *limits,
            hs_field *fields, size_t cap, hs_head *head);

#endif
