#include "fuzz/schedule_gen.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <tuple>
#include <vector>

#include "schedule/kinds.h"

namespace pipeproof {

rc::Gen<GenerateOptions> GenValidOptions(int max_ranks, int max_factor) {
  return rc::gen::exec([=] {
    GenerateOptions o;
    o.kind = *rc::gen::elementOf(GeneratorKinds());
    o.ranks = *rc::gen::elementOf(ValidRanks(o.kind, max_ranks, /*min_ranks=*/1));
    o.microbatches = *rc::gen::elementOf(ValidMicrobatches(o.kind, o.ranks, max_factor * o.ranks));
    if (ScheduleKindNamed(o.kind).uses_virtual_stages) o.virtual_stages = *rc::gen::inRange(1, 4);
    o.overlap = *rc::gen::arbitrary<bool>();
    o.with_comm = *rc::gen::arbitrary<bool>();
    return o;
  });
}

rc::Gen<Action> GenAction(int stages, int microbatches) {
  return rc::gen::exec([=] {
    const Op op = *rc::gen::element(Op::kForward, Op::kBackward, Op::kInputGrad, Op::kWeightGrad,
                                    Op::kOverlapFB, Op::kSendF, Op::kRecvF, Op::kSendB,
                                    Op::kRecvB, Op::kWait, Op::kWaitSendF, Op::kWaitSendB,
                                    Op::kUnshard, Op::kReshard, Op::kReduceGrad,
                                    Op::kWaitReduceGrad);
    const int stage = *rc::gen::inRange(0, stages);
    const int mb = *rc::gen::inRange(0, microbatches);
    if (op == Op::kWait) return Action::Wait();
    if (IsDataParallel(op)) return Action::DataParallel(op, stage);
    if (op == Op::kOverlapFB) {
      return Action::OverlapFB(stage, mb, *rc::gen::element(Op::kBackward, Op::kInputGrad),
                               *rc::gen::inRange(0, stages), *rc::gen::inRange(0, microbatches));
    }
    return Action::Compute(op, stage, mb);
  });
}

rc::Gen<Schedule> GenArbitrarySchedule() {
  return rc::gen::exec([] {
    Schedule s;
    s.ranks = *rc::gen::inRange(1, 6);
    s.stages = *rc::gen::inRange(1, 9);
    s.microbatches = *rc::gen::inRange(1, 7);
    s.kind = *rc::gen::elementOf(std::vector<std::string>{"", "1f1b", "dualpipe", "zb1p"});
    s.placement = *rc::gen::container<std::vector<int>>(s.stages, rc::gen::inRange(0, s.ranks));
    s.params = *rc::gen::container<std::vector<int>>(s.stages, rc::gen::inRange(0, s.stages));
    std::vector<int> all(s.stages);
    std::iota(all.begin(), all.end(), 0);
    for (int m = 0; m < s.microbatches; ++m) {
      // A route: a non-empty selection of distinct stages in some order.
      const auto keys = *rc::gen::container<std::vector<int>>(all.size(), rc::gen::arbitrary<int>());
      std::vector<int> route = all;
      std::stable_sort(route.begin(), route.end(), [&](int a, int b) { return keys[a] < keys[b]; });
      route.resize(*rc::gen::inRange<size_t>(1, all.size() + 1));
      s.routes.push_back(route);
    }
    for (int r = 0; r < s.ranks; ++r) {
      s.program.push_back(*rc::gen::container<std::vector<Action>>(
          *rc::gen::inRange(0, 12), GenAction(s.stages, s.microbatches)));
    }
    return s;
  });
}

namespace {

// Every choice below is a RapidCheck value drawn inside rc::gen::exec, never a seed, so that
// RapidCheck shrinks a counterexample's program and not only its sizes. Each shrinks toward 0,
// which every use reads as the simplest program: the first ready compute, a message next to its
// compute, an optional action left out.

// One of 0..n-1, uniformly: the topology already grows with RapidCheck's size, and scaling every
// choice too would make the early cases canonical programs only.
int Pick(int n) { return *rc::gen::resize(rc::kNominalSize, rc::gen::inRange(0, n)); }

// True with `percent` % chance; a 0 drawn is false, so true must mean "add the feature".
bool Chance(int percent) { return Pick(100) >= 100 - percent; }

// Removes and returns the `k`-th element.
template <typename T>
T Take(std::vector<T>& items, int k) {
  T item = items[k];
  items.erase(items.begin() + k);
  return item;
}

// `items` in a drawn order; shrinks toward the given order.
std::vector<Action> DrawOrder(std::vector<Action> items) {
  std::vector<Action> out;
  while (!items.empty()) out.push_back(Take(items, Pick(static_cast<int>(items.size()))));
  return out;
}

// A compute task of the step and what must run before it anywhere in the step.
struct StepTask {
  Task task;
  std::vector<int> after;  // indices of tasks it depends on
};

// The step's computes: per microbatch its forwards along the route, then its backwards, each
// either full or split into I and W.
std::vector<StepTask> StepTasks(const Schedule& s) {
  std::vector<StepTask> tasks;
  std::map<std::tuple<Op, int, int>, int> index;  // (F or backward, stage, mb) -> task
  auto add = [&](Op op, int stage, int mb, std::vector<int> after) {
    tasks.push_back({{op, stage, mb}, std::move(after)});
    return static_cast<int>(tasks.size()) - 1;
  };
  for (int m = 0; m < s.microbatches; ++m) {
    const std::vector<int>& route = s.routes[m];
    int prev = -1;
    for (int st : route) {
      prev = add(Op::kForward, st, m, prev < 0 ? std::vector<int>{} : std::vector<int>{prev});
      index[{Op::kForward, st, m}] = prev;
    }
    int later = -1;  // the backward of the next stage on the route
    for (auto it = route.rbegin(); it != route.rend(); ++it) {
      std::vector<int> after{index[{Op::kForward, *it, m}]};
      if (later >= 0) after.push_back(later);
      const bool split = Chance(50);
      later = add(split ? Op::kInputGrad : Op::kBackward, *it, m, after);
      if (split) add(Op::kWeightGrad, *it, m, {later});
    }
  }
  return tasks;
}

// A drawn order of all tasks that respects every dependency. Tasks become ready in a queue, so
// that shrinking every pick to the first ready one gives the breadth-first order.
std::vector<int> StepOrder(const std::vector<StepTask>& tasks) {
  const int n = static_cast<int>(tasks.size());
  std::vector<int> remaining(n);
  std::vector<std::vector<int>> users(n);
  std::vector<int> ready;
  for (int t = 0; t < n; ++t) {
    remaining[t] = static_cast<int>(tasks[t].after.size());
    for (int d : tasks[t].after) users[d].push_back(t);
    if (remaining[t] == 0) ready.push_back(t);
  }
  std::vector<int> order;
  while (!ready.empty()) {
    const int t = Take(ready, Pick(static_cast<int>(ready.size())));
    order.push_back(t);
    for (int u : users[t]) {
      if (--remaining[u] == 0) ready.push_back(u);
    }
  }
  return order;
}

// The computes in `order`, split by rank: per rank its computes, per task its index there.
struct RankComputes {
  std::vector<std::vector<Task>> computes;
  std::vector<int> position;
};

RankComputes SplitByRank(const Schedule& s, const std::vector<StepTask>& tasks,
                         const std::vector<int>& order) {
  RankComputes out{std::vector<std::vector<Task>>(s.ranks), std::vector<int>(tasks.size(), -1)};
  for (int t : order) {
    std::vector<Task>& computes = out.computes[s.placement[tasks[t].task.stage]];
    out.position[t] = static_cast<int>(computes.size());
    computes.push_back(tasks[t].task);
  }
  return out;
}

// Per rank, the SEND/RECVs written just before each of its computes (slot k: before compute k,
// the last slot: after them all). A SEND goes after its producer and a RECV before its consumer,
// each either next to it or anywhere it may go.
std::vector<std::vector<std::vector<Action>>> PlaceMessages(const Schedule& s,
                                                            const std::vector<StepTask>& tasks,
                                                            const RankComputes& placed) {
  std::vector<std::vector<std::vector<Action>>> slots(s.ranks);
  for (int r = 0; r < s.ranks; ++r) slots[r].resize(placed.computes[r].size() + 1);
  for (size_t t = 0; t < tasks.size(); ++t) {
    const Task& consumer = tasks[t].task;
    if (consumer.op == Op::kWeightGrad) continue;
    for (int d : tasks[t].after) {
      const Task& producer = tasks[d].task;
      const int from = s.placement[producer.stage], to = s.placement[consumer.stage];
      if (from == to || producer.stage == consumer.stage) continue;
      const bool forward = consumer.op == Op::kForward;
      const int after = placed.position[d] + 1, before = placed.position[t];
      const int last = static_cast<int>(placed.computes[from].size());
      const int send_at = Chance(50) ? after + Pick(last - after + 1) : after;
      const int recv_at = Chance(50) ? before - Pick(before + 1) : before;
      slots[from][send_at].push_back(
          Action::Comm(forward ? Op::kSendF : Op::kSendB, producer.stage, producer.microbatch));
      slots[to][recv_at].push_back(
          Action::Comm(forward ? Op::kRecvF : Op::kRecvB, consumer.stage, consumer.microbatch));
    }
  }
  return slots;
}

// One rank's program: its slots in a drawn order around its computes, and on some ranks WAIT
// groups: a WAIT after some of the SEND/RECVs, and most often one before the next compute and
// one at the end for what is still pending.
std::vector<Action> RankProgram(const std::vector<std::vector<Action>>& slots,
                                const std::vector<Task>& computes) {
  const bool grouped = Chance(50);
  std::vector<Action> program;
  bool pending = false;
  auto wait_if = [&](int percent) {
    if (grouped && pending && Chance(percent)) {
      program.push_back(Action::Wait());
      pending = false;
    }
  };
  for (size_t k = 0; k < slots.size(); ++k) {
    for (const Action& a : DrawOrder(slots[k])) {
      program.push_back(a);
      pending = true;
      wait_if(25);
    }
    wait_if(80);
    if (k < computes.size()) {
      program.push_back(Action::Compute(computes[k].op, computes[k].stage, computes[k].microbatch));
    }
  }
  wait_if(90);
  return program;
}

// Fills s.program: every compute once in a drawn order of the whole step, with its messages.
void BuildPrograms(Schedule& s) {
  const std::vector<StepTask> tasks = StepTasks(s);
  const RankComputes placed = SplitByRank(s, tasks, StepOrder(tasks));
  const auto slots = PlaceMessages(s, tasks, placed);
  s.program.clear();
  for (int r = 0; r < s.ranks; ++r) s.program.push_back(RankProgram(slots[r], placed.computes[r]));
}

// On some ranks, a WAIT_SEND somewhere after some SENDs: on a rank with WAIT groups it may stand
// before the WAIT that posts its SEND, which deadlocks.
void AddWaitSendsAnywhere(std::vector<Action>& program) {
  if (!Chance(50)) return;
  for (int i = 0; i < static_cast<int>(program.size()); ++i) {
    const Action a = program[i];
    if (!IsSend(a.op) || !Chance(60)) continue;
    const int at = i + 1 + Pick(static_cast<int>(program.size()) - i);
    program.insert(program.begin() + at, Action::WaitSend(a.op, a.stage, a.microbatch));
  }
}

// On some ranks, the data-parallel actions around each stage's computes (UNSHARD first, then
// REDUCE_GRAD, WAIT_REDUCE_GRAD and RESHARD at the end), which change nothing but must be read
// and kept.
void AddDataParallelActions(const Schedule& s, int rank, std::vector<Action>& program) {
  if (!Chance(20)) return;
  std::vector<Action> before, after;
  for (int st = 0; st < s.stages; ++st) {
    if (s.placement[st] != rank) continue;
    before.push_back(Action::DataParallel(Op::kUnshard, st));
    after.push_back(Action::DataParallel(Op::kReduceGrad, st));
    after.push_back(Action::DataParallel(Op::kWaitReduceGrad, st));
    after.push_back(Action::DataParallel(Op::kReshard, st));
  }
  program.insert(program.begin(), before.begin(), before.end());
  program.insert(program.end(), after.begin(), after.end());
}

// PyTorch's runtime actions on some ranks.
void AddRuntimeActions(Schedule& s) {
  for (int r = 0; r < s.ranks; ++r) {
    AddWaitSendsAnywhere(s.program[r]);
    AddDataParallelActions(s, r, s.program[r]);
  }
}

}  // namespace

rc::Gen<Schedule> GenWellFormedSchedule() {
  return rc::gen::exec([] {
    Schedule s;
    s.ranks = *rc::gen::inRange(2, 6);
    s.stages = *rc::gen::inRange(2, 9);
    s.microbatches = *rc::gen::inRange(1, 6);
    // Uniform like the choices: scaled by size, a small case would place every stage on rank 0,
    // and a counterexample could not shrink to fewer ranks without losing its messages.
    for (int st = 0; st < s.stages; ++st) s.placement.push_back(Pick(s.ranks));
    s.params.resize(s.stages);
    std::iota(s.params.begin(), s.params.end(), 0);
    std::vector<int> forwards(s.stages);
    std::iota(forwards.begin(), forwards.end(), 0);
    const std::vector<int> backwards(forwards.rbegin(), forwards.rend());
    for (int m = 0; m < s.microbatches; ++m) s.routes.push_back(*rc::gen::arbitrary<bool>() ? backwards : forwards);
    BuildPrograms(s);
    AddRuntimeActions(s);
    return s;
  });
}

}  // namespace pipeproof
