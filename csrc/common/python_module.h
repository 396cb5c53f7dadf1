// The Python side of a native module: an empty extension module (no pybind11, within the limited
// API) whose import loads the library, runs its op registrations and records the loaded torch's
// version. Include first in the file that defines PyInit_<name>.
#pragma once

#include <Python.h>

#include <cstdio>

#include "common/torch_version.h"

namespace clarena {

// torch.__version__ ("2.14.1+cu130") -> loaded_torch_version. On failure the floor stays.
inline void record_loaded_torch_version() {
  PyObject* torch = PyImport_ImportModule("torch");
  PyObject* version = torch ? PyObject_GetAttrString(torch, "__version__") : nullptr;
  const char* text = version ? PyUnicode_AsUTF8AndSize(version, nullptr) : nullptr;
  TorchVersion parsed{};
  if (text && std::sscanf(text, "%d.%d", &parsed.major, &parsed.minor) == 2) loaded_torch_version = parsed;
  Py_XDECREF(version);
  Py_XDECREF(torch);
  PyErr_Clear();
}

inline PyObject* create_module(PyModuleDef* definition) {
  record_loaded_torch_version();
  return PyModule_Create(definition);
}

}  // namespace clarena
