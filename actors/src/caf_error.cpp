#include "troupe/actors/caf_error.hpp"

#include "troupe/actors/ask.hpp"

#include <caf/atom.hpp>
#include <caf/logger.hpp>
#include <caf/exit_reason.hpp>
#include <caf/make_message.hpp>
#include <caf/message.hpp>
#include <caf/sec.hpp>

namespace troupe {

caf::atom_value troupe_error_category() noexcept {
  return caf::atom("troupe");
}

caf::error to_caf_error(const error& e) {
  if (!e)
    return caf::error{};
  return caf::error{static_cast<std::uint8_t>(e.code()), troupe_error_category(),
                    caf::make_message(e.message())};
}

namespace {

std::string context_text(const caf::error& e) {
  const auto& ctx = e.context();
  if (ctx.size() == 1 && ctx.match_element<std::string>(0))
    return ctx.get_as<std::string>(0);
  return ctx.empty() ? std::string{} : caf::to_string(ctx);
}

errc from_sec(caf::sec code) {
  switch (code) {
    case caf::sec::request_timeout: return errc::timeout;
    case caf::sec::request_receiver_down: return errc::actor_down;
    case caf::sec::unexpected_message:
    case caf::sec::unexpected_response: return errc::unexpected_message;
    case caf::sec::runtime_error: return errc::actor_failed;
    case caf::sec::invalid_argument: return errc::invalid_argument;
    case caf::sec::remote_linking_failed:
    case caf::sec::cannot_connect_to_node: return errc::node_unreachable;
    default: return errc::internal;
  }
}

errc from_exit_reason(caf::exit_reason code) {
  switch (code) {
    case caf::exit_reason::normal:
    case caf::exit_reason::user_shutdown:
    case caf::exit_reason::kill: return errc::stopped;
    case caf::exit_reason::unhandled_exception: return errc::actor_failed;
    case caf::exit_reason::remote_link_unreachable: return errc::node_unreachable;
    default: return errc::actor_down;
  }
}

} // namespace

error from_caf_error(const caf::error& e) {
  if (!e)
    return error{};
  if (e.category() == troupe_error_category())
    return error{static_cast<errc>(e.code()), context_text(e)};
  auto text = caf::to_string(e);
  if (e.category() == caf::atom("system"))
    return error{from_sec(static_cast<caf::sec>(e.code())), text};
  if (e.category() == caf::atom("exit"))
    return error{from_exit_reason(static_cast<caf::exit_reason>(e.code())), text};
  return error{errc::internal, text};
}

void release_thread_caf_state() noexcept {
  caf::logger::set_current_actor_system(nullptr);
}

std::string render_caf_troupe_error(std::uint8_t code, caf::atom_value,
                                    const caf::message& context) {
  std::string result = "troupe::";
  result += to_string(static_cast<errc>(code));
  if (context.size() == 1 && context.match_element<std::string>(0)) {
    result += ": ";
    result += context.get_as<std::string>(0);
  }
  return result;
}

} // namespace troupe
