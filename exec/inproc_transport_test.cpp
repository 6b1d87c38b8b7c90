#include "exec/inproc_transport.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstring>
#include <future>
#include <thread>

namespace pipeproof {
namespace {

using namespace std::chrono_literals;

CommOp Send(int peer, double& value) { return {true, peer, &value, sizeof value, 0, 0}; }
CommOp Recv(int peer, double& value, uint32_t deliver_us = 0) { return {false, peer, &value, sizeof value, 0, deliver_us}; }

UnitResult RunOps(Transport& t, std::vector<CommOp> ops) {
  UnitProgress progress(ops.size());
  return t.RunUnit(ops, progress);
}

TEST(InProcessFabricTest, ASendCompletesOnlyOnceItsReceiveIsPosted) {
  StopSignal stop;
  InProcessFabric fabric(2, stop);
  auto a = fabric.Endpoint(0), b = fabric.Endpoint(1);
  double out = 42, in = 0;
  auto send = std::async(std::launch::async, [&] { return RunOps(*a, {Send(1, out)}); });
  EXPECT_EQ(send.wait_for(50ms), std::future_status::timeout);  // rendezvous: no receiver yet
  EXPECT_EQ(RunOps(*b, {Recv(0, in)}).status, UnitResult::Status::kComplete);
  EXPECT_EQ(send.get().status, UnitResult::Status::kComplete);
  EXPECT_EQ(in, 42);
}

TEST(InProcessFabricTest, MessagesBetweenTwoRanksMatchInOrderWithoutTags) {
  StopSignal stop;
  InProcessFabric fabric(2, stop);
  auto a = fabric.Endpoint(0), b = fabric.Endpoint(1);
  double x = 1, y = 2, first = 0, second = 0;
  auto send = std::async(std::launch::async, [&] { return RunOps(*a, {Send(1, x), Send(1, y)}); });
  EXPECT_EQ(RunOps(*b, {Recv(0, first), Recv(0, second)}).status, UnitResult::Status::kComplete);
  send.get();
  EXPECT_EQ(first, 1);
  EXPECT_EQ(second, 2);
}

// Two ranks that each send before they receive, op by op, deadlock under rendezvous; in one
// group (ops progress independently) they do not.
TEST(InProcessFabricTest, SendBeforeReceiveDeadlocksUnlessGrouped) {
  StopSignal stop;
  InProcessFabric fabric(2, stop);
  auto a = fabric.Endpoint(0), b = fabric.Endpoint(1);
  double x = 1, y = 2, xin = 0, yin = 0;
  auto ga = std::async(std::launch::async, [&] { return RunOps(*a, {Send(1, x), Recv(1, yin)}); });
  auto gb = std::async(std::launch::async, [&] { return RunOps(*b, {Send(0, y), Recv(0, xin)}); });
  EXPECT_EQ(ga.get().status, UnitResult::Status::kComplete);
  EXPECT_EQ(gb.get().status, UnitResult::Status::kComplete);
  EXPECT_EQ(xin, 1);
  EXPECT_EQ(yin, 2);

  auto la = std::async(std::launch::async, [&] { return RunOps(*a, {Send(1, x)}); });
  auto lb = std::async(std::launch::async, [&] { return RunOps(*b, {Send(0, y)}); });
  EXPECT_EQ(la.wait_for(100ms), std::future_status::timeout);
  stop.Stop();
  EXPECT_EQ(la.get().status, UnitResult::Status::kStopped);
  EXPECT_EQ(lb.get().status, UnitResult::Status::kStopped);
}

// The pair layout's lazy set-up: Connect returns only once every peer has connected too (a
// rank meeting two peers at once waits for both), and a stop ends a wait for a peer that never
// comes.
TEST(InProcessFabricTest, ConnectIsABarrierOfTheRanksOfEachPair) {
  StopSignal stop;
  InProcessFabric fabric(3, stop);
  auto a = fabric.Endpoint(0), b = fabric.Endpoint(1), c = fabric.Endpoint(2);
  const std::vector<int> one{1}, zero{0}, both{0, 1};
  auto first = std::async(std::launch::async, [&] { return a->Connect(one); });
  EXPECT_EQ(first.wait_for(50ms), std::future_status::timeout);  // rank 1 has not come yet
  auto at_once = std::async(std::launch::async, [&] { return c->Connect(both); });
  EXPECT_EQ(b->Connect(zero).status, UnitResult::Status::kComplete);
  EXPECT_EQ(first.get().status, UnitResult::Status::kComplete);
  EXPECT_EQ(at_once.wait_for(50ms), std::future_status::timeout);  // ranks 0 and 1 never meet 2
  stop.Stop();
  EXPECT_EQ(at_once.get().status, UnitResult::Status::kStopped);
  EXPECT_EQ(a->Connect(zero).status, UnitResult::Status::kFailed);  // not to itself
}

TEST(InProcessFabricTest, DeliveryDelayHoldsBothEnds) {
  StopSignal stop;
  InProcessFabric fabric(2, stop);
  auto a = fabric.Endpoint(0), b = fabric.Endpoint(1);
  double x = 5, in = 0;
  const auto start = Clock::now();
  auto send = std::async(std::launch::async, [&] { return RunOps(*a, {Send(1, x)}); });
  EXPECT_EQ(RunOps(*b, {Recv(0, in, 30000)}).status, UnitResult::Status::kComplete);
  send.get();
  EXPECT_GE(Clock::now() - start, 30ms);
  EXPECT_EQ(in, 5);
}

TEST(InProcessFabricTest, SizeMismatchFailsBothEnds) {
  StopSignal stop;
  InProcessFabric fabric(2, stop);
  auto a = fabric.Endpoint(0), b = fabric.Endpoint(1);
  double x[2] = {1, 2}, in = 0;
  auto send = std::async(std::launch::async, [&] { return RunOps(*a, {{true, 1, x, sizeof x, 0, 0}}); });
  const UnitResult r = RunOps(*b, {Recv(0, in)});
  EXPECT_EQ(r.status, UnitResult::Status::kFailed);
  EXPECT_NE(r.error.find("size mismatch"), std::string::npos);
  EXPECT_EQ(send.get().status, UnitResult::Status::kFailed);
}

// A stand-in for a device copier: copies at once but says "not done" until released, and can
// fail instead. Records what it was asked to copy.
class HeldCopier final : public MessageCopier {
 public:
  struct Held final : Pending {
    HeldCopier* owner;
    explicit Held(HeldCopier* o) : owner(o) {}
    bool Done(std::string& error) override {
      if (!owner->released.load()) return false;
      error = owner->failure;
      return true;
    }
  };
  std::unique_ptr<Pending> Start(int from, int to, void* dst, const void* src, size_t bytes,
                                 uint32_t delay_us) override {
    std::memcpy(dst, src, bytes);
    starts.push_back({from, to, static_cast<int>(delay_us)});
    return std::make_unique<Held>(this);
  }
  std::atomic<bool> released{false};
  std::string failure;
  std::vector<std::array<int, 3>> starts;  // written under the fabric's lock
};

// Two ranks over a fabric whose copies are held until the test releases them.
struct HeldFabric {
  StopSignal stop;
  std::shared_ptr<HeldCopier> copier = std::make_shared<HeldCopier>();
  InProcessFabric fabric{2, stop, copier};
  std::unique_ptr<Transport> a = fabric.Endpoint(0), b = fabric.Endpoint(1);
};

TEST(InProcessFabricTest, ACopiersCopyHoldsBothEndsUntilItIsDone) {
  HeldFabric f;
  double x = 7, in = 0;
  auto send = std::async(std::launch::async, [&] { return RunOps(*f.a, {Send(1, x)}); });
  auto recv = std::async(std::launch::async, [&] { return RunOps(*f.b, {Recv(0, in, 250)}); });
  EXPECT_EQ(send.wait_for(50ms), std::future_status::timeout);
  EXPECT_EQ(recv.wait_for(1ms), std::future_status::timeout);
  f.copier->released = true;
  EXPECT_EQ(send.get().status, UnitResult::Status::kComplete);
  EXPECT_EQ(recv.get().status, UnitResult::Status::kComplete);
  EXPECT_EQ(in, 7);
  ASSERT_EQ(f.copier->starts.size(), 1u);
  EXPECT_EQ(f.copier->starts[0], (std::array<int, 3>{0, 1, 250})) << "from, to, the delivery delay";
}

TEST(InProcessFabricTest, AFailedCopyFailsBothEnds) {
  HeldFabric f;
  f.copier->failure = "device copy failed: an illegal memory access";
  f.copier->released = true;
  double x = 7, in = 0;
  auto send = std::async(std::launch::async, [&] { return RunOps(*f.a, {Send(1, x)}); });
  const UnitResult r = RunOps(*f.b, {Recv(0, in)});
  EXPECT_EQ(r.status, UnitResult::Status::kFailed);
  EXPECT_EQ(r.error, f.copier->failure);
  EXPECT_EQ(send.get().status, UnitResult::Status::kFailed);
}

TEST(InProcessFabricTest, AStopEndsAWaitForACopy) {
  HeldFabric f;
  double x = 7, in = 0;
  auto send = std::async(std::launch::async, [&] { return RunOps(*f.a, {Send(1, x)}); });
  auto recv = std::async(std::launch::async, [&] { return RunOps(*f.b, {Recv(0, in)}); });
  EXPECT_EQ(recv.wait_for(50ms), std::future_status::timeout);
  f.stop.Stop();
  EXPECT_EQ(send.get().status, UnitResult::Status::kStopped);
  EXPECT_EQ(recv.get().status, UnitResult::Status::kStopped);
}

TEST(StopSignalTest, SleepsEndEarlyOnStopAndForgottenWakersStayQuiet) {
  StopSignal stop;
  int calls = 0;
  const int kept = stop.OnStop([&] { ++calls; });
  const int dropped = stop.OnStop([&] { calls += 100; });
  stop.Forget(dropped);
  auto sleeper = std::async(std::launch::async, [&] { return stop.SleepFor(10'000'000); });
  std::this_thread::sleep_for(10ms);
  stop.Stop();
  EXPECT_FALSE(sleeper.get());
  EXPECT_EQ(calls, 1);
  EXPECT_GE(kept, 0);
  stop.OnStop([&] { ++calls; });  // already stopped: runs at once
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace pipeproof
