/* The WSGI environ for one request, built in C for the common case.
 *
 * sharedsock.wsgi.build_environ is the definition; this is the same function for an
 * origin-form target with no '%' and no '#' (nearly every request), and it calls the
 * Python one for every other target. Header names not yet in the name cache, and Host
 * values not yet in the SERVER_NAME cache, are asked of the Python helpers that fill
 * those caches, so both paths share one set of rules. Nothing here blocks. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_environ.h"
#include "_slots.h"

static PyObject *header_keys;      /* dict: header name (bytes) -> environ key (str) or None */
static PyObject *header_key_for;   /* callable: name -> key or None, filling header_keys */
static PyObject *server_names;     /* dict: Host value (str) -> SERVER_NAME (str) */
static PyObject *server_name_for;  /* callable: host -> SERVER_NAME, filling server_names */
static PyObject *python_build;     /* the Python build_environ, for every other target */

static PyObject *s_method, *s_target, *s_version, *s_headers;
static PyObject *k_remote_addr, *k_remote_port, *k_request_method, *k_path_info, *k_query_string,
    *k_raw_uri, *k_request_uri, *k_server_protocol, *k_http_host, *k_http_cookie, *k_server_name;
static PyObject *proto_10, *proto_11, *empty_str, *field_sep, *cookie_sep;

static int intern(PyObject **slot, const char *text)
{
    if (*slot == NULL && (*slot = PyUnicode_InternFromString(text)) == NULL)
        return -1;
    return 0;
}

int environ_init(void)
{
    if (intern(&s_method, "method") || intern(&s_target, "target") || intern(&s_version, "version")
            || intern(&s_headers, "headers") || intern(&k_remote_addr, "REMOTE_ADDR")
            || intern(&k_remote_port, "REMOTE_PORT") || intern(&k_request_method, "REQUEST_METHOD")
            || intern(&k_path_info, "PATH_INFO") || intern(&k_query_string, "QUERY_STRING")
            || intern(&k_raw_uri, "RAW_URI") || intern(&k_request_uri, "REQUEST_URI")
            || intern(&k_server_protocol, "SERVER_PROTOCOL") || intern(&k_http_host, "HTTP_HOST")
            || intern(&k_http_cookie, "HTTP_COOKIE") || intern(&k_server_name, "SERVER_NAME")
            || intern(&proto_10, "HTTP/1.0") || intern(&proto_11, "HTTP/1.1") || intern(&empty_str, "")
            || intern(&field_sep, ", ") || intern(&cookie_sep, "; "))
        return -1;
    return 0;
}

static void set_slot(PyObject **slot, PyObject *value)
{
    Py_INCREF(value);
    Py_XSETREF(*slot, value);
}

PyObject *environ_setup(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5 || !PyDict_CheckExact(args[0]) || !PyCallable_Check(args[1])
            || !PyDict_CheckExact(args[2]) || !PyCallable_Check(args[3]) || !PyCallable_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError,
                        "environ_setup(header_keys: dict, header_key_for, server_names: dict, "
                        "server_name_for, build_environ)");
        return NULL;
    }
    set_slot(&header_keys, args[0]);
    set_slot(&header_key_for, args[1]);
    set_slot(&server_names, args[2]);
    set_slot(&server_name_for, args[3]);
    set_slot(&python_build, args[4]);
    Py_RETURN_NONE;
}

/* A copy of a dict with room for ``room`` more keys and no deleted entries. Copying a dict
 * like that (dict.copy, PyDict_Copy) clones its table, room and all, so an environ copied
 * from a roomy base takes the request's keys without growing its table once or twice. */
PyObject *roomy_dict(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *out, *key, *value;
    Py_ssize_t room, pos = 0;
    (void)module;
    if (nargs != 2 || !PyDict_CheckExact(args[0]) || !PyLong_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "roomy_dict(mapping: dict, room: int)");
        return NULL;
    }
    if ((room = PyLong_AsSsize_t(args[1])) == -1 && PyErr_Occurred())
        return NULL;
    if (room < 0 || room > 1024) {
        PyErr_SetString(PyExc_ValueError, "roomy_dict: room must be 0 to 1024");
        return NULL;
    }
    if ((out = _PyDict_NewPresized(PyDict_GET_SIZE(args[0]) + room)) == NULL)
        return NULL;
    while (PyDict_Next(args[0], &pos, &key, &value)) {
        if (PyDict_SetItem(out, key, value) < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

static int set_new(PyObject *environ, PyObject *key, PyObject *value)
{
    int rc;
    if (value == NULL)
        return -1;
    rc = PyDict_SetItem(environ, key, value);
    Py_DECREF(value);
    return rc;
}

static PyObject *latin1(const char *p, Py_ssize_t n)
{
    return n == 0 ? Py_NewRef(empty_str) : PyUnicode_DecodeLatin1(p, n, NULL);
}

/* PATH_INFO with --root-path taken off when the path is the root path or under it. */
static PyObject *path_info_for(const char *path, Py_ssize_t n, PyObject *root_path)
{
    PyObject *info = latin1(path, n), *rest;
    Py_ssize_t root_len, info_len;
    int match;
    if (info == NULL)
        return NULL;
    root_len = PyUnicode_GET_LENGTH(root_path);
    if (root_len == 0)
        return info;
    info_len = PyUnicode_GET_LENGTH(info);
    match = (int)PyUnicode_Tailmatch(info, root_path, 0, root_len, -1);
    if (match < 0) {
        Py_DECREF(info);
        return NULL;
    }
    if (!match || (info_len > root_len && PyUnicode_READ_CHAR(info, root_len) != '/'))
        return info;
    rest = PyUnicode_Substring(info, root_len, info_len);
    Py_DECREF(info);
    return rest;
}

static int add_header(PyObject *environ, PyObject *pair)
{
    PyObject *name, *value, *key, *text, *old;
    Py_ssize_t size;
    int rc;
    if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2) {
        PyErr_SetString(PyExc_TypeError, "build_environ: headers must be (name, value) tuples");
        return -1;
    }
    name = PyTuple_GET_ITEM(pair, 0);
    value = PyTuple_GET_ITEM(pair, 1);
    if (!PyBytes_CheckExact(value)) {
        PyErr_SetString(PyExc_TypeError, "build_environ: header values must be bytes");
        return -1;
    }
    key = PyDict_GetItemWithError(header_keys, name);
    if (key != NULL) {
        Py_INCREF(key);
    } else {
        if (PyErr_Occurred() || (key = PyObject_CallOneArg(header_key_for, name)) == NULL)
            return -1;
    }
    if (key == Py_None) {
        Py_DECREF(key);
        return 0;
    }
    if (!PyUnicode_CheckExact(key)) {
        Py_DECREF(key);
        PyErr_SetString(PyExc_TypeError, "build_environ: environ keys must be str");
        return -1;
    }
    text = latin1(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value));
    if (text == NULL) {
        Py_DECREF(key);
        return -1;
    }
    size = PyDict_GET_SIZE(environ);
    old = PyDict_SetDefault(environ, key, text);  /* one lookup for the common, first field */
    if (old == NULL)
        goto fail;
    if (PyDict_GET_SIZE(environ) > size) {  /* inserted (old may be text even if not: "h" is "h") */
        Py_DECREF(key);
        Py_DECREF(text);
        return 0;
    }
    if (PyUnicode_GET_LENGTH(key) > 0 && PyUnicode_READ_CHAR(key, 0) == 'H') {
        /* a repeated field: joined as RFC 9110 5.3 has it (cookies with "; ", RFC 6265 5.4) */
        PyObject *joined = PyUnicode_Concat(old, PyUnicode_Compare(key, k_http_cookie) == 0
                                                 ? cookie_sep : field_sep);
        if (joined == NULL)
            goto fail;
        Py_SETREF(joined, PyUnicode_Concat(joined, text));
        Py_SETREF(text, joined);
        if (text == NULL) {
            Py_DECREF(key);
            return -1;
        }
    }
    rc = PyDict_SetItem(environ, key, text);
    Py_DECREF(key);
    Py_DECREF(text);
    return rc;
fail:
    Py_DECREF(key);
    Py_DECREF(text);
    return -1;
}

static int set_server_name(PyObject *environ)
{
    PyObject *host = PyDict_GetItemWithError(environ, k_http_host), *name;
    int truth;
    if (host == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if ((truth = PyObject_IsTrue(host)) <= 0)
        return truth;
    Py_INCREF(host);
    name = PyDict_GetItemWithError(server_names, host);
    if (name != NULL)
        Py_INCREF(name);
    else if (!PyErr_Occurred())
        name = PyObject_CallOneArg(server_name_for, host);
    Py_DECREF(host);
    return set_new(environ, k_server_name, name);
}

static PyObject *head_field(PyObject *head, int index, PyObject *name)
{
    return slots_field(&request_head, head, index, name);
}

PyObject *build_environ(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *head, *base, *root_path, *target = NULL, *method = NULL, *version = NULL,
        *headers = NULL, *environ = NULL, *raw, *protocol;
    const char *t, *query;
    Py_ssize_t n, path_len, i;
    (void)module;

    if (python_build == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "build_environ: environ_setup() was not called");
        return NULL;
    }
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0)  /* keywords: the Python one sorts them out */
        return PyObject_Vectorcall(python_build, args, (size_t)nargs, kwnames);
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "build_environ takes 5 arguments");
        return NULL;
    }
    head = args[0];
    base = args[1];
    root_path = args[4];
    target = head_field(head, H_TARGET, s_target);
    if (target == NULL)
        return NULL;
    if (!PyBytes_CheckExact(target) || !PyDict_CheckExact(base) || !PyUnicode_CheckExact(root_path))
        goto python;
    t = PyBytes_AS_STRING(target);
    n = PyBytes_GET_SIZE(target);
    if (n == 0 || t[0] != '/' || memchr(t, '#', (size_t)n) != NULL)
        goto python;
    query = memchr(t, '?', (size_t)n);
    path_len = query == NULL ? n : query - t;
    if (memchr(t, '%', (size_t)path_len) != NULL)
        goto python;

    if ((method = head_field(head, H_METHOD, s_method)) == NULL
            || (version = head_field(head, H_VERSION, s_version)) == NULL
            || (headers = head_field(head, H_HEADERS, s_headers)) == NULL)
        goto fail;
    if (!PyList_CheckExact(headers) || !PyUnicode_CheckExact(version)) {
        Py_CLEAR(method);
        Py_CLEAR(version);
        Py_CLEAR(headers);
        goto python;
    }
    if ((environ = PyDict_Copy(base)) == NULL
            || PyDict_SetItem(environ, k_remote_addr, args[2]) < 0
            || PyDict_SetItem(environ, k_remote_port, args[3]) < 0
            || PyDict_SetItem(environ, k_request_method, method) < 0
            || set_new(environ, k_path_info, path_info_for(t, path_len, root_path)) < 0
            || set_new(environ, k_query_string,
                       query == NULL ? Py_NewRef(empty_str) : latin1(query + 1, n - path_len - 1)) < 0)
        goto fail;
    if ((raw = latin1(t, n)) == NULL)
        goto fail;
    if (PyDict_SetItem(environ, k_raw_uri, raw) < 0 || PyDict_SetItem(environ, k_request_uri, raw) < 0) {
        Py_DECREF(raw);
        goto fail;
    }
    Py_DECREF(raw);
    if (PyUnicode_CompareWithASCIIString(version, "1.1") == 0)
        protocol = Py_NewRef(proto_11);
    else if (PyUnicode_CompareWithASCIIString(version, "1.0") == 0)
        protocol = Py_NewRef(proto_10);
    else
        protocol = PyUnicode_FromFormat("HTTP/%U", version);
    if (set_new(environ, k_server_protocol, protocol) < 0)
        goto fail;
    for (i = 0; i < PyList_GET_SIZE(headers); i++) {
        PyObject *pair = PyList_GET_ITEM(headers, i);
        int rc;
        Py_INCREF(pair);  /* the name cache's helper is Python code and could touch the list */
        rc = add_header(environ, pair);
        Py_DECREF(pair);
        if (rc < 0)
            goto fail;
    }
    if (set_server_name(environ) < 0)
        goto fail;
    Py_DECREF(target);
    Py_DECREF(method);
    Py_DECREF(version);
    Py_DECREF(headers);
    return environ;

python:
    Py_DECREF(target);
    return PyObject_Vectorcall(python_build, args, (size_t)nargs, NULL);
fail:
    Py_XDECREF(target);
    Py_XDECREF(method);
    Py_XDECREF(version);
    Py_XDECREF(headers);
    Py_XDECREF(environ);
    return NULL;
}
