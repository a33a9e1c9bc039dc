// Supervision: strategies, restart policies, intensity + escalation, backoff, stable
// handles, nested trees and stop order.
#include "support/node_fixture.hpp"
#include "support/wait.hpp"

#include "troupe/actors/ask.hpp"
#include "troupe/actors/atoms.hpp"
#include "troupe/actors/supervisor.hpp"

#include <caf/all.hpp>

#include <map>
#include <mutex>
#include <numeric>

using namespace std::chrono_literals;
using troupe::errc;

namespace {

using inc_atom = caf::atom_constant<caf::atom("inc")>;
using crash_atom = caf::atom_constant<caf::atom("crash")>;
using quit_atom = caf::atom_constant<caf::atom("quit")>;
using hold_atom = caf::atom_constant<caf::atom("hold")>;

// Shared record of what the workers did, across incarnations.
struct journal {
  std::mutex mtx;
  std::map<std::string, int> starts;
  std::vector<std::string> stops;  // in termination order
  std::vector<int> received;       // one-way ints, in arrival order, all incarnations

  int starts_of(const std::string& name) {
    std::lock_guard<std::mutex> guard{mtx};
    return starts[name];
  }
  std::vector<std::string> stop_order() {
    std::lock_guard<std::mutex> guard{mtx};
    return stops;
  }
  std::vector<int> received_ints() {
    std::lock_guard<std::mutex> guard{mtx};
    return received;
  }
};

struct worker_state {
  int value = 0;
};

// A counter that can be told to crash (throw), quit normally, or never answer.
caf::behavior worker(caf::stateful_actor<worker_state>* self, std::shared_ptr<journal> j,
                     std::string name) {
  {
    std::lock_guard<std::mutex> guard{j->mtx};
    ++j->starts[name];
  }
  self->attach_functor([j, name](const caf::error&) {
    std::lock_guard<std::mutex> guard{j->mtx};
    j->stops.push_back(name);
  });
  return {
    [self](inc_atom) { return ++self->state.value; },
    [self](caf::get_atom) { return self->state.value; },
    [](crash_atom) -> int { throw std::runtime_error("boom"); },
    [self](quit_atom) { self->quit(); },
    [self](hold_atom) -> caf::result<int> { return self->make_response_promise<int>(); },
    [j](int x) {
      std::lock_guard<std::mutex> guard{j->mtx};
      j->received.push_back(x);
    },
  };
}

troupe::child_spec worker_child(std::shared_ptr<journal> j, std::string name,
                                troupe::restart_policy policy = troupe::restart_policy::permanent) {
  auto spec = troupe::make_child(name, worker, j, name);
  spec.restart = policy;
  return spec;
}

troupe::supervisor_spec quick_spec(std::string name, troupe::restart_strategy strategy) {
  troupe::supervisor_spec spec;
  spec.name = std::move(name);
  spec.strategy = strategy;
  spec.max_restarts = 10;
  spec.within = 10s;
  spec.backoff = troupe::backoff_policy{1ms, 10ms, 2.0, 0.0};
  return spec;
}

struct fixture {
  std::unique_ptr<troupe::node> node = troupe::test::make_node();
  std::shared_ptr<journal> j = std::make_shared<journal>();

  caf::actor_system& sys() { return node->system(); }

  caf::actor handle(const caf::actor& sup, const std::string& name) {
    auto h = troupe::child_handle(sys(), sup, name, 2s);
    REQUIRE(h);
    return *h;
  }

  int ask_int(const caf::actor& dest, auto atom) {
    auto r = troupe::ask<int>(sys(), dest, 5s, atom);
    INFO((r ? std::string{} : r.error().to_string()));
    REQUIRE(r);
    return *r;
  }

  troupe::child_info info(const caf::actor& sup, const std::string& name) {
    auto children = troupe::which_children(sys(), sup, 2s);
    REQUIRE(children);
    for (auto& c : *children)
      if (c.name == name)
        return c;
    FAIL("no child named " << name);
    return {};
  }

  bool has_child(const caf::actor& sup, const std::string& name) {
    auto children = troupe::which_children(sys(), sup, 2s);
    REQUIRE(children);
    for (auto& c : *children)
      if (c.name == name)
        return true;
    return false;
  }

  // A one_for_one supervisor of one permanent worker "w", and w's stable handle.
  struct supervised_w {
    caf::actor sup;
    caf::actor w;
  };
  supervised_w supervise_w(troupe::backoff_policy backoff = {1ms, 10ms, 2.0, 0.0}) {
    auto spec = quick_spec("s", troupe::restart_strategy::one_for_one);
    spec.backoff = backoff;
    spec.children = {worker_child(j, "w")};
    auto sup = node->spawn_supervisor(spec);
    REQUIRE(sup);
    return {*sup, handle(*sup, "w")};
  }

  // Waits until `name` runs its `n`-th incarnation and is reported running.
  void wait_running(const caf::actor& sup, const std::string& name, int n) {
    REQUIRE(troupe::test::wait_until([&] { return j->starts_of(name) >= n; }));
    REQUIRE(troupe::test::wait_until([&] { return info(sup, name).state == "running"; }));
  }
};

} // namespace

TEST_CASE("backoff grows exponentially up to its maximum, with bounded jitter") {
  troupe::backoff_policy b{10ms, 100ms, 2.0, 0.5};
  CHECK(b.delay(1, 0.0) == 10ms);
  CHECK(b.delay(2, 0.0) == 20ms);
  CHECK(b.delay(3, 0.0) == 40ms);
  CHECK(b.delay(4, 0.0) == 80ms);
  CHECK(b.delay(5, 0.0) == 100ms);
  CHECK(b.delay(50, 0.0) == 100ms);
  CHECK(b.delay(1, 0.999) < 15ms);
  CHECK(b.delay(1, 0.999) > 14ms);
}

TEST_CASE("one_for_one restarts only the failed child, with fresh state") {
  fixture f;
  auto spec = quick_spec("s", troupe::restart_strategy::one_for_one);
  spec.children = {worker_child(f.j, "a"), worker_child(f.j, "b")};
  auto sup = f.node->spawn_supervisor(spec);
  REQUIRE(sup);
  auto a = f.handle(*sup, "a");
  auto b = f.handle(*sup, "b");
  CHECK(f.ask_int(a, inc_atom::value) == 1);
  CHECK(f.ask_int(b, inc_atom::value) == 1);
  // The requester of the failing message gets an error naming the failure, not a timeout.
  auto crash = troupe::ask<int>(f.sys(), a, 30s, crash_atom::value);
  REQUIRE_FALSE(crash);
  CHECK(crash.error().code() == errc::actor_failed);
  CHECK(crash.error().message().find("boom") != std::string::npos);
  f.wait_running(*sup, "a", 2);
  // The stable handle reaches the new incarnation, which starts from scratch.
  CHECK(f.ask_int(a, inc_atom::value) == 1);
  CHECK(f.ask_int(b, inc_atom::value) == 2);
  CHECK(f.j->starts_of("b") == 1);
  CHECK(f.info(*sup, "a").restarts == 1);
  CHECK(f.info(*sup, "b").restarts == 0);
}

TEST_CASE("one_for_all restarts every child when one fails") {
  fixture f;
  auto spec = quick_spec("s", troupe::restart_strategy::one_for_all);
  spec.children = {worker_child(f.j, "a"), worker_child(f.j, "b"), worker_child(f.j, "c")};
  auto sup = f.node->spawn_supervisor(spec);
  REQUIRE(sup);
  auto b = f.handle(*sup, "b");
  auto c = f.handle(*sup, "c");
  CHECK(f.ask_int(c, inc_atom::value) == 1);
  CHECK_FALSE(troupe::ask<int>(f.sys(), b, 30s, crash_atom::value));
  for (auto name : {"a", "b", "c"})
    f.wait_running(*sup, name, 2);
  CHECK(f.ask_int(c, caf::get_atom::value) == 0);
  // Siblings were stopped newest first.
  auto stops = f.j->stop_order();
  REQUIRE(stops.size() == 3);
  CHECK(stops[0] == "b");  // the failure itself
  CHECK(stops[1] == "c");
  CHECK(stops[2] == "a");
}

TEST_CASE("rest_for_one restarts the failed child and those started after it") {
  fixture f;
  auto spec = quick_spec("s", troupe::restart_strategy::rest_for_one);
  spec.children = {worker_child(f.j, "a"), worker_child(f.j, "b"), worker_child(f.j, "c")};
  auto sup = f.node->spawn_supervisor(spec);
  REQUIRE(sup);
  auto a = f.handle(*sup, "a");
  auto b = f.handle(*sup, "b");
  CHECK(f.ask_int(a, inc_atom::value) == 1);
  CHECK_FALSE(troupe::ask<int>(f.sys(), b, 30s, crash_atom::value));
  f.wait_running(*sup, "b", 2);
  f.wait_running(*sup, "c", 2);
  CHECK(f.j->starts_of("a") == 1);
  CHECK(f.ask_int(a, caf::get_atom::value) == 1);
}

TEST_CASE("restart policies: permanent, transient and temporary") {
  fixture f;
  auto spec = quick_spec("s", troupe::restart_strategy::one_for_one);
  spec.children = {worker_child(f.j, "perm", troupe::restart_policy::permanent),
                   worker_child(f.j, "trans", troupe::restart_policy::transient),
                   worker_child(f.j, "trans2", troupe::restart_policy::transient),
                   worker_child(f.j, "temp", troupe::restart_policy::temporary)};
  auto sup = f.node->spawn_supervisor(spec);
  REQUIRE(sup);
  SUBCASE("permanent children restart even after a normal exit") {
    caf::anon_send(f.handle(*sup, "perm"), quit_atom::value);
    f.wait_running(*sup, "perm", 2);
  }
  SUBCASE("transient children restart after a failure only") {
    auto trans = f.handle(*sup, "trans");
    CHECK_FALSE(troupe::ask<int>(f.sys(), trans, 30s, crash_atom::value));
    f.wait_running(*sup, "trans", 2);
    auto trans2 = f.handle(*sup, "trans2");
    caf::anon_send(trans2, quit_atom::value);
    REQUIRE(troupe::test::wait_until([&] { return f.info(*sup, "trans2").state == "stopped"; }));
    CHECK(f.j->starts_of("trans2") == 1);
    // Its stable handle now answers that the child is gone for good.
    auto r = troupe::ask<int>(f.sys(), trans2, 5s, inc_atom::value);
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == errc::stopped);
  }
  SUBCASE("temporary children are never restarted and leave the supervisor") {
    auto temp = f.handle(*sup, "temp");
    CHECK_FALSE(troupe::ask<int>(f.sys(), temp, 30s, crash_atom::value));
    REQUIRE(troupe::test::wait_until([&] { return !f.has_child(*sup, "temp"); }));
    CHECK(f.j->starts_of("temp") == 1);
  }
}

TEST_CASE("exceeding the restart intensity escalates to the parent supervisor") {
  fixture f;
  auto inner = quick_spec("inner", troupe::restart_strategy::one_for_one);
  inner.max_restarts = 2;
  inner.within = 60s;
  inner.children = {worker_child(f.j, "w")};
  auto root = quick_spec("root", troupe::restart_strategy::one_for_one);
  root.children = {troupe::make_supervisor_child(inner)};
  auto sup = f.node->spawn_supervisor(root);
  REQUIRE(sup);
  auto inner_handle = f.handle(*sup, "inner");
  for (int i = 1; i <= 2; ++i) {
    auto w = f.handle(inner_handle, "w");
    CHECK_FALSE(troupe::ask<int>(f.sys(), w, 30s, crash_atom::value));
    f.wait_running(inner_handle, "w", i + 1);
  }
  CHECK(f.info(*sup, "inner").restarts == 0);
  // The third failure within the window is one too many: `inner` gives up, stops
  // its children and fails; `root` restarts it (and with it a fresh `w`).
  CHECK_FALSE(troupe::ask<int>(f.sys(), f.handle(inner_handle, "w"), 30s, crash_atom::value));
  REQUIRE(troupe::test::wait_until([&] { return f.info(*sup, "inner").restarts == 1; }));
  REQUIRE(troupe::test::wait_until([&] { return f.info(*sup, "inner").state == "running"; }));
  REQUIRE(troupe::test::wait_until([&] { return f.j->starts_of("w") == 4; }));
  // The stable handle of `inner` survived the restart.
  CHECK(f.ask_int(f.handle(inner_handle, "w"), inc_atom::value) == 1);
}

TEST_CASE("a top-level supervisor that gives up stops its whole subtree") {
  fixture f;
  auto spec = quick_spec("fragile", troupe::restart_strategy::one_for_one);
  spec.max_restarts = 0;
  spec.children = {worker_child(f.j, "w"), worker_child(f.j, "x")};
  auto sup = f.node->spawn_supervisor(spec);
  REQUIRE(sup);
  CHECK_FALSE(troupe::ask<int>(f.sys(), f.handle(*sup, "w"), 30s, crash_atom::value));
  REQUIRE(troupe::test::wait_until([&] { return f.j->stop_order().size() == 2; }));
  auto r = troupe::which_children(f.sys(), *sup, 2s);
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == errc::actor_down);
}

TEST_CASE("backoff between restarts grows with each failure inside the window") {
  fixture f;
  auto [sup, w] = f.supervise_w(troupe::backoff_policy{2ms, 1s, 2.0, 0.0});
  std::vector<troupe::duration> delays;
  for (int i = 1; i <= 3; ++i) {
    CHECK_FALSE(troupe::ask<int>(f.sys(), w, 30s, crash_atom::value));
    f.wait_running(sup, "w", i + 1);
    delays.push_back(f.info(sup, "w").last_backoff);
  }
  CHECK(delays[0] == 2ms);
  CHECK(delays[1] == 4ms);
  CHECK(delays[2] == 8ms);
}

TEST_CASE("the stable handle buffers messages while the child restarts") {
  fixture f;
  auto [sup, w] = f.supervise_w(troupe::backoff_policy{300ms, 300ms, 1.0, 0.0});
  CHECK(f.ask_int(w, inc_atom::value) == 1);
  CHECK_FALSE(troupe::ask<int>(f.sys(), w, 30s, crash_atom::value));
  // Sent right after the failure reply, while the child restarts: buffered by the
  // handle and answered by the new incarnation.
  CHECK(f.ask_int(w, inc_atom::value) == 1);
  CHECK(f.j->starts_of("w") == 2);
}

TEST_CASE("a full handle buffer answers overloaded, and buffered requests are answered at stop") {
  fixture f;
  auto spec = quick_spec("s", troupe::restart_strategy::one_for_one);
  spec.backoff = troupe::backoff_policy{60s, 60s, 1.0, 0.0};
  auto child = worker_child(f.j, "w");
  child.buffer_capacity = 2;
  spec.children = {child};
  auto sup = f.node->spawn_supervisor(spec);
  REQUIRE(sup);
  auto w = f.handle(*sup, "w");
  CHECK_FALSE(troupe::ask<int>(f.sys(), w, 30s, crash_atom::value));
  REQUIRE(troupe::test::wait_until([&] { return f.info(*sup, "w").state == "restarting"; }));
  // Blocking actors see responses only through their response handles.
  caf::scoped_actor self{f.sys()};
  using handle_type = decltype(self->request(w, caf::infinite, inc_atom::value));
  std::vector<handle_type> pending;
  for (int i = 0; i < 3; ++i)
    pending.push_back(self->request(w, caf::infinite, inc_atom::value));
  auto outcome = [&](handle_type& h) {
    troupe::error result{troupe::errc::internal, "no answer"};
    h.receive([&](int) { result = troupe::error{troupe::errc::ok, "a reply"}; },
              [&](caf::error& e) { result = troupe::from_caf_error(e); });
    return result;
  };
  // The third does not fit: it is refused at once.
  CHECK(outcome(pending[2]).code() == errc::overloaded);
  // Stopping the supervisor answers the two buffered requests instead of dropping them.
  REQUIRE(troupe::ask<void>(f.sys(), *sup, 10s, troupe::stop_atom::value));
  CHECK(outcome(pending[0]).code() == errc::stopped);
  CHECK(outcome(pending[1]).code() == errc::stopped);
}

TEST_CASE("messages held by a stable handle during a restart arrive first, in send order") {
  fixture f;
  auto [sup, w] = f.supervise_w(troupe::backoff_policy{200ms, 200ms, 1.0, 0.0});
  CHECK_FALSE(troupe::ask<int>(f.sys(), w, 30s, crash_atom::value));
  // Held while the child restarts (the handle has no incarnation to give them to).
  for (int i = 1; i <= 100; ++i)
    caf::anon_send(w, i);
  f.wait_running(sup, "w", 2);
  // Sent to the new incarnation directly.
  for (int i = 101; i <= 200; ++i)
    caf::anon_send(w, i);
  REQUIRE(troupe::test::wait_until([&] { return f.j->received_ints().size() == 200; }));
  std::vector<int> expected(200);
  std::iota(expected.begin(), expected.end(), 1);
  CHECK(f.j->received_ints() == expected);
}

TEST_CASE("a stable handle ends with its supervisor: monitors learn it, requests get stopped") {
  fixture f;
  auto [sup, w] = f.supervise_w();
  CHECK(f.ask_int(w, inc_atom::value) == 1);
  caf::scoped_actor self{f.sys()};
  self->monitor(w);
  REQUIRE(troupe::ask<void>(f.sys(), sup, 10s, troupe::stop_atom::value));
  bool down = false;
  self->receive([&](caf::down_msg& dm) { down = dm.source == w.address(); },
                caf::after(std::chrono::seconds{10}) >> [] {});
  CHECK(down);
  auto r = troupe::ask<int>(f.sys(), w, 5s, inc_atom::value);
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == errc::stopped);
}

TEST_CASE("nested supervisors form a tree that stops children before parents") {
  fixture f;
  auto leaf = quick_spec("leaf", troupe::restart_strategy::one_for_one);
  leaf.children = {worker_child(f.j, "l1"), worker_child(f.j, "l2")};
  auto mid = quick_spec("mid", troupe::restart_strategy::one_for_one);
  mid.children = {worker_child(f.j, "m1"), troupe::make_supervisor_child(leaf),
                  worker_child(f.j, "m2")};
  auto sup = f.node->spawn_supervisor(mid);
  REQUIRE(sup);
  auto leaf_handle = f.handle(*sup, "leaf");
  auto leaf_children = troupe::which_children(f.sys(), leaf_handle, 2s);
  REQUIRE(leaf_children);
  REQUIRE(leaf_children->size() == 2);
  CHECK(f.ask_int(f.handle(leaf_handle, "l2"), inc_atom::value) == 1);
  auto report = f.node->shutdown();
  CHECK(report.clean);
  // Reverse start order at every level: m2, then leaf's subtree (l2, l1), then m1.
  CHECK(f.j->stop_order() == std::vector<std::string>{"m2", "l2", "l1", "m1"});
}

TEST_CASE("children can be added to a running supervisor") {
  fixture f;
  auto sup = f.node->spawn_supervisor(quick_spec("s", troupe::restart_strategy::one_for_one));
  REQUIRE(sup);
  auto h = troupe::start_child(f.sys(), *sup, worker_child(f.j, "late"), 2s);
  REQUIRE(h);
  CHECK(f.ask_int(*h, inc_atom::value) == 1);
  auto missing = troupe::child_handle(f.sys(), *sup, "nope", 2s);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code() == errc::not_found);
}
