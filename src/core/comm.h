#pragma once
// The processes of one job. Launched by mpirun (or srun), pricer is one rank of the MPI world;
// launched alone, or built without MPI, it is rank 0 of 1 and nothing here communicates. This is
// the one file that speaks MPI.
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace pricer::comm {

// Whether this build has MPI (pricer --version says so).
bool built_with_mpi();
// Joins the MPI world when a launcher started this process; call once, first thing in main.
// Ranks other than 0 are silenced then (they would repeat rank 0's output); a fatal error still
// reaches the terminal through abort_job.
void init(int& argc, char**& argv);
// Leaves it (no-op when never joined); call before a normal exit.
void finalize();

int rank();
int size();
inline bool root() { return rank() == 0; }

// Sums `data` element-wise over the ranks, the same values on every rank. The order of the
// additions is fixed (rank 0's part + rank 1's + ...), so the result never depends on timing:
// each rank adds up one slice from every rank in rank order, then every rank gathers the slices.
void sum(std::span<float> data);
void sum(std::span<double> data);
// Every rank's flag ORed together (e.g. "an interrupt arrived here").
bool any(bool flag);
// Every rank's text, in rank order, on every rank.
std::vector<std::string> all_texts(const std::string& mine);
// The items [begin, end) of n that this rank takes: contiguous shares, in rank order.
std::pair<std::size_t, std::size_t> share(std::size_t n);

// Point to point on the whole world (whatever Solo says): one message of text, in order per pair.
void send_text(int to, const std::string& text);
std::string recv_text(int from);
int world_rank();
int world_size();
// Whether several threads of this process may communicate at once (MPI_THREAD_MULTIPLE).
bool threads_may_communicate();

// While a Solo lives this process is a job of its own, rank 0 of 1, for everything above but
// send_text / recv_text (a sweep's trial trains alone on its rank).
class Solo {
 public:
  Solo();
  ~Solo();
  Solo(const Solo&) = delete;
  Solo& operator=(const Solo&) = delete;
};

// Ends every rank of the job after a failure on this one, naming the rank; never returns.
[[noreturn]] void abort_job(const std::string& message, int code);

}  // namespace pricer::comm
