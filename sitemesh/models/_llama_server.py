"""The site model process: llama.cpp's OpenAI-compatible HTTP server, run by xllamacpp.

Started by :class:`sitemesh.models.LocalModelServer` as its own process, by file path
(``python .../_llama_server.py --model M.gguf --port P ...``), so it imports only the
standard library and ``xllamacpp`` (not the sitemesh package, whose import takes
seconds). ``xllamacpp.Server(params)`` loads the model and serves
``/health``, ``/v1/models`` and ``/v1/chat/completions`` from a background thread of
this process until it gets SIGTERM or SIGINT, or its parent process goes away (checked
every second, so a killed ``sitemesh edge`` leaves no server behind), then exits 0.

Exit codes: 0 stopped on a signal, 2 bad arguments (argparse), 3 the model did not
load or the port could not be bound (the reason is printed to stderr).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve a GGUF model over the OpenAI API.")
    parser.add_argument("--model", required=True, help="path of the GGUF file")
    parser.add_argument("--alias", required=True, help="model name clients send")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (generation "
                        "and prompt processing)")
    parser.add_argument("--ctx-size", type=int, default=2048, help="context in tokens, "
                        "shared by the slots")
    parser.add_argument("--parallel", type=int, default=1, help="concurrent request slots")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; see the module docstring for the exit codes."""
    args = _args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # OpenMP's default busy-waiting makes llama.cpp's threads spin against the site's
    # workers on a small host: 2 threads on 2 busy cores generated 3.5 tokens/s with it
    # and 33-47 without (docs/models.md). Set before the OpenMP runtime loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.model_alias = {args.alias}
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.ctx_size
    params.n_parallel = args.parallel
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.endpoint_metrics = False
    try:
        server = xllamacpp.Server(params)
    except Exception as exc:  # the C++ side reports load and bind failures this way
        print(f"llama server did not start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    print(f"serving {args.alias} at {server.listening_address}", flush=True)
    parent = os.getppid()
    while not stop.wait(1.0):
        if os.getppid() != parent:  # the owner died without stopping us: do not linger
            print("parent process gone; stopping", flush=True)
            break
    del server  # the destructor stops llama.cpp's main loop
    return 0


if __name__ == "__main__":
    sys.exit(main())
