#pragma once
// Cross-fitting's folds. An item's fold is a hash of its prompt, so a training run that leaves a
// fold out and the ensemble that later prices that fold with it agree on the split without
// sharing a file, whatever order or split the item is read in.
#include <string_view>

namespace pricer::data {

inline constexpr int kMaxCrossFitFolds = 100;

// The metadata keys of a model or adapter trained with one fold left out (their values: u32).
inline constexpr const char* kCrossFitFoldsKey = "pricer.cross_fit.folds";
inline constexpr const char* kCrossFitFoldKey = "pricer.cross_fit.fold";

// The fold (0 .. folds - 1) of the item with this prompt; folds in [2, kMaxCrossFitFolds].
int cross_fit_fold(std::string_view prompt, int folds);

}  // namespace pricer::data
