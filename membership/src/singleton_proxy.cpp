#include "troupe/membership/singleton.hpp"

#include "singleton_protocol.hpp"

#include "troupe/actors/ask.hpp"
#include "troupe/actors/caf_error.hpp"
#include "troupe/actors/forwarding.hpp"
#include "troupe/actors/node.hpp"
#include "troupe/actors/remote/transport.hpp"
#include "troupe/membership/cluster.hpp"

#include <caf/all.hpp>
#include <fmt/format.h>

#include <deque>

namespace troupe::membership {

namespace {

using detail::identify_atom;
using reidentify_atom = caf::atom_constant<caf::atom("s_reid")>;

struct proxy_state {
  std::string name;
  singleton_proxy_options options;
  std::shared_ptr<cluster> members;
  std::weak_ptr<remote::transport> transport;
  std::optional<node_identity> target;  ///< where it should run
  caf::actor instance;                   ///< confirmed running there
  bool identifying = false;
  std::deque<caf::mailbox_element_ptr> buffer;

  ~proxy_state() {
    auto reason = to_caf_error(error{errc::stopped, fmt::format("the proxy of singleton '{}' "
                                                                "stopped", name)});
    for (auto& e : buffer)
      answer_held(*e, reason);
  }
};

using proxy_ptr = caf::stateful_actor<proxy_state>*;

std::optional<node_identity> where_it_runs(const proxy_state& st) {
  auto v = st.members->view();
  const member* result = nullptr;
  for (auto& m : v.state->members)
    if (m.status == member_status::up && (st.options.role.empty() || m.has_role(st.options.role))
        && (!result || m.is_older_than(*result)))
      result = &m;
  return result ? std::optional{result->node} : std::nullopt;
}

void flush(proxy_ptr self) {
  auto& st = self->state;
  while (!st.buffer.empty() && st.instance) {
    st.instance->enqueue(std::move(st.buffer.front()), self->context());
    st.buffer.pop_front();
  }
}

void identify(proxy_ptr self) {
  auto& st = self->state;
  auto t = st.transport.lock();
  if (!st.target || !t || st.identifying)
    return;
  st.identifying = true;
  auto target = *st.target;
  auto manager = t->actor_for(target, detail::manager_name(st.name));
  ask<bool>(self, manager, st.options.identify_timeout, identify_atom::value)
    .then([self, target](expected<bool> running) {
      auto& s = self->state;
      s.identifying = false;
      if (s.target != target)
        return identify(self);  // it moved meanwhile
      if (running && *running) {
        if (auto tr = s.transport.lock())
          s.instance = tr->actor_for(target, detail::instance_name(s.name));
        flush(self);
        return;
      }
      // Not started yet (hand-over in progress) or unreachable: ask again soon.
      self->delayed_send(self, std::chrono::milliseconds{100}, reidentify_atom::value);
    });
}

void retarget(proxy_ptr self) {
  auto& st = self->state;
  auto target = where_it_runs(st);
  if (target == st.target)
    return;
  st.target = target;
  st.instance = nullptr;  // hold messages until the new home answers
  identify(self);
}

caf::behavior proxy(proxy_ptr self, std::string name, singleton_proxy_options options,
                    std::shared_ptr<cluster> c, std::shared_ptr<remote::transport> t) {
  auto& st = self->state;
  st.name = std::move(name);
  st.options = std::move(options);
  st.members = c;
  st.transport = t;
  c->subscribe(caf::actor{self});
  auto& dropped = node_of(self).metrics().counter(
    "troupe_singleton_proxy_dropped_total", {{"singleton", st.name}},
    "Messages a singleton proxy refused because its buffer was full.");
  self->set_default_handler(
    [self, &dropped](caf::scheduled_actor*, caf::message_view& x) -> caf::result<caf::message> {
      auto& s = self->state;
      if (s.instance) {
        s.instance->enqueue(take_current_message(self, x), self->context());
        return caf::delegated<caf::message>{};
      }
      if (s.buffer.size() >= s.options.buffer_size) {
        dropped.inc();
        return to_caf_error(error{errc::overloaded,
                                  fmt::format("singleton '{}' is moving or not yet found and its "
                                              "proxy's buffer of {} messages is full",
                                              s.name, s.options.buffer_size)});
      }
      s.buffer.push_back(take_current_message(self, x));
      return caf::delegated<caf::message>{};
    });
  return {
    [=](const cluster_event&) { retarget(self); },
    [=](reidentify_atom) { identify(self); },
  };
}

} // namespace

expected<caf::actor> singleton_proxy(node& n, std::string name, singleton_proxy_options options) {
  auto c = cluster::of(n);
  auto t = remote::transport::of(n);
  if (!c || !t)
    return error{errc::invalid_argument,
                 fmt::format("singleton_proxy('{}'): start the transport and the cluster first", name)};
  auto actor_name = fmt::format("troupe.singleton-proxy.{}", name);
  return n.spawn(std::move(actor_name), proxy, std::move(name), std::move(options), c, t);
}

} // namespace troupe::membership
