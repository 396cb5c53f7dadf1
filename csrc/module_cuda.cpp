// clarena._C_cuda: the CUDA kernels (csrc/ops/cuda/), registered into the `clarena` namespace that
// clarena._C defines. A separate library because one that needs the CUDA runtime cannot load into
// a CPU-only torch: clarena imports it only when torch is a CUDA build, after clarena._C.
#include "common/python_module.h"

extern "C" PyObject* PyInit__C_cuda(void) {
  static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C_cuda", nullptr, -1, nullptr};
  return clarena::create_module(&module_def);
}
