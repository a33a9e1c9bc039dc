// Helper for the entity crash test: counter entities persisting on a real SQLite
// journal (default durability: WAL + synchronous=FULL) until the parent kills the
// process with SIGKILL.
//
//   troupe-test-entity-crash-writer FILE ENTITIES
//
// Prints "ready" once every entity recovered, then keeps one command in flight per
// entity, forever. Each command adds a distinct amount; after its reply (which
// means "durable") it prints
//   ack <entity id> <seq> <amount>
// where seq is the entity's event count after that command.
#include "../counter_entity.hpp"

#include "troupe/actors/ask.hpp"
#include "troupe/actors/node.hpp"
#include "troupe/persistence/entity.hpp"
#include "troupe/persistence/journal_service.hpp"

#include <caf/all.hpp>
#include <fmt/core.h>

#include <cstdio>
#include <future>
#include <mutex>
#include <string>
#include <vector>

using namespace troupe;
using namespace troupe::persistence;
using namespace std::chrono_literals;

namespace {

std::mutex out_mtx;

void print_line(const std::string& line) {
  std::lock_guard<std::mutex> guard{out_mtx};
  std::fputs(line.c_str(), stdout);
  std::fflush(stdout);
}

struct writer_state {
  std::vector<entity_ref<fx::counter>> refs;
  std::vector<std::string> ids;
  std::vector<std::int64_t> seq;
  std::size_t waiting = 0;
};

using writer_actor = caf::stateful_actor<writer_state>;

void add_next(writer_actor* self, std::size_t i) {
  auto& st = self->state;
  auto amount = static_cast<std::int64_t>(i) * 1'000'000 + st.seq[i] + 1;
  troupe::ask<done>(self, st.refs[i], 30s, fx::add{amount})
    .then([self, i, amount](expected<done> r) {
      auto& st = self->state;
      if (!r) {
        print_line(fmt::format("error {} {}\n", st.ids[i], r.error().to_string()));
        return;
      }
      ++st.seq[i];
      print_line(fmt::format("ack {} {} {}\n", st.ids[i], st.seq[i], amount));
      add_next(self, i);
    });
}

caf::behavior writer(writer_actor* self, std::vector<entity_ref<fx::counter>> refs,
                     std::vector<std::string> ids) {
  auto& st = self->state;
  st.refs = std::move(refs);
  st.ids = std::move(ids);
  st.seq.assign(st.refs.size(), 0);
  st.waiting = st.refs.size();
  // First learn where each entity stands (it may have recovered events).
  for (std::size_t i = 0; i < st.refs.size(); ++i)
    troupe::ask<std::int64_t>(self, st.refs[i], 30s, fx::get{})
      .then([self, i](expected<std::int64_t> total) {
        auto& st = self->state;
        if (!total) {
          print_line(fmt::format("error {} {}\n", st.ids[i], total.error().to_string()));
          return;
        }
        if (--st.waiting == 0) {
          print_line("ready\n");
          for (std::size_t k = 0; k < st.refs.size(); ++k)
            add_next(self, k);
        }
      });
  return {[](int) {}};
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s FILE ENTITIES\n", argv[0]);
    return 2;
  }
  auto schema = node_config_keys();
  add_config_keys(schema);
  config cfg{std::move(schema)};
  if (!cfg.set_text("log.level", "warn") || !cfg.set("persistence.journal.path", argv[1])
      || !cfg.set("persistence.journal.create-if-missing", true)) {
    std::fprintf(stderr, "bad config\n");
    return 2;
  }
  auto codec = std::make_shared<codec_registry>();
  if (!fx::try_register_counter(*codec))
    return 2;
  auto n = node::start(std::move(cfg), node::options{codec});
  if (!n) {
    std::fprintf(stderr, "%s\n", n.error().to_string().c_str());
    return 1;
  }
  if (auto j = install_journal(**n); !j) {
    std::fprintf(stderr, "%s\n", j.error().to_string().c_str());
    return 1;
  }
  std::vector<entity_ref<fx::counter>> refs;
  std::vector<std::string> ids;
  for (int i = 0; i < std::stoi(argv[2]); ++i) {
    ids.push_back(fmt::format("crash-{}", i));
    auto ref = spawn_entity<fx::counter>(**n, ids.back());
    if (!ref) {
      std::fprintf(stderr, "%s\n", ref.error().to_string().c_str());
      return 1;
    }
    refs.push_back(*ref);
  }
  if (auto w = (*n)->spawn("crash-writer", writer, refs, ids); !w) {
    std::fprintf(stderr, "%s\n", w.error().to_string().c_str());
    return 1;
  }
  // Runs until killed; the parent never lets it finish.
  std::promise<void>{}.get_future().wait();
  return 0;
}
