// Fan-out: one stream into several outputs, fused in the island of the stages
// before them (make an output `.async()`, sink::async, to run it in an actor of
// its own).
//
//   broadcast(a, b, ...)   every element to every output, in order; the stream
//                          goes as fast as the slowest output
//   balance(a, b, ...)     each element to exactly one output, whichever asks
//                          for it: a slow output gets fewer
//   broadcast(n, make), balance(n, make)   the outputs make(0) ... make(n - 1)
//   broadcast(options, a, b, ...), balance(options, a, b, ...)
//
// Both are sinks: a stream has as many ends as outputs, and each output is a
// sink with its own stages (flow.to(sink)). Their materialized value is a
// std::tuple of the outputs' values (a std::vector for the n form):
//
//   auto outs = readings.to(broadcast(to_store.async(),         // its own actor
//                                     flow<reading, int>{map(sensor_of)}
//                                       .to(fold_sink<int>(0, std::plus<>{}))))
//                 .run(node);
//   auto& [stored, sum] = *outs;        // completion, stream_future<int>
//
// Completion and failure of the upstream reach every output, after the elements
// taken before them. An output *cancels* when its sink needs no more (take,
// head) or fails (its own value holds the error): with
// eager_cancel = false (the default, as Akka's) the others go on and the
// upstream is cancelled when the last one cancelled; with eager_cancel = true
// the upstream is cancelled at once and the others complete after the elements
// already taken (broadcast: those in its buffer).
//
// Memory, whatever the speed of the outputs: broadcast holds at most `buffer`
// elements that some output has not taken yet (a fast output waits for the
// slowest); balance holds none. Each output's own stages hold what they hold
// (an async output: its buffer). An element a balance output took and had not
// consumed when it cancelled is lost with it, like any cancelled stage's.
//
// An output whose first stages its blueprint puts in another island (a flow with
// .async() before its sink) gets its elements across a boundary
// (detail/exported_outlet.hpp); its place in the buffer is kept meanwhile.
//
// Thread-safety: blueprints are immutable values. At run time the hub and the
// fused outputs live in one island and are used only on its actor.
#pragma once

#include "troupe/streams/detail/exported_outlet.hpp"
#include "troupe/streams/sink.hpp"
#include "troupe/streams/source.hpp"

#include <algorithm>
#include <concepts>
#include <deque>
#include <limits>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace troupe::streams {

struct fan_out_options {
  /// broadcast: the elements held for outputs that have not taken them yet
  /// (0: the stream's buffer_size). One pull of an output takes at most this many.
  std::size_t buffer = 0;
  /// One output cancelling cancels the upstream and completes the others.
  bool eager_cancel = false;
};

namespace detail {

enum class fan_out_mode { broadcast, balance };

/// The state shared by a fan-out's outputs, in the home island: the upstream,
/// broadcast's buffer and each output's position in it, which outputs are still
/// open, and the boundaries serving outputs whose first stage runs elsewhere.
template <class T>
class fan_out_hub {
public:
  fan_out_hub(island_context& ctx, outlet_ptr<T> up, fan_out_mode mode, std::size_t outputs,
              const fan_out_options& o)
    : ctx_(ctx), up_(std::move(up)), mode_(mode), name_(ctx.stage_name(kind())),
      capacity_(std::max<std::size_t>(o.buffer ? o.buffer : ctx.options().buffer_size, 1)),
      eager_(o.eager_cancel), slots_(outputs), open_(outputs) {
    if (open_ == 0)
      stop_upstream();
  }

  /// The outlet output i pulls, in this island; an output's input is built once.
  outlet_ptr<T> open_port(std::size_t i) {
    if (slots_[i].built) {
      return std::make_unique<failed_outlet<T>>(
        error{errc::invalid_argument, "stream '" + ctx_.stream_name() + "': stage '" + name_
                                        + "': the input of output " + std::to_string(i)
                                        + " was built twice"});
    }
    slots_[i].built = true;
    return std::make_unique<port>(this, i);
  }

  /// Output i's input was built in another island (`peer`): serve it over `link`.
  void export_port(std::size_t i, caf::actor peer, std::uint64_t link, std::size_t cap) {
    exports_.push_back(std::make_unique<boundary_out<T>>(ctx_, open_port(i), std::move(peer), link, cap));
    exports_done_.push_back(false);
    ctx_.wake();
  }

  /// Sends what the exported outputs have credit for.
  void pump() {
    for (std::size_t k = 0; k < exports_.size(); ++k)
      if (!exports_done_[k])
        exports_done_[k] = exports_[k]->drive();
  }

  /// Output i needs no more (its input cancelled, or its sink finished).
  void close(std::size_t i) {
    auto& s = slots_[i];
    if (!s.open)
      return;
    s.open = false;
    --open_;
    if (eager_ || open_ == 0)
      stop_upstream();
    trim();
    ctx_.wake();  // the others may now go on (room in the buffer) or complete
  }

  pull_status pull(std::size_t i, std::vector<T>& out, std::size_t max, error& failure) {
    if (!slots_[i].open)
      return pull_status::done;
    return mode_ == fan_out_mode::broadcast ? pull_broadcast(i, out, max, failure)
                                            : pull_balance(out, max, failure);
  }

private:
  static constexpr auto none = std::numeric_limits<std::uint64_t>::max();

  struct slot {
    std::uint64_t next = 0;  ///< broadcast: absolute index of the next element to take
    bool open = true;
    bool built = false;
  };

  class port final : public outlet<T> {
  public:
    port(fan_out_hub* hub, std::size_t i) : hub_(hub), i_(i) {}
    pull_status pull(std::vector<T>& out, std::size_t max) override {
      return hub_->pull(i_, out, max, this->failure_);
    }
    void cancel() override { hub_->close(i_); }

  private:
    fan_out_hub* hub_;  ///< outlives the port: the hub is the fan-out terminal's
    std::size_t i_;
  };

  const char* kind() const noexcept { return mode_ == fan_out_mode::broadcast ? "broadcast" : "balance"; }

  pull_status pull_broadcast(std::size_t i, std::vector<T>& out, std::size_t max, error& failure) {
    auto& s = slots_[i];
    if (s.next == end() && !ended())
      fill(max);
    auto avail = end() - s.next;
    if (avail == 0)
      return ended_status(failure);
    take(i, out, static_cast<std::size_t>(std::min<std::uint64_t>(avail, max)));
    return pull_status::ready;
  }

  // Each element goes to the output that pulled it: one that does not ask gets none.
  pull_status pull_balance(std::vector<T>& out, std::size_t max, error& failure) {
    if (ended())
      return ended_status(failure);
    auto st = up_->pull(out, max);
    record(st);
    return st == pull_status::ready || st == pull_status::pending ? st : ended_status(failure);
  }

  // Pulls from upstream within the buffer's room; a full buffer waits for the
  // slowest output, which wakes the island when it makes room (trim).
  void fill(std::size_t max) {
    auto room = capacity_ - buf_.size();
    if (room == 0) {
      blocked_ = true;
      return;
    }
    scratch_.clear();
    auto st = up_->pull(scratch_, std::min(max, room));
    for (auto& x : scratch_)
      buf_.push_back(std::move(x));
    record(st);
  }

  // Copies k elements to output i; moves those no other open output still needs.
  void take(std::size_t i, std::vector<T>& out, std::size_t k) {
    auto& s = slots_[i];
    auto others = none;
    for (std::size_t j = 0; j < slots_.size(); ++j)
      if (j != i && slots_[j].open)
        others = std::min(others, slots_[j].next);
    auto from = static_cast<std::size_t>(s.next - base_);
    for (std::size_t n = 0; n < k; ++n) {
      if (s.next + n < others)
        out.push_back(std::move(buf_[from + n]));
      else
        out.push_back(buf_[from + n]);
    }
    s.next += k;
    trim();
  }

  // Drops the elements every open output has taken.
  void trim() {
    auto keep_from = end();
    for (auto& s : slots_)
      if (s.open)
        keep_from = std::min(keep_from, s.next);
    bool freed = false;
    while (base_ < keep_from) {
      buf_.pop_front();
      ++base_;
      freed = true;
    }
    if (freed && blocked_) {
      blocked_ = false;
      ctx_.wake();
    }
  }

  void record(pull_status st) {
    if (st == pull_status::done || st == pull_status::failed) {
      state_ = st;
      if (st == pull_status::failed)
        failure_ = up_->failure();
      ctx_.wake();  // outputs waiting for elements see the end
    }
  }

  void stop_upstream() {
    if (ended())
      return;
    stopped_ = true;
    up_->cancel();
  }

  bool ended() const noexcept { return stopped_ || state_ != pull_status::pending; }

  pull_status ended_status(error& failure) const {
    if (state_ == pull_status::failed) {
      failure = failure_;
      return pull_status::failed;
    }
    return ended() ? pull_status::done : pull_status::pending;
  }

  std::uint64_t end() const noexcept { return base_ + buf_.size(); }

  island_context& ctx_;
  outlet_ptr<T> up_;
  fan_out_mode mode_;
  std::string name_;
  std::size_t capacity_;
  bool eager_;
  std::vector<slot> slots_;
  std::size_t open_;
  std::deque<T> buf_;        ///< broadcast: elements some open output has not taken
  std::uint64_t base_ = 0;   ///< absolute index of buf_.front()
  std::vector<T> scratch_;
  pull_status state_ = pull_status::pending;  ///< of the upstream: pending (running), done, failed
  error failure_;
  bool stopped_ = false;  ///< the upstream was cancelled
  bool blocked_ = false;  ///< an output found the buffer full
  std::vector<std::unique_ptr<boundary_out<T>>> exports_;
  std::vector<bool> exports_done_;
};

/// The terminal of a fan-out: drives every output's terminal (starting with a
/// different one each time, so that balance shares fairly) and ends when all
/// have finished; an output that finished is closed in the hub.
template <class T>
class fan_out_terminal final : public terminal {
public:
  fan_out_terminal(std::shared_ptr<fan_out_hub<T>> hub, std::vector<terminal_ptr> outputs)
    : hub_(std::move(hub)), outputs_(std::move(outputs)), finished_(outputs_.size(), false),
      running_(outputs_.size()) {}

  bool drive() override {
    hub_->pump();
    auto n = outputs_.size();
    for (std::size_t k = 0; k < n; ++k) {
      auto i = (first_ + k) % n;
      if (!finished_[i] && outputs_[i]->drive()) {
        finished_[i] = true;
        --running_;
        hub_->close(i);
      }
    }
    first_ = n ? (first_ + 1) % n : 0;
    return running_ == 0;
  }

  void abort(const error& why) override {
    for (std::size_t i = 0; i < outputs_.size(); ++i)
      if (!finished_[i])
        outputs_[i]->abort(why);
  }

private:
  std::shared_ptr<fan_out_hub<T>> hub_;  ///< declared first: outlives the ports in outputs_
  std::vector<terminal_ptr> outputs_;
  std::vector<bool> finished_;
  std::size_t running_;
  std::size_t first_ = 0;
};

template <class T>
using attach_fn_of = std::function<terminal_ptr(island_context&, const source<T>&)>;

/// The source output i of `hub` reads: a port in the home island, or the
/// receiving end of a link from it when built in another island.
template <class T>
source<T> port_source(const std::shared_ptr<fan_out_hub<T>>& hub, const home_island& home,
                      std::size_t i) {
  std::weak_ptr<fan_out_hub<T>> weak = hub;  // never keeps the hub (its upstream) alive elsewhere
  return source<T>{[weak, home, i](island_context& c) -> outlet_ptr<T> {
    if (home.is(c)) {
      if (auto h = weak.lock())
        return h->open_port(i);
      return std::make_unique<failed_outlet<T>>(error{errc::stopped, "the fan-out has ended"});
    }
    return receive_from_home<T>(c, home, [weak, i](caf::actor peer, std::uint64_t link, std::size_t cap) {
      if (auto h = weak.lock())
        h->export_port(i, std::move(peer), link, cap);
    });
  }};
}

/// A fan-out sink; prepare() yields the value M and the outputs' attach functions.
template <class T, class M, class Prepare>
sink<T, M> fan_out_sink(fan_out_mode mode, fan_out_options o, Prepare prepare) {
  return sink<T, M>{[mode, o, prepare] {
    auto prepared = prepare();
    typename sink<T, M>::attach_fn attach =
      [mode, o, outputs = std::move(prepared.second)](island_context& ctx,
                                                      const source<T>& src) -> terminal_ptr {
      auto hub = std::make_shared<fan_out_hub<T>>(ctx, src.build(ctx), mode, outputs.size(), o);
      auto home = home_island::of(ctx);
      std::vector<terminal_ptr> terminals;
      terminals.reserve(outputs.size());
      for (std::size_t i = 0; i < outputs.size(); ++i)
        terminals.push_back(outputs[i](ctx, port_source(hub, home, i)));
      return std::make_unique<fan_out_terminal<T>>(std::move(hub), std::move(terminals));
    };
    return std::pair{std::move(prepared.first), std::move(attach)};
  }};
}

template <class S>
struct sink_traits : std::false_type {};
template <class T, class M>
struct sink_traits<sink<T, M>> : std::true_type {
  using element = T;
  using mat = M;
};

template <class S>
concept any_sink = sink_traits<std::decay_t<S>>::value;

template <class Make>
using made_sink = std::decay_t<std::invoke_result_t<const Make&, std::size_t>>;

/// make(i) gives a sink.
template <class Make>
concept sink_maker = std::invocable<const Make&, std::size_t> && any_sink<made_sink<Make>>;

/// Sinks a, b, ... as one fan-out; the value is the tuple of theirs.
template <class First, class... Rest>
auto fan_out_of(fan_out_mode mode, fan_out_options o, const First& first, const Rest&... rest) {
  using T = typename sink_traits<First>::element;
  static_assert((std::is_same_v<T, typename sink_traits<Rest>::element> && ...),
                "every output of a fan-out takes the same element type");
  using M = std::tuple<typename sink_traits<First>::mat, typename sink_traits<Rest>::mat...>;
  return fan_out_sink<T, M>(mode, o, [first, rest...] {
    std::vector<attach_fn_of<T>> attaches;
    auto prepare_one = [&attaches](const auto& s) {
      auto [mat, attach] = s.prepare();
      attaches.push_back(std::move(attach));
      return std::move(mat);
    };
    M mats{prepare_one(first), prepare_one(rest)...};  // braces: in order
    return std::pair{std::move(mats), std::move(attaches)};
  });
}

/// make(0) ... make(n - 1) as one fan-out (fresh sinks per run); the value is the
/// vector of theirs.
template <class Make>
auto fan_out_n(fan_out_mode mode, fan_out_options o, std::size_t n, Make make) {
  using S = made_sink<Make>;
  using T = typename sink_traits<S>::element;
  using V = typename sink_traits<S>::mat;
  return fan_out_sink<T, std::vector<V>>(mode, o, [n, make] {
    std::vector<V> mats;
    std::vector<attach_fn_of<T>> attaches;
    for (std::size_t i = 0; i < n; ++i) {
      auto [mat, attach] = make(i).prepare();
      mats.push_back(std::move(mat));
      attaches.push_back(std::move(attach));
    }
    return std::pair{std::move(mats), std::move(attaches)};
  });
}

} // namespace detail

template <detail::any_sink... Sinks>
  requires(sizeof...(Sinks) >= 1)
auto broadcast(fan_out_options o, const Sinks&... outputs) {
  return detail::fan_out_of(detail::fan_out_mode::broadcast, o, outputs...);
}

template <detail::any_sink... Sinks>
  requires(sizeof...(Sinks) >= 1)
auto broadcast(const Sinks&... outputs) {
  return broadcast(fan_out_options{}, outputs...);
}

template <detail::sink_maker Make>
auto broadcast(std::size_t n, Make make, fan_out_options o = {}) {
  return detail::fan_out_n(detail::fan_out_mode::broadcast, o, n, std::move(make));
}

template <detail::any_sink... Sinks>
  requires(sizeof...(Sinks) >= 1)
auto balance(fan_out_options o, const Sinks&... outputs) {
  return detail::fan_out_of(detail::fan_out_mode::balance, o, outputs...);
}

template <detail::any_sink... Sinks>
  requires(sizeof...(Sinks) >= 1)
auto balance(const Sinks&... outputs) {
  return balance(fan_out_options{}, outputs...);
}

template <detail::sink_maker Make>
auto balance(std::size_t n, Make make, fan_out_options o = {}) {
  return detail::fan_out_n(detail::fan_out_mode::balance, o, n, std::move(make));
}

} // namespace troupe::streams
