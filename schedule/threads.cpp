#include "schedule/threads.h"

#include <pthread.h>

namespace pipeproof {

std::optional<CoreSets> CoresBesideThisOne() {
  CoreSets sets;
  if (sched_getaffinity(0, sizeof sets.process, &sets.process) != 0) return std::nullopt;
  sets.others = sets.process;
  const int here = sched_getcpu();
  if (here >= 0 && here < CPU_SETSIZE) CPU_CLR(here, &sets.others);
  if (CPU_COUNT(&sets.others) == 0) return std::nullopt;
  return sets;
}

void MoveTo(std::thread& t, const cpu_set_t& cores) {
  pthread_setaffinity_np(t.native_handle(), sizeof cores, &cores);
}

void MoveThisThreadTo(const cpu_set_t& cores) { sched_setaffinity(0, sizeof cores, &cores); }

}  // namespace pipeproof
