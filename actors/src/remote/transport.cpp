// The public API of the transport (transport.hpp): start, configuration,
// addressing, subscriptions, packets. The CAF side's machinery is in
// transport_send.cpp and transport_receive.cpp, the network side in the engine.
#include "remote/rules_watcher.hpp"
#include "remote/tls.hpp"
#include "remote/transport_state.hpp"

#include <caf/actor_cast.hpp>
#include <caf/make_actor.hpp>

#include <fmt/core.h>

namespace troupe::remote {

// -- configuration -----------------------------------------------------------------------

namespace {

expected<detail::engine_settings> settings_from(const troupe::config& cfg) {
  detail::engine_settings s;
  auto bad = [](std::string_view key, std::string why) {
    return error{errc::invalid_config, fmt::format("config key '{}': {}", key, why)};
  };
  s.host = cfg.get_string("node.host");
  auto port = cfg.get_int("node.port");
  if (port < 0 || port > 65535)
    return bad("node.port", "must be within 0..65535");
  s.port = static_cast<std::uint16_t>(port);
  s.advertised_host = cfg.get_string("transport.advertised-host");
  s.cluster = cfg.get_string("node.cluster-name");
  s.secret = cfg.get_string("transport.secret");
  auto max_frame = cfg.get_int("transport.max-frame-size");
  if (max_frame < wire::min_frame_limit || max_frame > (std::int64_t{1} << 30))
    return bad("transport.max-frame-size", fmt::format("must be within {}..{}",
                                                       wire::min_frame_limit, 1 << 30));
  s.max_frame = static_cast<std::uint32_t>(max_frame);
  auto queue = cfg.get_int("transport.max-queue-bytes");
  if (queue < max_frame + static_cast<std::int64_t>(wire::header_size))
    return bad("transport.max-queue-bytes",
               "must hold at least one frame of transport.max-frame-size");
  s.max_queue_bytes = static_cast<std::size_t>(queue);
  s.heartbeat_interval = cfg.get_duration("transport.heartbeat-interval");
  s.failure_timeout = cfg.get_duration("transport.failure-timeout");
  s.handshake_timeout = cfg.get_duration("transport.handshake-timeout");
  s.backoff_min = cfg.get_duration("transport.reconnect-backoff-min");
  s.backoff_max = cfg.get_duration("transport.reconnect-backoff-max");
  if (s.handshake_timeout <= duration{0})
    return bad("transport.handshake-timeout", "must be positive");
  if (s.backoff_min <= duration{0} || s.backoff_max < s.backoff_min)
    return bad("transport.reconnect-backoff-min",
               "must be positive and at most transport.reconnect-backoff-max");
  if (s.failure_timeout > duration{0} && s.failure_timeout <= s.heartbeat_interval)
    return bad("transport.failure-timeout", "must exceed transport.heartbeat-interval (or be 0)");
  constexpr std::int64_t max_cap = 1'000'000;
  for (auto [key, out] : {std::pair{"transport.max-connections", &s.max_connections},
                          std::pair{"transport.max-connections-per-address",
                                    &s.max_connections_per_address},
                          std::pair{"transport.max-pending-handshakes", &s.max_pending},
                          std::pair{"transport.max-pending-handshakes-per-address",
                                    &s.max_pending_per_address}}) {
    auto v = cfg.get_int(key);
    if (v < 1 || v > max_cap)
      return bad(key, fmt::format("must be within 1..{}", max_cap));
    *out = static_cast<std::size_t>(v);
  }
  if (cfg.get_bool("transport.tls.enabled")) {
    detail::tls_settings tls{true, cfg.get_string("transport.tls.certificate"),
                             cfg.get_string("transport.tls.private-key"),
                             cfg.get_string("transport.tls.ca")};
    auto ctx = detail::tls_context::create(tls);
    if (!ctx)
      return std::move(ctx).error();
    s.tls = std::move(*ctx);
  }
  return s;
}

} // namespace

// -- lifecycle ----------------------------------------------------------------------------

expected<std::shared_ptr<transport>> transport::start(node& n, transport_options opts) {
  if (of(n))
    return error{errc::invalid_argument,
                 fmt::format("the transport of node '{}' is already started", n.name())};
  if (n.context().stopping())
    return error{errc::shutting_down, fmt::format("node '{}' is shutting down", n.name())};
  auto settings = settings_from(n.config());
  if (!settings)
    return std::move(settings).error();
  auto rules_file = n.config().get_string("transport.fault-injection.rules-file");
  if (!rules_file.empty() && opts.filter)
    return error{errc::invalid_argument,
                 "transport.fault-injection.rules-file is set and transport_options holds a "
                 "filter: use one of them"};
  std::shared_ptr<fault_injector> from_file;
  if (!rules_file.empty()) {
    from_file = std::make_shared<fault_injector>();
    opts.filter = from_file;
  }
  auto st = std::make_shared<detail::transport_state>(
    n, n.config().get_duration("transport.stop-timeout"),
    n.config().get_duration("transport.request-retention"));
  st->clock = opts.clock ? opts.clock : steady_transport_clock();
  settings->clock = st->clock;
  settings->filter = std::move(opts.filter);
  auto eng = detail::engine::start(std::move(*settings), *st, n.log(), n.metrics());
  if (!eng)
    return std::move(eng).error();
  st->eng = std::move(*eng);
  st->self = st->eng->identity();
  if (from_file) {
    n.log().warn("transport", "fault injection is on: frames follow the rules in {} "
                              "(transport.fault-injection.rules-file; for tests only)",
                 rules_file);
    st->rules = std::make_unique<detail::rules_watcher>(rules_file, from_file, n.log());
  }
  auto t = std::shared_ptr<transport>(new transport(st));
  n.context().set_extension<transport>(t);
  n.add_stop_hook("transport", [st] { st->stop(); });
  return t;
}

std::shared_ptr<transport> transport::of(node& n) {
  return n.context().extension<transport>();
}

std::shared_ptr<transport> transport::of(caf::actor_system& sys) {
  auto ctx = find_context(sys);
  return ctx ? ctx->extension<transport>() : nullptr;
}

transport::~transport() = default;

const node_identity& transport::identity() const noexcept {
  return state_->self;
}

// -- addressing ---------------------------------------------------------------------------

expected<void> transport::register_actor(std::string name, caf::actor a) {
  if (name.empty() || !a)
    return error{errc::invalid_argument, "register_actor needs a name and a valid actor"};
  {
    std::unique_lock<std::shared_mutex> guard{state_->names_mtx};
    auto [it, added] = state_->names.emplace(name, a);
    if (!added)
      return error{errc::invalid_argument,
                   fmt::format("the name '{}' is already registered on {}", name,
                               state_->self.address.to_string())};
    state_->names_changed();
  }
  // Outside the lock: attaching to an actor that already stopped runs this now.
  a->attach_functor([w = std::weak_ptr<detail::transport_state>{state_}, name,
                     addr = a.address()] {
    if (auto st = w.lock()) {
      std::unique_lock<std::shared_mutex> guard{st->names_mtx};
      auto i = st->names.find(name);
      if (i != st->names.end() && i->second.address() == addr) {
        st->names.erase(i);
        st->names_changed();
      }
    }
  });
  return {};
}

void transport::unregister_actor(std::string_view name) {
  std::unique_lock<std::shared_mutex> guard{state_->names_mtx};
  if (auto i = state_->names.find(name); i != state_->names.end()) {
    state_->names.erase(i);
    state_->names_changed();
  }
}

caf::actor transport::registered(std::string_view name) const {
  return state_->find_name(name);
}

caf::actor transport::actor_for(const node_address& node, std::string name) {
  return actor_for(node_identity{node, 0}, std::move(name));
}

caf::actor transport::actor_for(const node_identity& node, std::string name) {
  std::lock_guard<std::mutex> guard{state_->proxies_mtx};
  auto key = std::make_tuple(node.address, node.incarnation, name);
  if (auto i = state_->proxies.find(key); i != state_->proxies.end())
    return i->second;
  auto& sys = state_->sys;
  caf::actor_config cfg;
  auto ptr = caf::make_actor<detail::remote_proxy, caf::strong_actor_ptr>(
    sys.next_actor_id(), sys.node(), &sys, cfg, state_, state_->eng->peer(node.address),
    std::move(name), node.incarnation);
  auto h = caf::actor_cast<caf::actor>(std::move(ptr));
  if (!state_->stopped)
    state_->proxies.emplace(std::move(key), h);
  return h;
}

caf::actor transport::actor_for(const actor_ref& ref) {
  return actor_for(node_identity{ref.node, ref.incarnation}, ref.name);
}

remote_actor transport::remote(const node_address& node, std::string name) {
  return remote(node_identity{node, 0}, std::move(name));
}

remote_actor transport::remote(const node_identity& node, std::string name) {
  remote_actor r;
  r.state_ = state_;
  r.peer_ = state_->eng->peer(node.address);
  r.name_ = std::move(name);
  r.incarnation_ = node.incarnation;
  return r;
}

void transport::connect(const node_address& node) {
  state_->eng->connect(node);
}

void transport::disconnect(const node_address& node) {
  state_->eng->disconnect(node);
}

std::vector<peer_info> transport::peers() const {
  return state_->eng->peers();
}

std::optional<peer_info> transport::peer(const node_address& node) const {
  for (auto& p : peers())
    if (p.address == node)
      return p;
  return std::nullopt;
}

void transport::quarantine(const node_identity& id, std::string reason) {
  state_->eng->quarantine(id, std::move(reason));
}

bool transport::is_quarantined(const node_identity& id) const {
  return state_->eng->is_quarantined(id);
}

void transport::set_filter(std::shared_ptr<frame_filter> f) {
  state_->eng->set_filter(std::move(f));
}

const transport_clock& transport::clock() const noexcept {
  return *state_->clock;
}

// -- subscriptions -------------------------------------------------------------------------

transport::subscription transport::subscribe(std::function<void(const peer_event&)> fn) {
  std::lock_guard<std::mutex> guard{state_->subs_mtx};
  auto id = state_->add_subscription();
  state_->events.callbacks.emplace_back(id, std::move(fn));
  return id;
}

transport::subscription transport::subscribe(caf::actor subscriber) {
  std::lock_guard<std::mutex> guard{state_->subs_mtx};
  auto id = state_->add_subscription();
  state_->events.actors.emplace_back(id, std::move(subscriber));
  return id;
}

transport::subscription
transport::subscribe_heartbeats(std::function<void(const heartbeat_sample&)> fn) {
  std::lock_guard<std::mutex> guard{state_->subs_mtx};
  auto id = state_->add_subscription();
  state_->heartbeats.callbacks.emplace_back(id, std::move(fn));
  state_->heartbeat_subscribers = true;
  return id;
}

transport::subscription transport::subscribe_heartbeats(caf::actor subscriber) {
  std::lock_guard<std::mutex> guard{state_->subs_mtx};
  auto id = state_->add_subscription();
  state_->heartbeats.actors.emplace_back(id, std::move(subscriber));
  state_->heartbeat_subscribers = true;
  return id;
}

transport::subscription transport::subscribe_packets(std::string channel,
                                                     std::function<void(const packet&)> fn) {
  std::lock_guard<std::mutex> guard{state_->subs_mtx};
  auto id = state_->add_subscription();
  state_->packets[std::move(channel)].callbacks.emplace_back(id, std::move(fn));
  return id;
}

transport::subscription transport::subscribe_packets(std::string channel,
                                                     caf::actor subscriber) {
  std::lock_guard<std::mutex> guard{state_->subs_mtx};
  auto id = state_->add_subscription();
  state_->packets[std::move(channel)].actors.emplace_back(id, std::move(subscriber));
  return id;
}

void transport::unsubscribe(subscription id) {
  {
    std::lock_guard<std::mutex> guard{state_->subs_mtx};
    state_->events.erase(id);
    state_->heartbeats.erase(id);
    state_->heartbeat_subscribers = !state_->heartbeats.empty();
    for (auto& [channel, list] : state_->packets)
      list.erase(id);
  }
  // Wait for a callback that is running right now (not if it is ours).
  std::lock_guard<std::recursive_mutex> running{state_->invoke_mtx};
}

// -- packets -----------------------------------------------------------------------------

expected<void> transport::send_packet(const node_identity& to, std::string_view channel,
                                      std::string_view manifest, std::uint32_t version,
                                      std::span<const std::uint8_t> payload) {
  auto& st = *state_;
  if (channel.empty() || manifest.empty() || version == 0)
    return error{errc::invalid_argument,
                 "send_packet needs a channel, a manifest and a version of at least 1"};
  if (st.stopped)
    return error{errc::shutting_down, "the transport is stopped"};
  if (to.address == st.self.address) {
    if (auto r = st.is_self(to.incarnation); !r)
      return r;
    st.deliver_packet(packet{st.self, std::string{channel}, std::string{manifest}, version,
                             std::vector<std::uint8_t>(payload.begin(), payload.end())});
    return {};
  }
  auto& buf = detail::scratch();
  wire::put_packet(buf, to.incarnation, channel, manifest, version, payload);
  auto nothing = [](detail::conn_id) {};
  return st.eng->send(*st.eng->peer(to.address), buf, nothing, to.incarnation);
}

void transport::stop() {
  state_->stop();
}

// -- remote_actor ----------------------------------------------------------------------------

expected<void> remote_actor::send_message(const caf::message& msg) const {
  if (!state_)
    return error{errc::invalid_argument, "send on an empty remote_actor"};
  if (state_->stopped)
    return error{errc::shutting_down, "the transport is stopped"};
  if (peer_->address() == state_->self.address) {
    if (auto r = state_->is_self(incarnation_); !r)
      return r;
    auto dest = state_->find_name(name_);
    if (!dest)
      return error{errc::not_found, fmt::format("no actor is registered as '{}' on {}", name_,
                                                state_->self.address.to_string())};
    dest->enqueue(nullptr, caf::make_message_id(), msg, nullptr);
    return {};
  }
  return state_->forward(*peer_, name_, nullptr, caf::make_message_id(), msg.content(),
                         incarnation_);
}

caf::actor remote_actor::handle() const {
  auto t = state_ ? transport::of(state_->sys) : nullptr;
  return t ? t->actor_for(node_identity{peer_->address(), incarnation_}, name_) : caf::actor{};
}

const node_address& remote_actor::node() const noexcept {
  static const node_address none;
  return peer_ ? peer_->address() : none;
}

std::string_view to_string(peer_event::kind k) noexcept {
  switch (k) {
    case peer_event::kind::up: return "up";
    case peer_event::kind::lost: return "lost";
    case peer_event::kind::new_incarnation: return "new_incarnation";
    case peer_event::kind::writable: return "writable";
    case peer_event::kind::quarantined: return "quarantined";
  }
  return "?";
}

std::string_view to_string(peer_info::state s) noexcept {
  switch (s) {
    case peer_info::state::idle: return "idle";
    case peer_info::state::connecting: return "connecting";
    case peer_info::state::connected: return "connected";
    case peer_info::state::backoff: return "backoff";
  }
  return "?";
}

} // namespace troupe::remote
