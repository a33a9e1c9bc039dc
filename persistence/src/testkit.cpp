#include "troupe/persistence/testkit.hpp"

#include "troupe/actors/node.hpp"
#include "troupe/persistence/journal_service.hpp"

#include <caf/all.hpp>

#include <condition_variable>
#include <mutex>
#include <cstdio>
#include <cstdlib>

namespace troupe::persistence::detail {

namespace {

// The testkit is test support: a setup error is a broken test, reported loudly.
[[noreturn]] void setup_failed(const error& e) {
  std::fprintf(stderr, "persistence testkit: %s\n", e.to_string().c_str());
  std::abort();
}

struct termination_flag {
  std::mutex mtx;
  std::condition_variable cv;
  bool value = false;

  void set() {
    std::lock_guard<std::mutex> guard{mtx};
    value = true;
    cv.notify_all();
  }
  bool get() {
    std::lock_guard<std::mutex> guard{mtx};
    return value;
  }
  bool wait(duration timeout) {
    std::unique_lock<std::mutex> lock{mtx};
    return cv.wait_for(lock, timeout, [this] { return value; });
  }
};

} // namespace

testkit_base::testkit_base(const std::function<void(codec_registry&)>& register_types,
                           const std::vector<std::string>& overrides, duration timeout)
  : journal_(std::make_shared<memory_journal>()), timeout_(timeout) {
  auto schema = node_config_keys();
  add_config_keys(schema);
  config cfg{std::move(schema)};
  for (auto [key, value] : {std::pair{"log.level", "warn"}, std::pair{"scheduler.threads", "2"},
                            std::pair{"node.name", "testkit"}})
    if (auto r = cfg.set_text(key, value); !r)
      setup_failed(r.error());
  for (auto& kv : overrides) {
    auto eq = kv.find('=');
    if (eq == std::string::npos)
      setup_failed(error{errc::invalid_config, "testkit config override '" + kv
                                                 + "' is not key=value"});
    if (auto r = cfg.set_text(kv.substr(0, eq), kv.substr(eq + 1)); !r)
      setup_failed(r.error());
  }
  codec_ = std::make_shared<codec_registry>();
  if (register_types)
    register_types(*codec_);
  auto n = node::start(std::move(cfg), node::options{codec_});
  if (!n)
    setup_failed(n.error());
  node_ = std::move(*n);
  if (auto j = install_journal(*node_, journal_, journal_); !j)
    setup_failed(j.error());
}

testkit_base::~testkit_base() {
  journal_->clear_faults();  // releases journal calls a test left blocked in a delay
  node_->shutdown();
}

caf::actor_system& testkit_base::system() {
  return node_->system();
}

expected<void> testkit_base::start(blueprint_ptr bp) {
  auto a = spawn_entity(*node_, std::move(bp));
  if (!a)
    return std::move(a).error();
  actor_ = std::move(*a);
  auto flag = std::make_shared<termination_flag>();
  actor_->attach_functor([flag] { flag->set(); });
  terminated_ = flag;
  return {};
}

expected<void> testkit_base::stop() {
  auto r = stop_and_wait(node_->system(), actor_, timeout_);
  return r;
}

bool testkit_base::running() const {
  auto flag = std::static_pointer_cast<termination_flag>(terminated_);
  return actor_ && flag && !flag->get();
}

bool testkit_base::wait_stopped(duration timeout) {
  auto flag = std::static_pointer_cast<termination_flag>(terminated_);
  return !actor_ || !flag || flag->wait(timeout);
}

expected<std::shared_ptr<void>> testkit_base::state() {
  return query_state(node_->system(), actor_, timeout_);
}

sequence_nr testkit_base::highest(const std::string& pid) {
  auto h = journal_->highest_sequence_nr(pid);
  return h ? *h : 0;
}

std::vector<event_record> testkit_base::events(const std::string& pid, sequence_nr from,
                                               sequence_nr to) {
  std::vector<event_record> result;
  while (from <= to) {
    auto page = journal_->read_events(pid, from, to, 1000);
    if (!page || page->empty())
      break;
    from = page->back().seq + 1;
    for (auto& e : *page)
      result.push_back(std::move(e));
  }
  return result;
}

} // namespace troupe::persistence::detail
