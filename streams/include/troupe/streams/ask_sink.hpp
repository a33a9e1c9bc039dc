// Asking targets with backpressure: each element becomes a request to a target
// chosen by a key; at most `parallelism` elements are held (in flight, waiting
// for their key, or backing off before a retry), requests to one key go one at a
// time (order per key), a slow or overloaded target slows the source instead of
// growing memory, and a failure is retried with backoff, then judged by the
// stream's decider (stop fails the stream naming the stage; resume drops it).
//
//   // any target behind a function: key -> request with a timeout -> expected<R>
//   ask_fn<order, done> to_account = [](caf::event_based_actor* self, const order& o,
//                                       duration timeout, reply_fn<done> reply) {...};
//   orders.to(ask_sink<order, done>([](const order& o) { return o.account; }, to_account,
//                                   {.parallelism = 32})).run(node);
//
// Adapters for the targets troupe has today: ask_actor (a plain actor that
// answers the element with R), ask_entity (an event-sourced entity: element ->
// command). entity_sink.hpp provides the one into sharded entities
// (to_entities): a region's `overloaded` answers (a full buffer) are retryable, so
// they slow the stream (docs/streams.md, "Entity I/O").
//
// Contract of an ask_fn: called on the stream's island actor; calls reply exactly
// once, on that actor (troupe::ask's in-actor form does), with the answer or the
// error (timeout after `timeout`).
#pragma once

#include "troupe/actors/ask.hpp"
#include "troupe/actors/supervisor.hpp"
#include "troupe/persistence/entity.hpp"
#include "troupe/streams/map_async.hpp"
#include "troupe/streams/flow.hpp"
#include "troupe/streams/sinks.hpp"

#include <functional>
#include <memory>
#include <random>

namespace troupe::streams {

template <class R>
using reply_fn = std::function<void(expected<R>)>;

template <class T, class R>
using ask_fn = std::function<void(caf::event_based_actor* self, const T& element, duration timeout,
                                  reply_fn<R> reply)>;

/// What ask_flow / ask_sink retry: timeouts and overload (the target is slow or
/// its buffer is full), a target that is restarting or moving (actor_down), and
/// a lost connection to the target's node (node_unreachable: its shards move).
inline bool retryable_by_default(const error& e) {
  return e.code() == errc::timeout || e.code() == errc::overloaded || e.code() == errc::actor_down
         || e.code() == errc::node_unreachable;
}

struct ask_options {
  std::size_t parallelism = 16;
  duration timeout = std::chrono::seconds{5};
  /// Retries of one element after a retryable failure (0: none).
  int max_retries = 5;
  backoff_policy backoff{.min = std::chrono::milliseconds{20}, .max = std::chrono::seconds{2}};
  std::function<bool(const error&)> retryable = retryable_by_default;

  /// Whether a failure of attempt number `attempt` (0: the first) is retried.
  bool retries(const error& e, int attempt) const {
    return attempt < max_retries && retryable && retryable(e);
  }
};

/// An element acknowledged by an actor (ask_actor_ack).
struct acked {};

namespace detail {

template <class T, class R>
void ask_with_retry(std::shared_ptr<const T> x, async_reply<R> reply,
                    std::shared_ptr<const ask_fn<T, R>> ask, std::shared_ptr<const ask_options> o,
                    int attempt) {
  (*ask)(reply.self(), *x, o->timeout, [=](expected<R> r) {
    if (!r && o->retries(r.error(), attempt)) {
      thread_local std::minstd_rand rng{std::random_device{}()};
      auto u = std::uniform_real_distribution<double>{0.0, 1.0}(rng);
      reply.schedule(o->backoff.delay(attempt + 1, u),
                     [=] { ask_with_retry(x, reply, ask, o, attempt + 1); });
      return;
    }
    reply.here(std::move(r));  // an ask_fn answers on the island (its contract)
  });
}

} // namespace detail

/// An operator: each element -> the target's answer R, in completion order,
/// order kept per key. key(const T&) -> a hashable key.
template <class T, class R, class KeyFn>
auto ask_flow(KeyFn key, ask_fn<T, R> ask, ask_options opts = {}) {
  auto o = std::make_shared<const ask_options>(std::move(opts));
  auto target = std::make_shared<const ask_fn<T, R>>(std::move(ask));
  return map_async_partitioned<R>(o->parallelism, std::move(key),
                                  [target, o](T x, async_reply<R> reply) {
                                    detail::ask_with_retry<T, R>(
                                      std::make_shared<const T>(std::move(x)), reply, target, o, 0);
                                  });
}

/// A sink: ask_flow, answers discarded; the completion fails as the stream does.
template <class T, class R, class KeyFn>
sink<T, completion> ask_sink(KeyFn key, ask_fn<T, R> ask, ask_options opts = {}) {
  return flow<T, R>{ask_flow<T, R>(std::move(key), std::move(ask), std::move(opts))}.to(ignore<R>());
}

/// An ask_fn to plain actors: route(element) picks the actor, which answers the
/// element (sent as is) with an R.
template <class T, class R>
ask_fn<T, R> ask_actor(std::function<caf::actor(const T&)> route) {
  return [route](caf::event_based_actor* self, const T& x, duration timeout, reply_fn<R> reply) {
    troupe::ask<R>(self, route(x), timeout, x).then([reply](expected<R> r) { reply(std::move(r)); });
  };
}

/// A sink into one actor with an ack protocol: each element is a request the
/// actor answers (with an empty reply) once it took the element; the next one is
/// sent after that (Akka's actorRefWithBackpressure).
template <class T>
sink<T, completion> actor_ack_sink(caf::actor target, ask_options opts = {}) {
  opts.parallelism = 1;
  ask_fn<T, acked> ask = [target](caf::event_based_actor* self, const T& x, duration timeout,
                                  reply_fn<acked> reply) {
    troupe::ask<void>(self, target, timeout, x).then([reply](expected<void> r) {
      reply(r ? expected<acked>{acked{}} : expected<acked>{r.error()});
    });
  };
  return ask_sink<T, acked>([](const T&) { return 0; }, std::move(ask), std::move(opts));
}

/// An ask_fn to event-sourced entities: route(element) picks the entity,
/// to_command(element) makes the command; R is the command's reply type.
template <class Entity, class T, class Command>
ask_fn<T, typename Command::reply>
ask_entity(std::function<persistence::entity_ref<Entity>(const T&)> route,
           std::function<Command(const T&)> to_command) {
  using R = typename Command::reply;
  return [route, to_command](caf::event_based_actor* self, const T& x, duration timeout,
                             reply_fn<R> reply) {
    troupe::ask<R>(self, route(x), timeout, to_command(x)).then([reply](expected<R> r) {
      reply(std::move(r));
    });
  };
}

} // namespace troupe::streams
