// Libraries opened only when first used (cuBLAS for the CUDA device, NCCL for its transport):
// linked in, their relocations would slow every pipeproof command's start, GPU or not.
#pragma once

#include <dlfcn.h>

#include <string>
#include <type_traits>

namespace pipeproof {

// dlopen()s `soname` where the loader finds it, else in `fallback_dir` (where the build found
// it); null when neither has it. The library stays loaded for the life of the process.
inline void* OpenSharedLibrary(const std::string& soname, const std::string& fallback_dir) {
  void* library = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!library) library = dlopen((fallback_dir + "/" + soname).c_str(), RTLD_NOW | RTLD_LOCAL);
  return library;
}

// Points `fn` at `library`'s `symbol`; false when the library has no such symbol. `fn`'s type
// comes from the library's own header, so every call through it is checked by the compiler.
template <class Fn>
bool BindSymbol(void* library, Fn& fn, const char* symbol) {
  static_assert(std::is_pointer_v<Fn>, "bind a function pointer");
  fn = reinterpret_cast<Fn>(dlsym(library, symbol));
  return fn != nullptr;
}

}  // namespace pipeproof
