// How subcommands plug into the pipeproof command, in one style: each subcommand has a struct of
// its flags, a function that declares them on its CLI::App and a function that runs it with the
// parsed flags (AddCommand). The option sets several commands share are declared here once.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "exec/world.h"
#include "reference/stage_model.h"
#include "schedule/formats.h"
#include "schedule/generate.h"
#include "verify/verify.h"

namespace pipeproof {

struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;  // returns the exit status
};
struct Commands {
  std::vector<Command> declared;
  // Where set, the subcommand the command line names: the others get their name and description
  // (for the usage text) but not their flags. Declaring every command's flags took 0.6 ms of each
  // start, 3% of verifying a file of 100k actions.
  std::string named;
};

// The first word of a command line that runs `command` ("trace" for `trace show`).
inline std::string TopLevelName(const CLI::App& command) {
  const CLI::App* top = &command;
  while (top->get_parent() && top->get_parent()->get_parent()) top = top->get_parent();
  return top->get_name();
}

// Adds subcommand `name` of `parent`: `declare` puts its flags on it, `run` runs it once parsed.
template <typename Flags>
CLI::App* AddCommand(CLI::App& parent, Commands& commands, const std::string& name,
                     const std::string& description, void (*declare)(CLI::App*, Flags&),
                     int (*run)(const Flags&)) {
  CLI::App* app = parent.add_subcommand(name, description);
  if (!commands.named.empty() && commands.named != TopLevelName(*app)) return app;
  auto flags = std::make_shared<Flags>();
  declare(app, *flags);
  commands.declared.push_back({app, [flags, run] { return run(*flags); }});
  return app;
}

void AddScheduleCommands(CLI::App& app, Commands& commands);  // generate, show, convert
void AddVerifyCommands(CLI::App& app, Commands& commands);    // verify, simulate, repair
void AddRunCommands(CLI::App& app, Commands& commands);       // run
void AddFuzzCommands(CLI::App& app, Commands& commands);      // fuzz
void AddRenderCommands(CLI::App& app, Commands& commands);    // render
void AddUserCodeCommands(CLI::App& app, Commands& commands);  // inject, trace, diff

// ---- option sets shared by several commands

// A schedule file: FILE, --from, and the topology of a file without a header (--kind, --stages,
// -m/--microbatches, --placement, --legacy-bw). `run` takes FILE or a generated schedule.
struct ScheduleInput {
  std::string path;
  std::string from;  // pps|csv|json, default: detected
  TopologyOptions topology;
  std::string placement;
};
enum class FileArgument { kRequired, kOptional };
void AddScheduleInputOptions(CLI::App* app, ScheduleInput& input,
                             FileArgument file = FileArgument::kRequired);
Schedule LoadSchedule(const ScheduleInput& input);
// The schedule with the text and format it was read from (repair writes its result in kind).
struct ScheduleFile {
  Schedule schedule;
  std::string text;
  Format format = Format::kPps;
};
ScheduleFile LoadScheduleFile(const ScheduleInput& input);
// For a file whose structure check failed: a generated kind whose topology (--kind K) makes it
// pass, when the file has no header and no topology was given, so that its placement and routes
// were guessed. The file is read again; none for stdin.
std::optional<std::string> KindThatFits(const ScheduleInput& input);
// Where `report`'s structure check failed and a kind fits: says so on stderr (verify, run).
void HintKindThatFits(const ScheduleInput& input, const VerifyReport& report);

// The proof of the deadlock verdict (verify, run): --z3 certify|search|off (--no-z3: off),
// --z3-timeout, --z3-memory.
struct ProofFlags {
  std::string mode = "certify";
  bool no_z3 = false;
  double timeout_s = VerifyOptions{}.z3_timeout_s;
  int64_t memory_mb = VerifyOptions{}.z3_memory_mb;
  void Add(CLI::App* app);
  void Apply(VerifyOptions& options) const;
};

// The options of a generated kind beyond its size: --virtual-stages, --no-overlap, --wait-sends.
struct KindFlags {
  int virtual_stages = GenerateOptions{}.virtual_stages;
  bool no_overlap = false;
  bool wait_sends = false;
  CLI::Option* virtual_stages_option = nullptr;
  void Add(CLI::App* app);
  bool Given() const;  // any of them on the command line
  bool VirtualStagesGiven() const;
  // Sets them on `options`; InputError for one its kind does not take (the table of kinds says).
  void Apply(GenerateOptions& options) const;
};

// The communication model and costs of verify, simulate and render: --comm, --streams, --cost,
// --latency.
struct CommFlags {
  std::string comm = "nccl";
  std::string streams = "rank";
  std::string cost;
  std::optional<double> latency;
  void Add(CLI::App* app);
  CommModel Model() const { return *CommModelFromName(comm); }
  StreamLayout Streams() const;
  std::optional<Costs> CostsGiven() const;  // nullopt when neither --cost nor --latency
  void Apply(VerifyOptions& options) const;  // model, streams and costs
};

// --streams rank|pair|edge: which NCCL stream carries each SEND/RECV (verify, simulate, render,
// run, fuzz). `layout` keeps the name; StreamsFlag() reads it back.
void AddStreamsOption(CLI::App* app, std::string& layout);
StreamLayout StreamsFlag(const std::string& layout);

// The stage model of the commands that execute (run, fuzz): --hidden, --seq, --micro-batch-size,
// --dtype, --model-seed.
struct StageModelFlags {
  ModelConfig defaults;
  int hidden = defaults.shape.hidden;
  int seq = defaults.shape.seq;
  int micro_batch_size = defaults.shape.micro_batch_size;
  std::string dtype = "f64";
  uint64_t model_seed = 0;
  void Add(CLI::App* app);
  ModelConfig Config() const;  // checked (InputError)
};

// Where they execute: --device, --transport, --streams (run, fuzz).
struct WorldFlags {
  std::string device = "cpu";
  std::string transport = "threads";
  std::string streams = "rank";
  // `transport_more`: what the command adds to the transports' own help.
  void Add(CLI::App* app, const std::string& transport_more = "");
  WorldSpec Spec(const std::string& dtype) const;
};

// ---- validators: each says its rule in --help and in the refusal (exit 2)

// An integer from `lo` to `hi`, written as one (no sign for lo >= 0, no fraction, no overflow).
CLI::Validator IntegerIn(int64_t lo, int64_t hi);
// A seed: an integer from 0 to 2^64 - 1 (a minus sign or a larger number is refused, not wrapped
// or saturated).
CLI::Validator SeedValue();
// A finite number from `lo` to `hi` (nan and inf refused).
CLI::Validator NumberIn(double lo, double hi);
// A tolerance or a latency: a finite number, at least 0.
CLI::Validator NonNegativeFinite();

// Writes `text` to `path`, or to stdout when path is empty or "-". InputError if it cannot.
void WriteOutput(const std::string& path, const std::string& text);

}  // namespace pipeproof
