#include "exec/flight_recorder.h"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

namespace pipeproof {

std::string_view RankActivityName(RankActivity a) {
  switch (a) {
    case RankActivity::kStarting: return "starting";
    case RankActivity::kComputing: return "computing";
    case RankActivity::kDelaying: return "sleeping an injected delay";
    case RankActivity::kBlocked: return "blocked";
    case RankActivity::kDone: return "done";
    case RankActivity::kDead: return "dead";
    case RankActivity::kFailed: return "failed";
  }
  return "?";
}

bool IsBusy(RankActivity a) {
  return a == RankActivity::kStarting || a == RankActivity::kComputing || a == RankActivity::kDelaying;
}

std::string_view FlightEventName(FlightEventKind k) {
  switch (k) {
    case FlightEventKind::kStarted: return "started";
    case FlightEventKind::kFinished: return "finished";
    case FlightEventKind::kUnitPosted: return "posted unit";
    case FlightEventKind::kUnitComplete: return "completed unit";
    case FlightEventKind::kDelayed: return "delayed";
    case FlightEventKind::kDropped: return "dropped a send (negative control)";
    case FlightEventKind::kCorrupted: return "corrupted a message (negative control)";
    case FlightEventKind::kKilled: return "killed (negative control)";
    case FlightEventKind::kFailed: return "failed";
  }
  return "?";
}

std::string UnitView::Describe() const {
  std::string out = what;
  for (size_t i = 0; i < ops.size(); ++i) {
    const OpProgress p = progress && i < progress->ops.size() ? progress->ops[i].load() : OpProgress::kNotPosted;
    out += fmt::format("\n      {}: {}", ops[i], OpProgressName(p));
  }
  return out;
}

FlightRecorder::FlightRecorder(int rank, const RunPlan& plan, size_t capacity, Clock::time_point start)
    : rank_(rank), plan_(plan), start_(start), ring_(std::max<size_t>(capacity, 1)),
      activity_since_(start), last_progress_(start) {}

void FlightRecorder::Record(int64_t action, FlightEventKind kind, int64_t detail) {
  const Clock::time_point now = Clock::now();
  std::lock_guard lock(mutex_);
  ring_[next_] = {now, action, kind, detail};
  next_ = (next_ + 1) % ring_.size();
  count_ = std::min(count_ + 1, ring_.size());
  last_progress_ = now;
  if (kind == FlightEventKind::kFinished) finished_actions_.fetch_add(1, std::memory_order_relaxed);
}

void FlightRecorder::SetActivity(RankActivity activity, std::string doing,
                                 std::shared_ptr<const UnitView> waiting_on) {
  const Clock::time_point now = Clock::now();
  std::lock_guard lock(mutex_);
  activity_ = activity;
  activity_since_ = now;
  last_progress_ = now;
  doing_ = std::move(doing);
  waiting_on_ = std::move(waiting_on);
}

void FlightRecorder::SetStreamUnit(int stream, std::shared_ptr<const UnitView> unit) {
  std::lock_guard lock(mutex_);
  if (unit) {
    stream_units_[stream] = std::move(unit);
  } else {
    stream_units_.erase(stream);
  }
}

RankActivity FlightRecorder::activity() const {
  std::lock_guard lock(mutex_);
  return activity_;
}

bool FlightRecorder::Busy() const {
  const Clock::time_point now = Clock::now();
  std::lock_guard lock(mutex_);
  auto delayed = [&](const std::shared_ptr<const UnitView>& u) { return u && u->progress && u->progress->Delayed(now); };
  bool streams = false;
  for (const auto& [id, unit] : stream_units_) streams = streams || delayed(unit);
  return IsBusy(activity_) || delayed(waiting_on_) || streams;
}

Clock::time_point FlightRecorder::LastProgressLocked() const {
  // The end of an injected delay counts as progress: the rank gets the whole timeout after it.
  Clock::time_point t = last_progress_;
  auto delay_end = [&](const std::shared_ptr<const UnitView>& u) {
    if (u && u->progress) t = std::max(t, Clock::time_point(Clock::duration(u->progress->delayed_until.load())));
  };
  delay_end(waiting_on_);
  for (const auto& [id, unit] : stream_units_) delay_end(unit);
  return t;
}

Clock::time_point FlightRecorder::last_progress() const {
  std::lock_guard lock(mutex_);
  return LastProgressLocked();
}

namespace {
double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

RankSnapshot FlightRecorder::Snapshot(size_t tail) const {
  const Clock::time_point now = Clock::now();
  std::lock_guard lock(mutex_);
  RankSnapshot s;
  s.rank = rank_;
  s.activity = activity_;
  auto delayed = [&](const std::shared_ptr<const UnitView>& u) { return u && u->progress && u->progress->Delayed(now); };
  s.busy = IsBusy(activity_) || delayed(waiting_on_);
  for (const auto& [id, unit] : stream_units_) s.busy = s.busy || delayed(unit);
  s.doing = doing_;
  if (waiting_on_) s.doing += (s.doing.empty() ? "" : ": ") + waiting_on_->Describe();
  for (const auto& [id, unit] : stream_units_) {
    if (!s.stream.empty()) s.stream += "\n";
    s.stream += unit->Describe();
  }
  s.activity_age = Seconds(now - activity_since_);
  s.progress_age = std::max(0.0, Seconds(now - LastProgressLocked()));
  const size_t n = std::min(tail, count_);
  for (size_t k = 0; k < n; ++k) {
    const Event& e = ring_[(next_ + ring_.size() - n + k) % ring_.size()];
    FlightEntry entry;
    entry.t = Seconds(e.at - start_);
    if (e.action >= 0) entry.action = plan_.NameAction(rank_, e.action);
    entry.event = std::string(FlightEventName(e.kind));
    if (e.kind == FlightEventKind::kDelayed) entry.event += fmt::format(" {}us", e.detail);
    if (e.kind == FlightEventKind::kUnitPosted || e.kind == FlightEventKind::kUnitComplete) {
      entry.event += fmt::format(" #{}", e.detail);
    }
    s.tail.push_back(std::move(entry));
  }
  return s;
}

std::string RankSnapshot::Text() const {
  std::string out;
  if (!answered) {
    return fmt::format("rank {}: no answer: the process is dead or stuck where pipeproof cannot see it{}\n",
                       rank, doing.empty() ? "" : "; " + doing);
  }
  out = fmt::format("rank {}: {}", rank, RankActivityName(activity));
  const bool stuck = activity == RankActivity::kBlocked || activity == RankActivity::kDead;
  if (stuck) out += fmt::format(" for {:.2f}s", activity_age);
  if (!doing.empty()) out += fmt::format("{}{}", stuck ? " at " : ": ", doing);
  out += "\n";
  if (!stream.empty()) out += fmt::format("    communication stream: {}\n", stream);
  if (!tail.empty()) {
    out += fmt::format("    last {} events (seconds since the start):\n", tail.size());
    for (const FlightEntry& e : tail) {
      out += fmt::format("      {:10.6f}  {:<36} {}\n", e.t, e.action, e.event);
    }
  }
  return out;
}

namespace {
nlohmann::json SnapshotJson(const RankSnapshot& s) {
  nlohmann::json j;
  j["rank"] = s.rank;
  j["answered"] = s.answered;
  j["busy"] = s.busy;
  j["activity"] = static_cast<int>(s.activity);
  j["state"] = RankActivityName(s.activity);
  j["doing"] = s.doing;
  j["stream"] = s.stream;
  j["activity_age"] = s.activity_age;
  j["progress_age"] = s.progress_age;
  j["tail"] = nlohmann::json::array();
  for (const FlightEntry& e : s.tail) j["tail"].push_back({{"t", e.t}, {"action", e.action}, {"event", e.event}});
  return j;
}
}  // namespace

std::string RankSnapshot::Json() const { return SnapshotJson(*this).dump(); }

RankSnapshot RankSnapshot::FromJson(const std::string& text) {
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    RankSnapshot s;
    s.rank = j.at("rank").get<int>();
    s.answered = j.at("answered").get<bool>();
    s.busy = j.at("busy").get<bool>();
    const int activity = j.at("activity").get<int>();
    if (activity < 0 || activity > static_cast<int>(RankActivity::kFailed)) throw std::runtime_error("bad activity");
    s.activity = static_cast<RankActivity>(activity);
    s.doing = j.at("doing").get<std::string>();
    s.stream = j.at("stream").get<std::string>();
    s.activity_age = j.at("activity_age").get<double>();
    s.progress_age = j.at("progress_age").get<double>();
    for (const auto& e : j.at("tail")) {
      s.tail.push_back({e.at("t").get<double>(), e.at("action").get<std::string>(), e.at("event").get<std::string>()});
    }
    return s;
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(std::string("bad rank snapshot: ") + e.what());
  }
}

std::string FormatDump(const std::string& headline, const std::vector<RankSnapshot>& ranks) {
  std::string out = headline + "\n";
  for (const RankSnapshot& s : ranks) out += s.Text();
  return out;
}

std::string DumpJson(const std::string& headline, const std::vector<RankSnapshot>& ranks) {
  nlohmann::json j;
  j["headline"] = headline;
  j["ranks"] = nlohmann::json::array();
  for (const RankSnapshot& s : ranks) j["ranks"].push_back(SnapshotJson(s));
  return j.dump(2);
}

}  // namespace pipeproof
