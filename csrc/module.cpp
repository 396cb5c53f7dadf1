// The `clarena` operator namespace. Importing clarena._C loads this library and runs the
// registrations of every op file (TORCH_LIBRARY_FRAGMENT blocks in csrc/ops/).
#include <Python.h>
#include <torch/library.h>

extern "C" {
// An empty module, so `import clarena._C` works without pybind11 and within the limited API.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

namespace clarena {

bool openmp_enabled() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

TORCH_LIBRARY(clarena, m) {
  // Build introspection: without OpenMP, at::parallel_for runs on one thread.
  m.def("_openmp_enabled() -> bool", &openmp_enabled);
}

}  // namespace clarena
