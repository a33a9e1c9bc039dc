#include "troupe/actors/spawn.hpp"

#include "troupe/actors/caf_error.hpp"
#include "troupe/actors/node_context.hpp"

#include <caf/all.hpp>

namespace troupe {

namespace {

// Actors of raw CAF systems (no troupe node) log through this fallback.
logger& fallback_logger() {
  static auto log = *logger::make(logger::options{.node_id = "-"});
  return *log;
}

logger& log_of(node_context* ctx) {
  return ctx ? ctx->log() : fallback_logger();
}

// The bodies of troupe's default handlers (spawn.hpp), for both forms of init_actor.

void on_error(logger& log, std::string_view label, caf::scheduled_actor* s, caf::error& err) {
  log.warn(label, "unhandled error: {}", s->system().render(err));
}

void on_down(logger& log, std::string_view label, caf::scheduled_actor* s, caf::down_msg& dm) {
  log.debug(label, "monitored actor {} stopped: {}", dm.source.id(), s->system().render(dm.reason));
}

caf::result<caf::message> on_unexpected(logger& log, std::string_view label, caf::message_view& x) {
  auto text = caf::to_string(x.copy_content_to_message());
  log.warn(label, "unexpected message: {}", text);
  return to_caf_error(
    error{errc::unexpected_message, fmt::format("{} has no handler for {}", label, text)});
}

caf::error on_exception(node_context* ctx, logger& log, std::string_view label,
                        caf::scheduled_actor* s, std::exception_ptr& ptr) {
  if (ctx)
    ctx->mark_failing(s->id());
  std::string what = "unknown exception";
  try {
    std::rethrow_exception(ptr);
  } catch (const std::exception& ex) {
    what = ex.what();
  } catch (...) {
  }
  log.error(label, "handler threw, stopping: {}", what);
  return to_caf_error(error{errc::actor_failed, fmt::format("{} threw: {}", label, what)});
}

} // namespace

void init_actor(caf::scheduled_actor* self, std::string name) {
  auto* ctx = find_context(self->system());
  logger* log = &log_of(ctx);
  auto label = std::make_shared<const std::string>(name + "#" + std::to_string(self->id()));
  self->set_error_handler([log, label](caf::scheduled_actor* s, caf::error& err) {
    on_error(*log, *label, s, err);
  });
  self->set_down_handler([log, label](caf::scheduled_actor* s, caf::down_msg& dm) {
    on_down(*log, *label, s, dm);
  });
  self->set_default_handler(
    [log, label](caf::scheduled_actor*, caf::message_view& x) -> caf::result<caf::message> {
      return on_unexpected(*log, *label, x);
    });
  self->set_exception_handler([log, label, ctx](caf::scheduled_actor* s, std::exception_ptr& ptr) {
    return on_exception(ctx, *log, *label, s, ptr);
  });
}

void init_actor(caf::scheduled_actor* self, std::string (*label_of)(caf::scheduled_actor*)) {
  // Each handler captures one function pointer: std::function keeps that inline.
  auto named = [label_of](caf::scheduled_actor* s) {
    return label_of(s) + "#" + std::to_string(s->id());
  };
  self->set_error_handler([named](caf::scheduled_actor* s, caf::error& err) {
    on_error(log_of(find_context(s->system())), named(s), s, err);
  });
  self->set_down_handler([named](caf::scheduled_actor* s, caf::down_msg& dm) {
    on_down(log_of(find_context(s->system())), named(s), s, dm);
  });
  self->set_default_handler(
    [named](caf::scheduled_actor* s, caf::message_view& x) -> caf::result<caf::message> {
      return on_unexpected(log_of(find_context(s->system())), named(s), x);
    });
  self->set_exception_handler([named](caf::scheduled_actor* s, std::exception_ptr& ptr) {
    auto* ctx = find_context(s->system());
    return on_exception(ctx, log_of(ctx), named(s), s, ptr);
  });
}

} // namespace troupe
