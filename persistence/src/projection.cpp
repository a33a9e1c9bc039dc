#include "troupe/persistence/projection.hpp"

#include "sqlite_db.hpp"
#include "sqlite_schema.hpp"

#include <fmt/core.h>

#include <mutex>

namespace troupe::persistence {

namespace sq = sqlite;

namespace {

constexpr const char* sql_load_offset =
  "SELECT \"offset\" FROM projection_offsets WHERE projection = ?1 AND key = ?2";
constexpr const char* sql_save_offset =
  "INSERT INTO projection_offsets(projection, key, \"offset\", last_updated_ms) "
  "VALUES(?1, ?2, ?3, ?4) ON CONFLICT(projection, key) DO UPDATE SET "
  "\"offset\" = excluded.\"offset\", last_updated_ms = excluded.last_updated_ms";

expected<std::optional<offset_type>> load_offset(sq::connection& c, const std::string& projection,
                                                 const std::string& key) {
  auto s = c.prepare(sql_load_offset);
  if (!s)
    return std::move(s).error();
  sq::use q{**s};
  q->bind(1, std::string_view{projection});
  q->bind(2, std::string_view{key});
  auto rc = q->step();
  if (rc == SQLITE_ROW)
    return std::optional<offset_type>{q->uint64(0)};
  if (rc == SQLITE_DONE)
    return std::optional<offset_type>{};
  return c.fail_from(rc, fmt::format("cannot load the offset of projection '{}'", projection));
}

/// Upserts the offset inside the caller's transaction (or autocommit).
expected<void> save_offset(sq::connection& c, const std::string& projection,
                           const std::string& key, offset_type offset) {
  auto s = c.prepare(sql_save_offset);
  if (!s)
    return std::move(s).error();
  sq::use q{**s};
  q->bind(1, std::string_view{projection});
  q->bind(2, std::string_view{key});
  q->bind(3, static_cast<std::int64_t>(offset));
  q->bind(4, now_ms());
  if (auto rc = q->step(); rc != SQLITE_DONE)
    return c.fail_from(rc, fmt::format("cannot save the offset of projection '{}'", projection));
  return {};
}

expected<void> check(const projection_options& opts) {
  if (opts.name.empty() || opts.tag.empty())
    return error{errc::invalid_argument, "projection: a projection needs a name and a tag"};
  return {};
}

/// What both modes share: the subscription, the offset, the failure.
class projection_base : public projection {
public:
  void stop() override {
    live_subscription* sub = nullptr;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      sub = sub_.get();
    }
    if (sub)
      sub->stop();
    on_stopped();
  }
  bool running() const override {
    std::lock_guard<std::mutex> guard{mtx_};
    return sub_ && sub_->running() && !failure_;
  }
  offset_type offset() const override { return offset_.load(); }
  std::optional<error> failure() const override {
    std::lock_guard<std::mutex> guard{mtx_};
    return failure_;
  }

protected:
  virtual void on_stopped() {}

  void start(std::shared_ptr<journal_backend> source, const projection_options& opts) {
    live_options lo;
    lo.page_size = std::max<std::size_t>(opts.batch_size, 1);
    lo.refresh_interval = opts.refresh_interval;
    // Under mtx_: the subscription's thread may fail() before the assignment ends.
    std::lock_guard<std::mutex> guard{mtx_};
    sub_ = live_events_by_tag(
      std::move(source), opts.tag, offset_.load(),
      [this](std::vector<event_record>&& batch) {
        if (!failed())
          handle(batch);
      },
      lo, [this](const error& e) { fail(e); });
  }

  virtual void handle(const std::vector<event_record>& batch) = 0;

  bool failed() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return failure_.has_value();
  }
  /// Records the failure and ends the subscription (from its own thread).
  void fail(error e) {
    live_subscription* sub = nullptr;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (!failure_)
        failure_ = std::move(e);
      sub = sub_.get();
    }
    if (sub)
      sub->stop();  // from the subscription's own thread: does not wait
  }

  std::atomic<offset_type> offset_{0};
  std::unique_ptr<live_subscription> sub_;
  mutable std::mutex mtx_;
  std::optional<error> failure_;
};

class exactly_once final : public projection_base {
public:
  exactly_once(std::unique_ptr<sq::connection> db, projection_options opts,
               exactly_once_handler handler)
    : db_(std::move(db)), opts_(std::move(opts)), handler_(std::move(handler)) {
  }
  ~exactly_once() override { stop(); }

  expected<void> run(std::shared_ptr<journal_backend> source) {
    auto stored = load_offset(*db_, opts_.name, opts_.tag);
    if (!stored)
      return std::move(stored).error();
    offset_ = stored->value_or(0);
    start(std::move(source), opts_);
    return {};
  }

private:
  void handle(const std::vector<event_record>& batch) override {
    if (auto ok = commit(batch); !ok) {
      db_->rollback_if_open();
      fail(std::move(ok).error());
    }
  }

  expected<void> commit(const std::vector<event_record>& batch) {
    if (auto ok = db_->exec("BEGIN IMMEDIATE"); !ok)
      return ok;
    projection_session session{db_->handle(), db_->path()};
    for (auto& e : batch)
      if (auto ok = handler_(session, e); !ok)
        return error{ok.error().code(),
                     fmt::format("projection '{}': the handler failed on '{}' seq {} (offset {}): "
                                 "{}; its batch was rolled back",
                                 opts_.name, e.persistence_id, e.seq, e.offset,
                                 ok.error().message())};
    if (auto ok = save_offset(*db_, opts_.name, opts_.tag, batch.back().offset); !ok)
      return ok;
    if (auto ok = db_->exec("COMMIT"); !ok)
      return ok;
    offset_ = batch.back().offset;
    return {};
  }

  std::unique_ptr<sq::connection> db_;
  projection_options opts_;
  exactly_once_handler handler_;
};

class at_least_once final : public projection_base {
public:
  at_least_once(std::shared_ptr<sqlite_offset_store> store, projection_options opts,
                at_least_once_handler handler)
    : store_(std::move(store)), opts_(std::move(opts)), handler_(std::move(handler)) {
  }
  ~at_least_once() override { stop(); }

  expected<void> run(std::shared_ptr<journal_backend> source) {
    auto stored = store_->load(opts_.name, opts_.tag);
    if (!stored)
      return std::move(stored).error();
    offset_ = stored->value_or(0);
    saved_ = offset_.load();
    last_save_ = std::chrono::steady_clock::now();
    start(std::move(source), opts_);
    return {};
  }

private:
  void handle(const std::vector<event_record>& batch) override {
    for (auto& e : batch) {
      if (auto ok = handler_(e); !ok) {
        fail(error{ok.error().code(),
                   fmt::format("projection '{}': the handler failed on '{}' seq {} (offset {}): {}",
                               opts_.name, e.persistence_id, e.seq, e.offset,
                               ok.error().message())});
        return;
      }
      offset_ = e.offset;
      if (++unsaved_ >= opts_.save_every)
        save();
    }
    if (unsaved_ > 0 && std::chrono::steady_clock::now() - last_save_ >= opts_.save_interval)
      save();
  }

  void save() {
    std::lock_guard<std::mutex> guard{save_mtx_};
    auto at = offset_.load();
    if (at == saved_)
      return;
    if (auto ok = store_->save(opts_.name, opts_.tag, at); !ok) {
      fail(std::move(ok).error());
      return;
    }
    saved_ = at;
    unsaved_ = 0;
    last_save_ = std::chrono::steady_clock::now();
  }

  void on_stopped() override {
    if (!failed())
      save();
  }

  std::shared_ptr<sqlite_offset_store> store_;
  projection_options opts_;
  at_least_once_handler handler_;
  std::mutex save_mtx_;
  offset_type saved_ = 0;
  std::size_t unsaved_ = 0;
  std::chrono::steady_clock::time_point last_save_;
};

} // namespace

// -- sqlite_offset_store -------------------------------------------------------------------

struct sqlite_offset_store::impl {
  std::mutex mtx;
  std::unique_ptr<sq::connection> db;
};

expected<std::shared_ptr<sqlite_offset_store>> sqlite_offset_store::open(sqlite_options opts) {
  auto c = sq::open_primary(opts);
  if (!c)
    return std::move(c).error();
  auto p = std::make_unique<impl>();
  p->db = std::move(*c);
  return std::shared_ptr<sqlite_offset_store>{new sqlite_offset_store(std::move(p))};
}

sqlite_offset_store::sqlite_offset_store(std::unique_ptr<impl> p) : impl_(std::move(p)) {
}
sqlite_offset_store::~sqlite_offset_store() = default;

expected<std::optional<offset_type>> sqlite_offset_store::load(const std::string& projection,
                                                               const std::string& key) {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  return load_offset(*impl_->db, projection, key);
}

expected<void> sqlite_offset_store::save(const std::string& projection, const std::string& key,
                                         offset_type offset) {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  return save_offset(*impl_->db, projection, key, offset);
}

// -- projection_session --------------------------------------------------------------------

expected<void> projection_session::exec(const std::string& sql, const std::vector<sql_value>& params) {
  auto fail = [&](std::string_view what) {
    return error{errc::journal_failure,
                 fmt::format("projection db '{}': {} '{}': {}", path_, what, sql, sqlite3_errmsg(db_))};
  };
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), &s, nullptr) != SQLITE_OK)
    return fail("cannot prepare");
  for (std::size_t i = 0; i < params.size(); ++i) {
    auto index = static_cast<int>(i + 1);
    std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::nullptr_t>)
          sqlite3_bind_null(s, index);
        else if constexpr (std::is_same_v<T, std::int64_t>)
          sqlite3_bind_int64(s, index, v);
        else if constexpr (std::is_same_v<T, double>)
          sqlite3_bind_double(s, index, v);
        else
          sqlite3_bind_text(s, index, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
      },
      params[i]);
  }
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
  }
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE)
    return fail("cannot run");
  return {};
}

// -- runners -------------------------------------------------------------------------------

expected<std::unique_ptr<projection>> run_exactly_once(std::shared_ptr<journal_backend> source,
                                                       sqlite_options db, projection_options opts,
                                                       exactly_once_handler handler) {
  if (auto ok = check(opts); !ok)
    return std::move(ok).error();
  auto c = sq::open_primary(db);
  if (!c)
    return std::move(c).error();
  auto p = std::make_unique<exactly_once>(std::move(*c), std::move(opts), std::move(handler));
  if (auto ok = p->run(std::move(source)); !ok)
    return std::move(ok).error();
  return std::unique_ptr<projection>{std::move(p)};
}

expected<std::unique_ptr<projection>> run_at_least_once(std::shared_ptr<journal_backend> source,
                                                        std::shared_ptr<sqlite_offset_store> store,
                                                        projection_options opts,
                                                        at_least_once_handler handler) {
  if (auto ok = check(opts); !ok)
    return std::move(ok).error();
  auto p = std::make_unique<at_least_once>(std::move(store), std::move(opts), std::move(handler));
  if (auto ok = p->run(std::move(source)); !ok)
    return std::move(ok).error();
  return std::unique_ptr<projection>{std::move(p)};
}

} // namespace troupe::persistence
