#include "troupe/persistence/detail/entity_model.hpp"

#include <cxxabi.h>

#include <cstdlib>

namespace troupe::persistence::detail {

std::string type_name(const char* mangled) {
  int status = 0;
  char* text = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  if (status != 0 || text == nullptr)
    return mangled;
  std::string result{text};
  std::free(text);
  return result;
}

} // namespace troupe::persistence::detail
