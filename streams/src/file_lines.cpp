// file_lines: the lines of a file, read on a thread of the source's own through a
// bounded feed (detail/thread_fed.hpp), as the journal sources read.
#include "troupe/streams/line_sources.hpp"

#include "line_buffer.hpp"
#include "troupe/streams/detail/thread_fed.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace troupe::streams {

namespace detail {
namespace {

/// The file's descriptor, closed when the reading thread leaves (end, failure,
/// cancellation).
class file_handle {
public:
  explicit file_handle(const std::string& path) : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {}
  ~file_handle() {
    if (fd_ >= 0)
      ::close(fd_);
  }
  file_handle(const file_handle&) = delete;
  file_handle& operator=(const file_handle&) = delete;

  int fd() const noexcept { return fd_; }

private:
  int fd_;
};

error file_error(const std::string& path, const char* what, int err) {
  return error{err == ENOENT ? errc::not_found : errc::io_error,
               "file_lines '" + path + "': " + what + ": " + std::strerror(err)};
}

/// Hands lines to the feed in batches of this many: the producer's own share of
/// the read-ahead stays small next to the feed's buffer.
constexpr std::size_t push_batch = 64;

/// Reads, cuts and pushes until the end (an empty error), a failure (the error)
/// or cancellation (nullopt). The file is closed when it returns, before the
/// stream hears of its end.
std::optional<error> read_lines(feed<std::string>& f, const std::string& path,
                                const file_lines_options& o) {
  file_handle file{path};
  if (file.fd() < 0)
    return file_error(path, "cannot open", errno);
  line_buffer lines{o.max_line_length};
  std::vector<char> chunk(std::max<std::size_t>(o.read_size, 1));
  std::vector<std::string> batch;
  std::uint64_t number = 0;  // lines cut so far
  std::string line;
  auto flush = [&] {
    auto ok = batch.empty() || f.push(std::move(batch));
    batch.clear();
    return ok;
  };
  for (;;) {
    std::size_t used = 0;
    for (;;) {
      auto r = lines.next(line, used);
      if (r == line_buffer::result::need_more)
        break;
      if (r == line_buffer::result::oversize) {
        if (!flush())  // the lines before it first
          return std::nullopt;
        return error{errc::oversize, "file_lines '" + path + "': line " + std::to_string(number + 1)
                                       + " is longer than max_line_length ("
                                       + std::to_string(o.max_line_length) + " bytes)"};
      }
      ++number;
      batch.push_back(std::move(line));
      if (batch.size() == push_batch && !flush())
        return std::nullopt;
    }
    if (!flush())
      return std::nullopt;
    auto n = ::read(file.fd(), chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return file_error(path, "cannot read", errno);
    if (n == 0)
      break;
    lines.append(chunk.data(), static_cast<std::size_t>(n));
  }
  if (!lines.empty()) {
    lines.take_rest(line);
    batch.push_back(std::move(line));
    if (!flush())
      return std::nullopt;
  }
  return error{};
}

/// The reading thread's body.
void produce(feed<std::string>& f, const std::string& path, const file_lines_options& o) {
  if (auto outcome = read_lines(f, path, o))
    f.finish(std::move(*outcome));
}

/// The thread-fed stage, with its failures named after the stage (the feed
/// carries the file's error; the stream's error names the stage too).
class file_lines_stage final : public outlet<std::string> {
public:
  file_lines_stage(island_context& ctx, std::string path, file_lines_options o)
    : ctx_(ctx), name_(ctx.stage_name("file_lines")),
      inner_(ctx, o.buffer ? o.buffer : 1,
             [path = std::move(path), o](feed<std::string>& f) { produce(f, path, o); }) {}

  pull_status pull(std::vector<std::string>& out, std::size_t max) override {
    auto st = inner_.pull(out, max);
    if (st == pull_status::failed)
      return fail_with(stage_error(ctx_, name_, inner_.failure()));
    return st;
  }
  void cancel() override { inner_.cancel(); }

private:
  island_context& ctx_;
  std::string name_;
  thread_fed_stage<std::string> inner_;
};

} // namespace
} // namespace detail

source<std::string> file_lines(std::string path, file_lines_options opts) {
  return source<std::string>{[path = std::move(path), opts](detail::island_context& ctx)
                               -> detail::outlet_ptr<std::string> {
    return std::make_unique<detail::file_lines_stage>(ctx, path, opts);
  }};
}

} // namespace troupe::streams
