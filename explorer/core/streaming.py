"""Device → host copies that never make the sampling stream wait.

Calling ``.cpu()`` on a GPU tensor blocks the Python thread until everything queued before
it has run, so a loop that shows or records every step that way leaves the GPU idle while
Python prepares the next step. Here each copy goes onto a *side* CUDA stream: the side
stream waits (on the device, not on the host) for the sampling stream to reach the point
where the tensors are ready, copies them into pinned host buffers, and records an event.
The host only ever looks at that event, and only for copies it is about to hand out.

:func:`in_order` hands results out in submission order while letting the sampler run a few
steps ahead (``depth``), which keeps the GPU fed while the consumer works on older steps.

The pinned staging buffers are recycled (:class:`_PinnedPool`): handed-out tensors are
ordinary host copies, so a consumer may keep them as long as it likes while page-locked
memory stays at a few steps' worth.

On the CPU the same API is kept, with nothing to copy: a submitted tensor is its own host
copy, ready at once, so the code paths above it are the same on every device.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Callable, Iterator, Optional, Sequence, TypeVar

import torch

T = TypeVar("T")
Tensors = list[Optional[torch.Tensor]]


class HostCopy:
    """Host copies of some tensors; complete once :meth:`ready` says so."""

    def __init__(self, tensors: Tensors, done: Optional["torch.cuda.Event"] = None,
                 pool: Optional["_PinnedPool"] = None, copy_out: bool = False) -> None:
        self._tensors = tensors
        self._done = done
        self._pool = pool
        self._copy_out = copy_out  # the tensors are a captured step's slots, rewritten by the next replay

    def ready(self) -> bool:
        """True when every copy has landed (never blocks)."""
        return self._done is None or self._done.query()

    def wait(self) -> Tensors:
        """The host tensors, blocking only until *these* copies are done.

        Copies that went through pinned staging buffers are handed out as ordinary host
        tensors, and the staging buffers go back to their pool for later steps.
        """
        if self._copy_out:
            if self._done is not None:
                self._done.synchronize()
                self._done = None
            self._tensors = [t if t is None or t.ndim == 0 else _unpinned(t) for t in self._tensors]
            self._copy_out = False
        if self._done is not None:
            self._done.synchronize()
            self._done = None
            if self._pool is not None:
                staged = self._tensors
                self._tensors = [t if t is None or not t.is_pinned() else _unpinned(t) for t in staged]
                self._pool.give([t for t in staged if t is not None and t.is_pinned()])
        return self._tensors


def _unpinned(t: torch.Tensor) -> torch.Tensor:
    out = torch.empty(t.shape, dtype=t.dtype)
    out.copy_(t)
    return out


class _PinnedPool:
    """Pinned staging buffers by (shape, dtype), reused from step to step.

    A run needs as many as it has copies in flight, so pinned (page-locked) memory stays at a
    few steps' worth however long the run is, and no page-locking happens inside the loop.
    """

    def __init__(self) -> None:
        self.free: dict[tuple, list[torch.Tensor]] = {}
        self.allocated_bytes = 0

    def take(self, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
        bucket = self.free.get((tuple(shape), dtype))
        if bucket:
            return bucket.pop()
        buffer = torch.empty(shape, dtype=dtype, pin_memory=True)
        self.allocated_bytes += buffer.nelement() * buffer.element_size()
        return buffer

    def give(self, buffers: Tensors) -> None:
        for b in buffers:
            if b is not None:
                self.free.setdefault((tuple(b.shape), b.dtype), []).append(b)


class HostStreamer:
    """Copies tensors of one device to the host without synchronizing the caller's stream.

    Each copy lands in a pinned staging buffer of the streamer's pool (reused once its copy
    has been handed out). A submitted device tensor is marked as used by the side stream
    (``record_stream``), so its memory is not reused before the copy has read it, even if the
    caller drops it at once.
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.is_cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if self.is_cuda else None
        self.pool = _PinnedPool()

    def submit(self, tensors: Sequence[Optional[torch.Tensor]]) -> HostCopy:
        """Start copying ``tensors`` (None entries stay None) as of the caller's stream's current point."""
        if not self.is_cuda or not any(t is not None and t.is_cuda for t in tensors):
            return HostCopy([None if t is None else t.detach() for t in tensors])
        producer = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(producer)
        hosts: Tensors = []
        with torch.cuda.stream(self.stream):
            for t in tensors:
                if t is None or not t.is_cuda:
                    hosts.append(None if t is None else t.detach())
                    continue
                host = self.pool.take(t.shape, t.dtype)
                host.copy_(t.detach(), non_blocking=True)
                hosts.append(host)
                t.record_stream(self.stream)
            done = torch.cuda.Event()
            done.record(self.stream)
        return HostCopy(hosts, done, self.pool)


class _Waited:
    """A copy whose waiting (event sync, and the copy out of pinned memory) runs on a helper thread."""

    def __init__(self, copy: HostCopy, helper: Executor) -> None:
        self._future: Future = helper.submit(copy.wait)

    def ready(self) -> bool:
        return self._future.done()

    def wait(self) -> Tensors:
        return self._future.result()


_HELPER: Optional[ThreadPoolExecutor] = None


def copy_helper() -> ThreadPoolExecutor:
    """The one helper thread that waits for host copies and moves them out of pinned memory.

    Both release the GIL, so the thread that launches the steps keeps launching while the
    helper works; one thread keeps the copies in order.
    """
    global _HELPER
    if _HELPER is None:
        _HELPER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="explorer-host-copies")
    return _HELPER


def in_order(items: Iterator[T], submit: Callable[[T], HostCopy], depth: int = 2,
             helper: Optional[Executor] = None) -> Iterator[tuple[T, Tensors]]:
    """Yield ``(item, host tensors)`` in order, at most ``depth`` items behind the producer.

    An item is handed out as soon as its copies are done, or when more than ``depth``
    items wait (then the oldest is waited for: the device still has the newer ones queued,
    so it stays busy). The rest is handed out when ``items`` ends. With ``helper`` the
    waiting happens on that executor's thread as soon as a copy is submitted.
    """
    if depth < 0:
        raise ValueError(f"The look-ahead depth must be zero or positive (got {depth}).")
    pending: deque[tuple[T, HostCopy | _Waited]] = deque()
    for item in items:
        copy = submit(item)
        pending.append((item, copy if helper is None else _Waited(copy, helper)))
        while pending and (len(pending) > depth or pending[0][1].ready()):
            head, copy = pending.popleft()
            yield head, copy.wait()
    while pending:
        head, copy = pending.popleft()
        yield head, copy.wait()
