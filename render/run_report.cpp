#include "render/run_report.h"

#include <fmt/format.h>

#include <cstring>

namespace pipeproof {
namespace {

// Where CompareStep (reference/reference.h) puts each tensor in its report: the losses as one
// column, each microbatch's output, then each block's two gradients.
struct StepTensorIndex {
  int microbatches = 0;
  int blocks = 0;
  int Losses() const { return 0; }
  int Output(int m) const { return 1 + m; }
  int Linear1Grad(int block) const { return 1 + microbatches + 2 * block; }
  int Linear2Grad(int block) const { return Linear1Grad(block) + 1; }
  int Count() const { return 1 + microbatches + 2 * blocks; }
};

StepTensorIndex IndexOf(const Schedule& schedule) {
  return {schedule.microbatches, schedule.ParamBlocks()};
}

// The per-microbatch scalar losses as one column tensor, as CompareStep compares them.
HostTensor LossColumn(const std::vector<HostTensor>& losses) {
  HostTensor out;
  if (losses.empty()) return out;
  out.dtype = losses[0].dtype;
  out.rows = static_cast<int>(losses.size());
  out.cols = 1;
  for (const HostTensor& l : losses)
    out.bytes.insert(out.bytes.end(), l.bytes.begin(), l.bytes.end());
  return out;
}

// The payload of message `id` in the run, and the pass it belongs to.
std::optional<std::pair<PassKind, Payload>> MessagePayload(const RunPlan& plan,
                                                           const MessageId& id) {
  if (id.from < 0 || id.from >= plan.ranks) return std::nullopt;
  for (const PassPlan& pass : plan.passes) {
    const PassBase& base = pass.base[id.from];
    for (const PlannedComm& c : pass.ranks[id.from].comms) {
      if (c.send && c.peer == id.to && c.channel_seq + base.sent[id.to] == id.seq)
        return std::pair{pass.kind, c.payload};
    }
  }
  return std::nullopt;
}

}  // namespace

std::vector<CorruptionSite> LocateCorruption(const Schedule& schedule, const FaultPlan& faults) {
  std::vector<CorruptionSite> sites;
  if (!faults.corrupt || faults.corrupt->kind == CorruptKind::kDrop) return sites;
  const RunPlan plan = PlanRun(schedule);
  const StepTensorIndex index = IndexOf(schedule);
  std::vector<MessageId> ids = {faults.corrupt->message};
  if (faults.corrupt->kind == CorruptKind::kSwap)
    ids.push_back({ids[0].from, ids[0].to, ids[0].seq + 1});
  for (const MessageId& id : ids) {
    const auto found = MessagePayload(plan, id);
    if (!found) continue;
    const auto& [kind, payload] = *found;
    CorruptionSite site;
    site.pass = std::string(PassName(kind));
    site.payload = payload;
    // Both kinds of payload are used by the stage they are addressed to: an activation is `to`'s
    // input, a gradient is `to`'s output gradient.
    site.stage = payload.to;
    site.block = schedule.params[site.stage];
    if (kind == PassKind::kTrain) {
      site.tensors = {index.Linear1Grad(site.block), index.Linear2Grad(site.block)};
    } else {
      site.tensors = {index.Output(payload.microbatch)};
    }
    site.description = fmt::format(
        "message #{} from rank {} to rank {} ({} pass) carries {}: it enters stage {} on rank {}, "
        "which holds "
        "parameter block {}{}",
        id.seq, id.from, id.to, site.pass, ToString(payload), site.stage,
        schedule.placement[site.stage], site.block,
        kind == PassKind::kTrain
            ? "; every tensor computed from it downstream differs too"
            : "; only the forward-only pass's output of that microbatch is affected");
    sites.push_back(std::move(site));
  }
  return sites;
}

std::vector<ErrorHeatmap> StepHeatmaps(const Schedule& schedule, const MismatchReport& report,
                                       const StepResults& run, const StepResults& reference) {
  const StepTensorIndex index = IndexOf(schedule);
  std::vector<ErrorHeatmap> maps;
  if (static_cast<int>(report.tensors.size()) != index.Count() ||
      static_cast<int>(run.outputs.size()) != index.microbatches ||
      static_cast<int>(reference.outputs.size()) != index.microbatches ||
      static_cast<int>(run.grads.size()) != index.blocks ||
      static_cast<int>(reference.grads.size()) != index.blocks) {
    return maps;
  }
  auto add = [&](int k, const HostTensor& a, const HostTensor& b) {
    if (!report.tensors[k].ok())
      maps.push_back(ComputeHeatmap(report.tensors[k].name, a, b, report.policy));
  };
  add(index.Losses(), LossColumn(run.losses), LossColumn(reference.losses));
  for (int m = 0; m < index.microbatches; ++m)
    add(index.Output(m), run.outputs[m], reference.outputs[m]);
  for (int b = 0; b < index.blocks; ++b) {
    add(index.Linear1Grad(b), run.grads[b].w1, reference.grads[b].w1);
    add(index.Linear2Grad(b), run.grads[b].w2, reference.grads[b].w2);
  }
  return maps;
}

std::string RunHtmlReport(const RunOutcome& outcome, const Schedule& schedule,
                          const FaultPlan& faults) {
  HtmlReportContext context;
  context.title = "pipeproof run: mismatch report";
  context.headline = fmt::format("{} (exit {})", outcome.headline, outcome.ExitCode());
  context.facts = {
      {"schedule", outcome.schedule_name},
      {"transport", outcome.transport},
      {"model", Describe(outcome.model)},
      {"faults", outcome.faults_summary},
      {"executed in", fmt::format("{:.3f} s (reference {:.3f} s)", outcome.execution.seconds,
                                  outcome.reference_seconds)}};
  if (!outcome.negative_control.empty())
    context.facts.push_back({"negative control", outcome.negative_control});
  MismatchReport report;
  std::vector<ErrorHeatmap> maps;
  if (outcome.comparison) {
    report = *outcome.comparison;
    if (outcome.run_results && outcome.reference_results) {
      maps = StepHeatmaps(schedule, report, *outcome.run_results, *outcome.reference_results);
    }
    for (const CorruptionSite& site : LocateCorruption(schedule, faults)) {
      for (int k : site.tensors) {
        if (k < static_cast<int>(report.tensors.size()))
          context.suspects.push_back(report.tensors[k].name);
      }
      context.suspect_note +=
          (context.suspect_note.empty() ? "The negative control's corrupted " : "; ") +
          site.description;
    }
    if (!context.suspect_note.empty()) {
      context.suspect_note += ". Its tensors are marked below.";
    }
  }
  if (!outcome.execution.snapshots.empty()) {
    context.details = FormatDump(outcome.execution.headline, outcome.execution.snapshots);
  }
  return MismatchHtml(report, maps, context);
}

}  // namespace pipeproof
