// Exit statuses (docs/design.md): shared by every subcommand.
#pragma once

namespace pipeproof {
inline constexpr int kExitOk = 0;           // everything passed / matched
inline constexpr int kExitCheckFailed = 1;  // a check failed, a mismatch, a caught fault
inline constexpr int kExitBadInput = 2;     // bad input or usage, or a schedule that fails verify
inline constexpr int kExitRuntimeFault = 3; // a hang, a dead rank, another runtime fault
}  // namespace pipeproof
