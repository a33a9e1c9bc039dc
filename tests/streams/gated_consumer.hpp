// gated_consumer: an actor for actor_ack_sink that acknowledges elements only
// when the test releases them (release_msg{n}), so a sink is as slow as the test
// wants without sleeping. It counts the acknowledged elements and, with `keep`,
// keeps their values.
#pragma once

#include <caf/all.hpp>

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

namespace troupe::test {

struct release_msg {
  int n = 0;
};

/// What a gated consumer acknowledged: a count, and the values when `keep`.
struct gate_record {
  std::atomic<int> acked{0};
  bool keep = false;
  std::mutex mtx;
  std::vector<int> values;
};

struct gate_state {
  std::deque<std::pair<int, caf::response_promise>> held;
  int credit = 0;
};

inline caf::behavior gated_recorder(caf::stateful_actor<gate_state>* self,
                                    std::shared_ptr<gate_record> rec) {
  auto flush = [self, rec] {
    while (self->state.credit > 0 && !self->state.held.empty()) {
      auto [x, rp] = std::move(self->state.held.front());
      self->state.held.pop_front();
      --self->state.credit;
      if (rec->keep) {
        std::lock_guard<std::mutex> lock{rec->mtx};
        rec->values.push_back(x);
      }
      rec->acked.fetch_add(1);
      rp.deliver(caf::unit);
    }
  };
  return {
    [self, flush](int x) -> caf::result<void> {
      auto rp = self->make_response_promise();
      self->state.held.emplace_back(x, rp);
      flush();
      return rp;
    },
    [self, flush](release_msg r) {
      self->state.credit += r.n;
      flush();
    },
  };
}

} // namespace troupe::test

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::test::release_msg)
