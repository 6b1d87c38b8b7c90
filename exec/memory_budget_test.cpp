#include "exec/memory_budget.h"
#include "exec/memory_limit_test_util.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "schedule/generate.h"

namespace pipeproof {
namespace {

ModelConfig Model(int hidden, int seq, int micro_batch_size, DType dtype = DType::kF64) {
  ModelConfig m;
  m.shape = {hidden, seq, micro_batch_size};
  m.dtype = dtype;
  return m;
}

// As if every rank held `activations` stage-chunks and `stashes`
// weight-gradient stashes at its peak (the verifier's memory check says how
// many a schedule really holds).
MemoryEstimate Estimate(const Schedule& s, const ModelConfig& m, bool all_ranks_here = true,
                        int activations = 9, int stashes = 4) {
  const std::vector<int> peak(s.ranks, activations), stash(s.ranks, stashes);
  return EstimateRunMemory(s, m, peak, stash, all_ranks_here);
}

using testing::MemoryLimit;

TEST(MemoryBudgetTest, CountsWeightsActivationsAndTheReference) {
  // One rank, one stage, H = 1, N = 1: weights 8, activations 9 and stashes 10
  // elements, f64.
  const Schedule s = Generate({.kind = "1f1b", .ranks = 1, .microbatches = 1});
  const MemoryEstimate e =
      EstimateRunMemory(s, Model(1, 1, 1), std::vector<int>{1}, std::vector<int>{2}, true);
  EXPECT_EQ(e.ranks_bytes, (2 * 8 + 9 + 2 * 10) * 8);  // weights and gradients, 1 chunk, 2 stashes
  EXPECT_EQ(e.reference_bytes, (2 * 8 + 9) * 8);       // a route of one stage
}

TEST(MemoryBudgetTest, GrowsWithTheShapeAndTheElementType) {
  const Schedule s = Generate({.kind = "dualpipe", .ranks = 4, .microbatches = 8});
  const int64_t small = Estimate(s, Model(32, 16, 2)).total();
  EXPECT_GT(Estimate(s, Model(64, 16, 2)).total(),
            2 * small);  // weights x4, activations x2
  EXPECT_GT(Estimate(s, Model(32, 32, 2)).total(), small);
  EXPECT_EQ(Estimate(s, Model(32, 16, 2, DType::kF32)).total() * 2, small);
  // One rank per process (MPI) holds less than all of them together.
  EXPECT_LT(Estimate(s, Model(32, 16, 2), false).ranks_bytes,
            Estimate(s, Model(32, 16, 2)).ranks_bytes);
}

TEST(MemoryBudgetTest, RefusesARunThatCannotFitAndSaysWhy) {
  const Schedule s = Generate({.kind = "dualpipe", .ranks = 8, .microbatches = 20});
  const ModelConfig huge = Model(4096, 4096, 4);  // every tensor within its own limit
  const MemoryEstimate e = Estimate(s, huge);
  EXPECT_GT(e.total(), int64_t{100} << 30);
  MemoryLimit limit(std::to_string(int64_t{64} << 30));
  try {
    CheckRunFitsInMemory(e, huge);
    FAIL() << "a run needing " << FormatBytes(e.total()) << " was not refused";
  } catch (const InputError& error) {
    const std::string what = error.what();
    EXPECT_NE(what.find("64.0 GiB is available"), std::string::npos) << what;
    EXPECT_NE(what.find("--hidden"), std::string::npos) << what;
  }
  // The demo's size fits in far less.
  const ModelConfig demo = Model(32, 16, 2);
  EXPECT_LT(Estimate(s, demo).total(), int64_t{64} << 20);
  EXPECT_NO_THROW(CheckRunFitsInMemory(Estimate(s, demo), demo));
}

TEST(MemoryBudgetTest, FormatsBytes) {
  EXPECT_EQ(FormatBytes(100), "100 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(int64_t{3} << 30), "3.0 GiB");
}

// A limit that is not a number of bytes is refused, never silently ignored.
TEST(MemoryBudgetTest, AnUnreadableLimitIsRefused) {
  for (const char* bad : {"abc", "-5", "0", "12GB", "99999999999999999999999"}) {
    MemoryLimit limit(bad);
    EXPECT_THROW(AvailableMemoryBytes(), InputError) << bad;
  }
  MemoryLimit limit("1073741824");
  EXPECT_EQ(AvailableMemoryBytes(), 1073741824);
}

}  // namespace
}  // namespace pipeproof
