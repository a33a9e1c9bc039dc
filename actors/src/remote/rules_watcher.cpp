#include "remote/rules_watcher.hpp"

#include <chrono>
#include <fstream>
#include <iterator>

namespace troupe::remote::detail {

namespace {

constexpr auto poll_interval = std::chrono::milliseconds{100};

} // namespace

rules_watcher::rules_watcher(std::string path, std::shared_ptr<fault_injector> target,
                             logger& log)
  : path_(std::move(path)), target_(std::move(target)), log_(log) {
  check();  // the rules hold from the start
  thread_ = std::thread{[this] { run(); }};
}

rules_watcher::~rules_watcher() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void rules_watcher::run() {
  std::unique_lock<std::mutex> lock{mtx_};
  while (!cv_.wait_for(lock, poll_interval, [&] { return stop_; })) {
    lock.unlock();
    check();
    lock.lock();
  }
}

void rules_watcher::check() {
  // A missing file means no rules (healed).
  std::ifstream in{path_};
  std::string text{std::istreambuf_iterator<char>{in}, {}};
  if (seen_ && text == last_)
    return;
  seen_ = true;
  last_ = text;
  if (auto r = target_->load(text); !r) {
    log_.error("transport", "{} (transport.fault-injection.rules-file {}); the previous rules stay",
               r.error().message(), path_);
    return;
  }
  log_.info("transport", "fault injection rules loaded from {}", path_);
}

} // namespace troupe::remote::detail
