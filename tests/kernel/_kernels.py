"""A real Jupyter kernel for tests, and reading what its cells print (shared by the kernel tests)."""

from __future__ import annotations

import contextlib
import os
import sys
import time


@contextlib.contextmanager
def running_kernel(tmp_path, *, stderr_path=None, always_warn=False, cwd=None, drop=()):
    """A python3 kernel on this interpreter, offline (no DASHSCOPE_API_KEY: the emulator), with its
    IPython and matplotlib state in tmp_path; yields (manager, client). It runs in ``cwd`` (default
    tmp_path; a notebook's folder for its cells, as nbval does), without the variables in ``drop``."""
    from jupyter_client.manager import KernelManager

    env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY" and k not in drop}
    env["IPYTHONDIR"] = str(tmp_path / "ipython")
    env["MPLCONFIGDIR"] = str(tmp_path / "mpl")
    if always_warn:
        env["PYTHONWARNINGS"] = "always"  # every warning, every time, in the kernel process
    km = KernelManager(kernel_name="python3")
    km.kernel_spec.argv[0] = sys.executable  # this venv's interpreter, whatever the spec says
    with contextlib.ExitStack() as stack:
        err = stack.enter_context(open(stderr_path, "wb")) if stderr_path else None
        km.start_kernel(env=env, cwd=str(cwd or tmp_path), **({"stderr": err} if err else {}))
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def collect(kc, msg_ids, timeout=60.0):
    """Outputs per request, in the order the kernel produced them, until every request is idle.

    Stream output attributed to none of msg_ids (e.g. printed by a background task) goes under
    the key "other": it is still output a test may need to see.
    """
    outputs = {m: [] for m in msg_ids}
    pending, order = set(msg_ids), []
    deadline = time.monotonic() + timeout
    while pending:
        msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        parent = msg["parent_header"].get("msg_id")
        kind, content = msg["msg_type"], msg["content"]
        if parent not in outputs:
            if kind == "stream":
                outputs.setdefault("other", []).append(content["text"])
            continue
        if kind == "status" and content["execution_state"] == "idle":
            pending.discard(parent)
        elif kind == "execute_input":
            order.append(parent)
        elif kind == "stream":
            outputs[parent].append(content["text"])
        elif kind == "error":
            outputs[parent].append("ERROR " + content["ename"] + ": " + content["evalue"])
        elif kind in ("execute_result", "display_data"):
            outputs[parent].append(content["data"].get("text/plain", ""))
    return outputs, order


def run_cell(kc, code, timeout=60.0, *, with_other=False) -> str:
    msg_id = kc.execute(code)
    outputs, _ = collect(kc, [msg_id], timeout)
    return "".join(outputs[msg_id]) + ("".join(outputs.get("other", [])) if with_other else "")


def execute_notebook(path, tmp_path, *, env_changes, drop=(), timeout=600):
    """Run a notebook top to bottom in a fresh kernel whose environment is this process's with
    ``drop`` removed and ``env_changes`` applied; returns the executed notebook. A failing cell
    raises nbclient's CellExecutionError, naming the cell and its traceback."""
    import nbformat
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_changes)
    env["IPYTHONDIR"] = str(tmp_path / "ipython")
    env["MPLCONFIGDIR"] = str(tmp_path / "mpl")
    km = KernelManager(kernel_name="python3")
    km.kernel_spec.argv[0] = sys.executable
    client = NotebookClient(nb, km=km, timeout=timeout, resources={"metadata": {"path": str(path.parent)}})
    saved = dict(os.environ)
    try:
        # KernelManager reads os.environ when it launches the kernel: scope the change to the run.
        os.environ.clear()
        os.environ.update(env)
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if client.kc is not None:
            client.kc.stop_channels()
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    return nb


def iopub_messages(kc, msg_id, timeout=60.0) -> list[dict]:
    """Every iopub message one request produced, in order, until the kernel is idle again: for a
    test that needs what ``collect`` flattens away (display ids, update_display_data, mime types)."""
    found = []
    deadline = time.monotonic() + timeout
    while True:
        msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return found
        found.append(msg)
