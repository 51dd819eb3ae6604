/* The response head: start_response's arguments checked, and the head rendered as bytes.
 *
 * check_start_response takes a status and headers that the Python one has validated
 * before (it finds them in the Python one's caches) and no header that needs a closer
 * look than Content-Length, Date or Server; it hands every other call to the Python one.
 *
 * sharedsock.http.response.render_head is the definition; render_head is the same function
 * for a plan whose status and headers are str of one byte per character (every plan
 * check_start_response lets through, unless a value is latin-1 beyond ASCII in a
 * wider str: never). Anything else goes to the Python one, which renders it or raises
 * its ResponseHeadError, so both give the same bytes and the same errors. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <time.h>

#include "_response.h"
#include "_slots.h"

static PyObject *python_render;  /* the Python render_head */
static PyObject *date_line;      /* callable: the current "Date: ...\r\n" line */
static long mode_chunked, mode_close;
static PyObject *s_status, *s_headers, *s_has_date, *s_has_server;

/* ResponsePlan's fields, in the order of its __slots__. */
enum { P_STATUS, P_CODE, P_HEADERS, P_LENGTH, P_CLOSE, P_DATE, P_SERVER, P_BODY, P_COUNT };
const char *const response_plan_fields[P_COUNT + 1] = {
    "status", "status_code", "headers", "content_length", "app_wants_close", "has_date", "has_server",
    "may_have_body", NULL};
static slot_layout plan_layout;  /* type NULL until check_setup */

/* The Date line changes once a second: asked of Python then, and kept for the rest of it. */
static PyObject *date_text;
static time_t date_second = -1;

#define MAX_PARTS 256  /* a head with more headers than this goes to Python */

int response_init(void)
{
    if ((s_status == NULL && (s_status = PyUnicode_InternFromString("status")) == NULL)
            || (s_headers == NULL && (s_headers = PyUnicode_InternFromString("headers")) == NULL)
            || (s_has_date == NULL && (s_has_date = PyUnicode_InternFromString("has_date")) == NULL)
            || (s_has_server == NULL && (s_has_server = PyUnicode_InternFromString("has_server")) == NULL))
        return -1;
    return 0;
}

PyObject *response_setup(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    long chunked, close;
    (void)module;
    if (nargs != 4 || !PyCallable_Check(args[0]) || !PyCallable_Check(args[1])
            || !PyLong_CheckExact(args[2]) || !PyLong_CheckExact(args[3])) {
        PyErr_SetString(PyExc_TypeError, "response_setup(render_head, date_line, CHUNKED: int, CLOSE: int)");
        return NULL;
    }
    if ((chunked = PyLong_AsLong(args[2])) == -1 && PyErr_Occurred())
        return NULL;
    if ((close = PyLong_AsLong(args[3])) == -1 && PyErr_Occurred())
        return NULL;
    Py_INCREF(args[0]);
    Py_XSETREF(python_render, args[0]);
    Py_INCREF(args[1]);
    Py_XSETREF(date_line, args[1]);
    mode_chunked = chunked;
    mode_close = close;
    Py_RETURN_NONE;
}

typedef struct {
    const char *p;
    Py_ssize_t n;
} part;

/* A str of one byte per character (ASCII or latin-1) as a part; 0 if it is not one. */
static int as_part(PyObject *text, part *out)
{
    if (!PyUnicode_CheckExact(text) || PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND)
        return 0;
    out->p = (const char *)PyUnicode_1BYTE_DATA(text);
    out->n = PyUnicode_GET_LENGTH(text);
    return 1;
}

static void literal(part *out, const char *text)
{
    out->p = text;
    out->n = (Py_ssize_t)strlen(text);
}

/* The current Date line (a new reference). */
static PyObject *current_date(void)
{
    struct timespec now;
    PyObject *text;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0 || now.tv_sec != date_second || date_text == NULL) {
        if ((text = PyObject_CallNoArgs(date_line)) == NULL)
            return NULL;
        Py_XSETREF(date_text, text);
        date_second = now.tv_sec;
    }
    Py_INCREF(date_text);
    return date_text;
}

static PyObject *plan_field(PyObject *plan, int index, PyObject *name)
{
    return slots_field(&plan_layout, plan, index, name);
}

static int field_true(PyObject *plan, int index, PyObject *name)
{
    PyObject *value = plan_field(plan, index, name);
    int truth;
    if (value == NULL)
        return -1;
    truth = PyObject_IsTrue(value);
    Py_DECREF(value);
    return truth;
}

PyObject *render_head(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    part parts[MAX_PARTS];
    int count = 0, keep_alive, http10 = 0, flag, with_server = 0, i;
    PyObject *plan, *status = NULL, *headers = NULL, *date = NULL, *server, *result = NULL;
    Py_ssize_t total = 0, h;
    long mode;
    char *out;
    (void)module;

    if (python_render == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "render_head: response_setup() was not called");
        return NULL;
    }
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0)  /* keywords: the Python one sorts them out */
        return PyObject_Vectorcall(python_render, args, (size_t)nargs, kwnames);
    if (nargs != 4 && nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "render_head takes 4 or 5 arguments");
        return NULL;
    }
    plan = args[0];
    server = args[3];
    if (!PyLong_CheckExact(args[1]) || !PyUnicode_CheckExact(server))
        goto python;
    mode = PyLong_AsLongAndOverflow(args[1], &flag);
    if (flag != 0)
        goto python;
    if (mode == -1 && PyErr_Occurred())
        return NULL;
    if ((keep_alive = PyObject_IsTrue(args[2])) < 0 || (nargs == 5 && (http10 = PyObject_IsTrue(args[4])) < 0))
        return NULL;
    if ((status = plan_field(plan, P_STATUS, s_status)) == NULL
            || (headers = plan_field(plan, P_HEADERS, s_headers)) == NULL)
        goto done;
    if (!PyList_CheckExact(headers) || 2 + 4 * PyList_GET_SIZE(headers) + 8 > MAX_PARTS)
        goto python;

    /* The Date line first: it is Python code, and the parts below point into live objects. */
    if ((flag = field_true(plan, P_DATE, s_has_date)) < 0)
        goto done;
    if (!flag && (date = current_date()) == NULL)
        goto done;
    if (PyUnicode_GET_LENGTH(server) > 0) {
        if ((flag = field_true(plan, P_SERVER, s_has_server)) < 0)
            goto done;
        with_server = !flag;
    }
    literal(&parts[count++], "HTTP/1.1 ");
    if (!as_part(status, &parts[count++]))
        goto python;
    literal(&parts[count++], "\r\n");
    for (h = 0; h < PyList_GET_SIZE(headers); h++) {
        PyObject *item = PyList_GET_ITEM(headers, h);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2
                || !as_part(PyTuple_GET_ITEM(item, 0), &parts[count])
                || !as_part(PyTuple_GET_ITEM(item, 1), &parts[count + 2]))
            goto python;
        literal(&parts[count + 1], ": ");
        literal(&parts[count + 3], "\r\n");
        count += 4;
    }
    if (date != NULL && !as_part(date, &parts[count++]))
        goto python;
    if (with_server) {
        literal(&parts[count++], "Server: ");
        if (!as_part(server, &parts[count++]))
            goto python;
        literal(&parts[count++], "\r\n");
    }
    if (mode == mode_chunked)
        literal(&parts[count++], "Transfer-Encoding: chunked\r\n");
    if (!keep_alive || mode == mode_close)
        literal(&parts[count++], "Connection: close\r\n\r\n");
    else if (http10)
        literal(&parts[count++], "Connection: keep-alive\r\n\r\n");
    else
        literal(&parts[count++], "\r\n");

    for (i = 0; i < count; i++)
        total += parts[i].n;
    if ((result = PyBytes_FromStringAndSize(NULL, total)) == NULL)
        goto done;
    out = PyBytes_AS_STRING(result);
    for (i = 0; i < count; i++) {
        memcpy(out, parts[i].p, (size_t)parts[i].n);
        out += parts[i].n;
    }
    goto done;

python:
    result = PyObject_Vectorcall(python_render, args, (size_t)nargs, NULL);
done:
    Py_XDECREF(status);
    Py_XDECREF(headers);
    Py_XDECREF(date);
    return result;
}

/* -- check_start_response ------------------------------------------------------------ */

static PyObject *py_check;       /* the Python check_start_response */
static PyObject *statuses;       /* dict: status line already validated -> code */
static PyObject *items;          /* dict: (name, value) already validated -> lower-case name */
static PyObject *notable;        /* frozenset: the lower-case names that need a closer look */

PyObject *check_setup(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5 || !PyCallable_Check(args[0]) || !PyType_Check(args[1]) || !PyDict_CheckExact(args[2])
            || !PyDict_CheckExact(args[3]) || !PyFrozenSet_CheckExact(args[4])) {
        PyErr_SetString(PyExc_TypeError, "check_setup(check_start_response, ResponsePlan, statuses: dict, "
                        "items: dict, notable: frozenset)");
        return NULL;
    }
    if (slots_resolve(&plan_layout, args[1], response_plan_fields, P_COUNT) < 0)
        return NULL;
    Py_INCREF(args[0]);
    Py_XSETREF(py_check, args[0]);
    Py_INCREF(args[2]);
    Py_XSETREF(statuses, args[2]);
    Py_INCREF(args[3]);
    Py_XSETREF(items, args[3]);
    Py_INCREF(args[4]);
    Py_XSETREF(notable, args[4]);
    Py_RETURN_NONE;
}

/* A str of ASCII digits only, at least one: what the Python check reads with int() at once. */
static int plain_digits(PyObject *value)
{
    const Py_UCS1 *p;
    Py_ssize_t n, i;
    if (!PyUnicode_CheckExact(value) || !PyUnicode_IS_ASCII(value))
        return 0;
    n = PyUnicode_GET_LENGTH(value);
    p = PyUnicode_1BYTE_DATA(value);
    if (n == 0)
        return 0;
    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
    }
    return 1;
}

/* The int of a plain_digits str: counted here up to 18 digits (no overflow), else by int(). */
static PyObject *digits_value(PyObject *value)
{
    const Py_UCS1 *p = PyUnicode_1BYTE_DATA(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value), i;
    long long total = 0;
    if (n > 18)
        return PyLong_FromUnicodeObject(value, 10);
    for (i = 0; i < n; i++)
        total = total * 10 + (p[i] - '0');
    return PyLong_FromLongLong(total);
}

PyObject *check_start_response(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *status, *headers, *code, *content_length = NULL, *kept, *plan, *fields[P_COUNT];
    int has_date = 0, has_server = 0;
    long code_value;
    Py_ssize_t i;
    (void)module;

    if (py_check == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "check_start_response: check_setup() was not called");
        return NULL;
    }
    if ((kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) || nargs != 2)
        goto python;
    status = args[0];
    headers = args[1];
    if (!PyUnicode_CheckExact(status) || !PyList_CheckExact(headers))
        goto python;
    code = PyDict_GetItemWithError(statuses, status);
    if (code == NULL || !PyLong_CheckExact(code))
        goto python_clear;
    for (i = 0; i < PyList_GET_SIZE(headers); i++) {
        PyObject *item = PyList_GET_ITEM(headers, i), *lname, *value;
        int is_notable;
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2)
            goto python;
        lname = PyDict_GetItemWithError(items, item);  /* borrowed; items is only changed by Python */
        if (lname == NULL || !PyUnicode_CheckExact(lname))
            goto python_clear;
        if ((is_notable = PySet_Contains(notable, lname)) < 0)
            goto python_clear;
        if (!is_notable)
            continue;
        value = PyTuple_GET_ITEM(item, 1);
        if (PyUnicode_CompareWithASCIIString(lname, "content-length") == 0) {
            if (content_length != NULL || !plain_digits(value))
                goto python;  /* it refuses a second one, or reads a spaced one */
            if ((content_length = digits_value(value)) == NULL)
                return NULL;
        } else if (PyUnicode_CompareWithASCIIString(lname, "date") == 0) {
            has_date = 1;
        } else if (PyUnicode_CompareWithASCIIString(lname, "server") == 0) {
            has_server = 1;
        } else {
            goto python;  /* Connection (honoured or refused) and the hop-by-hop names it refuses */
        }
    }
    code_value = PyLong_AsLong(code);
    if (code_value == -1 && PyErr_Occurred())
        goto python_clear;
    if (content_length != NULL && (code_value < 200 || code_value == 204))
        goto python;  /* it drops the app's Content-Length there */
    if ((kept = PyList_GetSlice(headers, 0, PyList_GET_SIZE(headers))) == NULL) {
        Py_XDECREF(content_length);
        return NULL;
    }
    fields[P_STATUS] = status;
    fields[P_CODE] = code;
    fields[P_HEADERS] = kept;
    fields[P_LENGTH] = content_length == NULL ? Py_None : content_length;
    fields[P_CLOSE] = Py_False;
    fields[P_DATE] = has_date ? Py_True : Py_False;
    fields[P_SERVER] = has_server ? Py_True : Py_False;
    fields[P_BODY] = code_value >= 200 && code_value != 204 && code_value != 304 ? Py_True : Py_False;
    plan = slots_new(&plan_layout, fields);
    Py_DECREF(kept);
    Py_XDECREF(content_length);
    return plan;

python_clear:
    if (PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError))  /* TypeError: an unhashable item */
            return NULL;
        PyErr_Clear();
    }
python:
    Py_XDECREF(content_length);
    return PyObject_Vectorcall(py_check, args, (size_t)nargs, kwnames);
}
