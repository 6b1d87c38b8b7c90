#include "fuzz/schedule_gen.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <random>

#include "schedule/kinds.h"

namespace pipeproof {

rc::Gen<GenerateOptions> GenValidOptions(int max_ranks, int max_factor) {
  return rc::gen::exec([=] {
    GenerateOptions o;
    o.kind = *rc::gen::elementOf(GeneratorKinds());
    o.ranks = *rc::gen::elementOf(ValidRanks(o.kind, max_ranks, /*min_ranks=*/1));
    o.microbatches = *rc::gen::elementOf(ValidMicrobatches(o.kind, o.ranks, max_factor * o.ranks));
    if (FindScheduleKind(o.kind)->uses_virtual_stages) o.virtual_stages = *rc::gen::inRange(1, 4);
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

using Rng = std::mt19937_64;

bool Coin(Rng& rng, double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }
int Uniform(Rng& rng, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }

// A compute task of the step and what must run before it anywhere in the step.
struct StepTask {
  Task task;
  std::vector<int> after;  // indices of tasks it depends on
};

std::vector<StepTask> StepTasks(const Schedule& s, Rng& rng) {
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
      const bool split = Coin(rng, 0.5);
      later = add(split ? Op::kInputGrad : Op::kBackward, *it, m, after);
      if (split) add(Op::kWeightGrad, *it, m, {later});
    }
  }
  return tasks;
}

// Fills s.program from a random order of the step's tasks that respects every dependency.
void BuildPrograms(Schedule& s, Rng& rng) {
  const std::vector<StepTask> tasks = StepTasks(s, rng);
  const int n = static_cast<int>(tasks.size());
  // Per rank: compute tasks in order; per task: its position on its rank.
  std::vector<std::vector<Task>> computes(s.ranks);
  std::vector<int> position(n, -1);
  std::vector<int> remaining(n);
  std::vector<std::vector<int>> users(n);
  for (int t = 0; t < n; ++t) {
    remaining[t] = static_cast<int>(tasks[t].after.size());
    for (int d : tasks[t].after) users[d].push_back(t);
  }
  std::vector<int> ready;
  for (int t = 0; t < n; ++t) {
    if (remaining[t] == 0) ready.push_back(t);
  }
  while (!ready.empty()) {
    const int k = Uniform(rng, 0, static_cast<int>(ready.size()) - 1);
    const int t = ready[k];
    ready.erase(ready.begin() + k);
    const int r = s.placement[tasks[t].task.stage];
    position[t] = static_cast<int>(computes[r].size());
    computes[r].push_back(tasks[t].task);
    for (int u : users[t]) {
      if (--remaining[u] == 0) ready.push_back(u);
    }
  }
  // Messages: a SEND after the producer, a RECV before the consumer, each either next to it or
  // anywhere it may go. slots[r][k] holds the SEND/RECVs written just before compute k.
  std::vector<std::vector<std::vector<Action>>> slots(s.ranks);
  for (int r = 0; r < s.ranks; ++r) slots[r].resize(computes[r].size() + 1);
  for (int t = 0; t < n; ++t) {
    const Task& consumer = tasks[t].task;
    if (consumer.op == Op::kWeightGrad) continue;
    for (int d : tasks[t].after) {
      const Task& producer = tasks[d].task;
      const int from = s.placement[producer.stage], to = s.placement[consumer.stage];
      if (from == to || producer.stage == consumer.stage) continue;
      const bool forward = consumer.op == Op::kForward;
      const int after = position[d] + 1, before = position[t];
      const int send_at = Coin(rng, 0.5) ? after : Uniform(rng, after, static_cast<int>(computes[from].size()));
      const int recv_at = Coin(rng, 0.5) ? before : Uniform(rng, 0, before);
      slots[from][send_at].push_back(Action::Comm(forward ? Op::kSendF : Op::kSendB, producer.stage, producer.microbatch));
      slots[to][recv_at].push_back(Action::Comm(forward ? Op::kRecvF : Op::kRecvB, consumer.stage, consumer.microbatch));
    }
  }
  s.program.assign(s.ranks, {});
  for (int r = 0; r < s.ranks; ++r) {
    const bool grouped = Coin(rng, 0.5);
    std::vector<Action>& program = s.program[r];
    bool pending = false;
    for (size_t k = 0; k < slots[r].size(); ++k) {
      std::shuffle(slots[r][k].begin(), slots[r][k].end(), rng);
      for (const Action& a : slots[r][k]) {
        program.push_back(a);
        pending = true;
        if (grouped && Coin(rng, 0.25)) {
          program.push_back(Action::Wait());
          pending = false;
        }
      }
      if (grouped && pending && Coin(rng, 0.8)) {
        program.push_back(Action::Wait());
        pending = false;
      }
      if (k < computes[r].size()) program.push_back(Action::Compute(computes[r][k].op, computes[r][k].stage, computes[r][k].microbatch));
    }
    if (grouped && pending && Coin(rng, 0.9)) program.push_back(Action::Wait());
  }
}

// PyTorch's runtime actions on some ranks: a WAIT_SEND somewhere after some SENDs (on a rank with
// WAIT groups it may stand before the WAIT that posts its SEND, which deadlocks), and the
// data-parallel actions around each stage's computes (UNSHARD first, then REDUCE_GRAD,
// WAIT_REDUCE_GRAD and RESHARD at the end), which change nothing but must be read and kept.
void AddRuntimeActions(Schedule& s, Rng& rng) {
  for (int r = 0; r < s.ranks; ++r) {
    std::vector<Action>& program = s.program[r];
    if (Coin(rng, 0.5)) {
      for (int i = 0; i < static_cast<int>(program.size()); ++i) {
        const Action a = program[i];
        if (!IsSend(a.op) || !Coin(rng, 0.6)) continue;
        const int at = Uniform(rng, i + 1, static_cast<int>(program.size()));
        program.insert(program.begin() + at, Action::WaitSend(a.op, a.stage, a.microbatch));
      }
    }
    if (Coin(rng, 0.2)) {
      std::vector<int> stages;
      for (int st = 0; st < s.stages; ++st) {
        if (s.placement[st] == r) stages.push_back(st);
      }
      std::vector<Action> before, after;
      for (int st : stages) {
        before.push_back(Action::DataParallel(Op::kUnshard, st));
        after.push_back(Action::DataParallel(Op::kReduceGrad, st));
        after.push_back(Action::DataParallel(Op::kWaitReduceGrad, st));
        after.push_back(Action::DataParallel(Op::kReshard, st));
      }
      program.insert(program.begin(), before.begin(), before.end());
      program.insert(program.end(), after.begin(), after.end());
    }
  }
}

}  // namespace

rc::Gen<Schedule> GenWellFormedSchedule() {
  return rc::gen::exec([] {
    Schedule s;
    s.ranks = *rc::gen::inRange(2, 6);
    s.stages = *rc::gen::inRange(2, 9);
    s.microbatches = *rc::gen::inRange(1, 6);
    s.placement = *rc::gen::container<std::vector<int>>(s.stages, rc::gen::inRange(0, s.ranks));
    s.params.resize(s.stages);
    std::iota(s.params.begin(), s.params.end(), 0);
    std::vector<int> forwards(s.stages);
    std::iota(forwards.begin(), forwards.end(), 0);
    const std::vector<int> backwards(forwards.rbegin(), forwards.rend());
    for (int m = 0; m < s.microbatches; ++m) s.routes.push_back(*rc::gen::arbitrary<bool>() ? backwards : forwards);
    Rng rng(*rc::gen::arbitrary<uint64_t>());
    BuildPrograms(s, rng);
    AddRuntimeActions(s, rng);
    return s;
  });
}

}  // namespace pipeproof
