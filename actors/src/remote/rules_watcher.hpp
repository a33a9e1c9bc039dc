// transport.fault-injection.rules-file: a test-only configuration that lets a
// test partition real processes (troupe-node, the membership tests) without an
// API. A thread re-reads the file whenever it changes (checked every 100 ms) and
// loads it into the transport's fault_injector: writing "drop 127.0.0.1:7001"
// partitions from that node, emptying (or removing) the file heals. A file that
// does not parse is logged (naming the line) and the previous rules stay.
//
// Thread-safety: its own thread; destroyed (joined) by transport_state::stop.
#pragma once

#include "troupe/actors/log.hpp"
#include "troupe/actors/remote/filter.hpp"

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace troupe::remote::detail {

class rules_watcher {
public:
  rules_watcher(std::string path, std::shared_ptr<fault_injector> target, logger& log);
  ~rules_watcher();
  rules_watcher(const rules_watcher&) = delete;
  rules_watcher& operator=(const rules_watcher&) = delete;

private:
  void run();
  void check();

  std::string path_;
  std::shared_ptr<fault_injector> target_;
  logger& log_;
  std::string last_;  ///< the contents last seen (loaded or refused)
  bool seen_ = false;
  std::mutex mtx_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

} // namespace troupe::remote::detail
