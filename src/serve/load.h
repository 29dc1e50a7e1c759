#pragma once
// A load test of `pricer serve`, in process and over loopback HTTP: N clients each send their
// requests one after another; requests/s and latency percentiles per setting, and what batching
// the queued price requests buys. The work of `pricer bench serve` (docs/benchmarks.md).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "predict/model_pricer.h"

namespace pricer::serve {

struct LoadResult {
  int clients = 0;
  int64_t requests = 0, errors = 0;
  double seconds = 0, requests_per_s = 0, p50_ms = 0, p99_ms = 0;
};

// `clients` threads, each sending `per_client` POSTs of `bodies` (taken in turn) to `path` on
// 127.0.0.1:port, one at a time; a reply other than 200 counts as an error.
LoadResult run_load(int port, const std::string& path, const std::vector<std::string>& bodies, int clients,
                    int per_client);

struct ServeBenchOptions {
  ModelPricerOptions model;
  std::vector<int> clients = {1, 4, 16};
  int per_client = 50;
  int max_tokens = 8;  // of each completion request
};

// Every (endpoint, clients) setting, and both endpoints at the most clients with batching off;
// one JSON object per measurement.
std::vector<nlohmann::json> bench_serve(const ServeBenchOptions& o);

}  // namespace pricer::serve
