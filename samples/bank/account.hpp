// A bank account as an event-sourced entity (the example of docs/persistence.md).
#pragma once

#include "troupe/actors/codec.hpp"
#include "troupe/persistence/entity.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <variant>

namespace bank {

using troupe::persistence::done;

// Commands: plain structs, each naming the type of its reply.
struct open_account { std::string owner;   using reply = done; };
struct deposit      { std::int64_t amount; using reply = done; };
struct withdraw     { std::int64_t amount; using reply = done; };
struct get_balance  {                      using reply = std::int64_t; };
struct close_account {                     using reply = done; };

// Events: what the journal stores.
struct account_opened { std::string owner; };
struct deposited      { std::int64_t amount; };
struct withdrawn      { std::int64_t amount; };
struct account_closed {};

// State: what the events fold into.
enum class account_status { empty, open, closed };
struct account_state {
  account_status status = account_status::empty;
  std::string owner;
  std::int64_t balance = 0;
};

struct account {
  static constexpr std::string_view entity_type = "account";
  using command = std::variant<open_account, deposit, withdraw, get_balance, close_account>;
  using event = std::variant<account_opened, deposited, withdrawn, account_closed>;
  using state = account_state;
  using effect = troupe::persistence::effect<account>;

  static effect on_command(const state& s, const open_account& c) {
    if (s.status != account_status::empty)
      return effect::reply_error(c, "the account already exists");
    return effect::persist(account_opened{c.owner});
  }
  static effect on_command(const state& s, const deposit& c) {
    if (s.status != account_status::open)
      return effect::reply_error(c, "the account is not open");
    if (c.amount <= 0)
      return effect::reply_error(c, "the amount must be positive");
    return effect::persist(deposited{c.amount});
  }
  static effect on_command(const state& s, const withdraw& c) {
    if (s.status != account_status::open)
      return effect::reply_error(c, "the account is not open");
    if (c.amount > s.balance)
      return effect::reply_error(c, "insufficient balance");
    return effect::persist(withdrawn{c.amount});
  }
  static effect on_command(const state& s, const get_balance& c) {
    return effect::reply(c, s.balance);
  }
  static effect on_command(const state& s, const close_account& c) {
    if (s.status != account_status::open)
      return effect::reply_error(c, "the account is not open");
    if (s.balance != 0)
      return effect::reply_error(c, "the balance must be zero to close the account");
    return effect::persist(account_closed{});
  }

  static state on_event(state s, const account_opened& e) {
    s.status = account_status::open;
    s.owner = e.owner;
    return s;
  }
  static state on_event(state s, const deposited& e) {
    s.balance += e.amount;
    return s;
  }
  static state on_event(state s, const withdrawn& e) {
    s.balance -= e.amount;
    return s;
  }
  static state on_event(state s, const account_closed&) {
    s.status = account_status::closed;
    return s;
  }

  // A snapshot every 100 events; keep the 2 newest.
  static troupe::persistence::entity_options options() {
    return {.snapshot_every = 100, .keep_snapshots = 2};
  }
};

// JSON for the codec (events are stored as CBOR of this JSON; commands and replies
// travel between nodes as CBOR of it).
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(open_account, owner)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(deposit, amount)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(withdraw, amount)
inline void to_json(nlohmann::json& j, const get_balance&) { j = nlohmann::json::object(); }
inline void from_json(const nlohmann::json&, get_balance&) {}
inline void to_json(nlohmann::json& j, const close_account&) { j = nlohmann::json::object(); }
inline void from_json(const nlohmann::json&, close_account&) {}
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(account_opened, owner)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(deposited, amount)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(withdrawn, amount)
inline void to_json(nlohmann::json& j, const account_closed&) { j = nlohmann::json::object(); }
inline void from_json(const nlohmann::json&, account_closed&) {}
NLOHMANN_JSON_SERIALIZE_ENUM(account_status, {{account_status::empty, "empty"},
                                              {account_status::open, "open"},
                                              {account_status::closed, "closed"}})
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(account_state, status, owner, balance)

// Stable manifests: renaming a C++ type never breaks stored events.
inline void register_types(troupe::codec_registry& codec) {
  codec.add<account_opened>("bank.account-opened");
  codec.add<deposited>("bank.deposited");
  codec.add<withdrawn>("bank.withdrawn");
  codec.add<account_closed>("bank.account-closed");
  codec.add<account_state>("bank.account-state");  // for snapshots
  // Commands and replies (`done` needs no registration).
  codec.add<open_account>("bank.open-account");
  codec.add<deposit>("bank.deposit");
  codec.add<withdraw>("bank.withdraw");
  codec.add<get_balance>("bank.get-balance");
  codec.add<close_account>("bank.close-account");
  codec.add<std::int64_t>("bank.amount");  // get_balance's reply
}

} // namespace bank
