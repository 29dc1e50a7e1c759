#pragma once
// Text and SVG views of the run database, used by `pricer runs`.
#include <cstdint>
#include <string>
#include <vector>

#include "monitor/run_db.h"

namespace pricer::monitor {

// "42s", "3m05s", "1h02m", "2d03h"; negative or non-finite: "-".
std::string format_duration(double seconds);

// Averages the finite values of consecutive buckets so a series fits `width` columns; shorter
// series come back unchanged. A bucket with no finite value stays NaN (drawn as a gap).
std::vector<double> downsample(const std::vector<double>& values, std::size_t width);

// Sparkline of a metric series, at most `width` characters wide.
std::string metric_sparkline(const std::vector<MetricPoint>& series, std::size_t width = 60);

// The run listing: id, name, kind, status, steps, last loss, best loss, duration. Running runs
// are timed up to `now`.
std::string format_run_table(const std::vector<RunSummary>& runs, double now);

// Everything about one run: fields, hyperparameters, per-metric last/min/max with loss
// sparklines, artifacts.
std::string format_run_details(RunDb& db, std::int64_t run, double now);

// SVG chart of train and eval loss against step; empty when the run logged neither.
std::string loss_chart_svg(RunDb& db, std::int64_t run);

}  // namespace pricer::monitor
