// generate, show, convert.

#include <fmt/format.h>

#include <iostream>

#include "cli/command.h"
#include "cli/exit_codes.h"
#include "schedule/generate.h"
#include "schedule/lower.h"

namespace pipeproof {
namespace {

std::vector<std::string> FormatNames() { return {"pps", "csv", "csv-compute", "json"}; }

void AddGenerate(CLI::App& app, Commands& commands) {
  auto options = std::make_shared<GenerateOptions>();
  auto format = std::make_shared<std::string>("pps");
  auto output = std::make_shared<std::string>();
  auto no_overlap = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("generate", "Write a generated schedule");
  cmd->add_option("KIND", options->kind, "schedule kind")
      ->required()
      ->check(CLI::IsMember(GeneratorKinds()));
  cmd->add_option("-r,--ranks", options->ranks, "pipeline ranks")->required();
  cmd->add_option("-m,--microbatches", options->microbatches, "microbatches")->required();
  cmd->add_option("--virtual-stages", options->virtual_stages,
                  "interleaved-1f1b: stages per rank")
      ->capture_default_str();
  cmd->add_flag("--no-overlap", *no_overlap,
                "dualpipe/dualpipev: the module has no overlapped forward-backward (F then B)");
  cmd->add_flag("--wait-sends", options->wait_sends,
                "the lowered kinds: a WAIT_SEND for every SEND where PyTorch's runtime puts it");
  cmd->add_option("-f,--format", *format, "pps, csv, csv-compute (no SEND/RECV/WAIT) or json")
      ->check(CLI::IsMember(FormatNames()))
      ->capture_default_str();
  cmd->add_option("-o,--output", *output, "output file (default: stdout)");
  commands.push_back({cmd, [=] {
                        options->overlap = !*no_overlap;
                        WriteOutput(*output,
                                    WriteSchedule(Generate(*options), *FormatFromName(*format)));
                        return kExitOk;
                      }});
}

void AddShow(CLI::App& app, Commands& commands) {
  auto input = std::make_shared<ScheduleInput>();
  CLI::App* cmd = app.add_subcommand("show", "Print a schedule as PyTorch's step-by-rank grid");
  AddScheduleInputOptions(cmd, *input);
  commands.push_back({cmd, [=] {
                        Schedule s = LoadSchedule(*input);
                        std::cout << DescribeTopology(s) << '\n' << FormatGrid(s);
                        return kExitOk;
                      }});
}

void AddConvert(CLI::App& app, Commands& commands) {
  auto input = std::make_shared<ScheduleInput>();
  auto to = std::make_shared<std::string>();
  auto output = std::make_shared<std::string>();
  auto lower = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("convert", "Convert a schedule between formats");
  AddScheduleInputOptions(cmd, *input);
  cmd->add_option("--to", *to, "pps, csv, csv-compute or json")
      ->required()
      ->check(CLI::IsMember(FormatNames()));
  cmd->add_option("-o,--output", *output, "output file (default: stdout)");
  cmd->add_flag("--lower", *lower,
                "insert SEND/RECV into a compute-only schedule (deadlock-free under nccl when "
                "the compute order allows)");
  commands.push_back({cmd, [=] {
                        Schedule s = LoadSchedule(*input);
                        if (*lower) {
                          LoweringResult lowered = Lower(s);
                          if (!lowered.schedule) {
                            std::cerr << "pipeproof: " << lowered.problem << '\n';
                            return kExitCheckFailed;
                          }
                          s = std::move(*lowered.schedule);
                        }
                        WriteOutput(*output, WriteSchedule(s, *FormatFromName(*to)));
                        return kExitOk;
                      }});
}

}  // namespace

void AddScheduleCommands(CLI::App& app, Commands& commands) {
  AddGenerate(app, commands);
  AddShow(app, commands);
  AddConvert(app, commands);
}

}  // namespace pipeproof
