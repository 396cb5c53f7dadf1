// The emulated GPU of cuda_emulation.h: a grid runs block after block in a shuffled order, and a
// block's threads run as fibers (ucontext) on the calling host thread. A fiber runs until it
// reaches a barrier, a warp collective, an atomic or a fence; the scheduler then resumes a
// runnable fiber drawn from a seeded generator, so every interleaving it produces is one a GPU
// may produce, and a seed reproduces it.
//
// Barriers and warp collectives complete only when every participant has arrived: a barrier
// that some threads never reach, a collective whose mask names a lane that exited or waits
// elsewhere, and lanes of one mask reaching different collectives are reported as errors (a
// GPU would hang or give undefined results). __activemask() returns the lanes of the warp that
// reach the same __activemask() call before any of the warp's lanes can run on, as converged
// lanes would on a GPU.
#include <ucontext.h>

#include <algorithm>
#include <cstring>
#include <cstdint>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "emulation/cuda_emulation.h"
#include "emulation/control.h"

namespace clarena::emulation {
namespace {

constexpr int kWarpSize = 32;
constexpr size_t kStackBytes = 256 * 1024;
constexpr int kMaxThreadsPerBlock = 1024;
constexpr unsigned int kMaxGridY = 65535;

enum class State { Runnable, AtBarrier, InCollective, AtActiveMask, Done };

struct Site {
  const char* file = nullptr;
  int line = 0;
  bool operator==(const Site& other) const {
    return line == other.line && (file == other.file || std::strcmp(file, other.file) == 0);
  }
  std::string text() const { return std::string(file) + ":" + std::to_string(line); }
};

struct Fiber {
  ucontext_t context;
  std::unique_ptr<char[]> stack;
  ThreadIds ids;
  State state = State::Runnable;
  Site site;           // where it waits
  uint64_t result = 0; // of its barrier reduction, warp collective or active mask
};

// A warp collective waiting for the lanes of its mask.
struct PendingCollective {
  Collective kind;
  unsigned int mask;
  unsigned int arrived = 0;
  int width;
  Site site;
  uint64_t values[kWarpSize];
  int arguments[kWarpSize];
};

struct Barrier {
  int arrived = 0;
  Site site;
  int reduced = 0;
};

class Engine {
 public:
  void set_seed(uint64_t seed) {
    seed_ = seed;
    launches_ = 0;
  }
  void set_multiprocessors(int count) { multiprocessors_ = count; }
  int multiprocessors() const { return multiprocessors_; }
  cudaError_t take_error() { return std::exchange(launch_error_, cudaSuccess); }

  void run_grid(dim3 grid, dim3 block, KernelBody body);
  int sync_threads(Reduction reduction, int predicate, Site site);
  uint64_t warp_collective(Collective kind, unsigned int mask, uint64_t value, int argument, int width, Site site);
  unsigned int active_mask(Site site);
  void switch_point();
  const ThreadIds& ids() const { return fibers_[running_].ids; }

 private:
  void run_block(uint3 block_index);
  static void fiber_entry();
  void switch_away();
  void fail(const std::string& message);
  void block_fiber(State state, Site site);
  void make_runnable(int fiber);
  void release_barrier_if_complete();
  void complete(PendingCollective& pending, int warp);
  void resolve_active_masks(int warp);
  bool warp_blocked(int warp) const;
  int lanes_in(int warp) const;
  std::string describe_deadlock() const;

  uint64_t seed_ = 0;
  uint64_t launches_ = 0;
  int multiprocessors_ = 3;
  cudaError_t launch_error_ = cudaSuccess;
  std::mt19937_64 random_;

  // The running block.
  KernelBody body_{};
  dim3 grid_, block_;
  std::vector<Fiber> fibers_;
  int threads_ = 0;
  int done_ = 0;
  int running_ = -1;
  std::vector<int> runnable_;
  Barrier barrier_;
  std::vector<std::vector<PendingCollective>> pending_;  // per warp
  ucontext_t host_;
  std::string error_;
};

Engine& engine() {
  static Engine instance;
  return instance;
}

void Engine::run_grid(dim3 grid, dim3 block, KernelBody body) {
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > kMaxGridY || grid.z > kMaxGridY || threads == 0 ||
      threads > kMaxThreadsPerBlock || block.z > 64) {
    launch_error_ = cudaErrorInvalidConfiguration;
    return;
  }
  random_.seed(seed_ * 0x9E3779B97F4A7C15ull + ++launches_);
  body_ = body;
  grid_ = grid;
  block_ = block;
  threads_ = static_cast<int>(threads);
  if (fibers_.size() < threads) fibers_.resize(threads);
  for (Fiber& fiber : fibers_) {
    if (fiber.stack) continue;
    fiber.stack.reset(new char[kStackBytes]);
    getcontext(&fiber.context);  // once: makecontext re-targets it for every block
  }

  std::vector<uint3> order;
  for (unsigned int z = 0; z < grid.z; ++z)
    for (unsigned int y = 0; y < grid.y; ++y)
      for (unsigned int x = 0; x < grid.x; ++x) order.push_back({x, y, z});
  std::shuffle(order.begin(), order.end(), random_);
  for (const uint3& b : order) run_block(b);
}

void Engine::run_block(uint3 block_index) {
  done_ = 0;
  barrier_ = Barrier{};
  runnable_.clear();
  pending_.assign((threads_ + kWarpSize - 1) / kWarpSize, {});
  for (int t = 0; t < threads_; ++t) {
    Fiber& fiber = fibers_[t];
    const unsigned int x = t % block_.x, y = (t / block_.x) % block_.y, z = t / (block_.x * block_.y);
    fiber.ids = {{x, y, z}, block_index, block_, grid_};
    fiber.state = State::Runnable;
    fiber.result = 0;
    fiber.context.uc_stack.ss_sp = fiber.stack.get();
    fiber.context.uc_stack.ss_size = kStackBytes;
    fiber.context.uc_link = nullptr;
    makecontext(&fiber.context, &Engine::fiber_entry, 0);
    runnable_.push_back(t);
  }
  // The first fiber is drawn like every later one; control comes back here when the block is
  // done or stuck.
  running_ = -1;
  switch_away();
  if (!error_.empty()) throw std::runtime_error(std::exchange(error_, {}));
}

void Engine::fiber_entry() {
  Engine& e = engine();
  e.body_.run(e.body_.bound);
  Fiber& self = e.fibers_[e.running_];
  self.state = State::Done;
  ++e.done_;
  // An exited thread no longer holds back a barrier (as on sm_70 and later), but a collective
  // whose mask names it can never complete.
  e.release_barrier_if_complete();
  const int warp = e.running_ / kWarpSize;
  const unsigned int lane_bit = 1u << (e.running_ % kWarpSize);
  for (const PendingCollective& pending : e.pending_[warp])
    if (pending.mask & lane_bit & ~pending.arrived)
      return e.fail("lane " + std::to_string(e.running_ % kWarpSize) + " of warp " + std::to_string(warp) +
                    " exited while named in the mask of the collective at " + pending.site.text());
  e.resolve_active_masks(warp);
  e.switch_away();
}

// Leaves the running fiber (already marked blocked, done or runnable) for a runnable one drawn at
// random, or for the host when none is left.
void Engine::switch_away() {
  const int from = running_;
  if (runnable_.empty()) {
    if (done_ != threads_ && error_.empty()) error_ = describe_deadlock();
    running_ = -1;
    if (from >= 0) swapcontext(&fibers_[from].context, &host_);
    return;
  }
  const size_t pick = std::uniform_int_distribution<size_t>(0, runnable_.size() - 1)(random_);
  const int to = runnable_[pick];
  runnable_[pick] = runnable_.back();
  runnable_.pop_back();
  running_ = to;
  if (to == from) return;
  swapcontext(from >= 0 ? &fibers_[from].context : &host_, &fibers_[to].context);
}

void Engine::fail(const std::string& message) {
  std::ostringstream text;
  const uint3 b = fibers_[running_].ids.block;
  text << "clarena emulation: block (" << b.x << ", " << b.y << ", " << b.z << "): " << message;
  error_ = text.str();
  const int from = running_;
  running_ = -1;
  swapcontext(&fibers_[from].context, &host_);  // never resumed
}

void Engine::make_runnable(int fiber) {
  fibers_[fiber].state = State::Runnable;
  runnable_.push_back(fiber);
}

void Engine::block_fiber(State state, Site site) {
  Fiber& self = fibers_[running_];
  self.state = state;
  self.site = site;
}

void Engine::release_barrier_if_complete() {
  if (barrier_.arrived == 0 || barrier_.arrived + done_ != threads_) return;
  for (int t = 0; t < threads_; ++t) {
    if (fibers_[t].state != State::AtBarrier) continue;
    fibers_[t].result = static_cast<uint64_t>(barrier_.reduced);
    make_runnable(t);
  }
  barrier_ = Barrier{};
}

int Engine::sync_threads(Reduction reduction, int predicate, Site site) {
  if (barrier_.arrived == 0) {
    barrier_.site = site;
    barrier_.reduced = reduction == Reduction::And ? 1 : 0;
  } else if (!(barrier_.site == site)) {
    fail("__syncthreads at " + site.text() + " while other threads wait at " + barrier_.site.text() +
         " (a barrier in divergent code)");
  }
  ++barrier_.arrived;
  switch (reduction) {
    case Reduction::None: break;
    case Reduction::Or: barrier_.reduced |= predicate; break;
    case Reduction::And: barrier_.reduced &= predicate; break;
    case Reduction::Count: barrier_.reduced += predicate; break;
  }
  const int self = running_;
  block_fiber(State::AtBarrier, site);
  release_barrier_if_complete();
  resolve_active_masks(self / kWarpSize);
  switch_away();
  return static_cast<int>(fibers_[self].result);
}

int Engine::lanes_in(int warp) const { return std::min(kWarpSize, threads_ - warp * kWarpSize); }

uint64_t Engine::warp_collective(Collective kind, unsigned int mask, uint64_t value, int argument, int width,
                                 Site site) {
  const int self = running_;
  const int warp = self / kWarpSize;
  const int lane = self % kWarpSize;
  const unsigned int lane_bit = 1u << lane;
  const int lanes = lanes_in(warp);
  if (!(mask & lane_bit)) fail("lane " + std::to_string(lane) + " is not in the mask of the collective at " + site.text());
  if (lanes < kWarpSize && (mask >> lanes) != 0) fail("the mask of the collective at " + site.text() + " names lanes the block lacks");
  if (width < 1 || width > kWarpSize || (width & (width - 1)) != 0) fail("shuffle width must be a power of two up to 32");
  std::vector<PendingCollective>& pendings = pending_[warp];
  PendingCollective* pending = nullptr;
  for (PendingCollective& p : pendings) {
    if (p.arrived & lane_bit) continue;
    if (p.mask == mask) {
      pending = &p;
      break;
    }
    if (p.mask & mask)
      fail("collectives at " + site.text() + " and " + p.site.text() + " wait for the same lanes with different masks");
  }
  if (pending == nullptr) {
    for (int l = 0; l < lanes; ++l)
      if ((mask >> l) & 1u && fibers_[warp * kWarpSize + l].state == State::Done)
        fail("lane " + std::to_string(l) + " of warp " + std::to_string(warp) +
             " exited while named in the mask of the collective at " + site.text());
    pendings.push_back(PendingCollective{kind, mask, 0, width, site, {}, {}});
    pending = &pendings.back();
  } else if (pending->kind != kind || pending->width != width || !(pending->site == site)) {
    fail("lanes of mask " + std::to_string(mask) + " reached different collectives: " + site.text() + " and " +
         pending->site.text());
  }
  pending->values[lane] = value;
  pending->arguments[lane] = argument;
  pending->arrived |= lane_bit;
  block_fiber(State::InCollective, site);
  if (pending->arrived == mask) {
    complete(*pending, warp);
    pendings.erase(pendings.begin() + (pending - pendings.data()));
  }
  resolve_active_masks(warp);
  switch_away();
  return fibers_[self].result;
}

void Engine::complete(PendingCollective& p, int warp) {
  unsigned int ballot = 0;
  for (int l = 0; l < kWarpSize; ++l)
    if ((p.mask >> l) & 1u && p.values[l] != 0) ballot |= 1u << l;
  for (int l = 0; l < kWarpSize; ++l) {
    if (!((p.mask >> l) & 1u)) continue;
    const int segment = l & ~(p.width - 1);
    const int position = l - segment;
    int source = l;
    switch (p.kind) {
      case Collective::Shuffle: source = segment + (p.arguments[l] & (p.width - 1)); break;
      case Collective::ShuffleUp: source = position >= p.arguments[l] ? l - p.arguments[l] : l; break;
      case Collective::ShuffleDown: source = position + p.arguments[l] < p.width ? l + p.arguments[l] : l; break;
      case Collective::ShuffleXor: {
        const int other = l ^ p.arguments[l];
        source = (other & ~(p.width - 1)) == segment ? other : l;
        break;
      }
      default: break;
    }
    if (!((p.mask >> source) & 1u))
      fail("lane " + std::to_string(l) + " of the shuffle at " + p.site.text() + " reads lane " +
           std::to_string(source) + ", which is not in the mask");
    uint64_t result = 0;
    switch (p.kind) {
      case Collective::Ballot: result = ballot; break;
      case Collective::Any: result = ballot != 0; break;
      case Collective::All: result = ballot == p.mask; break;
      case Collective::MatchAny:
        for (int k = 0; k < kWarpSize; ++k)
          if ((p.mask >> k) & 1u && p.values[k] == p.values[l]) result |= 1u << k;
        break;
      case Collective::SyncWarp: break;
      default: result = p.values[source]; break;
    }
    Fiber& fiber = fibers_[warp * kWarpSize + l];
    fiber.result = result;
    make_runnable(warp * kWarpSize + l);
  }
}

bool Engine::warp_blocked(int warp) const {
  for (int l = 0; l < lanes_in(warp); ++l)
    if (fibers_[warp * kWarpSize + l].state == State::Runnable) return false;
  return true;
}

// Once no lane of the warp can run on, the lanes waiting at one __activemask() call (drawn at
// random among the calls waited at) get their common mask.
void Engine::resolve_active_masks(int warp) {
  if (!warp_blocked(warp)) return;
  std::vector<int> waiting;
  for (int l = 0; l < lanes_in(warp); ++l)
    if (fibers_[warp * kWarpSize + l].state == State::AtActiveMask) waiting.push_back(warp * kWarpSize + l);
  if (waiting.empty()) return;
  const Site site = fibers_[waiting[std::uniform_int_distribution<size_t>(0, waiting.size() - 1)(random_)]].site;
  unsigned int mask = 0;
  for (int t : waiting)
    if (fibers_[t].site == site) mask |= 1u << (t % kWarpSize);
  for (int t : waiting) {
    if (!(fibers_[t].site == site)) continue;
    fibers_[t].result = mask;
    make_runnable(t);
  }
}

unsigned int Engine::active_mask(Site site) {
  const int self = running_;
  block_fiber(State::AtActiveMask, site);
  resolve_active_masks(self / kWarpSize);
  switch_away();
  return static_cast<unsigned int>(fibers_[self].result);
}

void Engine::switch_point() {
  runnable_.push_back(running_);
  switch_away();
}

std::string Engine::describe_deadlock() const {
  int at_barrier = 0, in_collective = 0, at_active = 0;
  std::string where;
  for (int t = 0; t < threads_; ++t) {
    switch (fibers_[t].state) {
      case State::AtBarrier: ++at_barrier; break;
      case State::InCollective:
        ++in_collective;
        if (where.empty()) where = " (first at " + fibers_[t].site.text() + ")";
        break;
      case State::AtActiveMask: ++at_active; break;
      default: break;
    }
  }
  std::ostringstream text;
  const uint3 b = fibers_[0].ids.block;
  text << "clarena emulation: block (" << b.x << ", " << b.y << ", " << b.z << ") is stuck: " << at_barrier
       << " threads at __syncthreads" << (at_barrier ? " (" + barrier_.site.text() + ")" : "") << ", " << in_collective
       << " in warp collectives" << where << ", " << at_active << " at __activemask, " << done_ << " exited";
  return text.str();
}

}  // namespace

const ThreadIds& ids() { return engine().ids(); }
void run_grid(dim3 grid, dim3 block, KernelBody body) { engine().run_grid(grid, block, body); }
int sync_threads(Reduction reduction, int predicate, const char* file, int line) {
  return engine().sync_threads(reduction, predicate, {file, line});
}
uint64_t warp_collective(Collective kind, unsigned int mask, uint64_t value, int argument, int width,
                         const char* file, int line) {
  return engine().warp_collective(kind, mask, value, argument, width, {file, line});
}
unsigned int active_mask(const char* file, int line) { return engine().active_mask({file, line}); }
void switch_point() { engine().switch_point(); }
void set_schedule(uint64_t seed, int multiprocessors) {
  engine().set_seed(seed);
  engine().set_multiprocessors(multiprocessors);
}
int multiprocessors() { return engine().multiprocessors(); }
cudaError_t take_launch_error() { return engine().take_error(); }

}  // namespace clarena::emulation

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
  }
  return "unknown error";
}
cudaError_t cudaGetLastError() { return clarena::emulation::take_launch_error(); }
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int) {
  if (attribute != cudaDevAttrMultiProcessorCount) return cudaErrorInvalidValue;
  *value = clarena::emulation::multiprocessors();
  return cudaSuccess;
}
