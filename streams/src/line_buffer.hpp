// line_buffer: bytes received from a file or a socket, cut into lines (internal to
// the line sources, line_sources.hpp).
//
// A line is the bytes before a '\n'; one '\r' right before the '\n' is dropped
// (CRLF). A line longer than `max_line` bytes is reported as oversize as soon as
// the buffer proves it (its first max_line + 2 bytes hold no line end), so a
// producer that stops filling the buffer once next() says oversize holds at most
// max_line + 1 bytes of a line plus the bytes of its last append.
//
// Thread-safety: none; its owner serializes access (the file source's thread, or
// the TCP source's mutex).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>

namespace troupe::streams::detail {

class line_buffer {
public:
  enum class result { line, need_more, oversize };

  explicit line_buffer(std::size_t max_line) : max_line_(max_line) {}

  void append(const char* bytes, std::size_t n) {
    if (pos_ > 0) {  // drop what was taken before growing (bounds the memory)
      data_.erase(0, pos_);
      pos_ = 0;
    }
    data_.append(bytes, n);
    newlines_ += static_cast<std::size_t>(std::count(bytes, bytes + n, '\n'));
  }

  /// Bytes held and not yet taken.
  std::size_t size() const noexcept { return data_.size() - pos_; }
  bool empty() const noexcept { return size() == 0; }
  /// next() has a line (or an oversize line) to report without more bytes.
  bool has_line() const noexcept { return newlines_ > 0 || head_oversize(); }

  /// Takes the next complete line into `out`; `consumed` is the bytes it
  /// occupied (terminator included). need_more: no complete line yet.
  result next(std::string& out, std::size_t& consumed) {
    consumed = 0;
    if (newlines_ == 0)
      return head_oversize() ? result::oversize : result::need_more;
    auto begin = data_.data() + pos_;
    auto nl = static_cast<const char*>(std::memchr(begin, '\n', size()));
    auto len = static_cast<std::size_t>(nl - begin);
    auto text = len > 0 && begin[len - 1] == '\r' ? len - 1 : len;
    if (text > max_line_)
      return result::oversize;
    out.assign(begin, text);
    consumed = len + 1;
    pos_ += consumed;
    --newlines_;
    return result::line;
  }

  /// The bytes after the last line end (the last line of input, which does not
  /// end with a newline; one trailing '\r' is dropped as in a CRLF); call once
  /// next() says need_more and no more bytes will come. Returns the bytes taken.
  std::size_t take_rest(std::string& out) {
    auto n = size();
    auto text = n > 0 && data_.back() == '\r' ? n - 1 : n;
    out.assign(data_.data() + pos_, text);
    clear();
    return n;
  }

  void clear() noexcept {
    data_.clear();
    pos_ = 0;
    newlines_ = 0;
  }

private:
  // Without a line end, the head line is already longer than max_line_ (a '\r'
  // at byte max_line_ + 1 may still be the first half of a CRLF).
  bool head_oversize() const noexcept {
    if (newlines_ > 0)
      return false;
    auto n = size();
    return n > max_line_ + 1 || (n == max_line_ + 1 && data_.back() != '\r');
  }

  std::size_t max_line_;
  std::string data_;
  std::size_t pos_ = 0;
  std::size_t newlines_ = 0;
};

} // namespace troupe::streams::detail
