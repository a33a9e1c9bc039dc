// Sending: what proxies are sent is encoded on the sender's thread and queued on
// the peer's connection; responses travel back on the connection of the request.
#include "remote/transport_state.hpp"

#include <caf/type_nr.hpp>

#include <cxxabi.h>
#include <fmt/core.h>

namespace troupe::remote::detail {

namespace {

/// Every this many requests, pending entries older than the retention are purged.
constexpr std::uint64_t purge_every = 1024;

std::string type_name(const caf::rtti_pair& t) {
  if (t.first != 0)
    return caf::numbered_type_names[t.first - 1];
  if (t.second == nullptr)
    return "?";
  int status = 0;
  char* demangled = abi::__cxa_demangle(t.second->name(), nullptr, nullptr, &status);
  std::string result = status == 0 && demangled ? demangled : t.second->name();
  std::free(demangled);
  return result;
}

} // namespace

wire::bytes& scratch() {
  return thread_buffer<thread_slot::frame>();
}

void reply_error(const caf::strong_actor_ptr& to, caf::message_id mid, const error& err,
                 caf::execution_unit* eu) {
  if (to && mid.is_request())
    to->enqueue(nullptr, mid.response_id(), caf::make_message(to_caf_error(err)), eu);
}

std::string_view to_string(drop_reason r) {
  switch (r) {
    case drop_reason::overloaded: return "overloaded";
    case drop_reason::unreachable: return "node_unreachable";
    case drop_reason::oversize: return "oversize";
    case drop_reason::encode_failed: return "encode_failed";
    case drop_reason::unknown_target: return "unknown_target";
    case drop_reason::decode_failed: return "decode_failed";
    case drop_reason::shutting_down: return "shutting_down";
    case drop_reason::reply_failed: return "reply_failed";
    case drop_reason::wrong_incarnation: return "wrong_incarnation";
    case drop_reason::count: break;
  }
  return "?";
}

drop_reason drop_reason_of(const error& e) {
  switch (e.code()) {
    case errc::overloaded: return drop_reason::overloaded;
    case errc::oversize: return drop_reason::oversize;
    case errc::shutting_down: return drop_reason::shutting_down;
    case errc::node_unreachable: return drop_reason::unreachable;
    default: return drop_reason::encode_failed;
  }
}

transport_state::transport_state(node& n, duration stop_timeout, duration retention)
  : sys(n.system()),
    log(n.log()),
    codec(n.context().shared_codec()),
    types(message_types_of(n.context())),
    stop_timeout(stop_timeout),
    retention(retention) {
  for (std::size_t i = 0; i < drops.size(); ++i)
    drops[i] = &n.metrics().counter("troupe_transport_dropped_messages_total",
                                    {{"reason", std::string{to_string(drop_reason(i))}}},
                                    "Messages dropped instead of delivered, by reason.");
  failed_requests = &n.metrics().counter(
    "troupe_transport_failed_requests_total", {},
    "Requests failed because their connection closed before the response.");
  pending_gauge = &n.metrics().gauge(
    "troupe_transport_pending_requests", {},
    "Requests sent and neither answered nor failed yet (bounded by "
    "transport.request-retention).");
}

// -- encoding -----------------------------------------------------------------------------

expected<void> transport_state::encode_values(wire::bytes& out,
                                              const caf::type_erased_tuple& content) const {
  if (content.size() > wire::max_elements)
    return error{errc::encode_failed, fmt::format("{} values, at most {} are allowed",
                                                  content.size(), wire::max_elements)};
  for (std::size_t i = 0; i < content.size(); ++i) {
    auto type = content.type(i);
    auto adapter = types->find(type);
    if (adapter == nullptr)
      return error{errc::encode_failed,
                   fmt::format("value {} has type {}, which is not registered for remote "
                               "messaging (remote::add_message_type)",
                               i, type_name(type))};
    auto at = wire::begin_element(out, adapter->manifest, adapter->version);
    if (auto r = adapter->encode(content.get(i), out); !r)
      return error{errc::encode_failed,
                   fmt::format("value {} ('{}'): {}", i, adapter->manifest, r.error().message())};
    wire::end_element(out, at);
  }
  return {};
}

expected<void> transport_state::encode_message(wire::bytes& out, std::uint64_t correlation,
                                               std::string_view target,
                                               const caf::type_erased_tuple& content,
                                               const node_address& to,
                                               std::uint64_t incarnation) const {
  auto offset = wire::begin_message(out, correlation, target,
                                    static_cast<std::uint8_t>(content.size()), incarnation);
  if (auto r = encode_values(out, content); !r)
    return error{r.error().code(), fmt::format("cannot send a message to {}/{}: {}",
                                               to.to_string(), target, r.error().message())};
  wire::end_frame(out, offset);
  return {};
}

// -- sending ------------------------------------------------------------------------------

expected<void> transport_state::forward(peer_handle& p, const std::string& target,
                                        const caf::strong_actor_ptr& sender, caf::message_id mid,
                                        const caf::type_erased_tuple& content,
                                        std::uint64_t incarnation) {
  bool is_request = mid.is_request();
  std::uint64_t correlation = 0;
  if (is_request) {
    correlation = next_correlation.fetch_add(1) & wire::max_correlation;
    if (correlation == 0)
      correlation = next_correlation.fetch_add(1) & wire::max_correlation;
  }
  auto& buf = scratch();
  if (auto r = encode_message(buf, correlation, target, content, p.address(), incarnation); !r)
    return r;
  auto register_request = [&](conn_id conn) {
    if (!is_request)
      return;
    std::lock_guard<std::mutex> guard{pending_mtx};
    auto now = clock->now();
    if (correlation % purge_every == 0) {
      // Requests whose responder never answered (CAF has no broken promises) would
      // otherwise stay forever; their requesters timed out long ago.
      std::erase_if(pending, [&](auto& kv) { return now - kv.second.since > retention; });
    }
    pending.emplace(correlation, pending_request{sender, mid, conn, now});
    pending_gauge->set(static_cast<double>(pending.size()));
  };
  return eng->send(p, buf, register_request, incarnation);
}

expected<void> transport_state::deliver_locally(const std::string& target,
                                                caf::mailbox_element_ptr what,
                                                caf::execution_unit* eu) {
  auto dest = find_name(target);
  if (!dest)
    return error{errc::not_found,
                 fmt::format("no actor is registered as '{}' on {}", target,
                             self.address.to_string())};
  dest->enqueue(std::move(what), eu);
  return {};
}

expected<void> transport_state::is_self(std::uint64_t incarnation) const {
  if (incarnation == 0 || incarnation == self.incarnation)
    return {};
  return error{errc::node_unreachable,
               fmt::format("{} is gone: this node is incarnation {:016x}",
                           node_identity{self.address, incarnation}.to_string(),
                           self.incarnation)};
}

void transport_state::proxy_enqueue(peer_handle& p, const std::string& target,
                                    std::uint64_t incarnation, caf::mailbox_element_ptr what,
                                    caf::execution_unit* eu) {
  auto mid = what->mid;
  if (mid.is_response())
    return;  // a proxy never sends requests, so nothing can answer it
  if (stopped) {
    // After stop the node may be gone: touch nothing but the requester.
    reply_error(what->sender, mid,
                error{errc::shutting_down, fmt::format("the transport is stopped; cannot send to "
                                                       "{}/{}",
                                                       p.address().to_string(), target)},
                eu);
    return;
  }
  expected<void> r;
  if (p.address() == self.address) {
    auto sender = what->sender;
    r = is_self(incarnation);
    if (r)
      r = deliver_locally(target, std::move(what), eu);
    if (!r)
      reply_error(sender, mid, r.error(), eu);
    return;
  }
  r = forward(p, target, what->sender, mid, what->content(), incarnation);
  if (r)
    return;
  if (mid.is_request())
    reply_error(what->sender, mid, r.error(), eu);
  else
    dropped(drop_reason_of(r.error()), r.error());
}

void transport_state::dropped(drop_reason r, const error& why, log_level level) {
  auto i = static_cast<std::size_t>(r);
  drops[i]->inc();
  // Logs the 1st, 2nd, 4th, 8th, ... drop per reason: visible, never a flood.
  auto n = drop_counts[i].fetch_add(1) + 1;
  if ((n & (n - 1)) == 0)
    log.log(level, "transport", "dropped a message ({} {} so far): {}", n, to_string(r),
            why.message());
}

void transport_state::respond(reply_channel& ch, caf::mailbox_element_ptr what) {
  if (stopped)
    return;
  auto mid = what->mid;
  if (!mid.is_response()) {
    dropped(drop_reason::reply_failed,
            error{errc::invalid_argument,
                  fmt::format("a one-way message to the requester on {} cannot be delivered: "
                              "reply to the request instead, or send to an actor_ref",
                              ch.peer().to_string())});
    return;
  }
  auto correlation = mid.integer_value() & caf::message_id::request_id_mask;
  auto& content = what->content();
  auto& buf = scratch();
  if (content.size() == 1 && content.type(0).first == caf::type_nr<caf::error>::value) {
    auto err = from_caf_error(*static_cast<const caf::error*>(content.get(0)));
    wire::put_error_response(buf, correlation, static_cast<std::uint8_t>(err.code()),
                             err.message());
  } else {
    auto offset = wire::begin_response(buf, correlation, static_cast<std::uint8_t>(content.size()));
    if (auto r = encode_values(buf, content); r) {
      wire::end_frame(buf, offset);
    } else {
      // The requester learns why instead of waiting for its timeout.
      buf.clear();
      wire::put_error_response(buf, correlation, static_cast<std::uint8_t>(r.error().code()),
                               fmt::format("cannot send the response from {}: {}",
                                           self.address.to_string(), r.error().message()));
    }
  }
  if (auto r = ch.send(buf); !r)
    dropped(drop_reason::reply_failed, r.error());
}

} // namespace troupe::remote::detail
