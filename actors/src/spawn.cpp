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

} // namespace

void init_actor(caf::scheduled_actor* self, std::string name) {
  auto* ctx = find_context(self->system());
  logger* log = ctx ? &ctx->log() : &fallback_logger();
  auto label = std::make_shared<const std::string>(name + "#" + std::to_string(self->id()));
  self->set_error_handler([log, label](caf::scheduled_actor* s, caf::error& err) {
    log->warn(*label, "unhandled error: {}", s->system().render(err));
  });
  self->set_down_handler([log, label](caf::scheduled_actor* s, caf::down_msg& dm) {
    log->debug(*label, "monitored actor {} stopped: {}", dm.source.id(),
               s->system().render(dm.reason));
  });
  self->set_default_handler(
    [log, label](caf::scheduled_actor*, caf::message_view& x) -> caf::result<caf::message> {
      auto text = caf::to_string(x.copy_content_to_message());
      log->warn(*label, "unexpected message: {}", text);
      return to_caf_error(error{errc::unexpected_message,
                                fmt::format("{} has no handler for {}", *label, text)});
    });
  self->set_exception_handler([log, label, ctx](caf::scheduled_actor* s, std::exception_ptr& ptr) {
    if (ctx)
      ctx->mark_failing(s->id());
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ptr);
    } catch (const std::exception& ex) {
      what = ex.what();
    } catch (...) {
    }
    log->error(*label, "handler threw, stopping: {}", what);
    return to_caf_error(error{errc::actor_failed, fmt::format("{} threw: {}", *label, what)});
  });
}

} // namespace troupe
