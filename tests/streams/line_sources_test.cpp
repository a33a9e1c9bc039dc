// Line sources: file_lines over real files, tcp_lines over real TCP on 127.0.0.1.
// Bounds are asserted as counts (bytes read, bytes buffered), never as time.
#include "support/node_fixture.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

#include "troupe/streams/line_sources.hpp"
#include "troupe/streams/streams.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

using namespace std::chrono_literals;
namespace ts = troupe::streams;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

/// Holds the elements passing through it until the test opens it: a consumer as
/// slow as the test wants, without sleeping (used with map_async(1): one held).
class gate {
public:
  template <class R>
  void pass(R x, ts::async_reply<R> reply) {
    {
      std::lock_guard<std::mutex> lock{mtx_};
      if (!open_) {
        held_.push_back([x = std::move(x), reply]() mutable { reply(std::move(x)); });
        return;
      }
    }
    reply(std::move(x));
  }
  void open() {
    std::vector<std::function<void()>> held;
    {
      std::lock_guard<std::mutex> lock{mtx_};
      open_ = true;
      held.swap(held_);
    }
    for (auto& f : held)
      f();
  }
  std::size_t held() const {
    std::lock_guard<std::mutex> lock{mtx_};
    return held_.size();
  }

private:
  mutable std::mutex mtx_;
  bool open_ = false;
  std::vector<std::function<void()>> held_;
};

/// The elements a stream's sink received, from any thread.
template <class T>
class recorder {
public:
  void add(T x) {
    std::lock_guard<std::mutex> lock{mtx_};
    items_.push_back(std::move(x));
  }
  std::size_t size() const {
    std::lock_guard<std::mutex> lock{mtx_};
    return items_.size();
  }
  std::vector<T> items() const {
    std::lock_guard<std::mutex> lock{mtx_};
    return items_;
  }
  auto sink() {
    return ts::for_each<T>([this](T x) { add(std::move(x)); });
  }

private:
  mutable std::mutex mtx_;
  std::vector<T> items_;
};

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out{path, std::ios::binary};
  out << content;
}

/// "000042 ....\n": numbered lines of `width` bytes (newline included).
std::string numbered_line(std::size_t i, std::size_t width) {
  auto s = std::to_string(i);
  s.insert(0, 6 - std::min<std::size_t>(6, s.size()), '0');
  s.resize(width - 1, '.');
  return s + "\n";
}

/// The descriptors this process has open on `path`.
std::vector<int> fds_on(const std::string& path) {
  auto target = std::filesystem::canonical(path);
  std::vector<int> fds;
  for (auto& e : std::filesystem::directory_iterator{"/proc/self/fd"}) {
    std::error_code ec;
    auto link = std::filesystem::read_symlink(e.path(), ec);
    if (!ec && link == target)
      fds.push_back(std::stoi(e.path().filename().string()));
  }
  return fds;
}

/// How far `fd` has read (its file offset).
std::uint64_t offset_of(int fd) {
  std::ifstream in{"/proc/self/fdinfo/" + std::to_string(fd)};
  std::string key;
  while (in >> key)
    if (key == "pos:") {
      std::uint64_t pos = 0;
      in >> pos;
      return pos;
    }
  return 0;
}

std::vector<std::string> read_all(troupe::node& node, const std::string& path, ts::file_lines_options o = {},
                                  troupe::error* failure = nullptr) {
  auto r = ts::file_lines(path, o).to(ts::collect_all<std::string>()).run(node);
  REQUIRE(r);
  auto v = r->wait(30s);
  if (!v) {
    REQUIRE(failure);
    *failure = v.error();
    return {};
  }
  return *v;
}

// -- TCP clients -----------------------------------------------------------------

struct client {
  client(asio::io_context& io, std::uint16_t port, std::size_t send_buffer = 0) : sock(io) {
    sock.open(tcp::v4());
    if (send_buffer)
      sock.set_option(asio::socket_base::send_buffer_size(static_cast<int>(send_buffer)));
    sock.connect(tcp::endpoint{asio::ip::make_address("127.0.0.1"), port});
  }
  void send(const std::string& s) { asio::write(sock, asio::buffer(s)); }
  void close() {
    boost::system::error_code ignored;
    sock.shutdown(tcp::socket::shutdown_send, ignored);
    sock.close(ignored);
  }
  /// The server closed the connection (a read ends or fails); does not block.
  bool closed_by_server() {
    sock.non_blocking(true);
    char c;
    boost::system::error_code ec;
    sock.read_some(asio::buffer(&c, 1), ec);
    return ec && ec != asio::error::would_block;
  }
  tcp::socket sock;
};

bool refuses_connections(std::uint16_t port) {
  asio::io_context io;
  tcp::socket s{io};
  boost::system::error_code ec;
  s.connect(tcp::endpoint{asio::ip::make_address("127.0.0.1"), port}, ec);
  return ec == asio::error::connection_refused;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

} // namespace

// -- file_lines --------------------------------------------------------------------

TEST_CASE("line sources: file_lines emits every line in order, CRLF and a last line without newline included") {
  troupe::test::temp_dir dir;
  auto node = troupe::test::make_node();
  auto path = dir.file("lines.txt");
  write_file(path, "first\nsecond\r\n\nfourth with spaces\nlast without newline");
  auto lines = read_all(*node, path);
  CHECK(lines == std::vector<std::string>{"first", "second", "", "fourth with spaces", "last without newline"});
  // Many reads and many batches: 5000 numbered lines through reads of 100 bytes.
  std::string big;
  for (std::size_t i = 0; i < 5000; ++i)
    big += numbered_line(i, 24);
  write_file(path, big);
  auto many = read_all(*node, path, {.buffer = 7, .read_size = 100});
  REQUIRE(many.size() == 5000);
  for (std::size_t i = 0; i < many.size(); ++i)
    REQUIRE(many[i] + "\n" == numbered_line(i, 24));
}

TEST_CASE("line sources: file_lines of an empty file completes without elements") {
  troupe::test::temp_dir dir;
  auto node = troupe::test::make_node();
  write_file(dir.file("empty.txt"), "");
  CHECK(read_all(*node, dir.file("empty.txt")).empty());
}

TEST_CASE("line sources: file_lines of a missing file fails with not_found naming the file") {
  troupe::test::temp_dir dir;
  auto node = troupe::test::make_node();
  troupe::error e;
  read_all(*node, dir.file("missing.txt"), {}, &e);
  CHECK(e.code() == troupe::errc::not_found);
  CHECK(contains(e.message(), dir.file("missing.txt")));
  CHECK(contains(e.message(), "file_lines#"));  // the stage
  // A directory opens but cannot be read: io_error, also naming the path.
  troupe::error d;
  read_all(*node, dir.path().string(), {}, &d);
  CHECK(d.code() == troupe::errc::io_error);
  CHECK(contains(d.message(), dir.path().string()));
}

TEST_CASE("line sources: file_lines fails on a line longer than max_line_length naming the file and line") {
  troupe::test::temp_dir dir;
  auto node = troupe::test::make_node();
  auto path = dir.file("long.txt");
  // The third line has no end at all: 4 MB of one line, refused after 65 bytes
  // of it, not read into memory.
  write_file(path, "short\nalso short\n" + std::string(4'000'000, 'x'));
  troupe::error e;
  read_all(*node, path, {.max_line_length = 64, .read_size = 256}, &e);
  CHECK(e.code() == troupe::errc::oversize);
  CHECK(contains(e.message(), path));
  CHECK(contains(e.message(), "line 3 is longer than max_line_length (64 bytes)"));
  // A line of exactly the maximum passes, CRLF or not; one byte more fails.
  write_file(path, std::string(64, 'a') + "\r\n" + std::string(64, 'b') + "\n" + std::string(64, 'c'));
  CHECK(read_all(*node, path, {.max_line_length = 64, .read_size = 10}).size() == 3);
  write_file(path, std::string(64, 'a') + "\n" + std::string(65, 'b') + "\n");
  troupe::error e2;
  read_all(*node, path, {.max_line_length = 64}, &e2);
  CHECK(e2.code() == troupe::errc::oversize);
  CHECK(contains(e2.message(), "line 2"));
}

TEST_CASE("line sources: file_lines reads ahead at most its buffer while the stream does not ask") {
  troupe::test::temp_dir dir;
  auto node = troupe::test::make_node();
  auto path = dir.file("big.txt");
  constexpr std::size_t lines = 20'000;
  constexpr std::size_t width = 16;
  std::string big;
  for (std::size_t i = 0; i < lines; ++i)
    big += numbered_line(i, width);
  write_file(path, big);  // 320,000 bytes
  auto g = std::make_shared<gate>();
  recorder<std::string> got;
  auto done = ts::file_lines(path, {.buffer = 8, .read_size = 1024})
                .via(ts::map_async<std::string>(1, [g](std::string l, ts::async_reply<std::string> reply) {
                  g->pass(std::move(l), reply);
                }))
                .to(got.sink())
                .run(*node);
  REQUIRE(done);
  REQUIRE(troupe::test::wait_until([&] { return g->held() == 1 && !fds_on(path).empty(); }));
  auto fds = fds_on(path);
  REQUIRE(fds.size() == 1);
  // The reader holds at most 8 lines in the feed, one batch it is pushing and one
  // read of 1024 bytes: a few KB of the 320 KB, however long the stream waits.
  constexpr std::uint64_t bound = 8 * 1024;
  for (int sample = 0; sample < 50; ++sample)
    REQUIRE(offset_of(fds[0]) <= bound);
  CHECK(offset_of(fds[0]) > 0);
  g->open();
  REQUIRE(done->wait(30s));
  auto all = got.items();
  REQUIRE(all.size() == lines);
  for (std::size_t i = 0; i < lines; ++i)
    REQUIRE(all[i] + "\n" == numbered_line(i, width));
  CHECK(fds_on(path).empty());
}

TEST_CASE("line sources: cancelling a file_lines stream with take closes the file") {
  troupe::test::temp_dir dir;
  auto node = troupe::test::make_node();
  auto path = dir.file("big.txt");
  std::string big;
  for (std::size_t i = 0; i < 10'000; ++i)
    big += numbered_line(i, 16);
  write_file(path, big);
  auto r = ts::file_lines(path, {.buffer = 4, .read_size = 64})
             .via(ts::take(5))
             .to(ts::collect_all<std::string>())
             .run(*node);
  REQUIRE(r);
  auto v = r->wait(30s);
  REQUIRE(v);
  CHECK(v->size() == 5);
  CHECK(v->back() + "\n" == numbered_line(4, 16));
  CHECK(troupe::test::wait_until([&] { return fds_on(path).empty(); }));
}

// -- tcp_lines -----------------------------------------------------------------------

TEST_CASE("line sources: tcp_lines delivers every line of several clients in order per connection") {
  auto node = troupe::test::make_node();
  auto tcp = ts::tcp_lines("127.0.0.1", 0);
  REQUIRE(tcp);
  auto& [src, server] = *tcp;
  REQUIRE(server.port() != 0);
  CHECK(server.endpoint() == "127.0.0.1:" + std::to_string(server.port()));
  recorder<ts::tcp_line> got;
  auto done = src.to(got.sink()).run(*node);
  REQUIRE(done);
  asio::io_context io;
  constexpr int clients = 4;
  constexpr int per_client = 500;
  std::vector<std::unique_ptr<client>> cs;
  for (int c = 0; c < clients; ++c)
    cs.push_back(std::make_unique<client>(io, server.port()));
  // Interleaved writes, a line at a time; the last client's last line has no
  // newline and ends with the connection.
  for (int i = 0; i < per_client; ++i)
    for (int c = 0; c < clients; ++c) {
      auto line = "client " + std::to_string(c) + " line " + std::to_string(i);
      bool last = c == clients - 1 && i == per_client - 1;
      cs[c]->send(last ? line : line + "\n");
    }
  for (auto& c : cs)
    c->close();
  REQUIRE(troupe::test::wait_until([&] { return got.size() == clients * per_client; }));
  std::map<std::uint64_t, std::vector<ts::tcp_line>> by_connection;
  for (auto& l : got.items())
    by_connection[l.connection].push_back(l);
  REQUIRE(by_connection.size() == clients);
  std::set<std::string> senders;
  for (auto& [id, lines] : by_connection) {
    REQUIRE(lines.size() == per_client);
    auto prefix = lines[0].line.substr(0, lines[0].line.find(" line "));
    senders.insert(prefix);
    for (int i = 0; i < per_client; ++i) {
      REQUIRE(lines[i].line == prefix + " line " + std::to_string(i));
      REQUIRE(lines[i].number == static_cast<std::uint64_t>(i + 1));
    }
  }
  CHECK(senders.size() == clients);
  CHECK(troupe::test::wait_until([&] { return server.stats().open == 0; }));
  auto s = server.stats();
  CHECK(s.accepted == clients);
  CHECK(s.lines == clients * per_client);
  CHECK(s.buffered_bytes == 0);
  server.stop();
  CHECK(done->wait(10s));
}

TEST_CASE("line sources: tcp_lines keeps its buffer bounded and a client sending faster than the stream consumes is blocked by TCP") {
  auto node = troupe::test::make_node();
  constexpr std::size_t connection_buffer = 1024;
  auto tcp = ts::tcp_lines("127.0.0.1", 0,
                           {.max_line_length = 100, .max_connections = 2,
                            .connection_buffer = connection_buffer, .max_buffered_bytes = 2048});
  REQUIRE(tcp);
  auto& [src, server] = *tcp;
  auto g = std::make_shared<gate>();
  recorder<std::string> got;
  auto done = src.via(ts::map_async<std::string>(1, [g](ts::tcp_line l, ts::async_reply<std::string> reply) {
                   g->pass(std::move(l.line), reply);
                 }))
                .to(got.sink())
                .run(*node);
  REQUIRE(done);
  asio::io_context io;
  client c{io, server.port(), 4096};
  c.sock.non_blocking(true);
  // The client writes numbered 64-byte lines without blocking until the kernel
  // refuses more (would_block); at most 64 MB, far beyond any socket buffer.
  constexpr std::size_t width = 64;
  constexpr std::uint64_t cap = 64ull << 20;
  std::uint64_t written = 0;
  std::size_t next = 0;
  std::string pending;
  std::size_t pending_at = 0;
  auto write_until_blocked = [&] {
    while (written < cap) {
      if (pending_at == pending.size()) {
        pending = numbered_line(next++, width);
        pending_at = 0;
      }
      boost::system::error_code ec;
      auto n = c.sock.write_some(asio::buffer(pending.data() + pending_at, pending.size() - pending_at), ec);
      if (ec == asio::error::would_block)
        return true;
      REQUIRE_FALSE(ec);
      pending_at += n;
      written += n;
    }
    return false;
  };
  REQUIRE(write_until_blocked());
  // The server filled the connection's buffer and stopped reading it ...
  REQUIRE(troupe::test::wait_until([&] { return server.stats().paused_reads > 0; }));
  // ... so once the kernel's buffers are full again, the client stays blocked.
  REQUIRE(write_until_blocked());
  REQUIRE(troupe::test::wait_until([&] { return g->held() == 1; }));  // the stream took one line
  auto s = server.stats();
  CHECK(s.max_connection_buffered <= connection_buffer);
  CHECK(s.max_buffered_bytes <= connection_buffer);
  CHECK(s.buffered_bytes <= connection_buffer);
  CHECK(g->held() == 1);  // and asks for no more
  CHECK(got.size() == 0);
  // Most of what the client wrote was never read: TCP holds it, the server does not.
  CHECK(s.received_bytes < written);
  CHECK(written > 4 * connection_buffer);
  INFO("written " << written << ", received " << s.received_bytes);
  // The stream consumes again: the rest arrives, in order, and the bounds held.
  g->open();
  c.sock.non_blocking(false);
  c.send(pending.substr(pending_at));
  c.close();
  REQUIRE(troupe::test::wait_until([&] { return got.size() == next; }, 30s));
  auto all = got.items();
  for (std::size_t i = 0; i < next; ++i)
    REQUIRE(all[i] + "\n" == numbered_line(i, width));
  s = server.stats();
  CHECK(s.max_connection_buffered <= connection_buffer);
  CHECK(s.max_buffered_bytes <= connection_buffer);
  CHECK(s.received_bytes == next * width);
  server.stop();
  CHECK(done->wait(10s));
}

TEST_CASE("line sources: tcp_lines accepts at most max_connections, and a further client waits until one closes") {
  auto node = troupe::test::make_node();
  auto tcp = ts::tcp_lines("127.0.0.1", 0,
                           {.max_line_length = 100, .max_connections = 2, .connection_buffer = 1024,
                            .max_buffered_bytes = 2048});
  REQUIRE(tcp);
  auto& [src, server] = *tcp;
  recorder<ts::tcp_line> got;
  auto done = src.to(got.sink()).run(*node);
  REQUIRE(done);
  auto has = [&](const std::string& text) {
    for (auto& l : got.items())
      if (l.line == text)
        return true;
    return false;
  };
  asio::io_context io;
  client a{io, server.port()};
  client b{io, server.port()};
  a.send("a1\n");
  b.send("b1\n");
  REQUIRE(troupe::test::wait_until([&] { return has("a1") && has("b1"); }));
  client c{io, server.port()};  // completes in the listen backlog, not accepted
  c.send("c1\n");
  b.send("b2\n");
  REQUIRE(troupe::test::wait_until([&] { return has("b2"); }));
  CHECK(server.stats().accepted == 2);
  CHECK(server.stats().open == 2);
  CHECK_FALSE(has("c1"));
  a.close();
  REQUIRE(troupe::test::wait_until([&] { return has("c1"); }));
  CHECK(server.stats().accepted == 3);
  server.stop();
  CHECK(done->wait(10s));
}

TEST_CASE("line sources: tcp_lines fails on an oversize line naming the endpoint, connection and line, or closes that connection") {
  auto node = troupe::test::make_node();
  ts::tcp_lines_options o{.max_line_length = 16, .max_connections = 4, .connection_buffer = 64,
                          .max_buffered_bytes = 256};
  asio::io_context io;
  {
    auto tcp = ts::tcp_lines("127.0.0.1", 0, o);
    REQUIRE(tcp);
    auto& [src, server] = *tcp;
    auto r = src.to(ts::collect_all<ts::tcp_line>()).run(*node);
    REQUIRE(r);
    client c{io, server.port()};
    c.send("fine\n" + std::string(1000, 'x') + "\n");
    auto v = r->wait(30s);
    REQUIRE_FALSE(v);
    CHECK(v.error().code() == troupe::errc::oversize);
    CHECK(contains(v.error().message(), "tcp_lines 127.0.0.1:" + std::to_string(server.port())));
    CHECK(contains(v.error().message(), "connection 1 from 127.0.0.1:"));
    CHECK(contains(v.error().message(), "line 2 is longer than max_line_length (16 bytes)"));
    CHECK(contains(v.error().message(), "tcp_lines#"));  // the stage
    CHECK(server.stats().max_connection_buffered <= o.connection_buffer);
    CHECK(troupe::test::wait_until([&] { return c.closed_by_server(); }));
  }
  o.on_oversize = ts::oversize_line::close_connection;
  auto tcp = ts::tcp_lines("127.0.0.1", 0, o);
  REQUIRE(tcp);
  auto& [src, server] = *tcp;
  recorder<ts::tcp_line> got;
  auto done = src.to(got.sink()).run(*node);
  REQUIRE(done);
  client bad{io, server.port()};
  bad.send("bad 1\n" + std::string(1000, 'x'));
  CHECK(troupe::test::wait_until([&] { return bad.closed_by_server(); }));
  CHECK(server.stats().closed_oversize == 1);
  client good{io, server.port()};
  good.send("good 1\ngood 2\n");
  REQUIRE(troupe::test::wait_until([&] { return got.size() == 3; }));
  auto all = got.items();
  CHECK(all[0].line == "bad 1");
  CHECK(all[1].line == "good 1");
  CHECK(all[2].line == "good 2");
  CHECK_FALSE(done->ready());
  server.stop();
  CHECK(done->wait(10s));
}

TEST_CASE("line sources: cancelling a tcp_lines stream with take closes the listener and the connections") {
  auto node = troupe::test::make_node();
  auto tcp = ts::tcp_lines("127.0.0.1", 0);
  REQUIRE(tcp);
  auto& [src, server] = *tcp;
  auto r = src.via(ts::take(3)).to(ts::collect_all<ts::tcp_line>()).run(*node);
  REQUIRE(r);
  asio::io_context io;
  client c{io, server.port()};
  c.send("1\n2\n3\n4\n5\n");
  auto v = r->wait(30s);
  REQUIRE(v);
  REQUIRE(v->size() == 3);
  CHECK(v->back().line == "3");
  CHECK(troupe::test::wait_until([&] { return c.closed_by_server(); }));
  CHECK(troupe::test::wait_until([&] { return refuses_connections(server.port()); }));
  CHECK(server.stats().open == 0);
}

TEST_CASE("line sources: tcp_line_server stop completes the stream after the lines received in full") {
  auto node = troupe::test::make_node();
  auto tcp = ts::tcp_lines("127.0.0.1", 0);
  REQUIRE(tcp);
  auto& [src, server] = *tcp;
  recorder<ts::tcp_line> got;
  auto done = src.to(got.sink()).run(*node);
  REQUIRE(done);
  asio::io_context io;
  client c{io, server.port()};
  c.send("a\nb\nunfinished");
  REQUIRE(troupe::test::wait_until([&] { return got.size() == 2; }));
  server.stop();
  REQUIRE(done->wait(10s));
  CHECK(got.size() == 2);  // the unfinished line is not a line
  CHECK(troupe::test::wait_until([&] { return c.closed_by_server(); }));
  CHECK(troupe::test::wait_until([&] { return refuses_connections(server.port()); }));
}

TEST_CASE("line sources: tcp_lines errors are values naming the endpoint, and its source runs once") {
  auto node = troupe::test::make_node();
  auto first = ts::tcp_lines("127.0.0.1", 0);
  REQUIRE(first);
  auto port = first->second.port();
  auto taken = ts::tcp_lines("127.0.0.1", port);
  REQUIRE_FALSE(taken);
  CHECK(taken.error().code() == troupe::errc::io_error);
  CHECK(contains(taken.error().message(), "tcp_lines 127.0.0.1:" + std::to_string(port) + ": cannot bind"));
  auto name = ts::tcp_lines("localhost", 0);
  REQUIRE_FALSE(name);
  CHECK(name.error().code() == troupe::errc::invalid_argument);
  CHECK(contains(name.error().message(), "'localhost' is not a numeric IP address"));
  auto small = ts::tcp_lines("127.0.0.1", 0, {.max_line_length = 100, .max_connections = 10,
                                              .connection_buffer = 1024, .max_buffered_bytes = 1000});
  REQUIRE_FALSE(small);
  CHECK(small.error().code() == troupe::errc::invalid_argument);
  CHECK(contains(small.error().message(), "max_buffered_bytes (1000) must be at least"));
  // A second run of the same source fails; the first keeps serving. (Streams
  // start on their own actors: the first run owns the source once a line came
  // through it, not when run() returns.)
  auto& [src, server] = *first;
  recorder<ts::tcp_line> got;
  auto done = src.to(got.sink()).run(*node);
  REQUIRE(done);
  asio::io_context io;
  client c{io, port};
  c.send("first\n");
  REQUIRE(troupe::test::wait_until([&] { return got.size() == 1; }));
  auto again = src.to(ts::collect_all<ts::tcp_line>()).run(*node);
  REQUIRE(again);
  auto v = again->wait(10s);
  REQUIRE_FALSE(v);
  CHECK(v.error().code() == troupe::errc::invalid_argument);
  CHECK(contains(v.error().message(), "runs once"));
  c.send("still here\n");
  CHECK(troupe::test::wait_until([&] { return got.size() == 2; }));
  server.stop();
  CHECK(done->wait(10s));
  // A server that never ran closes its listener when stopped.
  auto idle = ts::tcp_lines("127.0.0.1", 0);
  REQUIRE(idle);
  idle->second.stop();
  CHECK(refuses_connections(idle->second.port()));
}
