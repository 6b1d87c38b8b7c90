// What the fault-plan reader (exec/fault_plan.h, ParseFaultPlan) must do with any bytes at all,
// checked by the plan_fuzzer libFuzzer target and by the regression test that replays its
// findings: either refuse the input with an InputError located in the file ("name: error:
// ranks[2].post_delay_us[5]: ..."), or read a plan whose Json() reads back to the very same plan
// (and whose Summary() and description can be made). Anything else aborts with a message.
#pragma once

#include <string_view>

namespace pipeproof {

void CheckPlanReader(std::string_view data);

}  // namespace pipeproof
