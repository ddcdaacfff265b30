"""A process that imports cooperbench once and forks one child per pair-run.

Where: the socket, its start `.lock` and the server's `.log` live in a private directory of
the user — `$XDG_RUNTIME_DIR/cb-assets`, else `/tmp/cb-assets-<uid>` — or next to an
explicit `CB_FORKSERVER_SOCKET`. Before every use that directory must be a real directory
(not a symlink) owned by us with mode 0700, or nothing is started, sent or bound. Both ends
check the other's uid (SO_PEERCRED): a client never sends its request (which carries its
environment, API keys included) to a server of another user, and a server drops clients of
another user.

Protocol over the Unix socket, one JSON line each way:
  client → {"fingerprint", "argv", "env", "log_path"}   a run: exactly these keys, with
           str, list[str], dict[str, str] and str values; argv is `run …` or `eval …` with
           exactly one `--log-dir <the server's logs root>`, and log_path lies under
           `<logs root>/_attempts/` (opened without following any symlink below the root)
  server → {"pid"} once the child started, then {"exit_code", "signal"} when it ended
           (exit_code is negative and signal names it if a signal killed the child);
           or {"error": "stale", "reason"} if the request is for other code or another logs
           root: the server retires and the client tries again (for another root, a server
           forked from this one already listens at the same path; for other code, the
           client starts a new one); {"error": "retiring"} once it retires;
           {"error": "<why>"} if the request was refused.
  client → {"op": "retire"}: server → {"retiring": true, "children": n}. A retiring server
           removes its socket at once, answers nothing new, and exits (code 0) once its
           children are done; the next client starts a new server.
A refused or malformed request (not JSON, wrong keys or types, over 1 MiB) is answered and
dropped; the server keeps serving. If the client goes away first (its Dagster step was
cancelled or killed, or it timed out), the server kills the child's process group. Children
die with the server (PR_SET_PDEATHSIG), and a server stopped by SIGTERM or SIGINT kills its
children's process groups before it exits: no orphaned runs.
The server is single-threaded (a selector loop), because forking a threaded process can
leave the child holding a lock no thread will release.

Modules: client (find, start, use and retire a server), private (the private directory,
peer credentials, no-follow opens), protocol (the request and reply lines, their checks),
code_fingerprint (which code a server runs), server (the selector loop), child (forking a
run and the child's life), attempt_log (the child's log, confined to the logs root), and
__main__ (the server process: `python -m cb_assets.runner.forkserver`). Importing this
package loads only the client's side.
"""

from cb_assets.runner.forkserver.client import (
    run_via_forkserver,
    socket_path_for,
    start_server,
    stop_server,
)
from cb_assets.runner.forkserver.code_fingerprint import fingerprint
from cb_assets.runner.forkserver.private import peer_credentials, private_dir

__all__ = [
    "fingerprint",
    "peer_credentials",
    "private_dir",
    "run_via_forkserver",
    "socket_path_for",
    "start_server",
    "stop_server",
]
