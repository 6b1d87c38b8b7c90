#include "schedule/schedule.h"

#include <gtest/gtest.h>

#include <stdexcept>

#include "schedule/generate.h"
#include "schedule/json_text.h"

namespace pipeproof {
namespace {

TEST(ActionTest, EveryActionRoundTripsThroughItsSpelling) {
  for (const char* text : {"0F0", "12B3", "7I4", "7W4", "0SEND_F2", "3RECV_F0", "6SEND_B7",
                           "1RECV_B0", "WAIT", "(0F3;7B5)OVERLAP_F_B", "(6F6;1I0)OVERLAP_F_B"}) {
    EXPECT_EQ(ToString(ParseAction(text)), text);
  }
}

TEST(ActionTest, OverlapHoldsForwardThenBackward) {
  Action a = ParseAction("(0F3;7B5)OVERLAP_F_B");
  ASSERT_EQ(a.op, Op::kOverlapFB);
  ASSERT_EQ(a.TaskCount(), 2);
  EXPECT_EQ(a.TaskAt(0), (Task{Op::kForward, 0, 3}));
  EXPECT_EQ(a.TaskAt(1), (Task{Op::kBackward, 7, 5}));
}

struct BadAction {
  const char* text;
  int column;
  const char* says;
};

TEST(ActionTest, MalformedActionsNameTheProblemAndWhere) {
  for (const BadAction& bad : {
           BadAction{"F0", 0, "must start with a stage number"},
           BadAction{"0X0", 1, "no known action"},
           BadAction{"0F", 2, "no microbatch number"},
           BadAction{"0F0x", 3, "unexpected"},
           BadAction{"0BW1", 1, "--legacy-bw"},
           BadAction{"1UNSHARD0", 8, "names a stage and no microbatch"},
           BadAction{"0WAIT_SEND_F", 12, "no microbatch number after WAIT_SEND_F"},
           BadAction{"0WAIT_SEND_X0", 1, "no known action"},
           BadAction{"99999999999F0", 0, "too large"},
           BadAction{"(0F3;7B5", 0, "closing"},
           BadAction{"(0F3;7B5)OVERLAP", 8, "OVERLAP_F_B"},
           BadAction{"(7B5;0F3)OVERLAP_F_B", 1, "first action"},
           BadAction{"(0F3;0F4)OVERLAP_F_B", 5, "second action"},
           BadAction{"(0F3)OVERLAP_F_B", 1, "exactly two"},
           BadAction{"", 0, "empty"},
       }) {
    int column = -1;
    try {
      ParseAction(bad.text, {}, &column);
      ADD_FAILURE() << bad.text << " was accepted";
    } catch (const InputError& e) {
      EXPECT_NE(e.message().find(bad.says), std::string::npos) << bad.text << ": " << e.what();
      EXPECT_EQ(column, bad.column) << bad.text;
    }
  }
}

// PyTorch 2.15's runtime orders: every one of its actions reads as PyTorch writes it and prints
// back the same way (before, 0WAIT_SEND_F0 was misread as a W action).
TEST(ActionTest, PyTorchRuntimeActionsReadAndPrintBack) {
  const struct {
    const char* text;
    Action action;
  } cases[] = {
      {"0WAIT_SEND_F0", Action::WaitSend(Op::kSendF, 0, 0)},
      {"7WAIT_SEND_B12", Action::WaitSend(Op::kSendB, 7, 12)},
      {"3UNSHARD", Action::DataParallel(Op::kUnshard, 3)},
      {"3RESHARD", Action::DataParallel(Op::kReshard, 3)},
      {"10REDUCE_GRAD", Action::DataParallel(Op::kReduceGrad, 10)},
      {"10WAIT_REDUCE_GRAD", Action::DataParallel(Op::kWaitReduceGrad, 10)},
      {"2W5", Action::Compute(Op::kWeightGrad, 2, 5)},
  };
  for (const auto& c : cases) {
    const Action a = ParseAction(c.text);
    EXPECT_EQ(a, c.action) << c.text;
    EXPECT_EQ(ToString(a), c.text);
  }
  EXPECT_TRUE(IsWaitSend(Op::kWaitSendB));
  EXPECT_FALSE(IsComm(Op::kWaitSendF));
  EXPECT_TRUE(IsDataParallel(Op::kWaitReduceGrad));
  EXPECT_FALSE(IsCompute(Op::kUnshard));
  EXPECT_EQ(SentBy(Op::kWaitSendB), Op::kSendB);
}

TEST(StreamLayoutTest, NamesAndStreams) {
  for (StreamLayout layout : kStreamLayouts) {
    EXPECT_EQ(StreamLayoutFromName(StreamLayoutName(layout)), layout);
  }
  EXPECT_FALSE(StreamLayoutFromName("ring"));
  // rank: one stream; pair: one per peer whatever the direction; edge: one per peer and direction.
  EXPECT_EQ(StreamOf(StreamLayout::kRank, 3, true), StreamOf(StreamLayout::kRank, 5, false));
  EXPECT_EQ(StreamOf(StreamLayout::kPair, 3, true), StreamOf(StreamLayout::kPair, 3, false));
  EXPECT_NE(StreamOf(StreamLayout::kPair, 3, true), StreamOf(StreamLayout::kPair, 4, true));
  EXPECT_NE(StreamOf(StreamLayout::kEdge, 3, true), StreamOf(StreamLayout::kEdge, 3, false));
  EXPECT_NE(StreamOf(StreamLayout::kEdge, 3, true), StreamOf(StreamLayout::kEdge, 4, true));
}

TEST(ActionTest, LegacySpellingReadsBwAsFullBackward) {
  EXPECT_EQ(ParseAction("2BW0", {.legacy_bw = true}), Action::Compute(Op::kBackward, 2, 0));
}

TEST(QuoteTest, EscapesControlBytesAndShortensLongText) {
  EXPECT_EQ(Quote(std::string("a\0b\xff", 4)), "'a\\x00b\\xff'");
  EXPECT_EQ(Quote(std::string(100, 'x')).size(), 48u + 5u);
}

// What the readers' fuzz oracles require of every error message, and its control: raw bytes and
// terminal escapes are not printable; Printable and the JSON library's messages make them so.
TEST(QuoteTest, ErrorMessagesStayPrintable) {
  EXPECT_TRUE(IsPrintable("file.pps:1:2: error: 'x' is not an action\nsecond line"));
  EXPECT_FALSE(IsPrintable("a\x1b[31m"));
  EXPECT_FALSE(IsPrintable(std::string("a\xff", 2)));
  EXPECT_FALSE(IsPrintable("tab\there"));
  EXPECT_EQ(Printable(std::string("a\x1b\xff'\\", 5)), "a\\x1b\\xff'\\x5c");
  EXPECT_TRUE(IsPrintable(Printable(std::string("\x00\x01\x7f\x80\xff", 5))));
  const std::string library =
      "[json.exception.parse_error.101] parse error at line 1, column 12: syntax error while parsing "
      "value - invalid string: ill-formed UTF-8 byte; last read: '\"\xff'";
  const std::string message = JsonParserMessage(library);
  EXPECT_EQ(message.rfind("syntax error while parsing value", 0), 0u) << message;
  EXPECT_TRUE(IsPrintable(message)) << message;
  EXPECT_NE(message.find("\\xff"), std::string::npos) << message;
  EXPECT_EQ(JsonParserMessage("[json.exception.out_of_range.406] number overflow parsing '1e999'"),
            "number overflow parsing '1e999'");
}

TEST(TopologyTest, DefaultsAreLoopPlacementOwnParamsAndEveryStage) {
  Schedule s;
  s.ranks = 2;
  s.stages = 4;
  s.microbatches = 3;
  CompleteTopology(s);
  EXPECT_EQ(s.placement, (std::vector<int>{0, 1, 0, 1}));
  EXPECT_EQ(s.params, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(s.routes, (std::vector<std::vector<int>>(3, {0, 1, 2, 3})));
  EXPECT_EQ(s.program.size(), 2u);
}

TEST(TopologyTest, AbsurdSizesAreRefusedWithTheLimit) {
  Schedule s;
  s.ranks = 1000000000;
  s.stages = 4;
  s.microbatches = 3;
  try {
    CompleteTopology(s);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(e.message().find("ranks is 1000000000"), std::string::npos) << e.what();
  }
  EXPECT_THROW(CheckLimits(8, 65536, 1 << 20), InputError);
}

TEST(TopologyTest, RoutesMustNotRepeatAStage) {
  Schedule s;
  s.ranks = 2;
  s.stages = 2;
  s.microbatches = 1;
  s.routes = {{0, 1, 0}};
  EXPECT_THROW(CompleteTopology(s), InputError);
}

TEST(RouteIndexTest, DualPipeDirectionsHaveTheirOwnNeighbours) {
  Schedule s = GenerateDualPipe(4, 8, true);
  RouteIndex routes(s);
  // Microbatch 1 takes direction 0 (stages 0..3); microbatch 5 direction 1 (stages 4..7).
  EXPECT_EQ(routes.Next(2, 1), 3);
  EXPECT_EQ(routes.Prev(0, 1), -1);
  EXPECT_TRUE(routes.IsLast(3, 1));
  EXPECT_FALSE(routes.OnRoute(5, 1));
  EXPECT_EQ(routes.Prev(5, 5), 4);
  EXPECT_TRUE(routes.IsFirst(4, 5));
  EXPECT_EQ(routes.RouteLength(5), 4);
}

TEST(MessageTest, SendsAndReceivesNameTheirPayloadAndPeer) {
  Schedule s = GenerateDualPipe(4, 8, true);
  RouteIndex routes(s);
  // Stage 7 lives on rank 0 and receives microbatch 4's activation from stage 6 on rank 1.
  auto recv = MessageOf(s, routes, {Op::kRecvF, 7, 4});
  ASSERT_TRUE(recv);
  EXPECT_EQ(recv->peer, 1);
  EXPECT_EQ(recv->payload, (Payload{Payload::Kind::kActivation, 6, 7, 4}));
  auto send = MessageOf(s, routes, {Op::kSendB, 7, 4});
  ASSERT_TRUE(send);
  EXPECT_EQ(send->payload, (Payload{Payload::Kind::kGradient, 7, 6, 4}));
  // The last stage of a route sends no activation on.
  EXPECT_FALSE(MessageOf(s, routes, {Op::kSendF, 7, 4}));
}

TEST(DependencyTest, BackwardNeedsItsForwardAndTheNextStagesGradient) {
  Schedule s = GenerateDualPipe(4, 8, true);
  RouteIndex routes(s);
  auto needs = Needs({Op::kInputGrad, 5, 6}, routes);
  EXPECT_EQ(needs, (PassKeys{{Pass::kForward, 5, 6}, {Pass::kBackward, 6, 6}}));
  EXPECT_EQ(Needs({Op::kWeightGrad, 5, 6}, routes), (PassKeys{{Pass::kBackward, 5, 6}}));
  EXPECT_TRUE(Needs({Op::kForward, 4, 6}, routes).empty());
  EXPECT_EQ(Produces({Op::kBackward, 1, 0}).size(), 2u);
}

TEST(DependencyTest, PassKeysCompareByTheirKeysInOrder) {
  const PassKeys two{{Pass::kForward, 1, 2}, {Pass::kWeight, 1, 2}};
  EXPECT_EQ(two.size(), 2u);
  EXPECT_EQ(two, (PassKeys{{Pass::kForward, 1, 2}, {Pass::kWeight, 1, 2}}));
  EXPECT_FALSE(two == (PassKeys{{Pass::kWeight, 1, 2}, {Pass::kForward, 1, 2}}));
  EXPECT_FALSE(two == (PassKeys{{Pass::kForward, 1, 2}}));
  EXPECT_TRUE(PassKeys{}.empty());
  PassKeys full = two;
  EXPECT_THROW(full.push_back({Pass::kBackward, 0, 0}), std::out_of_range);
}

}  // namespace
}  // namespace pipeproof
