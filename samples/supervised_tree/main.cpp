// troupe-demo: a supervised actor tree that survives crashes.
//
//   app (one_for_one)
//   ├── ledger       permanent: keeps a running total; a bad entry makes it throw
//   └── pipeline     nested supervisor (rest_for_one, at most 3 restarts in 10s)
//       ├── parser   permanent: parses "<account>:<amount>" lines, throws on garbage
//       └── auditor  permanent: counts the lines that made it into the ledger
//
// The program feeds lines through the tree while some of them crash actors, and
// shows that clients keep using the same (stable) handles, that failed requests
// come back as errors instead of timeouts, that restarted actors start fresh, and
// that the node stops the whole tree in reverse order. Exits 0 on success.
//
// Config flags work as everywhere: e.g. --log.level=debug to see every restart.
#include "troupe/actors/ask.hpp"
#include "troupe/actors/node.hpp"
#include "troupe/actors/supervisor.hpp"
#include "troupe/command_line.hpp"

#include <caf/all.hpp>

#include <cstdio>

using namespace std::chrono_literals;

namespace {

using add_atom = caf::atom_constant<caf::atom("add")>;
using total_atom = caf::atom_constant<caf::atom("total")>;
using parse_atom = caf::atom_constant<caf::atom("parse")>;
using seen_atom = caf::atom_constant<caf::atom("seen")>;

struct ledger_state {
  std::int64_t total = 0;
};

caf::behavior ledger(caf::stateful_actor<ledger_state>* self) {
  return {
    [self](add_atom, std::int64_t amount) {
      if (amount < 0)
        throw std::invalid_argument("negative amount " + std::to_string(amount));
      return self->state.total += amount;
    },
    [self](total_atom) { return self->state.total; },
  };
}

struct auditor_state {
  int seen = 0;
};

caf::behavior auditor(caf::stateful_actor<auditor_state>* self) {
  return {
    [self](const std::string&) { ++self->state.seen; },
    [self](seen_atom) { return self->state.seen; },
  };
}

caf::behavior parser(caf::event_based_actor*) {
  return {[](parse_atom, const std::string& line) -> std::int64_t {
    auto colon = line.find(':');
    if (colon == std::string::npos)
      throw std::runtime_error("cannot parse '" + line + "'");
    return std::stoll(line.substr(colon + 1));
  }};
}

void say(const char* fmt, auto... xs) {
  std::printf(fmt, xs...);
  std::printf("\n");
  std::fflush(stdout);
}

int restarts_of(caf::actor_system& sys, const caf::actor& sup, const std::string& name) {
  if (auto children = troupe::which_children(sys, sup, 2s))
    for (auto& c : *children)
      if (c.name == name)
        return c.restarts;
  return -1;
}

} // namespace

int main(int argc, char** argv) {
  auto cl = troupe::parse_command_line(
    troupe::node_config_keys(), argc, argv,
    {"troupe-demo", "A supervised actor tree that survives crashes: feeds lines through it "
                    "while some of them crash actors, and checks what the clients see. Exits 0 "
                    "on success."});
  if (!cl.config)
    return cl.exit_code;
  auto& cfg = cl.config;
  (void) cfg->set_text("node.name", "demo");
  auto started = troupe::node::start(std::move(*cfg));
  if (!started) {
    std::fprintf(stderr, "troupe-demo: %s\n", started.error().to_string().c_str());
    return 1;
  }
  auto& node = **started;
  auto& sys = node.system();

  troupe::supervisor_spec pipeline{.name = "pipeline",
                                   .strategy = troupe::restart_strategy::rest_for_one,
                                   .max_restarts = 3,
                                   .within = 10s};
  pipeline.backoff = troupe::backoff_policy{20ms, 1s, 2.0, 0.2};
  pipeline.children = {troupe::make_child("parser", parser), troupe::make_child("auditor", auditor)};
  troupe::supervisor_spec app{.name = "app", .strategy = troupe::restart_strategy::one_for_one};
  app.children = {troupe::make_child("ledger", ledger), troupe::make_supervisor_child(pipeline)};
  auto app_sup = node.spawn_supervisor(app);
  if (!app_sup) {
    std::fprintf(stderr, "troupe-demo: %s\n", app_sup.error().to_string().c_str());
    return 1;
  }
  // Stable handles: valid across every restart below.
  auto ledger_handle = troupe::child_handle(sys, *app_sup, "ledger", 2s);
  auto pipeline_handle = troupe::child_handle(sys, *app_sup, "pipeline", 2s);
  if (!ledger_handle || !pipeline_handle)
    return 1;
  auto parser_handle = troupe::child_handle(sys, *pipeline_handle, "parser", 2s);
  auto auditor_handle = troupe::child_handle(sys, *pipeline_handle, "auditor", 2s);
  if (!parser_handle || !auditor_handle)
    return 1;

  say("troupe-demo: a supervised tree  app{ledger, pipeline{parser, auditor}}");
  const std::vector<std::string> lines = {"acct-1:100", "acct-2:250", "garbage",    "acct-1:-5",
                                          "acct-3:75",  "???",        "acct-2:25",  "acct-4:-1",
                                          "acct-1:50",  "acct-5:500"};
  int ok = 0, failed = 0;
  for (auto& line : lines) {
    auto amount = troupe::ask<std::int64_t>(sys, *parser_handle, 5s, parse_atom::value, line);
    if (!amount) {
      ++failed;
      say("  %-11s -> parser failed: %s (restarted by pipeline)", line.c_str(),
          amount.error().to_string().c_str());
      continue;
    }
    auto total = troupe::ask<std::int64_t>(sys, *ledger_handle, 5s, add_atom::value, *amount);
    if (!total) {
      ++failed;
      say("  %-11s -> ledger failed: %s (restarted by app, total starts over)", line.c_str(),
          total.error().to_string().c_str());
      continue;
    }
    ++ok;
    caf::anon_send(*auditor_handle, line);
    say("  %-11s -> total %lld", line.c_str(), static_cast<long long>(*total));
  }
  say("processed %d lines, %d failed; the same handles were used throughout", ok, failed);
  auto audited = troupe::ask<int>(sys, *auditor_handle, 5s, seen_atom::value);
  say("auditor saw %d lines (it restarts with the parser: rest_for_one)", audited ? *audited : -1);
  say("restarts: ledger %d, parser %d, auditor %d", restarts_of(sys, *app_sup, "ledger"),
      restarts_of(sys, *pipeline_handle, "parser"), restarts_of(sys, *pipeline_handle, "auditor"));

  // Too many parser crashes within 10s make `pipeline` give up; `app` restarts the
  // whole pipeline (escalation). The pipeline's own handle (held by `app`) stays
  // valid; handles of its children end with it and are looked up again.
  for (int i = 0; i < 3; ++i)
    (void) troupe::ask<std::int64_t>(sys, *parser_handle, 5s, parse_atom::value, std::string{"boom"});
  for (int i = 0; i < 1000 && restarts_of(sys, *app_sup, "pipeline") < 1; ++i)
    (void) troupe::which_children(sys, *pipeline_handle, 100ms);
  say("after repeated parser crashes the pipeline escalated: app restarted it %d time(s)",
      restarts_of(sys, *app_sup, "pipeline"));
  parser_handle = troupe::child_handle(sys, *pipeline_handle, "parser", 2s);
  auto parsed = parser_handle ? troupe::ask<std::int64_t>(sys, *parser_handle, 5s, parse_atom::value,
                                                          std::string{"acct-9:9"})
                              : troupe::expected<std::int64_t>{parser_handle.error()};
  say("  the new parser, found through the pipeline's stable handle: 'acct-9:9' -> %lld",
      parsed ? static_cast<long long>(*parsed) : -1LL);

  auto report = node.shutdown();
  say("node stopped the tree in reverse start order: %s", report.clean ? "clean" : "NOT clean");
  for (auto& p : report.problems)
    say("  problem: %s", p.c_str());
  return report.clean && ok > 0 && failed > 0 && parsed ? 0 : 1;
}
