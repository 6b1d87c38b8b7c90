// Times NCCL point-to-point calls as a program makes them, to measure what the interposer adds:
// run it over the stand-in with PIPEPROOF_STANDIN_NULL=1 (every call returns at once), once
// plain and once under `pipeproof inject`; the difference per call is the interposer's cost.
//   nccl_overhead_bench [GROUPS]     prints ns per call for grouped and for lone calls
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "usercode/nccl_api.h"

int main(int argc, char** argv) {
  const int groups = argc > 1 ? std::atoi(argv[1]) : 100000;
  ncclComm_t comm = nullptr;
  if (ncclCommInitAll(&comm, 1, nullptr) != ncclSuccess) return 3;
  float buffer[16] = {};
  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  for (int i = 0; i < groups; ++i) {
    ncclGroupStart();
    ncclSend(buffer, 16, ncclFloat32, 0, comm, nullptr);
    ncclRecv(buffer, 16, ncclFloat32, 0, comm, nullptr);
    ncclGroupEnd();
  }
  auto t1 = Clock::now();
  for (int i = 0; i < groups; ++i) ncclSend(buffer, 16, ncclFloat32, 0, comm, nullptr);
  auto t2 = Clock::now();
  const double grouped = std::chrono::duration<double, std::nano>(t1 - t0).count() / (2.0 * groups);
  const double lone = std::chrono::duration<double, std::nano>(t2 - t1).count() / groups;
  std::printf(
      "grouped send+recv: %.1f ns per call (group start/end included); lone send: %.1f ns per "
      "call\n",
      grouped, lone);
  ncclCommDestroy(comm);
  return 0;
}
