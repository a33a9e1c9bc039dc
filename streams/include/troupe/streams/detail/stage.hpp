// The internal protocol of a running stream (not for users).
//
// A stream runs as one or more islands; each island is one CAF actor running a
// chain of fused stages. Inside an island, stages talk by plain calls, pull-based:
// the island's terminal (a sink, or the sending end of an async boundary) pulls
// from its upstream outlet, which pulls from its own upstream, and so on:
//
//   pull(out, max)   request(max): append at most `max` (>= 1) elements to `out`
//     ready          appended at least one element
//     pending        nothing now; the stage calls island_context::wake() when it
//                    may have elements (an async reply, a timer, a batch from
//                    another island) and the terminal pulls again
//     done           completed; never pulled again
//     failed         failed with failure(); never pulled again
//   cancel()         downstream needs no more elements; release resources and
//                    cancel upstream
//
// Completion or failure is reported exactly once, by returning done or failed.
// Between islands the same semantics travel as link_signal messages (batch,
// complete, fail, demand, cancel) with credit: see boundary.hpp.
//
// Thread-safety: every object here belongs to one island and is used only on its
// actor's thread (stages that own threads hand results over by posting to it).
#pragma once

#include "troupe/actors/config.hpp"
#include "troupe/actors/error.hpp"
#include "troupe/streams/stream_options.hpp"
#include "troupe/streams/supervision.hpp"

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/allowed_unsafe_message_type.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace caf {
class event_based_actor;
} // namespace caf

namespace troupe::streams::detail {

enum class pull_status { ready, pending, done, failed };

template <class T>
class outlet {
public:
  virtual ~outlet() = default;
  virtual pull_status pull(std::vector<T>& out, std::size_t max) = 0;
  virtual void cancel() = 0;
  const error& failure() const noexcept { return failure_; }

protected:
  pull_status fail_with(error e) {
    failure_ = std::move(e);
    return pull_status::failed;
  }
  error failure_;
};

template <class T>
using outlet_ptr = std::unique_ptr<outlet<T>>;

/// The end of an island's chain: a sink, or the sending end of an async boundary.
class terminal {
public:
  virtual ~terminal() = default;
  /// Pulls and consumes until nothing more can happen now; returns true when the
  /// terminal has finished (completed, failed or cancelled) and the island may end.
  /// Does a bounded amount of work per call and calls wake() to continue, so
  /// that an endless fused stream still lets its actor handle messages.
  virtual bool drive() = 0;
  /// The island ends without the terminal having finished (the node stops, a
  /// linked island died, a bug threw). Sets the terminal's outcome (its future) to
  /// `why`; must not send messages (it may run while the actor is destroyed).
  virtual void abort(const error& why) = 0;
};

using terminal_ptr = std::unique_ptr<terminal>;

/// A message between two islands of one stream.
struct link_signal {
  enum kind_type : std::uint8_t { batch, complete, fail, demand, cancel };
  kind_type kind = batch;
  std::uint64_t link = 0;
  std::uint64_t n = 0;               ///< demand: credit granted
  std::shared_ptr<void> elements;    ///< batch: a std::vector<T>
  error err;                         ///< fail: why
};

/// The island-side endpoint of a link (one end of an async boundary).
class link_handler {
public:
  virtual ~link_handler() = default;
  virtual void on_signal(link_signal& s) = 0;
  /// The island at the other end ended; `why` is empty after a normal exit.
  virtual void on_peer_down(const error& why) = 0;
};

class island_context;
using island_builder = std::function<terminal_ptr(island_context&)>;

/// What an island offers the stages running in it.
class island_context {
public:
  virtual ~island_context() = default;
  virtual caf::event_based_actor* self() noexcept = 0;
  /// Drive the terminal again after the current message.
  virtual void wake() = 0;
  /// Runs `fn` on the island after `delay` (not at all when the island ended).
  virtual void schedule(duration delay, std::function<void()> fn) = 0;
  /// A function that runs its argument on the island; callable from any thread,
  /// also after the island ended (then it does nothing).
  virtual std::function<void(std::function<void()>)> poster() = 0;
  /// Starts another island of this stream, linked to this one.
  virtual caf::actor spawn_island(std::string name, island_builder build) = 0;
  virtual void add_link(std::uint64_t link, caf::actor_addr peer, link_handler* h) = 0;
  virtual void remove_link(std::uint64_t link) = 0;
  /// "<kind>#<n>", unique within the stream; errors name stages by it.
  virtual std::string stage_name(std::string_view kind) = 0;
  virtual const std::string& stream_name() const noexcept = 0;
  virtual const stream_options& options() const noexcept = 0;

  /// The decider of the blueprint being built (stages copy it when built).
  decider current_decider;
  /// Set while the island's actor is torn down: stages must not send then.
  bool closed = false;
};

/// A process-wide unique link id.
std::uint64_t next_link_id() noexcept;

/// "stream 'NAME': stage 'STAGE' failed: WHAT" with the code of `cause`.
error stage_error(island_context& ctx, const std::string& stage, const error& cause);

/// The directive for a failure of `stage`: the decider's, or stop without one.
directive decide(const decider& d, const error& e);

} // namespace troupe::streams::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::streams::detail::link_signal)
