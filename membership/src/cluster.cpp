#include "troupe/membership/cluster.hpp"

#include "cluster_actor.hpp"

#include "troupe/actors/ask.hpp"
#include "troupe/actors/node.hpp"

#include <caf/all.hpp>

#include <fmt/format.h>

namespace troupe::membership {

namespace {

constexpr duration command_timeout = std::chrono::seconds{5};

/// Waits on the shared view until `done(view, terminated)` or the deadline.
template <class Pred>
bool wait_for_view(const detail::cluster_shared& s, std::chrono::steady_clock::time_point deadline,
                   Pred done) {
  std::unique_lock<std::mutex> lock{s.mtx};
  return s.changed.wait_until(lock, deadline, [&] { return done(s.view, s.terminated); });
}

} // namespace

bool cluster_view::self_up() const {
  auto m = self_member();
  return m && m->status == member_status::up;
}

expected<std::shared_ptr<cluster>> cluster::start(node& n, membership_settings settings) {
  auto t = remote::transport::of(n);
  if (!t)
    return error{errc::invalid_argument,
                 "cluster::start: start the node's transport first (remote::transport::start)"};
  if (of(n))
    return error{errc::invalid_argument, "cluster::start: this node's cluster already runs"};
  auto shared = std::make_shared<detail::cluster_shared>();
  shared->self = t->identity();
  shared->settings = std::move(settings);
  shared->transport = t;
  shared->view.self = shared->self;
  shared->view.state = std::make_shared<const gossip>();
  auto actor = n.spawn("troupe.cluster", detail::cluster_actor, shared);
  if (!actor)
    return actor.error();
  shared->actor = *actor;
  std::shared_ptr<cluster> c{new cluster{shared}};
  n.context().set_extension<cluster>(c);
  // Leave before any actor stops (the transport must still carry the goodbye),
  // then wait for the removal, each within its phase.
  n.add_shutdown_task(shutdown_phase::cluster_leave, "cluster: leave",
                      [c](node::deadline until) {
                        if (c->terminated())
                          return;
                        if (!c->view().self_member())
                          return;  // never joined
                        (void) c->leave();
                        wait_for_view(*c->shared_, until, [](const cluster_view& v, auto& ended) {
                          auto m = v.self_member();
                          return ended || !m || m->status == member_status::exiting
                                 || m->status == member_status::down;
                        });
                      });
  n.add_shutdown_task(shutdown_phase::cluster_exiting, "cluster: wait until removed",
                      [c](node::deadline until) {
                        wait_for_view(*c->shared_, until,
                                      [](const cluster_view&, auto& ended) { return ended.has_value(); });
                      });
  return c;
}

std::shared_ptr<cluster> cluster::of(node& n) {
  return n.context().extension<cluster>();
}

std::shared_ptr<cluster> cluster::of(caf::actor_system& sys) {
  auto ctx = find_context(sys);
  return ctx ? ctx->extension<cluster>() : nullptr;
}

cluster::~cluster() = default;

const node_identity& cluster::self() const noexcept {
  return shared_->self;
}

const membership_settings& cluster::settings() const noexcept {
  return shared_->settings;
}

cluster_view cluster::view() const {
  std::lock_guard<std::mutex> guard{shared_->mtx};
  return shared_->view;
}

void cluster::subscribe(caf::actor subscriber) {
  caf::anon_send(shared_->actor, detail::subscribe_atom::value, std::move(subscriber));
}

void cluster::unsubscribe(const caf::actor& subscriber) {
  caf::anon_send(shared_->actor, detail::unsubscribe_atom::value, subscriber);
}

cluster::subscription cluster::subscribe(std::function<void(const cluster_event&)> fn) {
  auto id = shared_->next_callback++;
  caf::anon_send(shared_->actor, detail::subscribe_atom::value, id,
                 detail::event_callback{std::move(fn)});
  return id;
}

void cluster::unsubscribe(subscription id) {
  caf::anon_send(shared_->actor, detail::unsubscribe_atom::value, id);
}

void cluster::on_terminated(std::function<void(const cluster_event&)> fn) {
  std::optional<cluster_event> already;
  {
    std::lock_guard<std::mutex> guard{shared_->mtx};
    if (shared_->terminated)
      already = shared_->terminated;
    else
      shared_->on_terminated.push_back(fn);
  }
  if (already)
    fn(*already);
}

std::optional<cluster_event> cluster::terminated() const {
  std::lock_guard<std::mutex> guard{shared_->mtx};
  return shared_->terminated;
}

expected<void> cluster::join(std::vector<node_address> seeds) {
  if (seeds.empty())
    return error{errc::invalid_argument, "cluster::join: no seed nodes given"};
  caf::anon_send(shared_->actor, detail::join_atom::value, std::move(seeds));
  return {};
}

expected<void> cluster::leave() {
  return leave(shared_->self.address);
}

expected<void> cluster::leave(const node_address& node) {
  auto& sys = shared_->actor->home_system();
  return ask<void>(sys, shared_->actor, command_timeout, detail::leave_atom::value, node);
}

expected<void> cluster::down(const node_address& node) {
  auto& sys = shared_->actor->home_system();
  return ask<void>(sys, shared_->actor, command_timeout, detail::down_atom::value, node);
}

expected<void> cluster::wait_until_up(duration timeout) const {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool done = wait_for_view(*shared_, deadline, [](const cluster_view& v, auto& ended) {
    return ended || v.self_up();
  });
  if (auto ended = terminated())
    return error{errc::stopped, fmt::format("this node's membership ended: {}", to_string(*ended))};
  if (!done)
    return error{errc::timeout,
                 fmt::format("this node did not become up within {}", format_duration(timeout))};
  return {};
}

bool cluster::wait_until_gone(duration timeout) const {
  return wait_for_view(*shared_, std::chrono::steady_clock::now() + timeout,
                       [](const cluster_view&, auto& ended) { return ended.has_value(); });
}

caf::actor cluster::actor() const {
  return shared_->actor;
}

void cluster::stop() {
  caf::anon_send_exit(shared_->actor, caf::exit_reason::user_shutdown);
}

} // namespace troupe::membership
