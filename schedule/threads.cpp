#include "schedule/threads.h"

#include <pthread.h>

namespace pipeproof {

std::optional<cpu_set_t> CoresBesideThisOne() {
  cpu_set_t others;
  if (sched_getaffinity(0, sizeof others, &others) != 0) return std::nullopt;
  const int here = sched_getcpu();
  if (here >= 0 && here < CPU_SETSIZE) CPU_CLR(here, &others);
  if (CPU_COUNT(&others) == 0) return std::nullopt;
  return others;
}

void MoveTo(std::thread& t, const cpu_set_t& cores) {
  pthread_setaffinity_np(t.native_handle(), sizeof cores, &cores);
}

}  // namespace pipeproof
