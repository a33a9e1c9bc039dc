#include "remote_commands.hpp"

#include <fmt/format.h>

namespace troupe::sharding::detail {

bool remote_commands::forward(const remote::node_identity& region, forwarded_command c,
                              clock::time_point deadline, done_fn done) {
  c.request = next_request_++;
  waiting_.emplace(c.request, waiting{region, c.entity_id, deadline, std::move(done)});
  return queue(commands_, region, commands_manifest,
               [&](std::vector<std::uint8_t>& out) { append_command(out, c); }, c.request);
}

bool remote_commands::answer(const remote::node_identity& origin, const command_answer& a) {
  return queue(answers_, origin, answers_manifest,
               [&](std::vector<std::uint8_t>& out) { append_answer(out, a); }, 0);
}

bool remote_commands::queue(std::map<remote::node_identity, outbox>& boxes,
                            const remote::node_identity& to, std::string_view manifest,
                            const std::function<void(std::vector<std::uint8_t>&)>& write,
                            std::uint64_t request) {
  auto& box = boxes[to];
  if (box.packets.empty() || box.packets.back().bytes.size() >= max_bytes_)
    box.packets.push_back(packet_out{to, manifest, {}, {}});
  auto& p = box.packets.back();
  write(p.bytes);
  if (request != 0)
    p.requests.push_back(request);
  if (p.bytes.size() >= max_bytes_)
    full_ = true;
  return !std::exchange(flush_scheduled_, true);
}

std::vector<remote_commands::packet_out> remote_commands::take() {
  flush_scheduled_ = false;
  full_ = false;
  std::vector<packet_out> out;
  for (auto* boxes : {&commands_, &answers_}) {
    for (auto& [to, box] : *boxes)
      for (auto& p : box.packets)
        out.push_back(std::move(p));
    boxes->clear();
  }
  return out;
}

void remote_commands::finish(std::uint64_t request, expected<persistence::encoded_message> r) {
  auto i = waiting_.find(request);
  if (i == waiting_.end())
    return;
  auto done = std::move(i->second.done);
  waiting_.erase(i);
  if (done)
    done(std::move(r));
}

void remote_commands::not_sent(const packet_out& p, const error& why) {
  for (auto request : p.requests)
    finish(request, why);
}

void remote_commands::answered(std::vector<command_answer>& answers) {
  for (auto& a : answers) {
    if (a.failure)
      finish(a.request, std::move(a.failure));
    else
      finish(a.request, std::move(a.reply));
  }
}

void remote_commands::expire(clock::time_point now, std::string_view type) {
  std::vector<std::pair<std::uint64_t, error>> late;
  for (auto& [request, w] : waiting_)
    if (w.deadline <= now)
      late.emplace_back(request, error{errc::timeout,
                                       fmt::format("entity '{}|{}': no reply in time from {}", type,
                                                   w.entity_id, w.region.to_string())});
  for (auto& [request, why] : late)
    finish(request, std::move(why));
}

void remote_commands::fail_region(const remote::node_identity& region, const error& why) {
  std::vector<std::uint64_t> gone;
  for (auto& [request, w] : waiting_)
    if (w.region == region)
      gone.push_back(request);
  for (auto request : gone)
    finish(request, why);
  commands_.erase(region);
  answers_.erase(region);
}

void remote_commands::fail_all(const error& why) {
  std::vector<std::uint64_t> all;
  for (auto& [request, w] : waiting_)
    all.push_back(request);
  for (auto request : all)
    finish(request, why);
  commands_.clear();
  answers_.clear();
}

} // namespace troupe::sharding::detail
