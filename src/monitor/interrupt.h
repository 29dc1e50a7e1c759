#pragma once
// Clean stops on Ctrl-C / SIGTERM. While an InterruptGuard is alive, the first SIGINT or SIGTERM
// only sets a flag: the training loop polls interrupt_requested() between steps, saves what it
// needs and records the run as interrupted. A second signal of the same kind gets the default
// action (the process ends at once), so a stuck run can still be killed.
namespace pricer::monitor {

class InterruptGuard {
 public:
  InterruptGuard();  // installs the handlers and clears the flag
  ~InterruptGuard();  // restores the previous handlers
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;
};

bool interrupt_requested();
int interrupt_signal();  // the signal that set the flag, 0 when none

}  // namespace pricer::monitor
