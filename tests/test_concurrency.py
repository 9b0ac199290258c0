"""One executable, many threads: every call from every thread gets its own correct outputs.

The oracle is the reference interpreter run on the same feeds, one call at a time. Each thread
feeds inputs of its own (different per thread and per call), so any sharing of intermediates
between concurrent calls shows up as a wrong output.
"""

import threading

import kiln
import numpy as np
import pytest
from kiln.errors import ConcurrencyError
from kiln.frontend import Builder
from test_training import batch, small_cnn


def residual_cnn(n: int = 2):
    """conv-bn-relu, a residual add, a max-pool and a linear head: the blocked path and the arena
    (skip-connection reuse) are both exercised."""
    b = Builder("residual_cnn", seed=3)
    x = b.input("input", (n, 3, 12, 12))
    y = b.relu(b.batch_norm(b.conv2d(x, 16, 3, pads=1, bias=False, name="conv1"), name="bn1"))
    z = b.batch_norm(b.conv2d(y, 16, 3, pads=1, bias=False, name="conv2"), name="bn2")
    y = b.relu(b.add(y, z))
    y = b.maxpool2d(y, 2, name="pool")
    return b.build(b.linear(b.flatten(b.global_avgpool(y)), 5, name="fc"))


def feeds_for(g, seed):
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal(v.type.shape).astype(v.type.np_dtype) for v in g.inputs}


def hammer(exe, g, threads: int, calls: int):
    """`threads` threads, each making `calls` calls with feeds of its own, all started together;
    returns [(seed, outputs)] for every call."""
    start = threading.Barrier(threads)
    results: list[tuple[int, list[np.ndarray]]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(t):
        try:
            start.wait()
            for i in range(calls):
                seed = 1000 * t + i
                out = exe.run(feeds_for(g, seed))
                with lock:
                    results.append((seed, out))
        except BaseException as e:  # noqa: BLE001 - surfaced below, with the thread's traceback
            errors.append(e)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    if errors:
        raise errors[0]
    assert len(results) == threads * calls
    return results


def check_against_interpreter(g, results, rtol=1e-4, atol=1e-5):
    for seed, out in results:
        ref = kiln.interpret(g, feeds_for(g, seed))
        assert len(out) == len(ref)
        for a, r in zip(out, ref, strict=True):
            np.testing.assert_allclose(a, r, rtol=rtol, atol=atol, err_msg=f"call with feeds seed {seed}")


@pytest.mark.parametrize("threads", [2, 4, 8])
def test_cpu_executable_is_correct_from_many_threads(threads):
    g = residual_cnn()
    exe = kiln.compile(g, target="cpu")
    check_against_interpreter(g, hammer(exe, g, threads, calls=6))
    runner = exe._runner
    assert 1 <= runner.workspaces <= runner.max_workspaces


def test_cpu_executable_with_one_workspace_serialises_calls():
    """max_workspaces=1 is a lock: callers wait their turn and still get their own outputs."""
    g = residual_cnn()
    exe = kiln.compile(g, target="cpu")
    exe._runner.max_workspaces = 1
    check_against_interpreter(g, hammer(exe, g, 4, calls=4))
    assert exe._runner.workspaces == 1


def test_cpu_threads_option_and_many_callers():
    """Each call sets numba's thread count for its own thread only."""
    g = residual_cnn()
    exe = kiln.compile(g, target="cpu", threads=1)
    check_against_interpreter(g, hammer(exe, g, 3, calls=4))


def test_outputs_of_concurrent_calls_are_independent_arrays():
    g = residual_cnn()
    exe = kiln.compile(g, target="cpu")
    results = hammer(exe, g, 4, calls=3)
    bases = [out[0].base if out[0].base is not None else out[0] for _, out in results]
    assert len({id(b) for b in bases}) == len(bases)


def test_cuda_executable_is_correct_from_many_threads():
    pytest.importorskip("numba.cuda")
    b = Builder("tiny_cuda", seed=1)
    x = b.input("input", (1, 2, 6, 6))
    y = b.relu(b.conv2d(x, 4, 3, pads=1, name="conv"))
    g = b.build(b.linear(b.flatten(b.global_avgpool(y)), 3, name="fc"))
    exe = kiln.compile(g, target="cuda")
    check_against_interpreter(g, hammer(exe, g, 3, calls=2))


def test_trainer_refuses_a_concurrent_step_and_readers_wait():
    tr = kiln.compile(small_cnn(), target="cpu", mode="train", optimizer=kiln.optim.SGD(0.1))
    tr.step(batch(0))
    inside, release = threading.Event(), threading.Event()
    real_run = tr._step_exe.run

    def slow_run(*args, **kw):  # holds the first step inside the compiled step
        inside.set()
        release.wait(10)
        return real_run(*args, **kw)

    tr._step_exe.run = slow_run
    first = threading.Thread(target=tr.step, args=(batch(1),))
    first.start()
    assert inside.wait(10)
    with pytest.raises(ConcurrencyError, match="one step at a time"):
        tr.step(batch(2))
    with pytest.raises(ConcurrencyError, match="load_state_dict"):
        tr.load_state_dict(tr._state)
    got = {}
    reader = threading.Thread(target=lambda: got.update(tr.state_dict()))
    reader.start()
    reader.join(0.2)
    assert reader.is_alive(), "state_dict must wait for the running step"
    release.set()
    first.join()
    reader.join()
    tr._step_exe.run = real_run
    assert int(got["__step__"]) == 2  # read after the second step, not between its halves
    assert tr.steps == 2
