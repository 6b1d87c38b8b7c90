#include "schedule/json_keys.h"

#include <nlohmann/json.hpp>

#include <unordered_set>
#include <vector>

namespace pipeproof {
namespace {

using Json = nlohmann::json;

// Keeps the keys of every open object; stops the parse at the first repeated one.
class DuplicateKeyFinder final : public nlohmann::json_sax<Json> {
 public:
  std::optional<std::string> duplicate;

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    open_.emplace_back();
    return true;
  }
  bool key(string_t& key) override {
    if (open_.back().insert(key).second) return true;
    duplicate = key;
    return false;
  }
  bool end_object() override {
    open_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

 private:
  std::vector<std::unordered_set<std::string>> open_;
};

}  // namespace

std::optional<std::string> FindDuplicateKey(std::string_view text) {
  DuplicateKeyFinder finder;
  try {
    Json::sax_parse(text.begin(), text.end(), &finder);
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;  // not valid JSON: the caller's parse reports it
  }
  return finder.duplicate;
}

}  // namespace pipeproof
