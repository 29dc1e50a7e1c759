#include "core/threads.h"

#include <omp.h>

#include <thread>

namespace pricer {

namespace {
int g_threads = 0;
}

void set_threads(int n) {
  if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
  if (n <= 0) n = 1;
  g_threads = n;
  omp_set_num_threads(n);
}

int threads() {
  if (g_threads == 0) set_threads(0);
  return g_threads;
}

}  // namespace pricer
