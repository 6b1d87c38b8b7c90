#include "exec/memory_budget.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "reference/dtype.h"
#include "schedule/schedule.h"

namespace pipeproof {
namespace {

// Elements of the model's tensors, from reference/stage_model.h's shapes.
struct StageSizes {
  int64_t weights;     // w1 [4H, H] + w2 [H, 4H]
  int64_t activation;  // ForwardSaved: x [N, H], h [N, 4H], a [N, 4H]
  int64_t stash;       // WeightGradStash: gy [N, H], a [N, 4H], gh [N, 4H], x [N, H]
};

StageSizes SizesOf(const ModelShape& shape) {
  const int64_t h = shape.hidden, n = int64_t{shape.seq} * shape.micro_batch_size;
  return {8 * h * h, 9 * n * h, 10 * n * h};
}

int64_t StagesOn(const Schedule& s, int rank) {
  return std::count(s.placement.begin(), s.placement.end(), rank);
}

int64_t LongestRoute(const Schedule& s) {
  size_t longest = 0;
  for (const auto& route : s.routes) longest = std::max(longest, route.size());
  return static_cast<int64_t>(longest);
}

// What one rank surely holds at its activation peak: the weights and gradients
// of every stage it holds, and the activations and stashes the verifier
// counted.
int64_t RankElements(const Schedule& s, const StageSizes& z, int rank, int activations,
                     int stashes) {
  return StagesOn(s, rank) * 2 * z.weights + activations * z.activation + stashes * z.stash;
}

}  // namespace

MemoryEstimate EstimateRunMemory(const Schedule& schedule, const ModelConfig& model,
                                 std::span<const int> activation_peak,
                                 std::span<const int> stash_peak, bool all_ranks_here) {
  const StageSizes z = SizesOf(model.shape);
  const int64_t element = static_cast<int64_t>(DTypeSize(model.dtype));
  int64_t ranks = 0;
  for (int r = 0; r < schedule.ranks; ++r) {
    const int activations = r < static_cast<int>(activation_peak.size()) ? activation_peak[r] : 0;
    const int stashes = r < static_cast<int>(stash_peak.size()) ? stash_peak[r] : 0;
    const int64_t rank = RankElements(schedule, z, r, activations, stashes);
    ranks = all_ranks_here ? ranks + rank : std::max(ranks, rank);
  }
  int64_t blocks = 0;
  for (int p : schedule.params) blocks = std::max<int64_t>(blocks, p + 1);
  // The reference holds every block's weights and gradients, and a microbatch's
  // activations all along its route before that microbatch's backward begins.
  const int64_t reference = blocks * 2 * z.weights + LongestRoute(schedule) * z.activation;
  return {ranks * element, reference * element};
}

int64_t AvailableMemoryBytes() {
  if (const char* limit = std::getenv("PIPEPROOF_MEMORY_LIMIT"); limit && *limit) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(limit, &end, 10);
    if (end && *end == 0 && v > 0 && errno == 0) return v;
    throw InputError(fmt::format(
        "PIPEPROOF_MEMORY_LIMIT='{}': expected the memory this run may use, as a positive number "
        "of bytes (unset it to use MemAvailable of /proc/meminfo)",
        limit));
  }
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    std::istringstream in(line);
    std::string key;
    long long kib = 0;
    if (in >> key >> kib && key == "MemAvailable:") return static_cast<int64_t>(kib) * 1024;
  }
  return -1;
}

void CheckRunFitsInMemory(const MemoryEstimate& estimate, const ModelConfig& model) {
  const int64_t available = AvailableMemoryBytes();
  if (available < 0 || estimate.total() <= available) return;
  throw InputError(
      fmt::format("this run needs at least {} of memory ({} for "
                  "the ranks, {} for the sequential reference, {} to verify the schedule first) "
                  "with {}, but {} is available: make --hidden, "
                  "--seq or --micro-batch-size smaller, or use "
                  "fewer microbatches or ranks",
                  FormatBytes(estimate.total()), FormatBytes(estimate.ranks_bytes),
                  FormatBytes(estimate.reference_bytes), FormatBytes(estimate.verifier_bytes), Describe(model),
                  FormatBytes(available)));
}

void CheckVerifierFitsInMemory(int64_t verifier_bytes, int64_t actions) {
  const int64_t available = AvailableMemoryBytes();
  if (available < 0 || verifier_bytes <= available) return;
  throw InputError(fmt::format("verifying this schedule ({} actions) before the run needs about {} of memory, but "
                               "{} is available: use fewer microbatches or ranks (or --z3 certify, or a "
                               "smaller --z3-memory, where a Z3 search counts)",
                               actions, FormatBytes(verifier_bytes), FormatBytes(available)));
}

std::string FormatBytes(int64_t bytes) {
  constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  int unit = 0;
  while (v >= 1024 && unit < 5) {
    v /= 1024;
    ++unit;
  }
  return unit == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", v, kUnits[unit]);
}

}  // namespace pipeproof
