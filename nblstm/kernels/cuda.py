# CUDA kernels (numba-cuda @cuda.jit), twins of cpu.py. Shape letters: T time steps, B batch, I input size,
# H hidden size. Arrays are C-contiguous device arrays, time-major as on CPU: x (T, B, I), y (T, B, H); gates
# (.., B, 4H) hold the blocks i, f, g, o side by side; weights as torch: w_ih (4H, I), w_hh (4H, H),
# b (4H,) = b_ih + b_hh; tape G (T, B, 4H), C, TC (T, B, H) and y. Every kernel name is a launcher: called with
# its cpu.py twin's arguments (device arrays), it picks the grid, checks it against CUDA's limits and launches
# `.kernel`, the @cuda.jit function (no eager signature: nothing touches the driver at import). Matrix products
# are tiled shared-memory kernels: numba has no cuBLAS.
import functools

import numpy as np
from numba import config, cuda
from numba.cuda.cudadrv import driver

if not config.ENABLE_CUDASIM:                   # the simulator's arrays are another class (row() indexes them)
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

from . import _math

# The gate math of _math.py, the same Python functions as on CPU, compiled here as CUDA device functions: the CPU
# calls them through their register_jitable overloads, which may ask for IR inlining (inline="always"), and
# numba-cuda 0.30 cannot inline numba-core overloads (the arguments arrive "omitted": tests/test_ptx.py).
_unit_gates = cuda.jit(device=True)(_math.unit_gates)
_unit_state = cuda.jit(device=True)(_math.unit_state)
_unit_backward = cuda.jit(device=True)(_math.unit_backward)
_cell_act = cuda.jit(device=True)(_math.cell_act)
_act_grad = cuda.jit(device=True)(_math.act_grad)

# gemm: blocks of TILE x TILE threads, each thread computing GEMM_RB x GEMM_RB elements of C, so a block computes a
# GEMM_TILE x GEMM_TILE tile of C, stepping through k TILE at a time. The simulator runs one Python thread per CUDA
# thread, so it gets TILE 4 and C tiles of 8 x 8 (tests stay fast, and their sizes 1..9 cross both edges); the PTX
# check and real GPUs compile TILE 16 and C tiles of 64 x 64.
TILE = 4 if config.ENABLE_CUDASIM else 16
GEMM_RB = 2 if config.ENABLE_CUDASIM else 4     # gemm: each thread computes GEMM_RB x GEMM_RB elements of C
GEMM_TILE = TILE * GEMM_RB                  # gemm: the edge of C's tile per block (8 on the simulator: tests cross it)
GEMM_TILE_PAD = GEMM_TILE + 1               # shared tiles get one extra column against bank conflicts; a global
#                                             constant: shared.array needs a compile-time shape (tests/test_ptx.py)
THREADS = 256                               # threads per block of the pointwise kernels

# Limits of every compute capability numba-cuda supports (CUDA C Programming Guide, "Compute Capabilities").
MAX_THREADS_PER_BLOCK = 1024
MAX_BLOCK = (1024, 1024, 64)
MAX_GRID = (2**31 - 1, 65535, 65535)
MAX_SHARED_BYTES = 48 * 1024                # static shared memory per block


def check_launch(name, grid, block, shared_bytes=0):
    """Raise ValueError naming kernel `name` when a launch of `grid` x `block` (tuples) exceeds CUDA's limits.

    The simulator runs launches that a GPU refuses (tests/test_cuda.py::test_launch_limits): every launcher asks here.
    """
    if len(grid) > 3 or len(block) > 3 or any(int(n) < 1 for n in (*grid, *block)):
        raise ValueError(f"{name}: launch needs 1-3 positive grid and block sizes, got grid {grid}, block {block}")
    for what, dims, limits in (("block", block, MAX_BLOCK), ("grid", grid, MAX_GRID)):
        for axis, (n, limit) in enumerate(zip(dims, limits)):
            if n > limit:
                raise ValueError(f"{name}: {what} size {n} along axis {'xyz'[axis]} exceeds CUDA's limit {limit} "
                                 f"(grid {grid}, block {block}); the arrays are too large for this kernel")
    threads = int(np.prod(block))
    if threads > MAX_THREADS_PER_BLOCK:
        raise ValueError(f"{name}: {threads} threads per block exceeds CUDA's limit {MAX_THREADS_PER_BLOCK} "
                         f"(block {block})")
    if shared_bytes > MAX_SHARED_BYTES:
        raise ValueError(f"{name}: {shared_bytes} bytes of shared memory per block exceed {MAX_SHARED_BYTES}")


def _check_dtypes(name, args):
    """All float array arguments share one dtype, float32 or float64 (integer arrays, e.g. lengths, are int64): the
    simulator would silently mix them, a GPU kernel would not."""
    arrays = [a for a in args if hasattr(a, "dtype") and hasattr(a, "shape")]
    if any(np.dtype(a.dtype).kind in "iu" and np.dtype(a.dtype) != np.int64 for a in arrays):
        raise TypeError(f"{name}: integer arrays must be int64, got {sorted(str(a.dtype) for a in arrays)}")
    dtypes = {np.dtype(a.dtype) for a in arrays if np.dtype(a.dtype).kind not in "iu"}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{name}: expected arrays of one dtype, float32 or float64, got {sorted(map(str, dtypes))}")


class Launcher:
    """A @cuda.jit kernel (``.kernel``) and its launch: ``launcher(*args)`` computes (grid, block) with
    ``config(*args)``, checks limits and dtypes, and launches on the default stream (asynchronous)."""

    def __init__(self, fn, config, shared_bytes=lambda *args: 0):
        functools.update_wrapper(self, fn)
        self.py_func = fn
        self.kernel = cuda.jit(fn)
        self.config = config
        self.shared_bytes = shared_bytes

    def launch_config(self, args):
        """(grid, block) of a launch with args."""
        return self.config(*args)

    def __call__(self, *args):
        grid, block = self.launch_config(args)
        check_launch(self.__name__, grid, block, self.shared_bytes(*args))
        _check_dtypes(self.__name__, args)
        self.kernel[grid, block](*args)


def _launch(config, shared_bytes=lambda *args: 0):
    return lambda fn: Launcher(fn, config, shared_bytes)


def _pointwise(n):
    """(grid, block) for one thread per element of n elements."""
    block = max(1, min(THREADS, n))
    return (max(1, (n + block - 1) // block),), (block,)


@cuda.jit(device=True)
def _forward_unit(G, c, tc, m, h, hw, c_prev, wp, lengths, t, act, b, j):
    """cell_forward's work for unit j of sequence b (also a step of lstm_steps)."""
    H = c.shape[1]
    one = G.dtype.type(1.0)
    zero = G.dtype.type(0.0)
    if t >= lengths[b]:                         # finished: the cell state is carried, m (hence y) is zero
        c[b, j] = c_prev[b, j]
        tc[b, j] = zero
        m[b, j] = zero
        return
    i, f, g = _unit_gates(G[b, j] + hw[b, j], G[b, H + j] + hw[b, H + j], G[b, 2 * H + j] + hw[b, 2 * H + j],
                          c_prev[b, j], wp[0, j], wp[1, j], one)
    o, cn, tcn, hn = _unit_state(i, f, g, G[b, 3 * H + j] + hw[b, 3 * H + j], c_prev[b, j], wp[2, j], act, one, zero)
    G[b, j] = i
    G[b, H + j] = f
    G[b, 2 * H + j] = g
    G[b, 3 * H + j] = o
    c[b, j] = cn
    tc[b, j] = tcn
    m[b, j] = hn
    h[b, j] = hn


@_launch(lambda G, c, tc, m, h, hw, c_prev, wp, lengths, t, act: _pointwise(c.shape[0] * c.shape[1]))
def cell_forward(G, c, tc, m, h, hw, c_prev, wp, lengths, t, act):
    """Pointwise step: G (B, 4H) pre-activations minus h@w_hh^T (= hw) in, activations out; writes c, act(c), m, h."""
    B, H = c.shape
    k = cuda.grid(1)                            # one thread per unit (b, j)
    if k < B * H:
        _forward_unit(G, c, tc, m, h, hw, c_prev, wp, lengths, t, act, k // H, k % H)


@cuda.jit(device=True)
def _backward_unit(dG, dc, dm, G, c_prev, tc, wp, lengths, t, act, b, j):
    """cell_backward's work for unit j of sequence b (also a step of lstm_backward_steps)."""
    H = dc.shape[1]
    one = G.dtype.type(1.0)
    zero = G.dtype.type(0.0)
    if t >= lengths[b]:                         # finished: no gate gradient, dL/dc passes through
        dG[b, j] = zero
        dG[b, H + j] = zero
        dG[b, 2 * H + j] = zero
        dG[b, 3 * H + j] = zero
        return
    dai, daf, dag, dao, dcp = _unit_backward(
        dm[b, j], dc[b, j], G[b, j], G[b, H + j], G[b, 2 * H + j], G[b, 3 * H + j],
        c_prev[b, j], tc[b, j], wp[0, j], wp[1, j], wp[2, j], act, one, zero)
    dG[b, j] = dai
    dG[b, H + j] = daf
    dG[b, 2 * H + j] = dag
    dG[b, 3 * H + j] = dao
    dc[b, j] = dcp


@_launch(lambda dG, dc, dm, G, c_prev, tc, wp, lengths, t, act: _pointwise(dc.shape[0] * dc.shape[1]))
def cell_backward(dG, dc, dm, G, c_prev, tc, wp, lengths, t, act):
    """Pointwise step backward: dm (B, H) dL/dm_t, dc (B, H) dL/dc_t from t+1 in, dL/dc_{t-1} out; writes dG (B, 4H)."""
    B, H = dc.shape
    k = cuda.grid(1)
    if k < B * H:
        _backward_unit(dG, dc, dm, G, c_prev, tc, wp, lengths, t, act, k // H, k % H)


@_launch(lambda out, a, lengths, t, accumulate: _pointwise(out.shape[0] * out.shape[1]))
def copy_running_rows(out, a, lengths, t, accumulate):
    """out[r] = a[r] (+= when accumulate), both (B, N), for the sequences r still running at step t (t < lengths[r])."""
    B, N = out.shape
    k = cuda.grid(1)
    if k < B * N and t < lengths[k // N]:
        if accumulate:
            out[k // N, k % N] += a[k // N, k % N]
        else:
            out[k // N, k % N] = a[k // N, k % N]


@_launch(lambda dwp, dG, C, c0: _pointwise(C.shape[2]))
def peephole_grads(dwp, dG, C, c0):
    """dwp (3, H) += the peephole gradients sum_t,b of dai * c_{t-1}, daf * c_{t-1}, dao * c_t (dG the tape's dL/da)."""
    T, B, H = C.shape
    j = cuda.grid(1)                            # one thread per unit, (t, b) summed in order
    if j < H:
        zero = dwp.dtype.type(0.0)
        si = zero
        sf = zero
        so = zero
        for t in range(T):
            for b in range(B):
                cp = c0[b, j] if t == 0 else C[t - 1, b, j]
                si += dG[t, b, j] * cp
                sf += dG[t, b, H + j] * cp
                so += dG[t, b, 3 * H + j] * C[t, b, j]
        dwp[0, j] += si
        dwp[1, j] += sf
        dwp[2, j] += so


# Persistent kernels (Diamos et al. 2016, "Persistent RNNs"): one launch runs every step of the sequence, the steps'
# phases separated by a grid-wide barrier (cooperative groups: cuda.cg.this_grid().sync(); cuda.syncthreads() when
# the grid is one block, which is cheaper), instead of 2-4 launches
# per step (a GEMM, the pointwise step, the projection), each of which costs tens of microseconds of Python in
# numba-cuda. The grid is as large as the work, at most the blocks the GPU can keep resident at once (a cooperative
# launch needs them all running); the simulator runs cooperative grids of one block only, so there it is one block.
# The weights stay where the hardware caches them (L1/L2): they are read, not held in shared memory or registers.
# A thread sums a product for ROWS batch rows at once, so each weight it reads serves ROWS rows; S threads share
# such a unit, each summing every S-th term, their shares added in a fixed order (_product): without that, a step of
# the backward at (T, B, I, H) = (100, 64, 256, 256) had 4096 units of K = 1024 terms, one thread each, and took
# 93 us (ncu on an H100), at (100, 1, 32, 32) 32 units on one warp, 7.7 us. With SPLIT_MAX = 1 every sum runs in the
# order of the tiled gemm (k ascending) and these give the same numbers as the launch-per-step loop
# (tests/test_cuda.py::test_persistent_kernels_equal_the_launch_per_step_loop). The forward reads w_hh and w_hr
# transposed (copies made per call), so that consecutive threads read consecutive addresses.
# Used when B * H <= PERSISTENT_MAX_UNITS (a module attribute, read at each call; tests set it to 0 to run the loop).
# On an H100 they beat the loop at every shape benchmarks/bench_cuda.py times up to B * H = 2^17 (1.7x at
# (50, 128, 1024, 1024), 164x at (1000, 1, 32, 32)); at 2^18, (100, 256, 1024, 1024), the loop took 253 ms and
# these 290 (benchmarks/results/2026-11-24-cuda-h100.md, "Split products"; on another machine 273 against the
# loop's 293: undecided, so the loop, which was not changed, runs from there on).
PERSISTENT_MAX_UNITS = 1 << 17
SPLIT_MAX = 32                              # at most this many threads share one unit of a product (_lanes; read at
#                                             each call; tests set it to 1 for sums in the gemm's order)
PART_THREADS = 256                          # the persistent kernels' blocks have at most this many threads (_steps_grid)
ROWS = 4                                    # batch rows per thread in the persistent kernels' products (_dot_rows
#                                             keeps exactly 4 sums)


def _row_groups(B):
    """Groups of ROWS batch rows: the units of a product's grid-stride loop per output column."""
    return (B + ROWS - 1) // ROWS


_row_groups_dev = cuda.jit(device=True)(_row_groups)      # the same, for the kernels


@cuda.jit(device=True)
def _acc8(s, a, r, p, S, w0, w1, w2, w3, w4, w5, w6, w7):
    """s + a[r, p] * w0 + a[r, p + S] * w1 + ... + a[r, p + 7 S] * w7, added left to right."""
    s += a[r, p] * w0
    s += a[r, p + S] * w1
    s += a[r, p + 2 * S] * w2
    s += a[r, p + 3 * S] * w3
    s += a[r, p + 4 * S] * w4
    s += a[r, p + 5 * S] * w5
    s += a[r, p + 6 * S] * w6
    s += a[r, p + 7 * S] * w7
    return s


@cuda.jit(device=True)
def _dot_rows(a, b0, w, k, lane, S):
    """The sums over p = lane, lane + S, lane + 2 S, ... (ascending) of a[b0 + i, p] * w[p, k] for i = 0..3: with
    S = 1 elements of a @ w, summed as the tiled gemm sums them; else lane's share of them (_product adds the S
    shares). Rows past the end of a repeat its last row (callers store only rows that exist). Eight steps of p at a
    time: their loads do not wait on the sums, so eight (w) and 32 (a) loads are in flight together instead of one
    chain of dependent loads (a step's time was the memory latency times the length of p)."""
    last = a.shape[0] - 1
    r0, r1, r2, r3 = min(b0, last), min(b0 + 1, last), min(b0 + 2, last), min(b0 + 3, last)
    s0 = s1 = s2 = s3 = a.dtype.type(0.0)
    K = a.shape[1]
    p = lane
    if r0 == last:                          # one row (B = 1, or the last group's only one): its sums alone, in
        while p + 7 * S < K:                # the same order (a step at B = 1 spent most of its instructions on
            s0 = _acc8(s0, a, r0, p, S, w[p, k], w[p + S, k], w[p + 2 * S, k], w[p + 3 * S, k],    # copies)
                       w[p + 4 * S, k], w[p + 5 * S, k], w[p + 6 * S, k], w[p + 7 * S, k])
            p += 8 * S
        while p < K:
            s0 += a[r0, p] * w[p, k]
            p += S
        return s0, s0, s0, s0
    while p + 7 * S < K:
        w0, w1, w2, w3 = w[p, k], w[p + S, k], w[p + 2 * S, k], w[p + 3 * S, k]
        w4, w5, w6, w7 = w[p + 4 * S, k], w[p + 5 * S, k], w[p + 6 * S, k], w[p + 7 * S, k]
        s0 = _acc8(s0, a, r0, p, S, w0, w1, w2, w3, w4, w5, w6, w7)
        s1 = _acc8(s1, a, r1, p, S, w0, w1, w2, w3, w4, w5, w6, w7)
        s2 = _acc8(s2, a, r2, p, S, w0, w1, w2, w3, w4, w5, w6, w7)
        s3 = _acc8(s3, a, r3, p, S, w0, w1, w2, w3, w4, w5, w6, w7)
        p += 8 * S
    while p < K:
        wv = w[p, k]
        s0 += a[r0, p] * wv
        s1 += a[r1, p] * wv
        s2 += a[r2, p] * wv
        s3 += a[r3, p] * wv
        p += S
    return s0, s1, s2, s3


def _lanes(K, threads, units, block, split):
    """S, the threads that share one unit of a product (ROWS rows of one column) by summing every S-th term of its
    K: the largest power of two <= split that leaves each thread at least 8 terms, gives every unit S threads
    within the grid's `threads`, and divides the block (the S shares of a unit are added in one block)."""
    s = 1
    while 2 * s <= split and 16 * s <= K and 2 * s * units <= threads and block % (2 * s) == 0:
        s *= 2
    return s


_lanes_dev = cuda.jit(device=True)(_lanes)      # the same, for the kernels


@cuda.jit(device=True)
def _put_rows(out, b0, k, s0, s1, s2, s3, lengths, t, running_only):
    """out[b0 + i, k] = s_i for i = 0..3, the rows that exist (and, when running_only, whose sequences still run at
    step t)."""
    for i in range(ROWS):
        b = b0 + i
        if b < out.shape[0] and (not running_only or t < lengths[b]):
            out[b, k] = s0 if i == 0 else s1 if i == 1 else s2 if i == 2 else s3


@cuda.jit(device=True)
def _plan(B, K, N, split):
    """This thread's share of a product (B, K) @ (K, N) in the persistent kernels, the same at every step (computed
    once, before the time loop: 64-bit integer divisions cost tens of instructions each on a GPU, and at B = 1 a
    step's divisions were most of its work): (S, lane, units per block and round, rounds, the first unit's row group
    and column), int32 (two plans stay live through the time loop; the kernels are short of registers: ncu read 186
    and 255 per thread at (100, 64, 256, 256), one 256-thread block per SM)."""
    units = _row_groups_dev(B) * N
    block = cuda.blockDim.x
    S = _lanes_dev(K, block * cuda.gridDim.x, units, block, split)
    per_block = block // S                  # units per block and round; thread tb: unit tb % per_block, lane tb // ..
    lane = cuda.threadIdx.x // per_block
    stride = cuda.gridDim.x * per_block
    uc = min(cuda.blockIdx.x * per_block + cuda.threadIdx.x - lane * per_block, units - 1)
    g0 = uc // N
    return (np.int32(S), np.int32(lane), np.int32(per_block), np.int32((units + stride - 1) // stride),
            np.int32(g0), np.int32(uc - g0 * N))


@cuda.jit(device=True)
def _product(out, out_running, out2, a, w, lengths, t, plan, part):
    """out = a @ w (a (B, K), w (K, N), out (B, N)): every row, or (out_running) only the rows of sequences running
    at step t; the same values also into out2's running rows when out2 has rows (the forward projection's h_n).
    The grid's threads take the units (ROWS rows, one column) of the product, S threads per unit (_lanes, _plan);
    each of them sums every S-th term (_dot_rows) into the shared `part` (ROWS, block), then the unit's first thread
    adds the S shares in lane order and stores. Every thread runs the same number of rounds (two syncthreads each)."""
    S, lane, per_block, rounds, g, k = plan
    N = out.shape[1]
    units = _row_groups_dev(a.shape[0]) * N
    tb = cuda.threadIdx.x
    ub = tb - lane * per_block
    stride = cuda.gridDim.x * per_block
    u0 = cuda.blockIdx.x * per_block + ub
    for r in range(rounds):
        u = u0 + r * stride
        if r > 0:                           # past the last unit: compute a real one, store nothing
            uc = min(u, units - 1)
            g = uc // N
            k = uc - g * N
        s0, s1, s2, s3 = _dot_rows(a, g * ROWS, w, k, lane, S)
        if S > 1:
            part[0, tb] = s0
            part[1, tb] = s1
            part[2, tb] = s2
            part[3, tb] = s3
            cuda.syncthreads()
            if lane == 0:
                for q in range(1, S):
                    s0 += part[0, q * per_block + ub]
                    s1 += part[1, q * per_block + ub]
                    s2 += part[2, q * per_block + ub]
                    s3 += part[3, q * per_block + ub]
        if lane == 0 and u < units:
            _put_rows(out, g * ROWS, k, s0, s1, s2, s3, lengths, t, out_running)
            if out2.shape[0] > 0:
                _put_rows(out2, g * ROWS, k, s0, s1, s2, s3, lengths, t, True)
        if S > 1:
            cuda.syncthreads()


@cuda.jit(device=True)
def _slot(t, n, T):
    """t % n for a tape of n = T, 2 or 1 steps (the no-tape forward keeps 2 or 1), without a division for those."""
    if n >= T:
        return t
    if n == 2:
        return t & 1
    if n == 1:
        return 0
    return t % n


@cuda.jit(device=True)
def _unit(u, tid, b0, j0, H):
    """(b, j) of unit u = b * H + j; (b0, j0) are those of u = tid, the thread's first unit (computed once)."""
    if u == tid:
        return b0, j0
    b = u // H
    return b, u - b * H


@cuda.jit(device=True)
def _grid_work():
    """(this thread's index in the grid, the grid's size in threads, whether the grid is one block) for the
    grid-stride loops of the persistent kernels' elementwise phases."""
    return cuda.grid(1), cuda.gridsize(1), cuda.gridDim.x == 1


@cuda.jit(device=True)
def _barrier(grid, one_block):
    """Every thread of the grid waits here: cuda.syncthreads() when the grid is one block (cheaper), else the grid
    barrier. one_block is the same in every thread, so all take the same branch."""
    if one_block:
        cuda.syncthreads()
    else:
        grid.sync()


def _grid(n):
    """(grid, block) for n units of work (grid-stride loops): blocks of at most THREADS threads, a multiple of the
    warp size (32). Not more: a block of 1024 threads fails to launch on a GPU when the kernel needs more than 64
    registers per thread (65536 per block), which only ptxas knows; 256 threads launch with any register count (at
    most 255 per thread). CooperativeLauncher caps the grid at what stays resident."""
    block = min(THREADS, max(32, (n + 31) // 32 * 32))
    return ((n + block - 1) // block,), (block,)


def _persistent(B, H):
    """Whether lstm_forward / lstm_backward run the persistent kernels: B * H <= PERSISTENT_MAX_UNITS, on a GPU that
    can launch a cooperative grid (compute capability 6.0 or later; the simulator can)."""
    if B * H > PERSISTENT_MAX_UNITS:
        return False
    return config.ENABLE_CUDASIM or cuda.get_current_device().compute_capability >= (6, 0)


class CooperativeLauncher(Launcher):
    """A Launcher for kernels that synchronize the whole grid: the grid is capped at the blocks the GPU can keep
    resident at once for this kernel (numba-cuda's max_cooperative_grid_blocks, cached per argument types and block
    size; numba-cuda launches such kernels cooperatively), and at one block on the simulator."""

    def __init__(self, fn, config):
        super().__init__(fn, config)
        self._max_blocks = {}

    def launch_config(self, args):
        grid, block = self.config(*args)
        if config.ENABLE_CUDASIM:
            return (1,), block
        key = (tuple(self.kernel.typeof_pyval(a) for a in args), block[0])
        if key not in self._max_blocks:
            self._max_blocks[key] = self.kernel.compile(key[0]).max_cooperative_grid_blocks(block[0])
        return (max(1, min(grid[0], self._max_blocks[key])),), block


def _steps_grid(split, pointwise, *products):
    """(grid, block) of a persistent kernel whose phases are `pointwise` units of elementwise work and the
    `products`, (units, K) each: threads for the most work, a product's units counted S times (_lanes, as many as K
    and `split` allow). One block when no phase has more units than a block has threads (syncthreads is cheaper than
    the grid barrier), else _grid's blocks."""
    if THREADS > PART_THREADS:
        raise ValueError(f"THREADS {THREADS} exceeds the persistent kernels' shared part array ({PART_THREADS})")
    most = max(pointwise, *(units for units, _ in products))
    want = max(pointwise, *(units * _lanes(K, units * split, units, 32, split) for units, K in products))
    if most <= THREADS:
        return (1,), (min(THREADS, max(32, (want + 31) // 32 * 32)),)
    return _grid(want)


def _steps_config(y, h_n, G, C, TC, M, hw, c0, w_hhT, w_hrT, wp, lengths, act, split):
    T, B, H4 = G.shape
    P = h_n.shape[1]
    return _steps_grid(split, B * max(H4 // 4, P), (_row_groups(B) * H4, P), (_row_groups(B) * P, H4 // 4))


@functools.partial(CooperativeLauncher, config=_steps_config)
def lstm_steps(y, h_n, G, C, TC, M, hw, c0, w_hhT, w_hrT, wp, lengths, act, split):
    """lstm_forward's time loop in one launch: G (T, B, 4H) holding the input products, h_n (B, P) = h_0 in; writes
    y, h_n, G, C, TC, M as the loop of launches; hw (B, 4H) scratch; w_hhT (P, 4H), w_hrT (H, P) the transposes;
    split: at most this many threads share a unit of a product (_lanes; 1: sums exactly as the tiled gemm)."""
    T, B, H4 = G.shape
    H = H4 // 4
    P = h_n.shape[1]
    nC, nT, nM = C.shape[0], TC.shape[0], M.shape[0]
    proj = w_hrT.shape[1] > 0
    grid = cuda.cg.this_grid()                  # (in the kernel itself: numba-cuda then launches it cooperatively)
    part = cuda.shared.array((ROWS, PART_THREADS), dtype=G.dtype)
    tid, n, one_block = _grid_work()
    b0, j0 = np.int32(tid // H), np.int32(tid % H)     # the thread's first unit of the pointwise step
    plan_hh = _plan(B, P, H4, split)
    plan_hr = _plan(B, H, P, split)
    for t in range(T):
        _product(hw, False, hw[:0], h_n, w_hhT, lengths, t, plan_hh, part)     # hw = h_{t-1} @ w_hh^T
        _barrier(grid, one_block)
        c_prev = c0 if t == 0 else C[_slot(t - 1, nC, T)]
        m = M[_slot(t, nM, T)] if proj else y[t]    # without a projection m is h_t, y[t] itself
        Gt, Ct, TCt = G[t], C[_slot(t, nC, T)], TC[_slot(t, nT, T)]
        for u in range(tid, B * H, n):          # the pointwise step; without a projection m and h_n are h_t
            b, j = _unit(u, tid, b0, j0, H)
            _forward_unit(Gt, Ct, TCt, m, m if proj else h_n, hw, c_prev, wp, lengths, t, act, b, j)
        _barrier(grid, one_block)
        if proj:                                # h_t = m w_hr^T into y, and the running state of running rows
            _product(y[t], False, h_n, m, w_hrT, lengths, t, plan_hr, part)
            _barrier(grid, one_block)


def _backward_steps_config(dh, dc, dG, dH, dm, dy, G, C, TC, c0, w_hh, wp, w_hr, lengths, act, split):
    T, B, H4 = dG.shape
    P = dh.shape[1]
    return _steps_grid(split, B * max(H4 // 4, P), (_row_groups(B) * P, H4), (_row_groups(B) * H4 // 4, P))


@functools.partial(CooperativeLauncher, config=_backward_steps_config)
def lstm_backward_steps(dh, dc, dG, dH, dm, dy, G, C, TC, c0, w_hh, wp, w_hr, lengths, act, split):
    """lstm_backward's time loop in one launch: dh (B, P), dc (B, H) dL/dh_T, dL/dc_T in, dL/dh_0, dL/dc_0 out; writes
    dG (T, B, 4H), and dH (T, B, P) with dm (B, H) scratch with a projection, as the loop of launches; split as
    lstm_steps'."""
    T, B, H4 = dG.shape
    H = H4 // 4
    P = dh.shape[1]
    proj = w_hr.shape[0] > 0
    grid = cuda.cg.this_grid()
    part = cuda.shared.array((ROWS, PART_THREADS), dtype=G.dtype)
    tid, n, one_block = _grid_work()
    b0, j0, bp, qp = np.int32(tid // H), np.int32(tid % H), np.int32(tid // P), np.int32(tid % P)   # first units
    plan_hr = _plan(B, P, H, split)
    plan_hh = _plan(B, H4, P, split)
    for t in range(T - 1, -1, -1):
        for u in range(tid, B * P, n):          # dL/dh_t += dy_t for the running sequences
            b, q = _unit(u, tid, bp, qp, P)
            if t < lengths[b]:
                dh[b, q] += dy[t, b, q]
            if proj:
                dH[t, b, q] = dh[b, q]
        _barrier(grid, one_block)
        if proj:                                # dL/dm_t = dL/dh_t @ w_hr
            _product(dm, False, dm[:0], dh, w_hr, lengths, t, plan_hr, part)
            _barrier(grid, one_block)
        c_prev = c0 if t == 0 else C[t - 1]
        dGt, Gt, TCt = dG[t], G[t], TC[t]
        for u in range(tid, B * H, n):
            b, j = _unit(u, tid, b0, j0, H)
            _backward_unit(dGt, dc, dm if proj else dh, Gt, c_prev, TCt, wp, lengths, t, act, b, j)
        _barrier(grid, one_block)
        _product(dh, True, dh[:0], dGt, w_hh, lengths, t, plan_hh, part)   # dL/dh_{t-1} = dG_t @ w_hh, running rows
        _barrier(grid, one_block)


@_launch(lambda out, a: _pointwise(a.shape[0] * a.shape[1]))
def transpose(out, a):
    """out (N, M) = a (M, N) transposed."""
    M, N = a.shape
    k = cuda.grid(1)
    if k < M * N:
        out[k % N, k // N] = a[k // N, k % N]


def lstm_forward(y, h_n, c_n, G, C, TC, M, hw, x, h0, c0, w_ih, w_hh, b, wp, w_hr, lengths, act):
    """One layer over a sequence: writes y (T, B, P), h_n (B, P), c_n (B, H) and the tape G, C, TC, M; hw (B, 4H) is scratch."""
    # Host loop of launches on one stream: x, weights, states and tape stay on the device; nothing is copied to the
    # host or synchronized between steps.
    T, B, I = x.shape
    H = c0.shape[1]
    nC, nT, nM = C.shape[0], TC.shape[0], M.shape[0]    # shorter than T for inference: step t uses t % length
    proj = w_hr.shape[0] > 0
    G2 = G.reshape(T * B, 4 * H)
    gemm(G2, x.reshape(T * B, I), w_ih, 0, 1, 0)    # the input product of all steps: one GEMM
    add_bias(G2, b)
    copy_into(h_n, h0)                          # h_n carries the running state (device-to-device copy)
    if _persistent(B, H):                       # the whole loop in one launch, reading the weights transposed
        w_hhT, w_hrT = empty(w_hh.shape[::-1], w_hh.dtype), empty(w_hr.shape[::-1], w_hr.dtype)
        transpose(w_hhT, w_hh)
        if proj:
            transpose(w_hrT, w_hr)
        lstm_steps(y, h_n, G, C, TC, M, hw, c0, w_hhT, w_hrT, wp, lengths, act, SPLIT_MAX)
    else:
        for t in range(T):
            c_prev = c0 if t == 0 else C[(t - 1) % nC]
            gemm(hw, h_n, w_hh, 0, 1, 0)            # recurrent product h_{t-1} @ w_hh^T
            if proj:                                # m to the tape, then h_t = m w_hr^T, the running state of
                m = M[t % nM]                       # running rows (the pointwise step's h, unused, goes to m too)
                cell_forward(G[t], C[t % nC], TC[t % nT], m, m, hw, c_prev, wp, lengths, t, act)
                gemm(y[t], m, w_hr, 0, 1, 0)
                copy_running_rows(h_n, y[t], lengths, t, 0)
            else:                                   # m is h_t: into y and the running state
                cell_forward(G[t], C[t % nC], TC[t % nT], y[t], h_n, hw, c_prev, wp, lengths, t, act)
    copy_into(c_n, row(C, (T - 1) % nC))        # finished rows carried their state to the last step


def lstm_backward(dx, dh0, dc0, dw_ih, dw_hh, db, dwp, dw_hr, dG, dH, dm, dhw, dy, dh_n, dc_n, x, h0, c0, w_ih,
                  w_hh, wp, w_hr, G, C, TC, M, y, lengths, act):
    """BPTT through one layer: writes dx, dh0, dc0; adds into dw_ih, dw_hh, db, dwp (3, H) unless it has 0 rows, dw_hr;
    scratch: dG (T, B, 4H), dH (T, B, P) and dm (B, H) with a projection, dhw (B, P)."""
    T, B, I = x.shape
    H = c0.shape[1]
    P = h0.shape[1]
    proj = w_hr.shape[0] > 0
    copy_into(dh0, dh_n)                        # dh0, dc0 carry dL/dh_t, dL/dc_t back through time
    copy_into(dc0, dc_n)
    if _persistent(B, H):                       # the whole loop in one launch
        lstm_backward_steps(dh0, dc0, dG, dH, dm, dy, G, C, TC, c0, w_hh, wp, w_hr, lengths, act, SPLIT_MAX)
    else:
        for t in range(T - 1, -1, -1):
            copy_running_rows(dh0, dy[t], lengths, t, 1)
            c_prev = c0 if t == 0 else C[t - 1]
            if proj:                                # dL/dm_t = dL/dh_t @ w_hr
                copy_into(dH[t], dh0)
                gemm(dm, dh0, w_hr, 0, 0, 0)
                cell_backward(dG[t], dc0, dm, G[t], c_prev, TC[t], wp, lengths, t, act)
            else:
                cell_backward(dG[t], dc0, dh0, G[t], c_prev, TC[t], wp, lengths, t, act)
            gemm(dhw, dG[t], w_hh, 0, 0, 0)         # dL/dh_{t-1} = dG_t @ w_hh for the running sequences;
            copy_running_rows(dh0, dhw, lengths, t, 0)  # a frozen state passes it through
    # Weight gradients batched over all steps after the loop, as on CPU.
    dG2 = dG.reshape(T * B, 4 * H)
    gemm(dx.reshape(T * B, I), dG2, w_ih, 0, 0, 0)
    gemm(dw_ih, dG2, x.reshape(T * B, I), 1, 0, 1)
    gemm(dw_hh, row(dG, 0), h0, 1, 0, 1)
    if T > 1:
        gemm(dw_hh, row(dG2, B, T * B), row(y, 0, T - 1).reshape((T - 1) * B, P), 1, 0, 1)
    add_column_sums(db, dG2)
    if dwp.shape[0] > 0:
        peephole_grads(dwp, dG, C, c0)
    if proj:                                    # M is zero past each sequence's end
        gemm(dw_hr, dH.reshape(T * B, P), M.reshape(T * B, H), 1, 0, 1)


@_launch(lambda out, a, out_col, a_col, n, lengths, reverse, accumulate: _pointwise(a.shape[0] * a.shape[1] * n))
def copy_steps(out, a, out_col, a_col, n, lengths, reverse, accumulate):
    """out[t, b, out_col:out_col + n] (+)= a[t', b, a_col:a_col + n], t' = lengths[b]-1-t for t < lengths[b] when
    reverse, else t; out, a (T, B, .): a reverse-direction layer's time reversal, each sequence from its own end."""
    T = a.shape[0]
    B = a.shape[1]
    k = cuda.grid(1)                            # one thread per (t, b, j), j fastest: coalesced rows
    if k < T * B * n:
        j = k % n
        r = k // n
        b = r % B
        t = r // B
        s = lengths[b] - 1 - t if reverse and t < lengths[b] else t
        if accumulate:
            out[t, b, out_col + j] += a[s, b, a_col + j]
        else:
            out[t, b, out_col + j] = a[s, b, a_col + j]


@_launch(lambda y, h, hw, b, lengths, t, act: _pointwise(y.shape[0] * y.shape[1]))
def rnn_cell_forward(y, h, hw, b, lengths, t, act):
    """Pointwise RNN step: y (B, H) input product in, act(y + hw + b) out (zero past lengths); h (B, H) running state."""
    B, H = y.shape
    k = cuda.grid(1)
    if k < B * H:
        r = k // H
        j = k - r * H
        one = y.dtype.type(1.0)
        zero = y.dtype.type(0.0)
        if t < lengths[r]:
            v = _cell_act(y[r, j] + hw[r, j] + b[j], act, one, zero)
            y[r, j] = v
            h[r, j] = v
        else:
            y[r, j] = zero


@_launch(lambda da, dh, dy, y, lengths, t, act: _pointwise(da.shape[0] * da.shape[1]))
def rnn_cell_backward(da, dh, dy, y, lengths, t, act):
    """Pointwise RNN step backward: da (B, H) = (dy + dh) act'(y) for running sequences, zero past lengths."""
    B, H = da.shape
    k = cuda.grid(1)
    if k < B * H:
        r = k // H
        j = k - r * H
        one = y.dtype.type(1.0)
        zero = y.dtype.type(0.0)
        da[r, j] = (dy[r, j] + dh[r, j]) * _act_grad(y[r, j], act, one, zero) if t < lengths[r] else zero


def rnn_forward(y, h_n, hw, x, h0, w_ih, w_hh, b, lengths, act):
    """Elman RNN over a sequence: writes y (T, B, H) (zero past lengths) and h_n (B, H); hw (B, H) is scratch."""
    T, B, I = x.shape
    H = h0.shape[1]
    gemm(y.reshape(T * B, H), x.reshape(T * B, I), w_ih, 0, 1, 0)     # the input product of all steps: one GEMM
    copy_into(h_n, h0)                          # h_n carries the running state
    for t in range(T):
        gemm(hw, h_n, w_hh, 0, 1, 0)            # recurrent product h_{t-1} @ w_hh^T
        rnn_cell_forward(y[t], h_n, hw, b, lengths, t, act)


def rnn_backward(dx, dh0, dw_ih, dw_hh, db, dA, dhw, dy, dh_n, x, h0, w_ih, w_hh, y, lengths, act):
    """BPTT through an Elman RNN: writes dx, dh0; adds into dw_ih, dw_hh, db; dA (T, B, H), dhw (B, H) are scratch."""
    T, B, I = x.shape
    H = h0.shape[1]
    copy_into(dh0, dh_n)                        # dh0 carries dL/dh_t back through time
    for t in range(T - 1, -1, -1):
        rnn_cell_backward(dA[t], dh0, dy[t], y[t], lengths, t, act)
        gemm(dhw, dA[t], w_hh, 0, 0, 0)         # dL/dh_{t-1} = dA_t @ w_hh for the running sequences;
        copy_running_rows(dh0, dhw, lengths, t, 0)  # a frozen state passes dL/dh straight through
    dA2 = dA.reshape(T * B, H)
    gemm(dx.reshape(T * B, I), dA2, w_ih, 0, 0, 0)
    gemm(dw_ih, dA2, x.reshape(T * B, I), 1, 0, 1)
    gemm(dw_hh, row(dA, 0), h0, 1, 0, 1)
    if T > 1:                                   # y[t-1] is h_{t-1} wherever dA[t] is not zero
        gemm(dw_hh, row(dA2, B, T * B), row(y, 0, T - 1).reshape((T - 1) * B, H), 1, 0, 1)
    add_column_sums(db, dA2)


def _gemm_config(C, A, B, trans_a, trans_b, accumulate):
    M, N = C.shape                              # rows along grid x (limit 2^31 - 1): M = T*B can be large
    return ((M + GEMM_TILE - 1) // GEMM_TILE, (N + GEMM_TILE - 1) // GEMM_TILE), (TILE, TILE)


@_launch(_gemm_config, lambda C, *args: 2 * TILE * GEMM_TILE_PAD * C.dtype.itemsize)
def gemm(C, A, B, trans_a, trans_b, accumulate):
    """C (M, N) = op(A) @ op(B), plus C when accumulate; op(X) = X.T when trans_x, else X (tiled, shared memory)."""
    # A block of TILE x TILE threads computes a GEMM_TILE x GEMM_TILE tile of C: thread (tx, ty) the RB x RB elements
    # of rows ty + TILE * i and columns tx + TILE * j, so each pair of shared-memory reads feeds RB products (one with
    # one element per thread). Every element is still one sum over k ascending.
    M, N = C.shape
    K = A.shape[0] if trans_a else A.shape[1]
    # sa[k, i] = op(A)[r0 + i, k0 + k], sb[k, j] = op(B)[k0 + k, c0 + j]
    sa = cuda.shared.array((TILE, GEMM_TILE_PAD), dtype=C.dtype)
    sb = cuda.shared.array((TILE, GEMM_TILE_PAD), dtype=C.dtype)
    acc = cuda.local.array((GEMM_RB, GEMM_RB), dtype=C.dtype)
    av = cuda.local.array(GEMM_RB, dtype=C.dtype)
    bv = cuda.local.array(GEMM_RB, dtype=C.dtype)
    zero = C.dtype.type(0.0)
    tx = cuda.threadIdx.x                       # fastest-varying: consecutive threads read consecutive addresses
    ty = cuda.threadIdx.y
    r0 = cuda.blockIdx.x * GEMM_TILE
    c0 = cuda.blockIdx.y * GEMM_TILE
    for i in range(GEMM_RB):
        for j in range(GEMM_RB):
            acc[i, j] = zero
    for k0 in range(0, K, TILE):
        for i in range(GEMM_RB):
            if trans_a:                         # A (K, M): read along M
                k, r = k0 + ty, r0 + tx + TILE * i
                sa[ty, tx + TILE * i] = A[k, r] if k < K and r < M else zero
            else:                               # A (M, K): read along K
                r, k = r0 + ty + TILE * i, k0 + tx
                sa[tx, ty + TILE * i] = A[r, k] if r < M and k < K else zero
            if trans_b:                         # B (N, K): read along K
                n, k = c0 + ty + TILE * i, k0 + tx
                sb[tx, ty + TILE * i] = B[n, k] if n < N and k < K else zero
            else:                               # B (K, N): read along N
                k, n = k0 + ty, c0 + tx + TILE * i
                sb[ty, tx + TILE * i] = B[k, n] if k < K and n < N else zero
        cuda.syncthreads()
        for kk in range(TILE):
            for i in range(GEMM_RB):
                av[i] = sa[kk, ty + TILE * i]
                bv[i] = sb[kk, tx + TILE * i]
            for i in range(GEMM_RB):
                for j in range(GEMM_RB):
                    acc[i, j] += av[i] * bv[j]
        cuda.syncthreads()
    for i in range(GEMM_RB):
        r = r0 + ty + TILE * i
        for j in range(GEMM_RB):
            n = c0 + tx + TILE * j
            if r < M and n < N:
                if accumulate:
                    C[r, n] += acc[i, j]
                else:
                    C[r, n] = acc[i, j]


@_launch(lambda G, b: _pointwise(G.shape[0] * G.shape[1]))
def add_bias(G, b):
    """G (R, N) += b (N,) on every row."""
    R, N = G.shape
    k = cuda.grid(1)
    if k < R * N:
        G[k // N, k % N] += b[k % N]


@_launch(lambda out, a: _pointwise(out.shape[0] * out.shape[1]))
def add(out, a):
    """out (R, N) += a (R, N)."""
    R, N = out.shape
    k = cuda.grid(1)
    if k < R * N:
        out[k // N, k % N] += a[k // N, k % N]


@_launch(lambda db, dG: _pointwise(dG.shape[1]))
def add_column_sums(db, dG):
    """db (N,) += the sum over rows of dG (R, N): the bias gradient, one thread per column, rows summed in order."""
    R, N = dG.shape
    n = cuda.grid(1)
    if n < N:
        acc = db.dtype.type(0.0)
        for r in range(R):                      # consecutive threads read consecutive columns: coalesced
            acc += dG[r, n]
        db[n] += acc


# nblstm.backends calls these for the stacked and bidirectional LSTM (nblstm/_lstm.py composes one-layer calls).
@_launch(lambda out, a, m: _pointwise(out.shape[0] * out.shape[1]))
def mul(out, a, m):
    """out (R, N) = a (R, N) * m (R, N), elementwise (a dropout mask)."""
    R, N = out.shape
    k = cuda.grid(1)
    if k < R * N:
        out[k // N, k % N] = a[k // N, k % N] * m[k // N, k % N]


# Every kernel, in file order: the PTX check (tests/test_ptx.py) compiles each for float32 and float64.
KERNELS = (cell_forward, cell_backward, copy_running_rows, peephole_grads, lstm_steps, lstm_backward_steps,
           transpose, copy_steps, rnn_cell_forward, rnn_cell_backward, gemm, add_bias, add, add_column_sums, mul)


# Arrays on the device; nblstm.backends calls these for device="cuda".
def available():
    """(True, "") when a GPU (or the simulator) can run the kernels, else (False, why)."""
    if cuda.is_available():
        return True, ""
    return False, "numba-cuda found no CUDA GPU or driver (numba.cuda.is_available() is False)"


def empty(shape, dtype):
    return cuda.device_array(shape, dtype)


def zeros(shape, dtype):
    a = cuda.device_array(shape, dtype)
    fill_zeros(a)
    return a


def to_device(a):
    """A device array of `a`: a itself when it is one (CUDA array interface objects are wrapped, not copied)."""
    if hasattr(a, "copy_to_host"):
        return a
    if hasattr(a, "__cuda_array_interface__"):
        return cuda.as_cuda_array(a)
    return cuda.to_device(np.ascontiguousarray(a))


def to_host(a):
    """A new NumPy array with the contents of device array `a`."""
    return to_device(a).copy_to_host()


def copy(a):
    """A new device array equal to device array `a` (device-to-device)."""
    out = cuda.device_array(a.shape, a.dtype)
    copy_into(out, a)
    return out


# Copies and fills are queued on the default stream, behind the kernels launched before them, and the host goes on:
# numba-cuda's copy_to_device without a stream waits for the device (cuMemcpyDtoD), and a fill from a host array of
# zeros is a copy from the host. On an H100 machine (scratch timing, 200 calls each) a device-to-device
# copy_to_device took 203 us of host time, a copy of zeros from the host 139 us, a queued memset 3.8 us; a
# forward + backward at (T, B, I, H) = (100, 1, 32, 32) made about ten of them.
def _fast(*arrays):
    """Whether the driver's queued copy and memset can serve `arrays`: C-contiguous device arrays (not the
    simulator's, which has no driver)."""
    return not config.ENABLE_CUDASIM and all(a.is_c_contiguous() for a in arrays)


def copy_into(dst, src):
    """dst[...] = src for device arrays of one shape and dtype (device-to-device, queued on the default stream)."""
    if tuple(dst.shape) != tuple(src.shape) or np.dtype(dst.dtype) != np.dtype(src.dtype):
        raise ValueError(f"copy_into: dst {tuple(dst.shape)} {np.dtype(dst.dtype)} and src {tuple(src.shape)} "
                         f"{np.dtype(src.dtype)} differ in shape or dtype")
    if not _fast(dst, src):
        dst.copy_to_device(src)
    elif dst.size:
        driver.device_to_device(dst, src, dst.nbytes, stream=cuda.default_stream())


def fill_zeros(a):
    """a[...] = 0 (a memset queued on the default stream: zero bytes are 0.0 in IEEE 754)."""
    if not _fast(a):
        a.copy_to_device(np.zeros(a.shape, a.dtype))
    elif a.size:
        driver.device_memset(a, 0, a.nbytes, stream=cuda.default_stream())


def row(a, k0, k1=None):
    """a[k0] (k1 None) or a[k0:k1] of a C-contiguous device array, 0 <= k0 <= k1 <= len(a): a view, made directly
    from a's memory (numba-cuda's general indexing took 66 us of host time per view on an H100 machine)."""
    if not 0 <= k0 <= (k0 if k1 is None else k1) <= a.shape[0] - (k1 is None):
        raise IndexError(f"row: rows {k0}..{k1} out of range for an array of {a.shape[0]} rows")
    if not _fast(a):
        return a[k0] if k1 is None else a[k0:k1]
    n = a.strides[0]
    stop = k0 + 1 if k1 is None else k1
    shape, strides = ((a.shape[1:], a.strides[1:]) if k1 is None else ((k1 - k0,) + tuple(a.shape[1:]), a.strides))
    return DeviceNDArray(shape, strides, a.dtype, gpu_data=a.gpu_data.view(k0 * n, stop * n))


def add_into(out, a):
    """out += a for device arrays of one shape."""
    add(out.reshape(1, out.size), a.reshape(1, a.size))
