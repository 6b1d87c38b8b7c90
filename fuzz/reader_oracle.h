// What every schedule reader must do with any bytes at all, checked by the libFuzzer targets
// and by the regression test that replays their findings: either refuse the input with an
// InputError located in the file ("name:line:col: error: ..." or "name: error: ..."), or read
// a schedule that the matching writer writes back to the very same schedule. Anything else
// (another exception, a crash, a sanitizer report, a round trip that changes the schedule)
// aborts with a message.
#pragma once

#include <string_view>

#include "schedule/formats.h"

namespace pipeproof {

void CheckReader(Format format, std::string_view data);

}  // namespace pipeproof
