#include "monitor/interrupt.h"

#include <signal.h>

#include <atomic>
#include <vector>

namespace pricer::monitor {
namespace {

std::atomic<int> g_signal{0};  // lock-free, so safe to touch from a signal handler
static_assert(std::atomic<int>::is_always_lock_free);
struct sigaction g_old_int, g_old_term;

extern "C" void on_signal(int sig) { g_signal.store(sig); }

}  // namespace

InterruptGuard::InterruptGuard() {
  g_signal.store(0);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  // SA_RESETHAND: the next signal takes the default action. SA_RESTART: blocking reads and
  // writes in the loop are not cut short by the first Ctrl-C.
  sa.sa_flags = SA_RESETHAND | SA_RESTART | SA_ONSTACK;
  sigaction(SIGINT, &sa, &g_old_int);
  sigaction(SIGTERM, &sa, &g_old_term);
}

InterruptGuard::~InterruptGuard() {
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGTERM, &g_old_term, nullptr);
}

void route_signals_to_this_thread(void (*warm_pool)()) {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  warm_pool();  // threads created now inherit the blocked mask
  static std::vector<char> alt(static_cast<size_t>(SIGSTKSZ) * 4);
  stack_t ss{};
  ss.ss_sp = alt.data();
  ss.ss_size = alt.size();
  sigaltstack(&ss, nullptr);
  pthread_sigmask(SIG_UNBLOCK, &stop, nullptr);
}

bool interrupt_requested() { return g_signal.load() != 0; }
int interrupt_signal() { return g_signal.load(); }

}  // namespace pricer::monitor
