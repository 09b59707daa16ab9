// bench_report: tabulates bench/run.sh's results (one JSON object per run, as
// every load client prints them) into docs/benchmarks.md and a gnuplot script
// for docs/benchmarks.png. Medians over repetitions; every zserve figure also
// as a ratio to NATS, to the raw ZeroMQ limit and to a baseline of zserve's
// path in raw ZeroMQ (zmq_forwarder).
//
//   bench_report peak  --results F --system zserve --replicas 2 --size 100
//   bench_report write --results F --markdown docs/benchmarks.md ...
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

namespace {

using nlohmann::json;

// A cell of the comparison: one system, replicas, kind, payload and load.
struct Key {
  std::string system, kind;
  int replicas = 1, batch = 1;
  size_t size = 0;
  double load = 0;  // in flight (closed) or target rate (open)
  auto Tie() const { return std::tie(system, kind, replicas, batch, size, load); }
  bool operator<(const Key& o) const { return Tie() < o.Tie(); }
};

struct Cell {
  std::vector<double> rps, p50, p90, p99, p999, broker_cpu;
  uint64_t errors = 0;
  std::map<std::string, uint64_t> error_kinds;  // summed over repetitions
  std::string settings;
  double send_every_us = 0;  // open loop
};

double Median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int TagInt(const json& tags, const char* name, int fallback) {
  if (!tags.contains(name)) return fallback;
  return std::stoi(tags[name].get<std::string>());
}

std::map<Key, Cell> Load(const std::string& path) {
  std::map<Key, Cell> cells;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) continue;
    const json& tags = j["tags"];
    Key k;
    k.system = j.value("system", "");
    k.kind = tags.value("kind", j.value("mode", ""));
    k.replicas = TagInt(tags, "replicas", 1);
    k.batch = TagInt(tags, "max_batch_size", 1);
    k.size = j.value("size", size_t{0});
    k.load =
        j.value("mode", "") == "open" ? j.value("target_rate_rps", 0.0) : j.value("inflight", 0.0);
    Cell& c = cells[k];
    c.rps.push_back(j.value("throughput_rps", 0.0));
    c.p50.push_back(j.value("p50_us", 0.0));
    c.p90.push_back(j.value("p90_us", 0.0));
    c.p99.push_back(j.value("p99_us", 0.0));
    c.p999.push_back(j.value("p999_us", 0.0));
    if (j["broker_cpu_us_per_request"].is_number()) {
      c.broker_cpu.push_back(j["broker_cpu_us_per_request"].get<double>());
    }
    c.errors += j.value("error_count", uint64_t{0});
    if (j["errors"].is_object()) {
      for (const auto& [kind, n] : j["errors"].items()) {
        if (n.is_number_unsigned()) c.error_kinds[kind] += n.get<uint64_t>();
      }
    }
    c.settings = j.value("settings", "");
    c.send_every_us = j.value("send_every_us", 0.0);
  }
  return cells;
}

const Cell* Find(const std::map<Key, Cell>& cells, const std::string& system,
                 const std::string& kind, int replicas, size_t size, double load, int batch = 1) {
  auto it = cells.find(Key{system, kind, replicas, batch, size, load});
  return it == cells.end() ? nullptr : &it->second;
}

std::string Num(double v, int digits = 0) {
  if (std::isnan(v)) return "–";
  char buf[64];
  if (digits == 0 && std::fabs(v) >= 1000) {
    // 12 345 for readability.
    std::string s = std::to_string(static_cast<long long>(std::llround(v)));
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (i > 0 && (s.size() - i) % 3 == 0) out += ' ';
      out += s[i];
    }
    return out;
  }
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string Ratio(double a, double b) {
  if (std::isnan(a) || std::isnan(b) || b == 0) return "–";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f×", a / b);
  return buf;
}

double Med(const Cell* c, std::vector<double> Cell::*field) {
  return c == nullptr ? NAN : Median(c->*field);
}

std::string SizeName(size_t size) {
  return size % 1024 == 0 ? std::to_string(size / 1024) + " KiB" : std::to_string(size) + " B";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct WriteArgs {
  std::string results, machine, scale, profile, markdown, png, plot_dir;
  int max_cq = 0, reps = 0;
  double duration = 0, warmup = 0;
};

int Write(const WriteArgs& a) {
  std::map<Key, Cell> cells = Load(a.results);
  std::set<size_t> sizes;
  std::set<double> inflights, rates;
  std::set<int> replicas;
  std::set<int> batches;
  uint64_t total_errors = 0;
  for (const auto& [k, c] : cells) {
    total_errors += c.errors;
    if (k.kind == "closed") {
      sizes.insert(k.size);
      inflights.insert(k.load);
      replicas.insert(k.replicas);
    }
    if (k.kind == "open") rates.insert(k.load);
    if (k.kind == "batch") batches.insert(k.batch);
  }
  int top = replicas.empty() ? 1 : *replicas.rbegin();
  std::ostringstream md;
  md << "# Benchmarks: zserve, NATS request-reply, the raw ZeroMQ limit and a ZeroMQ "
        "forwarder\n\n"
     << "Written by `make bench` (bench/run.sh, then bench_report): every figure below comes "
        "from one run on one machine, with the peers measured in the same run by the same load "
        "generator (`bench/load_generator.h`, shared by `zserve bench`, `nats_bench_client` and "
        "`zmq_bench_client`). Figures are medians over "
     << a.reps << " interleaved repetitions of " << Num(a.duration, 1) << " s each after "
     << Num(a.warmup, 1) << " s of warm-up. Do not edit by hand: run `make bench` again.\n\n"
     << "## Machine\n\n"
     << ReadFile(a.machine)
     << "\nThe machine is shared and noisy, and the load generator, the broker, the workers and "
        "the peers all share its cores: read ratios between systems measured side by side, "
        "not absolute numbers.\n\n"
     << "## Commands\n\n"
     << "```\nmake bench    # = bench/run.sh --build-dir build --docs docs, after installing "
        "nats-server, libnats-dev, gnuplot-nox\n"
     << "zserve bench --broker ADDR --inflight 1,100,1000 --size 100 --duration D --warmup W "
        "--broker-pid PID --json\n"
     << "nats_bench_client --url nats://127.0.0.1:PORT --send-mode asap|buffered "
        "--inflight ... --broker-pid NATS_SERVER_PID --json\n"
     << "zmq_bench_client --server tcp://127.0.0.1:PORT --inflight ... --json\n"
     << "zmq_forwarder --backend ECHO1 [--backend ECHO2]; zmq_bench_client --system "
        "zmq-forwarder --server FORWARDER --inflight ... --broker-pid FORWARDER_PID --json\n"
     << "(open loop: the same with --rate R1,R2,R3 --send-every US instead of --inflight)\n"
        "```\n\n"
     << "## What runs\n\n"
     << "- **zserve**: `zserve up` with one backend `echo` (built-in echo handler), 1 or 2 "
        "replicas, `max_concurrent_queries: "
     << a.max_cq
     << "` (the default 8 per replica is meant for real handlers), loaded by\n"
        "  `zserve bench --broker ADDR --inflight 1,100,1000 --size 100 --broker-pid PID --json`. "
        "Path: client → broker → worker → broker → client.\n"
     << "- **NATS**: Debian's `nats-server` (one server, default settings) and 1 or 2 "
        "`nats_responder` processes in one queue group, loaded by `nats_bench_client`: requests "
        "published with a reply subject under one wildcard inbox subscription (as the C "
        "client's request API does), many in flight on one connection. Settings: "
        "**send_asap** (write at once, client and responders) for 1 in flight, **buffered** "
        "(the library's flusher thread coalesces writes) for 100 and 1000 in flight and for "
        "the open loop — the client's fastest setting for each mode (open loop at 200 000 "
        "req/s, sending every 100 µs, with buffered responders: p99 8.7 ms with a buffered "
        "client, 51 ms with a send_asap one; measured by hand on 2026-11-27).\n"
     << "- **raw ZeroMQ**: `zmq_echo_server` (one ROUTER thread echoing every message) and "
        "`zmq_bench_client` (one DEALER), no broker: the limit of one ZeroMQ hop.\n"
     << "- **ZeroMQ forwarder**: zserve's path in raw ZeroMQ, client → forwarder → echo "
        "server → forwarder → client. `zmq_forwarder` is the ZeroMQ guide's request-reply "
        "broker in its shortest form: a ROUTER for clients and a DEALER connected to 1 or 2 "
        "`zmq_echo_server` processes (the replicas), every message passed on as it came, "
        "with no header read, no routing choice and no accounting: one message per call, "
        "each through libzmq's I/O threads, four legs. A baseline for zserve's path, not a "
        "bound: zserve packs the calls that share a destination into one message, so under "
        "load it can beat it. Its CPU is in the broker CPU columns.\n"
     << "- Closed loop: N requests in flight, a reply is followed at once by the next request. "
        "Open loop: Poisson arrivals at a target rate, latency counted from the intended start "
        "(no coordinated omission). Broker CPU: utime + stime of the broker process "
        "(`/proc/PID/stat`) over the measured window, per request served; for NATS, of "
        "nats-server.\n\n";

  // Goals.
  const size_t small = sizes.empty() ? 100 : *sizes.begin();
  const Cell* zs_pipe = Find(cells, "zserve", "closed", 2, small, 1000);
  const Cell* nats_pipe = Find(cells, "nats", "closed", 2, small, 1000);
  const Cell* zs_sync = Find(cells, "zserve", "closed", 1, small, 1);
  const Cell* nats_sync = Find(cells, "nats", "closed", 1, small, 1);
  double pipe_ratio = Med(zs_pipe, &Cell::rps) / Med(nats_pipe, &Cell::rps);
  double sync_ratio = Med(zs_sync, &Cell::rps) / Med(nats_sync, &Cell::rps);
  double cpu = Med(zs_pipe, &Cell::broker_cpu);
  // Open loop: the zserve rate nearest half of its peak.
  double peak = 0;
  for (const auto& [k, c] : cells) {
    if (k.system == "zserve" && k.kind == "closed" && k.replicas == top && k.size == small) {
      peak = std::max(peak, Median(c.rps));
    }
  }
  std::optional<double> half_rate;
  for (double r : rates) {
    if (!half_rate || std::fabs(r - peak / 2) < std::fabs(*half_rate - peak / 2)) half_rate = r;
  }
  const Cell* zs_open = half_rate ? Find(cells, "zserve", "open", top, small, *half_rate) : nullptr;
  double open_p99 = Med(zs_open, &Cell::p99);
  auto met = [](bool known, bool ok) {
    return !known ? "not measured" : ok ? "**met**" : "**not met**";
  };
  md << "## The goals of issue 7\n\n"
     << "| goal | measured | |\n|---|---|---|\n"
     << "| pipelined throughput (1000 in flight, " << SizeName(small)
     << ", 2 replicas) ≥ 1.5× NATS | zserve " << Num(Med(zs_pipe, &Cell::rps)) << " req/s, NATS "
     << Num(Med(nats_pipe, &Cell::rps))
     << " req/s: " << Ratio(Med(zs_pipe, &Cell::rps), Med(nats_pipe, &Cell::rps)) << " | "
     << met(!std::isnan(pipe_ratio), pipe_ratio >= 1.5) << " |\n"
     << "| synchronous calls per second (1 in flight, " << SizeName(small)
     << ", 1 replica) ≥ NATS | zserve " << Num(Med(zs_sync, &Cell::rps)) << " req/s, NATS "
     << Num(Med(nats_sync, &Cell::rps))
     << " req/s: " << Ratio(Med(zs_sync, &Cell::rps), Med(nats_sync, &Cell::rps)) << " | "
     << met(!std::isnan(sync_ratio), sync_ratio >= 1.0) << " |\n"
     << "| broker CPU ≤ 2 µs per request at saturation (1000 in flight, 2 replicas) | "
     << Num(cpu, 2) << " µs | " << met(!std::isnan(cpu), cpu <= 2.0) << " |\n"
     << "| open loop at half of zserve's peak: p99 ≤ 1 ms | ";
  if (half_rate) {
    md << "peak " << Num(peak) << " req/s; at " << Num(*half_rate) << " req/s p99 "
       << Num(open_p99, 0) << " µs";
  } else {
    md << "–";
  }
  md << " | " << met(!std::isnan(open_p99), open_p99 <= 1000) << " |\n\n";
  const Cell* fwd_sync = Find(cells, "zmq-forwarder", "closed", 1, small, 1);
  const Cell* fwd_pipe = Find(cells, "zmq-forwarder", "closed", 2, small, 1000);
  if (fwd_sync != nullptr) {
    md << "The same path in raw ZeroMQ (the ZeroMQ forwarder below, 1 echo server) made "
       << Num(Med(fwd_sync, &Cell::rps)) << " synchronous calls per second";
    if (nats_sync != nullptr) {
      md << ", " << Ratio(Med(fwd_sync, &Cell::rps), Med(nats_sync, &Cell::rps)) << " NATS";
    }
    md << "; zserve made " << Ratio(Med(zs_sync, &Cell::rps), Med(fwd_sync, &Cell::rps))
       << " of the forwarder's.";
    if (fwd_pipe != nullptr) {
      double r = Med(zs_pipe, &Cell::rps) / Med(fwd_pipe, &Cell::rps);
      md << " Pipelined (1000 in flight, 2 replicas) the forwarder made "
         << Num(Med(fwd_pipe, &Cell::rps)) << " req/s, and zserve "
         << Ratio(Med(zs_pipe, &Cell::rps), Med(fwd_pipe, &Cell::rps)) << " of that"
         << (r > 1 ? ": zserve packs the calls that share a destination into one message." : ".");
    }
    md << "\n\n";
  }
  md << "Errors over all runs: " << total_errors
     << (total_errors == 0 ? " (every request got its reply)." : ", by run (all repetitions):")
     << "\n\n";
  for (const auto& [k, c] : cells) {
    if (c.errors == 0) continue;
    md << "- " << k.system << ", " << k.kind << " at " << Num(k.load)
       << (k.kind == "open" ? " req/s" : " in flight") << ", " << SizeName(k.size) << ", "
       << k.replicas << " replicas:";
    for (const auto& [kind, n] : c.error_kinds) md << " " << kind << " " << Num(n);
    md << "\n";
  }
  if (total_errors > 0) md << "\n";

  // Closed loop tables: one row per payload, in-flight count and replicas.
  auto for_each_row = [&](const auto& row) {
    for (size_t size : sizes) {
      for (double n : inflights) {
        for (int r : replicas) {
          md << "| " << SizeName(size) << " | " << Num(n) << " | " << r << " | ";
          row(Find(cells, "zserve", "closed", r, size, n),
              Find(cells, "nats", "closed", r, size, n), Find(cells, "zmq", "closed", 1, size, n),
              Find(cells, "zmq-forwarder", "closed", r, size, n));
        }
      }
    }
  };
  md << "## Closed loop: throughput (requests/s)\n\n"
     << "| payload | in flight | replicas | zserve | NATS | raw ZeroMQ | ZeroMQ forwarder | "
        "zserve / NATS | zserve / raw | zserve / forwarder | forwarder / NATS "
        "|\n|---|---|---|---|---|---|---|---|---|---|---|\n";
  for_each_row([&](const Cell* z, const Cell* s, const Cell* w, const Cell* f) {
    double zr = Med(z, &Cell::rps), sr = Med(s, &Cell::rps), wr = Med(w, &Cell::rps),
           fr = Med(f, &Cell::rps);
    md << Num(zr) << " | " << Num(sr) << (s ? " (" + s->settings + ")" : "") << " | " << Num(wr)
       << " | " << Num(fr) << " | " << Ratio(zr, sr) << " | " << Ratio(zr, wr) << " | "
       << Ratio(zr, fr) << " | " << Ratio(fr, sr) << " |\n";
  });
  md << "\n## Closed loop: latency p50 / p99 / p99.9 (µs) and broker CPU (µs per request)\n\n"
     << "| payload | in flight | replicas | zserve p50 / p99 / p99.9 | NATS p50 / p99 / p99.9 | "
        "raw p50 / p99 / p99.9 | forwarder p50 / p99 / p99.9 | p99 zserve / NATS | "
        "p99 zserve / raw | p99 zserve / forwarder | broker CPU zserve | CPU nats-server | "
        "CPU forwarder |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  auto lat = [](const Cell* c) {
    return Num(Med(c, &Cell::p50)) + " / " + Num(Med(c, &Cell::p99)) + " / " +
           Num(Med(c, &Cell::p999));
  };
  for_each_row([&](const Cell* z, const Cell* s, const Cell* w, const Cell* f) {
    md << lat(z) << " | " << lat(s) << " | " << lat(w) << " | " << lat(f) << " | "
       << Ratio(Med(z, &Cell::p99), Med(s, &Cell::p99)) << " | "
       << Ratio(Med(z, &Cell::p99), Med(w, &Cell::p99)) << " | "
       << Ratio(Med(z, &Cell::p99), Med(f, &Cell::p99)) << " | "
       << Num(Med(z, &Cell::broker_cpu), 2) << " | " << Num(Med(s, &Cell::broker_cpu), 2) << " | "
       << Num(Med(f, &Cell::broker_cpu), 2) << " |\n";
  });
  md << "\nRaw ZeroMQ has no replicas: its one echo server is the same row for 1 and 2.\n\n"
     << "![throughput and p99 against in-flight count](benchmarks.png)\n\n";

  if (!rates.empty()) {
    md << "## Open loop (Poisson arrivals, " << SizeName(small) << ", " << top
       << " replicas / responders)\n\n"
       << "| target req/s | system | achieved req/s | p50 µs | p90 µs | p99 µs | p99.9 µs | "
          "broker CPU µs/req |\n|---|---|---|---|---|---|---|---|\n";
    for (double rate : rates) {
      for (const char* sys : {"zserve", "nats", "zmq", "zmq-forwarder"}) {
        const Cell* c = Find(cells, sys, "open", std::string(sys) == "zmq" ? 1 : top, small, rate);
        if (c == nullptr) continue;
        md << "| " << Num(rate) << " | " << sys << " | " << Num(Med(c, &Cell::rps)) << " | "
           << Num(Med(c, &Cell::p50)) << " | " << Num(Med(c, &Cell::p90)) << " | "
           << Num(Med(c, &Cell::p99)) << " | " << Num(Med(c, &Cell::p999)) << " | "
           << Num(Med(c, &Cell::broker_cpu), 2) << " |\n";
      }
    }
    double send_every = 0;
    for (const auto& [k, c] : cells) {
      if (k.kind == "open") send_every = c.send_every_us;
    }
    md << "\nThe load generator sends the arrivals due every " << Num(send_every)
       << " µs (`--send-every`), together, as a client gathering its calls would; each "
          "request's latency still counts from its own Poisson arrival, so that wait is in the "
          "figures. Between sends it sleeps (the client APIs poll in whole milliseconds). The "
          "raw ZeroMQ rows are the floor this load generator reaches on this machine at each "
          "rate: on two shared cores its wake-ups compete with the servers; the forwarder rows "
          "are the same for zserve's path, two hops instead of one, one message per call. A "
          "rate past what a "
          "system sustains shows as errors (listed under the goals): zserve's broker answers "
          "OVERLOADED once one connection has 10 000 calls unanswered "
          "(`--max-inflight-per-client`) instead of queueing without bound; NATS's "
          "CLIENT_BACKLOG is the load generator's own bound on calls outstanding "
          "(`--max-outstanding`, 100 000), for the ZeroMQ clients too. The forwarder has no "
          "bound of its own: past its "
          "rate its pipes fill to their high-water mark (100 000 messages) and it drops what it "
          "cannot pass on at once, which the load generator counts as LOST (checked by hand: "
          "14 280 LOST at 600 000 req/s, and the forwarder's own count of messages not sent "
          "was 14 280).\n\n";
  }

  md << "## Batching (`max_batch_size`, `batch` handler, 1000 in flight, " << SizeName(small)
     << ", " << top << " replicas)\n\n";
  if (batches.empty()) {
    md << "Not measured in this run.\n\n";
  } else {
    md << "| max_batch_size | req/s | p50 µs | p99 µs | broker CPU µs/req "
          "|\n|---|---|---|---|---|\n";
    for (int b : batches) {
      const Cell* c = Find(cells, "zserve", "batch", top, small, 1000, b);
      md << "| " << b << " | " << Num(Med(c, &Cell::rps)) << " | " << Num(Med(c, &Cell::p50))
         << " | " << Num(Med(c, &Cell::p99)) << " | " << Num(Med(c, &Cell::broker_cpu), 2)
         << " |\n";
    }
    md << "\nThe built-in `batch` handler models a model on an accelerator: each handler call "
          "waits 1 ms plus 10 µs per request (worker/builtin_handlers.h), with the worker's "
          "default 4 handler threads per replica. At `max_batch_size` 1 a replica serves at "
          "most 4 calls per ~1 ms; larger batches amortise the fixed part.\n\n";
  }
  // Measured by other runs (bench/scale.sh, by hand): kept beside the script.
  if (!a.scale.empty()) md << ReadFile(a.scale);
  md << ReadFile(a.profile);

  std::ofstream(a.markdown) << md.str();

  // The chart: throughput and p99 against in-flight count, one column per payload.
  std::filesystem::create_directories(a.plot_dir);
  std::ostringstream gp;
  gp << "set terminal pngcairo size 1200," << 420 * 2 << " font 'sans,10'\n"
     << "set output '" << a.png << "'\n"
     << "set datafile missing 'NaN'\nset logscale x\nset grid\nset key top left\n"
     << "set multiplot layout 2," << sizes.size() << "\n";
  const std::vector<std::pair<std::string, int>> series = {
      {"zserve", 1}, {"zserve", 2},        {"nats", 1},         {"nats", 2},
      {"zmq", 1},    {"zmq-forwarder", 1}, {"zmq-forwarder", 2}};
  for (int metric = 0; metric < 2; ++metric) {
    for (size_t size : sizes) {
      std::string dat = a.plot_dir + "/plot_" + std::to_string(size) + ".dat";
      std::ofstream out(dat);
      for (double n : inflights) {
        out << n;
        for (const auto& [sys, r] : series) {
          const Cell* c = Find(cells, sys, "closed", r, size, n);
          out << ' ' << (c ? Median(c->rps) : NAN) << ' ' << (c ? Median(c->p99) : NAN);
        }
        out << '\n';
      }
      gp << "set title '" << (metric == 0 ? "throughput" : "p99 latency") << ", " << SizeName(size)
         << "'\nset xlabel 'requests in flight'\nset ylabel '"
         << (metric == 0 ? "requests/s" : "p99 (µs)") << "'\n"
         << (metric == 0 ? "unset logscale y\n" : "set logscale y\n") << "plot ";
      for (size_t i = 0; i < series.size(); ++i) {
        const auto& [sys, r] = series[i];
        gp << (i ? ", " : "") << "'" << dat << "' using 1:" << (2 + 2 * i + metric)
           << " with linespoints title '" << sys
           << (sys == "zmq" ? " (raw)" : " r" + std::to_string(r)) << "'";
      }
      gp << "\n";
    }
  }
  gp << "unset multiplot\n";
  std::ofstream(a.plot_dir + "/benchmarks.gp") << gp.str();
  std::fprintf(stderr, "bench_report: wrote %s\n", a.markdown.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Tabulates bench/run.sh results"};
  app.require_subcommand(1);
  std::string results, system = "zserve";
  int replicas = 1;
  size_t size = 100;
  CLI::App* peak = app.add_subcommand("peak", "Print the best median closed-loop throughput");
  peak->add_option("--results", results)->required();
  peak->add_option("--system", system);
  peak->add_option("--replicas", replicas);
  peak->add_option("--size", size);
  WriteArgs w;
  CLI::App* write = app.add_subcommand("write", "Write the markdown and the gnuplot script");
  write->add_option("--results", w.results)->required();
  write->add_option("--machine", w.machine)->required();
  write->add_option("--scale", w.scale, "Markdown appended as is (`make bench-scale`'s findings)");
  write->add_option("--profile", w.profile, "Markdown appended as is (the profile findings)");
  write->add_option("--markdown", w.markdown)->required();
  write->add_option("--png", w.png, "Chart path (default: beside the markdown)");
  write->add_option("--plot-dir", w.plot_dir)->required();
  write->add_option("--max-cq", w.max_cq);
  write->add_option("--duration", w.duration);
  write->add_option("--warmup", w.warmup);
  write->add_option("--reps", w.reps);
  CLI11_PARSE(app, argc, argv);

  if (peak->parsed()) {
    double best = 0;
    for (const auto& [k, c] : Load(results)) {
      if (k.system == system && k.kind == "closed" && k.replicas == replicas && k.size == size) {
        best = std::max(best, Median(c.rps));
      }
    }
    if (best <= 0) return 1;
    std::printf("%.0f\n", best);
    return 0;
  }
  if (w.png.empty()) {
    w.png = (std::filesystem::path(w.markdown).parent_path() / "benchmarks.png").string();
  }
  return Write(w);
}
