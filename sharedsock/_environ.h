/* The WSGI environ builder of sharedsock._speedups (see _environ.c). */
#ifndef SHAREDSOCK_ENVIRON_H
#define SHAREDSOCK_ENVIRON_H

#include <Python.h>

int environ_init(void);
PyObject *environ_setup(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *roomy_dict(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *build_environ(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);

#endif
