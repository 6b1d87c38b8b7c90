// Keys written twice in one JSON object. nlohmann's parser keeps the last of two equal keys
// silently, which would let a reader take a different value than the one a user looked at; every
// JSON reader (schedules, fault plans, safetensors headers) refuses them instead. A linear SAX
// pass, unlike a parse with a callback, which costs quadratic time in the keys of an object.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace pipeproof {

// The first key that appears twice in one object of `text`; nullopt when there is none, or when
// `text` is not valid JSON (the caller's parse says why).
std::optional<std::string> FindDuplicateKey(std::string_view text);

}  // namespace pipeproof
