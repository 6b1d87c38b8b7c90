// What the trace reader must do with any bytes at all, checked by the libFuzzer target
// (fuzz/nccl_trace_fuzzer.cpp) and by the test that replays its corpus and findings: refuse them
// with an InputError, or read a trace that encodes back to the very same bytes (the format has
// one spelling of everything: reserved bytes zero, counts exact). Anything else aborts.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "usercode/nccl_trace.h"
#include "schedule/errors.h"

namespace pipeproof::testing {

inline void CheckTraceReader(std::string_view bytes) {
  Trace trace;
  try {
    trace = ParseTrace(bytes, "input");
  } catch (const InputError& e) {
    if (!IsPrintable(e.what())) {
      std::fprintf(stderr, "trace reader error echoes raw bytes: %s\n", e.what());
      std::abort();
    }
    return;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "trace reader threw something else than InputError: %s\n", e.what());
    std::abort();
  }
  if (EncodeTrace(trace) != bytes) {
    std::fprintf(stderr, "trace reader accepted bytes that do not encode back to themselves\n");
    std::abort();
  }
}

}  // namespace pipeproof::testing
