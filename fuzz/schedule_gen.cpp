#include "fuzz/schedule_gen.h"

#include <algorithm>
#include <numeric>

namespace pipeproof {

rc::Gen<GenerateOptions> GenValidOptions(int max_ranks, int max_factor) {
  return rc::gen::exec([=] {
    GenerateOptions o;
    o.kind = *rc::gen::elementOf(GeneratorKinds());
    o.ranks = *rc::gen::inRange(1, max_ranks + 1);
    if (o.kind == "dualpipe") o.ranks = std::max(2, o.ranks - o.ranks % 2);
    const int lo = (o.kind == "dualpipe" || o.kind == "dualpipev") ? 2 * o.ranks : 1;
    o.microbatches = *rc::gen::inRange(lo, std::max(lo, max_factor * o.ranks) + 1);
    if (o.kind == "dualpipe") o.microbatches += o.microbatches % 2;
    if (o.kind == "interleaved-1f1b") {
      o.microbatches = o.ranks * *rc::gen::inRange(1, max_factor + 1);
      o.virtual_stages = *rc::gen::inRange(1, 4);
    }
    o.overlap = *rc::gen::arbitrary<bool>();
    o.with_comm = *rc::gen::arbitrary<bool>();
    return o;
  });
}

rc::Gen<Action> GenAction(int stages, int microbatches) {
  return rc::gen::exec([=] {
    const Op op = *rc::gen::element(Op::kForward, Op::kBackward, Op::kInputGrad, Op::kWeightGrad,
                                    Op::kOverlapFB, Op::kSendF, Op::kRecvF, Op::kSendB,
                                    Op::kRecvB, Op::kWait);
    const int stage = *rc::gen::inRange(0, stages);
    const int mb = *rc::gen::inRange(0, microbatches);
    if (op == Op::kWait) return Action::Wait();
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

}  // namespace pipeproof
