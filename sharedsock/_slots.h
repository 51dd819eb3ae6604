/* Objects of a __slots__ class made and read from C (see _slots.c). */
#ifndef SHAREDSOCK_SLOTS_H
#define SHAREDSOCK_SLOTS_H

#include <Python.h>

#define SLOTS_MAX 16

typedef struct {
    PyTypeObject *type;  /* a strong reference, once resolved */
    Py_ssize_t count;
    Py_ssize_t offsets[SLOTS_MAX];
} slot_layout;

int slots_resolve(slot_layout *layout, PyObject *type, const char *const *names, Py_ssize_t count);
PyObject *slots_new(const slot_layout *layout, PyObject *const *values);

/* The value in slot ``i`` of an object of the layout's exact type (borrowed; NULL if unset). */
static inline PyObject *slots_get(const slot_layout *layout, PyObject *obj, Py_ssize_t i)
{
    return *(PyObject **)((char *)obj + layout->offsets[i]);
}

#endif
