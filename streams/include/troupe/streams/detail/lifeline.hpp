// lifeline: lets timers and posted callbacks find out whether the stage that
// scheduled them still exists (a stage may be destroyed before its timer fires:
// cancelled, restarted, or its island ended).
#pragma once

#include <functional>
#include <memory>
#include <utility>

namespace troupe::streams::detail {

class lifeline {
public:
  /// A callback that runs `fn` only while this lifeline (its owner) exists.
  template <class F>
  std::function<void()> guard(F fn) const {
    return [alive = std::weak_ptr<const char>(token_), fn = std::move(fn)]() mutable {
      if (alive.lock())
        fn();
    };
  }

  /// Expires when the owner is destroyed.
  std::weak_ptr<const char> token() const { return token_; }

private:
  std::shared_ptr<const char> token_ = std::make_shared<const char>('\0');
};

} // namespace troupe::streams::detail
