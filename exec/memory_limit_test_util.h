// PIPEPROOF_MEMORY_LIMIT for the length of a scope (exec/memory_budget.h reads it): restored when
// the scope ends, however the test ends.
#pragma once

#include <cstdlib>
#include <string>

namespace pipeproof::testing {

class MemoryLimit {
 public:
  explicit MemoryLimit(const std::string& bytes) {
    if (const char* old = std::getenv("PIPEPROOF_MEMORY_LIMIT")) old_ = old;
    setenv("PIPEPROOF_MEMORY_LIMIT", bytes.c_str(), 1);
  }
  ~MemoryLimit() {
    if (old_.empty()) {
      unsetenv("PIPEPROOF_MEMORY_LIMIT");
    } else {
      setenv("PIPEPROOF_MEMORY_LIMIT", old_.c_str(), 1);
    }
  }
  MemoryLimit(const MemoryLimit&) = delete;
  MemoryLimit& operator=(const MemoryLimit&) = delete;

 private:
  std::string old_;
};

}  // namespace pipeproof::testing
