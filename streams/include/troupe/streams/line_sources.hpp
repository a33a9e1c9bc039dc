// Line sources: the lines of a file, and the lines TCP clients send to a server.
//
//   auto lines = file_lines("/var/log/app.log");          // source<std::string>
//
//   auto tcp = tcp_lines("127.0.0.1", 0);                 // port 0: any free port
//   if (!tcp) return tcp.error();                         // names the endpoint
//   auto& [src, server] = *tcp;                           // source<tcp_line>, control
//   auto done = src.to(for_each<tcp_line>(handle)).run(node);
//   server.port();  server.stats();  server.stop();
//
// A line is the bytes before a '\n'; a '\r' right before it is dropped (CRLF);
// the last line of a file or connection needs no '\n'. A line longer than
// max_line_length bytes is an error (oversize) naming the file or endpoint and the
// line number; it is detected before more than max_line_length + 1 bytes of it are
// held, so a line without end never grows memory.
//
// file_lines reads on a thread of its own (a read may block: a slow disk, NFS)
// in reads of read_size bytes; at most `buffer` lines wait for the stream, so a
// slow consumer slows the reads (never more than buffer lines plus one read
// ahead). The file is opened when the stream starts and closed when it ends, fails
// or is cancelled (take, a kill switch, the sink ending). A missing file fails the
// stream with not_found, an unreadable one with io_error, both naming the path.
//
// tcp_lines binds and listens at once (errors as values naming the endpoint) and
// accepts clients once the stream runs, each connection's lines in order (lines
// of different connections interleave, connection by connection in turn). It runs
// once: running its source again fails that stream with invalid_argument.
//   Backpressure: a connection is read only while its buffer (connection_buffer
// bytes) and the server's total (max_buffered_bytes) have room; the stream's
// pulls make room. When the stream stops asking, reads stop, the kernel's
// receive window fills and TCP slows the client (its writes block). At most
// max_connections are open; further clients wait in the listen backlog until one
// closes. The total bound must leave every connection room for a line of the
// maximum length, so that no set of half-received lines can stall the server.
//   Threads: one I/O thread per running tcp_lines source (its own Boost.Asio
// io_context) accepts, waits for readable sockets and reads into the connection
// buffers under a mutex; the stream's island cuts the lines out of them when it
// pulls, and is woken (a posted message) when lines arrive while it waits. The
// I/O thread is joined when the stream ends.
//   Ending: cancelling the stream (take, a kill switch, the sink ending, a
// failure) closes the listener and every connection at once; server.stop() does
// the same, and the stream completes after the lines already received in full.
// A client closing its connection ends only that connection (its last line is
// delivered); a connection reset drops its unfinished line.
//
// Thread-safety: the functions and tcp_line_server's members may be called from
// any thread.
#pragma once

#include "troupe/actors/expected.hpp"
#include "troupe/streams/source.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

namespace troupe::streams {

// -- file_lines ----------------------------------------------------------------

struct file_lines_options {
  /// The longest line, in bytes (its terminator not counted).
  std::size_t max_line_length = 1024 * 1024;
  /// Lines read ahead of the stream.
  std::size_t buffer = 256;
  /// Bytes per read from the file.
  std::size_t read_size = 64 * 1024;
};

/// The lines of the file at `path`, read on demand (see above).
source<std::string> file_lines(std::string path, file_lines_options opts = {});

// -- tcp_lines -----------------------------------------------------------------

/// A line received by a tcp_lines server.
struct tcp_line {
  std::string line;
  /// The connection it came on: 1, 2, ... in the order the server accepted them.
  std::uint64_t connection = 0;
  /// Its number within the connection: 1, 2, ...
  std::uint64_t number = 0;
};

/// What a tcp_lines server does with a line longer than max_line_length.
enum class oversize_line {
  fail,              ///< fail the stream (oversize), naming the connection and line
  close_connection,  ///< close that connection, drop what it sent, serve the others
};

struct tcp_lines_options {
  /// The longest line, in bytes (its terminator not counted).
  std::size_t max_line_length = 8 * 1024;
  /// Connections open at once; more clients wait in the listen backlog.
  std::size_t max_connections = 64;
  /// Bytes received and not yet emitted, per connection; at least
  /// max_line_length + 2.
  std::size_t connection_buffer = 32 * 1024;
  /// Bytes received and not yet emitted, all connections together; at least
  /// max_connections * (max_line_length + 2).
  std::size_t max_buffered_bytes = 1024 * 1024;
  oversize_line on_oversize = oversize_line::fail;
};

/// Counters of a tcp_lines server, read at one instant.
struct tcp_line_stats {
  std::uint64_t accepted = 0;                  ///< connections accepted so far
  std::size_t open = 0;                        ///< connections open now
  std::uint64_t received_bytes = 0;            ///< bytes read from sockets so far
  std::uint64_t lines = 0;                     ///< lines emitted so far
  std::size_t buffered_bytes = 0;              ///< received, not yet emitted, now
  std::size_t max_buffered_bytes = 0;          ///< the highest buffered_bytes seen
  std::size_t max_connection_buffered = 0;     ///< the highest of one connection
  std::uint64_t paused_reads = 0;              ///< times a connection waited for room
  std::uint64_t closed_oversize = 0;           ///< connections closed for a long line
};

namespace detail {
class tcp_line_hub;
} // namespace detail

/// Controls a tcp_lines server; copies refer to the same server.
class tcp_line_server {
public:
  explicit tcp_line_server(std::shared_ptr<detail::tcp_line_hub> hub) : hub_(std::move(hub)) {}

  /// The port it listens on (the one the system chose for port 0).
  std::uint16_t port() const noexcept;
  /// "address:port" as errors name it.
  const std::string& endpoint() const noexcept;
  /// Closes the listener and every connection; the stream completes after the
  /// lines already received in full. Idempotent.
  void stop() const;
  tcp_line_stats stats() const;

private:
  std::shared_ptr<detail::tcp_line_hub> hub_;
};

/// A server listening on `address` (a numeric IPv4 or IPv6 address) and `port`.
expected<std::pair<source<tcp_line>, tcp_line_server>>
tcp_lines(const std::string& address, std::uint16_t port, tcp_lines_options opts = {});

} // namespace troupe::streams
