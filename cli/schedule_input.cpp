#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>

#include "cli/command.h"
#include "schedule/generate.h"

namespace pipeproof {

void AddScheduleInputOptions(CLI::App* app, ScheduleInput& in) {
  app->add_option("FILE", in.path, "schedule file (.pps, .csv, .json; - for stdin)")->required();
  app->add_option("--from", in.from, "input format, default: from the file name or content")
      ->check(CLI::IsMember({"pps", "csv", "json"}));
  app->add_option("--kind", in.topology.kind,
                  "files without a header: take placement, params and routes from this "
                  "generator's schedule (e.g. dualpipe)")
      ->check(CLI::IsMember(GeneratorKinds()));
  app->add_option("--stages", in.topology.stages, "files without a header: number of stages");
  app->add_option("--microbatches", in.topology.microbatches,
                  "files without a header: number of microbatches");
  app->add_option("--placement", in.placement,
                  "files without a header: loop, v or a comma list with each stage's rank");
  app->add_flag("--legacy-bw", in.topology.legacy_bw,
                "read PyTorch's legacy spellings: BW = full backward, a B with a later W = I");
}

Schedule LoadSchedule(const ScheduleInput& in) {
  ReadOptions options;
  if (!in.from.empty()) options.format = FormatFromName(in.from);
  options.topology = in.topology;
  if (!in.placement.empty()) options.topology.placement = in.placement;
  return ReadScheduleFile(in.path, options);
}

void AddStreamsOption(CLI::App* app, std::string& layout) {
  app->add_option("--streams", layout,
                  "NCCL stream layout: rank (one stream per rank: PyTorch's default nccl backend, "
                  "DualPipe's batch_isend_irecv), pair (one per rank pair: nccl-lazy, set up at "
                  "the first op between two ranks) or edge (one per directed edge: "
                  "pipeline_per_edge_p2p)")
      ->check(CLI::IsMember({"rank", "pair", "edge"}))
      ->capture_default_str();
}

StreamLayout StreamsFlag(const std::string& layout) {
  return StreamLayoutFromName(layout).value_or(StreamLayout::kRank);
}

void WriteOutput(const std::string& path, const std::string& text) {
  if (path.empty() || path == "-") {
    std::cout << text;
    std::cout.flush();
    return;
  }
  std::ofstream out(path, std::ios::binary);
  if (!out) throw InputError::At(path, 0, 0, fmt::format("cannot write: {}", std::strerror(errno)));
  out << text;
  if (!out.flush()) throw InputError::At(path, 0, 0, "cannot write the whole file");
}

}  // namespace pipeproof
