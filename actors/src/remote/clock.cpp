#include "troupe/actors/remote/clock.hpp"

namespace troupe::remote {

namespace {

class steady_clock_source final : public transport_clock {
public:
  time_point now() const noexcept override { return std::chrono::steady_clock::now(); }
};

} // namespace

std::shared_ptr<const transport_clock> steady_transport_clock() {
  static const auto instance = std::make_shared<const steady_clock_source>();
  return instance;
}

} // namespace troupe::remote
