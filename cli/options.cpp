// The option sets several commands share (cli/command.h).

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iostream>

#include "cli/command.h"
#include "schedule/generate.h"
#include "schedule/kinds.h"
#include "verify/verify.h"

namespace pipeproof {

void AddScheduleInputOptions(CLI::App* app, ScheduleInput& in, FileArgument file) {
  CLI::Option* path = app->add_option(
      "FILE", in.path,
      file == FileArgument::kRequired
          ? "schedule file (.pps, .csv, .json; - for stdin)"
          : "schedule file (.pps, .csv, .json; - for stdin); or generate one with --kind");
  if (file == FileArgument::kRequired) path->required();
  app->add_option("--from", in.from, "input format, default: from the file name or content")
      ->check(CLI::IsMember({"pps", "csv", "json"}));
  app->add_option("--kind", in.topology.kind,
                  file == FileArgument::kRequired
                      ? "files without a header: take placement, params and routes from this "
                        "generator's schedule (e.g. dualpipe)"
                      : "generate this kind of schedule (with --ranks and --microbatches); with "
                        "FILE: take a headerless file's topology from it")
      ->check(CLI::IsMember(GeneratorKinds()));
  app->add_option("--stages", in.topology.stages, "files without a header: number of stages")
      ->check(IntegerIn(1, kMaxStages));
  app->add_option("-m,--microbatches", in.topology.microbatches,
                  file == FileArgument::kRequired
                      ? "files without a header: number of microbatches"
                      : "microbatches (generated, or of a headerless file)")
      ->check(IntegerIn(1, kMaxMicrobatches));
  app->add_option("--placement", in.placement,
                  "files without a header: loop, v or a comma list with each stage's rank");
  app->add_flag("--legacy-bw", in.topology.legacy_bw,
                "read PyTorch's legacy spellings: BW = full backward, a B with a later W = I");
}

namespace {
ReadOptions ReadOptionsOf(const ScheduleInput& in) {
  ReadOptions options;
  if (!in.from.empty()) options.format = FormatFromName(in.from);
  options.topology = in.topology;
  if (!in.placement.empty()) options.topology.placement = in.placement;
  return options;
}
}  // namespace

Schedule LoadSchedule(const ScheduleInput& in) { return ReadScheduleFile(in.path, ReadOptionsOf(in)); }

ScheduleFile LoadScheduleFile(const ScheduleInput& in) {
  ScheduleFile file;
  file.text = ReadScheduleText(in.path);
  const std::string name = ScheduleName(in.path);
  const ReadOptions options = ReadOptionsOf(in);
  file.format = options.format.value_or(DetectFormat(name, file.text));
  file.schedule = ParseSchedule(file.text, name, options);
  return file;
}

void HintKindThatFits(const ScheduleInput& input, const VerifyReport& report) {
  const CheckResult* structure = report.Find("structure");
  if (!structure || structure->ok()) return;
  if (const std::optional<std::string> kind = KindThatFits(input)) {
    std::cerr << fmt::format(
        "pipeproof: hint: the file has no header, so its placement and routes were guessed (each "
        "stage where its actions are, every microbatch through every stage); read as --kind {} "
        "its structure checks out\n",
        *kind);
  }
}

void ProofFlags::Add(CLI::App* app) {
  app->add_option("--z3", mode,
                  "the proof of the deadlock verdict: certify (the simulation's verdict: a complete "
                  "execution by checking its timing against every constraint of an independent "
                  "encoding, a deadlock by Z3 on its cycle's constraints), search (Z3 decides on all "
                  "constraints) or off")
      ->check(CLI::IsMember({"certify", "search", "off"}))
      ->capture_default_str();
  app->add_flag("--no-z3", no_z3, "no proof of the deadlock verdict (--z3 off)");
  app->add_option("--z3-timeout", timeout_s,
                  "seconds Z3 may take; past them the proof is skipped, saying so, and the verdict "
                  "stands on the simulation")
      ->check(NumberIn(0.001, 86400))
      ->capture_default_str();
  app->add_option("--z3-memory", memory_mb, "megabytes Z3 may use; past them, as past the timeout")
      ->check(IntegerIn(16, 1 << 20))
      ->capture_default_str();
}

void ProofFlags::Apply(VerifyOptions& options) const {
  options.use_z3 = !no_z3 && mode != "off";
  options.z3_search = mode == "search";
  options.z3_timeout_s = timeout_s;
  options.z3_memory_mb = memory_mb;
}

std::optional<std::string> KindThatFits(const ScheduleInput& in) {
  const TopologyOptions& t = in.topology;
  if (in.path.empty() || in.path == "-" || !t.kind.empty() || t.stages || t.microbatches || t.placement ||
      !in.placement.empty()) {
    return std::nullopt;
  }
  std::string text;
  try {
    text = ReadScheduleText(in.path);
  } catch (const InputError&) {
    return std::nullopt;
  }
  VerifyOptions no_proof;  // the later checks run only where the structure holds: once at most
  no_proof.use_z3 = false;
  ReadOptions options = ReadOptionsOf(in);
  for (const std::string& kind : GeneratorKinds()) {
    options.topology.kind = kind;
    try {
      if (Verify(ParseSchedule(text, in.path, options), no_proof).Find("structure")->ok()) return kind;
    } catch (const InputError&) {
    }
  }
  return std::nullopt;
}

void KindFlags::Add(CLI::App* app) {
  virtual_stages_option =
      app->add_option("--virtual-stages", virtual_stages, "interleaved-1f1b: stages per rank")
          ->check(IntegerIn(1, kMaxStages))
          ->capture_default_str();
  app->add_flag("--no-overlap", no_overlap,
                "dualpipe/dualpipev: the module has no overlapped forward-backward (F then B)");
  app->add_flag("--wait-sends", wait_sends,
                "the lowered kinds: a WAIT_SEND for every SEND where PyTorch's runtime puts it");
}

bool KindFlags::VirtualStagesGiven() const {
  return virtual_stages_option && virtual_stages_option->count() > 0;
}

bool KindFlags::Given() const {
  return no_overlap || wait_sends || VirtualStagesGiven();
}

namespace {

// "--no-overlap applies to dualpipe and dualpipev, not to 1f1b".
[[noreturn]] void RefuseKindFlag(const std::string& flag, const std::string& kind,
                                 bool (*takes)(const ScheduleKind&)) {
  std::vector<std::string> kinds;
  for (const ScheduleKind& k : ScheduleKinds()) {
    if (takes(k)) kinds.push_back(k.name);
  }
  const std::string last = kinds.back();
  kinds.pop_back();
  const std::string list =
      kinds.empty() ? last : fmt::format("{} and {}", fmt::join(kinds, ", "), last);
  throw InputError(fmt::format("{} applies to {}, not to {}", flag, list, kind));
}

}  // namespace

void KindFlags::Apply(GenerateOptions& options) const {
  if (const ScheduleKind* kind = FindScheduleKind(options.kind)) {
    if (no_overlap && !kind->uses_overlap) {
      RefuseKindFlag("--no-overlap", kind->name, [](const ScheduleKind& k) { return k.uses_overlap; });
    }
    if (VirtualStagesGiven() && !kind->uses_virtual_stages) {
      RefuseKindFlag("--virtual-stages", kind->name,
                     [](const ScheduleKind& k) { return k.uses_virtual_stages; });
    }
    if (wait_sends && !kind->lowered) {
      RefuseKindFlag("--wait-sends", kind->name, [](const ScheduleKind& k) { return k.lowered; });
    }
  }
  options.virtual_stages = virtual_stages;
  options.overlap = !no_overlap;
  options.wait_sends = wait_sends;
}

void CommFlags::Add(CLI::App* app) {
  app->add_option("--comm", comm,
                  "communication model: nccl (rendezvous, in-order streams, see --streams) or "
                  "eager (sends complete when posted)")
      ->check(CLI::IsMember({"nccl", "eager"}))
      ->capture_default_str();
  AddStreamsOption(app, streams);
  app->add_option("--cost", cost,
                  "per-action costs, e.g. F=1,B=2,I=1,W=1,FB=3 (defaults: those values)");
  app->add_option("--latency", latency, "per-message latency (default 0)")
      ->check(NonNegativeFinite());
}

StreamLayout CommFlags::Streams() const { return StreamsFlag(streams); }

void CommFlags::Apply(VerifyOptions& options) const {
  options.model = Model();
  options.streams = Streams();
  options.costs = CostsGiven();
}

std::optional<Costs> CommFlags::CostsGiven() const {
  if (cost.empty() && !latency) return std::nullopt;
  Costs c = ParseCosts(cost);
  if (latency) c.latency = *latency;
  return c;
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

void StageModelFlags::Add(CLI::App* app) {
  // Each at most a tensor's most elements; CheckModelConfig checks their products.
  app->add_option("--hidden", hidden, "hidden size H of the stage model")
      ->check(IntegerIn(1, kMaxModelDimension))
      ->capture_default_str();
  app->add_option("--seq", seq, "sequence length L")
      ->check(IntegerIn(1, kMaxModelDimension))
      ->capture_default_str();
  app->add_option("--micro-batch-size", micro_batch_size, "micro-batch size b")
      ->check(IntegerIn(1, kMaxModelDimension))
      ->capture_default_str();
  app->add_option("--dtype", dtype, "element type (cpu: f64, f32; cuda: f32, bf16)")
      ->check(CLI::IsMember({"f64", "f32", "bf16"}))
      ->capture_default_str();
  app->add_option("--model-seed", model_seed, "seed of the weights and the data")
      ->check(SeedValue())
      ->capture_default_str();
}

ModelConfig StageModelFlags::Config() const {
  ModelConfig model;
  model.shape = {hidden, seq, micro_batch_size};
  model.dtype = *DTypeFromName(dtype);
  model.seed = model_seed;
  CheckModelConfig(model);
  return model;
}

void WorldFlags::Add(CLI::App* app, const std::string& transport_more) {
  app->add_option("--device", device,
                  "where every rank and the sequential reference compute: cpu, or cuda (one GPU; "
                  "the ranks are threads whose messages are device copies: the streams transport)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  std::vector<std::string> help;
  for (const TransportKind& t : Transports()) help.push_back(t.help);
  app->add_option("--transport", transport, fmt::format("{}{}", fmt::join(help, "; "), transport_more))
      ->check(CLI::IsMember(TransportNames()))
      ->capture_default_str();
  AddStreamsOption(app, streams);
}

WorldSpec WorldFlags::Spec(const std::string& dtype) const {
  return {.device = device, .dtype = dtype, .transport = transport, .streams = StreamsFlag(streams)};
}

CLI::Validator IntegerIn(int64_t lo, int64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& text) -> std::string {
        int64_t v = 0;
        const char* end = text.data() + text.size();
        const auto [at, error] = std::from_chars(text.data(), end, v);
        if (error == std::errc() && at == end && v >= lo && v <= hi) return "";
        return fmt::format("must be an integer from {} to {} (got '{}')", lo, hi, text);
      },
      fmt::format("in {}..{}", lo, hi));
}

CLI::Validator SeedValue() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        uint64_t v = 0;
        const char* end = text.data() + text.size();
        const auto [at, error] = std::from_chars(text.data(), end, v);
        if (error == std::errc() && at == end) return "";
        return fmt::format("must be an integer from 0 to 18446744073709551615 (got '{}')", text);
      },
      "in 0..2^64-1");
}

namespace {

// `text` as a finite number, all of it; nullopt for anything else (nan, inf, "1x").
std::optional<double> FiniteNumber(const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

}  // namespace

CLI::Validator NumberIn(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& text) -> std::string {
        const std::optional<double> v = FiniteNumber(text);
        if (v && *v >= lo && *v <= hi) return "";
        return fmt::format("must be a number from {:g} to {:g} (got '{}')", lo, hi, text);
      },
      fmt::format("in {:g}..{:g}", lo, hi));
}

CLI::Validator NonNegativeFinite() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        const std::optional<double> v = FiniteNumber(text);
        if (v && *v >= 0) return "";
        return fmt::format("must be a finite number, at least 0 (got '{}')", text);
      },
      ">= 0");
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
