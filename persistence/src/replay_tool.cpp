#include "troupe/persistence/replay_tool.hpp"

#include "troupe/persistence/replay.hpp"
#include "troupe/persistence/sqlite_journal.hpp"

#include <fmt/core.h>

#include <charconv>
#include <string_view>

namespace troupe::persistence::detail {

namespace {

constexpr const char* usage = "usage: replay ID --db FILE [--from SEQ] [--to SEQ]";

expected<sequence_nr> parse_seq(std::string_view flag, std::string_view text) {
  sequence_nr x = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), x);
  if (ec != std::errc{} || end != text.data() + text.size() || x == 0)
    return error{errc::invalid_argument,
                 fmt::format("replay: {} needs a sequence number >= 1, got '{}'\n{}", flag, text,
                             usage)};
  return x;
}

} // namespace

expected<replay_args> parse_replay_args(int argc, const char* const* argv) {
  replay_args result;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&](std::string_view flag) -> expected<std::string_view> {
      if (auto eq = a.find('='); eq != std::string_view::npos)
        return a.substr(eq + 1);
      if (i + 1 >= argc)
        return error{errc::invalid_argument,
                     fmt::format("replay: {} needs a value\n{}", flag, usage)};
      return std::string_view{argv[++i]};
    };
    auto is = [&](std::string_view flag) {
      return a == flag || (a.size() > flag.size() && a.substr(0, flag.size()) == flag
                           && a[flag.size()] == '=');
    };
    if (is("--db")) {
      auto v = value("--db");
      if (!v)
        return std::move(v).error();
      result.db = std::string{*v};
    } else if (is("--from") || is("--to")) {
      auto flag = is("--from") ? "--from" : "--to";
      auto v = value(flag);
      if (!v)
        return std::move(v).error();
      auto seq = parse_seq(flag, *v);
      if (!seq)
        return std::move(seq).error();
      (is("--from") ? result.from : result.to) = *seq;
    } else if (a.starts_with("--")) {
      return error{errc::invalid_argument, fmt::format("replay: unknown option '{}'\n{}", a, usage)};
    } else if (result.id.empty()) {
      result.id = std::string{a};
    } else {
      return error{errc::invalid_argument,
                   fmt::format("replay: unexpected argument '{}'\n{}", a, usage)};
    }
  }
  if (result.id.empty() || result.db.empty())
    return error{errc::invalid_argument, usage};
  return result;
}

int run_replay(const replay_args& args, const std::string& pid, const replay_steps& steps,
               std::ostream& out, std::ostream& err) {
  sqlite_options opts;
  opts.path = args.db;
  opts.read_only = true;
  opts.create_if_missing = false;
  auto journal = sqlite_journal::open(opts);
  if (!journal) {
    err << "replay: " << journal.error().message() << "\n";
    return 2;
  }
  auto& j = **journal;
  // Events before the first stored one may have been deleted (covered by a
  // snapshot): start from the snapshot right before it.
  auto first = j.read_events(pid, 1, max_sequence_nr, 1);
  if (!first) {
    err << "replay: " << first.error().message() << "\n";
    return 1;
  }
  if (first->empty()) {
    err << fmt::format("replay: no events stored for '{}' in {}\n", pid, args.db);
    return 0;
  }
  // Fold from the first stored event (or the covering snapshot); print from --from.
  auto from = (*first)[0].seq;
  if (from > 1) {
    // The snapshot right before `from`, else the newest one after it (retention
    // keeps few): its state covers the events up to its seq.
    snapshot_criteria exact;
    exact.min_seq = from - 1;
    exact.max_seq = from - 1;
    auto snap = j.load(pid, exact);
    if (snap && !*snap) {
      snapshot_criteria later;
      later.min_seq = from - 1;
      snap = j.load(pid, later);
    }
    if (!snap) {
      err << "replay: " << snap.error().message() << "\n";
      return 1;
    }
    if (!*snap || (*snap)->seq > args.to) {
      err << fmt::format("replay: {} seq {}: the events before it are not stored and no "
                         "snapshot covers them\n",
                         pid, from);
      return 1;
    }
    if ((*snap)->seq >= from)
      err << fmt::format("replay: {}: events {}..{} are only covered by the snapshot at seq {}\n",
                         pid, from, (*snap)->seq, (*snap)->seq);
    auto state = steps.restore(**snap);
    if (!state) {
      err << "replay: " << state.error().message() << "\n";
      return 1;
    }
    if ((*snap)->seq >= args.from)
      out << nlohmann::ordered_json{{"seq", (*snap)->seq}, {"snapshot", true}, {"state", *state}}
               .dump()
          << "\n";
    from = (*snap)->seq + 1;
  }
  sequence_nr expected_seq = from;
  auto walked = for_each_event(
    j, pid,
    [&](const event_record& r) -> expected<void> {
      if (r.seq != expected_seq)
        return error{errc::journal_failure,
                     fmt::format("{} seq {}: missing from the journal (found seq {} next)", pid,
                                 expected_seq, r.seq)};
      auto step = steps.apply(r);
      if (!step)
        return std::move(step).error();
      ++expected_seq;
      if (r.seq < args.from)
        return {};
      out << nlohmann::ordered_json{{"seq", r.seq},
                                    {"manifest", r.manifest},
                                    {"event", std::move(step->first)},
                                    {"state", std::move(step->second)}}
               .dump()
          << "\n";
      return {};
    },
    from, args.to);
  out.flush();
  if (!walked) {
    err << "replay: " << walked.error().message() << "\n";
    return 1;
  }
  return 0;
}

} // namespace troupe::persistence::detail
