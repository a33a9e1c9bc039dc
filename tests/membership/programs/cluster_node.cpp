// troupe-test-cluster-node: a cluster node for the multi-process membership tests.
// Runs node_main with a singleton "probe" whose instance prints
//   singleton started <host:port>
// on stdout when it starts here, and a compatibility entry `test.compat` that
// every member must share.
#include "troupe/actors/config.hpp"
#include "troupe/actors/node.hpp"
#include "troupe/actors/spawn.hpp"
#include "troupe/membership/cluster.hpp"
#include "troupe/membership/settings.hpp"
#include "troupe/membership/singleton.hpp"
#include "troupe/node_main.hpp"

#include <caf/all.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  troupe::node_program p;
  p.name = "cluster-node";
  p.add_config_keys = [](troupe::config_schema& s) {
    s.add("test.compat", troupe::config_type::string, std::string{"a"},
          "A value every member must share (join compatibility tests).");
  };
  p.configure_cluster = [](const troupe::config& cfg, troupe::membership::membership_settings& s)
    -> troupe::expected<void> {
    s.require_equal("test.compat", cfg.get_string("test.compat"));
    return {};
  };
  p.setup = [](troupe::node& n, troupe::membership::cluster& c) -> troupe::expected<void> {
    auto where = c.self().address.to_string();
    troupe::membership::singleton_spec spec;
    spec.name = "probe";
    spec.start = [where](caf::actor_system& sys) {
      return troupe::spawn_actor(sys, "probe", [where](caf::event_based_actor*) -> caf::behavior {
        std::printf("singleton started %s\n", where.c_str());
        std::fflush(stdout);
        return {[](int x) { return x; }};
      });
    };
    auto m = troupe::membership::start_singleton(n, spec);
    if (!m)
      return m.error();
    return {};
  };
  return troupe::node_main(argc, argv, p);
}
