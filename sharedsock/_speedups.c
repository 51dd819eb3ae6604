/* sharedsock._speedups: the optional compiled part of the request path.
 *
 * build_environ (in _environ.c) is sharedsock.wsgi.build_environ for the common target, and
 * check_start_response and render_head (in _response.c) those of sharedsock.http.response.
 * scan_head turns a whole request head into the RequestHead sharedsock.http.parser would
 * make of it, or None when the head is not in _headscan.c's strict grammar or fails a check
 * of the parser's own (the parser then takes its llhttp path, which decides). It never
 * blocks, so it keeps the GIL. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_environ.h"
#include "_response.h"
#include "_headscan.h"
#include "_slots.h"
#include "_inline_watch.h"

#define MAX_FIELDS 128

static PyObject *method_names[7];
static PyObject *versions[2];

static PyObject *known_hosts;    /* dict: Host value -> whether it is valid (the parser's cache) */
static PyObject *valid_host;     /* the parser's valid_host, which judges and caches one */

static PyObject *head_setup(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3 || !PyDict_CheckExact(args[1]) || !PyCallable_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "head_setup(RequestHead, hosts: dict, valid_host)");
        return NULL;
    }
    if (slots_resolve(&request_head, args[0], request_head_fields, H_COUNT) < 0)
        return NULL;
    Py_INCREF(args[1]);
    Py_XSETREF(known_hosts, args[1]);
    Py_INCREF(args[2]);
    Py_XSETREF(valid_host, args[2]);
    Py_RETURN_NONE;
}

/* Whether the parser takes this Host value: 1, 0, or -1 with an exception set. */
static int host_ok(PyObject *host)
{
    PyObject *known = PyDict_GetItemWithError(known_hosts, host), *judged;
    int ok;
    if (known == Py_True)
        return 1;
    if (known == NULL && PyErr_Occurred())
        return -1;
    if ((judged = PyObject_CallOneArg(valid_host, host)) == NULL)
        return -1;
    ok = PyObject_IsTrue(judged);
    Py_DECREF(judged);
    return ok;
}

static PyObject *method_name(const char *p, size_t n)
{
    static const char *const names[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
    size_t i;
    for (i = 0; i < 7; i++) {
        if (strlen(names[i]) == n && memcmp(names[i], p, n) == 0) {
            Py_INCREF(method_names[i]);
            return method_names[i];
        }
    }
    PyErr_SetString(PyExc_SystemError, "scan_head: unknown method");
    return NULL;
}

static Py_ssize_t size_arg(PyObject *arg, const char *what)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred())
        return -1;
    if (n < 0) {
        PyErr_Format(PyExc_ValueError, "scan_head: %s must not be negative", what);
        return -1;
    }
    return n;
}

PyDoc_STRVAR(scan_head_doc,
"scan_head(data, end, request_line, request_fields, request_field_size, request_body)\n--\n\n"
"The RequestHead of the head in data[:end] (ending with its CRLF CRLF), or None to\n"
"leave it to llhttp. request_body: the body limit, 0 for none.");

static PyObject *scan_head(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    hs_field fields[MAX_FIELDS];
    hs_head head;
    hs_limits limits;
    const unsigned char *buf;
    Py_ssize_t end, line, count, size, body_limit, i;
    PyObject *values[H_COUNT] = {NULL}, *headers = NULL, *host = NULL, *result = NULL;
    int ok;
    (void)module;

    if (request_head.type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "scan_head: head_setup() was not called");
        return NULL;
    }
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "scan_head takes 6 arguments");
        return NULL;
    }
    if (!PyBytes_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "scan_head: data must be bytes");
        return NULL;
    }
    if ((end = size_arg(args[1], "end")) < 0 || (line = size_arg(args[2], "request_line")) < 0
            || (count = size_arg(args[3], "request_fields")) < 0
            || (size = size_arg(args[4], "request_field_size")) < 0
            || (body_limit = size_arg(args[5], "request_body")) < 0)
        return NULL;
    if (end > PyBytes_GET_SIZE(args[0])) {
        PyErr_SetString(PyExc_ValueError, "scan_head: end is past the data");
        return NULL;
    }
    buf = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    limits.request_line = (size_t)line;
    limits.request_fields = (size_t)count;
    limits.request_field_size = (size_t)size;
    if (!hs_scan(buf, (size_t)end, &limits, fields, MAX_FIELDS, &head))
        Py_RETURN_NONE;
    /* The parser's checks: a Host for HTTP/1.1, a valid one, a body within the limit. */
    if ((head.host < 0 && head.minor == 1) || (body_limit > 0 && head.content_length > (int64_t)body_limit))
        Py_RETURN_NONE;

    headers = PyList_New((Py_ssize_t)head.nfields);
    if (headers == NULL)
        goto done;
    for (i = 0; i < (Py_ssize_t)head.nfields; i++) {
        const hs_field *f = &fields[i];
        PyObject *name = PyBytes_FromStringAndSize((const char *)buf + f->name, (Py_ssize_t)f->name_len);
        PyObject *value = name == NULL ? NULL
            : PyBytes_FromStringAndSize((const char *)buf + f->value, (Py_ssize_t)f->value_len);
        PyObject *pair = value == NULL ? NULL : PyTuple_New(2);
        if (pair == NULL) {
            Py_XDECREF(name);
            Py_XDECREF(value);
            goto done;
        }
        PyTuple_SET_ITEM(pair, 0, name);
        PyTuple_SET_ITEM(pair, 1, value);
        PyList_SET_ITEM(headers, i, pair);
        if (i == head.host)
            host = value;  /* borrowed from headers */
    }
    if (host != NULL) {
        if ((ok = host_ok(host)) < 0)
            goto done;
        if (!ok) {
            result = Py_None;
            Py_INCREF(result);
            goto done;
        }
    }
    if ((values[H_METHOD] = method_name((const char *)buf, head.method_len)) == NULL)
        goto done;
    values[H_TARGET] = PyBytes_FromStringAndSize((const char *)buf + head.target, (Py_ssize_t)head.target_len);
    if (values[H_TARGET] == NULL)
        goto done;
    if (head.content_length < 0) {
        values[H_LENGTH] = Py_None;
        Py_INCREF(Py_None);
    } else if ((values[H_LENGTH] = PyLong_FromLongLong((long long)head.content_length)) == NULL) {
        goto done;
    }
    values[H_VERSION] = versions[head.minor];
    values[H_HEADERS] = headers;
    values[H_KEEP_ALIVE] = (head.minor == 1 ? head.connection != HS_CONNECTION_CLOSE
                            : head.connection == HS_CONNECTION_KEEP_ALIVE) ? Py_True : Py_False;
    values[H_CHUNKED] = values[H_EXPECT] = values[H_UPGRADE] = Py_False;
    values[H_BODY] = head.content_length > 0 ? Py_True : Py_False;
    result = slots_new(&request_head, values);

done:
    Py_XDECREF(headers);
    Py_XDECREF(values[H_METHOD]);
    Py_XDECREF(values[H_TARGET]);
    Py_XDECREF(values[H_LENGTH]);
    return result;
}

static PyMethodDef methods[] = {
    {"scan_head", (PyCFunction)(void (*)(void))scan_head, METH_FASTCALL, scan_head_doc},
    {"head_setup", (PyCFunction)(void (*)(void))head_setup, METH_FASTCALL,
     "head_setup(RequestHead, hosts, valid_host)\n--\n\n"
     "The class scan_head makes, and the Host cache and check it shares with sharedsock.http.parser."},
    {"build_environ", (PyCFunction)(void (*)(void))build_environ, METH_FASTCALL | METH_KEYWORDS,
     "build_environ(head, base, remote_addr, remote_port, root_path)\n--\n\n"
     "sharedsock.wsgi.build_environ, in C for origin-form targets (see _environ.c)."},
    {"render_head", (PyCFunction)(void (*)(void))render_head, METH_FASTCALL | METH_KEYWORDS,
     "render_head(plan, mode, keep_alive, server, http10=False)\n--\n\n"
     "sharedsock.http.response.render_head, in C (see _response.c)."},
    {"response_setup", (PyCFunction)(void (*)(void))response_setup, METH_FASTCALL,
     "response_setup(render_head, date_line, CHUNKED, CLOSE)\n--\n\n"
     "The Python renderer and Date line render_head shares with sharedsock.http.response."},
    {"check_start_response", (PyCFunction)(void (*)(void))check_start_response,
     METH_FASTCALL | METH_KEYWORDS,
     "check_start_response(status, headers)\n--\n\n"
     "sharedsock.http.response.check_start_response, in C for what it has seen before."},
    {"check_setup", (PyCFunction)(void (*)(void))check_setup, METH_FASTCALL,
     "check_setup(check_start_response, ResponsePlan, statuses, items, notable)\n--\n\n"
     "The Python check and the caches check_start_response shares with sharedsock.http.response."},
    {"inline_begin", inline_begin, METH_NOARGS, "An inline request begins (see _inline_watch.c)."},
    {"inline_end", inline_end, METH_NOARGS, "The inline request ended."},
    {"inline_still", inline_still, METH_O, "inline_still(seq)\n--\n\nWhether request seq still runs inline."},
    {"inline_stop", inline_stop, METH_NOARGS, "Ends every inline_wait, now and later."},
    {"inline_sleeping", inline_sleeping, METH_NOARGS,
     "Whether inline_wait sleeps through a quiet spell, until the next inline_begin."},
    {"inline_wait", (PyCFunction)(void (*)(void))inline_wait, METH_FASTCALL,
     "inline_wait(poll, quiet, main_cpu_clock)\n--\n\n"
     "sharedsock.inline_watch.InlineWatch.wait, polling without the GIL."},
    {"roomy_dict", (PyCFunction)(void (*)(void))roomy_dict, METH_FASTCALL,
     "roomy_dict(mapping, room)\n--\n\n"
     "A copy of the dict with room for room more keys: copies of it clone that room (see _environ.c)."},
    {"environ_setup", (PyCFunction)(void (*)(void))environ_setup, METH_FASTCALL,
     "environ_setup(header_keys, header_key_for, server_names, server_name_for, build_environ)\n--\n\n"
     "The caches and Python helpers build_environ shares with sharedsock.wsgi."},
    {NULL, NULL, 0, NULL},
};

static int add_names(PyObject *module, const char *attribute, const char *const *names)
{
    Py_ssize_t count = 0;
    PyObject *tuple;
    int result;
    while (names[count] != NULL)
        count++;
    if ((tuple = slots_names(names, count)) == NULL)
        return -1;
    result = PyModule_AddObjectRef(module, attribute, tuple);
    Py_DECREF(tuple);
    return result;
}

static int exec_module(PyObject *module)
{
    static const char *const names[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
    int i;
    hs_init();
    if (environ_init() < 0 || response_init() < 0)
        return -1;
    for (i = 0; i < 7; i++) {
        if (method_names[i] == NULL && (method_names[i] = PyUnicode_InternFromString(names[i])) == NULL)
            return -1;
    }
    if (versions[0] == NULL && (versions[0] = PyUnicode_InternFromString("1.0")) == NULL)
        return -1;
    if (versions[1] == NULL && (versions[1] = PyUnicode_InternFromString("1.1")) == NULL)
        return -1;
    if (add_names(module, "REQUEST_HEAD_SLOTS", request_head_fields) < 0)
        return -1;
    return add_names(module, "RESPONSE_PLAN_SLOTS", response_plan_fields);
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, (void *)exec_module},
    {0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "sharedsock._speedups",
    "The optional compiled part of sharedsock's request path (see sharedsock.speedups).",
    0, methods, slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    return PyModuleDef_Init(&moduledef);
}
