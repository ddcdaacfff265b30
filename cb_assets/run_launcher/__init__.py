"""Run workers forked from a warm process: Dagster's run launcher for this code location.

Dagster's default launcher asks the code server to *spawn* a run worker for every run: a
fresh interpreter that imports dagster, pandas and the definitions again (4–5 s of CPU,
12–25 s on a loaded 2-core machine) before the run's first step. `WarmRunLauncher`
instead keeps one process per launching process (the daemon, or the webserver when it
launches) that has paid those imports once, and forks each run worker from it: a run
starts in well under a second, whoever launched it — the UI, a backfill, a sensor or
`cb-assets`.

The warm process listens on a Unix socket in the user's private directory (the fork
server's, mode 0700; both ends check each other's uid). A request is one JSON line
`{"fingerprint", "run_id", "instance_ref"}`; the reply `{"pid"}` once the worker is
forked, or `{"error"}`. A worker is its own session and outlives the warm process (a
daemon restart does not stop runs); the warm process exits when its launching process
is gone, and retires when its code fingerprint differs from the launcher's (the code
changed), so no run executes old code.

Modules: launcher (the RunLauncher, loaded by the daemon and webserver; imports neither
the definitions nor the server), client (start and reach the warm process), server (the
warm process and its workers), __main__ (`python -m cb_assets.run_launcher`).
"""
