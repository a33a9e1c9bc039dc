// Internal: what a region forwards to other nodes' regions and the answers it
// owes them, batched per node (command_batch.hpp has the wire format).
//
// The region queues commands and answers while it works through its mailbox;
// the first one queued since the last flush asks it to schedule a flush (a
// message to itself once its worker ran what it had queued, so the answers of
// the entities it just asked join the batch: after_queued_work.hpp), and the
// flush takes one packet per destination. A packet that reaches
// `max_batch_bytes` is not held for the end of the burst: full() turns true and
// the region flushes at once, so the destination starts on the first commands
// while later ones are still being queued (a whole burst in one packet made
// the two nodes take turns, each idle while the other worked). A forwarded
// command stays here until its answer arrives, its deadline passes (timeout), its
// packet cannot be sent, or its destination leaves the cluster; then its callback
// runs, exactly once.
//
// Thread-safety: none; the region's actor owns it.
#pragma once

#include "command_batch.hpp"

#include "troupe/actors/remote/address.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace troupe::sharding::detail {

class remote_commands {
public:
  using clock = std::chrono::steady_clock;
  using done_fn = std::function<void(expected<persistence::encoded_message>)>;

  /// A packet to send: commands or answers for one node.
  struct packet_out {
    remote::node_identity to;
    std::string_view manifest;
    std::vector<std::uint8_t> bytes;
    std::vector<std::uint64_t> requests;  ///< the commands in it (none for answers)
  };

  explicit remote_commands(std::size_t max_batch_bytes) : max_bytes_(max_batch_bytes) {}

  /// Queues `c` for `region` (its request number is assigned here); `done` gets
  /// the encoded reply or the error. True if a flush must be scheduled.
  bool forward(const remote::node_identity& region, forwarded_command c,
               clock::time_point deadline, done_fn done);
  /// Queues the answer to a command from `origin`. True if a flush must be
  /// scheduled.
  bool answer(const remote::node_identity& origin, const command_answer& a);

  /// Everything queued since the last flush, one packet per node and kind (more
  /// when one would exceed max_batch_bytes).
  std::vector<packet_out> take();

  /// A packet of commands could not be sent: its commands fail with `why`.
  void not_sent(const packet_out& p, const error& why);
  /// Answers that arrived: each completes its command (unknown ones, e.g. after
  /// their timeout, are ignored).
  void answered(std::vector<command_answer>& answers);
  /// Commands past their deadline fail with timeout naming "type|id".
  void expire(clock::time_point now, std::string_view type);
  /// Commands forwarded to `region` fail with `why` (it left the cluster).
  void fail_region(const remote::node_identity& region, const error& why);
  /// Every command fails with `why`, queued or sent (the region stops).
  void fail_all(const error& why);

  /// True once a packet queued since the last take() reached max_batch_bytes:
  /// the caller should flush now rather than at the end of its burst.
  bool full() const noexcept { return full_; }

  /// Commands forwarded and not answered yet.
  std::size_t in_flight() const noexcept { return waiting_.size(); }

private:
  struct waiting {
    remote::node_identity region;
    std::string entity_id;
    clock::time_point deadline;
    done_fn done;
  };
  /// Batches being built for one node: the last one grows.
  struct outbox {
    std::vector<packet_out> packets;
  };

  bool queue(std::map<remote::node_identity, outbox>& boxes, const remote::node_identity& to,
             std::string_view manifest, const std::function<void(std::vector<std::uint8_t>&)>& write,
             std::uint64_t request);
  void finish(std::uint64_t request, expected<persistence::encoded_message> r);

  std::size_t max_bytes_;
  std::uint64_t next_request_ = 1;
  bool flush_scheduled_ = false;
  bool full_ = false;
  std::map<remote::node_identity, outbox> commands_;
  std::map<remote::node_identity, outbox> answers_;
  std::unordered_map<std::uint64_t, waiting> waiting_;
};

} // namespace troupe::sharding::detail
