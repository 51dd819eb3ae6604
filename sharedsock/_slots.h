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
PyObject *slots_names(const char *const *names, Py_ssize_t count);

/* RequestHead's fields, in the order of its __slots__ (sharedsock/http/parser.py): scan_head
 * makes these objects and build_environ reads them. */
enum { H_METHOD, H_TARGET, H_VERSION, H_HEADERS, H_KEEP_ALIVE, H_LENGTH, H_CHUNKED, H_EXPECT,
       H_UPGRADE, H_BODY, H_COUNT };
extern const char *const request_head_fields[H_COUNT + 1];  /* NULL-terminated */
extern slot_layout request_head;  /* type NULL until head_setup */

/* The value in slot ``i`` of an object of the layout's exact type (borrowed; NULL if unset). */
static inline PyObject *slots_get(const slot_layout *layout, PyObject *obj, Py_ssize_t i)
{
    return *(PyObject **)((char *)obj + layout->offsets[i]);
}

/* A field of ``obj``: from its slot when obj is of the layout's exact type and the slot is
 * set, else through getattr (so subclasses and unset slots behave as in Python). New reference. */
static inline PyObject *slots_field(const slot_layout *layout, PyObject *obj, Py_ssize_t i, PyObject *name)
{
    if (Py_TYPE(obj) == layout->type) {
        PyObject *value = slots_get(layout, obj, i);
        if (value != NULL) {
            Py_INCREF(value);
            return value;
        }
    }
    return PyObject_GetAttr(obj, name);
}

#endif
