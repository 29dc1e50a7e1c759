#include "core/comm.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.h"

#ifdef PRICER_HAVE_MPI
#include <mpi.h>
#endif

namespace pricer::comm {

namespace {

int g_rank = 0, g_size = 1;
bool g_joined = false, g_multiple = false;
std::atomic<int> g_solo{0};
int g_error_fd = 2;  // where a fatal error of this rank is written (stderr, kept when silenced)

// Ranks other than 0 would repeat rank 0's every line (they run the same job): their stdout and
// stderr go to /dev/null, and only a fatal error, naming the rank, reaches the terminal.
void silence_other_ranks() {
  if (g_rank == 0) return;
  g_error_fd = ::dup(2);
  const int null = ::open("/dev/null", O_WRONLY);
  if (null < 0 || g_error_fd < 0) return;
  std::fflush(stdout);
  std::fflush(stderr);
  ::dup2(null, 1);
  ::dup2(null, 2);
  ::close(null);
}

// Launchers announce the world in the environment: Open MPI, PMIx (Slurm), MPICH's Hydra.
bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"})
    if (std::getenv(v) != nullptr) return true;
  return false;
}

#ifdef PRICER_HAVE_MPI
constexpr int kTextTag = 17;
// Counts travel as int: slices of at most this many elements.
constexpr std::size_t kMaxPiece = std::size_t(1) << 26;

template <class T>
void ordered_sum(std::span<T> data, MPI_Datatype type) {
  const auto n = static_cast<std::size_t>(g_size);
  for (std::size_t at = 0; at < data.size(); at += kMaxPiece * n) {
    const std::span<T> piece = data.subspan(at, std::min(data.size() - at, kMaxPiece * n));
    const std::size_t chunk = (piece.size() + n - 1) / n;  // rank r owns [r * chunk, (r + 1) * chunk)
    std::vector<T> send(chunk * n, T(0)), recv(chunk * n);
    std::copy(piece.begin(), piece.end(), send.begin());
    MPI_Alltoall(send.data(), static_cast<int>(chunk), type, recv.data(), static_cast<int>(chunk), type,
                 MPI_COMM_WORLD);
    std::vector<T> mine(chunk, T(0));
    for (std::size_t r = 0; r < n; ++r)
      for (std::size_t i = 0; i < chunk; ++i) mine[i] += recv[r * chunk + i];
    MPI_Allgather(mine.data(), static_cast<int>(chunk), type, send.data(), static_cast<int>(chunk), type,
                  MPI_COMM_WORLD);
    std::copy_n(send.begin(), piece.size(), piece.begin());
  }
}
#endif

}  // namespace

bool built_with_mpi() {
#ifdef PRICER_HAVE_MPI
  return true;
#else
  return false;
#endif
}

void init(int& argc, char**& argv) {
#ifdef PRICER_HAVE_MPI
  if (!launched_by_mpi()) return;
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  g_multiple = provided >= MPI_THREAD_MULTIPLE;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  g_joined = true;
  silence_other_ranks();
#else
  (void)argc;
  (void)argv;
  if (launched_by_mpi())
    std::fprintf(stderr,
                 "pricer: warning: started by an MPI launcher, but this build has no MPI: every process "
                 "runs the whole job alone (install libopenmpi-dev and rebuild)\n");
#endif
}

void finalize() {
#ifdef PRICER_HAVE_MPI
  if (g_joined) MPI_Finalize();
  g_joined = false;
#endif
}

int rank() { return g_solo > 0 ? 0 : g_rank; }
int size() { return g_solo > 0 ? 1 : g_size; }
int world_rank() { return g_rank; }
int world_size() { return g_size; }
bool threads_may_communicate() { return g_multiple; }

Solo::Solo() { ++g_solo; }
Solo::~Solo() { --g_solo; }

void send_text(int to, const std::string& text) {
#ifdef PRICER_HAVE_MPI
  MPI_Send(text.data(), static_cast<int>(text.size()), MPI_CHAR, to, kTextTag, MPI_COMM_WORLD);
#else
  (void)to;
  (void)text;
  throw Error("send_text: this build has no MPI");
#endif
}

std::string recv_text(int from) {
#ifdef PRICER_HAVE_MPI
  MPI_Status st;
  MPI_Probe(from, kTextTag, MPI_COMM_WORLD, &st);
  int n = 0;
  MPI_Get_count(&st, MPI_CHAR, &n);
  std::string text(static_cast<std::size_t>(n), '\0');
  MPI_Recv(text.data(), n, MPI_CHAR, from, kTextTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  return text;
#else
  (void)from;
  throw Error("recv_text: this build has no MPI");
#endif
}

void sum(std::span<float> data) {
#ifdef PRICER_HAVE_MPI
  if (size() > 1) ordered_sum(data, MPI_FLOAT);
#else
  (void)data;
#endif
}

void sum(std::span<double> data) {
#ifdef PRICER_HAVE_MPI
  if (size() > 1) ordered_sum(data, MPI_DOUBLE);
#else
  (void)data;
#endif
}

bool any(bool flag) {
  double v = flag ? 1.0 : 0.0;
  sum(std::span<double>(&v, 1));
  return v > 0;
}

std::vector<std::string> all_texts(const std::string& mine) {
#ifdef PRICER_HAVE_MPI
  if (size() > 1) {
    int len = static_cast<int>(mine.size());
    std::vector<int> lens(static_cast<std::size_t>(g_size)), at(static_cast<std::size_t>(g_size), 0);
    MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, MPI_COMM_WORLD);
    for (int r = 1; r < g_size; ++r) at[r] = at[r - 1] + lens[r - 1];
    std::string all(static_cast<std::size_t>(at.back() + lens.back()), '\0');
    MPI_Allgatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), at.data(), MPI_CHAR, MPI_COMM_WORLD);
    std::vector<std::string> out;
    for (int r = 0; r < g_size; ++r)
      out.push_back(all.substr(static_cast<std::size_t>(at[r]), static_cast<std::size_t>(lens[r])));
    return out;
  }
#endif
  return {mine};
}

std::pair<std::size_t, std::size_t> share(std::size_t n) {
  const auto r = static_cast<std::size_t>(rank()), k = static_cast<std::size_t>(size());
  return {n * r / k, n * (r + 1) / k};
}

void abort_job(const std::string& message, int code) {
  const std::string line =
      "pricer: rank " + std::to_string(g_rank) + " of " + std::to_string(g_size) + ": " + message + "\n";
  std::fflush(stderr);
  [[maybe_unused]] const ssize_t n = ::write(g_error_fd, line.data(), line.size());
#ifdef PRICER_HAVE_MPI
  if (g_joined && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::exit(code);
}

}  // namespace pricer::comm
