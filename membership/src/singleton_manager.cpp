#include "troupe/membership/singleton.hpp"

#include "singleton_protocol.hpp"

#include "troupe/actors/node.hpp"
#include "troupe/actors/remote/transport.hpp"
#include "troupe/membership/cluster.hpp"
#include "troupe/membership/singleton_core.hpp"

#include <caf/all.hpp>
#include <fmt/format.h>

namespace troupe::membership {

namespace {

using detail::identify_atom;
using detail::tick_singleton_atom;

timestamp now() {
  return std::chrono::duration_cast<timestamp>(
    std::chrono::steady_clock::now().time_since_epoch());
}

struct manager_state {
  singleton_spec spec;
  std::unique_ptr<singleton_core> core;
  std::shared_ptr<cluster> members;
  std::weak_ptr<remote::transport> transport;
  caf::actor instance;
  std::vector<remote::transport::subscription> subscriptions;
};

using manager_ptr = caf::stateful_actor<manager_state>*;

void apply(manager_ptr self, singleton_effects& fx) {
  auto& st = self->state;
  auto t = st.transport.lock();
  auto& log = node_of(self).log();
  for (auto& m : fx.messages)
    if (t) {
      auto bytes = detail::encode(m);
      (void) t->send_packet(m.to, detail::channel_of(st.spec.name), detail::manifest, 1, bytes);
    }
  if (fx.start && !st.instance) {
    st.instance = st.spec.start(self->system());
    self->monitor(st.instance);
    if (t)
      (void) t->register_actor(detail::instance_name(st.spec.name), st.instance);
    log.info("singleton", "'{}' started on this node", st.spec.name);
    node_of(self).metrics()
      .counter("troupe_singleton_starts_total", {{"singleton", st.spec.name}},
               "Times a singleton instance started on this node.")
      .inc();
  }
  if (fx.stop && st.instance) {
    log.info("singleton", "'{}' hands over: stopping its instance here", st.spec.name);
    self->send_exit(st.instance, caf::exit_reason::user_shutdown);
  }
  fx.clear();
}

caf::behavior manager(manager_ptr self, singleton_spec spec, std::shared_ptr<cluster> c,
                      std::shared_ptr<remote::transport> t) {
  auto& st = self->state;
  st.spec = std::move(spec);
  st.members = c;
  st.transport = t;
  st.core = std::make_unique<singleton_core>(c->self(), st.spec.name, st.spec.role,
                                             st.spec.hand_over_retry_interval);
  st.subscriptions.push_back(
    t->subscribe_packets(detail::channel_of(st.spec.name), caf::actor{self}));
  (void) t->register_actor(detail::manager_name(st.spec.name), self);
  self->attach_functor([subs = st.subscriptions, weak = std::weak_ptr{t}] {
    if (auto tr = weak.lock())
      for (auto id : subs)
        tr->unsubscribe(id);
  });
  c->subscribe(caf::actor{self});
  self->set_down_handler([self](const caf::down_msg& dm) {
    auto& s = self->state;
    if (!s.instance || dm.source != s.instance.address())
      return;
    s.instance = nullptr;
    if (auto tr = s.transport.lock())
      tr->unregister_actor(detail::instance_name(s.spec.name));
    singleton_effects fx;
    s.core->instance_stopped(now(), fx);
    apply(self, fx);
  });
  auto retry = std::chrono::duration_cast<std::chrono::microseconds>(st.spec.hand_over_retry_interval);
  self->delayed_send(self, retry, tick_singleton_atom::value);
  return {
    [=](const cluster_event&) {
      auto& s = self->state;
      singleton_effects fx;
      s.core->update(now(), *s.members->view().state, fx);
      apply(self, fx);
    },
    [=](const remote::packet& p) {
      auto& s = self->state;
      auto m = detail::decode(p.payload);
      if (!m || m->from != p.from) {
        node_of(self).log().warn("singleton", "dropped a hand-over message for '{}' from {}",
                                 s.spec.name, p.from.to_string());
        return;
      }
      singleton_effects fx;
      s.core->receive(now(), *m, fx);
      apply(self, fx);
    },
    [=](tick_singleton_atom) {
      auto& s = self->state;
      singleton_effects fx;
      s.core->tick(now(), fx);
      apply(self, fx);
      self->delayed_send(self, retry, tick_singleton_atom::value);
    },
    // From proxies: does the instance run here?
    [=](identify_atom) { return self->state.core->running_here() && self->state.instance; },
  };
}

} // namespace

expected<caf::actor> start_singleton(node& n, singleton_spec spec) {
  auto c = cluster::of(n);
  auto t = remote::transport::of(n);
  if (!c || !t)
    return error{errc::invalid_argument,
                 fmt::format("start_singleton('{}'): start the transport and the cluster first",
                             spec.name)};
  if (spec.name.empty() || !spec.start)
    return error{errc::invalid_argument, "start_singleton: a name and a start function are required"};
  auto name = fmt::format("troupe.singleton-manager.{}", spec.name);
  return n.spawn(std::move(name), manager, std::move(spec), c, t);
}

} // namespace troupe::membership
