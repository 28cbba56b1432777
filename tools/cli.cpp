// The `troupe` tool's commands (see cli.hpp). CLI11 parses and validates
// every flag before anything runs; a usage error prints one line naming the
// flag and exits with exit_usage.
#include "cli.hpp"
#include "dlq.hpp"
#include "history.hpp"
#include "inspect.hpp"
#include "serve.hpp"

#include <algorithm>
#include <chrono>
#include <ostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "troupe/errors.hpp"
#include "troupe/gateway.hpp"
#include "troupe/journal.hpp"
#include "troupe/seams.hpp"

#include "ledger/ledger.hpp"
#include "loan_approval/loan_approval.hpp"
#include "order_processing/order_processing.hpp"
#include "supervision_tree/supervision_tree.hpp"
#include "triage/triage.hpp"
#include "triage/triage_crash.hpp"

#ifndef TROUPE_VERSION
#define TROUPE_VERSION "unknown"
#endif

namespace troupe::cli {

namespace {

using examples::triage_options;

/// What `troupe run` parsed; each example's driver reads its own part.
struct run_options {
  triage_options triage;
  examples::ledger_options ledger;
  examples::order_options orders;
  examples::loan_options loans;
};

/// One runnable example: its name, a line for --help, and its driver.
struct example {
  const char* name;
  const char* what;
  int (*run)(const run_options&, std::ostream&);
};

const std::vector<example>& known_examples() {
  static const std::vector<example> all = {
      {"triage", "support tickets: extract -> analyze -> report, with retries and a review gate",
       [](const run_options& o, std::ostream& out) {
         return examples::run_triage_demo(o.triage, out);
       }},
      {"ledger", "orders charged exactly once through an external payment ledger, across "
                 "crashes and restarts (needs --journal and --ledger)",
       [](const run_options& o, std::ostream& out) {
         return examples::run_ledger(o.ledger, out);
       }},
      {"supervision_tree", "supervisors restarting crashing workers under each strategy, and "
                           "an escalation up the tree (takes no flags)",
       [](const run_options&, std::ostream& out) {
         return examples::run_supervision_tree(out);
       }},
      {"order_processing", "orders classified, then shipped or refunded exactly once through a "
                           "warehouse, under faults, a restart and replayed starts",
       [](const run_options& o, std::ostream& out) {
         return examples::run_order_processing(o.orders, out);
       }},
      {"loan_approval", "loan applications: identity, credit (a slow bureau against a 2 s "
                        "budget, then a fallback), risk, compliance and an underwriter's gate",
       [](const run_options& o, std::ostream& out) {
         return examples::run_loan_approval(o.loans, out);
       }},
  };
  return all;
}

/// Flags only the ledger example takes, and the triage flags it does not.
const std::vector<const char*> ledger_only_flags = {"--journal", "--ledger", "--out",
                                                    "--kill-at-sync"};
const std::vector<const char*> triage_only_flags = {"--timeout-rate", "--malformed-rate"};

/// The only flags order_processing and loan_approval take.
const std::vector<std::string> order_flags = {"--workflows", "--seed", "--fail-rate",
                                              "--malformed-rate", "--timeout-rate", "--threads"};
const std::vector<std::string> loan_flags = {"--workflows", "--seed", "--threads"};

/// Checks that example `name` got no flag of another example and every flag
/// it needs; "" when usable.
std::string check_example_flags(const std::string& name, const CLI::App& cmd) {
  if (name == "order_processing" || name == "loan_approval") {
    const auto& allowed = name == "loan_approval" ? loan_flags : order_flags;
    for (const auto* o : cmd.get_options())
      if (o->count() > 0 && o->nonpositional()
          && std::find(allowed.begin(), allowed.end(), o->get_name()) == allowed.end())
        return o->get_name() + " does not apply to the " + name + " example";
    return {};
  }
  if (name == "supervision_tree") {
    for (const auto* o : cmd.get_options())
      if (o->count() > 0 && o->nonpositional())
        return o->get_name() + " does not apply to the supervision_tree example";
    return {};
  }
  bool ledger = name == "ledger";
  for (const char* f : ledger ? triage_only_flags : ledger_only_flags)
    if (cmd.count(f) > 0)
      return std::string{f} + " does not apply to the " + name + " example";
  if (ledger)
    for (const char* f : {"--journal", "--ledger"})
      if (cmd.count(f) == 0)
        return std::string{f} + " is required by the ledger example";
  return {};
}

const example* find_example(const std::string& name) {
  for (const auto& e : known_examples())
    if (name == e.name)
      return &e;
  return nullptr;
}

std::string example_list() {
  std::string s;
  for (const auto& e : known_examples())
    s += (s.empty() ? "" : ", ") + std::string{e.name};
  return s;
}

/// A probability: a number in [0, 1].
CLI::Validator rate_in_0_1() {
  return CLI::Validator(
      [](std::string& in) -> std::string {
        double x = 0;
        if (!CLI::detail::lexical_cast(in, x) || !(x >= 0.0 && x <= 1.0))
          return "must be a number from 0 to 1, got '" + in + "'";
        return {};
      },
      "RATE in [0, 1]");
}

/// A whole number in [lo, hi].
CLI::Validator count_in(long long lo, long long hi) {
  return CLI::Validator(
      [lo, hi](std::string& in) -> std::string {
        long long x = 0;
        if (!CLI::detail::lexical_cast(in, x) || x < lo || x > hi)
          return "must be a whole number from " + std::to_string(lo) + " to " +
                 std::to_string(hi) + ", got '" + in + "'";
        return {};
      },
      "N in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
}

/// Any whole number from 0 to 2^64-1 (CLI11 alone wraps "-1" around).
CLI::Validator unsigned_number() {
  return CLI::Validator(
      [](std::string& in) -> std::string {
        unsigned long long x = 0;
        if (in.empty() || in[0] == '-' || !CLI::detail::lexical_cast(in, x))
          return "must be a whole number from 0 to 18446744073709551615, got '" + in + "'";
        return {};
      },
      "N >= 0");
}

/// A non-empty string (a path).
CLI::Validator non_empty() {
  return CLI::Validator(
      [](std::string& in) -> std::string { return in.empty() ? "must not be empty" : ""; },
      "PATH");
}

/// An age: a whole number with a unit, s, m, h or d ("30d", "12h"); 0 is
/// allowed ("0s": every finished workflow). Up to 100 years.
bool parse_age(const std::string& in, std::chrono::seconds& out) {
  if (in.size() < 2)
    return false;
  long long unit = 0;
  switch (in.back()) {
    case 's': unit = 1; break;
    case 'm': unit = 60; break;
    case 'h': unit = 3600; break;
    case 'd': unit = 86400; break;
    default: return false;
  }
  auto digits = in.substr(0, in.size() - 1);
  if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 6)
    return false;
  auto n = std::stoll(digits);
  if (n * unit > 100LL * 365 * 86400)
    return false;
  out = std::chrono::seconds{n * unit};
  return true;
}

CLI::Validator age() {
  return CLI::Validator(
      [](std::string& in) -> std::string {
        std::chrono::seconds s;
        if (!parse_age(in, s))
          return "must be a whole number with a unit s, m, h or d (like 30d), up to 100 years, "
                 "got '" + in + "'";
        return {};
      },
      "AGE");
}

/// `troupe purge` (`troupe journal purge`): deletes finished workflows
/// older than the age from a journal no runtime has open (the store refuses
/// a locked file), `batch` workflows per transaction, oldest first, saying
/// on `err` how many went after each full one (the progress).
int purge_journal(const std::string& cmd, const std::string& path,
                  const std::string& older_than, uint64_t batch, std::ostream& out,
                  std::ostream& err) {
  std::chrono::seconds age;
  parse_age(older_than, age); // validated by the flag's check
  sqlite_journal_options o;
  o.path = path;
  o.create = false;
  auto store = open_sqlite_journal(o);
  if (!store) {
    err << "troupe " << cmd << ": " << describe(store.error()) << '\n';
    return exit_failed;
  }
  auto before = system_clock_source()->now() - std::chrono::nanoseconds{age};
  uint64_t total = 0;
  for (;;) {
    auto n = (*store)->purge(before.count(), batch);
    if (!n) { // the transactions before this one stay done
      err << "troupe " << cmd << ": " << describe(n.error()) << " (" << total
          << " purged before it)\n";
      return exit_failed;
    }
    total += *n;
    if (*n < batch)
      break;
    err << "troupe " << cmd << ": " << total << " purged so far" << std::endl;
  }
  out << "purged " << total << " finished workflow" << (total == 1 ? "" : "s")
      << " last updated more than " << older_than << " ago from " << path
      << " (dead letters kept)\n";
  return exit_ok;
}

/// Checks what single flags cannot; "" when the options are usable.
std::string check_rates(const triage_options& opt) {
  if (opt.fail_rate + opt.timeout_rate + opt.malformed_rate > 1.0)
    return "--fail-rate + --timeout-rate + --malformed-rate must not exceed 1";
  return {};
}

/// Points triage at a real provider when --provider is given; "" when the
/// flags fit together.
std::string apply_provider(const std::string& provider, const std::string& base_url,
                           const std::string& model, const std::string& key_env,
                           double timeout_s, const std::vector<double>& price,
                           const std::string& example, const CLI::App& cmd,
                           examples::triage_options& opt) {
  bool any = false;
  for (const char* f : {"--base-url", "--model", "--api-key-env", "--request-timeout", "--price"})
    any = any || cmd.count(f) > 0;
  if (provider.empty())
    return any ? "--base-url, --model, --api-key-env, --request-timeout and --price need "
                 "--provider"
               : "";
  if (!price.empty() && price.size() != 2)
    return "--price takes two numbers, PROMPT,COMPLETION (USD per million tokens), got "
           + std::to_string(price.size());
  if (example != "triage")
    return "--provider works with the triage example only";
  if (model.empty())
    return "--provider needs --model";
  provider_config p;
  p.name = provider;
  bool openai = provider == "openai";
  p.protocol = openai ? wire_protocol::openai : wire_protocol::anthropic;
  p.base_url = !base_url.empty() ? base_url
               : openai          ? "https://api.openai.com/v1"
                                 : "https://api.anthropic.com/v1";
  p.model = model;
  p.api_key_env = key_env != "-" ? key_env : openai ? "OPENAI_API_KEY" : "ANTHROPIC_API_KEY";
  p.request_timeout = std::chrono::duration_cast<duration>(std::chrono::duration<double>(timeout_s));
  p.max_concurrent = 4; // be gentle with a real provider
  if (price.size() == 2)
    p.prices[model] = {price[0], price[1]};
  if (auto err = validate(gateway_config{{p}}))
    return describe(err);
  opt.gateway.providers = {p};
  // Model calls take seconds: each step may take the request timeout and a
  // bit, and a workflow up to all its steps and retries.
  opt.step_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(p.request_timeout)
                     + std::chrono::seconds{5};
  opt.await_timeout = opt.step_timeout * 10;
  return {};
}

} // namespace

std::vector<std::string> example_names() {
  std::vector<std::string> names;
  for (const auto& e : known_examples())
    names.emplace_back(e.name);
  return names;
}

int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app{"troupe: runs LLM agents as actors under supervising workflows.", "troupe"};
  app.set_version_flag("--version", std::string{"troupe "} + TROUPE_VERSION,
                       "Print the version and exit");
  app.require_subcommand(1);

  auto* demo = app.add_subcommand("demo", "Run the triage example with its defaults "
                                          "(300 tickets, model faults on) on a SQLite journal, "
                                          "SIGKILL the runtime part-way and recover");

  std::string list;
  for (const auto& e : known_examples())
    list += std::string{"\n  "} + e.name + ": " + e.what;
  auto* run_cmd = app.add_subcommand("run", "Run an example's workflows through a fresh runtime "
                                            "and print what happened. Examples:" + list);
  triage_options opt;
  std::string name;
  run_cmd->add_option("example", name, "The example to run (" + example_list() + ")")
      ->required();
  run_cmd->add_option("--workflows", opt.workflows, "Workflows to run")
      ->check(count_in(1, 10'000'000))
      ->capture_default_str();
  run_cmd->add_option("--seed", opt.seed, "Seed of the model's fault draws and retry jitter")
      ->check(unsigned_number())
      ->capture_default_str();
  run_cmd->add_option("--fail-rate", opt.fail_rate, "Share of model calls that return an error")
      ->check(rate_in_0_1())
      ->capture_default_str();
  run_cmd->add_option("--timeout-rate", opt.timeout_rate, "Share of model calls never answered")
      ->check(rate_in_0_1())
      ->capture_default_str();
  run_cmd->add_option("--malformed-rate", opt.malformed_rate,
                      "Share of model calls answered with text that is not JSON")
      ->check(rate_in_0_1())
      ->capture_default_str();
  run_cmd->add_option("--threads", opt.threads, "Scheduler worker threads")
      ->check(count_in(1, 256))
      ->capture_default_str();
  // triage against a real model instead of the scripted one
  std::string provider, base_url, model, key_env = "-";
  double request_timeout_s = 60;
  run_cmd->add_option("--provider", provider,
                      "triage: ask a real model: openai (any OpenAI-compatible server: vLLM, "
                      "llama.cpp, Ollama's /v1) or anthropic")
      ->check(CLI::IsMember({"openai", "anthropic"}));
  run_cmd->add_option("--base-url", base_url,
                      "with --provider: the API's base URL (default: the provider's public API)");
  run_cmd->add_option("--model", model, "with --provider: the model to ask")->check(non_empty());
  run_cmd->add_option("--api-key-env", key_env,
                      "with --provider: the environment variable holding the API key, '' for "
                      "none (default OPENAI_API_KEY or ANTHROPIC_API_KEY)");
  run_cmd->add_option("--request-timeout", request_timeout_s,
                      "with --provider: seconds a model call may take")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  std::vector<double> price;
  run_cmd->add_option("--price", price,
                      "with --provider: PROMPT,COMPLETION in USD per million tokens, to count "
                      "the run's cost")
      ->delimiter(',')
      ->check(CLI::NonNegativeNumber);
  examples::ledger_options ledger; // the ledger example's own flags
  run_cmd->add_option("--journal", ledger.journal_path, "ledger: the troupe journal (SQLite file)")
      ->check(non_empty());
  run_cmd->add_option("--ledger", ledger.ledger_path, "ledger: the payment ledger (SQLite file)")
      ->check(non_empty());
  run_cmd->add_option("--out", ledger.out_path,
                      "ledger: write the results here, one JSON line per order")
      ->check(non_empty());
  run_cmd->add_option("--kill-at-sync", ledger.kill_at_sync,
                      "ledger: SIGKILL the process at the journal's Nth fsync (crash tests)")
      ->check(count_in(1, 1'000'000'000));

  auto* journal_cmd = app.add_subcommand("journal", "Maintain a journal file (no runtime may "
                                                    "have it open)");
  journal_cmd->require_subcommand(1);
  auto* purge_cmd = journal_cmd->add_subcommand(
      "purge", "Delete completed and failed workflows last updated longer ago than --older-than, "
               "with their events, snapshots and effects; open workflows and dead letters stay");
  std::string purge_path, purge_age;
  uint64_t purge_batch = 1000;
  auto purge_flags = [&](CLI::App* c) {
    c->add_option("--journal", purge_path, "The journal (SQLite file)")
        ->required()
        ->check(non_empty());
    c->add_option("--older-than", purge_age, "Age like 30d, 12h, 90m or 0s")
        ->required()
        ->check(age());
    c->add_option("--batch", purge_batch, "Workflows per transaction (progress is shown after "
                                          "each)")
        ->check(count_in(1, 1'000'000))
        ->capture_default_str();
  };
  purge_flags(purge_cmd);

  auto* dlq_cmd = app.add_subcommand(
      "dlq", "The dead letters of a journal file that no runtime has open: list them, show "
             "one, retry or drop it (a runtime recovering the journal carries a retry out)");
  dlq_cmd->require_subcommand(1);
  std::string dlq_path, dlq_id, dlq_age;
  bool dlq_json = false;
  dead_letter_action dlq;
  double dlq_cost = 0;
  auto journal_flag = [&](CLI::App* c) {
    c->add_option("--journal", dlq_path, "The journal (SQLite file)")->required()->check(non_empty());
  };
  auto* dlq_list_cmd = dlq_cmd->add_subcommand("list", "The workflows waiting in dead letter");
  journal_flag(dlq_list_cmd);
  dlq_list_cmd->add_flag("--json", dlq_json, "One JSON object per line");
  auto* dlq_show_cmd = dlq_cmd->add_subcommand("show", "One workflow's dead letters and events");
  dlq_show_cmd->add_option("id", dlq_id, "The workflow id")->required();
  journal_flag(dlq_show_cmd);
  dlq_show_cmd->add_flag("--json", dlq_json, "One JSON object");
  auto* dlq_retry_cmd = dlq_cmd->add_subcommand(
      "retry", "Re-enter the node it stopped at with a fresh round of attempts (same visit: "
               "journaled effects do not run again), optionally with more budget");
  dlq_retry_cmd->add_option("id", dlq_id, "The workflow id")->required();
  journal_flag(dlq_retry_cmd);
  dlq_retry_cmd->add_option("--by", dlq.by, "Who retries (journaled)")->required()->check(non_empty());
  dlq_retry_cmd->add_option("--steps", dlq.extra_steps, "More max_steps budget")
      ->check(CLI::Range(0.0, 1e12));
  dlq_retry_cmd->add_option("--tokens", dlq.extra_tokens, "More max_tokens budget")
      ->check(CLI::Range(0.0, 1e15));
  dlq_retry_cmd->add_option("--cost", dlq_cost, "More max_cost_usd budget, in USD")
      ->check(CLI::Range(0.0, 1e9));
  dlq_retry_cmd->add_option("--time", dlq_age, "A later deadline by this much, like 30m or 2h")
      ->check(age());
  auto* dlq_drop_cmd = dlq_cmd->add_subcommand("drop", "Give up: the workflow fails, outcome "
                                                       "'dropped'");
  dlq_drop_cmd->add_option("id", dlq_id, "The workflow id")->required();
  journal_flag(dlq_drop_cmd);
  dlq_drop_cmd->add_option("--by", dlq.by, "Who drops it (journaled)")->required()->check(non_empty());
  dlq_drop_cmd->add_option("--reason", dlq.reason, "Why (journaled)")->required()->check(non_empty());

  auto* serve_cmd = app.add_subcommand(
      "serve", "Run a runtime on a SQLite journal with the examples' agents and definitions, "
               "recover it, and serve the admin API and the dashboard until SIGINT or SIGTERM. "
               "The bearer token comes from the environment variable TROUPE_ADMIN_TOKEN");
  serve_options serve_opt;
  std::string listen = "127.0.0.1:8080";
  std::vector<std::string> serve_examples;
  serve_cmd->add_option("--journal", serve_opt.journal, "The journal (SQLite file, created if "
                                                        "missing)")
      ->required()
      ->check(non_empty());
  serve_cmd->add_option("--listen", listen, "HOST:PORT to listen on; port 0 picks a free one")
      ->check(CLI::Validator(
          [](std::string& in) {
            std::string host;
            uint16_t port = 0;
            return parse_listen(in, host, port);
          },
          "HOST:PORT"))
      ->capture_default_str();
  std::string serve_known;
  for (const auto& e : serve_example_names())
    serve_known += (serve_known.empty() ? "" : ", ") + e;
  serve_cmd->add_option("--example", serve_examples,
                        "An example whose agents and definitions to register (" + serve_known
                          + "); repeatable; default triage")
      ->check(CLI::IsMember(serve_example_names()));
  serve_cmd->add_option("--threads", serve_opt.threads, "Scheduler worker threads")
      ->check(count_in(1, 256))
      ->capture_default_str();

  // -- looking at workflows: a journal file or a running node --
  inspect_source src;
  bool inspect_json = false;
  auto source_flags = [&](CLI::App* c) {
    auto* j = c->add_option("--journal", src.journal, "A journal (SQLite file) no runtime holds")
                ->check(non_empty());
    auto* n = c->add_option("--node", src.node, "HOST:PORT of a `troupe serve` node (token from "
                                                "TROUPE_ADMIN_TOKEN)")
                ->check(non_empty());
    j->excludes(n);
    c->add_flag("--json", inspect_json, "The admin API's JSON instead of a table");
  };
  auto* ls_cmd = app.add_subcommand("ls", "List workflows, newest first");
  std::string ls_status;
  size_t ls_limit = 50;
  source_flags(ls_cmd);
  ls_cmd->add_option("--status", ls_status, "Only this status")
      ->check(CLI::IsMember({"running", "parked", "dead_lettered", "completed", "failed"}));
  ls_cmd->add_option("--limit", ls_limit, "At most this many")
      ->check(count_in(1, 1000))
      ->capture_default_str();
  auto* show_cmd = app.add_subcommand("show", "One workflow's timeline: its events, and each "
                                              "attempt's duration, tokens, cost and outcome");
  std::string show_id;
  show_cmd->add_option("id", show_id, "The workflow id")->required()->check(non_empty());
  source_flags(show_cmd);
  auto* stats_cmd = app.add_subcommand("stats", "Workflows by status");
  source_flags(stats_cmd);
  std::string decide_id, decide_gate, decide_by, decide_patch;
  std::string decide_node;
  std::vector<CLI::App*> decide_cmds;
  for (const char* verdict : {"approve", "reject", "edit"}) {
    auto* c = app.add_subcommand(verdict, std::string{"Decide a parked workflow's gate on a "
                                                      "running node: "}
                                            + verdict);
    c->add_option("id", decide_id, "The workflow id")->required()->check(non_empty());
    c->add_option("gate", decide_gate, "The gate it waits at")->required()->check(non_empty());
    c->add_option("--node", decide_node, "HOST:PORT of the `troupe serve` node running it "
                                         "(token from TROUPE_ADMIN_TOKEN)")
        ->required()
        ->check(non_empty());
    c->add_option("--by", decide_by, "Who decides (journaled)")->required()->check(non_empty());
    if (std::string{verdict} == "edit")
      c->add_option("--patch", decide_patch, "A JSON object merged into the state")->required();
    decide_cmds.push_back(c);
  }

  // -- a workflow's journal over time --
  tail_options tail_opt;
  auto* tail_cmd = app.add_subcommand("tail", "A workflow's latest events, or with -f every "
                                              "event as it is committed (-f needs --node)");
  tail_cmd->add_option("id", tail_opt.id, "The workflow id (with -f: optional, default every "
                                          "workflow)");
  source_flags(tail_cmd);
  tail_cmd->add_flag("-f,--follow", tail_opt.follow, "Keep printing events as they commit, "
                                                     "until the workflow finishes (or Ctrl-C)");
  tail_cmd->add_option("-n,--lines", tail_opt.last, "With an id: its last this many events first")
      ->check(count_in(0, 1'000'000))
      ->capture_default_str();
  tail_cmd->add_option("--count", tail_opt.count, "Following: stop after this many new events")
      ->check(count_in(1, 1'000'000'000));
  std::string replay_id;
  uint64_t replay_until = 0;
  auto* replay_cmd = app.add_subcommand("replay", "Time travel: the workflow (status, node, "
                                                  "budgets spent, state) right after one of "
                                                  "its events");
  replay_cmd->add_option("id", replay_id, "The workflow id")->required()->check(non_empty());
  replay_cmd->add_option("--until", replay_until, "The event (#wf_seq, as `troupe show` "
                                                  "numbers them)")
      ->required()
      ->check(count_in(1, 1'000'000'000'000));
  source_flags(replay_cmd);
  fork_request fork_req;
  std::string fork_node, fork_timeout = "60s";
  auto* fork_cmd = app.add_subcommand(
      "fork", "Start a new workflow from another's state right after one of its events, at the "
              "node it was at, optionally on another model; with --wait, follow it and show how "
              "it ended differently. Its effects run again under its own keys");
  fork_cmd->add_option("id", fork_req.id, "The workflow to fork")->required()->check(non_empty());
  fork_cmd->add_option("--at", fork_req.at, "The event (#wf_seq) whose state the fork starts "
                                            "from")
      ->required()
      ->check(count_in(1, 1'000'000'000'000));
  fork_cmd->add_option("--node", fork_node, "HOST:PORT of the `troupe serve` node (token from "
                                            "TROUPE_ADMIN_TOKEN)")
      ->required()
      ->check(non_empty());
  fork_cmd->add_option("--model", fork_req.model, "A model for every model call of the fork, "
                                                  "like local/qwen2.5:7b");
  fork_cmd->add_option("--key", fork_req.key, "Idempotency key: the same key forks once");
  fork_cmd->add_flag("--wait", fork_req.wait, "Follow the fork until it finishes or parks, "
                                              "then compare it with the original");
  fork_cmd->add_option("--timeout", fork_timeout, "How long --wait waits, like 90s or 5m")
      ->check(age())
      ->capture_default_str();
  fork_cmd->add_flag("--json", fork_req.json, "JSON instead of text");
  auto* purge_top_cmd = app.add_subcommand(
      "purge", "Delete completed and failed workflows last updated longer ago than "
               "--older-than, with their events, snapshots and effects, from a journal file no "
               "runtime holds; open workflows and dead letters stay (as `troupe journal purge`)");
  purge_flags(purge_top_cmd);

  std::vector<const char*> argv;
  if (args.empty())
    argv.push_back("troupe");
  for (const auto& a : args)
    argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    return app.exit(e, out, err) == 0 ? exit_ok : exit_usage;
  }

  if (demo->parsed())
    return examples::run_triage_crash_demo(examples::crash_options{}, out) == 0 ? exit_ok
                                                                               : exit_failed;

  if (purge_cmd->parsed())
    return purge_journal("journal purge", purge_path, purge_age, purge_batch, out, err);
  if (purge_top_cmd->parsed())
    return purge_journal("purge", purge_path, purge_age, purge_batch, out, err);

  if (serve_cmd->parsed()) {
    parse_listen(listen, serve_opt.host, serve_opt.port); // validated by the flag's check
    if (!serve_examples.empty()) {
      serve_opt.examples.clear();
      for (const auto& e : serve_examples) // each once
        if (std::find(serve_opt.examples.begin(), serve_opt.examples.end(), e)
            == serve_opt.examples.end())
          serve_opt.examples.push_back(e);
    }
    return serve(std::move(serve_opt), out, err);
  }

  for (auto* c : {ls_cmd, show_cmd, stats_cmd, tail_cmd, replay_cmd})
    if (c->parsed() && src.journal.empty() && src.node.empty()) {
      err << "troupe " << c->get_name() << ": say where to look: --journal FILE or --node "
          << "HOST:PORT\n";
      return exit_usage;
    }
  if (ls_cmd->parsed())
    return inspect_ls(src, ls_status, ls_limit, inspect_json, out, err);
  if (show_cmd->parsed())
    return inspect_show(src, show_id, inspect_json, out, err);
  if (stats_cmd->parsed())
    return inspect_stats(src, inspect_json, out, err);
  if (tail_cmd->parsed()) {
    tail_opt.json = inspect_json;
    return tail(src, tail_opt, out, err);
  }
  if (replay_cmd->parsed())
    return replay(src, replay_id, replay_until, inspect_json, out, err);
  if (fork_cmd->parsed()) {
    std::chrono::seconds t;
    parse_age(fork_timeout, t); // validated by the flag's check
    fork_req.timeout = t;
    return fork_workflow(fork_node, fork_req, out, err);
  }
  for (auto* c : decide_cmds)
    if (c->parsed())
      return inspect_decide(decide_node, decide_id, decide_gate, c->get_name(), decide_patch,
                            decide_by, out, err);

  if (dlq_list_cmd->parsed())
    return dlq_list(dlq_path, dlq_json, out, err);
  if (dlq_show_cmd->parsed())
    return dlq_show(dlq_path, dlq_id, dlq_json, out, err);
  if (dlq_retry_cmd->parsed() || dlq_drop_cmd->parsed()) {
    dlq.retry = dlq_retry_cmd->parsed();
    dlq.extra_cost_nusd = to_nano_usd(dlq_cost);
    if (!dlq_age.empty()) {
      std::chrono::seconds more;
      parse_age(dlq_age, more); // validated by the flag's check
      dlq.extra_time_ns = std::chrono::nanoseconds{more}.count();
    }
    return dlq_act(dlq_path, dlq_id, dlq, out, err);
  }

  const auto* ex = find_example(name);
  if (ex == nullptr) {
    err << "troupe run: unknown example '" << name << "'; known examples: " << example_list()
        << '\n';
    return exit_usage;
  }
  if (auto problem = check_rates(opt); !problem.empty()) {
    err << "troupe run: " << problem << '\n';
    return exit_usage;
  }
  if (auto problem = check_example_flags(name, *run_cmd); !problem.empty()) {
    err << "troupe run " << name << ": " << problem << '\n';
    return exit_usage;
  }
  if (auto problem = apply_provider(provider, base_url, model, key_env, request_timeout_s, price,
                                    name, *run_cmd, opt);
      !problem.empty()) {
    err << "troupe run " << name << ": " << problem << '\n';
    return exit_usage;
  }
  if (run_cmd->count("--workflows") > 0) // the shared flags, where given
    ledger.workflows = opt.workflows;
  ledger.seed = opt.seed;
  ledger.fail_rate = opt.fail_rate;
  ledger.threads = opt.threads;
  examples::order_options orders; // their own defaults, unless a flag says otherwise
  examples::loan_options loans;
  if (run_cmd->count("--workflows") > 0)
    orders.orders = loans.applications = opt.workflows;
  if (run_cmd->count("--seed") > 0)
    orders.seed = loans.seed = opt.seed;
  if (run_cmd->count("--fail-rate") > 0)
    orders.fail_rate = opt.fail_rate;
  if (run_cmd->count("--malformed-rate") > 0)
    orders.malformed_rate = opt.malformed_rate;
  if (run_cmd->count("--timeout-rate") > 0)
    orders.hang_rate = opt.timeout_rate;
  orders.threads = loans.threads = opt.threads;
  return ex->run(run_options{opt, ledger, orders, loans}, out) == 0 ? exit_ok : exit_failed;
}

} // namespace troupe::cli
