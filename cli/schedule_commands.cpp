// generate, show, convert.

#include <fmt/format.h>

#include <iostream>

#include "cli/command.h"
#include "cli/exit_codes.h"
#include "schedule/formats.h"
#include "schedule/generate.h"
#include "schedule/lower.h"

namespace pipeproof {
namespace {

std::vector<std::string> FormatNames() { return {"pps", "csv", "csv-compute", "json"}; }

// The format to write: the one asked for, else the output file's extension, else pps. The readers
// take an extension at its word, so a file whose extension names another format would not read
// back: refused.
Format OutputFormat(const std::string& asked, const char* flag, const std::string& output) {
  const std::optional<Format> by_name = FormatOfExtension(output);
  if (asked.empty()) return by_name.value_or(Format::kPps);
  const Format format = *FormatFromName(asked);
  const Format file_kind = format == Format::kCsvCompute ? Format::kCsv : format;
  if (by_name && *by_name != file_kind) {
    throw InputError(fmt::format("{} {} into {}: the readers would take it as {} by its extension; "
                                 "name the file .{} or leave out {}",
                                 flag, asked, Quote(output), FormatName(*by_name), FormatName(file_kind), flag));
  }
  return format;
}

struct GenerateFlags {
  GenerateOptions options;
  KindFlags kind;
  std::string format;
  std::string output;
};

void DeclareGenerate(CLI::App* cmd, GenerateFlags& f) {
  cmd->add_option("KIND", f.options.kind, "schedule kind")
      ->required()
      ->check(CLI::IsMember(GeneratorKinds()));
  cmd->add_option("-r,--ranks", f.options.ranks, "pipeline ranks")
      ->required()
      ->check(IntegerIn(1, kMaxRanks));
  cmd->add_option("-m,--microbatches", f.options.microbatches, "microbatches")
      ->required()
      ->check(IntegerIn(1, kMaxMicrobatches));
  f.kind.Add(cmd);
  cmd->add_option("-f,--format", f.format,
                  "pps, csv, csv-compute (no SEND/RECV/WAIT) or json (default: from the -o file's "
                  "extension, else pps)")
      ->check(CLI::IsMember(FormatNames()));
  cmd->add_option("-o,--output", f.output, "output file (default: stdout)");
}

int RunGenerate(const GenerateFlags& f) {
  GenerateOptions options = f.options;
  f.kind.Apply(options);
  const Format format = OutputFormat(f.format, "-f", f.output);
  WriteOutput(f.output, WriteSchedule(Generate(options), format));
  return kExitOk;
}

struct ShowFlags {
  ScheduleInput input;
};

void DeclareShow(CLI::App* cmd, ShowFlags& f) { AddScheduleInputOptions(cmd, f.input); }

int RunShow(const ShowFlags& f) {
  const Schedule s = LoadSchedule(f.input);
  std::cout << DescribeTopology(s) << '\n' << FormatGrid(s);
  return kExitOk;
}

struct ConvertFlags {
  ScheduleInput input;
  std::string to;
  std::string output;
  bool lower = false;
};

void DeclareConvert(CLI::App* cmd, ConvertFlags& f) {
  AddScheduleInputOptions(cmd, f.input);
  cmd->add_option("--to", f.to, "pps, csv, csv-compute or json (default: from the -o file's extension)")
      ->check(CLI::IsMember(FormatNames()));
  cmd->add_option("-o,--output", f.output, "output file (default: stdout)");
  cmd->add_flag("--lower", f.lower,
                "insert SEND/RECV into a compute-only schedule (deadlock-free under nccl when "
                "the compute order allows)");
}

int RunConvert(const ConvertFlags& f) {
  if (f.to.empty() && f.output.empty()) throw InputError("give --to FORMAT, or -o FILE with a .pps, .csv or .json name");
  const Format format = OutputFormat(f.to, "--to", f.output);
  Schedule s = LoadSchedule(f.input);
  if (f.lower) {
    LoweringResult lowered = Lower(s);
    if (!lowered.schedule) {
      std::cerr << "pipeproof: " << lowered.problem << '\n';
      return kExitCheckFailed;
    }
    s = std::move(*lowered.schedule);
  }
  WriteOutput(f.output, WriteSchedule(s, format));
  return kExitOk;
}

}  // namespace

void AddScheduleCommands(CLI::App& app, Commands& commands) {
  AddCommand<GenerateFlags>(app, commands, "generate", "Write a generated schedule",
                            DeclareGenerate, RunGenerate);
  AddCommand<ShowFlags>(app, commands, "show", "Print a schedule as PyTorch's step-by-rank grid",
                        DeclareShow, RunShow);
  AddCommand<ConvertFlags>(app, commands, "convert", "Convert a schedule between formats",
                           DeclareConvert, RunConvert);
}

}  // namespace pipeproof
