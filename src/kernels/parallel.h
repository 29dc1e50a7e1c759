#pragma once
// An exception must not escape an OpenMP region (that terminates the program): work inside one
// runs through ParallelErrors::run, which keeps the first exception, rethrown after the region.
#include <exception>

namespace pricer::kernels {

class ParallelErrors {
 public:
  template <class F>
  void run(F&& f) noexcept {
    try {
      f();
    } catch (...) {
#pragma omp critical(pricer_parallel_errors)
      if (!first_) first_ = std::current_exception();
    }
  }
  void rethrow() const {
    if (first_) std::rethrow_exception(first_);
  }

 private:
  std::exception_ptr first_;
};

}  // namespace pricer::kernels
