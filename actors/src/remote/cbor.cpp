#include "troupe/actors/remote/cbor.hpp"

#include <cmath>
#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

namespace troupe::remote::detail {

namespace {

/// A recursive-descent reader that accepts exactly what nlohmann's from_cbor
/// accepts (strict, tags refused), with the depth bound and the INT64_MIN bound
/// from the header. Each function returns false with `why_` set on an error.
class reader {
public:
  explicit reader(std::span<const std::uint8_t> in) : p_(in.data()), end_(in.data() + in.size()) {}

  bool document(nlohmann::json& out) {
    if (!value(out, 0))
      return false;
    if (p_ != end_)
      return fail("trailing bytes after the CBOR document");
    return true;
  }

  const std::string& why() const noexcept { return why_; }

private:
  bool fail(const char* what) {
    if (why_.empty())
      why_ = what;
    return false;
  }

  bool take(std::size_t n, const std::uint8_t*& at) {
    if (static_cast<std::size_t>(end_ - p_) < n)
      return fail("truncated CBOR");
    at = p_;
    p_ += n;
    return true;
  }

  bool next(std::uint8_t& byte) {
    if (p_ == end_)
      return fail("truncated CBOR");
    byte = *p_++;
    return true;
  }

  /// The argument of an initial byte whose low five bits are `info` (0..27).
  bool argument(std::uint8_t info, std::uint64_t& x) {
    if (info < 24) {
      x = info;
      return true;
    }
    if (info > 27)
      return fail("reserved or indefinite CBOR argument");
    std::size_t n = std::size_t{1} << (info - 24);
    const std::uint8_t* at = nullptr;
    if (!take(n, at))
      return false;
    x = 0;
    for (std::size_t i = 0; i < n; ++i)
      x = (x << 8) | at[i];
    return true;
  }

  /// A definite length that the rest of the input can hold (each item takes at
  /// least a byte, so this also bounds array reservations).
  bool length(std::uint8_t info, std::size_t& n) {
    std::uint64_t x = 0;
    if (!argument(info, x))
      return false;
    if (x > static_cast<std::uint64_t>(end_ - p_))
      return fail("CBOR length exceeds the input");
    n = static_cast<std::size_t>(x);
    return true;
  }

  /// Appends a text (major 3) or byte (major 2) string whose initial byte was read
  /// to `out`; indefinite strings are chunks of the same major type, as nlohmann
  /// reads them (it also accepts indefinite chunks inside them).
  template <class Out>
  bool chunks(std::uint8_t major, std::uint8_t info, Out& out, int depth) {
    if (depth > max_cbor_depth)
      return fail("CBOR nested too deeply");
    if (info != 31) {
      std::size_t n = 0;
      const std::uint8_t* at = nullptr;
      if (!length(info, n) || !take(n, at))
        return false;
      out.insert(out.end(), at, at + n);
      return true;
    }
    for (;;) {
      std::uint8_t b = 0;
      if (!next(b))
        return false;
      if (b == 0xff)
        return true;
      if ((b >> 5) != major)
        return fail("CBOR string chunk of another type");
      if (!chunks(major, b & 0x1f, out, depth + 1))
        return false;
    }
  }

  bool key(std::string& out) {
    std::uint8_t b = 0;
    if (!next(b))
      return false;
    if ((b >> 5) != 3)
      return fail("CBOR map key is not a text string");
    out.clear();
    return chunks(3, b & 0x1f, out, 0);
  }

  // Containers and strings are updated in place when `out` already holds one of
  // the same kind (a reused document from an earlier message: no allocations in
  // the steady state); the result equals a fresh parse.

  bool array(std::uint8_t info, nlohmann::json& out, int depth) {
    if (!out.is_array())
      out = nlohmann::json::array();
    auto& arr = out.get_ref<nlohmann::json::array_t&>();
    if (info != 31) {
      std::size_t n = 0;
      if (!length(info, n))  // each element takes a byte: n <= what is left
        return false;
      arr.resize(n);
      for (std::size_t i = 0; i < n; ++i)
        if (!value(arr[i], depth + 1))
          return false;
      return true;
    }
    std::size_t i = 0;
    for (; p_ != end_ && *p_ != 0xff; ++i)
      if (!value(i < arr.size() ? arr[i] : arr.emplace_back(), depth + 1))
        return false;
    arr.resize(i);
    std::uint8_t brk = 0;
    return next(brk);
  }

  bool map(std::uint8_t info, nlohmann::json& out, int depth) {
    using object = nlohmann::json::object_t;
    if (!out.is_object())
      out = nlohmann::json::object();
    auto& obj = out.get_ref<object&>();
    std::size_t n = 0;
    bool indefinite = info == 31;
    if (!indefinite && !length(info, n))
      return false;
    // Small maps are updated in place and then swept of keys this document does
    // not have; larger or indefinite ones are rebuilt.
    constexpr std::size_t in_place_limit = 32;
    bool in_place = !indefinite && n <= in_place_limit;
    if (!in_place)
      obj.clear();
    std::array<object::iterator, in_place_limit> seen;
    std::size_t seen_count = 0;
    std::size_t distinct = 0;
    std::string k;
    auto entry = [&] {
      if (!key(k))
        return false;
      auto it = obj.find(k);
      bool existed = it != obj.end();
      if (!existed)
        it = obj.emplace(k, nlohmann::json{}).first;
      if (in_place) {
        bool again = existed
                     && std::find(seen.begin(), seen.begin() + static_cast<std::ptrdiff_t>(seen_count),
                                  it)
                          != seen.begin() + static_cast<std::ptrdiff_t>(seen_count);
        if (!again) {
          seen[seen_count++] = it;
          ++distinct;
        }
      }
      // A repeated key keeps the last value, as in nlohmann's DOM parser.
      return value(it->second, depth + 1);
    };
    if (!indefinite) {
      for (std::size_t i = 0; i < n; ++i)
        if (!entry())
          return false;
    } else {
      while (p_ != end_ && *p_ != 0xff)
        if (!entry())
          return false;
      std::uint8_t brk = 0;
      if (!next(brk))
        return false;
    }
    if (in_place && obj.size() != distinct) {
      auto first = seen.begin();
      auto last = seen.begin() + static_cast<std::ptrdiff_t>(seen_count);
      for (auto it = obj.begin(); it != obj.end();)
        it = std::find(first, last, it) == last ? obj.erase(it) : std::next(it);
    }
    return true;
  }

  bool simple(std::uint8_t initial, nlohmann::json& out) {
    std::uint64_t x = 0;
    switch (initial) {
      case 0xf4: out = false; return true;
      case 0xf5: out = true; return true;
      case 0xf6: out = nullptr; return true;
      case 0xf9: {  // half precision, converted the way nlohmann does
        if (!argument(25, x))
          return false;
        auto half = static_cast<unsigned>(x);
        auto exp = static_cast<int>((half >> 10u) & 0x1fu);
        auto mant = half & 0x3ffu;
        double v = exp == 0    ? std::ldexp(mant, -24)
                   : exp == 31 ? (mant == 0 ? std::numeric_limits<double>::infinity()
                                            : std::numeric_limits<double>::quiet_NaN())
                               : std::ldexp(mant + 1024, exp - 25);
        out = (half & 0x8000u) != 0 ? -v : v;
        return true;
      }
      case 0xfa: {
        if (!argument(26, x))
          return false;
        auto bits = static_cast<std::uint32_t>(x);
        float f = 0;
        std::memcpy(&f, &bits, sizeof(f));
        out = static_cast<double>(f);
        return true;
      }
      case 0xfb: {
        if (!argument(27, x))
          return false;
        double d = 0;
        std::memcpy(&d, &x, sizeof(d));
        out = d;
        return true;
      }
      default:
        return fail("unsupported CBOR simple value");
    }
  }

  bool value(nlohmann::json& out, int depth) {
    if (depth > max_cbor_depth)
      return fail("CBOR nested too deeply");
    std::uint8_t initial = 0;
    if (!next(initial))
      return false;
    std::uint8_t info = initial & 0x1f;
    std::uint64_t x = 0;
    switch (initial >> 5) {
      case 0:
        if (!argument(info, x))
          return false;
        out = static_cast<nlohmann::json::number_unsigned_t>(x);
        return true;
      case 1:
        if (!argument(info, x))
          return false;
        if (x > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
          return fail("CBOR negative integer below INT64_MIN");
        out = static_cast<nlohmann::json::number_integer_t>(-1)
              - static_cast<nlohmann::json::number_integer_t>(x);
        return true;
      case 2: {
        if (!out.is_binary())
          out = nlohmann::json::binary({});
        auto& bin = out.get_binary();
        bin.clear();
        bin.clear_subtype();
        return chunks(2, info, static_cast<nlohmann::json::binary_t::container_type&>(bin), depth);
      }
      case 3: {
        if (!out.is_string())
          out = std::string{};
        auto& str = out.get_ref<std::string&>();
        str.clear();
        return chunks(3, info, str, depth);
      }
      case 4:
        return array(info, out, depth);
      case 5:
        return map(info, out, depth);
      case 6:
        return fail("CBOR tags are not accepted");
      default:
        return simple(initial, out);
    }
  }

  const std::uint8_t* p_;
  const std::uint8_t* end_;
  std::string why_;
};

/// Major type `major` with argument `x`, in the shortest form (as nlohmann).
void head(std::vector<std::uint8_t>& out, std::uint8_t major, std::uint64_t x) {
  auto m = static_cast<std::uint8_t>(major << 5);
  if (x <= 0x17) {
    out.push_back(static_cast<std::uint8_t>(m | x));
    return;
  }
  int bytes = x <= 0xff ? 1 : x <= 0xffff ? 2 : x <= 0xffffffff ? 4 : 8;
  out.push_back(static_cast<std::uint8_t>(m | (bytes == 1 ? 24 : bytes == 2 ? 25 : bytes == 4 ? 26 : 27)));
  for (int i = bytes - 1; i >= 0; --i)
    out.push_back(static_cast<std::uint8_t>(x >> (8 * i)));
}

void text(std::vector<std::uint8_t>& out, const std::string& s) {
  head(out, 3, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

} // namespace

bool read_cbor(std::span<const std::uint8_t> payload, nlohmann::json& out, std::string& why) {
  reader r{payload};
  if (r.document(out))
    return true;
  why = r.why();
  return false;
}

void write_cbor(const nlohmann::json& doc, std::vector<std::uint8_t>& out) {
  using t = nlohmann::json::value_t;
  switch (doc.type()) {
    case t::null:
      out.push_back(0xf6);
      return;
    case t::boolean:
      out.push_back(doc.get<bool>() ? 0xf5 : 0xf4);
      return;
    case t::number_integer: {
      auto v = doc.get<std::int64_t>();
      if (v >= 0)
        head(out, 0, static_cast<std::uint64_t>(v));
      else
        head(out, 1, static_cast<std::uint64_t>(-1 - v));
      return;
    }
    case t::number_unsigned:
      head(out, 0, doc.get<std::uint64_t>());
      return;
    case t::string:
      text(out, doc.get_ref<const std::string&>());
      return;
    case t::array:
      head(out, 4, doc.size());
      for (auto& x : doc.get_ref<const nlohmann::json::array_t&>())
        write_cbor(x, out);
      return;
    case t::object:
      head(out, 5, doc.size());
      for (auto& [k, x] : doc.get_ref<const nlohmann::json::object_t&>()) {
        text(out, k);
        write_cbor(x, out);
      }
      return;
    case t::binary: {
      auto& b = doc.get_binary();
      if (!b.has_subtype()) {
        head(out, 2, b.size());
        out.insert(out.end(), b.begin(), b.end());
        return;
      }
      break;
    }
    default:
      break;
  }
  // Floats (compact float rules, NaN, infinities), tagged binaries, discarded.
  nlohmann::json::to_cbor(doc, out);
}

} // namespace troupe::remote::detail
