#include "troupe/streams/detail/offset_committer.hpp"

#include <fmt/core.h>

#include <exception>

namespace troupe::streams::detail {

namespace {

/// A saver that throws fails like one that returns the error (the thread must not die).
expected<void> guarded_save(const offset_committer::save_fn& save, persistence::offset_type o) {
  try {
    return save(o);
  } catch (const std::exception& e) {
    return error{errc::io_error, fmt::format("saving offset {} threw: {}", o, e.what())};
  } catch (...) {
    return error{errc::io_error, fmt::format("saving offset {} threw", o)};
  }
}

} // namespace

offset_committer::offset_committer(save_fn save, saved_fn on_saved)
  : save_(std::move(save)), on_saved_(std::move(on_saved)), thread_([this] { run(); }) {
}

offset_committer::~offset_committer() {
  {
    std::lock_guard<std::mutex> lock{mtx_};
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void offset_committer::request(persistence::offset_type o) {
  {
    std::lock_guard<std::mutex> lock{mtx_};
    if (o <= requested_)
      return;
    requested_ = o;
  }
  cv_.notify_one();
}

void offset_committer::run() {
  std::unique_lock<std::mutex> lock{mtx_};
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || (!failed_ && requested_ > taken_); });
    if (failed_ || requested_ <= taken_)
      return;  // stopping, with nothing (more) to save
    auto o = requested_;
    taken_ = o;
    lock.unlock();
    auto saved = guarded_save(save_, o);
    on_saved_(o, saved);
    lock.lock();
    if (!saved)
      failed_ = true;
  }
}

} // namespace troupe::streams::detail
