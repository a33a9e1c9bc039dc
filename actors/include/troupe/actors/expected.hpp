// troupe::expected<T>: a value or a troupe::error, the result type of every
// fallible troupe API (C++20 has no std::expected).
//
// Contract: holds exactly one of a T or an error. Accessing value() of an error
// (or error() of a value) is a programming error and aborts with a message naming
// the held error; it never throws across an actor boundary.
// Thread-safety: a value type.
#pragma once

#include "troupe/actors/error.hpp"

#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include <utility>
#include <variant>

namespace troupe {

namespace detail {
[[noreturn]] void expected_bad_access(const error* held);
} // namespace detail

template <class T>
class expected {
public:
  static_assert(!std::is_same_v<T, troupe::error>, "expected<error> is ambiguous");
  using value_type = T;

  expected() requires std::is_default_constructible_v<T> : data_(std::in_place_index<0>) {}
  expected(const T& x) : data_(std::in_place_index<0>, x) {}
  expected(T&& x) : data_(std::in_place_index<0>, std::move(x)) {}
  template <class U>
    requires(std::is_constructible_v<T, U&&> && !std::is_same_v<std::decay_t<U>, T>
             && !std::is_same_v<std::decay_t<U>, troupe::error>
             && !std::is_same_v<std::decay_t<U>, expected>)
  expected(U&& x) : data_(std::in_place_index<0>, std::forward<U>(x)) {}
  expected(troupe::error e) : data_(std::in_place_index<1>, std::move(e)) {}

  bool has_value() const noexcept { return data_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & { check(); return std::get<0>(data_); }
  const T& value() const& { check(); return std::get<0>(data_); }
  T&& value() && { check(); return std::get<0>(std::move(data_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  template <class U>
  T value_or(U&& fallback) const& {
    return has_value() ? std::get<0>(data_) : static_cast<T>(std::forward<U>(fallback));
  }

  const troupe::error& error() const& {
    if (has_value())
      detail::expected_bad_access(nullptr);
    return std::get<1>(data_);
  }
  troupe::error&& error() && {
    if (has_value())
      detail::expected_bad_access(nullptr);
    return std::get<1>(std::move(data_));
  }

private:
  void check() const {
    if (!has_value())
      detail::expected_bad_access(&std::get<1>(data_));
  }

  std::variant<T, troupe::error> data_;
};

/// expected<void>: success or an error.
template <>
class expected<void> {
public:
  expected() = default;
  expected(troupe::error e) : error_(std::move(e)) {
    if (!error_)
      error_ = troupe::error{errc::internal, "expected<void> built from a non-error"};
  }

  bool has_value() const noexcept { return !error_; }
  explicit operator bool() const noexcept { return has_value(); }
  void value() const {
    if (error_)
      detail::expected_bad_access(&error_);
  }
  const troupe::error& error() const& {
    if (!error_)
      detail::expected_bad_access(nullptr);
    return error_;
  }
  troupe::error&& error() && {
    if (!error_)
      detail::expected_bad_access(nullptr);
    return std::move(error_);
  }

private:
  troupe::error error_;
};

} // namespace troupe
