#include "troupe/persistence/replay_tool.hpp"

#include "troupe/persistence/json_text.hpp"
#include "troupe/persistence/replay.hpp"
#include "troupe/persistence/sqlite_journal.hpp"

#include <fmt/core.h>

#include <charconv>
#include <string_view>

namespace troupe::persistence::detail {

namespace {

constexpr const char* usage = "usage: replay ID|--verify --db FILE [--from SEQ] [--to SEQ]";

using line_sink = std::function<void(const nlohmann::ordered_json&)>;

expected<sequence_nr> parse_seq(std::string_view flag, std::string_view text) {
  sequence_nr x = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), x);
  if (ec != std::errc{} || end != text.data() + text.size() || x == 0)
    return error{errc::invalid_argument,
                 fmt::format("replay: {} needs a sequence number >= 1, got '{}'\n{}", flag, text,
                             usage)};
  return x;
}

/// Opens the journal read-only; says so on `err` when it had to use immutable mode
/// (read-only storage), like `troupe journal`.
expected<std::shared_ptr<sqlite_journal>> open_read_only(const std::string& path,
                                                         std::ostream& err) {
  sqlite_options opts;
  opts.path = path;
  opts.read_only = true;
  auto j = sqlite_journal::open(opts);
  if (j && (*j)->options().immutable)
    err << "replay: note: " << immutable_mode_note(path) << "\n";
  return j;
}

/// The snapshot a fold starts from when the events before `first` are deleted:
/// the one right before it, else the newest one after it (retention keeps few).
expected<snapshot_record> covering_snapshot(sqlite_journal& j, const std::string& pid,
                                            sequence_nr first, sequence_nr to) {
  snapshot_criteria exact;
  exact.min_seq = first - 1;
  exact.max_seq = first - 1;
  auto snap = j.load(pid, exact);
  if (snap && !*snap) {
    snapshot_criteria later;
    later.min_seq = first - 1;
    snap = j.load(pid, later);
  }
  if (!snap)
    return std::move(snap).error();
  if (!*snap || (*snap)->seq > to)
    return error{errc::journal_failure,
                 fmt::format("{} seq {}: the events before it are not stored and no snapshot "
                             "covers them",
                             pid, first)};
  return std::move(**snap);
}

/// Folds one persistence id's stored events, from the empty state or the snapshot
/// covering deleted ones, up to `to`; `emit` gets a line per step at or after
/// `print_from`. Errors name the persistence id and sequence number.
expected<std::uint64_t> fold(sqlite_journal& j, const std::string& pid, sequence_nr print_from,
                             sequence_nr to, replay_steps& steps, const line_sink& emit,
                             std::ostream& notes) {
  auto first = j.read_events(pid, 1, max_sequence_nr, 1);
  if (!first)
    return std::move(first).error();
  if (first->empty())
    return std::uint64_t{0};
  auto from = (*first)[0].seq;
  if (from > 1) {
    auto snap = covering_snapshot(j, pid, from, to);
    if (!snap)
      return std::move(snap).error();
    if (snap->seq >= from)
      notes << fmt::format("replay: {}: events {}..{} are only covered by the snapshot at seq {}\n",
                           escape_invalid_utf8(pid), from, snap->seq, snap->seq);
    auto state = steps.restore(*snap);
    if (!state)
      return std::move(state).error();
    if (snap->seq >= print_from)
      emit({{"seq", snap->seq}, {"snapshot", true}, {"state", std::move(*state)}});
    from = snap->seq + 1;
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
      if (r.seq >= print_from)
        emit({{"seq", r.seq},
              {"manifest", r.manifest},
              {"event", std::move(step->first)},
              {"state", std::move(step->second)}});
      return {};
    },
    from, to);
  if (!walked)
    return std::move(walked).error();
  return *walked;
}

/// Every snapshot of the id decodes, and none lies above the highest seq (recovery
/// refuses those). Returns the number checked; problems go to `report`.
std::uint64_t check_snapshots(sqlite_journal& j, const std::string& pid, sequence_nr highest,
                              const replay_model_factory& make,
                              const std::function<void(std::string)>& report) {
  std::uint64_t checked = 0;
  snapshot_criteria c;
  for (;;) {
    auto snap = j.load(pid, c);
    if (!snap) {
      report(snap.error().message());
      return checked;
    }
    if (!*snap)
      return checked;
    ++checked;
    auto& s = **snap;
    if (s.seq > highest)
      report(fmt::format("{}: the snapshot at seq {} is above the highest seq {}", pid, s.seq,
                         highest));
    auto steps = make(pid);
    if (auto state = steps.restore(s); !state)
      report(state.error().message());
    if (s.seq <= 1)
      return checked;
    c.max_seq = s.seq - 1;
  }
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
    } else if (a == "--verify") {
      result.verify = true;
    } else if (a.starts_with("--")) {
      return error{errc::invalid_argument, fmt::format("replay: unknown option '{}'\n{}", a, usage)};
    } else if (result.id.empty()) {
      result.id = std::string{a};
    } else {
      return error{errc::invalid_argument,
                   fmt::format("replay: unexpected argument '{}'\n{}", a, usage)};
    }
  }
  if (result.db.empty() || result.id.empty() == !result.verify)
    return error{errc::invalid_argument, usage};
  return result;
}

int run_replay(const replay_args& args, const std::string& pid, const replay_model_factory& make,
               std::ostream& out, std::ostream& err) {
  auto journal = open_read_only(args.db, err);
  if (!journal) {
    err << "replay: " << journal.error().message() << "\n";
    return 2;
  }
  auto steps = make(pid);
  auto folded = fold(
    **journal, pid, args.from, args.to, steps,
    [&](const nlohmann::ordered_json& line) { out << dump_json(line) << "\n"; }, err);
  out.flush();
  if (!folded) {
    err << "replay: " << escape_invalid_utf8(folded.error().message()) << "\n";
    return 1;
  }
  if (*folded == 0)
    err << fmt::format("replay: no events stored for '{}' in {}\n", escape_invalid_utf8(pid),
                       args.db);
  return 0;
}

int run_verify(const replay_args& args, const std::string& entity_type,
               const replay_model_factory& make, std::ostream& out, std::ostream& err) {
  auto journal = open_read_only(args.db, err);
  if (!journal) {
    err << "replay: " << journal.error().message() << "\n";
    return 2;
  }
  auto& j = **journal;
  auto prefix = entity_type + "|";
  std::uint64_t problems = 0, ids = 0, events = 0, snapshots = 0;
  auto report = [&](std::string what) {
    ++problems;
    out << escape_invalid_utf8(what) << "\n";
  };
  std::string after = prefix;  // ids of the type sort right after their prefix
  for (bool more = true; more;) {
    auto page = j.persistence_ids(after, 1024);
    if (!page) {
      report(page.error().message());
      break;
    }
    more = page->size() == 1024;
    for (auto& pid : *page) {
      if (pid.rfind(prefix, 0) != 0) {
        more = false;
        break;
      }
      ++ids;
      auto steps = make(pid);
      auto folded = fold(j, pid, max_sequence_nr, args.to, steps, [](auto&) {}, err);
      if (folded)
        events += *folded;
      else
        report(folded.error().message());
      auto highest = j.highest_sequence_nr(pid);
      if (!highest)
        report(highest.error().message());
      else
        snapshots += check_snapshots(j, pid, *highest, make, report);
    }
    if (!page->empty())
      after = page->back();
  }
  if (problems > 0) {
    out << fmt::format("verify: {} problem(s) in '{}' (entity type '{}')\n", problems, args.db,
                       entity_type);
    return 1;
  }
  out << fmt::format("verify: ok ({} ids of entity type '{}', {} events, {} snapshots)\n", ids,
                     entity_type, events, snapshots);
  return 0;
}

} // namespace troupe::persistence::detail
