#include "troupe/actors/node.hpp"

#include "troupe/actors/ask.hpp"
#include "troupe/actors/atoms.hpp"
#include "troupe/actors/caf_error.hpp"

#include "scheduler.hpp"

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

#include <condition_variable>
#include <thread>

namespace troupe {

// -- node_context ----------------------------------------------------------------------

node_context::node_context(troupe::config cfg, std::shared_ptr<logger> log,
                           std::shared_ptr<codec_registry> codec)
  : name_(cfg.get_string("node.name")),
    config_(std::move(cfg)),
    log_(std::move(log)),
    codec_(std::move(codec)) {
}

caf::actor node_context::guardian() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return guardian_;
}

void node_context::set_guardian(caf::actor g) {
  std::lock_guard<std::mutex> guard{mtx_};
  guardian_ = std::move(g);
}

void node_context::clear_extensions() {
  decltype(extensions_) doomed;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    doomed.swap(extensions_);
    guardian_ = nullptr;
  }
}

void node_context::watch_failure(std::uint64_t actor_id, failure_flag flag) {
  std::lock_guard<std::mutex> guard{mtx_};
  failure_flags_[actor_id] = std::move(flag);
}

void node_context::unwatch_failure(std::uint64_t actor_id) {
  std::lock_guard<std::mutex> guard{mtx_};
  failure_flags_.erase(actor_id);
}

void node_context::mark_failing(std::uint64_t actor_id) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (auto i = failure_flags_.find(actor_id); i != failure_flags_.end())
    i->second->store(true);
}

// -- CAF configuration -----------------------------------------------------------------

// The CAF config owns the node context, so the context lives exactly as long as the
// actor system that refers to it (caf::actor_system keeps a reference to its config).
struct detail::node_caf_config : caf::actor_system_config {
  std::shared_ptr<node_context> context;
};

node_context* find_context(caf::actor_system& sys) noexcept {
  auto* cfg = dynamic_cast<const detail::node_caf_config*>(&sys.config());
  return cfg ? cfg->context.get() : nullptr;
}

node_context& node_of(caf::actor_system& sys) {
  auto* ctx = find_context(sys);
  if (!ctx) {
    std::fprintf(stderr, "troupe: node_of() on an actor system not created by troupe::node\n");
    std::abort();
  }
  return *ctx;
}

// -- node ------------------------------------------------------------------------------

namespace {

constexpr auto guardian_request_timeout = std::chrono::seconds{10};

} // namespace

unsigned default_scheduler_threads() noexcept {
  auto cores = std::thread::hardware_concurrency();  // 0: unknown
  return cores > 1 ? cores - 1 : 1;
}

expected<std::unique_ptr<node>> node::start(troupe::config cfg, options opts) {
  auto level = parse_log_level(cfg.get_string("log.level"));
  if (!level)
    return error{errc::invalid_config,
                 "config key 'log.level': " + level.error().message()};
  auto threads = cfg.get_int("scheduler.threads");
  if (threads < 0)
    return error{errc::invalid_config, "config key 'scheduler.threads' must be >= 0"};
  auto port = cfg.get_int("node.port");
  if (port < 0 || port > 65535)
    return error{errc::invalid_config, "config key 'node.port' must be within 0..65535"};
  auto log = logger::make(logger::options{cfg.get_string("node.name"), *level,
                                          cfg.get_bool("log.stderr"),
                                          cfg.get_string("log.file")});
  if (!log)
    return std::move(log).error();
  auto codec = opts.codec ? opts.codec : std::make_shared<codec_registry>();
  auto ctx = std::make_shared<node_context>(std::move(cfg), std::move(*log), std::move(codec));
  auto caf_cfg = std::make_unique<detail::node_caf_config>();
  caf_cfg->context = ctx;
  caf_cfg->add_error_category(troupe_error_category(), render_caf_troupe_error);
  auto n = threads > 0 ? threads : std::int64_t{default_scheduler_threads()};
  caf_cfg->set("scheduler.max-threads", static_cast<size_t>(n));
  // Idle workers sleep until work arrives instead of polling, and timers do not
  // wake a thread each (scheduler.hpp).
  caf_cfg->load<detail::scheduler>();
  if (ctx->config().get_bool("node.caf-middleman"))
    caf_cfg->load<caf::io::middleman>();
  return std::unique_ptr<node>(new node(std::move(caf_cfg), std::move(ctx)));
}

node::node(std::unique_ptr<detail::node_caf_config> cfg, std::shared_ptr<node_context> ctx)
  : caf_config_(std::move(cfg)),
    system_(std::make_unique<caf::actor_system>(*caf_config_)),
    context_(std::move(ctx)) {
  supervisor_spec root{.name = "guardian", .strategy = restart_strategy::one_for_one};
  context_->set_guardian(troupe::spawn_supervisor(*system_, std::move(root)));
  context_->log().debug("node", "started");
}

node::~node() {
  shutdown();
}

expected<caf::actor> node::adopt(child_spec spec) {
  if (context_->stopping())
    return error{errc::shutting_down,
                 "node '" + name() + "' is shutting down; cannot start '" + spec.name + "'"};
  return start_child(*system_, context_->guardian(), std::move(spec),
                     guardian_request_timeout);
}

expected<caf::actor> node::adopt_actor(std::string name, child_factory factory) {
  child_spec spec{std::move(name), std::move(factory), restart_policy::temporary};
  spec.shutdown_timeout = context_->config().get_duration("shutdown.actor-timeout");
  return adopt(std::move(spec));
}

expected<caf::actor> node::spawn_supervisor(supervisor_spec spec) {
  auto child = make_supervisor_child(std::move(spec));
  child.restart = restart_policy::temporary;
  return adopt(std::move(child));
}

void node::add_stop_hook(std::string name, std::function<void()> hook) {
  std::lock_guard<std::mutex> guard{mtx_};
  stop_hooks_.emplace_back(std::move(name), std::move(hook));
}

void node::add_shutdown_task(shutdown_phase phase, std::string name,
                             std::function<void(deadline)> task) {
  std::lock_guard<std::mutex> guard{mtx_};
  shutdown_tasks_.push_back(shutdown_task{phase, std::move(name), std::move(task)});
}

bool node::shutting_down() const {
  return shutdown_begun_.load();
}

std::string_view to_string(shutdown_phase p) noexcept {
  switch (p) {
    case shutdown_phase::before_service_unbind: return "before-service-unbind";
    case shutdown_phase::service_stop: return "service-stop";
    case shutdown_phase::cluster_sharding_shutdown_region: return "cluster-sharding-shutdown-region";
    case shutdown_phase::cluster_leave: return "cluster-leave";
    case shutdown_phase::cluster_exiting: return "cluster-exiting";
    case shutdown_phase::before_actor_system_terminate: return "before-actor-system-terminate";
  }
  return "?";
}

node::shutdown_report node::shutdown() {
  std::lock_guard<std::mutex> guard{mtx_};
  if (report_)
    return *report_;
  using clock = std::chrono::steady_clock;
  auto started = clock::now();
  auto deadline = started + context_->config().get_duration("shutdown.timeout");
  auto remaining = [&] {
    return std::max(duration{0}, std::chrono::duration_cast<duration>(deadline - clock::now()));
  };
  shutdown_report report;
  auto problem = [&](std::string text) {
    context_->log().error("node", "shutdown: {}", text);
    report.problems.push_back(std::move(text));
    report.clean = false;
  };
  shutdown_begun_ = true;
  context_->log().info("node", "shutting down");
  // 1. The coordinated-shutdown phases, while every actor still runs.
  for (auto phase : all_shutdown_phases) {
    auto key = fmt::format("shutdown.phase.{}", to_string(phase));
    auto phase_deadline = std::min(deadline, clock::now() + context_->config().get_duration(key));
    for (auto& task : shutdown_tasks_) {
      if (task.phase != phase)
        continue;
      context_->log().debug("node", "shutdown phase {}: {}", to_string(phase), task.name);
      task.run(phase_deadline);
      if (clock::now() > phase_deadline + std::chrono::milliseconds{100})
        problem(fmt::format("shutdown task '{}' overran phase {} ({})", task.name,
                            to_string(phase), key));
    }
  }
  shutdown_tasks_.clear();
  context_->set_stopping();
  // 2. The guardian stops the tree in reverse start order.
  if (auto g = context_->guardian()) {
    auto stopped = ask<void>(*system_, g, remaining(), stop_atom::value);
    if (!stopped) {
      problem("guardian did not stop its tree in time: " + stopped.error().to_string());
      caf::anon_send_exit(g, caf::exit_reason::kill);
    }
  }
  // 3. Upper layers' non-actor parts, newest first.
  for (auto i = stop_hooks_.rbegin(); i != stop_hooks_.rend(); ++i) {
    context_->log().debug("node", "running stop hook '{}'", i->first);
    i->second();
  }
  stop_hooks_.clear();
  context_->clear_extensions();
  // 4. Named registry entries hold strong references and would keep CAF waiting.
  for (auto& [name, ptr] : system_->registry().named_actors())
    system_->registry().erase(name);
  // 5. Destroy the actor system, but never wait past the deadline: CAF's destructor
  //    waits forever for actors outside the tree.
  struct doomed_system {
    std::unique_ptr<detail::node_caf_config> cfg;
    std::unique_ptr<caf::actor_system> sys;
    std::mutex mtx;
    std::condition_variable cv;
    bool done = false;
  };
  auto still_running = system_->registry().running();
  release_thread_caf_state();
  auto doomed = std::make_shared<doomed_system>();
  doomed->cfg = std::move(caf_config_);
  doomed->sys = std::move(system_);
  std::thread destroyer{[doomed] {
    doomed->sys.reset();
    doomed->cfg.reset();
    std::lock_guard<std::mutex> g{doomed->mtx};
    doomed->done = true;
    doomed->cv.notify_all();
  }};
  {
    std::unique_lock<std::mutex> lock{doomed->mtx};
    if (doomed->cv.wait_for(lock, remaining() + std::chrono::milliseconds{100},
                            [&] { return doomed->done; })) {
      lock.unlock();
      destroyer.join();
    } else {
      lock.unlock();
      problem(fmt::format("{} actor(s) outside the guardian tree did not stop; the CAF actor "
                          "system was abandoned (it is released if they ever stop)",
                          still_running));
      destroyer.detach();
    }
  }
  report.took = std::chrono::duration_cast<duration>(clock::now() - started);
  context_->log().info("node", "shutdown {} after {:.1f} ms",
                       report.clean ? "complete" : "INCOMPLETE",
                       std::chrono::duration<double, std::milli>(report.took).count());
  report_ = report;
  return report;
}

} // namespace troupe
