#include "schedule/kinds.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "schedule/generators.h"

namespace pipeproof {
namespace {

// ---- size rules (the messages name the rule, as InputError does)

std::string AnySize(const GenerateOptions&) { return ""; }

std::string DualPipeSize(const GenerateOptions& o) {
  if (o.ranks < 2 || o.ranks % 2 != 0)
    return fmt::format("dualpipe needs an even number of ranks, at least 2 (got {})", o.ranks);
  if (o.microbatches % 2 != 0 || o.microbatches < 2 * o.ranks) {
    return fmt::format("dualpipe needs an even number of microbatches, at least twice the ranks "
                       "(2 x {} = {}; got {})",
                       o.ranks, 2 * o.ranks, o.microbatches);
  }
  return "";
}

std::string DualPipeVSize(const GenerateOptions& o) {
  if (o.microbatches < 2 * o.ranks) {
    return fmt::format("dualpipev needs at least twice as many microbatches as ranks "
                       "(2 x {} = {}; got {})",
                       o.ranks, 2 * o.ranks, o.microbatches);
  }
  return "";
}

std::string InterleavedSize(const GenerateOptions& o) {
  if (o.virtual_stages < 1) {
    return fmt::format("interleaved-1f1b needs at least one stage per rank (got {})",
                       o.virtual_stages);
  }
  if (o.microbatches % o.ranks != 0) {
    return fmt::format("interleaved-1f1b needs the microbatches to be a multiple of the ranks "
                       "(Megatron's rule; {} is not a multiple of {})",
                       o.microbatches, o.ranks);
  }
  return "";
}

// ---- activation bounds (docs/design.md, Verification: memory)

std::optional<ActivationBound> RouteBound(const Schedule& s) {  // dualpipe, dualpipev
  int longest_route = 0;
  for (const auto& route : s.routes)
    longest_route = std::max(longest_route, static_cast<int>(route.size()));
  return ActivationBound{longest_route + 1,
                         fmt::format("{}: S_route + 1 = {} + 1", s.kind, longest_route)};
}

std::optional<ActivationBound> RanksBound(const Schedule& s) {  // 1f1b, zb1p
  return ActivationBound{s.ranks, fmt::format("{}: R = {}", s.kind, s.ranks)};
}

std::optional<ActivationBound> MicrobatchesBound(const Schedule& s) {  // gpipe
  return ActivationBound{s.microbatches,
                         fmt::format("gpipe: M = {} (every forward is held until the backwards)",
                                     s.microbatches)};
}

// Megatron's warm-up of 2(R - 1) + (V - 1) R chunks plus the one in flight, at most every chunk.
std::optional<ActivationBound> InterleavedBound(const Schedule& s) {
  if (s.ranks <= 0 || s.stages % s.ranks != 0) return std::nullopt;
  const int64_t v = s.stages / s.ranks;
  const int64_t warmup_plus_one = v == 1 ? s.ranks : (v + 1) * s.ranks - 1;
  const int64_t bound = std::min<int64_t>(warmup_plus_one, v * s.microbatches);
  return ActivationBound{static_cast<int>(bound),
                         fmt::format("interleaved-1f1b: min(M V, {}) with V = {}",
                                     v == 1 ? "R" : "(V + 1) R - 1", v)};
}

bool Fits(const ScheduleKind& kind, int ranks, int microbatches) {
  GenerateOptions o;
  o.kind = kind.name;
  o.ranks = ranks;
  o.microbatches = microbatches;
  return kind.size_problem(o).empty();
}

}  // namespace

const std::vector<ScheduleKind>& ScheduleKinds() {
  static const std::vector<ScheduleKind> kinds = {
      {.name = "gpipe", .size_problem = AnySize, .generate = generators::GPipe,
       .activation_bound = MicrobatchesBound},
      {.name = "1f1b", .size_problem = AnySize, .generate = generators::OneFOneB,
       .activation_bound = RanksBound},
      {.name = "interleaved-1f1b", .size_problem = InterleavedSize,
       .generate = generators::Interleaved1F1B, .activation_bound = InterleavedBound,
       .uses_virtual_stages = true},
      {.name = "zb1p", .size_problem = AnySize, .generate = generators::ZeroBubbleH1,
       .activation_bound = RanksBound},
      {.name = "dualpipe", .size_problem = DualPipeSize, .generate = generators::DualPipe,
       .activation_bound = RouteBound, .lowered = false, .uses_overlap = true},
      {.name = "dualpipev", .size_problem = DualPipeVSize, .generate = generators::DualPipeV,
       .activation_bound = RouteBound, .lowered = false, .uses_overlap = true},
  };
  return kinds;
}

const ScheduleKind* FindScheduleKind(std::string_view name) {
  for (const ScheduleKind& kind : ScheduleKinds()) {
    if (kind.name == name) return &kind;
  }
  return nullptr;
}

const ScheduleKind& ScheduleKindNamed(std::string_view name) {
  const ScheduleKind* kind = FindScheduleKind(name);
  if (!kind) {
    throw InputError(fmt::format("unknown schedule kind '{}' (known: {})", name,
                                 fmt::join(GeneratorKinds(), ", ")));
  }
  return *kind;
}

std::vector<std::string> GeneratorKinds() {
  std::vector<std::string> names;
  for (const ScheduleKind& kind : ScheduleKinds()) names.push_back(kind.name);
  return names;
}

std::optional<ActivationBound> KindActivationBound(const Schedule& schedule) {
  const ScheduleKind* kind = FindScheduleKind(schedule.kind);
  return kind ? kind->activation_bound(schedule) : std::nullopt;
}

// A rank count is valid when some microbatch count fits it; every kind's smallest microbatch
// count is at most 2R + 2 (DualPipe's 2R).
std::vector<int> ValidRanks(const std::string& name, int max, int min_ranks) {
  const ScheduleKind& kind = ScheduleKindNamed(name);
  auto valid = [&](int r) {
    for (int m = 1; m <= 2 * r + 2; ++m) {
      if (Fits(kind, r, m)) return true;
    }
    return false;
  };
  std::vector<int> out;
  for (int r = min_ranks; r <= max; ++r) {
    if (valid(r)) out.push_back(r);
  }
  for (int r = std::max(min_ranks, max + 1); out.empty(); ++r) {
    if (valid(r)) out.push_back(r);
  }
  return out;
}

std::vector<int> ValidMicrobatches(const std::string& name, int ranks, int max) {
  const ScheduleKind& kind = ScheduleKindNamed(name);
  std::vector<int> out;
  for (int m = 1; m <= max; ++m) {
    if (Fits(kind, ranks, m)) out.push_back(m);
  }
  for (int m = std::max(1, max + 1); out.empty() && m <= max + 2 * ranks + 2; ++m) {
    if (Fits(kind, ranks, m)) out.push_back(m);
  }
  if (out.empty()) {
    throw InputError(fmt::format("{} generates no schedule with {} ranks", name, ranks));
  }
  return out;
}

}  // namespace pipeproof
