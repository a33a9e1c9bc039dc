// flow<In, Out>: an immutable blueprint of stages that turn a stream of In into a
// stream of Out. Any operator (map, filter, ...) converts to a flow; flows compose
// with via and attach to sinks with to.
//
//   flow<std::string, int> parse = map([](std::string s) { return std::stoi(s); });
//   flow<std::string, int> evens = parse.via(filter([](int x) { return x % 2 == 0; }));
//   sink<std::string, completion> k = evens.to(for_each<int>(print));
//   from_container(lines).via(evens).to(ignore<int>()).run(node);
//
// Thread-safety: an immutable value.
#pragma once

#include "troupe/streams/sink.hpp"
#include "troupe/streams/source.hpp"

#include <functional>
#include <type_traits>
#include <utility>

namespace troupe::streams {

template <class In, class Out>
class flow {
public:
  using apply_fn = std::function<source<Out>(const source<In>&)>;

  /// From an operator or any callable from source<In> to source<Out>.
  template <class Op>
    requires(std::is_invocable_r_v<source<Out>, const Op&, const source<In>&>
             && !std::is_same_v<std::decay_t<Op>, flow>)
  flow(Op op) : apply_(std::move(op)) {}

  source<Out> operator()(const source<In>& s) const { return apply_(s); }

  template <class Op>
    requires std::is_invocable_v<const Op&, const source<Out>&>
  auto via(const Op& op) const {
    using next = std::invoke_result_t<const Op&, const source<Out>&>;
    auto self = apply_;
    return flow<In, typename next::element_type>{
      [self, op](const source<In>& s) { return op(self(s)); }};
  }

  /// A sink that runs this flow before `s`.
  template <class M>
  sink<In, M> to(const sink<Out, M>& s) const {
    auto self = apply_;
    return sink<In, M>{[self, s] {
      auto [mat, attach] = s.prepare();
      typename sink<In, M>::attach_fn mine =
        [self, attach = std::move(attach)](detail::island_context& ctx, const source<In>& up) {
          return attach(ctx, self(up));
        };
      return std::pair{std::move(mat), std::move(mine)};
    }};
  }

  /// Ends an island after this flow's stages (see source::async).
  flow async(std::size_t buffer = 0) const {
    auto self = apply_;
    return flow{[self, buffer](const source<In>& s) { return self(s).async(buffer); }};
  }

  /// This flow's own stages use `d` (supervision.hpp); stages upstream keep theirs.
  flow with_decider(decider d) const {
    auto self = apply_;
    return flow{[self, d](const source<In>& s) {
      return source<Out>{[self, d, s](detail::island_context& ctx) {
        auto outer = ctx.current_decider;
        source<In> upstream{[s, outer](detail::island_context& c) {
          auto mine = std::exchange(c.current_decider, outer);
          auto out = s.build(c);
          c.current_decider = std::move(mine);
          return out;
        }};
        ctx.current_decider = d;
        auto out = self(upstream).build(ctx);
        ctx.current_decider = std::move(outer);
        return out;
      }};
    }};
  }

private:
  apply_fn apply_;
};

} // namespace troupe::streams
