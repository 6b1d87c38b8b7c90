// The in-process transport: ranks are threads of one process and messages are copies between
// their buffers. One fabric holds a FIFO of posted sends and of posted receives for every ordered
// pair of ranks; posting an op matches it with the head of the opposite FIFO (rendezvous: the
// copy happens only when both ends are posted), and both ends complete together, after the
// receive's delivery delay.
#pragma once

#include <memory>

#include "exec/transport.h"

namespace pipeproof {

class InProcessFabric {
 public:
  InProcessFabric(int ranks, StopSignal& stop);
  ~InProcessFabric();
  InProcessFabric(const InProcessFabric&) = delete;
  InProcessFabric& operator=(const InProcessFabric&) = delete;

  // Rank r's end; valid while the fabric lives.
  std::unique_ptr<Transport> Endpoint(int rank);

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace pipeproof
