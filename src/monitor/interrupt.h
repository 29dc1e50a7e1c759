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

// Makes SIGINT and SIGTERM land on the calling (main) thread alone, on a stack of its own: the
// compute threads, created here with the two signals blocked, never take them. Interrupts that
// landed on a compute thread inside a oneDNN GEMM corrupted the heap (about one Ctrl-C in four
// during a training run's evaluation when OpenMP's threads sleep between regions; never with one
// thread or with spinning threads), the signature of a handler frame written over data that
// generated code keeps below its stack pointer. Call once, after the thread count is set and
// before any other thread starts; `warm_pool` starts the OpenMP threads.
void route_signals_to_this_thread(void (*warm_pool)());

}  // namespace pricer::monitor
