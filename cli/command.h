// How subcommands plug into the pipeproof command. Each *_commands.cpp adds its subcommands
// with their options and a function that runs one; main() runs the one that was chosen.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "schedule/formats.h"

namespace pipeproof {

struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;  // returns the exit status
};
using Commands = std::vector<Command>;

void AddScheduleCommands(CLI::App& app, Commands& commands);  // generate, show, convert
void AddVerifyCommands(CLI::App& app, Commands& commands);    // verify, simulate
void AddRunCommands(CLI::App& app, Commands& commands);       // run
void AddFuzzCommands(CLI::App& app, Commands& commands);      // fuzz
void AddRenderCommands(CLI::App& app, Commands& commands);    // render
void AddUserCodeCommands(CLI::App& app, Commands& commands);  // inject, trace, diff

// Options every command that reads a schedule file shares.
struct ScheduleInput {
  std::string path;
  std::string from;  // pps|csv|json, default: detected
  TopologyOptions topology;
  std::string placement;
};
void AddScheduleInputOptions(CLI::App* app, ScheduleInput& input);
Schedule LoadSchedule(const ScheduleInput& input);

// --streams rank|pair|edge: which NCCL stream carries each SEND/RECV (verify, simulate, render,
// run, fuzz). `layout` keeps the name; StreamsFlag() reads it back.
void AddStreamsOption(CLI::App* app, std::string& layout);
StreamLayout StreamsFlag(const std::string& layout);

// Writes `text` to `path`, or to stdout when path is empty or "-". InputError if it cannot.
void WriteOutput(const std::string& path, const std::string& text);

}  // namespace pipeproof
