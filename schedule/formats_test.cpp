#include "schedule/formats.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "schedule/generate.h"
#include "schedule/lower.h"
#include "schedule/test_util.h"

namespace pipeproof {
namespace {

using testing::ReadTestdata;

std::vector<Schedule> SampleSchedules() {
  std::vector<Schedule> out;
  for (const std::string& kind : GeneratorKinds()) {
    for (bool comm : {true, false}) {
      GenerateOptions o{kind, 4, 8};
      o.with_comm = comm;
      out.push_back(Generate(o));
    }
  }
  out.push_back(GenerateDualPipe(2, 4, false));
  return out;
}

TEST(RoundTripTest, PpsAndJsonReadBackToTheSameSchedule) {
  for (const Schedule& s : SampleSchedules()) {
    EXPECT_EQ(ParsePps(WritePps(s), "x.pps"), s) << s.kind << "\n" << WritePps(s);
    EXPECT_EQ(ParseJson(WriteJson(s), "x.json"), s) << s.kind;
  }
}

// A forward-only pass says so in .pps and JSON; PyTorch's CSV cannot, so it is not written as one.
TEST(RoundTripTest, AForwardOnlyPassKeepsItsMark) {
  Schedule s = ParsePps("pass forward\nranks 2\nmicrobatches 1\nrank 0: 0F0 0SEND_F0 WAIT\nrank 1: 1RECV_F0 WAIT 1F0\n",
                        "f.pps");
  EXPECT_TRUE(s.forward_only);
  EXPECT_EQ(ParsePps(WritePps(s), "x.pps"), s) << WritePps(s);
  EXPECT_EQ(ParseJson(WriteJson(s), "x.json"), s) << WriteJson(s);
  EXPECT_NE(WriteJson(s).find("\"pass\": \"forward\""), std::string::npos);
  EXPECT_THROW(WriteCsv(s, false), InputError);
  EXPECT_FALSE(ParsePps("pass train\nranks 1\nmicrobatches 1\nrank 0: 0F0 0B0\n", "t.pps").forward_only);
}

TEST(RoundTripTest, CsvReadsBackGivenTheSameTopology) {
  for (const Schedule& s : SampleSchedules()) {
    TopologyOptions topology;
    topology.kind = s.kind;
    Schedule back = ParseCsv(WriteCsv(s, false), "x.csv", topology);
    EXPECT_EQ(back, s) << s.kind;
  }
  // Loop-placed kinds need no topology at all: it is inferred.
  GenerateOptions o{"1f1b", 3, 6};
  Schedule s = Generate(o);
  Schedule back = ParseCsv(WriteCsv(s, false), "x.csv", {});
  back.kind = s.kind;
  EXPECT_EQ(back, s);
}

TEST(RoundTripTest, CsvComputeDropsCommunication) {
  Schedule s = Generate({"dualpipe", 4, 8});
  TopologyOptions topology;
  topology.kind = "dualpipe";
  Schedule back = ParseCsv(WriteCsv(s, true), "x.csv", topology);
  EXPECT_EQ(back, ComputeOnly(s));
}

// What PyTorch 2.15 writes and runs (pipeline_order_with_comms, dumped by its own _dump_csv):
// every action reads with no flag, the V placement of ZBV and DualPipeV is inferred, and every
// format writes it back to the same schedule (CSV to the same cells).
TEST(PyTorchFilesTest, RuntimeOrdersReadAndWriteBack) {
  for (const char* file : {"interleaved1f1b_2rank_4stage_4mb_runtime.csv",
                           "interleavedzb_4rank_8stage_8mb_runtime.csv",
                           "zbv_4rank_8stage_8mb_runtime.csv",
                           "dualpipev_4rank_8stage_8mb_runtime.csv",
                           "gpipe_2rank_2mb_compute.csv"}) {
    const std::string path = testing::TestdataPath(std::string("peers/pytorch/torch-2.15/") + file);
    const Schedule s = ReadScheduleFile(path);
    int waits = 0, data_parallel = 0;
    for (const auto& program : s.program) {
      for (const Action& a : program) {
        waits += IsWaitSend(a.op);
        data_parallel += IsDataParallel(a.op);
      }
    }
    EXPECT_GT(data_parallel, 0) << file;
    EXPECT_EQ(waits > 0, std::string(file).find("runtime") != std::string::npos) << file;
    EXPECT_EQ(ParsePps(WritePps(s), "x.pps"), s) << file;
    EXPECT_EQ(ParseJson(WriteJson(s), "x.json"), s) << file;
    Schedule back = ParseCsv(WriteCsv(s, false), "x.csv", {});
    EXPECT_EQ(back, s) << file;
    // PyTorch ends its rows with \r\n; the cells are the same.
    std::string original = ReadTestdata(std::string("peers/pytorch/torch-2.15/") + file);
    std::erase(original, '\r');
    EXPECT_EQ(WriteCsv(s, false), original) << file;
  }
  const Schedule zbv = ReadScheduleFile(
      testing::TestdataPath("peers/pytorch/torch-2.15/zbv_4rank_8stage_8mb_runtime.csv"));
  EXPECT_EQ(zbv.placement, VPlacement(4, 8));
}

TEST(PyTorchFilesTest, DualPipeVFixtureReadsWithVPlacementInferred) {
  Schedule s = ReadScheduleFile(testing::TestdataPath("peers/pytorch/dualpipev_4rank_10mb.csv"));
  EXPECT_EQ(s.ranks, 4);
  EXPECT_EQ(s.stages, 8);
  EXPECT_EQ(s.microbatches, 10);
  EXPECT_EQ(s.placement, VPlacement(4, 8));
  EXPECT_FALSE(HasComm(s));
}

TEST(PyTorchFilesTest, LegacyZeroBubbleFilesNeedTheSwitch) {
  const std::string compute = testing::TestdataPath("peers/pytorch/zb1p_2rank_2stagep_compute.csv");
  try {
    ReadScheduleFile(compute);
    FAIL() << "legacy B/W spelling accepted without --legacy-bw";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("zb1p_2rank_2stagep_compute.csv:1:"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("--legacy-bw"), std::string::npos) << e.what();
  }
  ReadOptions legacy;
  legacy.topology.legacy_bw = true;
  Schedule s = ReadScheduleFile(compute, legacy);
  EXPECT_EQ(s.ranks, 2);
  EXPECT_EQ(s.stages, 4);
  EXPECT_EQ(s.placement, LoopPlacement(2, 4));
  EXPECT_EQ(ToString(s.program[0][4]), "2I0");  // "2B0" followed by "2W0"
  Schedule comms = ReadScheduleFile(
      testing::TestdataPath("peers/pytorch/zb1p_2rank_2stagep_comms.csv"), legacy);
  EXPECT_TRUE(HasComm(comms));
  EXPECT_EQ(ToString(comms.program[0][11]), "2B0");  // "2BW0": a full backward
  EXPECT_EQ(ToString(comms.program[1][9]), "3I0");   // "3B0" with a later "3W0"
}

TEST(PyTorchFilesTest, ReferenceRecordingsReadAsBareRankLines) {
  ReadOptions o;
  o.topology.kind = "dualpipe";
  Schedule s = ReadScheduleFile(
      testing::TestdataPath("peers/dualpipe-reference/dualpipe-r4-m8.txt"), o);
  EXPECT_EQ(s, GenerateDualPipe(4, 8, true));
}

TEST(GridTest, PrintsPyTorchsStepByRankGrid) {
  Schedule s = ParseCsv("0F0,0B0\n,1F0,1B0\n", "g.csv", {});
  EXPECT_EQ(FormatGrid(s),
            "        Rank 0 Rank 1\n"
            "Step 0: 0F0    1F0\n"
            "Step 1: 0B0    1B0\n");
}

struct Malformed {
  const char* name;
  std::string text;
  const char* location;  // expected prefix of what()
  const char* says;
};

TEST(MalformedInputTest, EveryReaderNamesThePlaceAndTheRule) {
  const std::string header = "ranks 2\nmicrobatches 2\n";
  std::vector<Malformed> cases = {
      {"empty.pps", "", "empty.pps", "empty"},
      {"comment.pps", "# nothing\n", "comment.pps", "empty"},
      {"junk.pps", std::string("\x7f\x45\x4c\x46\x00\x01\x02", 7), "junk.pps:1:1:", "unknown header key"},
      {"ranks.pps", "ranks 1000000000\n", "ranks.pps:1:7:", "outside the allowed range 1..4096"},
      {"neg.pps", "ranks -3\n", "neg.pps:1:7:", "not a number"},
      {"key.pps", header + "colour blue\n", "key.pps:3:1:", "unknown header key 'colour'"},
      {"twice.pps", header + "ranks 2\n", "twice.pps:3:1:", "given twice"},
      {"norank.pps", header + "rank 0: 0F0\n", "norank.pps:3:1:", "rank 1 has no 'rank 1:' line"},
      {"duprank.pps", header + "rank 0: 0F0\nrank 0: 0F1\n", "duprank.pps:4:6:", "already"},
      // A bad action on an earlier rank line comes before a later line's error (the rank lines
      // are read once the lines are split, and again, in order, where the split fails).
      {"first.pps", header + "rank 0: 0Q0\nrank 0: 0F1\n", "first.pps:3:10:", "no known action"},
      {"bigrank.pps", header + "rank 2: 0F0\n", "bigrank.pps:3:6:", "outside the allowed range 0..1"},
      {"action.pps", header + "rank 0: 0F0 0Q1\nrank 1:\n", "action.pps:3:14:", "no known action"},
      {"colon.pps", header + "rank 0 0F0\n", "colon.pps:3:6:", "expected ':'"},
      {"late.pps", header + "rank 0:\nrank 1:\nstages 2\n", "late.pps:5:1:", "after the first rank line"},
      {"place.pps", header + "stages 3\nplacement 0 1\n", "place.pps:4:1:", "placement lists 2 ranks for 3 stages"},
      {"route.pps", header + "route 0: 0 1\n", "route.pps:3:1:", "microbatch 1 has no route"},
      {"kind.pps", "kind zigzag\n" + header, "kind.pps:1:6:", "unknown kind"},
      {"pass.pps", "pass backward\n" + header, "pass.pps:1:6:", "'pass' is 'train'"},
      {"pass.json", "{\"pass\": 1, \"ranks\": 1, \"microbatches\": 1, \"program\": [[]]}", "pass.json:1:10:", "/pass: expected \"train\""},
      {"empty.csv", "", "empty.csv:1:", "no rank rows"},
      {"blank.csv", "\n\n", "blank.csv:1:", "no rank rows"},
      {"cell.csv", "0F0,0F1,,0FF\n", "cell.csv:1:12:", "no microbatch number"},
      {"fsdp.csv", "0F0,0UNSHARD3\n", "fsdp.csv:1:13:", "names a stage and no microbatch"},
      {"twice.csv", "0F0\n0B0\n", "twice.csv:2:1:", "stage 0 has actions on rank 0"},
      {"first.csv", "0Q0\n" + std::string(4096, '\n'), "first.csv:1:2:", "no known action"},
      {"stage.csv", "0F0,99999999999F0\n", "stage.csv:1:5:", "too large"},
      {"bad.json", "{\"ranks\": 2,", "bad.json:1:", "malformed JSON"},
      {"type.json", "{\"ranks\": \"two\", \"microbatches\": 1, \"program\": [[]]}", "type.json:1:11:", "/ranks: expected an integer"},
      {"huge.json", "{\"ranks\": 1e300, \"microbatches\": 1, \"program\": [[]]}", "huge.json:1:11:", "/ranks: expected an integer"},
      {"act.json", "{\"ranks\": 1,\n \"microbatches\": 1,\n \"program\": [[\"0F0\", \"0Z0\"]]}", "act.json:3:22:", "/program/0/1"},
      {"rows.json", "{\"ranks\": 2, \"microbatches\": 1, \"program\": [[]]}", "rows.json:1:44:", "one list of actions per rank"},
      {"dupkey.json", "{\"ranks\": 1, \"microbatches\": 1, \"ranks\": 2, \"program\": [[]]}", "dupkey.json", "key 'ranks' appears twice"},
      {"key.json", "{\"ranks\": 1, \"colour\": 1}", "key.json:1:24:", "/colour: unknown key"},
      {"array.json", "[1, 2]", "array.json", "expected a JSON object"},
  };
  for (const Malformed& m : cases) {
    try {
      ParseSchedule(m.text, m.name, {});
      ADD_FAILURE() << m.name << " was accepted";
    } catch (const InputError& e) {
      std::string what = e.what();
      EXPECT_EQ(what.rfind(m.location, 0), 0u) << m.name << ": " << what;
      EXPECT_NE(what.find(": error: "), std::string::npos) << what;
      EXPECT_NE(what.find(m.says), std::string::npos) << m.name << ": " << what;
    }
  }
}

TEST(MalformedInputTest, ATenMillionCellLineIsReadOrRefusedWithoutTrouble) {
  std::string idle(10'000'000, ',');
  Schedule s = ParseCsv("0F0" + idle + "0B0\n", "idle.csv", {});
  EXPECT_EQ(s.program[0].size(), 2u);
  std::string busy;
  busy.reserve(50'000'000);
  for (int i = 0; i < 10'000'000; ++i) busy += "0F0,";
  try {
    ParseCsv(busy, "busy.csv", {});
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("more than 4194304 actions"), std::string::npos)
        << e.what();
  }
}

// What read() says of its input: the error, or "accepted".
template <typename Read>
std::string ErrorOf(const Read& read) {
  try {
    read();
  } catch (const InputError& e) {
    return e.what();
  }
  return "accepted";
}

// A .pps with more than a few hundred KiB of actions is read on two cores, half its rank lines
// each: what comes out, and the error it stops at, are those of reading it in order.
TEST(PpsSideBySideTest, ALargeFileReadsAsInOrder) {
  const Schedule s = Generate({.kind = "1f1b", .ranks = 8, .microbatches = 4000});
  const std::string text = WritePps(s);
  ASSERT_GT(text.size(), 1u << 20);
  EXPECT_EQ(ParsePps(text, "big.pps"), s);
}

TEST(PpsSideBySideTest, TheFirstBadActionInTheFileIsTheOneReported) {
  const std::string text = WritePps(Generate({.kind = "1f1b", .ranks = 8, .microbatches = 4000}));
  const size_t rank1 = text.find("\nrank 1:"), rank7 = text.find("\nrank 7:");
  auto line_of = [&](size_t at) { return 1 + std::count(text.begin(), text.begin() + at + 1, '\n'); };
  auto error = [](const std::string& bad) { return ErrorOf([&] { ParsePps(bad, "big.pps"); }); };
  // Column 9 is the first action: "rank r: " takes eight.
  std::string late = text;
  late.replace(rank7 + 9, 3, "7Q0");  // in the second half only
  EXPECT_EQ(error(late).rfind(fmt::format("big.pps:{}:10: error: ", line_of(rank7)), 0), 0u) << error(late);
  std::string both = late;
  both.replace(rank1 + 9, 3, "1Q0");  // and in the first
  EXPECT_EQ(error(both).rfind(fmt::format("big.pps:{}:10: error: ", line_of(rank1)), 0), 0u) << error(both);
}

TEST(PpsSideBySideTest, TheActionLimitStopsAtTheSameWord) {
  // Each rank line under the limit, together past it: the second line's word that passes it.
  const int64_t first = kMaxActions / 2 + 10, second = kMaxActions / 2 + 10;
  std::string text = "ranks 2\nmicrobatches 1\nrank 0:";
  for (int64_t k = 0; k < first; ++k) text += " 0F0";
  text += "\nrank 1:";
  for (int64_t k = 0; k < second; ++k) text += " 1F0";
  text += "\n";
  const int64_t past = kMaxActions - first;  // 0-based, on the second line
  EXPECT_EQ(ErrorOf([&] { ParsePps(text, "huge.pps"); }),
            fmt::format("huge.pps:4:{}: error: more than {} actions", 9 + 4 * past, kMaxActions));
}

// PyTorch's CSV is read the same way: half its rows on each core.
TEST(CsvSideBySideTest, ALargeFileReadsAsInOrder) {
  const Schedule s = Generate({.kind = "1f1b", .ranks = 8, .microbatches = 4000});
  const std::string text = WriteCsv(s, false);
  ASSERT_GT(text.size(), 1u << 20);
  const Schedule read = ParseCsv(text, "big.csv", {});
  EXPECT_EQ(read.program, s.program);
  auto error = [](const std::string& bad) { return ErrorOf([&] { ParseCsv(bad, "big.csv", {}); }); };
  // The first cell of row 7 (line 8), in the second half; then also that of row 1 (line 2).
  std::string late = text;
  late.replace(late.find("\n7RECV_F0") + 1, 3, "7Q0");
  EXPECT_EQ(error(late).rfind("big.csv:8:2: error: ", 0), 0u) << error(late);
  std::string both = late;
  both.replace(both.find('\n') + 1, 3, "1Q0");
  EXPECT_EQ(error(both).rfind("big.csv:2:2: error: ", 0), 0u) << error(both);
}

TEST(DetectFormatTest, ByExtensionThenByContent) {
  EXPECT_EQ(DetectFormat("a.csv", "rank 0:"), Format::kCsv);
  EXPECT_EQ(DetectFormat("a", " {\"ranks\":1}"), Format::kJson);
  EXPECT_EQ(DetectFormat("a", "# hi\nranks 2\n"), Format::kPps);
  EXPECT_EQ(DetectFormat("a", "rank 0: 0F0\n"), Format::kPps);
  EXPECT_EQ(DetectFormat("-", "0F0,0B0\n"), Format::kCsv);
  // .txt says nothing about the format: the content decides.
  EXPECT_EQ(DetectFormat("a.txt", "0F0,0B0\n"), Format::kCsv);
  EXPECT_EQ(DetectFormat("a.txt", "rank 0: 0F0\n"), Format::kPps);
  EXPECT_EQ(DetectFormat("a.txt", "{\"ranks\": 1}"), Format::kJson);
  // Every header key says pps, the forward-only pass's too.
  EXPECT_EQ(DetectFormat("a.txt", "pass forward\nranks 2\n"), Format::kPps);
  EXPECT_EQ(DetectFormat("a.txt", "kind 1f1b\n"), Format::kPps);
}

// A byte order mark is read past in every format, as editors on Windows write one.
TEST(DetectFormatTest, AByteOrderMarkIsReadPast) {
  const std::string bom = "\xEF\xBB\xBF";
  const Schedule pps = ParseSchedule(bom + "ranks 1\nmicrobatches 1\nrank 0: 0F0 0B0\n", "a.pps", {});
  EXPECT_EQ(pps.ranks, 1);
  const Schedule csv = ParseSchedule(bom + "0F0,0B0\n", "a.csv", {});
  EXPECT_EQ(csv.ActionCount(), 2);
  // Detected by content too (repair writes its result in the format detected).
  EXPECT_EQ(DetectFormat("a.txt", bom + "ranks 1\n"), Format::kPps);
  EXPECT_EQ(DetectFormat("-", bom + "0F0,0B0\n"), Format::kCsv);
}

// A rewritten .pps keeps its comments, header order and each rank line's trailing comment; only
// the actions of the rank lines change. CSV and JSON are written anew.
TEST(RewriteSchedule, KeepsWhatTheUserWroteAroundTheActions) {
  const std::string original =
      "# my schedule\nmicrobatches 1\nranks 2   # two ranks\n\nrank 1: 1RECV_F0 1F0 1B0 1SEND_B0  # last\n"
      "rank 0: 0F0 0SEND_F0 0RECV_B0 0B0\n";
  Schedule s = ParsePps(original, "x.pps");
  std::swap(s.program[0][1], s.program[0][2]);
  const std::string rewritten = RewriteSchedule(original, Format::kPps, s);
  EXPECT_EQ(rewritten,
            "# my schedule\nmicrobatches 1\nranks 2   # two ranks\n\nrank 1: 1RECV_F0 1F0 1B0 1SEND_B0  # last\n"
            "rank 0: 0F0 0RECV_B0 0SEND_F0 0B0\n");
  EXPECT_EQ(ParsePps(rewritten, "x.pps"), s);
  EXPECT_EQ(RewriteSchedule(original, Format::kJson, s), WriteJson(s));
  EXPECT_EQ(RewriteSchedule("", Format::kPps, s), WritePps(s));  // no rank lines to keep
}

// A file with CRLF line ends keeps them on the rewritten rank lines too.
TEST(RewriteSchedule, KeepsTheFilesLineEnds) {
  const std::string original = "microbatches 1\r\nranks 2\r\nrank 1: 1RECV_F0 1F0 1B0 1SEND_B0\r\n"
                               "rank 0: 0F0 0SEND_F0 0RECV_B0 0B0  # first\r\n";
  Schedule s = ParsePps(original, "x.pps");
  std::swap(s.program[0][1], s.program[0][2]);
  EXPECT_EQ(RewriteSchedule(original, Format::kPps, s),
            "microbatches 1\r\nranks 2\r\nrank 1: 1RECV_F0 1F0 1B0 1SEND_B0\r\n"
            "rank 0: 0F0 0RECV_B0 0SEND_F0 0B0  # first\r\n");
}

// A rewritten CSV keeps each compute's cell as written (here PyTorch's legacy BW), so it reads back
// with the same flags; the communication is written anew.
TEST(RewriteSchedule, ACsvKeepsItsComputesSpelledAsWritten) {
  const std::string original = "0F0, 0SEND_F0,0RECV_B0,0BW0\n1RECV_F0,1F0,,1BW0,1SEND_B0\n";
  TopologyOptions legacy;
  legacy.legacy_bw = true;
  Schedule s = ParseCsv(original, "x.csv", legacy);
  std::swap(s.program[1][2], s.program[1][3]);  // 1SEND_B0 before 1BW0: only communication moves
  const std::string rewritten = RewriteSchedule(original, Format::kCsv, s);
  EXPECT_EQ(rewritten, "0F0,0SEND_F0,0RECV_B0,0BW0\n1RECV_F0,1F0,1SEND_B0,1BW0\n");
  EXPECT_EQ(ParseCsv(rewritten, "x.csv", legacy), s);
  Schedule other_computes = s;
  other_computes.program[0].pop_back();
  EXPECT_EQ(RewriteSchedule(original, Format::kCsv, other_computes), WriteCsv(other_computes, false));
}

}  // namespace
}  // namespace pipeproof
