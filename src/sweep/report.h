#pragma once
// What a sweep shows: the ranked table of trials (terminal), and an HTML report with the
// objective of every trial in order, the best value so far, and each parameter against the
// objective (SVG charts, self-contained).
#include <string>

#include "sweep/space.h"
#include "sweep/state.h"

namespace pricer::sweep {

// Best first (see ranked_trials), then failed and running trials; at most `limit` ranked rows
// (0 = all).
std::string format_ranked_table(const SweepState& state, const SearchSpace& space, const std::string& objective,
                                size_t limit = 0);

std::string sweep_report_html(const SweepState& state, const SearchSpace& space, const std::string& objective);

}  // namespace pricer::sweep
