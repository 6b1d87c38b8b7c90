#include "exec/transport.h"

namespace pipeproof {

void StopSignal::Stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopped_.exchange(true, std::memory_order_acq_rel)) return;
  }
  cv_.notify_all();
  std::lock_guard lock(wakers_mutex_);
  for (auto& [handle, wake] : wakers_) wake();
}

bool StopSignal::SleepFor(int64_t us) {
  if (us <= 0) return !stopped();
  std::unique_lock lock(mutex_);
  return !cv_.wait_for(lock, std::chrono::microseconds(us), [&] { return stopped(); });
}

int StopSignal::OnStop(std::function<void()> wake) {
  std::lock_guard lock(wakers_mutex_);
  if (stopped()) {
    wake();
    return -1;
  }
  wakers_.push_back({next_handle_, std::move(wake)});
  return next_handle_++;
}

void StopSignal::Forget(int handle) {
  std::lock_guard lock(wakers_mutex_);
  std::erase_if(wakers_, [&](const auto& w) { return w.first == handle; });
}

std::string_view OpProgressName(OpProgress p) {
  switch (p) {
    case OpProgress::kNotPosted: return "not posted yet";
    case OpProgress::kPosted: return "posted, no match yet";
    case OpProgress::kArriving: return "matched, delivery delayed";
    case OpProgress::kComplete: return "complete";
  }
  return "?";
}

}  // namespace pipeproof
