/* sharedsock._speedups: the optional compiled part of the request path.
 *
 * build_environ (in _environ.c) is sharedsock.wsgi.build_environ for the common target, and
 * check_start_response and render_head (in _response.c) those of sharedsock.http.response.
 * scan_head turns a whole request head into the pieces sharedsock.http.parser builds a
 * RequestHead from, or None when the head is not in _headscan.c's strict grammar (the
 * parser then takes its llhttp path, which decides). It never blocks, so it keeps the GIL. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_environ.h"
#include "_response.h"
#include "_headscan.h"

#define MAX_FIELDS 128

static PyObject *method_names[7];
static PyObject *versions[2];

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
"scan_head(data, end, request_line, request_fields, request_field_size)\n--\n\n"
"The head in data[:end] (ending with its CRLF CRLF) as (method, target, version,\n"
"headers, connection, host, content_length), or None to leave it to llhttp.\n"
"connection: 0 none, 1 close, 2 keep-alive; host: the Host value or None;\n"
"content_length: -1 if none.");

static PyObject *scan_head(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    hs_field fields[MAX_FIELDS];
    hs_head head;
    hs_limits limits;
    const unsigned char *buf;
    Py_ssize_t end, line, count, size, i;
    PyObject *headers = NULL, *method = NULL, *target = NULL, *host = NULL, *result;
    (void)module;

    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "scan_head takes 5 arguments");
        return NULL;
    }
    if (!PyBytes_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "scan_head: data must be bytes");
        return NULL;
    }
    if ((end = size_arg(args[1], "end")) < 0 || (line = size_arg(args[2], "request_line")) < 0
            || (count = size_arg(args[3], "request_fields")) < 0
            || (size = size_arg(args[4], "request_field_size")) < 0)
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

    headers = PyList_New((Py_ssize_t)head.nfields);
    if (headers == NULL)
        goto fail;
    for (i = 0; i < (Py_ssize_t)head.nfields; i++) {
        const hs_field *f = &fields[i];
        PyObject *name = PyBytes_FromStringAndSize((const char *)buf + f->name, (Py_ssize_t)f->name_len);
        PyObject *value = name == NULL ? NULL
            : PyBytes_FromStringAndSize((const char *)buf + f->value, (Py_ssize_t)f->value_len);
        PyObject *pair = value == NULL ? NULL : PyTuple_New(2);
        if (pair == NULL) {
            Py_XDECREF(name);
            Py_XDECREF(value);
            goto fail;
        }
        PyTuple_SET_ITEM(pair, 0, name);
        PyTuple_SET_ITEM(pair, 1, value);
        PyList_SET_ITEM(headers, i, pair);
        if (i == head.host) {
            host = value;
            Py_INCREF(host);
        }
    }
    if (host == NULL) {
        host = Py_None;
        Py_INCREF(host);
    }
    method = method_name((const char *)buf, head.method_len);
    if (method == NULL)
        goto fail;
    target = PyBytes_FromStringAndSize((const char *)buf + head.target, (Py_ssize_t)head.target_len);
    if (target == NULL)
        goto fail;
    result = Py_BuildValue("(NNONiNL)", method, target, versions[head.minor], headers,
                           head.connection, host, (long long)head.content_length);
    return result;  /* Py_BuildValue took the N references, even on failure */

fail:
    Py_XDECREF(headers);
    Py_XDECREF(method);
    Py_XDECREF(target);
    Py_XDECREF(host);
    return NULL;
}

static PyMethodDef methods[] = {
    {"scan_head", (PyCFunction)(void (*)(void))scan_head, METH_FASTCALL, scan_head_doc},
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
    {"environ_setup", (PyCFunction)(void (*)(void))environ_setup, METH_FASTCALL,
     "environ_setup(header_keys, header_key_for, server_names, server_name_for, build_environ)\n--\n\n"
     "The caches and Python helpers build_environ shares with sharedsock.wsgi."},
    {NULL, NULL, 0, NULL},
};

static int exec_module(PyObject *module)
{
    static const char *const names[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
    int i;
    (void)module;
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
    return 0;
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
