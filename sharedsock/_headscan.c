#include "_headscan.h"

#include <string.h>

/* Byte classes. */
#define C_TOKEN 1   /* RFC 9110 5.6.2 tchar */
#define C_TARGET 2  /* what an accepted origin-form target may hold */
#define C_VALUE 4   /* %x21-7E / SP / HTAB */

static unsigned char classes[256];
static int classes_ready;

void hs_init(void)
{
    const char *tchar = "!#$%&'*+-.^_`|~";
    const char *target = "-._~!$&'()*+,;=:@/?%";
    int c;
    for (c = '0'; c <= '9'; c++)
        classes[c] |= C_TOKEN | C_TARGET;
    for (c = 'A'; c <= 'Z'; c++)
        classes[c] |= C_TOKEN | C_TARGET;
    for (c = 'a'; c <= 'z'; c++)
        classes[c] |= C_TOKEN | C_TARGET;
    for (; *tchar; tchar++)
        classes[(unsigned char)*tchar] |= C_TOKEN;
    for (; *target; target++)
        classes[(unsigned char)*target] |= C_TARGET;
    for (c = 0x21; c <= 0x7e; c++)
        classes[c] |= C_VALUE;
    classes[' '] |= C_VALUE;
    classes['\t'] |= C_VALUE;
    classes_ready = 1;
}

static int lower_equals(const unsigned char *p, size_t n, const char *lower)
{
    size_t i;
    if (strlen(lower) != n)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c >= 'A' && c <= 'Z')
            c += 'a' - 'A';
        if (c != (unsigned char)lower[i])
            return 0;
    }
    return 1;
}

static size_t method_length(const unsigned char *p, size_t len)
{
    static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
    size_t i;
    for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        size_t n = strlen(methods[i]);
        if (n < len && memcmp(p, methods[i], n) == 0 && p[n] == ' ')
            return n;
    }
    return 0;
}

/* The fields that change framing or the connection. */
enum { F_OTHER, F_HOST, F_CONTENT_LENGTH, F_CONNECTION, F_DECLINE };

static int field_kind(const unsigned char *name, size_t n)
{
    switch (n) {
    case 4:
        return lower_equals(name, n, "host") ? F_HOST : F_OTHER;
    case 6:
        return lower_equals(name, n, "expect") ? F_DECLINE : F_OTHER;
    case 7:
        return lower_equals(name, n, "upgrade") ? F_DECLINE : F_OTHER;
    case 10:
        return lower_equals(name, n, "connection") ? F_CONNECTION : F_OTHER;
    case 14:
        return lower_equals(name, n, "content-length") ? F_CONTENT_LENGTH : F_OTHER;
    case 16:
        return lower_equals(name, n, "proxy-connection") ? F_DECLINE : F_OTHER;
    case 17:
        return lower_equals(name, n, "transfer-encoding") ? F_DECLINE : F_OTHER;
    default:
        return F_OTHER;
    }
}

int hs_scan(const unsigned char *buf, size_t len, const hs_limits *limits,
            hs_field *fields, size_t cap, hs_head *head)
{
    size_t pos, start, method, nfields = 0;
    int seen_length = 0;

    if (!classes_ready)
        hs_init();
    if (len < 4 || memcmp(buf + len - 4, "\r\n\r\n", 4) != 0)
        return 0;

    /* The request line. */
    method = method_length(buf, len);
    if (method == 0)
        return 0;
    pos = method + 1;
    start = pos;
    if (pos >= len || buf[pos] != '/')
        return 0;
    while (pos < len && (classes[buf[pos]] & C_TARGET))
        pos++;
    /* The line limit covers method SP target SP "HTTP/1.1". */
    if (pos - start + method + 10 > limits->request_line)
        return 0;
    if (len - pos < 11 || memcmp(buf + pos, " HTTP/1.", 8) != 0)
        return 0;
    head->method_len = method;
    head->target = start;
    head->target_len = pos - start;
    pos += 8;
    if (buf[pos] != '0' && buf[pos] != '1')
        return 0;
    head->minor = buf[pos] - '0';
    pos++;
    if (buf[pos] != '\r' || buf[pos + 1] != '\n')
        return 0;
    pos += 2;

    head->connection = HS_CONNECTION_NONE;
    head->host = -1;
    head->content_length = -1;

    /* The fields, up to the empty line. */
    for (;;) {
        size_t name, name_len, value, end, trimmed;
        int kind;
        if (pos + 2 > len)
            return 0;
        if (buf[pos] == '\r')
            break;
        name = pos;
        while (pos < len && (classes[buf[pos]] & C_TOKEN))
            pos++;
        name_len = pos - name;
        if (name_len == 0 || pos >= len || buf[pos] != ':')
            return 0;
        pos++;
        while (pos < len && (buf[pos] == ' ' || buf[pos] == '\t'))
            pos++;
        value = pos;
        while (pos < len && (classes[buf[pos]] & C_VALUE))
            pos++;
        end = pos;
        if (pos + 1 >= len || buf[pos] != '\r' || buf[pos + 1] != '\n')
            return 0;
        pos += 2;
        /* Counted as the llhttp path counts: name, value without its leading blanks, 2. */
        if (name_len + (end - value) + 2 > limits->request_field_size)
            return 0;
        if (nfields >= cap || nfields >= limits->request_fields)
            return 0;
        trimmed = end;
        while (trimmed > value && (buf[trimmed - 1] == ' ' || buf[trimmed - 1] == '\t'))
            trimmed--;
        kind = field_kind(buf + name, name_len);
        if (kind == F_DECLINE) {
            return 0;
        } else if (kind == F_HOST) {
            if (head->host >= 0)
                return 0;
            head->host = (long)nfields;
        } else if (kind == F_CONTENT_LENGTH) {
            size_t i;
            int64_t n = 0;
            /* Digits only, to the end of the line: what llhttp would read otherwise is its call. */
            if (seen_length || end == value || trimmed != end || end - value > 18)
                return 0;
            for (i = value; i < end; i++) {
                if (buf[i] < '0' || buf[i] > '9')
                    return 0;
                n = n * 10 + (buf[i] - '0');
            }
            seen_length = 1;
            head->content_length = n;
        } else if (kind == F_CONNECTION) {
            if (head->connection != HS_CONNECTION_NONE)
                return 0;
            if (lower_equals(buf + value, trimmed - value, "close"))
                head->connection = HS_CONNECTION_CLOSE;
            else if (lower_equals(buf + value, trimmed - value, "keep-alive"))
                head->connection = HS_CONNECTION_KEEP_ALIVE;
            else
                return 0;
        }
        fields[nfields].name = name;
        fields[nfields].name_len = name_len;
        fields[nfields].value = value;
        fields[nfields].value_len = trimmed - value;
        nfields++;
    }
    /* The empty line must be the last two bytes of the head. */
    if (pos + 2 != len || buf[pos + 1] != '\n')
        return 0;
    head->nfields = nfields;
    return 1;
}
