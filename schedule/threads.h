// Work for a second core. The CLI's commands run on machines with two cores and more, and a check
// or a reader that only reads what the calling thread reads can run beside it.
#pragma once

#include <sched.h>

#include <future>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>

namespace pipeproof {

// The cores the process may use, less the calling thread's; nullopt where there are none.
std::optional<cpu_set_t> CoresBesideThisOne();
// Left to the scheduler, a new thread on a machine like CI's waits on its parent's core for a
// time slice of the parent (about 2 ms) before an idle core takes it; placed on the other cores,
// it starts within a tenth of a millisecond. It stays there: a short worker has no need to come
// back. Failure is harmless: this is a hint.
void MoveTo(std::thread& t, const cpu_set_t& cores);

// f() on a thread of its own, started on another core than the caller's; or, where the work is
// too small to pay for a thread (`worth_a_thread` false), the process may use one core only or no
// thread can be started, run by get() itself.
template <typename R>
class Beside {
 public:
  template <typename F>
  explicit Beside(F f, bool worth_a_thread = true)
      : task_(std::move(f)),
        result_(task_.get_future()),
        cores_(worth_a_thread ? CoresBesideThisOne() : std::nullopt) {
    if (!cores_) return;
    try {
      thread_.emplace([this] { task_(); });
    } catch (const std::system_error&) {
      return;
    }
    MoveTo(*thread_, *cores_);
  }
  Beside(const Beside&) = delete;
  Beside& operator=(const Beside&) = delete;
  ~Beside() {
    if (thread_ && thread_->joinable()) thread_->join();
  }

  // Waits for f(); returns what it returned or rethrows what it threw.
  R get() {
    if (thread_) {
      thread_->join();
    } else {
      task_();
    }
    return result_.get();
  }

 private:
  std::packaged_task<R()> task_;
  std::future<R> result_;
  std::optional<cpu_set_t> cores_;
  std::optional<std::thread> thread_;
};

}  // namespace pipeproof
