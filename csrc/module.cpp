// clarena._C: the `clarena` operator namespace and the CPU kernels. Importing it loads this
// library, which runs the registrations of every op file (STABLE_TORCH_LIBRARY_FRAGMENT blocks in
// csrc/ops/). Built on the LibTorch stable ABI, so one build serves every torch from its floor on.
#include "common/python_module.h"

#include <torch/csrc/stable/library.h>

extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return clarena::create_module(&module_def);
}

// Claims the namespace; each op file defines its ops in a fragment.
STABLE_TORCH_LIBRARY(clarena, m) {}
