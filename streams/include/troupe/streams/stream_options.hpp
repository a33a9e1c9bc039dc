// Per-run settings of a stream (no node config keys: each stream picks its own).
#pragma once

#include <cstddef>
#include <string>

namespace troupe::streams {

/// What buffer(n, strategy) does when an element arrives and n are held.
enum class overflow_strategy {
  backpressure,  ///< never full: the upstream waits for room (like async(n))
  drop_head,     ///< drop the oldest held element
  drop_tail,     ///< drop the newest held element
  drop_buffer,   ///< drop every held element
  drop_new,      ///< drop the arriving element
  fail,          ///< fail the stream (errc::overloaded)
};

struct stream_options {
  /// The name in logs, actor names and errors; empty: "stream-<n>".
  std::string name;
  /// Elements one pull may move between fused stages of an island (the batch a
  /// sink asks for). Larger batches cost memory, smaller ones time per element.
  std::size_t batch_size = 256;
  /// Buffer of an async boundary whose .async() call names no size; the
  /// downstream island grants this much credit and asks for more once it has
  /// consumed half of it (batched demand).
  std::size_t buffer_size = 64;
};

} // namespace troupe::streams
