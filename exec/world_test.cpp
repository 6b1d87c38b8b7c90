#include "exec/world.h"

#include <gtest/gtest.h>

#include <set>

#include "schedule/schedule.h"

namespace pipeproof {
namespace {

std::string Refusal(const WorldSpec& spec) {
  try {
    CheckWorldSpec(spec);
  } catch (const InputError& e) {
    return e.message();
  }
  return "";
}

TEST(WorldTest, EveryRowIsComplete) {
  std::set<std::string> names;
  for (const TransportKind& t : Transports()) {
    SCOPED_TRACE(t.name);
    EXPECT_TRUE(names.insert(t.name).second) << "two rows named " << t.name;
    EXPECT_TRUE(t.device == "cpu" || t.device == "cuda") << t.device;
    EXPECT_EQ(t.help.rfind(t.name, 0), 0u) << "the help starts with the name: " << t.help;
  }
}

TEST(WorldTest, ThreadsOnTheCpuMakeTheThreadsWorld) {
  const WorldSpec spec;
  EXPECT_EQ(Refusal(spec), "");
  EXPECT_EQ(MakeWorld(spec)->TransportName(), "threads");
  EXPECT_EQ(WorldMaker(spec)()->TransportName(), "threads");
  EXPECT_EQ(DevicesFor(spec), nullptr);  // the CPU device of the model's dtype
  EXPECT_EQ(TransportOf({.device = "cuda", .dtype = "f32"}).name, "streams");
}

TEST(WorldTest, MismatchesAreRefusedWithWhatToChange) {
  EXPECT_EQ(Refusal({.dtype = "bf16"}), "--dtype bf16 computes on the GPU: add --device cuda");
  EXPECT_EQ(Refusal({.device = "cuda"}),
            "--device cuda computes in f32 or bf16: add --dtype f32 or --dtype bf16");
  EXPECT_EQ(Refusal({.transport = "streams"}), "--transport streams runs on GPUs: add --device cuda");
  EXPECT_EQ(Refusal({.transport = "nccl"}), "--transport nccl runs on GPUs: add --device cuda");
  EXPECT_NE(Refusal({.device = "cuda", .dtype = "f32", .transport = "mpi"})
                .find("with one GPU per MPI process use --transport nccl"),
            std::string::npos);
  EXPECT_NE(Refusal({.transport = "nccl", .streams = StreamLayout::kEdge})
                .find("the NCCL transport has one per rank"),
            std::string::npos);
  EXPECT_NE(Refusal({.transport = "pigeon"}).find("unknown transport 'pigeon'"), std::string::npos);
  // Every layout runs on the threads transport.
  EXPECT_EQ(Refusal({.streams = StreamLayout::kPair}), "");
}

}  // namespace
}  // namespace pipeproof
