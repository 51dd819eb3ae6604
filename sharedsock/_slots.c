/* Objects of a __slots__ class (RequestHead, ResponsePlan) made and read from C.
 *
 * Calling the class from C runs its Python __init__, a frame and a store per field, on
 * every request; reading a field goes through the descriptor lookup. Both classes keep
 * only what __init__ is given (and what it derives, which the C caller derives the same
 * way: the tests compare every field of objects made both ways). So slots_resolve finds
 * where each slot lives once, and objects are then made by allocating and filling them.
 *
 * It refuses any class it cannot do this for: a __slots__ other than the names the C
 * caller fills (a field added in Python only), a __dict__, a base class with fields of
 * its own, or a slot that is not a plain object member. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "_slots.h"

const char *const request_head_fields[H_COUNT + 1] = {
    "method", "target", "version", "headers", "keep_alive", "content_length", "chunked",
    "expect_continue", "upgrade", "has_body", NULL};
slot_layout request_head;

static int same_names(PyObject *slots, const char *const *names, Py_ssize_t count)
{
    Py_ssize_t i;
    if (!PyTuple_Check(slots) || PyTuple_GET_SIZE(slots) != count)
        return 0;
    for (i = 0; i < count; i++) {
        PyObject *name = PyTuple_GET_ITEM(slots, i);
        if (!PyUnicode_Check(name) || PyUnicode_CompareWithASCIIString(name, names[i]) != 0)
            return 0;
    }
    return 1;
}

int slots_resolve(slot_layout *layout, PyObject *type, const char *const *names, Py_ssize_t count)
{
    PyTypeObject *tp;
    PyObject *slots;
    Py_ssize_t offsets[SLOTS_MAX], i;
    int same;

    if (!PyType_Check(type) || count > SLOTS_MAX) {
        PyErr_SetString(PyExc_TypeError, "a class with __slots__ is required");
        return -1;
    }
    tp = (PyTypeObject *)type;
    if (tp->tp_dictoffset != 0 || tp->tp_base != &PyBaseObject_Type) {
        PyErr_Format(PyExc_TypeError, "%s: only a class of its own __slots__ and no __dict__ can be "
                     "made from C", tp->tp_name);
        return -1;
    }
    if ((slots = PyObject_GetAttrString(type, "__slots__")) == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return -1;
        PyErr_Clear();
        same = 0;
    } else {
        same = same_names(slots, names, count);
        Py_DECREF(slots);
    }
    if (!same) {
        PyErr_Format(PyExc_TypeError, "%s.__slots__ is not what sharedsock._speedups fills: rebuild it "
                     "from the same sources", tp->tp_name);
        return -1;
    }
    for (i = 0; i < count; i++) {
        PyObject *descr = PyObject_GetAttrString(type, names[i]);
        PyMemberDef *member;
        if (descr == NULL)
            return -1;
        if (!Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            Py_DECREF(descr);
            PyErr_Format(PyExc_TypeError, "%s.%s is not a slot", tp->tp_name, names[i]);
            return -1;
        }
        member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type != T_OBJECT_EX || (member->flags & READONLY)) {
            Py_DECREF(descr);
            PyErr_Format(PyExc_TypeError, "%s.%s is not a writable object slot", tp->tp_name, names[i]);
            return -1;
        }
        offsets[i] = member->offset;
        Py_DECREF(descr);
    }
    Py_INCREF(type);
    Py_XSETREF(layout->type, tp);
    layout->count = count;
    memcpy(layout->offsets, offsets, sizeof(Py_ssize_t) * (size_t)count);
    return 0;
}

/* The names as a tuple of str: the module publishes what it fills, so sharedsock.speedups can
 * leave a build for other sources unused instead of failing at the first setup. */
PyObject *slots_names(const char *const *names, Py_ssize_t count)
{
    PyObject *tuple = PyTuple_New(count);
    Py_ssize_t i;
    if (tuple == NULL)
        return NULL;
    for (i = 0; i < count; i++) {
        PyObject *name = PyUnicode_InternFromString(names[i]);
        if (name == NULL) {
            Py_DECREF(tuple);
            return NULL;
        }
        PyTuple_SET_ITEM(tuple, i, name);
    }
    return tuple;
}

/* A new object with ``values`` (borrowed, one per slot, in the layout's order) in its slots. */
PyObject *slots_new(const slot_layout *layout, PyObject *const *values)
{
    PyObject *obj = layout->type->tp_alloc(layout->type, 0);
    Py_ssize_t i;
    if (obj == NULL)
        return NULL;
    for (i = 0; i < layout->count; i++) {
        Py_INCREF(values[i]);
        *(PyObject **)((char *)obj + layout->offsets[i]) = values[i];
    }
    return obj;
}
