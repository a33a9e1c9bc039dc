// Structured logging and the metrics registry.
#include "support/temp_dir.hpp"

#include "troupe/actors/log.hpp"
#include "troupe/actors/metrics.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <thread>

TEST_CASE("log records carry level, node id and component, filtered by level") {
  auto log = troupe::logger::make({.node_id = "node-a", .level = troupe::log_level::info,
                                   .to_stderr = false});
  REQUIRE(log);
  std::vector<std::string> seen;
  (*log)->add_sink([&](const troupe::log_record& r) {
    seen.push_back(std::string{to_string(r.level)} + "|" + std::string{r.node} + "|"
                   + std::string{r.component} + "|" + std::string{r.message});
  });
  (*log)->debug("db", "hidden {}", 1);
  (*log)->info("db", "opened {}", "x.db");
  (*log)->error("supervisor/db", "child {} failed", 3);
  CHECK(seen == std::vector<std::string>{"info|node-a|db|opened x.db",
                                         "error|node-a|supervisor/db|child 3 failed"});
  (*log)->set_level(troupe::log_level::off);
  (*log)->error("db", "silenced");
  CHECK(seen.size() == 2);
}

TEST_CASE("log lines go to a file when configured") {
  troupe::test::temp_dir dir;
  auto path = dir.file("node.log");
  {
    auto log = troupe::logger::make({.node_id = "n1", .to_stderr = false, .file = path});
    REQUIRE(log);
    (*log)->warn("transport", "peer {} lost", "127.0.0.1:7355");
  }
  std::ifstream in{path};
  std::string line;
  REQUIRE(std::getline(in, line));
  CHECK(line.find("WARN") != std::string::npos);
  CHECK(line.find("[n1] transport: peer 127.0.0.1:7355 lost") != std::string::npos);
  auto bad = troupe::logger::make({.file = dir.file("no/such/dir/x.log")});
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message().find("no/such/dir/x.log") != std::string::npos);
  CHECK_FALSE(troupe::parse_log_level("loud"));
}

TEST_CASE("metrics: counters, gauges and histograms render as Prometheus text") {
  troupe::metrics_registry m;
  auto& frames = m.counter("troupe_frames_total", {{"peer", "b"}}, "Frames sent.");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i)
        m.counter("troupe_frames_total", {{"peer", "b"}}).inc();
    });
  for (auto& t : threads)
    t.join();
  CHECK(frames.value() == 4000);
  CHECK(*m.counter_value("troupe_frames_total", {{"peer", "b"}}) == 4000);
  CHECK_FALSE(m.counter_value("troupe_frames_total", {{"peer", "c"}}));
  m.gauge("troupe_queue_depth").set(3);
  m.gauge("troupe_queue_depth").add(-1);
  CHECK(*m.gauge_value("troupe_queue_depth") == 2);
  auto& h = m.histogram("troupe_latency_seconds", {0.001, 0.01, 0.1});
  for (double x : {0.0005, 0.005, 0.005, 0.05, 5.0})
    h.observe(x);
  auto snap = h.read();
  CHECK(snap.count == 5);
  CHECK(snap.quantile(0.5) == 0.01);
  auto text = m.prometheus_text();
  CHECK(text.find("# HELP troupe_frames_total Frames sent.") != std::string::npos);
  CHECK(text.find("troupe_frames_total{peer=\"b\"} 4000") != std::string::npos);
  CHECK(text.find("troupe_queue_depth 2") != std::string::npos);
  CHECK(text.find("troupe_latency_seconds_bucket{le=\"0.01\"} 3") != std::string::npos);
  CHECK(text.find("troupe_latency_seconds_bucket{le=\"+Inf\"} 5") != std::string::npos);
  CHECK(text.find("troupe_latency_seconds_count 5") != std::string::npos);
}
