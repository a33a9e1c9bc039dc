#include "troupe/actors/remote/filter.hpp"

#include <fmt/core.h>

#include <sstream>
#include <string>
#include <vector>

namespace troupe::remote {

void fault_injector::apply(rule& r, filter_verdict v, frame_directions which) {
  if (which != frame_directions::incoming)
    r.out = v;
  if (which != frame_directions::outgoing)
    r.in = v;
}

void fault_injector::drop(const node_address& peer, frame_directions which) {
  std::lock_guard<std::mutex> guard{mtx_};
  apply(rules_[peer], filter_verdict::drop(), which);
}

void fault_injector::delay(const node_address& peer, duration d, frame_directions which) {
  std::lock_guard<std::mutex> guard{mtx_};
  apply(rules_[peer], filter_verdict::hold(d), which);
}

void fault_injector::clear(const node_address& peer) {
  std::lock_guard<std::mutex> guard{mtx_};
  rules_.erase(peer);
}

void fault_injector::clear() {
  std::lock_guard<std::mutex> guard{mtx_};
  rules_.clear();
}

filter_verdict fault_injector::check(const frame_info& f) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = rules_.find(f.peer.address);
  if (i == rules_.end())
    return filter_verdict::pass();
  return f.direction == frame_direction::outgoing ? i->second.out : i->second.in;
}

expected<void> fault_injector::load(std::string_view text) {
  std::map<node_address, rule> parsed;
  std::istringstream lines{std::string{text}};
  int number = 0;
  for (std::string line; std::getline(lines, line);) {
    ++number;
    std::istringstream words{line};
    std::vector<std::string> w;
    for (std::string x; words >> x;)
      w.push_back(std::move(x));
    if (w.empty() || w[0].front() == '#')
      continue;
    auto bad = [&](std::string_view why) {
      return error{errc::invalid_argument,
                   fmt::format("fault rules, line {} ('{}'): {}", number, line, why)};
    };
    bool is_drop = w[0] == "drop";
    if (!is_drop && w[0] != "delay")
      return bad("expected 'drop <host:port> [in|out]' or 'delay <host:port> <duration> "
                 "[in|out]'");
    std::size_t args = is_drop ? 2 : 3;
    if (w.size() < args || w.size() > args + 1)
      return bad(is_drop ? "expected 'drop <host:port> [in|out]'"
                         : "expected 'delay <host:port> <duration> [in|out]'");
    auto peer = node_address::parse(w[1]);
    if (!peer)
      return bad(peer.error().message());
    auto which = frame_directions::both;
    if (w.size() == args + 1) {
      if (w[args] == "in")
        which = frame_directions::incoming;
      else if (w[args] == "out")
        which = frame_directions::outgoing;
      else
        return bad(fmt::format("direction '{}' is neither 'in' nor 'out'", w[args]));
    }
    auto verdict = filter_verdict::drop();
    if (!is_drop) {
      auto d = parse_duration(w[2]);
      if (!d)
        return bad(d.error().message());
      verdict = filter_verdict::hold(*d);
    }
    apply(parsed[*peer], verdict, which);
  }
  std::lock_guard<std::mutex> guard{mtx_};
  rules_.swap(parsed);
  return {};
}

} // namespace troupe::remote
