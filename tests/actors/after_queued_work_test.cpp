// send_after_queued_work (troupe/actors/detail/after_queued_work.hpp): the message
// comes once the worker ran the actors queued before it, so an actor that batches
// output sees the whole burst; it still comes where there is no troupe worker, and
// behind a chain of actors that never ends (a worker takes its queue's tail once
// it has waited long enough: job_queue::take_next).
#include "support/node_fixture.hpp"

#include "troupe/actors/detail/after_queued_work.hpp"

#include <caf/all.hpp>

#include <chrono>
#include <vector>

using namespace std::chrono_literals;

namespace after_queued_work_test {

using go_atom = caf::atom_constant<caf::atom("aqw_go")>;
using reply_atom = caf::atom_constant<caf::atom("aqw_reply")>;
using burst_atom = caf::atom_constant<caf::atom("aqw_burst")>;

caf::behavior replier(caf::event_based_actor* self) {
  return {[self](go_atom, const caf::actor& to) { self->send(to, reply_atom::value); }};
}

/// On `go`: tells each replier to answer it, then asks for the end of the burst;
/// answers `go` with the replies it had when the burst message came.
caf::behavior batcher(caf::event_based_actor* self, std::vector<caf::actor> repliers) {
  auto replies = std::make_shared<int>(0);
  auto waiting = std::make_shared<caf::response_promise>();
  return {
    [=](go_atom) -> caf::result<int> {
      *waiting = self->make_response_promise();
      for (auto& r : repliers)
        self->send(r, go_atom::value, caf::actor_cast<caf::actor>(self));
      troupe::detail::send_after_queued_work(self, caf::make_message(burst_atom::value));
      return caf::delegated<int>{};
    },
    [=](reply_atom) { ++*replies; },
    [=](burst_atom) { waiting->deliver(*replies); },
  };
}

int replies_at_end_of_burst(troupe::node& n, int repliers, bool detached) {
  std::vector<caf::actor> rs;
  for (int i = 0; i < repliers; ++i)
    rs.push_back(n.system().spawn(replier));
  auto b = detached ? n.system().spawn<caf::detached>(batcher, rs) : n.system().spawn(batcher, rs);
  caf::scoped_actor self{n.system()};
  int got = -1;
  self->request(b, 10s, go_atom::value)
    .receive([&](int r) { got = r; }, [&](caf::error& e) { FAIL(n.system().render(e)); });
  for (auto& r : rs)
    self->send_exit(r, caf::exit_reason::user_shutdown);
  self->send_exit(b, caf::exit_reason::user_shutdown);
  return got;
}

using ball_atom = caf::atom_constant<caf::atom("aqw_ball")>;

/// Sends the ball back at once, forever: two of them keep one worker's queue
/// busy at its head (each wakes the other, CAF's LIFO locality).
caf::behavior player(caf::event_based_actor* self) {
  return {[self](ball_atom, const caf::actor& other) {
    self->send(other, ball_atom::value, caf::actor_cast<caf::actor>(self));
  }};
}

caf::behavior echo_int(caf::event_based_actor*) {
  return {[](int x) { return x; }};
}

} // namespace after_queued_work_test

TEST_CASE("a message sent after the queued work comes once every actor the sender woke on its "
          "worker has run") {
  // One worker: the repliers are queued on the batcher's worker, none can be stolen.
  auto n = troupe::test::make_node({"scheduler.threads=1"});
  for (int repliers : {1, 10, 200})
    CHECK(after_queued_work_test::replies_at_end_of_burst(*n, repliers, false) == repliers);
  CHECK(n->shutdown().clean);
}

TEST_CASE("a message sent after the queued work still comes to an actor on its own thread") {
  auto n = troupe::test::make_node();
  // No end of burst to wait for there: only that it comes, after the sends.
  auto got = after_queued_work_test::replies_at_end_of_burst(*n, 10, true);
  CHECK(got >= 0);
  CHECK(got <= 10);
  CHECK(n->shutdown().clean);
}

TEST_CASE("work queued behind a chain of actors that never ends still runs on that worker") {
  using namespace after_queued_work_test;
  auto n = troupe::test::make_node({"scheduler.threads=1"});
  auto echo = n->system().spawn(echo_int);
  std::vector<caf::actor> rs{n->system().spawn(replier), n->system().spawn(replier)};
  auto b = n->system().spawn(batcher, rs);
  auto p1 = n->system().spawn(player);
  auto p2 = n->system().spawn(player);
  caf::anon_send(p1, ball_atom::value, p2);
  {
    caf::scoped_actor self{n->system()};
    // A request from outside the scheduler queues behind the chain.
    bool answered = false;
    self->request(echo, 10s, 7).receive([&](int x) { answered = x == 7; },
                                        [&](caf::error& e) { FAIL(n->system().render(e)); });
    CHECK(answered);
    // So does a message sent after the queued work.
    int replies = -1;
    self->request(b, 10s, go_atom::value)
      .receive([&](int r) { replies = r; }, [&](caf::error& e) { FAIL(n->system().render(e)); });
    CHECK(replies >= 0);
    for (auto& a : {p1, p2, echo, b, rs[0], rs[1]})
      self->send_exit(a, caf::exit_reason::user_shutdown);
  }  // the scoped actor ends before the node stops
  CHECK(n->shutdown().clean);
}
