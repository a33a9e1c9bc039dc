// Actors the remote tests and helper programs register on their nodes.
#pragma once

#include "remote/remote_support.hpp"

#include "troupe/actors/caf_error.hpp"

#include <caf/all.hpp>

#include <map>

namespace troupe::test {

/// ping{n} -> pong{n, text}; a negative n is answered with an invalid_argument error.
inline caf::behavior echo_actor(caf::event_based_actor*) {
  return {
    [](const ping& p) -> caf::result<pong> {
      if (p.n < 0)
        return to_caf_error(error{errc::invalid_argument, "negative ping " + std::to_string(p.n)});
      return pong{p.n, p.text};
    },
    [](const std::string& s) { return s + "!"; },
    // A message of several values, answered with several values.
    [](caf::get_atom, std::int64_t x, const std::string& s) {
      return caf::make_message(x + 1, s + "?");
    },
  };
}

struct sink_state {
  std::map<std::string, std::uint64_t> last;  // per sender
  sink_stats stats;
};

/// Counts `numbered` messages and checks each sender's sequence.
inline caf::behavior sink_actor(caf::stateful_actor<sink_state>* self) {
  return {
    [=](const numbered& m) {
      auto& st = self->state;
      auto [it, fresh] = st.last.emplace(m.sender, m.seq);
      if (!fresh) {
        if (m.seq != it->second + 1)
          ++st.stats.out_of_order;
        it->second = m.seq;
      } else if (m.seq != 0) {
        ++st.stats.out_of_order;
      }
      ++st.stats.received;
    },
    [=](const sink_stats_request&) { return self->state.stats; },
  };
}

struct blackhole_state {
  std::vector<caf::response_promise> held;
};

/// Accepts pings and never answers them; calls `on_ping` (if set) for each.
inline caf::behavior blackhole_actor(caf::stateful_actor<blackhole_state>* self,
                                     std::function<void()> on_ping) {
  return {
    [=](const ping&) -> caf::result<pong> {
      self->state.held.push_back(self->make_response_promise());
      if (on_ping)
        on_ping();
      return caf::delegated<pong>{};
    },
  };
}

/// relay_request{target, ping}: sends the ping to the target actor (one-way).
inline caf::behavior relay_actor(caf::event_based_actor* self) {
  return {
    [=](const relay_request& r) {
      if (auto t = remote::transport::of(self->system()))
        self->send(t->actor_for(r.target), r.what);
    },
  };
}

} // namespace troupe::test
