// The in-process transport: ranks are threads of one process and messages are copies between
// their buffers. One fabric holds a FIFO of posted sends and of posted receives for every ordered
// pair of ranks; posting an op matches it with the head of the opposite FIFO (rendezvous: the
// copy happens only when both ends are posted), and both ends complete together, after the
// receive's delivery delay. A MessageCopier makes the copy (and the delay) device work that both
// ends wait for.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "exec/transport.h"

namespace pipeproof {

// How a matched message's bytes get from the sender's buffer into the receiver's. Without one the
// fabric copies host memory at match time; the streams transport (exec/streams_transport.h)
// queues a device-to-device copy on the receiver's communication stream instead.
class MessageCopier {
 public:
  virtual ~MessageCopier() = default;

  // A copy in flight.
  class Pending {
   public:
    virtual ~Pending() = default;
    // True once the copy has finished, or failed (then `error` says why). Must not block.
    virtual bool Done(std::string& error) = 0;
  };

  // Starts copying `bytes` from rank `from`'s `src` to rank `to`'s `dst`, holding the delivery
  // `delay_us` back first. Called at match time with the fabric locked: must not block. Both
  // ends' ops complete only once the returned copy is Done.
  virtual std::unique_ptr<Pending> Start(int from, int to, void* dst, const void* src, size_t bytes,
                                         uint32_t delay_us) = 0;
};

class InProcessFabric {
 public:
  // `copier`: null for host memory.
  InProcessFabric(int ranks, StopSignal& stop, std::shared_ptr<MessageCopier> copier = nullptr);
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
