/*
 * vsrife's VapourSynth namespace: core.<namespace>.RIFE(clip, ...) forwards to vsrife.native.create.
 *
 * Built by `vsrife plugin install` against the VapourSynth headers of the user's installation, with
 * VSRIFE_NAMESPACE set to the namespace to register. It holds no filter of its own: RIFE() takes the GIL,
 * hands the clip and the arguments to Python, and returns the node that vsrife.RIFE built there.
 *
 * Nodes cross between the two sides through two hidden functions of this plugin, on the calling thread:
 * Python fetches the input clip with InternalTake() and hands its result back with InternalGive(clip). A Python
 * VideoNode cannot be made from, or taken apart into, a VSNode pointer otherwise.
 *
 * Python's C API is looked up in the running process (dlsym), not linked: the plugin loads anywhere, and
 * where no Python interpreter runs, RIFE() says so as an ordinary error instead of failing to load.
 */

#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "VapourSynth4.h"

#ifndef VSRIFE_NAMESPACE
#define VSRIFE_NAMESPACE "rife"
#endif
#ifndef VSRIFE_VERSION
#define VSRIFE_VERSION "0"
#endif

/* The few pieces of Python's stable C API used here, declared rather than included. */
typedef struct _object PyObject;
typedef long Py_ssize_t_;
typedef int PyGILState_STATE_;

static struct {
    int ready;
    int (*IsInitialized)(void);
    PyGILState_STATE_ (*GILEnsure)(void);
    void (*GILRelease)(PyGILState_STATE_);
    PyObject *(*ImportModule)(const char *);
    PyObject *(*GetAttrString)(PyObject *, const char *);
    PyObject *(*CallObject)(PyObject *, PyObject *);
    PyObject *(*DictNew)(void);
    int (*DictSetItemString)(PyObject *, const char *, PyObject *);
    PyObject *(*ListNew)(Py_ssize_t_);
    int (*ListSetItem)(PyObject *, Py_ssize_t_, PyObject *);
    PyObject *(*TupleNew)(Py_ssize_t_);
    int (*TupleSetItem)(PyObject *, Py_ssize_t_, PyObject *);
    PyObject *(*FromLongLong)(long long);
    PyObject *(*FromDouble)(double);
    PyObject *(*FromStringAndSize)(const char *, Py_ssize_t_);
    void (*DecRef)(PyObject *);
    void (*ErrFetch)(PyObject **, PyObject **, PyObject **);
    void (*ErrNormalize)(PyObject **, PyObject **, PyObject **);
    PyObject *(*Str)(PyObject *);
    const char *(*AsUTF8)(PyObject *);
} py;

static int find_python(void) {
    if (py.ready)
        return py.ready > 0;
    void *self = dlopen(NULL, RTLD_LAZY);
    void *scope = self ? self : RTLD_DEFAULT;
    int found = 1;
#define FIND(field, symbol)                                          \
    if (!(py.field = (__typeof__(py.field))dlsym(scope, symbol))) \
        found = 0;
    FIND(IsInitialized, "Py_IsInitialized")
    FIND(GILEnsure, "PyGILState_Ensure")
    FIND(GILRelease, "PyGILState_Release")
    FIND(ImportModule, "PyImport_ImportModule")
    FIND(GetAttrString, "PyObject_GetAttrString")
    FIND(CallObject, "PyObject_CallObject")
    FIND(DictNew, "PyDict_New")
    FIND(DictSetItemString, "PyDict_SetItemString")
    FIND(ListNew, "PyList_New")
    FIND(ListSetItem, "PyList_SetItem")
    FIND(TupleNew, "PyTuple_New")
    FIND(TupleSetItem, "PyTuple_SetItem")
    FIND(FromLongLong, "PyLong_FromLongLong")
    FIND(FromDouble, "PyFloat_FromDouble")
    FIND(FromStringAndSize, "PyUnicode_FromStringAndSize")
    FIND(DecRef, "Py_DecRef")
    FIND(ErrFetch, "PyErr_Fetch")
    FIND(ErrNormalize, "PyErr_NormalizeException")
    FIND(Str, "PyObject_Str")
    FIND(AsUTF8, "PyUnicode_AsUTF8")
#undef FIND
    py.ready = found ? 1 : -1;
    return found;
}

/* The node in flight between this thread's RIFE() call and the Python code it runs. */
static _Thread_local VSNode *pending_input;
static _Thread_local VSNode *pending_output;

static void VS_CC take_create(const VSMap *in, VSMap *out, void *user_data, VSCore *core, const VSAPI *vsapi) {
    (void)in, (void)user_data, (void)core;
    if (!pending_input) {
        vsapi->mapSetError(out, VSRIFE_NAMESPACE ".InternalTake: internal to " VSRIFE_NAMESPACE ".RIFE; do not call it");
        return;
    }
    vsapi->mapConsumeNode(out, "clip", pending_input, maReplace);
    pending_input = NULL;
}

static void VS_CC give_create(const VSMap *in, VSMap *out, void *user_data, VSCore *core, const VSAPI *vsapi) {
    (void)out, (void)user_data, (void)core;
    if (pending_output)
        vsapi->freeNode(pending_output);
    pending_output = vsapi->mapGetNode(in, "clip", 0, NULL);
}

/* The call's arguments, but the clip, as a dict of Python ints, floats, strings and lists of them. */
static PyObject *arguments(const VSMap *in, const VSAPI *vsapi) {
    PyObject *kwargs = py.DictNew();
    if (!kwargs)
        return NULL;
    int keys = vsapi->mapNumKeys(in);
    for (int k = 0; k < keys; k++) {
        const char *key = vsapi->mapGetKey(in, k);
        if (!strcmp(key, "clip"))
            continue;
        int type = vsapi->mapGetType(in, key), count = vsapi->mapNumElements(in, key);
        PyObject *list = py.ListNew(count);
        if (!list)
            goto fail;
        for (int i = 0; i < count; i++) {
            PyObject *value = NULL;
            if (type == ptInt)
                value = py.FromLongLong((long long)vsapi->mapGetInt(in, key, i, NULL));
            else if (type == ptFloat)
                value = py.FromDouble(vsapi->mapGetFloat(in, key, i, NULL));
            else if (type == ptData)
                value = py.FromStringAndSize(vsapi->mapGetData(in, key, i, NULL), vsapi->mapGetDataSize(in, key, i, NULL));
            if (!value || py.ListSetItem(list, i, value) < 0) {
                py.DecRef(list);
                goto fail;
            }
        }
        int failed = py.DictSetItemString(kwargs, key, list);
        py.DecRef(list);
        if (failed < 0)
            goto fail;
    }
    return kwargs;
fail:
    py.DecRef(kwargs);
    return NULL;
}

/* The pending Python exception as this call's error (a vs.Error from vsrife carries the whole story). */
static void set_python_error(VSMap *out, const VSAPI *vsapi) {
    PyObject *type = NULL, *value = NULL, *traceback = NULL;
    py.ErrFetch(&type, &value, &traceback);
    py.ErrNormalize(&type, &value, &traceback);
    const char *text = NULL;
    PyObject *str = value ? py.Str(value) : NULL;
    if (str)
        text = py.AsUTF8(str);
    char message[2048];
    snprintf(message, sizeof message, "%s", text ? text : VSRIFE_NAMESPACE ".RIFE: failed in Python with no message");
    vsapi->mapSetError(out, message);
    if (str)
        py.DecRef(str);
    if (type)
        py.DecRef(type);
    if (value)
        py.DecRef(value);
    if (traceback)
        py.DecRef(traceback);
}

static void VS_CC rife_create(const VSMap *in, VSMap *out, void *user_data, VSCore *core, const VSAPI *vsapi) {
    (void)user_data, (void)core;
    if (!find_python() || !py.IsInitialized()) {
        vsapi->mapSetError(out, VSRIFE_NAMESPACE ".RIFE: no Python interpreter runs in this process; vsrife is "
                                "Python, so call it from a script run by vspipe, vsedit, vspreview or Python");
        return;
    }
    PyGILState_STATE_ gil = py.GILEnsure();
    pending_input = vsapi->mapGetNode(in, "clip", 0, NULL);
    PyObject *module = NULL, *create = NULL, *call = NULL, *namespace_ = NULL, *kwargs = NULL, *result = NULL;
    module = py.ImportModule("vsrife.native");
    if (module)
        create = py.GetAttrString(module, "create");
    if (create)
        kwargs = arguments(in, vsapi);
    if (kwargs)
        namespace_ = py.FromStringAndSize(VSRIFE_NAMESPACE, (Py_ssize_t_)strlen(VSRIFE_NAMESPACE));
    if (namespace_ && (call = py.TupleNew(2))) {
        py.TupleSetItem(call, 0, namespace_); /* the tuple takes these references */
        py.TupleSetItem(call, 1, kwargs);
        namespace_ = kwargs = NULL;
        result = py.CallObject(create, call);
    }
    if (!result)
        set_python_error(out, vsapi);
    else if (!pending_output)
        vsapi->mapSetError(out, VSRIFE_NAMESPACE ".RIFE: vsrife returned no clip (is vsrife as new as this plugin?)");
    else
        vsapi->mapConsumeNode(out, "clip", pending_output, maReplace);
    pending_output = NULL;
    if (pending_input) { /* not taken: the call failed before it reached the clip */
        vsapi->freeNode(pending_input);
        pending_input = NULL;
    }
    PyObject *owned[] = {result, call, namespace_, kwargs, create, module};
    for (size_t i = 0; i < sizeof owned / sizeof *owned; i++)
        if (owned[i])
            py.DecRef(owned[i]);
    py.GILRelease(gil);
}

VS_EXTERNAL_API(void) VapourSynthPluginInit2(VSPlugin *plugin, const VSPLUGINAPI *vspapi) {
    vspapi->configPlugin("io.github.vsrife." VSRIFE_NAMESPACE, VSRIFE_NAMESPACE,
                         "RIFE frame interpolation through vsrife (PyTorch) " VSRIFE_VERSION,
                         VS_MAKE_VERSION(1, 0), VAPOURSYNTH_API_VERSION, 0, plugin);
    vspapi->registerFunction("RIFE", VSRIFE_ARGUMENTS, "clip:vnode;", rife_create, NULL, plugin);
    vspapi->registerFunction("InternalTake", "", "clip:vnode;", take_create, NULL, plugin);
    vspapi->registerFunction("InternalGive", "clip:vnode;", "", give_create, NULL, plugin);
}
