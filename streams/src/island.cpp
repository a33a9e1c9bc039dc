// The island actor: runs one fused chain of stages (see detail/stage.hpp).
//
// An island drives its terminal whenever a stage asked for it (wake), handles
// link signals from the islands next to it, timers and posted callbacks, and ends
// when its terminal finished. Islands of one stream are linked parent to child;
// the exit of a linked island reaches the link_handler of the boundary it served,
// so no island waits forever for a dead peer. Any other exit message (the guardian
// stopping the stream at node shutdown) aborts the terminal and stops the island
// with the same reason.
#include "troupe/streams/runnable.hpp"

#include "troupe/actors/caf_error.hpp"
#include "troupe/actors/node.hpp"
#include "troupe/actors/spawn.hpp"

#include <caf/all.hpp>

#include <atomic>
#include <set>
#include <unordered_map>

namespace troupe::streams::detail {

struct island_wake {};
struct island_timer {
  std::uint64_t id = 0;
};
struct island_post {
  std::function<void()> fn;
};

struct island_spec {
  std::string name;    ///< the island's actor name
  std::string stream;  ///< the stream's name
  stream_options opts;
  std::shared_ptr<std::atomic<int>> stage_counter;
  decider initial_decider;
  island_builder build;
};

} // namespace troupe::streams::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::streams::detail::island_wake)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::streams::detail::island_timer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::streams::detail::island_post)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::streams::detail::island_spec)

namespace troupe::streams::detail {

namespace {

caf::behavior island_actor(caf::event_based_actor* self, island_spec spec);

error exit_error(const caf::error& reason) {
  if (reason == caf::exit_reason::normal)
    return {};
  return from_caf_error(reason);
}

class island final : public island_context {
public:
  island(caf::event_based_actor* self, island_spec spec)
    : self_(self), spec_(std::move(spec)) {
    current_decider = spec_.initial_decider;
  }

  ~island() override {
    closed = true;
    if (terminal_ && !done_)
      terminal_->abort(error{errc::actor_failed, "stream '" + spec_.stream + "': island '"
                                                   + spec_.name + "' stopped unexpectedly"});
    terminal_.reset();
  }

  void start() {
    guarded([this] {
      terminal_ = spec_.build(*this);
      wake();
    });
  }

  // -- island_context ----------------------------------------------------------

  caf::event_based_actor* self() noexcept override { return self_; }

  void wake() override {
    if (wake_pending_ || done_)
      return;
    wake_pending_ = true;
    self_->send(self_, island_wake{});
  }

  void schedule(duration delay, std::function<void()> fn) override {
    auto id = ++timer_seq_;
    timers_.emplace(id, std::move(fn));
    self_->delayed_send(self_, std::chrono::duration_cast<std::chrono::microseconds>(delay),
                        island_timer{id});
  }

  std::function<void(std::function<void()>)> poster() override {
    return [addr = self_->address()](std::function<void()> fn) {
      if (auto a = caf::actor_cast<caf::actor>(addr))
        caf::anon_send(a, island_post{std::move(fn)});
    };
  }

  caf::actor spawn_island(std::string name, island_builder build) override {
    island_spec child{spec_.stream + "/" + name, spec_.stream, spec_.opts, spec_.stage_counter,
                      current_decider, std::move(build)};
    auto actor_name = child.name;
    auto a = self_->spawn<caf::linked>(
      troupe::detail::with_defaults(std::move(actor_name), island_actor, std::move(child)),
      caf::unit);
    children_.insert(a.address());
    return a;
  }

  void add_link(std::uint64_t link, caf::actor_addr peer, link_handler* h) override {
    links_[link] = entry{std::move(peer), h};
  }
  void remove_link(std::uint64_t link) override { links_.erase(link); }

  std::string stage_name(std::string_view kind) override {
    return std::string{kind} + "#" + std::to_string(++*spec_.stage_counter);
  }
  const std::string& stream_name() const noexcept override { return spec_.stream; }
  const stream_options& options() const noexcept override { return spec_.opts; }

  // -- message handlers ----------------------------------------------------------

  void on_wake() {
    wake_pending_ = false;
    if (done_ || !terminal_)
      return;
    guarded([this] {
      if (terminal_->drive())
        finish(caf::exit_reason::normal);
    });
  }

  void on_signal(link_signal& s) {
    auto i = links_.find(s.link);
    if (i == links_.end() || done_)
      return;  // a late signal for a link that ended
    guarded([&] { i->second.handler->on_signal(s); });
  }

  void on_timer(std::uint64_t id) {
    auto i = timers_.find(id);
    if (i == timers_.end())
      return;
    auto fn = std::move(i->second);
    timers_.erase(i);
    if (!done_)
      guarded(fn);
  }

  void on_post(std::function<void()>& fn) {
    if (!done_)
      guarded(fn);
  }

  void on_exit(caf::exit_msg& m) {
    if (done_)
      return;
    bool known = children_.count(m.source) > 0;
    std::vector<link_handler*> hit;
    for (auto& [id, e] : links_)
      if (e.peer == m.source)
        hit.push_back(e.handler);
    if (!hit.empty()) {
      auto why = exit_error(m.reason);
      guarded([&] {
        for (auto* h : hit)
          h->on_peer_down(why);
      });
      wake();
      return;
    }
    if (known)
      return;  // a child island that already handed over its outcome
    // The guardian (node shutdown) or another linked actor: the stream ends here.
    auto why = m.reason == caf::exit_reason::user_shutdown
                 ? error{errc::shutting_down, "stream '" + spec_.stream + "' stopped: the node is shutting down"}
                 : error{errc::stopped, "stream '" + spec_.stream + "' stopped: "
                                          + self_->system().render(m.reason)};
    if (terminal_)
      terminal_->abort(why);
    finish(m.reason);
  }

private:
  struct entry {
    caf::actor_addr peer;
    link_handler* handler = nullptr;
  };

  template <class F>
  void guarded(F&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      fail_island(e.what());
    } catch (...) {
      fail_island("an unknown exception");
    }
  }

  void fail_island(const std::string& what) {
    auto why = error{errc::actor_failed, "stream '" + spec_.stream + "': island '" + spec_.name
                                           + "' failed: " + what};
    if (terminal_)
      terminal_->abort(why);
    finish(to_caf_error(why));
  }

  void finish(caf::error reason) {
    if (done_)
      return;
    done_ = true;
    terminal_.reset();  // stages release resources and tell their peers while we run
    timers_.clear();
    self_->quit(std::move(reason));
  }

  caf::event_based_actor* self_;
  island_spec spec_;
  terminal_ptr terminal_;
  bool wake_pending_ = false;
  bool done_ = false;
  std::uint64_t timer_seq_ = 0;
  std::unordered_map<std::uint64_t, std::function<void()>> timers_;
  std::unordered_map<std::uint64_t, entry> links_;
  std::set<caf::actor_addr> children_;
};

caf::behavior island_actor(caf::event_based_actor* self, island_spec spec) {
  auto st = std::make_shared<island>(self, std::move(spec));
  self->set_exit_handler([st](caf::exit_msg& m) { st->on_exit(m); });
  st->start();
  return {
    [st](island_wake) { st->on_wake(); },
    [st](link_signal& s) { st->on_signal(s); },
    [st](island_timer t) { st->on_timer(t.id); },
    [st](island_post& p) { st->on_post(p.fn); },
  };
}

std::atomic<std::uint64_t> link_seq{0};
std::atomic<std::uint64_t> stream_seq{0};

} // namespace

std::uint64_t next_link_id() noexcept {
  return ++link_seq;
}

error stage_error(island_context& ctx, const std::string& stage, const error& cause) {
  return error{cause ? cause.code() : errc::actor_failed,
               "stream '" + ctx.stream_name() + "': stage '" + stage + "' failed: "
                 + cause.message()};
}

directive decide(const decider& d, const error& e) {
  return d ? d(e) : directive::stop;
}

expected<caf::actor> spawn_stream(node& n, stream_options opts, island_builder build) {
  if (opts.batch_size == 0 || opts.buffer_size == 0)
    return error{errc::invalid_argument,
                 "stream_options: batch_size and buffer_size must be at least 1"};
  if (opts.name.empty())
    opts.name = "stream-" + std::to_string(++stream_seq);
  island_spec spec{opts.name, opts.name, opts, std::make_shared<std::atomic<int>>(0), {},
                   std::move(build)};
  auto name = opts.name;
  return n.spawn(std::move(name), island_actor, std::move(spec));
}

} // namespace troupe::streams::detail
