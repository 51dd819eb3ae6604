/* The stand-in's watch over the request served inline, without the GIL (see _inline_watch.c). */
#ifndef SHAREDSOCK_INLINE_WATCH_H
#define SHAREDSOCK_INLINE_WATCH_H

#include <Python.h>

PyObject *inline_begin(PyObject *module, PyObject *unused);
PyObject *inline_end(PyObject *module, PyObject *unused);
PyObject *inline_still(PyObject *module, PyObject *seq);
PyObject *inline_stop(PyObject *module, PyObject *unused);
PyObject *inline_sleeping(PyObject *module, PyObject *unused);
PyObject *inline_wait(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#endif
