// Questions about JSON text that a parsed value cannot answer, for every JSON reader (schedules,
// fault plans, safetensors headers):
//   - keys written twice in one object: nlohmann's parser keeps the last of two equal keys
//     silently, which would let a reader take another value than the one a user looked at, so
//     readers refuse them. A linear SAX pass, unlike a parse with a callback, which costs time
//     quadratic in the keys of an object;
//   - where a value stands (line and column), so that a reader's error names the place.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pipeproof {

// The first key that appears twice in one object of `text`; nullopt when there is none, or when
// `text` is not valid JSON (the caller's parse says why).
std::optional<std::string> FindDuplicateKey(std::string_view text);

// Where the value at `path` (object keys and array indices, outermost first) starts in `text`,
// 1-based; {0, 0} when there is no such value.
struct TextPlace {
  int line = 0;
  int col = 0;
};
TextPlace LocateJsonValue(std::string_view text, const std::vector<std::string>& path);
// The line and column of byte `offset` of `text`, 1-based.
TextPlace PlaceOfOffset(std::string_view text, size_t offset);

// The JSON library's error message (exception::what()) for a reader's own: without its
// "[json.exception.parse_error.101] parse error at line 1, column 2: " prefix (readers give the
// place themselves), and with the bytes it quotes from the input escaped (Printable), since
// they may be anything.
std::string JsonParserMessage(std::string_view what);

}  // namespace pipeproof
