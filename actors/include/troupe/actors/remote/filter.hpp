// Fault injection: one seam that every frame a transport sends or receives passes,
// so that tests (and a test-only configuration, off by default) can drop, delay or
// partition traffic between chosen nodes. docs/transport.md, "Fault injection".
//
//   auto faults = std::make_shared<troupe::remote::fault_injector>();
//   t->set_filter(faults);
//   faults->drop(b_address);                       // partition from b, both ways
//   faults->delay(c_address, 200ms, frame_directions::outgoing);
//   faults->clear();                               // heal
//
// What passes the filter: every frame, in both directions — handshake frames,
// heartbeats, goodbyes, messages, requests, responses, packets. While a filter is
// installed, senders never write to the socket from their own thread (the
// direct-write path): their frames go through the I/O thread, where the filter
// sees them. (A frame whose send was already under way when set_filter() was
// called may still pass unfiltered, exactly as if it had been sent a moment
// earlier.)
//
// Verdicts: `pass`; `drop` (the frame is gone, as on a lossy network: the sender
// was told it was accepted; dropped heartbeats are not liveness, so a partition
// ends in transport.failure-timeout); `delay` (the frame is held for that long and
// every later frame of the same connection and direction waits behind it: order is
// kept, as on TCP). Delays are measured with the transport's clock.
//
// Thread-safety: check() is called on the transport's I/O thread only, one call at
// a time; it must not block or call into the transport. fault_injector's members
// may be called from any thread.
#pragma once

#include "troupe/actors/config.hpp"
#include "troupe/actors/expected.hpp"
#include "troupe/actors/remote/address.hpp"
#include "troupe/actors/remote/frame.hpp"

#include <map>
#include <memory>
#include <mutex>
#include <string_view>

namespace troupe::remote {

enum class frame_direction { outgoing, incoming };

/// Which directions a fault_injector rule applies to.
enum class frame_directions { both, outgoing, incoming };

/// One frame as the filter sees it.
struct frame_info {
  frame_direction direction;
  /// The peer: on our outbound connections its address is known from the start
  /// (incarnation 0 until the handshake); on inbound ones it is empty (port 0)
  /// until the peer's hello was read.
  const node_identity& peer;
  bool outbound_connection;  ///< the connection this node opened
  wire::frame_type type;
  wire::byte_span frame;     ///< the whole frame, header included
};

struct filter_verdict {
  enum class action { pass, drop, delay };
  action what = action::pass;
  duration delay{0};  ///< delay only

  static filter_verdict pass() { return {}; }
  static filter_verdict drop() { return {action::drop, duration{0}}; }
  static filter_verdict hold(duration d) { return {action::delay, d}; }
};

class frame_filter {
public:
  virtual ~frame_filter() = default;
  virtual filter_verdict check(const frame_info& f) = 0;
};

/// Rules by peer address: drop or delay its frames in one or both directions.
/// Frames of peers without a rule (and of inbound connections whose peer is not
/// known yet) pass.
class fault_injector final : public frame_filter {
public:
  /// Drops every frame to and/or from `peer` (a partition when both sides do it,
  /// or when one side does it both ways).
  void drop(const node_address& peer, frame_directions which = frame_directions::both);
  /// Holds every frame to and/or from `peer` for `d`.
  void delay(const node_address& peer, duration d,
             frame_directions which = frame_directions::both);
  /// Removes the rules of `peer` / all rules (heals).
  void clear(const node_address& peer);
  void clear();

  /// Replaces every rule with those in `text`, one per line:
  ///   drop <host:port> [in|out]
  ///   delay <host:port> <duration> [in|out]
  /// Empty lines and lines starting with '#' are ignored. On error nothing
  /// changes and the error names the line.
  expected<void> load(std::string_view text);

  filter_verdict check(const frame_info& f) override;

private:
  struct rule {
    filter_verdict out;
    filter_verdict in;
  };
  static void apply(rule& r, filter_verdict v, frame_directions which);

  std::mutex mtx_;
  std::map<node_address, rule> rules_;
};

} // namespace troupe::remote
