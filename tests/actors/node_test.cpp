#include "support/node_fixture.hpp"
#include "support/wait.hpp"

#include "troupe/actors/ask.hpp"
#include "troupe/actors/node.hpp"

#include <caf/all.hpp>

using namespace std::chrono_literals;

namespace {

caf::behavior echo(caf::event_based_actor*) {
  return {[](int x) { return x; }};
}

} // namespace

TEST_CASE("a node spawns troupe actors and answers asks") {
  auto n = troupe::test::make_node();
  auto a = n->spawn("echo", echo);
  REQUIRE(a);
  auto r = troupe::ask<int>(n->system(), *a, 2s, 21);
  REQUIRE(r);
  CHECK(*r == 21);
  auto report = n->shutdown();
  CHECK(report.clean);
}
