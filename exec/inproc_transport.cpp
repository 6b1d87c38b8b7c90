#include "exec/inproc_transport.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <set>

namespace pipeproof {

namespace {

// One posted op waiting in a channel, owned by the RunUnit call that posted it.
struct PostedOp {
  const CommOp* op = nullptr;
  UnitProgress* progress = nullptr;
  size_t index = 0;
  bool matched = false;
  Clock::time_point complete_at{};
  // The copier's copy, shared by both ends; null when the bytes are already there.
  std::shared_ptr<MessageCopier::Pending> copy;
  std::string error;
};

// How often a unit waiting for a device copy checks on it.
constexpr auto kCopyPoll = std::chrono::microseconds(20);

struct Channel {
  std::deque<PostedOp*> sends;
  std::deque<PostedOp*> recvs;
};

}  // namespace

struct InProcessFabric::State {
  int ranks = 0;
  StopSignal* stop = nullptr;
  std::shared_ptr<MessageCopier> copier;
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<Channel> channels;  // [from * ranks + to]
  std::set<std::pair<int, int>> arrived;  // (rank, peer): rank has reached its set-up with peer

  Channel& Between(int from, int to) { return channels[static_cast<size_t>(from) * ranks + to]; }

  // Both ends are posted: copy, and complete both after the receive's delivery delay (on the host,
  // or within the copier's device work).
  void Match(int from, int to, PostedOp& send, PostedOp& recv) {
    const Clock::time_point delivered = Clock::now() + std::chrono::microseconds(recv.op->deliver_delay_us);
    std::shared_ptr<MessageCopier::Pending> copy;
    if (send.op->bytes != recv.op->bytes) {
      const std::string error = fmt::format("message size mismatch: the sender sends {} bytes, the "
                                            "receiver expects {}", send.op->bytes, recv.op->bytes);
      send.error = recv.error = error;
    } else if (copier) {
      try {
        copy = copier->Start(from, to, recv.op->data, send.op->data, send.op->bytes, recv.op->deliver_delay_us);
      } catch (const std::exception& e) {
        send.error = recv.error = e.what();
      }
    } else {
      std::memcpy(recv.op->data, send.op->data, send.op->bytes);
    }
    for (PostedOp* p : {&send, &recv}) {
      p->matched = true;
      p->complete_at = copier ? Clock::now() : delivered;
      p->copy = copy;
      p->progress->ops[p->index].store(OpProgress::kArriving);
      p->progress->DelayUntil(delivered);  // busy, not stuck, while the delay runs
    }
  }

  void Post(int rank, PostedOp& posted) {
    const CommOp& op = *posted.op;
    Channel& channel = op.send ? Between(rank, op.peer) : Between(op.peer, rank);
    std::deque<PostedOp*>& mine = op.send ? channel.sends : channel.recvs;
    std::deque<PostedOp*>& theirs = op.send ? channel.recvs : channel.sends;
    posted.progress->ops[posted.index].store(OpProgress::kPosted);
    if (!mine.empty() || theirs.empty()) {
      mine.push_back(&posted);
      return;
    }
    PostedOp* other = theirs.front();
    theirs.pop_front();
    op.send ? Match(rank, op.peer, posted, *other) : Match(op.peer, rank, *other, posted);
  }

  // A stopped unit takes its unmatched ops back out of the channels before its frame goes away.
  void Withdraw(int rank, std::vector<PostedOp>& ops, size_t posted) {
    for (size_t i = 0; i < posted; ++i) {
      if (ops[i].matched) continue;
      const CommOp& op = *ops[i].op;
      Channel& channel = op.send ? Between(rank, op.peer) : Between(op.peer, rank);
      auto& queue = op.send ? channel.sends : channel.recvs;
      queue.erase(std::remove(queue.begin(), queue.end(), &ops[i]), queue.end());
    }
  }
};

namespace {

class InProcessEndpoint final : public Transport {
 public:
  InProcessEndpoint(std::shared_ptr<InProcessFabric::State> state, int rank)
      : state_(std::move(state)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return state_->ranks; }
  std::string Name() const override { return "threads"; }

  // A barrier of this rank with each of `peers`, as NCCL's set-up of two-rank communicators is.
  UnitResult Connect(std::span<const int> peers) override {
    auto& s = *state_;
    for (int peer : peers) {
      if (peer < 0 || peer >= s.ranks || peer == rank_) {
        return {UnitResult::Status::kFailed, fmt::format("no rank {} to connect to", peer)};
      }
    }
    std::unique_lock lock(s.mutex);
    for (int peer : peers) s.arrived.insert({rank_, peer});
    s.cv.notify_all();
    auto all_came = [&] {
      return std::all_of(peers.begin(), peers.end(),
                         [&](int peer) { return s.arrived.count({peer, rank_}) > 0; });
    };
    s.cv.wait(lock, [&] { return all_came() || s.stop->stopped(); });
    if (all_came()) return {};
    return {UnitResult::Status::kStopped, ""};
  }

  UnitResult RunUnit(std::span<const CommOp> ops, UnitProgress& progress) override {
    auto& s = *state_;
    std::vector<PostedOp> posted(ops.size());
    size_t count = 0;
    for (size_t i = 0; i < ops.size(); ++i) {
      posted[i].op = &ops[i];
      posted[i].progress = &progress;
      posted[i].index = i;
      if (ops[i].peer < 0 || ops[i].peer >= s.ranks || ops[i].peer == rank_) {
        std::lock_guard lock(s.mutex);
        s.Withdraw(rank_, posted, count);
        return {UnitResult::Status::kFailed, fmt::format("no rank {} to talk to", ops[i].peer)};
      }
      if (ops[i].post_delay_us) progress.DelayUntil(Clock::now() + std::chrono::microseconds(ops[i].post_delay_us));
      if (ops[i].post_delay_us && !s.stop->SleepFor(ops[i].post_delay_us)) {
        std::lock_guard lock(s.mutex);
        s.Withdraw(rank_, posted, count);
        return {UnitResult::Status::kStopped, ""};
      }
      {
        std::lock_guard lock(s.mutex);
        s.Post(rank_, posted[i]);
        ++count;
      }
      s.cv.notify_all();
    }
    std::unique_lock lock(s.mutex);
    while (true) {
      if (s.stop->stopped()) {
        s.Withdraw(rank_, posted, count);
        return {UnitResult::Status::kStopped, ""};
      }
      const Clock::time_point now = Clock::now();
      bool all = true;
      Clock::time_point next = Clock::time_point::max();
      for (PostedOp& p : posted) {
        // A device copy says when it ends, or how it failed, only when asked.
        const bool copying = p.copy && !p.copy->Done(p.error);
        if (!p.error.empty()) {
          s.Withdraw(rank_, posted, count);
          return {UnitResult::Status::kFailed, p.error};
        }
        if (!p.matched) {
          all = false;
        } else if (copying) {
          all = false;
          next = std::min(next, now + kCopyPoll);
        } else if (p.complete_at > now) {
          all = false;
          next = std::min(next, p.complete_at);
        } else {
          progress.ops[p.index].store(OpProgress::kComplete);
        }
      }
      if (all) return {};
      if (next == Clock::time_point::max()) {
        s.cv.wait(lock);
      } else {
        s.cv.wait_until(lock, next);
      }
    }
  }

 private:
  std::shared_ptr<InProcessFabric::State> state_;
  int rank_;
};

}  // namespace

InProcessFabric::InProcessFabric(int ranks, StopSignal& stop, std::shared_ptr<MessageCopier> copier)
    : state_(std::make_shared<State>()) {
  state_->ranks = ranks;
  state_->copier = std::move(copier);
  state_->stop = &stop;
  state_->channels.resize(static_cast<size_t>(ranks) * ranks);
  std::weak_ptr<State> weak = state_;
  stop.OnStop([weak] {
    if (auto s = weak.lock()) {
      std::lock_guard lock(s->mutex);  // so no waiter misses the wake-up between check and wait
      s->cv.notify_all();
    }
  });
}

InProcessFabric::~InProcessFabric() = default;

std::unique_ptr<Transport> InProcessFabric::Endpoint(int rank) {
  return std::make_unique<InProcessEndpoint>(state_, rank);
}

}  // namespace pipeproof

