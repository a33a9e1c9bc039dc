// Handing an island's state to stages that may run in another island.
//
// A few operators give the stages after them a source that reads state of the
// island the operator runs in, its *home*: a fan-out's ports (fan_out.hpp),
// restart_flow's feed (restart.hpp), an async sink's input (sink::async). Stages
// built from such a source in the home island pull it by plain calls. But the
// blueprint they belong to may build them in another island (a flow with .async()
// after its first stages, a sink run apart): they must not touch the home's state
// from that island's thread. There they get the receiving end of a link instead
// (boundary_in, connecting to the running home island), and the home island is
// asked, by a posted call, to serve that link: receive_from_home below. The home
// then pulls its state into a boundary_out bound to that peer, under the usual
// credit (boundary.hpp), so the elements in between stay within the buffer.
//
// sink_apart is the home's side of sink::async: it lingers until the sink's island
// has ended, so the stream's islands stay one tree under the guardian.
//
// Thread-safety: home_island is an immutable value; every call that touches the
// home's state runs on the home island (through its poster), guarded by a
// lifeline of the object it calls.
#pragma once

#include "troupe/streams/detail/boundary.hpp"
#include "troupe/streams/detail/lifeline.hpp"
#include "troupe/streams/detail/stage.hpp"

#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>

#include <algorithm>
#include <functional>
#include <memory>
#include <utility>

namespace troupe::streams::detail {

/// The island an operator runs in, as stages built elsewhere see it.
struct home_island {
  const island_context* ctx = nullptr;  ///< compared only: never used off its island
  caf::actor actor;
  std::function<void(std::function<void()>)> post;

  static home_island of(island_context& ctx) {
    return home_island{&ctx, caf::actor_cast<caf::actor>(ctx.self()), ctx.poster()};
  }
  /// Whether `c` is the home island itself (then plain calls are safe).
  bool is(const island_context& c) const noexcept { return &c == ctx; }
};

/// An outlet that fails with `e` when pulled (an input that cannot be served).
template <class T>
struct failed_outlet final : outlet<T> {
  explicit failed_outlet(error e) { this->failure_ = std::move(e); }
  pull_status pull(std::vector<T>&, std::size_t) override { return pull_status::failed; }
  void cancel() override {}
};

/// Called on the home island once a foreign island is ready to receive:
/// serve `link` to `peer` with at most `capacity` elements in flight.
using connect_fn = std::function<void(caf::actor peer, std::uint64_t link, std::size_t capacity)>;

/// The receiving end, in island `c`, of elements the home island sends; asks the
/// home (posting `connect`) to start sending. `capacity` 0: c's buffer_size.
/// If the home has ended by then, the post is dropped and the link reports the
/// home's end (the islands are linked, directly or through their parents).
template <class T>
outlet_ptr<T> receive_from_home(island_context& c, const home_island& home, connect_fn connect,
                                std::size_t capacity = 0) {
  auto link = next_link_id();
  auto cap = std::max<std::size_t>(capacity ? capacity : c.options().buffer_size, 1);
  auto in = std::make_unique<boundary_in<T>>(c, home.actor, link, cap, c.stage_name("async"));
  home.post([connect = std::move(connect), peer = caf::actor_cast<caf::actor>(c.self()), link, cap] {
    connect(peer, link, cap);
  });
  return in;
}

/// The home's side of a sink that runs in an island of its own (sink::async):
/// a terminal that holds the upstream until the sink's input has connected, then
/// sends it through a boundary_out, and finishes only once the sink's island
/// ended (its outcome is the sink's own value, set there).
template <class T>
class sink_apart final : public terminal, public link_handler {
public:
  sink_apart(island_context& ctx, outlet_ptr<T> up) : ctx_(ctx), up_(std::move(up)) {}
  ~sink_apart() override {
    if (child_)
      ctx_.remove_link(watch_);
  }

  /// What the sink's input calls (on this island) once it is built.
  connect_fn connector() {
    return [this, alive = life_.token()](caf::actor peer, std::uint64_t link, std::size_t cap) {
      if (!alive.lock() || out_ || !up_ || child_down_)
        return;  // a second build of the input gets nothing; it waits for our end
      out_ = std::make_unique<boundary_out<T>>(ctx_, std::move(up_), std::move(peer), link, cap);
      ctx_.wake();
    };
  }

  /// The island that runs the sink: this terminal ends when it ended.
  void watch(const caf::actor& child) {
    child_ = true;
    watch_ = next_link_id();
    ctx_.add_link(watch_, child.address(), this);
  }

  bool drive() override {
    if (out_ && !sent_)
      sent_ = out_->drive();
    return child_down_;
  }

  // The sink's island sets the sink's value itself; it sees our end through its link.
  void abort(const error&) override {}

  void on_signal(link_signal&) override {}
  void on_peer_down(const error&) override {
    child_down_ = true;
    ctx_.wake();
  }

private:
  island_context& ctx_;
  outlet_ptr<T> up_;  ///< until the sink's input connected
  std::unique_ptr<boundary_out<T>> out_;
  std::uint64_t watch_ = 0;
  bool child_ = false;
  bool sent_ = false;
  bool child_down_ = false;
  lifeline life_;
};

/// The terminal of `attach` (a sink's) in an island of its own, fed from `up`
/// built here; `buffer` (0: the stream's buffer_size) bounds the elements in
/// between. Source is source<T> (a template parameter so that this header needs
/// no complete source type).
template <class T, class Source, class Attach>
terminal_ptr attach_apart(island_context& ctx, const Source& up, const Attach& attach,
                          std::size_t buffer) {
  auto cap = buffer ? buffer : ctx.options().buffer_size;
  auto term = std::make_unique<sink_apart<T>>(ctx, up.build(ctx));
  auto home = home_island::of(ctx);
  auto connect = term->connector();
  auto child = ctx.spawn_island(ctx.stage_name("async"), [home, connect, attach, cap](island_context& c) {
    Source from_home{[home, connect, cap](island_context& in) {
      return receive_from_home<T>(in, home, connect, cap);
    }};
    return attach(c, from_home);
  });
  term->watch(child);
  return term;
}

} // namespace troupe::streams::detail
