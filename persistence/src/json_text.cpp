#include "troupe/persistence/json_text.hpp"

#include <cstdint>

namespace troupe::persistence {

namespace {

/// The length of the valid UTF-8 sequence starting at text[i], or 0 if none does.
std::size_t valid_sequence(std::string_view text, std::size_t i) noexcept {
  auto byte = [&](std::size_t k) { return static_cast<std::uint8_t>(text[k]); };
  auto c = byte(i);
  if (c < 0x80)
    return 1;
  std::size_t n = 0;
  std::uint8_t lo = 0x80, hi = 0xbf;  // bounds of the second byte
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0)
      lo = 0xa0;  // no overlong forms
    else if (c == 0xed)
      hi = 0x9f;  // no surrogates
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0)
      lo = 0x90;  // no overlong forms
    else if (c == 0xf4)
      hi = 0x8f;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (i + n > text.size())
    return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi)
    return 0;
  for (std::size_t k = 2; k < n; ++k)
    if (byte(i + k) < 0x80 || byte(i + k) > 0xbf)
      return 0;
  return n;
}

} // namespace

bool is_valid_utf8(std::string_view text) noexcept {
  for (std::size_t i = 0; i < text.size();) {
    auto n = valid_sequence(text, i);
    if (n == 0)
      return false;
    i += n;
  }
  return true;
}

std::string escape_invalid_utf8(std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    auto n = valid_sequence(text, i);
    if (n > 0) {
      out.append(text.substr(i, n));
      i += n;
      continue;
    }
    auto c = static_cast<std::uint8_t>(text[i++]);
    out += "\\x";
    out += hex[c >> 4];
    out += hex[c & 0xf];
  }
  return out;
}

} // namespace troupe::persistence
