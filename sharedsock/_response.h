/* The response head renderer of sharedsock._speedups (see _response.c). */
#ifndef SHAREDSOCK_RESPONSE_H
#define SHAREDSOCK_RESPONSE_H

#include <Python.h>

int response_init(void);
extern const char *const response_plan_fields[];  /* ResponsePlan.__slots__, NULL-terminated */
PyObject *response_setup(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *render_head(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);

PyObject *check_setup(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *check_start_response(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);

#endif
