#include "command_batch.hpp"

#include <fmt/format.h>


namespace troupe::sharding::detail {

namespace {

constexpr std::uint8_t format_version = 1;
/// Where a batch's count sits (after the version byte).
constexpr std::size_t count_at = 1;

template <class T>
void put(std::vector<std::uint8_t>& out, T v) {
  for (std::size_t i = 0; i < sizeof(T); ++i)
    out.push_back(static_cast<std::uint8_t>(static_cast<std::uint64_t>(v) >> (8 * i)));
}

void put_bytes(std::vector<std::uint8_t>& out, const void* data, std::size_t n) {
  put(out, static_cast<std::uint32_t>(n));
  auto* p = static_cast<const std::uint8_t*>(data);
  out.insert(out.end(), p, p + n);
}

void put_str(std::vector<std::uint8_t>& out, std::string_view s) {
  put_bytes(out, s.data(), s.size());
}

/// Starts a batch in an empty `out`, and counts one more entry.
void count_one(std::vector<std::uint8_t>& out) {
  if (out.empty()) {
    out.push_back(format_version);
    put(out, std::uint32_t{0});
  }
  std::uint32_t n = 0;
  for (std::size_t i = 0; i < 4; ++i)
    n |= static_cast<std::uint32_t>(out[count_at + i]) << (8 * i);
  ++n;
  for (std::size_t i = 0; i < 4; ++i)
    out[count_at + i] = static_cast<std::uint8_t>(n >> (8 * i));
}

/// Reads what a batch holds, checking every length against what remains.
class reader {
public:
  reader(std::span<const std::uint8_t> bytes, std::string_view what) : in_(bytes), what_(what) {}

  template <class T>
  bool get(T& v) {
    if (!need(sizeof(T), "a number"))
      return false;
    std::uint64_t x = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i)
      x |= static_cast<std::uint64_t>(in_[pos_ + i]) << (8 * i);
    v = static_cast<T>(x);
    pos_ += sizeof(T);
    return true;
  }

  bool get_str(std::string& s) {
    std::uint32_t n = 0;
    if (!get(n) || !need(n, "a string"))
      return false;
    s.assign(reinterpret_cast<const char*>(in_.data() + pos_), n);
    pos_ += n;
    return true;
  }

  bool get_bytes(std::vector<std::uint8_t>& b) {
    std::uint32_t n = 0;
    if (!get(n) || !need(n, "bytes"))
      return false;
    b.assign(in_.begin() + static_cast<std::ptrdiff_t>(pos_),
             in_.begin() + static_cast<std::ptrdiff_t>(pos_ + n));
    pos_ += n;
    return true;
  }

  /// The entry count, after checking the version; at most as many entries as
  /// fit in the remaining bytes at `min_entry` bytes each (so a forged count
  /// cannot make the reader reserve more than the packet's size in entries).
  bool header(std::uint32_t& count, std::size_t min_entry) {
    std::uint8_t v = 0;
    if (!get(v))
      return false;
    if (v != format_version)
      return fail(fmt::format("unknown format version {}", v));
    if (!get(count))
      return false;
    if (count > (in_.size() - pos_) / min_entry)
      return fail(fmt::format("{} entries in {} bytes", count, in_.size() - pos_));
    return true;
  }

  bool at_end() {
    if (pos_ != in_.size())
      return fail(fmt::format("{} bytes after the last entry", in_.size() - pos_));
    return true;
  }

  bool fail(std::string why) {
    why_ = std::move(why);
    return false;
  }

  error failure() const {
    return error{errc::decode_failed, fmt::format("{} batch: {}", what_, why_)};
  }

private:
  bool need(std::size_t n, std::string_view kind) {
    if (in_.size() - pos_ >= n)
      return true;
    return fail(fmt::format("{} of {} bytes at offset {} runs past the end ({} bytes)", kind, n,
                            pos_, in_.size()));
  }

  std::span<const std::uint8_t> in_;
  std::string_view what_;
  std::size_t pos_ = 0;
  std::string why_;
};

bool read_message(reader& r, persistence::encoded_message& m) {
  return r.get_str(m.manifest) && r.get(m.version) && r.get_bytes(m.payload);
}

void write_message(std::vector<std::uint8_t>& out, const persistence::encoded_message& m) {
  put_str(out, m.manifest);
  put(out, m.version);
  put_bytes(out, m.payload.data(), m.payload.size());
}

} // namespace

void append_command(std::vector<std::uint8_t>& out, const forwarded_command& c) {
  count_one(out);
  put(out, c.request);
  put(out, c.hops);
  put(out, c.timeout_ms);
  put_str(out, c.entity_id);
  write_message(out, c.command);
}

void append_answer(std::vector<std::uint8_t>& out, const command_answer& a) {
  count_one(out);
  put(out, a.request);
  put(out, std::uint8_t{a.failure ? std::uint8_t{0} : std::uint8_t{1}});
  if (!a.failure) {
    write_message(out, a.reply);
    return;
  }
  put(out, static_cast<std::uint8_t>(a.failure.code()));
  put_str(out, a.failure.message());
}

expected<std::vector<forwarded_command>> decode_commands(std::span<const std::uint8_t> bytes) {
  reader r{bytes, "sharding command"};
  std::uint32_t count = 0;
  // request, hops, timeout, and four lengths (id, manifest, payload) with the version
  if (!r.header(count, 8 + 4 + 8 + 4 + 4 + 4 + 4))
    return r.failure();
  std::vector<forwarded_command> out(count);
  for (auto& c : out)
    if (!r.get(c.request) || !r.get(c.hops) || !r.get(c.timeout_ms) || !r.get_str(c.entity_id)
        || !read_message(r, c.command))
      return r.failure();
  if (!r.at_end())
    return r.failure();
  return out;
}

expected<std::vector<command_answer>> decode_answers(std::span<const std::uint8_t> bytes) {
  reader r{bytes, "sharding answer"};
  std::uint32_t count = 0;
  // request, flag, and the shortest outcome: an error code and its text's length
  if (!r.header(count, 8 + 1 + 1 + 4))
    return r.failure();
  std::vector<command_answer> out(count);
  for (auto& a : out) {
    std::uint8_t ok = 0;
    if (!r.get(a.request) || !r.get(ok))
      return r.failure();
    if (ok == 1) {
      if (!read_message(r, a.reply))
        return r.failure();
      continue;
    }
    std::uint8_t code = 0;
    std::string message;
    if (ok != 0 || !r.get(code) || !r.get_str(message))
      return ok != 0 ? (r.fail(fmt::format("answer flag {}", ok)), r.failure()) : r.failure();
    // A code this build does not know (a newer peer) reads as `internal`; `ok`
    // would claim success without a reply.
    auto c = code == 0 || code > static_cast<std::uint8_t>(last_errc) ? errc::internal
                                                                      : static_cast<errc>(code);
    a.failure = error{c, std::move(message)};
  }
  if (!r.at_end())
    return r.failure();
  return out;
}

} // namespace troupe::sharding::detail
