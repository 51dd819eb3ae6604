/* The stand-in's watch over the request the main thread serves inline, without the GIL.
 *
 * sharedsock.inline_watch.InlineWatch is the definition. Its Python polls take the
 * interpreter lock every STAND_IN_POLL, from a thread that must wait for the main one to
 * let it go (the switch interval), then hand it back: about four context switches per
 * poll, a third of one per Flask request under load. Here the polls run with the lock
 * released, on two counters the main thread sets; it is taken only to report a request
 * that ran a whole poll. A quiet spell is slept through on a condition variable that the
 * next inline_begin signals, so the wake-up takes no interpreter lock either (in Python the
 * woken thread wanted it from the main thread serving that very request). One worker per
 * process: the state is static. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "_inline_watch.h"

static atomic_ullong serve_seq;  /* bumped as each inline request begins */
static atomic_int serving;       /* 1 while one runs */
static atomic_int stopped;
static atomic_int asleep;        /* 1 while the stand-in sleeps through a quiet spell */
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sleep_cond = PTHREAD_COND_INITIALIZER;

static void wake_sleeper(int always)
{
    if (always || atomic_load(&asleep)) {
        pthread_mutex_lock(&sleep_lock);
        pthread_cond_broadcast(&sleep_cond);
        pthread_mutex_unlock(&sleep_lock);
    }
}

PyObject *inline_begin(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    atomic_fetch_add(&serve_seq, 1);
    atomic_store(&serving, 1);
    wake_sleeper(0);  /* asleep is read after serving is set: see sleep_until_begun */
    Py_RETURN_NONE;
}

PyObject *inline_end(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    atomic_store(&serving, 0);
    Py_RETURN_NONE;
}

PyObject *inline_still(PyObject *module, PyObject *seq)
{
    unsigned long long value = PyLong_AsUnsignedLongLong(seq);
    (void)module;
    if (value == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    return PyBool_FromLong(atomic_load(&serving) && atomic_load(&serve_seq) == value);
}

PyObject *inline_stop(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    atomic_store(&stopped, 1);
    wake_sleeper(1);
    Py_RETURN_NONE;
}

PyObject *inline_sleeping(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyBool_FromLong(atomic_load(&asleep));
}

/* Until a request begins after ``seq`` (or the watch stops). asleep is set before the
 * counters are checked and inline_begin sets them before it reads asleep, so one of the
 * two sees the other: either no sleep begins, or the signal finds it. */
static void sleep_until_begun(unsigned long long seq)
{
    pthread_mutex_lock(&sleep_lock);
    atomic_store(&asleep, 1);
    while (!atomic_load(&stopped) && !atomic_load(&serving) && atomic_load(&serve_seq) == seq)
        pthread_cond_wait(&sleep_cond, &sleep_lock);
    atomic_store(&asleep, 0);
    pthread_mutex_unlock(&sleep_lock);
}

static double seconds(clockid_t clock)
{
    struct timespec now;
    if (clock_gettime(clock, &now) != 0)
        return 0.0;
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

/* inline_wait(poll, quiet, main_cpu_clock or None): (seq, waited) once the request served
 * inline has run a whole poll; None once stopped. After ``quiet`` seconds with none served
 * it stops polling until one begins. */
PyObject *inline_wait(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    double poll, quiet, polled, cpu = 0.0, active, now, waited = 0.0;
    long cpu_clock = 0;  /* a CPU clock's id is negative on Linux: has_cpu says if there is one */
    unsigned long long seen = 0, seq = 0;
    int has_cpu, have_seen = 0, skipped = 0, slow = 0;
    struct timespec pause;
    (void)module;

    if (nargs != 3 || !PyFloat_Check(args[0]) || !PyFloat_Check(args[1])
            || (args[2] != Py_None && !PyLong_Check(args[2]))) {
        PyErr_SetString(PyExc_TypeError, "inline_wait(poll: float, quiet: float, main_cpu_clock: int | None)");
        return NULL;
    }
    has_cpu = args[2] != Py_None;
    poll = PyFloat_AS_DOUBLE(args[0]);
    quiet = PyFloat_AS_DOUBLE(args[1]);
    if (!(poll > 0.0 && poll < 10.0) || !(quiet >= 0.0)) {
        PyErr_SetString(PyExc_ValueError, "inline_wait: poll must be in (0, 10) seconds, quiet not negative");
        return NULL;
    }
    if (has_cpu && (cpu_clock = PyLong_AsLong(args[2])) == -1 && PyErr_Occurred())
        return NULL;
    pause.tv_sec = (time_t)poll;
    pause.tv_nsec = (long)((poll - (double)pause.tv_sec) * 1e9);

    Py_BEGIN_ALLOW_THREADS
    active = seconds(CLOCK_MONOTONIC);
    while (!atomic_load(&stopped)) {
        int running;
        polled = seconds(CLOCK_MONOTONIC);
        if (has_cpu)
            cpu = seconds((clockid_t)cpu_clock);
        nanosleep(&pause, NULL);
        running = atomic_load(&serving);
        seq = atomic_load(&serve_seq);
        now = seconds(CLOCK_MONOTONIC);
        if (!running || !have_seen || seq != seen) {
            if (running) {
                active = now;
            } else if (now - active > quiet) {
                sleep_until_begun(seq);
                active = seconds(CLOCK_MONOTONIC);
                have_seen = 0;
                skipped = 0;
                continue;
            }
            have_seen = running;
            seen = seq;
            skipped = 0;
            continue;
        }
        /* A whole poll on one request. A poll that came late while the main thread got no
         * CPU may mean the whole process stood still: the next poll decides, once per request. */
        if (!skipped && has_cpu && now - polled > 2 * poll
                && seconds((clockid_t)cpu_clock) - cpu < poll / 2) {
            skipped = 1;
            continue;
        }
        waited = now - polled;
        slow = 1;
        break;
    }
    Py_END_ALLOW_THREADS
    if (!slow)
        Py_RETURN_NONE;
    return Py_BuildValue("(Kd)", seq, waited);
}
