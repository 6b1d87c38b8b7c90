// Schedule files: pipeproof's text format (.pps), PyTorch's CSV and JSON. Every reader refuses
// bad input with InputError located as "file:line:col"; every writer's output reads back to the
// same schedule (a CSV, which has no header, given the same topology options).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "schedule/schedule.h"

namespace pipeproof {

enum class Format {
  kPps,         // pipeproof text: header lines, then "rank r: actions..."
  kCsv,         // PyTorch CSV with SEND/RECV (and pipeproof's WAIT)
  kCsvCompute,  // PyTorch CSV, compute actions only (writing drops SEND/RECV/WAIT/WAIT_SEND)
  kJson,
};

std::optional<Format> FormatFromName(std::string_view name);  // pps, csv, csv-compute, json
std::string_view FormatName(Format format);

// PyTorch's CSV (and a .pps file of bare "rank r:" lines) holds only actions; the rest comes
// from these or is inferred: ranks = rows, stages = 1 + the largest stage named, microbatches =
// 1 + the largest microbatch, each stage on the row where its actions are (loop placement for a
// stage with none), own parameters, every microbatch through every stage.
struct TopologyOptions {
  std::string kind;                    // a generator kind: take its placement, params, routes
  std::optional<int> stages;
  std::optional<int> microbatches;
  std::optional<std::string> placement;  // "loop", "v" or a comma/space list of ranks
  bool legacy_bw = false;  // PyTorch's old spellings: "BW" = B; a B with a later W = I
};

struct ReadOptions {
  std::optional<Format> format;  // default: from the file name, else from its content
  TopologyOptions topology;  // for files without a header
};

// A schedule file's text ("-": stdin), within the readers' size limit; InputError otherwise.
std::string ReadScheduleText(const std::string& path);
// Reads a schedule file. `name` is used in error locations (the path, or "<stdin>").
Schedule ReadScheduleFile(const std::string& path, const ReadOptions& options = {});
std::string ScheduleName(const std::string& path);  // how errors name the file: "<stdin>" for "-"
Schedule ParseSchedule(std::string_view text, std::string_view name, const ReadOptions& options);
// By the name's extension, else by the content (past a byte order mark).
Format DetectFormat(std::string_view name, std::string_view text);
// What a file's name says it holds (.pps, .csv, .json); nullopt for any other name.
std::optional<Format> FormatOfExtension(std::string_view name);

std::string WriteSchedule(const Schedule& schedule, Format format);
// `schedule` written as an edited copy of `original`, a file of `format` that holds the same
// ranks and computes (only communication differs): a .pps keeps every line but its rank lines,
// which get the new actions and keep their trailing comments (header order and comments
// survive); a CSV keeps each compute's cell as spelled (PyTorch's legacy BW, say), so that it
// reads back with the same flags; JSON is written anew. For a tool that changes communication
// and must not lose what the user wrote around it.
std::string RewriteSchedule(std::string_view original, Format format, const Schedule& schedule);

// The per-format readers and writers.
Schedule ParsePps(std::string_view text, std::string_view name,
                  const TopologyOptions& topology = {});
std::string WritePps(const Schedule& schedule);
// The words that start a .pps line (header keys and "rank"): how a file of no known extension is
// told from a CSV.
bool IsPpsLineKey(std::string_view word);
Schedule ParseCsv(std::string_view text, std::string_view name,
                  const TopologyOptions& topology = {});
std::string WriteCsv(const Schedule& schedule, bool compute_only);
// RewriteSchedule per format: a .pps's lines but its rank lines kept; a CSV's compute cells as
// `original` spells them, the rest anew.
std::string RewritePps(std::string_view original, const Schedule& schedule);
std::string RewriteCsv(std::string_view original, const Schedule& schedule);
Schedule ParseJson(std::string_view text, std::string_view name);
std::string WriteJson(const Schedule& schedule);

// The step-by-rank grid PyTorch prints for a pipeline order ("Step 00: 0F0 ...").
std::string FormatGrid(const Schedule& schedule);
// A one-paragraph description: kind, sizes, placement, shared parameter blocks, routes.
std::string DescribeTopology(const Schedule& schedule);

// Parses "loop", "v" or an explicit list ("0,1,1,0" or "0 1 1 0") of `stages` ranks.
std::vector<int> ParsePlacement(std::string_view text, int ranks, int stages);

}  // namespace pipeproof
