#include "exec/executor.h"

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "reference/cpu_device.h"

namespace pipeproof {
namespace {

// A rank-level error with a message for the dump; ends the rank as kFailed.
struct RankError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// The run was stopped while this rank waited.
struct Stopped {};

// Everything a (stage, microbatch) holds on this rank between its tasks.
struct Chunk {
  Tensor input;                 // F's input: received, handed over locally, or loaded
  int64_t input_unit = -1;      // the unit that brings it (-1: already here)
  std::optional<ForwardSaved> saved;  // from F until I/B
  Tensor output;                // F's output, until its SEND_F takes it
  Tensor out_grad;              // I/B's output gradient: received, handed over, or the loss's
  int64_t out_grad_unit = -1;
  Tensor in_grad;               // I/B's input gradient, until its SEND_B takes it
  std::optional<WeightGradStash> stash;  // from I until W

  bool Empty() const {
    return input.empty() && !saved && output.empty() && out_grad.empty() && in_grad.empty() && !stash;
  }
};

// A unit ready to run: its ops in posting order, the payloads it keeps alive until it completes,
// and what to do to a receive when it completes (the bitflip negative control).
struct PendingUnit {
  int64_t local = 0;   // index in the pass
  int64_t global = 0;  // run-wide counter
  std::vector<CommOp> ops;
  std::deque<Tensor> keep_alive;  // a deque: pointers to its tensors stay valid as it grows
  std::shared_ptr<UnitView> view;
  int64_t posted_by = 0;  // the run-wide action that posted it (for the timeline)
  Tensor* flip_target = nullptr;
  int64_t flip_element = 0;
  int flip_bit = 0;
};

// The rank's communication stream for ranks without WAITs: a thread that runs units one at a
// time in the order they were handed over.
class CommStream {
 public:
  using Runner = std::function<void(PendingUnit&)>;  // runs a unit to completion or throws

  CommStream(Runner run, StopSignal& stop) : run_(std::move(run)), stop_(stop) {
    wake_ = stop_.OnStop([this] {
      std::lock_guard lock(mutex_);
      cv_.notify_all();
    });
  }
  ~CommStream() {
    stop_.Forget(wake_);
    {
      std::lock_guard lock(mutex_);
      closing_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  void Enqueue(std::unique_ptr<PendingUnit> unit) {
    {
      std::lock_guard lock(mutex_);
      ++enqueued_;
      queue_.push_back(std::move(unit));
    }
    cv_.notify_all();
    if (!thread_.joinable()) thread_ = std::thread([this] { Work(); });
  }

  // Blocks until units 0..unit of the current pass have completed.
  void WaitFor(int64_t unit) {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return completed_ > unit || !error_.empty() || stop_.stopped(); });
    if (completed_ > unit) return;
    if (!error_.empty()) throw RankError(error_);
    throw Stopped{};
  }
  void WaitAll() { WaitFor(enqueued_ - 1); }
  int64_t completed() const {
    std::lock_guard lock(mutex_);
    return completed_;
  }
  // A new pass numbers its units from 0 again; the stream must be empty.
  void StartPass() {
    std::lock_guard lock(mutex_);
    completed_ = enqueued_ = 0;
  }

 private:
  void Work() {
    while (true) {
      std::unique_ptr<PendingUnit> unit;
      {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return !queue_.empty() || closing_ || stop_.stopped(); });
        // Closing with units still queued means the rank died: its stream dies with it.
        if (queue_.empty() || closing_ || stop_.stopped()) return;
        unit = std::move(queue_.front());
        queue_.pop_front();
      }
      try {
        run_(*unit);
      } catch (const Stopped&) {
        return;
      } catch (const std::exception& e) {  // the program thread reports it from WaitFor
        std::lock_guard lock(mutex_);
        error_ = e.what();
        cv_.notify_all();
        return;
      }
      unit.reset();  // frees the sent payloads now, on this thread
      {
        std::lock_guard lock(mutex_);
        ++completed_;
      }
      cv_.notify_all();
    }
  }

  Runner run_;
  StopSignal& stop_;
  int wake_ = -1;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<PendingUnit>> queue_;
  int64_t enqueued_ = 0;
  int64_t completed_ = 0;
  std::string error_;
  bool closing_ = false;
  std::thread thread_;
};

class RankExecutor {
 public:
  RankExecutor(const RunPlan& plan, const FaultPlan& faults, const ExecOptions& options,
               Transport& transport, Device& device, FlightRecorder& recorder, StopSignal& stop)
      : plan_(plan), faults_(faults), rank_faults_(faults.Rank(transport.rank())), options_(options),
        transport_(transport), device_(device), recorder_(recorder), stop_(stop),
        rank_(transport.rank()) {
    for (const auto& u : rank_faults_.unit_orders) unit_orders_[u.unit] = &u.order;
    device_.SetPoisonOnRelease(faults.poison);
  }

  RankOutcome Run() {
    RankOutcome outcome;
    outcome.result.rank = rank_;
    try {
      SetUpPairs();
      for (const PassPlan& pass : plan_.passes) RunPass(pass, outcome.result);
      recorder_.SetActivity(RankActivity::kDone, "finished every pass");
      outcome.result.timeline = spans_.Take();
    } catch (const Killed&) {
      outcome.end = RankEnd::kDead;
    } catch (const Stopped&) {
      outcome.end = RankEnd::kStopped;
    } catch (const std::exception& e) {  // RankError, bad_alloc, a device's logic_error
      outcome.end = RankEnd::kFailed;
      outcome.error = e.what();
      recorder_.Record(-1, FlightEventKind::kFailed);
      recorder_.SetActivity(RankActivity::kFailed, e.what());
      // Stop the run now: this rank's stream (joined when the executor goes) and its peers may be
      // waiting for messages it will never exchange.
      stop_.Stop();
    }
    // Tensors are freed when the executor goes, after its stream: a unit still in flight after a
    // stop or a kill may point at them.
    outcome.result.memory = device_.memory_stats();
    return outcome;
  }

 private:
  struct Killed {};

  // ---- passes and actions ----

  void RunPass(const PassPlan& pass, RankResult& result) {
    pass_ = &pass;
    rank_plan_ = &pass.ranks[rank_];
    base_ = &pass.base[rank_];
    routes_.emplace(pass.schedule);
    chunks_.clear();
    completed_units_ = 0;
    for (auto& [id, stream] : streams_) stream->StartPass();
    const std::vector<Action>& program = pass.schedule.program[rank_];
    for (int i = 0; i < static_cast<int>(program.size()); ++i) {
      const int64_t action = base_->action + i;
      if (faults_.kill && faults_.kill->rank == rank_ && faults_.kill->action == action) Die(action);
      if (stop_.stopped()) throw Stopped{};
      const Action& a = program[i];
      if (IsCompute(a.op)) {
        Compute(i, a, result);
      } else if (IsComm(a.op)) {
        if (!rank_plan_->grouped) Post(rank_plan_->unit_of_action[i], i);
      } else if (IsWaitSend(a.op)) {
        WaitSend(i);
      } else if (a.op == Op::kWait && rank_plan_->unit_of_action[i] >= 0) {  // a group to post
        Post(rank_plan_->unit_of_action[i], i);
      }  // data-parallel actions: another communicator's business, nothing to run here
    }
    if (!rank_plan_->grouped && !rank_plan_->units.empty()) {
      recorder_.SetActivity(RankActivity::kBlocked,
                            fmt::format("the end of the {} pass, waiting for the communication "
                                        "stream{}",
                                        PassName(pass.kind), streams_.size() > 1 ? "s" : ""));
      for (auto& [id, stream] : streams_) stream->WaitAll();
    }
    retained_.clear();  // every unit has completed
    if (pass.kind == PassKind::kTrain) {
      for (auto& [stage, g] : grads_) {
        result.stage_grads.push_back({stage, {device_.Download(g.w1), device_.Download(g.w2)}});
      }
      grads_.clear();
    }
  }

  [[noreturn]] void Die(int64_t action) {
    recorder_.Record(action, FlightEventKind::kKilled);
    recorder_.SetActivity(RankActivity::kDead,
                          fmt::format("{}: stopped dead before it by the fault plan (negative control)",
                                      plan_.NameAction(rank_, action)));
    throw Killed{};
  }

  std::string Name(int index) const { return plan_.NameAction(rank_, base_->action + index); }

  void Compute(int index, const Action& a, RankResult& result) {
    const int64_t action = base_->action + index;
    const int64_t compute = base_->compute + rank_plan_->compute_of_action[index];
    if (compute < static_cast<int64_t>(rank_faults_.compute_delay_us.size())) {
      Sleep(action, rank_faults_.compute_delay_us[compute]);
    }
    recorder_.Record(action, FlightEventKind::kStarted);
    const Clock::time_point begin = Clock::now();
    for (int t = 0; t < a.TaskCount(); ++t) {
      const Task task = a.TaskAt(t);
      recorder_.SetActivity(RankActivity::kComputing, Name(index));
      switch (task.op) {
        case Op::kForward: Forward(index, task, result); break;
        case Op::kBackward:
        case Op::kInputGrad: Backward(index, task); break;
        case Op::kWeightGrad: WeightGrad(index, task); break;
        default: break;
      }
      std::erase_if(chunks_, [](const auto& entry) { return entry.second.Empty(); });
    }
    recorder_.Record(action, FlightEventKind::kFinished);
    if (rank_faults_.straggler > 1) {
      // On a GPU the kernels are only queued by now: time them too, so that a straggler is slowed
      // in proportion to its real compute.
      device_.Synchronize();
      const auto spent = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - begin);
      Sleep(action, static_cast<uint32_t>(static_cast<double>(spent.count()) * (rank_faults_.straggler - 1)));
    }
    // A straggler's extra time is part of its compute: it models a slower device.
    RecordSpan(/*comm=*/false, action, -1, begin);
  }

  // Timeline recording (ExecOptions::record_timeline): a span from `begin` to now.
  void RecordSpan(bool comm, int64_t action, int64_t unit, Clock::time_point begin) {
    if (!options_.record_timeline) return;
    auto ns = [](Clock::time_point t) {
      return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
    };
    spans_.Add({comm, action, unit, ns(begin), ns(Clock::now())});
  }

  void Sleep(int64_t action, uint32_t us) {
    if (us == 0) return;
    recorder_.SetActivity(RankActivity::kDelaying, plan_.NameAction(rank_, action));
    recorder_.Record(action, FlightEventKind::kDelayed, us);
    if (!stop_.SleepFor(us)) throw Stopped{};
  }

  // ---- the stage model's tasks ----

  Chunk& At(int stage, int microbatch) { return chunks_[{stage, microbatch}]; }

  const StageWeights& Weights(int stage) {
    const int block = pass_->schedule.params[stage];
    auto it = weights_.find(block);
    if (it == weights_.end()) it = weights_.emplace(block, LoadWeights(device_, options_.model, block)).first;
    return it->second;
  }

  StageWeights& Grads(int stage) {
    auto it = grads_.find(stage);
    if (it == grads_.end()) it = grads_.emplace(stage, ZeroGrads(device_, options_.model.shape)).first;
    return it->second;
  }

  bool Local(int stage) const { return pass_->schedule.placement[stage] == rank_; }

  // Waits until a tensor that a unit brings has arrived.
  void AwaitArrival(int index, int64_t unit, const std::string& what) {
    if (unit < 0 || unit < completed_units_) return;
    // ---- planted bug (test hook, see PlantedBug): the missing event wait ----
    if (options_.planted_bug == PlantedBug::kSkipArrivalWait && !rank_plan_->grouped) return;
    if (rank_plan_->grouped) {
      throw RankError(fmt::format("{} needs {}, which arrives with group #{}, not yet waited for", Name(index), what, unit));
    }
    AwaitUnit(index, unit, fmt::format("{} arriving with unit #{}", what, base_->unit + unit));
    recorder_.SetActivity(RankActivity::kComputing, Name(index));
  }

  // Blocks the rank until lone unit `unit` of this pass has completed on its stream.
  void AwaitUnit(int index, int64_t unit, std::string what) {
    const PlannedUnit& planned = rank_plan_->units[unit];
    CommStream& stream = StreamFor(planned.stream);
    if (stream.completed() > planned.stream_seq) return;
    auto view = std::make_shared<UnitView>();
    view->what = std::move(what);
    recorder_.SetActivity(RankActivity::kBlocked, Name(index), view);
    stream.WaitFor(planned.stream_seq);
  }

  // A WAIT_SEND (PyTorch's runtime): the rank waits until its SEND has completed, then the send's
  // payload may go, as PyTorch frees it when the wait returns.
  void WaitSend(int index) {
    const int unit = rank_plan_->waited_unit_of_action[index];
    if (unit < 0) return;
    if (rank_plan_->grouped) {
      if (unit >= completed_units_) {
        throw RankError(fmt::format("{} waits for a SEND that only a later WAIT posts: it can never "
                                    "complete",
                                    Name(index)));
      }
      return;
    }
    // ---- planted bug (test hook, see PlantedBug): the ignored WAIT_SEND ----
    const bool ignore = options_.planted_bug == PlantedBug::kIgnoreWaitSend;
    if (!ignore) {
      AwaitUnit(index, unit, fmt::format("its SEND, unit #{}, to complete", base_->unit + unit));
      recorder_.SetActivity(RankActivity::kComputing, Name(index));  // the host goes on
    }
    for (int c : rank_plan_->units[unit].comms) {
      if (rank_plan_->retired_by[c] != index) continue;
      auto it = retained_.find(c);
      if (it == retained_.end()) continue;
      // The freed buffer is the next tensor's at once, as in a caching allocator.
      if (ignore) device_.Zero(it->second);
      retained_.erase(it);
    }
  }

  CommStream& StreamFor(int id) {
    std::unique_ptr<CommStream>& stream = streams_[id];
    if (!stream) {
      stream = std::make_unique<CommStream>([this, id](PendingUnit& u) { RunUnit(u, id); }, stop_);
    }
    return *stream;
  }

  void Forward(int index, const Task& task, RankResult& result) {
    const int s = task.stage, m = task.microbatch;
    Chunk& chunk = At(s, m);
    if (chunk.saved) throw RankError(fmt::format("{}: the forward of stage {} microbatch {} runs twice", Name(index), s, m));
    Tensor x;
    if (routes_->IsFirst(s, m)) {
      x = LoadInput(device_, options_.model, m);
    } else {
      AwaitArrival(index, chunk.input_unit, fmt::format("the input of stage {} microbatch {}", s, m));
      if (chunk.input.empty()) {
        throw RankError(fmt::format("{}: the input of stage {} microbatch {} has not arrived: no "
                                    "completed RECV brought it (is the WAIT that posts it later?)",
                                    Name(index), s, m));
      }
      x = std::move(chunk.input);
      chunk.input_unit = -1;
    }
    chunk.saved.emplace();
    Tensor y = StageForward(device_, Weights(s), std::move(x), *chunk.saved);
    const bool train = pass_->kind == PassKind::kTrain;
    if (!train) chunk.saved.reset();  // nothing will run backward
    const int next = routes_->Next(s, m);
    if (next < 0) {
      if (train) {
        Tensor label = LoadLabel(device_, options_.model, m);
        Tensor loss = LossAndGrad(device_, y, label, chunk.out_grad);
        result.losses.push_back({m, device_.Download(loss)});
      } else {
        result.outputs.push_back({m, device_.Download(y)});
      }
    } else if (Local(next)) {
      At(next, m).input = std::move(y);
    } else {
      At(s, m).output = std::move(y);
    }
  }

  void Backward(int index, const Task& task) {
    const int s = task.stage, m = task.microbatch;
    Chunk& chunk = At(s, m);
    if (!chunk.saved) {
      throw RankError(fmt::format("{}: the forward of stage {} microbatch {} has not run here", Name(index), s, m));
    }
    AwaitArrival(index, chunk.out_grad_unit, fmt::format("the output gradient of stage {} microbatch {}", s, m));
    if (chunk.out_grad.empty()) {
      throw RankError(fmt::format("{}: the output gradient of stage {} microbatch {} has not arrived: "
                                  "no completed RECV brought it (is the WAIT that posts it later?)",
                                  Name(index), s, m));
    }
    chunk.out_grad_unit = -1;
    const int prev = routes_->Prev(s, m);
    WeightGradStash stash;
    Tensor gx = StageInputGrad(device_, Weights(s), std::move(*chunk.saved), std::move(chunk.out_grad),
                               prev >= 0, stash);
    chunk.saved.reset();
    if (task.op == Op::kBackward) {
      StageWeightGrad(device_, std::move(stash), Grads(s));
    } else {
      chunk.stash = std::move(stash);
    }
    if (prev >= 0) {
      if (Local(prev)) {
        At(prev, m).out_grad = std::move(gx);
      } else {
        At(s, m).in_grad = std::move(gx);
      }
    }
  }

  void WeightGrad(int index, const Task& task) {
    Chunk& chunk = At(task.stage, task.microbatch);
    if (!chunk.stash) {
      throw RankError(fmt::format("{}: no input-gradient step of stage {} microbatch {} ran before it",
                                  Name(index), task.stage, task.microbatch));
    }
    StageWeightGrad(device_, std::move(*chunk.stash), Grads(task.stage));
    chunk.stash.reset();
  }

  // ---- communication ----

  // Binds every op of unit `u` to its tensor, applies the fault plan, and runs it: inline for a
  // WAIT group (the rank blocks at the WAIT anyway), on the stream for a lone op.
  void Post(int u, int index) {
    const PlannedUnit& planned = rank_plan_->units[u];
    auto unit = std::make_unique<PendingUnit>();
    unit->local = u;
    unit->global = base_->unit + u;
    unit->view = std::make_shared<UnitView>();
    unit->view->what = rank_plan_->grouped
                           ? fmt::format("group #{} of {} ops", unit->global, planned.comms.size())
                           : fmt::format("unit #{}", unit->global);
    const int64_t action = base_->action + index;
    unit->posted_by = action;

    std::vector<CommOp> in_program_order;
    std::vector<std::string> names;
    std::vector<std::pair<int, int64_t>> sends;  // (peer, global seq) of each op, -1 for receives
    for (int c : planned.comms) {
      const PlannedComm& comm = rank_plan_->comms[c];
      const Action& a = pass_->schedule.program[rank_][comm.action];
      const int64_t global_comm = base_->comm + c;
      const int64_t seq = comm.channel_seq + (comm.send ? base_->sent[comm.peer] : base_->received[comm.peer]);
      CommOp op;
      op.send = comm.send;
      op.peer = comm.peer;
      if (global_comm < static_cast<int64_t>(rank_faults_.post_delay_us.size())) op.post_delay_us = rank_faults_.post_delay_us[global_comm];
      if (!comm.send && global_comm < static_cast<int64_t>(rank_faults_.deliver_delay_us.size())) {
        op.deliver_delay_us = rank_faults_.deliver_delay_us[global_comm];
      }
      Tensor* tensor = BindTensor(a, index, c, *unit);
      op.data = tensor->data();
      op.bytes = tensor->bytes();
      const std::string name = fmt::format("{} {} rank {} (message #{})", ToString(a), comm.send ? "->" : "<-", comm.peer, seq);
      if (IsTarget(CorruptKind::kDrop, comm.send ? rank_ : comm.peer, comm.send ? comm.peer : rank_, seq) && comm.send) {
        recorder_.Record(action, FlightEventKind::kDropped);
        continue;  // never posted: the receiver will take the next message on this pair for it
      }
      if (!comm.send && IsTarget(CorruptKind::kBitflip, comm.peer, rank_, seq)) {
        unit->flip_target = tensor;
        unit->flip_element = faults_.corrupt->element % std::max<int64_t>(tensor->size(), 1);
        unit->flip_bit = faults_.corrupt->bit;
      }
      in_program_order.push_back(op);
      names.push_back(name);
      sends.push_back({comm.send ? comm.peer : -1, seq});
    }
    SwapIfPlanned(in_program_order, sends, action);
    Order(*unit, in_program_order, names);
    if (options_.planted_bug == PlantedBug::kReleaseSendEarly) {
      unit->keep_alive.clear();
      for (int c : planned.comms) retained_.erase(c);
    }
    // Posting waits for every compute queued so far (a no-op on the CPU, where computes are done
    // when they return): the payloads the sends carry, and any poisoning fill of the buffers the
    // receives were just given, are then complete before another stream copies them.
    // ---- planted bug (test hook, see PlantedBug): the missing compute event ----
    if (options_.planted_bug != PlantedBug::kSkipComputeEvent) device_.Synchronize();
    recorder_.Record(action, FlightEventKind::kUnitPosted, unit->global);
    if (rank_plan_->grouped) {
      recorder_.SetActivity(RankActivity::kBlocked, Name(index), unit->view);
      RunUnit(*unit, -1);
      completed_units_ = u + 1;
    } else {
      StreamFor(planned.stream).Enqueue(std::move(unit));
    }
  }

  // Pair layout: the set-ups of the pairs' communicators, which the rank's host meets at its first
  // contacts ahead of its computes (a GPU's host queues its kernels and runs on), each holding it
  // until the peers it meets there have come to their own first contact with it.
  void SetUpPairs() {
    for (const std::vector<int>& peers : plan_.first_contacts[rank_]) {
      auto view = std::make_shared<UnitView>();
      view->what = fmt::format("the set-up of its communicators with rank(s) {}, which waits for "
                               "each to reach its first op with rank {}",
                               fmt::join(peers, ", "), rank_);
      recorder_.SetActivity(RankActivity::kBlocked, "the set-up of its pair communicators", view);
      const UnitResult r = transport_.Connect(peers);
      if (r.status == UnitResult::Status::kStopped) throw Stopped{};
      if (r.status == UnitResult::Status::kFailed) {
        throw RankError(fmt::format("setting up the communicators with rank(s) {} failed: {}",
                                    fmt::join(peers, ", "), r.error));
      }
    }
  }

  // The tensor an op sends from or receives into. A send's payload moves into the unit, which
  // frees it when it completes, or, for a send a WAIT_SEND retires, into `retained_` until that
  // WAIT_SEND; a receive's buffer goes where its consumer will look for it.
  Tensor* BindTensor(const Action& a, int index, int comm, PendingUnit& unit) {
    Chunk& chunk = At(a.stage, a.microbatch);
    const ModelShape& shape = options_.model.shape;
    auto missing = [&](const char* what) {
      return RankError(fmt::format("{}: {} has nothing to send: {} of stage {} microbatch {} is not here",
                                   Name(index), ToString(a), what, a.stage, a.microbatch));
    };
    auto receive = [&](Tensor& slot, int64_t& slot_unit, const char* what) -> Tensor* {
      if (!slot.empty()) {
        throw RankError(fmt::format("{}: {} receives {} of stage {} microbatch {} a second time",
                                    Name(index), ToString(a), what, a.stage, a.microbatch));
      }
      slot = device_.Allocate(shape.Rows(), shape.hidden);
      slot_unit = unit.local;
      return &slot;
    };
    auto send = [&](Tensor& payload) -> Tensor* {
      if (rank_plan_->retired_by[comm] >= 0) return &(retained_[comm] = std::move(payload));
      unit.keep_alive.push_back(std::move(payload));
      return &unit.keep_alive.back();
    };
    switch (a.op) {
      case Op::kSendF:
        if (chunk.output.empty()) throw missing("the output");
        return send(chunk.output);
      case Op::kSendB:
        if (chunk.in_grad.empty()) throw missing("the input gradient");
        return send(chunk.in_grad);
      case Op::kRecvF: return receive(chunk.input, chunk.input_unit, "the input");
      case Op::kRecvB: return receive(chunk.out_grad, chunk.out_grad_unit, "the output gradient");
      default: throw std::logic_error("BindTensor: not a SEND/RECV");
    }
  }

  bool IsTarget(CorruptKind kind, int from, int to, int64_t seq) const {
    if (!faults_.corrupt || faults_.corrupt->kind != kind) return false;
    const MessageId& m = faults_.corrupt->message;
    return m.from == from && m.to == to && m.seq == seq;
  }

  // The swap negative control: the sender's two consecutive messages to one rank exchange
  // payloads, so each arrives where the other was expected.
  void SwapIfPlanned(std::vector<CommOp>& ops, const std::vector<std::pair<int, int64_t>>& sends, int64_t action) {
    if (!faults_.corrupt || faults_.corrupt->kind != CorruptKind::kSwap || faults_.corrupt->message.from != rank_) return;
    const MessageId& m = faults_.corrupt->message;
    int first = -1, second = -1;
    for (size_t i = 0; i < sends.size(); ++i) {
      if (sends[i].first == m.to && sends[i].second == m.seq) first = static_cast<int>(i);
      if (sends[i].first == m.to && sends[i].second == m.seq + 1) second = static_cast<int>(i);
    }
    if (first < 0 || second < 0) return;
    std::swap(ops[first].data, ops[second].data);
    recorder_.Record(action, FlightEventKind::kCorrupted);
  }

  // Puts the ops in the plan's posting order for this unit (program order when it has none).
  void Order(PendingUnit& unit, const std::vector<CommOp>& ops, const std::vector<std::string>& names) {
    std::vector<int> order(ops.size());
    for (size_t i = 0; i < ops.size(); ++i) order[i] = static_cast<int>(i);
    if (auto it = unit_orders_.find(unit.global); it != unit_orders_.end() && it->second->size() == ops.size()) {
      order = *it->second;
    }
    for (int k : order) {
      unit.ops.push_back(ops[k]);
      unit.view->ops.push_back(names[k]);
    }
    unit.view->progress = std::make_shared<UnitProgress>(unit.ops.size());
  }

  // Runs a unit to completion: inline at its WAIT (`stream` -1), or on communication stream
  // `stream`'s thread.
  void RunUnit(PendingUnit& unit, int stream) {
    if (stream >= 0) recorder_.SetStreamUnit(stream, unit.view);
    const Clock::time_point begin = Clock::now();
    const UnitResult r = transport_.RunUnit(unit.ops, *unit.view->progress);
    if (stream >= 0) recorder_.SetStreamUnit(stream, nullptr);
    if (r.status == UnitResult::Status::kStopped) throw Stopped{};
    if (r.status == UnitResult::Status::kFailed) {
      throw RankError(fmt::format("{} failed: {}", unit.view->what, r.error));
    }
    if (unit.flip_target) {
      device_.FlipBit(*unit.flip_target, unit.flip_element, unit.flip_bit);
      recorder_.Record(-1, FlightEventKind::kCorrupted);
    }
    recorder_.Record(-1, FlightEventKind::kUnitComplete, unit.global);
    RecordSpan(/*comm=*/true, unit.posted_by, unit.global, begin);
    unit.keep_alive.clear();
  }

  const RunPlan& plan_;
  const FaultPlan& faults_;
  const RankFaults& rank_faults_;
  const ExecOptions& options_;
  Transport& transport_;
  Device& device_;
  FlightRecorder& recorder_;
  StopSignal& stop_;
  const int rank_;
  std::unordered_map<int64_t, const std::vector<int>*> unit_orders_;

  const PassPlan* pass_ = nullptr;
  const RankPlan* rank_plan_ = nullptr;
  const PassBase* base_ = nullptr;
  std::optional<RouteIndex> routes_;
  std::map<std::pair<int, int>, Chunk> chunks_;
  std::map<int, StageWeights> weights_;  // by block
  std::map<int, StageWeights> grads_;    // by stage
  int64_t completed_units_ = 0;          // grouped ranks: units of this pass done
  SpanLog spans_;                        // ExecOptions::record_timeline
  std::map<int, Tensor> retained_;       // comm -> a sent payload its WAIT_SEND will free
  // Ranks without WAITs: the communication streams, by StreamOf id; created on first use. Last:
  // joined before the tensors above are freed.
  std::map<int, std::unique_ptr<CommStream>> streams_;
};

}  // namespace

// ---- planted bugs (test hook of the fuzz campaign) ----
std::string_view PlantedBugName(PlantedBug bug) {
  switch (bug) {
    case PlantedBug::kNone: return "none";
    case PlantedBug::kReleaseSendEarly: return "release-send-early";
    case PlantedBug::kSkipArrivalWait: return "skip-arrival-wait";
    case PlantedBug::kSkipComputeEvent: return "skip-compute-event";
    case PlantedBug::kIgnoreWaitSend: return "ignore-wait-send";
  }
  return "?";
}

std::optional<PlantedBug> PlantedBugFromName(std::string_view name) {
  for (PlantedBug b : {PlantedBug::kNone, PlantedBug::kReleaseSendEarly, PlantedBug::kSkipArrivalWait,
                       PlantedBug::kSkipComputeEvent, PlantedBug::kIgnoreWaitSend}) {
    if (PlantedBugName(b) == name) return b;
  }
  return std::nullopt;
}

PlantedBug PlantedBugFromEnvironment() {
  const char* value = std::getenv(kPlantedBugVariable);
  if (value == nullptr || *value == 0) return PlantedBug::kNone;
  const std::optional<PlantedBug> bug = PlantedBugFromName(value);
  if (!bug) {
    throw InputError(fmt::format("{}={}: not a planted bug (release-send-early, skip-arrival-wait, "
                                 "skip-compute-event, ignore-wait-send)",
                                 kPlantedBugVariable, value));
  }
  return *bug;
}
// ---- planted bugs (end) ----

std::unique_ptr<Device> MakeDevice(const ExecOptions& options, int rank) {
  return options.make_device ? options.make_device(rank) : MakeCpuDevice(options.model.dtype);
}

RankOutcome RunRank(const RunPlan& plan, const FaultPlan& faults, const ExecOptions& options,
                    Transport& transport, Device& device, FlightRecorder& recorder, StopSignal& stop) {
  try {
    RankExecutor executor(plan, faults, options, transport, device, recorder, stop);
    return executor.Run();
  } catch (const std::exception& e) {
    RankOutcome outcome;
    outcome.end = RankEnd::kFailed;
    outcome.error = e.what();
    return outcome;
  }
}


// ---- results ----

namespace {

// A minimal binary encoding for sending results between processes of one machine type.
class Writer {
 public:
  void Int(int64_t v) { Raw(&v, sizeof v); }
  void Bytes(const std::vector<uint8_t>& b) {
    Int(static_cast<int64_t>(b.size()));
    out_.append(reinterpret_cast<const char*>(b.data()), b.size());
  }
  void Host(const HostTensor& t) {
    Int(static_cast<int64_t>(t.dtype));
    Int(t.rows);
    Int(t.cols);
    Bytes(t.bytes);
  }
  std::string Take() { return std::move(out_); }

 private:
  void Raw(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  int64_t Int() {
    int64_t v;
    Raw(&v, sizeof v);
    return v;
  }
  std::vector<uint8_t> Bytes() {
    const int64_t n = Int();
    if (n < 0 || static_cast<size_t>(n) > in_.size() - pos_) throw std::runtime_error("rank result: truncated");
    std::vector<uint8_t> b(in_.begin() + pos_, in_.begin() + pos_ + n);
    pos_ += n;
    return b;
  }
  HostTensor Host() {
    HostTensor t;
    t.dtype = static_cast<DType>(Int());
    t.rows = static_cast<int>(Int());
    t.cols = static_cast<int>(Int());
    t.bytes = Bytes();
    if (t.bytes.size() != static_cast<size_t>(t.size()) * DTypeSize(t.dtype)) throw std::runtime_error("rank result: bad tensor");
    return t;
  }
  bool AtEnd() const { return pos_ == in_.size(); }

 private:
  void Raw(void* p, size_t n) {
    if (n > in_.size() - pos_) throw std::runtime_error("rank result: truncated");
    std::memcpy(p, in_.data() + pos_, n);
    pos_ += n;
  }
  std::string_view in_;
  size_t pos_ = 0;
};

}  // namespace

std::string RankResult::Serialize() const {
  Writer w;
  w.Int(rank);
  w.Int(static_cast<int64_t>(losses.size()));
  for (const auto& [m, t] : losses) {
    w.Int(m);
    w.Host(t);
  }
  w.Int(static_cast<int64_t>(outputs.size()));
  for (const auto& [m, t] : outputs) {
    w.Int(m);
    w.Host(t);
  }
  w.Int(static_cast<int64_t>(stage_grads.size()));
  for (const auto& [s, g] : stage_grads) {
    w.Int(s);
    w.Host(g.w1);
    w.Host(g.w2);
  }
  for (int64_t v : {memory.live_bytes, memory.peak_bytes, memory.allocations, memory.reuses}) w.Int(v);
  w.Int(static_cast<int64_t>(timeline.size()));
  for (const RecordedSpan& s : timeline) {
    for (int64_t v : {int64_t{s.comm}, s.action, s.unit, s.begin_ns, s.end_ns}) w.Int(v);
  }
  return w.Take();
}

RankResult RankResult::Deserialize(std::string_view bytes) {
  Reader r(bytes);
  RankResult out;
  out.rank = static_cast<int>(r.Int());
  auto count = [&] {
    const int64_t n = r.Int();
    if (n < 0 || n > (int64_t{1} << 24)) throw std::runtime_error("rank result: bad count");
    return n;
  };
  for (int64_t i = count(); i > 0; --i) {
    const int m = static_cast<int>(r.Int());
    out.losses.push_back({m, r.Host()});
  }
  for (int64_t i = count(); i > 0; --i) {
    const int m = static_cast<int>(r.Int());
    out.outputs.push_back({m, r.Host()});
  }
  for (int64_t i = count(); i > 0; --i) {
    const int s = static_cast<int>(r.Int());
    BlockGrads g;
    g.w1 = r.Host();
    g.w2 = r.Host();
    out.stage_grads.push_back({s, std::move(g)});
  }
  out.memory.live_bytes = r.Int();
  out.memory.peak_bytes = r.Int();
  out.memory.allocations = r.Int();
  out.memory.reuses = r.Int();
  for (int64_t i = count(); i > 0; --i) {
    RecordedSpan s;
    s.comm = r.Int() != 0;
    s.action = r.Int();
    s.unit = r.Int();
    s.begin_ns = r.Int();
    s.end_ns = r.Int();
    out.timeline.push_back(s);
  }
  if (!r.AtEnd()) throw std::runtime_error("rank result: trailing bytes");
  return out;
}

StepResults AssembleResults(const Schedule& schedule, const ModelConfig& config,
                            const std::vector<RankResult>& ranks) {
  StepResults step;
  std::vector<std::optional<HostTensor>> losses(schedule.microbatches), outputs(schedule.microbatches);
  std::vector<BlockGrads> stage_grads(schedule.stages);
  auto place = [](std::vector<std::optional<HostTensor>>& slots, int m, const HostTensor& t, const char* what) {
    if (m < 0 || m >= static_cast<int>(slots.size()) || slots[m]) {
      throw std::runtime_error(fmt::format("results: {} of microbatch {} is missing a place or came twice", what, m));
    }
    slots[m] = t;
  };
  for (const RankResult& r : ranks) {
    for (const auto& [m, t] : r.losses) place(losses, m, t, "the loss");
    for (const auto& [m, t] : r.outputs) place(outputs, m, t, "the output");
    for (const auto& [s, g] : r.stage_grads) {
      if (s < 0 || s >= schedule.stages || !stage_grads[s].w1.bytes.empty()) {
        throw std::runtime_error(fmt::format("results: gradients of stage {} came twice or out of range", s));
      }
      stage_grads[s] = g;
    }
  }
  for (int m = 0; m < schedule.microbatches; ++m) {
    if (!losses[m] || !outputs[m]) {
      throw std::runtime_error(fmt::format("results: no rank reported the {} of microbatch {}",
                                           losses[m] ? "output" : "loss", m));
    }
    step.losses.push_back(std::move(*losses[m]));
    step.outputs.push_back(std::move(*outputs[m]));
  }
  for (int b = 0; b < schedule.ParamBlocks(); ++b) {
    step.grads.push_back(CombineStageGrads(schedule, config, b, stage_grads));
  }
  return step;
}

}  // namespace pipeproof
