// troupe::overloaded: one visitor from several lambdas, for std::visit over the
// message variants of troupe's protocols:
//
//   std::visit(troupe::overloaded{[](const join&) { ... }, [](const leave&) { ... }}, msg);
//
// Thread-safety: a type; no state of its own.
#pragma once

namespace troupe {

template <class... Fs>
struct overloaded : Fs... {
  using Fs::operator()...;
};
template <class... Fs>
overloaded(Fs...) -> overloaded<Fs...>;

} // namespace troupe
